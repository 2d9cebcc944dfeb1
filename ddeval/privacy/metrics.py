"""Membership-inference metrics from attack scores: AUC, TPR at low FPR, and a compact ROC curve.

Convention: a higher score means "more likely a member". Low-FPR numbers are only meaningful when there are
enough non-members to resolve them (1/num_nonmembers is the smallest non-zero FPR), so the result says
whether 1% and 0.1% FPR are resolved and, when not, carries a note for the report.

>>> m = roc_metrics([0.9, 0.8, 0.7], [0.1, 0.2, 0.75])
>>> round(m["auc"], 4), m["num_nonmembers"], m["resolves_1pct_fpr"]
(0.8889, 3, False)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from distillers.errors import DDError

LOG_FPR_MIN = 1e-5  # left end of the log-spaced FPR grid used to thin the ROC curve


def _scores(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        if arr.size != max(arr.shape):
            raise DDError(f"{what} scores must be a 1-D array (one score per example), got shape {list(arr.shape)}.")
        arr = arr.reshape(-1)
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        raise DDError(f"No {what} scores were given; membership metrics need at least one member and one non-member.")
    if np.isnan(arr).any():
        raise DDError(f"{int(np.isnan(arr).sum())} {what} score(s) are NaN; check the target model's outputs "
                      "(a diverged model gives NaN losses).")
    return arr


def roc_counts(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact ROC as integer counts: ``(fp, tp, thresholds)``, one vertex per distinct score plus (0, 0).

    Vertex ``i`` counts the examples with score ``>= thresholds[i]``; tied scores move together, so the
    curve steps diagonally through ties (which is what gives ties half credit in the AUC).
    """
    pos = _scores(member_scores, "member")
    neg = _scores(nonmember_scores, "non-member")
    scores = np.concatenate([pos, neg])
    is_member = np.concatenate([np.ones(pos.size, dtype=np.int64), np.zeros(neg.size, dtype=np.int64)])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_member = scores[order], is_member[order]
    last_of_group = np.flatnonzero(np.diff(scores) != 0)
    last_of_group = np.append(last_of_group, scores.size - 1)
    tp = np.cumsum(is_member)[last_of_group]
    fp = last_of_group + 1 - tp
    return (np.concatenate([[0], fp]), np.concatenate([[0], tp]),
            np.concatenate([[np.inf], scores[last_of_group]]))


def tpr_at_fpr(fp: np.ndarray, tp: np.ndarray, num_members: int, num_nonmembers: int, fpr: float) -> float:
    """Largest TPR among ROC vertices whose FPR is at most ``fpr`` (0 when none but the origin qualifies)."""
    allowed = math.floor(fpr * num_nonmembers + 1e-9)  # max false positives; the epsilon absorbs 0.01*100 = 1.0000x
    return float(tp[fp <= allowed].max()) / num_members


def roc_metrics(member_scores: Any, nonmember_scores: Any, *, max_points: int = 400) -> dict[str, Any]:
    """AUC, TPR at 1% and 0.1% FPR, resolution flags, and a ROC thinned to at most ``max_points`` points.

    TPRs and AUC come from the exact ROC; only the returned ``roc`` curve is thinned, keeping the vertex at
    (or just left of) each point of a log-spaced FPR grid from 1e-5 to 1, plus both end points, so the
    low-FPR region stays detailed on log-log axes. All numbers are plain Python floats/ints/bools.
    """
    if not isinstance(max_points, int) or max_points < 4:
        raise DDError(f"max_points must be an integer of at least 4, got {max_points!r}.")
    fp, tp, _ = roc_counts(member_scores, nonmember_scores)
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    # Trapezoids between consecutive vertices on integer counts: exact, with half credit for ties.
    auc = float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])) / (2.0 * n_pos * n_neg))
    fpr_all, tpr_all = fp / n_neg, tp / n_pos
    if fpr_all.size > max_points:
        grid = np.concatenate([[0.0], np.logspace(math.log10(LOG_FPR_MIN), 0.0, max_points - 2)])
        keep = np.searchsorted(fpr_all, grid, side="right") - 1
        keep = np.unique(np.concatenate([[0, fpr_all.size - 1], keep]))
        fpr_all, tpr_all = fpr_all[keep], tpr_all[keep]
    resolves_1 = n_neg >= 100
    resolves_01 = n_neg >= 1000
    if not resolves_1:
        note = f"only {n_neg} non-members: 1% and 0.1% FPR are below the resolution 1/{n_neg}"
    elif not resolves_01:
        note = f"only {n_neg} non-members: 0.1% FPR is below the resolution 1/{n_neg}"
    else:
        note = ""
    return {
        "auc": auc,
        "tpr_at_1pct_fpr": tpr_at_fpr(fp, tp, n_pos, n_neg, 0.01),
        "tpr_at_0p1pct_fpr": tpr_at_fpr(fp, tp, n_pos, n_neg, 0.001),
        "num_members": n_pos,
        "num_nonmembers": n_neg,
        "fpr_resolution": 1.0 / n_neg,
        "resolves_1pct_fpr": resolves_1,
        "resolves_0p1pct_fpr": resolves_01,
        "note": note,
        "roc": {"fpr": [float(v) for v in fpr_all], "tpr": [float(v) for v in tpr_all]},
    }

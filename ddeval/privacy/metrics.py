"""Membership-inference metrics from attack scores: AUC, TPR at low FPR, and a compact ROC curve.

Convention: a higher score means "more likely a member". Low-FPR numbers are only meaningful when there are
enough non-members to resolve them (1/num_nonmembers is the smallest non-zero FPR), so the result says
whether 1% and 0.1% FPR are resolved and, when not, carries a note for the report.

With ``bootstrap=B`` the result also carries percentile confidence intervals for AUC and both TPRs,
from B resamples that draw members and non-members separately with replacement (the two groups are
fixed in size by the experiment, so each is resampled on its own).

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


def resampled_metrics(member_sorted: np.ndarray, nonmember_sorted: np.ndarray, member_weights: np.ndarray,
                      nonmember_weights: np.ndarray) -> dict[str, np.ndarray]:
    """AUC and TPR at 1% / 0.1% FPR of weighted resamples, vectorised over the rows of the weights.

    ``*_sorted`` are the scores in ascending order; ``*_weights [B, n]`` say how often each sorted score is
    drawn in each of B resamples (each row sums to n). Equal to :func:`roc_metrics` on the expanded samples.
    """
    n_pos, n_neg = member_sorted.size, nonmember_sorted.size
    cum_pos = np.zeros((member_weights.shape[0], n_pos + 1))
    cum_neg = np.zeros((nonmember_weights.shape[0], n_neg + 1))
    np.cumsum(member_weights, axis=1, out=cum_pos[:, 1:])
    np.cumsum(nonmember_weights, axis=1, out=cum_neg[:, 1:])
    # AUC: each member beats the non-members below it and ties half of those equal to it.
    below = np.searchsorted(nonmember_sorted, member_sorted, side="left")
    upto = np.searchsorted(nonmember_sorted, member_sorted, side="right")
    wins = 0.5 * (cum_neg[:, below] + cum_neg[:, upto])
    out = {"auc": np.sum(member_weights * wins, axis=1) / (n_pos * n_neg)}
    # TPR at FPR f: members strictly above u, the (allowed + 1)-th largest resampled non-member score.
    for key, fpr in (("tpr_at_1pct_fpr", 0.01), ("tpr_at_0p1pct_fpr", 0.001)):
        allowed = math.floor(fpr * n_neg + 1e-9)
        kth_smallest = n_neg - allowed  # 1-based rank from below of that non-member
        u = nonmember_sorted[np.sum(cum_neg[:, 1:] < kth_smallest, axis=1)]
        at_most_u = np.searchsorted(member_sorted, u, side="right")
        out[key] = (n_pos - cum_pos[np.arange(u.size), at_most_u]) / n_pos
    return out


def _draw_weights(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    idx = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_intervals(member_scores: Any, nonmember_scores: Any, *, resamples: int, seed: int = 0,
                        level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals ``{"auc": [lo, hi], "tpr_at_1pct_fpr": ..., "tpr_at_0p1pct_fpr": ...,
    "level", "resamples"}``; members and non-members are resampled separately, with replacement."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise DDError(f"bootstrap must be a positive integer number of resamples, got {resamples!r}.")
    if not 0.0 < level < 1.0:
        raise DDError(f"The confidence level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    pos = np.sort(_scores(member_scores, "member"))
    neg = np.sort(_scores(nonmember_scores, "non-member"))
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(pos.size, neg.size))  # bounds memory at a few tens of MB
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        got = resampled_metrics(pos, neg, _draw_weights(rng, rows, pos.size), _draw_weights(rng, rows, neg.size))
        for key, values in got.items():
            parts.setdefault(key, []).append(values)
    alpha = (1.0 - level) / 2.0
    ci: dict[str, Any] = {}
    for key, chunks in parts.items():
        lo, hi = np.quantile(np.concatenate(chunks), [alpha, 1.0 - alpha])
        ci[key] = [float(lo), float(hi)]
    ci["level"] = float(level)
    ci["resamples"] = int(resamples)
    return ci


def roc_metrics(member_scores: Any, nonmember_scores: Any, *, max_points: int = 400, bootstrap: int = 0,
                seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """AUC, TPR at 1% and 0.1% FPR, resolution flags, and a ROC thinned to at most ``max_points`` points.

    TPRs and AUC come from the exact ROC; only the returned ``roc`` curve is thinned, keeping the vertex at
    (or just left of) each point of a log-spaced FPR grid from 1e-5 to 1, plus both end points, so the
    low-FPR region stays detailed on log-log axes. All numbers are plain Python floats/ints/bools.
    With ``bootstrap > 0`` a ``"ci"`` entry holds percentile intervals at ``level`` from that many
    resamples drawn with ``numpy.random.default_rng(seed)`` (see :func:`bootstrap_intervals`).
    """
    if not isinstance(max_points, int) or max_points < 4:
        raise DDError(f"max_points must be an integer of at least 4, got {max_points!r}.")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise DDError(f"bootstrap must be a non-negative integer number of resamples, got {bootstrap!r}.")
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
    result = {
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
    if bootstrap > 0:
        result["ci"] = bootstrap_intervals(member_scores, nonmember_scores, resamples=bootstrap, seed=seed,
                                           level=level)
    return result

"""Likelihood-ratio membership inference (LiRA, Carlini et al. 2022) with shadow models.

Pipeline: train M models, each on a random half of a population of n points (``in_mask[m, i]`` says whether
point i was in model m's training data); query every model on every point (:func:`query_logits`, the image
and optionally its horizontal flip); turn the logits into the per-example statistic
:func:`lira_statistic` (phi = logit-scaled confidence of the true class, roughly Gaussian across models);
then score a target model's phi against Gaussians fitted to the shadow models' phi (:func:`lira_scores`).
:func:`leave_one_out` uses each of the M models in turn as the target and the other M-1 as shadows, and
:func:`threshold_leave_one_out` scores the same targets with a plain threshold attack, so every attack is
compared on exactly the same member / non-member split.

Variants (:data:`VARIANTS`): ``online`` fits an IN and an OUT Gaussian per point and scores the log
likelihood ratio; ``offline`` uses only the OUT Gaussian (one-sided test: how far above the OUT
distribution the target's phi lies); the ``-fixed`` variants use one global standard deviation, the
within-point spread pooled over all points, which is more stable with few shadow models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from torch import nn

from ddeval.privacy.attacks import as_logits_and_labels, threshold_scores
from distillers.data import LabeledData
from distillers.errors import DDError

VARIANTS = ("online", "offline", "online-fixed", "offline-fixed")
SIGMA_FLOOR = 1e-6  # keeps log-densities finite when every shadow gives the same phi


def lira_statistic(logits: Any, labels: Any) -> np.ndarray:
    """phi = z_y - logsumexp_{y' != y} z_y' (= log p_y - log sum_{y' != y} p_y'), float64, shape ``[..., n]``.

    ``logits`` is ``[..., n, K]`` and ``labels`` ``[n]`` (or any integer array broadcastable to
    ``logits.shape[:-1]``). For per-query logits ``[..., n, Q, K]`` (as from :func:`query_logits`) pass
    ``labels[:, None]``; a 1-D ``labels`` is also aligned with axis -3 automatically when axis -2 does not
    have length n, giving ``[..., n, Q]``. Computed by log-sum-exp, so logits of 1e4 stay finite.
    """
    z, y = as_logits_and_labels(logits, labels)
    lead = z.shape[:-1]
    if y.ndim == 1 and z.ndim >= 3 and lead[-1] != y.shape[0] and lead[-2] == y.shape[0]:
        y = y[:, None]
    try:
        y = np.broadcast_to(y, lead)
    except ValueError:
        raise DDError(f"Labels of shape {list(y.shape)} do not match logits of shape {list(z.shape)}; "
                      "give one label per point ([n]) with logits [..., n, K].") from None
    idx = y[..., None]
    true = np.take_along_axis(z, idx, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    return true - logsumexp(others, axis=-1)


def query_logits(model: nn.Module, data: LabeledData, *, flip: bool, device: str | torch.device = "cpu",
                 batch_size: int = 1024) -> np.ndarray:
    """Logits ``[n, Q, K]`` (float32) of ``model`` on ``data``: Q=1 (the images) or Q=2 (also mirrored).

    The model runs in eval mode without gradients on ``device``; its train/eval mode is restored.
    """
    if batch_size < 1:
        raise DDError(f"batch_size must be a positive integer, got {batch_size!r}.")
    was_training = model.training
    model.to(device).eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                x = data.x[start:start + batch_size].to(device)
                views = [x, torch.flip(x, dims=[-1])] if flip else [x]
                out.append(torch.stack([model(v).float() for v in views], dim=1).cpu())
    finally:
        model.train(was_training)
    if not out:
        raise DDError("query_logits got an empty dataset; give at least one point to query.")
    return torch.cat(out).numpy()


# ------------------------------------------------------------------------------------------- scoring
def _as_stats(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)
    if np.isnan(arr).any():
        raise DDError(f"{what} contain NaN; a diverged model gives NaN logits (retrain or drop it).")
    return arr


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise DDError(f'Unknown LiRA variant "{variant}"; use one of {", ".join(VARIANTS)}.')


def _fit(stats: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-point Gaussian fit of ``stats [S, n, Q]`` over the shadows where ``mask [S, n]`` is True.

    Returns (count [n], mean [n, Q], per-point std [n, Q] (ddof=1; NaN where count < 2), pooled std [Q]
    (the within-point spread pooled over all points with count >= 2; None when no point has 2 samples)).
    """
    w = mask[:, :, None].astype(np.float64)
    count = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * stats).sum(axis=0) / count[:, None]
        sq = (w * (stats - np.nan_to_num(mean)[None]) ** 2).sum(axis=0)  # [n, Q]
        std = np.sqrt(sq / (count[:, None] - 1))
    std[count < 2] = np.nan
    dof = np.clip(count - 1, 0, None)
    pooled = np.sqrt(sq[dof > 0].sum(axis=0) / dof.sum()) if dof.sum() > 0 else None
    return count, mean, std, pooled


def lira_scores(target_stats: Any, shadow_stats: Any, shadow_in: Any, *, variant: str = "online") -> np.ndarray:
    """LiRA membership scores ``[n]`` (float64, higher = more likely a member) of one target model.

    ``target_stats [n, Q]``: the target's phi per point and query; ``shadow_stats [S, n, Q]``: the shadow
    models' phi; ``shadow_in [S, n]`` (bool): whether each point was in each shadow's training data.
    (1-D target / 2-D shadow statistics are read as Q=1.)

    - online: mean over queries of log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out).
    - offline: mean over queries of -log P[Z > (phi - mu_out) / s_out] (norm.logsf), which increases with phi.
    - ``-fixed``: s_in / s_out are one pooled within-point standard deviation per query (all points).
    Otherwise s is the per-point sample standard deviation (ddof=1); a point with fewer than 2 IN (OUT)
    samples uses the pooled one. Fallbacks for rare points: with no IN shadow the online score is the
    offline score for that point; with no OUT shadow, the OUT Gaussian is the population one (mean and
    standard deviation of all OUT statistics of all points). Standard deviations are floored at 1e-6.
    """
    _check_variant(variant)
    target = _as_stats(target_stats, "Target statistics")
    shadows = _as_stats(shadow_stats, "Shadow statistics")
    if target.ndim == 1:
        target = target[:, None]
    if shadows.ndim == 2:
        shadows = shadows[:, :, None]
    in_mask = np.asarray(shadow_in)
    if target.ndim != 2 or shadows.ndim != 3 or shadows.shape[1:] != target.shape:
        raise DDError(f"Shadow statistics must be [S, n, Q] matching target statistics [n, Q]; got "
                      f"{list(shadows.shape)} and {list(target.shape)}.")
    if in_mask.dtype != bool or in_mask.shape != shadows.shape[:2]:
        raise DDError(f"shadow_in must be a boolean [S, n] = {list(shadows.shape[:2])} mask, got "
                      f"{in_mask.dtype} {list(in_mask.shape)}.")
    out_mask = ~in_mask
    if not out_mask.any():
        raise DDError("No shadow model leaves any point out; LiRA needs OUT shadows (train each on a random half).")
    fixed = variant.endswith("-fixed")

    n_out, mu_out, sd_out, pooled_out = _fit(shadows, out_mask)
    all_out = shadows[np.broadcast_to(out_mask[:, :, None], shadows.shape)].reshape(-1, shadows.shape[2])
    pop_mu, pop_sd = all_out.mean(axis=0), all_out.std(axis=0)
    if pooled_out is None:
        pooled_out = pop_sd
    no_out = n_out == 0
    mu_out[no_out] = pop_mu
    sd_out = np.where(fixed | np.isnan(sd_out), pooled_out[None], sd_out)
    sd_out[no_out] = pop_sd
    sd_out = np.maximum(sd_out, SIGMA_FLOOR)

    z_out = (target - mu_out) / sd_out
    offline = -norm.logsf(z_out).mean(axis=1)
    if variant.startswith("offline"):
        return offline

    n_in, mu_in, sd_in, pooled_in = _fit(shadows, in_mask)
    if pooled_in is None:  # no point was IN for two shadows: borrow the OUT spread
        pooled_in = pooled_out
    sd_in = np.where(fixed | np.isnan(sd_in), pooled_in[None], sd_in)
    sd_in = np.maximum(sd_in, SIGMA_FLOOR)
    with np.errstate(invalid="ignore"):
        ratio = norm.logpdf(target, np.nan_to_num(mu_in), sd_in) - norm.logpdf(target, mu_out, sd_out)
    return np.where(n_in > 0, ratio.mean(axis=1), offline)


# ------------------------------------------------------------------------------------- leave one out
def _check_population(in_mask: Any, m: int, n: int, targets: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    mask = np.asarray(in_mask)
    if mask.dtype != bool or mask.shape != (m, n):
        raise DDError(f"in_mask must be a boolean [M, n] = {[m, n]} mask, got {mask.dtype} {list(mask.shape)}.")
    picked = [int(t) for t in targets]
    if not picked:
        raise DDError("Give at least one target model index for the leave-one-out evaluation.")
    bad = [t for t in picked if not 0 <= t < m]
    if bad:
        raise DDError(f"Target model indices {bad} are outside 0..{m - 1}.")
    return mask, picked


def _split(scores: list[np.ndarray], mask: np.ndarray, picked: list[int]) -> tuple[np.ndarray, np.ndarray]:
    members = np.concatenate([s[mask[t]] for s, t in zip(scores, picked, strict=True)])
    nonmembers = np.concatenate([s[~mask[t]] for s, t in zip(scores, picked, strict=True)])
    return members, nonmembers


def leave_one_out(stats: Any, in_mask: Any, targets: Sequence[int], variant: str = "online"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """LiRA scores pooled over targets: each target model t is scored by the other M-1 models as shadows.

    ``stats [M, n, Q]`` (or ``[M, n]``), ``in_mask [M, n]`` bool. Returns (member scores, non-member scores),
    concatenated over ``targets`` in order, with members = the points in target t's training data.
    """
    _check_variant(variant)
    arr = _as_stats(stats, "Statistics")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DDError(f"Statistics must be [M, n, Q], got shape {list(arr.shape)}.")
    if arr.shape[0] < 2:
        raise DDError(f"Leave-one-out LiRA needs at least 2 models (a target and a shadow), got {arr.shape[0]}.")
    mask, picked = _check_population(in_mask, arr.shape[0], arr.shape[1], targets)
    scores = []
    for t in picked:
        others = np.arange(arr.shape[0]) != t
        scores.append(lira_scores(arr[t], arr[others], mask[others], variant=variant))
    return _split(scores, mask, picked)


def threshold_leave_one_out(logits: Any, labels: Any, in_mask: Any, targets: Sequence[int], attack: str
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Threshold attack ``attack`` on the same targets and split as :func:`leave_one_out` (identity query).

    ``logits [M, n, Q, K]`` (or ``[M, n, K]``), ``labels [n]``; returns (member scores, non-member scores).
    """
    z, y = as_logits_and_labels(logits, labels)
    if z.ndim == 3:
        z = z[:, :, None]
    if z.ndim != 4 or y.shape != (z.shape[1],):
        raise DDError(f"threshold_leave_one_out needs logits [M, n, Q, K] and labels [n], got "
                      f"{list(z.shape)} and {list(y.shape)}.")
    mask, picked = _check_population(in_mask, z.shape[0], z.shape[1], targets)
    scores = [threshold_scores(attack, z[t, :, 0], y) for t in picked]
    return _split(scores, mask, picked)

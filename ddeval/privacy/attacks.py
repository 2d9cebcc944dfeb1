"""Black-box membership-inference attacks that score each example against one trained target model.

Every attack maps (model, examples) to one score per example, higher meaning "more likely a training member";
:func:`~ddeval.privacy.metrics.roc_metrics` turns member and non-member scores into AUC and TPR at low FPR.

- ``loss`` (Yeom et al. 2018): score = minus the cross-entropy loss of the true label.
- ``confidence``: score = the softmax probability of the true label.
- ``entropy``: score = minus the entropy of the softmax (confident predictions look like members).
- ``modified-entropy`` (Song & Mittal 2021): score = minus
  ``-(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``, which, unlike plain entropy, penalises
  confident *wrong* predictions.

All four are computed in float64 from the logits by :func:`threshold_scores` (log-softmax based, so huge
logits neither overflow nor round ``p`` to exactly 0 or 1 inside a logarithm).

>>> sorted(ATTACKS.names())
['confidence', 'entropy', 'loss', 'modified-entropy']
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import logsumexp
from torch import nn

from ddeval.privacy.metrics import roc_metrics
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.registry import Registry

THRESHOLD_ATTACKS = ("loss", "confidence", "entropy", "modified-entropy")


def as_logits_and_labels(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``logits`` as float64 ``[..., K]`` (K >= 2) and ``labels`` as int64 (tensors or arrays accepted)."""
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().numpy()
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise DDError(f"Logits must have a last axis of at least 2 classes, got shape {list(z.shape)}.")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[-1]):
        raise DDError(f"Labels must be integers in 0..{z.shape[-1] - 1} (one per logit row).")
    if not np.isfinite(z).all():
        raise DDError("Logits contain NaN or infinite values; check the model (a diverged model gives NaN).")
    return z, y.astype(np.int64)


def log_softmax_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log p_i, log(1 - p_i))`` for every class, float64, accurate even when ``p_i`` is within 1e-300 of 1.

    ``log(1 - p_i)`` is ``log1p(-p_i)`` for every class but the arg-max (their ``p_i <= 1/2``, where
    ``log1p`` is accurate); for the arg-max it is the log-sum-exp of the *other* logits minus the total.
    """
    total = logsumexp(z, axis=-1, keepdims=True)
    log_p = z - total
    with np.errstate(divide="ignore"):  # the arg-max entry may hit log(0); it is overwritten below
        log_1mp = np.log1p(-np.exp(log_p))
    top = np.argmax(z, axis=-1)[..., None]
    others = z.copy()
    np.put_along_axis(others, top, -np.inf, axis=-1)
    np.put_along_axis(log_1mp, top, logsumexp(others, axis=-1, keepdims=True) - total, axis=-1)
    return log_p, log_1mp


def threshold_scores(name: str, logits: Any, labels: Any) -> np.ndarray:
    """Per-example scores ``[n]`` (float64, higher = more likely a member) of threshold attack ``name``.

    ``logits`` is ``[n, K]`` (array or tensor), ``labels`` ``[n]``; ``name`` is one of
    ``loss``, ``confidence``, ``entropy``, ``modified-entropy``.
    """
    if name not in THRESHOLD_ATTACKS:
        raise DDError(f'Unknown threshold attack "{name}"; use one of {", ".join(THRESHOLD_ATTACKS)}.')
    z, y = as_logits_and_labels(logits, labels)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise DDError(f"threshold_scores needs logits [n, K] and labels [n], got {list(z.shape)} and "
                      f"{list(y.shape)}.")
    log_p, log_1mp = log_softmax_parts(z)
    rows = np.arange(z.shape[0])
    log_py = log_p[rows, y]
    if name == "loss":
        return log_py
    if name == "confidence":
        return np.exp(log_py)
    p = np.exp(log_p)
    if name == "entropy":
        return np.sum(p * log_p, axis=-1)  # -H(p); p * log p -> 0 when p underflows (log p stays finite)
    # modified entropy: members have low Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    wrong = p * log_1mp
    wrong[rows, y] = 0.0
    mentr = -np.exp(log_1mp[rows, y]) * log_py - wrong.sum(axis=-1)
    return -mentr


class MembershipAttack:
    """Base class: subclasses set ``name``; :meth:`_score_logits` defaults to :func:`threshold_scores`."""

    name: ClassVar[str] = ""

    def score(self, model: nn.Module, data: LabeledData, *, device: str | torch.device = "cpu",
              batch_size: int = 1024) -> np.ndarray:
        """Per-example scores (float64, ``[len(data)]``); the model runs in eval mode without gradients.

        The model is moved to ``device`` and its train/eval mode is restored afterwards.
        """
        from ddeval.privacy.lira import query_logits  # lira builds on this module

        logits = query_logits(model, data, flip=False, device=device, batch_size=batch_size)[:, 0]
        return self._score_logits(torch.from_numpy(logits).double(), data.y).numpy()

    def _score_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(threshold_scores(self.name, logits, labels))


ATTACKS: Registry[type[MembershipAttack]] = Registry("attack")


@ATTACKS.register("loss")
class LossThresholdAttack(MembershipAttack):
    """Loss threshold (Yeom et al. 2018): members have lower loss; score = -cross-entropy of the true label."""

    name = "loss"


@ATTACKS.register("confidence")
class ConfidenceAttack(MembershipAttack):
    """Confidence threshold: members get higher confidence; score = softmax probability of the true label."""

    name = "confidence"


@ATTACKS.register("entropy")
class EntropyAttack(MembershipAttack):
    """Entropy threshold: members get peaked predictions; score = minus the softmax entropy."""

    name = "entropy"


@ATTACKS.register("modified-entropy")
class ModifiedEntropyAttack(MembershipAttack):
    """Modified entropy (Song & Mittal 2021): entropy that also penalises confident wrong predictions."""

    name = "modified-entropy"


def create(name: str, **kwargs: Any) -> MembershipAttack:
    """Build the attack registered as ``name`` (unknown names raise DDError with a suggestion)."""
    return ATTACKS.get(name)(**kwargs)


def run_attack(name: str, model: nn.Module, members: LabeledData, nonmembers: LabeledData, *,
               device: str | torch.device = "cpu", batch_size: int = 1024, max_points: int = 400
               ) -> dict[str, Any]:
    """Score members and non-members with attack ``name``; ``{"attack": name, **roc_metrics(...)}``."""
    attack = create(name)
    member_scores = attack.score(model, members, device=device, batch_size=batch_size)
    nonmember_scores = attack.score(model, nonmembers, device=device, batch_size=batch_size)
    return {"attack": attack.name, **roc_metrics(member_scores, nonmember_scores, max_points=max_points)}

"""Black-box membership-inference attacks that score each example against one trained target model.

Every attack maps (model, examples) to one score per example, higher meaning "more likely a training member";
:func:`~ddeval.privacy.metrics.roc_metrics` turns member and non-member scores into AUC and TPR at low FPR.

- ``loss`` (Yeom et al. 2018): score = minus the cross-entropy loss of the true label.
- ``confidence``: score = the softmax probability of the true label.

>>> sorted(ATTACKS.names())
['confidence', 'loss']
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddeval.privacy.metrics import roc_metrics
from distillers.data import LabeledData
from distillers.registry import Registry


class MembershipAttack:
    """Base class: subclasses set ``name`` and implement :meth:`_score_logits` (per-example scores)."""

    name: ClassVar[str] = ""

    def score(self, model: nn.Module, data: LabeledData, *, device: str | torch.device = "cpu",
              batch_size: int = 1024) -> np.ndarray:
        """Per-example scores (float64, ``[len(data)]``); the model runs in eval mode without gradients.

        The model is moved to ``device`` and its train/eval mode is restored afterwards.
        """
        was_training = model.training
        model.to(device).eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(data), batch_size):
                    x = data.x[start:start + batch_size].to(device)
                    y = data.y[start:start + batch_size].to(device)
                    logits = model(x).double()  # float64 keeps near-zero losses apart (fewer ties)
                    out.append(self._score_logits(logits, y).cpu())
        finally:
            model.train(was_training)
        return torch.cat(out).numpy()

    def _score_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


ATTACKS: Registry[type[MembershipAttack]] = Registry("attack")


@ATTACKS.register("loss")
class LossThresholdAttack(MembershipAttack):
    """Loss threshold (Yeom et al. 2018): members have lower loss; score = -cross-entropy of the true label."""

    name = "loss"

    def _score_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(logits, labels, reduction="none")


@ATTACKS.register("confidence")
class ConfidenceAttack(MembershipAttack):
    """Confidence threshold: members get higher confidence; score = softmax probability of the true label."""

    name = "confidence"

    def _score_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)


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

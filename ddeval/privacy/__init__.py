"""Privacy evaluation: membership-inference attacks and their metrics.

Optional heavy integrations (Opacus DP-SGD, audits) live in their own modules and are not imported here.
"""

from ddeval.privacy.attacks import (
    ATTACKS,
    ConfidenceAttack,
    LossThresholdAttack,
    MembershipAttack,
    run_attack,
)
from ddeval.privacy.metrics import roc_metrics

__all__ = ["ATTACKS", "ConfidenceAttack", "LossThresholdAttack", "MembershipAttack", "roc_metrics", "run_attack"]

"""Privacy evaluation: membership-inference attacks (threshold attacks and LiRA) and their metrics.

Optional heavy integrations (Opacus DP-SGD, audits) live in their own modules and are not imported here.
"""

from ddeval.privacy.attacks import (
    ATTACKS,
    THRESHOLD_ATTACKS,
    ConfidenceAttack,
    EntropyAttack,
    LossThresholdAttack,
    MembershipAttack,
    ModifiedEntropyAttack,
    run_attack,
    threshold_scores,
)
from ddeval.privacy.lira import (
    VARIANTS,
    leave_one_out,
    lira_scores,
    lira_statistic,
    query_logits,
    threshold_leave_one_out,
)
from ddeval.privacy.metrics import bootstrap_intervals, roc_metrics

__all__ = [
    "ATTACKS", "THRESHOLD_ATTACKS", "VARIANTS", "ConfidenceAttack", "EntropyAttack", "LossThresholdAttack",
    "MembershipAttack", "ModifiedEntropyAttack", "bootstrap_intervals", "leave_one_out", "lira_scores",
    "lira_statistic", "query_logits", "roc_metrics", "run_attack", "threshold_leave_one_out", "threshold_scores",
]

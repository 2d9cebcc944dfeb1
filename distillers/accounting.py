"""Privacy accounting shared by every DP component (DP distillers here, DP-SGD in ddeval): Opacus' accountants.

A subsampled Gaussian mechanism run ``steps`` times at sample rate ``q`` with noise multiplier σ is
(ε, δ)-DP with the ε these functions return. Opacus is imported lazily (it is heavy and optional at import time).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from distillers.config import check, is_number

ACCOUNTANTS = ("prv", "rdp")


def check_budget(cfg: Any, *, default_epsilon: float, prefix: str = "") -> None:
    """Validate the privacy budget keys every DP config shares (``epsilon`` xor ``noise_multiplier``, and
    ``accountant``), filling ``epsilon = default_epsilon`` on a frozen ``cfg`` when neither is given."""
    check(cfg.epsilon is None or cfg.noise_multiplier is None,
          f"Give either {prefix}epsilon or {prefix}noise_multiplier, not both; remove one of them.")
    if cfg.epsilon is None and cfg.noise_multiplier is None:
        object.__setattr__(cfg, "epsilon", default_epsilon)
    if cfg.epsilon is not None:
        check(is_number(cfg.epsilon) and cfg.epsilon > 0,
              f"{prefix}epsilon must be a positive finite number, got {cfg.epsilon!r}.")
    if cfg.noise_multiplier is not None:
        check(is_number(cfg.noise_multiplier) and cfg.noise_multiplier >= 0,
              f"{prefix}noise_multiplier must be a finite number >= 0, got {cfg.noise_multiplier!r}.")
    check(cfg.accountant in ACCOUNTANTS,
          f"{prefix}accountant must be one of {', '.join(ACCOUNTANTS)}, got {cfg.accountant!r}.")


def accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                       accountant: str) -> float | None:
    """The accountant's ε after ``steps`` subsampled Gaussian steps; ``None`` when σ = 0 (no guarantee)."""
    if noise_multiplier <= 0:
        return None
    if steps == 0:
        return 0.0
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with np.errstate(divide="ignore"), warnings.catch_warnings():  # q = 1 makes PRV's log(1 - q) = -inf
        warnings.filterwarnings("ignore", message=".*[Oo]ptimal order.*")  # RDP grid edge: still an upper bound
        eps = float(acc.get_epsilon(delta=delta))
    return eps if math.isfinite(eps) else None


@functools.lru_cache(maxsize=64)
def noise_for_epsilon(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest σ (Opacus' bisection, within 0.01 of ε) with accountant ε ≤ ``epsilon``; cached, as the
    search takes seconds. Raises ValueError when ε is unreachable."""
    from opacus.accountants.utils import get_noise_multiplier

    with np.errstate(divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Oo]ptimal order.*")
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=accountant))

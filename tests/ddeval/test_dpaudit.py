"""Canary audits (ddeval.privacy.dpaudit): canaries, the audit drivers, and soundness on the DP distillers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from ddeval.privacy.dp import DPConfig
from ddeval.privacy.dpaudit import (
    audit_dp,
    canary_audit,
    distiller_mechanism,
    dpsgd_mechanism,
    make_canaries,
    one_run_canary_audit,
)
from distillers.errors import DDError

DELTA = 1e-3
M = 50  # canaries per one-run audit
DISTILL: dict[str, Any] = dict(iterations=10, batch_real=64, network="convnet", network_args={"width": 16}, fast=False)
EXTRA: dict[str, dict[str, Any]] = {"dp-dm": {"dsa": False}, "psg": {"outer_loop": 2, "inner_loop": 1}}


@pytest.fixture(scope="module")
def pool(tiny_digits):
    train, _ = tiny_digits
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:100 + M]
    return train.subset(idx)


def test_make_canaries(tiny_digits) -> None:
    train, _ = tiny_digits
    base, x, y = make_canaries(train, 30, "mislabel", seed=0)
    assert len(base) == len(train) - 30 and x.shape == (30, 1, 8, 8)
    # every canary is a real image whose label was changed
    matches = (train.x.flatten(1)[None] == x.flatten(1)[:, None]).all(-1)
    assert bool(matches.any(1).all())
    true_labels = torch.stack([train.y[matches[i]][0] for i in range(30)])
    assert bool((true_labels != y).all())
    base2, x2, y2 = make_canaries(train, 5, "ood", seed=0)
    assert len(base2) == len(train) and set(x2.abs().unique().tolist()) == {2.5}
    with pytest.raises(DDError, match="canary kind"):
        make_canaries(train, 5, "glitter")


def test_sample_rate_must_not_depend_on_canaries(pool) -> None:
    with pytest.raises(DDError, match="batch size"):
        dpsgd_mechanism(pool, DPConfig(noise_multiplier=1.0, batch_size=50), canaries=M)


def test_canary_audit_on_a_gaussian_mechanism() -> None:
    """A pure Gaussian mechanism with sensitivity 1 and σ = 0.5 (μ = 2-GDP): the bound is > 0 and ≤ truth."""
    from ddeval.privacy.audit import gdp_epsilon

    def gauss(include: bool, seed: int) -> float:
        return float(np.random.default_rng(seed).normal(2.0 if include else 0.0, 1.0))

    truth = gdp_epsilon(2.0, DELTA)
    r = canary_audit(gauss, trials=2000, delta=DELTA, seed=0, epsilon_theory=truth)
    assert 0.5 < r["epsilon_lb"] <= truth and r["sound"]
    null = canary_audit(lambda inc, s: float(np.random.default_rng(s).normal()), trials=400, delta=DELTA)
    assert null["epsilon_lb"] < 0.3 and null["epsilon_theory"] is None


def _distiller_one_run(method: str, pool, privacy: dict, seed: int) -> dict:
    mech = distiller_mechanism(method, {**DISTILL, **EXTRA[method], **privacy}, pool, 1, canaries=M,
                               score="model", network="mlp", seed=0)
    return one_run_canary_audit(mech.multi, canaries=M, delta=DELTA, seed=seed, epsilon_source=mech)


@pytest.mark.parametrize("method", ["dp-dm", "psg"])
def test_dp_distiller_audits_are_sound(method: str, pool) -> None:
    """20 seeded one-run audits per DP distiller at ε = 1: every ε_LB ≤ the ε its meta["dp"] reports."""
    results = [_distiller_one_run(method, pool, dict(epsilon=1.0, delta=DELTA, accountant="rdp"), seed)
               for seed in range(20)]
    for r in results:
        assert r["epsilon_theory"] is not None and r["epsilon_theory"] <= 1.0 + 1e-6
        assert r["epsilon_lb"] <= r["epsilon_theory"] and r["sound"] is True
    # non-private version of the same audit (σ = 0, no clipping): reported, runs end to end
    open_run = _distiller_one_run(method, pool, dict(noise_multiplier=0.0, max_grad_norm=1e6, delta=DELTA), 0)
    assert open_run["epsilon_theory"] is None and open_run["epsilon_lb"] >= 0.0


def test_audit_dp_front_door(pool) -> None:
    config = {"noise_multiplier": 2.0, "epochs": 5, "batch_size": 1000, "accountant": "rdp", "network": "mlp"}
    r = audit_dp("dp-sgd", pool, config=config, trials=8, canaries=20, delta=DELTA, seed=0)
    assert r["target"] == "dp-sgd" and r["delta"] == DELTA
    assert r["epsilon_theory"] > 0 and r["canary"]["trials"] == 8 and r["one_run"]["num_canaries"] == 20
    assert r["canary"]["epsilon_lb"] <= r["epsilon_theory"] and r["one_run"]["epsilon_lb"] <= r["epsilon_theory"]
    assert r["mechanism"]["noise_multiplier"] == 2.0
    with pytest.raises(DDError, match="Unknown key"):
        audit_dp("dp-sgd", pool, config={"epochz": 3}, trials=8)

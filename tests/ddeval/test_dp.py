"""DP-SGD training (ddeval.privacy.dp) and its audits: utility, accounting, determinism, soundness, power."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from ddeval.privacy.dp import DPConfig, accountant_epsilon, train_and_evaluate_dp, train_dp
from ddeval.privacy.dpaudit import canary_audit, dpsgd_mechanism, one_run_canary_audit
from distillers.config import build_config
from distillers.errors import DDError

# The audit setting (shared by the soundness and power tests, so the power figure is for the same audit):
# a 32-unit MLP trained full-batch (q = 1) for 60 steps, lr 0.3, momentum 0.9, on 100 digits plus the IN
# half of 100 mislabelled canaries; delta = 1e-3; target ε = 1 (below what the non-private audit reaches,
# ~1.4, so a broken mechanism would be caught).
AUDIT_DELTA = 1e-3
AUDIT_TRAIN: dict[str, Any] = dict(epochs=60, batch_size=1000, lr=0.3, momentum=0.9)
CANARIES = 100


def test_config_validation() -> None:
    assert DPConfig().epsilon == 8.0 and DPConfig().noise_multiplier is None
    assert DPConfig(noise_multiplier=1.0).epsilon is None
    with pytest.raises(DDError, match="not both"):
        DPConfig(epsilon=2.0, noise_multiplier=1.0)
    with pytest.raises(DDError, match="accountant"):
        build_config(DPConfig, {"accountant": "gdp"})
    with pytest.raises(DDError, match="epsilon"):
        DPConfig(epsilon=-1.0)
    with pytest.raises(DDError, match="delta"):
        DPConfig(delta=1.5)
    with pytest.raises(DDError, match="Unknown key"):
        build_config(DPConfig, {"epsilonn": 3})
    assert DPConfig().resolved_delta(400) == pytest.approx(1 / 4000)


def test_dp_sgd_trains_and_accounts(tiny_digits) -> None:
    train, test = tiny_digits
    cfg = DPConfig(epsilon=4.0, epochs=8, batch_size=100, accountant="rdp")
    result = train_and_evaluate_dp("mlp", train, test, cfg, seed=0)
    assert result["accuracy"] > 0.5  # chance is 0.1
    assert result["delta"] == pytest.approx(1 / (10 * len(train)))
    assert result["sample_rate"] == pytest.approx(0.25) and result["steps"] == 32
    assert result["epsilon"] <= 4.0 + 1e-6 and result["epsilon"] > 3.8
    # the same number from Opacus' own accountant stepped the same way
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(result["steps"]):
        acc.step(noise_multiplier=result["noise_multiplier"], sample_rate=result["sample_rate"])
    assert acc.get_epsilon(result["delta"]) == pytest.approx(result["epsilon"], rel=1e-9)
    model = result["model"]
    assert type(model).__name__ == "MLP"
    assert all(not hasattr(p, "grad_sample") or p.grad_sample is None for p in model.parameters())


def test_prv_is_default_and_below_target(tiny_digits) -> None:
    train, _ = tiny_digits
    cfg = DPConfig(epsilon=3.0, epochs=2, batch_size=200)
    assert cfg.accountant == "prv"
    result = train_dp("mlp", train, cfg, seed=0, network_args={"hidden": 16})
    assert result["accountant"] == "prv"
    assert 2.9 < result["epsilon"] <= 3.0 + 1e-6
    assert accountant_epsilon(result["noise_multiplier"], result["sample_rate"], result["steps"],
                              result["delta"], "prv") == pytest.approx(result["epsilon"])


def test_same_seed_same_model(tiny_digits) -> None:
    train, _ = tiny_digits
    cfg = DPConfig(noise_multiplier=1.0, epochs=2, batch_size=64, accountant="rdp")
    a = train_dp("mlp", train, cfg, seed=3, network_args={"hidden": 16})["model"].state_dict()
    b = train_dp("mlp", train, cfg, seed=3, network_args={"hidden": 16})["model"].state_dict()
    c = train_dp("mlp", train, cfg, seed=4, network_args={"hidden": 16})["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_divergence_is_a_ddError(tiny_digits) -> None:
    train, _ = tiny_digits
    cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=1e30, epochs=3, batch_size=400, lr=1e30)
    with pytest.raises(DDError, match="learning rate"):
        train_dp("mlp", train, cfg, seed=0)


@pytest.fixture(scope="module")
def audit_data(tiny_digits):
    train, _ = tiny_digits
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:100 + CANARIES]
    return train.subset(idx)


def _one_run(data, cfg: DPConfig, seed: int) -> dict:
    mech = dpsgd_mechanism(data, cfg, network="mlp", network_args={"hidden": 32}, canaries=CANARIES, seed=0)
    return one_run_canary_audit(mech.multi, canaries=CANARIES, delta=AUDIT_DELTA, seed=seed, epsilon_source=mech)


def test_one_run_audits_sound_and_powerful(audit_data) -> None:
    """20 seeded one-run audits of DP-SGD at ε = 1: every ε_LB ≤ the accountant's ε. The same audit of the
    non-private pipeline (σ = 0, clipping at 1e4, i.e. none) certifies ε_LB > 1 (measured ≈ 1.39: 97 of
    100 guesses right)."""
    private = DPConfig(epsilon=1.0, delta=AUDIT_DELTA, accountant="rdp", **AUDIT_TRAIN)
    results = [_one_run(audit_data, private, seed) for seed in range(20)]
    for r in results:
        assert r["epsilon_theory"] is not None and r["epsilon_theory"] <= 1.0 + 1e-6
        assert r["epsilon_lb"] <= r["epsilon_theory"], r
        assert r["sound"] is True
    open_cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=1e4, delta=AUDIT_DELTA, **AUDIT_TRAIN)
    power = [_one_run(audit_data, open_cfg, seed) for seed in range(2)]
    assert all(p["epsilon_theory"] is None for p in power)
    assert min(p["epsilon_lb"] for p in power) > 1.0  # above the private run's accountant ε
    scores, inc = np.array(power[0]["scores"]), np.array(power[0]["included"])
    assert scores[inc].mean() > scores[~inc].mean() + 5


def test_canary_audit_dp_sgd(audit_data) -> None:
    """Many-run audit, one out-of-distribution canary: private ε_LB ≤ accountant ε; non-private clearly > 0."""
    small = audit_data.subset(torch.arange(60))
    train_cfg: dict[str, Any] = dict(epochs=40, batch_size=1000, lr=0.3, momentum=0.9)
    private = DPConfig(epsilon=1.0, delta=AUDIT_DELTA, accountant="rdp", **train_cfg)
    mech = dpsgd_mechanism(small, private, network="mlp", network_args={"hidden": 16}, canaries=1, seed=1,
                           canary="ood")
    r = canary_audit(mech, trials=48, delta=AUDIT_DELTA, seed=0)
    assert r["epsilon_theory"] <= 1.0 + 1e-6 and r["epsilon_lb"] <= r["epsilon_theory"] and r["sound"]
    assert len(r["in_scores"]) == len(r["out_scores"]) == 24
    open_cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=1e4, delta=AUDIT_DELTA, **train_cfg)
    mech = dpsgd_mechanism(small, open_cfg, network="mlp", network_args={"hidden": 16}, canaries=1, seed=1,
                           canary="ood")
    r = canary_audit(mech, trials=48, delta=AUDIT_DELTA, seed=0)
    assert r["epsilon_theory"] is None and r["sound"] is None
    assert r["epsilon_lb"] > 0.3  # 12 vs 12 held-out scores; perfect separation would give ≈ 1.0
    assert r["gdp"]["epsilon"] >= r["epsilon_lb"] - 1e-9

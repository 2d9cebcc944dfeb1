"""ddeval.privacy: ROC metrics checked against scikit-learn, and threshold attacks on an overfit model."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from ddeval.privacy import (
    ATTACKS,
    ConfidenceAttack,
    EntropyAttack,
    LossThresholdAttack,
    ModifiedEntropyAttack,
    bootstrap_intervals,
    roc_metrics,
    run_attack,
    threshold_scores,
)
from ddeval.privacy.metrics import resampled_metrics
from distillers.errors import DDError


def _sk_tpr_at(members, nonmembers, fpr_target):
    y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    fpr, tpr, _ = roc_curve(y, np.r_[members, nonmembers], drop_intermediate=False)
    return float(tpr[fpr <= fpr_target + 1e-12].max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    members = np.round(rng.normal(0.5, 1.0, 700), 1)  # rounding makes many ties
    nonmembers = np.round(rng.normal(0.0, 1.0, 1200), 1)
    m = roc_metrics(members, nonmembers)
    y = np.r_[np.ones(700), np.zeros(1200)]
    assert m["auc"] == pytest.approx(roc_auc_score(y, np.r_[members, nonmembers]), abs=1e-12)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(_sk_tpr_at(members, nonmembers, 0.01), abs=1e-12)
    assert m["tpr_at_0p1pct_fpr"] == pytest.approx(_sk_tpr_at(members, nonmembers, 0.001), abs=1e-12)
    assert (m["num_members"], m["num_nonmembers"]) == (700, 1200)
    assert m["resolves_1pct_fpr"] and m["resolves_0p1pct_fpr"] and m["note"] == ""


def test_continuous_scores_and_compact_roc():
    rng = np.random.default_rng(5)
    members, nonmembers = rng.normal(1.0, 1.0, 3000), rng.normal(0.0, 1.0, 3000)
    m = roc_metrics(torch.tensor(members), nonmembers, max_points=200)
    y = np.r_[np.ones(3000), np.zeros(3000)]
    assert m["auc"] == pytest.approx(roc_auc_score(y, np.r_[members, nonmembers]), abs=1e-12)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(_sk_tpr_at(members, nonmembers, 0.01), abs=1e-12)
    fpr, tpr = m["roc"]["fpr"], m["roc"]["tpr"]
    assert len(fpr) == len(tpr) <= 200
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert all(a <= b for a, b in zip(fpr, fpr[1:], strict=False))
    assert all(a <= b for a, b in zip(tpr, tpr[1:], strict=False))
    assert sum(f <= 0.01 for f in fpr) >= 20  # low-FPR region kept in detail
    # every kept point is a vertex of the exact ROC
    sk_fpr, sk_tpr, _ = roc_curve(y, np.r_[members, nonmembers], drop_intermediate=False)
    exact = set(zip(np.round(sk_fpr, 12), np.round(sk_tpr, 12), strict=True))
    assert all((round(f, 12), round(t, 12)) in exact for f, t in zip(fpr, tpr, strict=True))
    json.dumps(m)  # plain Python types only
    assert all(type(v) is float for v in fpr + tpr)
    assert type(m["auc"]) is float and type(m["num_members"]) is int and type(m["resolves_1pct_fpr"]) is bool


def test_perfect_separation_and_reversed():
    m = roc_metrics(np.linspace(2, 3, 50), np.linspace(0, 1, 500))
    assert m["auc"] == 1.0 and m["tpr_at_1pct_fpr"] == 1.0 and m["tpr_at_0p1pct_fpr"] == 1.0
    r = roc_metrics(np.linspace(0, 1, 50), np.linspace(2, 3, 500))
    assert r["auc"] == 0.0 and r["tpr_at_1pct_fpr"] == 0.0


def test_all_tied_scores_give_half():
    m = roc_metrics(np.zeros(30), np.zeros(300))
    assert m["auc"] == 0.5 and m["tpr_at_1pct_fpr"] == 0.0
    assert m["roc"] == {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}


def test_identical_distributions_are_chance():
    rng = np.random.default_rng(11)
    m = roc_metrics(rng.normal(size=20000), rng.normal(size=20000))
    assert m["auc"] == pytest.approx(0.5, abs=0.01)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.01, abs=0.004)
    assert m["tpr_at_0p1pct_fpr"] == pytest.approx(0.001, abs=0.0015)


def test_resolution_flags_and_notes():
    rng = np.random.default_rng(0)
    few = roc_metrics(rng.normal(size=40), rng.normal(size=50))
    assert few["fpr_resolution"] == pytest.approx(1 / 50)
    assert not few["resolves_1pct_fpr"] and not few["resolves_0p1pct_fpr"]
    assert "1% and 0.1% FPR" in few["note"] and "1/50" in few["note"]
    some = roc_metrics(rng.normal(size=40), rng.normal(size=450))
    assert some["resolves_1pct_fpr"] and not some["resolves_0p1pct_fpr"]
    assert some["note"] == "only 450 non-members: 0.1% FPR is below the resolution 1/450"
    exactly = roc_metrics(rng.normal(size=10), rng.normal(size=1000))
    assert exactly["resolves_0p1pct_fpr"] and exactly["note"] == ""
    # exactly one false positive is allowed at 1% FPR with 100 non-members (no float off-by-one)
    edge = roc_metrics([5.0, 4.0, 3.0], [4.5] + [0.0] * 99)
    assert edge["tpr_at_1pct_fpr"] == pytest.approx(1.0)


def test_invalid_inputs():
    with pytest.raises(DDError, match="No member"):
        roc_metrics([], [0.1])
    with pytest.raises(DDError, match="No non-member"):
        roc_metrics([0.1], np.array([]))
    with pytest.raises(DDError, match="NaN"):
        roc_metrics([0.1, float("nan")], [0.2])
    with pytest.raises(DDError, match="1-D"):
        roc_metrics(np.zeros((3, 2)), [0.2])
    with pytest.raises(DDError, match="max_points"):
        roc_metrics([1.0], [0.0], max_points=2)
    inf = roc_metrics([float("inf"), 1.0], [float("-inf"), 0.0])  # infinities still rank
    assert inf["auc"] == 1.0


# ------------------------------------------------------------------------------------------------ attacks
@pytest.fixture()
def one_thread():
    """Tiny nets run ~100x faster on one thread when the shared CPU is busy (no OpenMP contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _overfit_mlp(data) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(data.x), data.y).backward()
        opt.step()
    return net


def test_attacks_beat_chance_on_overfit_model(tiny_digits, one_thread):
    train, test = tiny_digits
    members = train.stratified_indices(2, torch.Generator().manual_seed(0))
    members = train.subset(members)  # 20 points
    net = _overfit_mlp(members)
    net.train()
    for name in ("loss", "confidence"):
        result = run_attack(name, net, members, test)
        assert result["attack"] == name
        assert result["num_members"] == 20 and result["num_nonmembers"] == len(test)
        assert result["auc"] > 0.6, result["auc"]
    assert net.training  # mode restored


def test_attack_scores_match_definitions(tiny_digits, one_thread):
    train, _ = tiny_digits
    data = train.subset(range(25))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    logits = net(data.x).detach().double()
    loss = LossThresholdAttack().score(net, data, batch_size=7)
    conf = ConfidenceAttack().score(net, data, batch_size=1000)
    assert loss.shape == conf.shape == (25,) and loss.dtype == np.float64
    expected_loss = -nn.functional.cross_entropy(logits, data.y, reduction="none").numpy()
    expected_conf = torch.softmax(logits, 1)[torch.arange(25), data.y].numpy()
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(conf, expected_conf, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.exp(loss), conf, rtol=1e-6)


def test_threshold_scores_match_definitions():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, size=(40, 6))
    labels = rng.integers(0, 6, size=40)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    rows = np.arange(40)
    p_y = p[rows, labels]
    np.testing.assert_allclose(threshold_scores("loss", logits, labels), np.log(p_y), rtol=1e-10)
    np.testing.assert_allclose(threshold_scores("confidence", torch.tensor(logits), labels), p_y, rtol=1e-10)
    np.testing.assert_allclose(threshold_scores("entropy", logits, labels), (p * np.log(p)).sum(1), rtol=1e-10)
    mentr = np.array([-(1 - p_y[i]) * np.log(p_y[i])
                      - sum(p[i, k] * np.log(1 - p[i, k]) for k in range(6) if k != labels[i]) for i in range(40)])
    np.testing.assert_allclose(threshold_scores("modified-entropy", logits, labels), -mentr, rtol=1e-10)
    # modified entropy tells a confident right answer from a confident wrong one; plain entropy cannot
    sure = np.array([[9.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    right_wrong = np.array([0, 1])
    ent = threshold_scores("entropy", sure, right_wrong)
    mod = threshold_scores("modified-entropy", sure, right_wrong)
    assert ent[0] == ent[1] and mod[0] > mod[1] + 5
    # extreme logits: the probability 1 - 1e-8000 still gives finite, correctly ordered scores
    huge = np.array([[1e4, -1e4, -1e4], [1e4, -1e4, -1e4], [1.0, 0.0, 0.0]])
    for name in ("loss", "confidence", "entropy", "modified-entropy"):
        got = threshold_scores(name, huge, np.array([0, 1, 0]))
        assert np.isfinite(got).all(), name
        assert got[0] > got[2], (name, got)
        if name == "entropy":  # label-blind
            assert got[1] == got[0]
        else:
            assert got[1] < got[2], (name, got)
    assert threshold_scores("loss", huge[:2], np.array([0, 1]))[1] == pytest.approx(-2e4, rel=1e-12)
    with pytest.raises(DDError, match="Unknown threshold attack"):
        threshold_scores("lira", logits, labels)
    with pytest.raises(DDError, match=r"\[n, K\]"):
        threshold_scores("loss", logits[None], labels)


def test_new_attacks_score_models(tiny_digits):
    train, _ = tiny_digits
    data = train.subset(range(17))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    logits = net(data.x).detach()
    for attack in (EntropyAttack(), ModifiedEntropyAttack()):
        got = attack.score(net, data, batch_size=4)
        assert got.shape == (17,) and got.dtype == np.float64
        np.testing.assert_allclose(got, threshold_scores(attack.name, logits, data.y), rtol=1e-6)


def test_attack_registry():
    assert {"loss", "confidence", "entropy", "modified-entropy"} <= set(ATTACKS.names())
    with pytest.raises(DDError, match="Did you mean \"loss\""):
        ATTACKS.get("los")


# ---------------------------------------------------------------------------------------------- bootstrap
def test_vectorised_resamples_equal_roc_metrics_on_each_resample():
    rng = np.random.default_rng(8)
    members = np.round(rng.normal(0.7, 1.0, 90), 1)  # ties within and across the groups
    nonmembers = np.round(rng.normal(0.0, 1.0, 230), 1)
    pos, neg = np.sort(members), np.sort(nonmembers)
    idx_pos = rng.integers(0, pos.size, size=(12, pos.size))
    idx_neg = rng.integers(0, neg.size, size=(12, neg.size))
    w_pos = np.stack([np.bincount(r, minlength=pos.size) for r in idx_pos]).astype(float)
    w_neg = np.stack([np.bincount(r, minlength=neg.size) for r in idx_neg]).astype(float)
    got = resampled_metrics(pos, neg, w_pos, w_neg)
    for b in range(12):
        exact = roc_metrics(pos[idx_pos[b]], neg[idx_neg[b]])
        for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr"):
            assert got[key][b] == pytest.approx(exact[key], abs=1e-12), (key, b)
    # the edge case of test_resolution_flags_and_notes: exactly one false positive allowed at 1% FPR
    edge = resampled_metrics(np.array([3.0, 4.0, 5.0]), np.array([0.0] * 99 + [4.5]), np.ones((1, 3)),
                             np.ones((1, 100)))
    assert edge["tpr_at_1pct_fpr"][0] == 1.0


def test_bootstrap_intervals_keys_coverage_and_speed():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(1.0, 1.0, 5000), rng.normal(0.0, 1.0, 5000)
    start = time.perf_counter()
    m = roc_metrics(members, nonmembers, bootstrap=200, seed=3)
    assert time.perf_counter() - start < 2.0
    ci = m["ci"]
    assert set(ci) == {"auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr", "level", "resamples"}
    assert ci["level"] == 0.95 and ci["resamples"] == 200
    json.dumps(m)
    for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr"):
        lo, hi = ci[key]
        assert type(lo) is float and lo <= m[key] <= hi, key
    true_auc = 0.5 * math.erfc(-1.0 / 2.0)  # P(N(1,1) > N(0,1)) = Phi(1 / sqrt 2)
    assert ci["auc"][0] < true_auc < ci["auc"][1]
    assert ci["auc"][1] - ci["auc"][0] < 0.03
    # same seed, same interval; the existing keys do not change with bootstrap
    assert roc_metrics(members, nonmembers, bootstrap=200, seed=3)["ci"] == ci
    plain = roc_metrics(members, nonmembers)
    assert "ci" not in plain and {k: v for k, v in m.items() if k != "ci"} == plain
    # a wider level gives a wider interval
    wide = bootstrap_intervals(members, nonmembers, resamples=200, seed=3, level=0.99)
    assert wide["auc"][0] <= ci["auc"][0] and wide["auc"][1] >= ci["auc"][1]
    # coverage: the 90% interval holds the true AUC in most of 40 independent small experiments
    hits = 0
    for seed in range(40):
        r = np.random.default_rng(100 + seed)
        lo, hi = bootstrap_intervals(r.normal(1.0, 1.0, 150), r.normal(0.0, 1.0, 150), resamples=200,
                                     seed=seed, level=0.9)["auc"]
        hits += lo < true_auc < hi
    assert 30 <= hits <= 40, hits


def test_bootstrap_errors():
    with pytest.raises(DDError, match="bootstrap"):
        roc_metrics([1.0], [0.0], bootstrap=-1)
    with pytest.raises(DDError, match="bootstrap"):
        roc_metrics([1.0], [0.0], bootstrap=2.5)  # type: ignore[arg-type]
    with pytest.raises(DDError, match="level"):
        roc_metrics([1.0], [0.0], bootstrap=10, level=95)

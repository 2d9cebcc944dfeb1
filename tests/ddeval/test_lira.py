"""ddeval.privacy.lira: the LiRA statistic, Gaussian scoring, leave-one-out pooling, and attack power on real
overfit models (tiny MLPs on 8x8 digits) against the loss attack on the same split."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from ddeval.privacy import (
    VARIANTS,
    leave_one_out,
    lira_scores,
    lira_statistic,
    query_logits,
    roc_metrics,
    threshold_leave_one_out,
    threshold_scores,
)
from distillers.errors import DDError


# ------------------------------------------------------------------------------------------ statistic
def test_statistic_matches_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4, 50, 10))
    labels = rng.integers(0, 10, size=50)
    phi = lira_statistic(logits, labels)
    assert phi.shape == (4, 50) and phi.dtype == np.float64
    p = torch.softmax(torch.tensor(logits), -1).numpy()
    p_y = np.take_along_axis(p, np.broadcast_to(labels[:, None], (4, 50, 1)), -1)[..., 0]
    np.testing.assert_allclose(phi, np.log(p_y) - np.log(1 - p_y), rtol=1e-9, atol=1e-9)
    # equal to log p_y - log(sum of the other probabilities), computed term by term
    i, n = 2, 7
    others = [p[i, n, k] for k in range(10) if k != labels[n]]
    assert phi[i, n] == pytest.approx(np.log(p[i, n, labels[n]]) - np.log(sum(others)), rel=1e-9)
    # per-query layout [n, Q, K]: labels aligned with the point axis, explicitly or automatically
    per_query = np.stack([logits[0], logits[1]], axis=1)  # [50, 2, 10]
    expected = np.stack([phi[0], phi[1]], axis=1)
    np.testing.assert_allclose(lira_statistic(per_query, labels[:, None]), expected, rtol=1e-12)
    np.testing.assert_allclose(lira_statistic(per_query, labels), expected, rtol=1e-12)
    np.testing.assert_allclose(lira_statistic(torch.tensor(logits[0]), torch.tensor(labels)), phi[0], rtol=1e-12)


def test_statistic_stable_for_huge_logits():
    k = 10
    big = np.full((3, k), -1e4)
    big[:, 0] = 1e4
    phi = lira_statistic(big, np.array([0, 1, 2]))
    assert np.isfinite(phi).all()
    # confident and right: 2e4 - log(k - 1); confident and wrong: -(2e4) (the top logit dominates the rest)
    assert phi[0] == pytest.approx(2e4 - np.log(k - 1), abs=1e-9)
    assert phi[1] == pytest.approx(-2e4, abs=1e-9) and phi[2] == pytest.approx(-2e4, abs=1e-9)
    # float32 logits as the model returns them are promoted to float64 before the arithmetic
    near_one = np.array([[40.0, 0.0]], dtype=np.float32)  # p_y = 1 - 4e-18: log(1 - p_y) underflows naively
    assert lira_statistic(near_one, np.array([0]))[0] == pytest.approx(40.0, abs=1e-12)
    for name in ("loss", "confidence", "entropy", "modified-entropy"):
        assert np.isfinite(threshold_scores(name, big, np.array([0, 1, 2]))).all(), name


def test_statistic_rejects_bad_input():
    with pytest.raises(DDError, match="NaN"):
        lira_statistic(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(DDError, match="Labels"):
        lira_statistic(np.zeros((3, 4)), np.array([0, 1, 9]))
    with pytest.raises(DDError, match="do not match"):
        lira_statistic(np.zeros((3, 4)), np.array([0, 1]))


def test_query_logits_with_flip(tiny_digits):
    train, _ = tiny_digits
    data = train.subset(range(23))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    net.train()
    both = query_logits(net, data, flip=True, batch_size=5)
    one = query_logits(net, data, flip=False)
    assert both.shape == (23, 2, 10) and one.shape == (23, 1, 10) and both.dtype == np.float32
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        plain = net(data.x).numpy()
        mirrored = net(torch.flip(data.x, dims=[-1])).numpy()
    np.testing.assert_allclose(both[:, 0], plain, rtol=1e-5, atol=1e-6)  # eval mode: dropout off
    np.testing.assert_allclose(both[:, 1], mirrored, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one[:, 0], plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(both[:, 0], both[:, 1])


# ------------------------------------------------------------------------------------- Gaussian scoring
def _hand_case():
    # 6 shadows, 3 points, 2 queries. Point 0: 3 IN / 3 OUT; point 1: 1 IN / 5 OUT; point 2: 0 IN / 6 OUT.
    shadows = np.array([
        [[2.0, 2.2], [0.5, 0.4], [-1.0, -0.8]],
        [[2.5, 2.1], [-0.5, -0.6], [-1.5, -1.1]],
        [[1.5, 1.9], [0.0, 0.3], [-0.5, -0.9]],
        [[0.1, 0.0], [1.0, 1.2], [-1.2, -1.0]],
        [[-0.3, 0.2], [0.2, -0.1], [-0.8, -1.3]],
        [[0.4, -0.4], [2.0, 2.5], [-1.1, -0.7]],
    ])
    shadow_in = np.array([
        [True, False, False], [True, False, False], [True, False, False],
        [False, False, False], [False, False, False], [False, True, False],
    ])
    target = np.array([[1.8, 2.0], [1.5, 1.0], [-0.2, 0.1]])
    return target, shadows, shadow_in


def _pooled(shadows, mask):
    """Hand-written pooled within-point standard deviation per query."""
    num, dof = np.zeros(shadows.shape[2]), 0
    for i in range(shadows.shape[1]):
        vals = shadows[mask[:, i], i]
        if len(vals) >= 2:
            num += ((vals - vals.mean(0)) ** 2).sum(0)
            dof += len(vals) - 1
    return np.sqrt(num / dof)


def test_gaussian_scores_equal_scipy_on_hand_case():
    target, shadows, shadow_in = _hand_case()
    out = ~shadow_in
    pooled_in, pooled_out = _pooled(shadows, shadow_in), _pooled(shadows, out)
    online = lira_scores(target, shadows, shadow_in, variant="online")
    offline = lira_scores(target, shadows, shadow_in, variant="offline")
    online_fixed = lira_scores(target, shadows, shadow_in, variant="online-fixed")
    offline_fixed = lira_scores(target, shadows, shadow_in, variant="offline-fixed")
    for i in range(3):
        vin, vout = shadows[shadow_in[:, i], i], shadows[out[:, i], i]
        mu_out, sd_out = vout.mean(0), vout.std(0, ddof=1)
        exp_off = np.mean(-norm.logsf(target[i], mu_out, sd_out))
        assert offline[i] == pytest.approx(exp_off, rel=1e-10)
        assert offline_fixed[i] == pytest.approx(np.mean(-norm.logsf(target[i], mu_out, pooled_out)), rel=1e-10)
        if len(vin) == 0:  # documented fallback: no IN shadow -> the offline score
            assert online[i] == pytest.approx(exp_off, rel=1e-12)
            assert online_fixed[i] == pytest.approx(offline_fixed[i], rel=1e-12)
            continue
        sd_in = vin.std(0, ddof=1) if len(vin) >= 2 else pooled_in  # one IN sample: pooled spread
        exp_on = np.mean(norm.logpdf(target[i], vin.mean(0), sd_in) - norm.logpdf(target[i], mu_out, sd_out))
        assert online[i] == pytest.approx(exp_on, rel=1e-10)
        exp_fixed = np.mean(norm.logpdf(target[i], vin.mean(0), pooled_in)
                            - norm.logpdf(target[i], mu_out, pooled_out))
        assert online_fixed[i] == pytest.approx(exp_fixed, rel=1e-10)
    # one query given as 1-D / 2-D arrays is the Q = 1 case
    np.testing.assert_allclose(lira_scores(target[:, 0], shadows[:, :, 0], shadow_in),
                               lira_scores(target[:, :1], shadows[:, :, :1], shadow_in), rtol=1e-12)
    # the offline score increases with phi; constant shadows hit the sigma floor but stay finite
    assert lira_scores([[3.0]], [[[0.0]], [[0.0]]], np.array([[False], [False]]), variant="offline")[0] > 1e6
    assert np.isfinite(lira_scores([[0.0]], [[[0.0]], [[0.0]]], np.array([[False], [False]]))).all()


def test_point_without_out_shadow_uses_population_gaussian():
    target, shadows, shadow_in = _hand_case()
    shadow_in = shadow_in.copy()
    shadow_in[:, 0] = True  # point 0 is IN for every shadow
    got = lira_scores(target, shadows, shadow_in, variant="offline")
    all_out = shadows[:, 1:][~shadow_in[:, 1:]]  # every OUT statistic of the other points, [count, Q]
    expected = np.mean(-norm.logsf(target[0], all_out.mean(0), all_out.std(0)))
    assert got[0] == pytest.approx(expected, rel=1e-10)
    assert np.isfinite(lira_scores(target, shadows, shadow_in, variant="online")).all()


def test_scoring_rejects_bad_input():
    target, shadows, shadow_in = _hand_case()
    with pytest.raises(DDError, match="variant"):
        lira_scores(target, shadows, shadow_in, variant="onlin")
    with pytest.raises(DDError, match="boolean"):
        lira_scores(target, shadows, shadow_in.astype(int))
    with pytest.raises(DDError, match=r"\[S, n, Q\]"):
        lira_scores(target[:2], shadows, shadow_in)
    with pytest.raises(DDError, match="OUT"):
        lira_scores(target, shadows, np.ones_like(shadow_in))
    bad = shadows.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DDError, match="NaN"):
        lira_scores(target, bad, shadow_in)
    with pytest.raises(DDError, match="outside"):
        leave_one_out(shadows, shadow_in, [6], "online")


# --------------------------------------------------------------------------------- simulated populations
def _simulated(shift: float, models: int = 16, points: int = 400, seed: int = 0):
    """phi ~ N(difficulty_i + shift * IN, 0.5^2): per-point difficulty is what a global threshold cannot see."""
    rng = np.random.default_rng(seed)
    in_mask = rng.random((models, points)) < 0.5
    difficulty = rng.normal(0.0, 3.0, size=points)
    stats = difficulty[None, :, None] + shift * in_mask[:, :, None] + rng.normal(0, 0.5, (models, points, 2))
    return stats, in_mask


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_detect_planted_shift_and_not_null(variant):
    stats, in_mask = _simulated(shift=1.5)
    planted = roc_metrics(*leave_one_out(stats, in_mask, [0, 1, 2, 3], variant), bootstrap=100)
    assert planted["auc"] > 0.9, planted["auc"]
    assert planted["tpr_at_1pct_fpr"] > 0.2, planted["tpr_at_1pct_fpr"]
    # the raw statistic as a global threshold is near chance: the per-point calibration is what works
    raw = roc_metrics(stats[0, in_mask[0], 0], stats[0, ~in_mask[0], 0])
    assert raw["auc"] < 0.75, raw["auc"]
    # null: one target (its points are independent, so the iid bootstrap interval is valid; pooled targets
    # share shadows, which correlates their scores and makes that interval a little too narrow)
    null_stats, null_mask = _simulated(shift=0.0, points=1000, seed=1)
    null = roc_metrics(*leave_one_out(null_stats, null_mask, [0], variant), bootstrap=200)
    lo, hi = null["ci"]["auc"]
    assert lo < 0.5 < hi, null["ci"]
    assert abs(null["auc"] - 0.5) < 0.05


def test_leave_one_out_never_uses_the_target():
    stats, in_mask = _simulated(shift=0.0, models=5, points=1500, seed=2)  # no signal anywhere
    targets = [0, 1, 2, 3, 4]
    members, nonmembers = leave_one_out(stats, in_mask, targets, "online")
    # identical to scoring each target by hand against the other four models, pooled in target order
    by_hand_m, by_hand_n = [], []
    for t in targets:
        rest = [m for m in range(5) if m != t]
        s = lira_scores(stats[t], stats[rest], in_mask[rest], variant="online")
        by_hand_m.append(s[in_mask[t]])
        by_hand_n.append(s[~in_mask[t]])
    np.testing.assert_array_equal(members, np.concatenate(by_hand_m))
    np.testing.assert_array_equal(nonmembers, np.concatenate(by_hand_n))
    assert members.size + nonmembers.size == 5 * 1500 and members.size == in_mask.sum()
    fair = roc_metrics(members, nonmembers)
    assert abs(fair["auc"] - 0.5) < 0.03, fair["auc"]
    # planted check that the test has teeth: letting the target be one of its own shadows fakes a signal
    leaky_m, leaky_n = [], []
    for t in targets:
        s = lira_scores(stats[t], stats, in_mask, variant="online")
        leaky_m.append(s[in_mask[t]])
        leaky_n.append(s[~in_mask[t]])
    assert roc_metrics(np.concatenate(leaky_m), np.concatenate(leaky_n))["auc"] > 0.6


def test_threshold_leave_one_out_matches_per_target_scores():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, size=(4, 30, 2, 5))
    labels = rng.integers(0, 5, size=30)
    in_mask = rng.random((4, 30)) < 0.5
    members, nonmembers = threshold_leave_one_out(logits, labels, in_mask, [2, 0], "loss")
    s2, s0 = (threshold_scores("loss", logits[t, :, 0], labels) for t in (2, 0))
    np.testing.assert_array_equal(members, np.r_[s2[in_mask[2]], s0[in_mask[0]]])
    np.testing.assert_array_equal(nonmembers, np.r_[s2[~in_mask[2]], s0[~in_mask[0]]])
    with pytest.raises(DDError, match="threshold attack"):
        threshold_leave_one_out(logits, labels, in_mask, [0], "lira")


# ------------------------------------------------------------------------------------------------ power
def _overfit(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 300) -> nn.Module:
    """A 64-128-10 MLP fitted full-batch with Adam until it memorises its ~100 training points."""
    g = torch.Generator().manual_seed(seed)
    hidden, head = nn.Linear(64, 128), nn.Linear(128, 10)
    with torch.no_grad():
        for layer in (hidden, head):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
            layer.bias.zero_()
    net = nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), head)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def test_lira_power_on_overfit_models(tiny_digits):
    start = time.perf_counter()
    train, test = tiny_digits
    population = train.subset(range(0, 400, 2))  # 200 points, 20 per class
    models, n = 16, len(population)
    rng = np.random.default_rng(0)
    in_mask = np.zeros((models, n), dtype=bool)
    for i in range(n):  # every point IN for exactly half of the models
        in_mask[rng.permutation(models)[: models // 2], i] = True
    logits = []
    for m in range(models):
        idx = torch.from_numpy(np.flatnonzero(in_mask[m]))
        net = _overfit(population.x[idx], population.y[idx], seed=m)
        logits.append(query_logits(net, population, flip=False))
    logits_all = np.stack(logits)  # [M, n, 1, K]
    labels = population.y.numpy()
    stats = lira_statistic(logits_all, labels[:, None])
    assert stats.shape == (models, n, 1)

    targets = list(range(models))  # every model is a target once; 16 x ~100 = 1600 non-member scores
    lira = roc_metrics(*leave_one_out(stats, in_mask, targets, "online"), bootstrap=200)
    loss = roc_metrics(*threshold_leave_one_out(logits_all, labels, in_mask, targets, "loss"), bootstrap=200)
    print(f"\nLiRA online: AUC {lira['auc']:.3f}, TPR@1%FPR {lira['tpr_at_1pct_fpr']:.3f} {lira['ci']}")
    print(f"loss:        AUC {loss['auc']:.3f}, TPR@1%FPR {loss['tpr_at_1pct_fpr']:.3f} {loss['ci']}")
    assert lira["num_nonmembers"] == loss["num_nonmembers"] == (~in_mask).sum() == 1600
    assert lira["resolves_1pct_fpr"]
    assert lira["tpr_at_1pct_fpr"] > 0.08  # far above the 1% of a blind guess
    assert lira["ci"]["tpr_at_1pct_fpr"][0] > loss["ci"]["tpr_at_1pct_fpr"][1]  # intervals do not overlap
    assert lira["tpr_at_1pct_fpr"] > 4 * max(loss["tpr_at_1pct_fpr"], 0.01)
    assert lira["auc"] > loss["auc"] > 0.6
    for variant in ("online-fixed", "offline", "offline-fixed"):
        other = roc_metrics(*leave_one_out(stats, in_mask, targets, variant))
        print(f"{variant}: AUC {other['auc']:.3f}, TPR@1%FPR {other['tpr_at_1pct_fpr']:.3f}")
        assert other["tpr_at_1pct_fpr"] > 0.05 and other["auc"] > 0.7, (variant, other["auc"])

    # a model that never saw any of these points (trained on the disjoint test images) is at chance
    stranger = _overfit(test.x, test.y, seed=99)
    phi = lira_statistic(query_logits(stranger, population, flip=False), labels[:, None])
    fake_in = rng.random(n) < 0.5
    scores = lira_scores(phi, stats, in_mask, variant="online")
    chance = roc_metrics(scores[fake_in], scores[~fake_in], bootstrap=200)
    print(f"never-trained model: AUC {chance['auc']:.3f} {chance['ci']['auc']}")
    lo, hi = chance["ci"]["auc"]
    assert lo < 0.5 < hi, chance["ci"]
    assert time.perf_counter() - start < 60

"""Privacy audits (ddeval.privacy.audit): exact pieces against scipy, then soundness and power on simulated
mechanisms whose true ε is known (Gaussian mechanism = μ-GDP, randomized response = ε-DP)."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from ddeval.privacy import audit
from ddeval.privacy.audit import (
    clopper_pearson,
    epsilon_from_rates,
    epsilon_lower_bound,
    gdp_delta,
    gdp_epsilon,
    gdp_estimate,
    gdp_mu_lower_bound,
    one_run_audit,
)
from distillers.errors import DDError

SEEDS = range(20)


def gaussian_scores(mu: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n IN and n OUT runs of the Gaussian mechanism with sensitivity/noise ratio mu (exactly mu-GDP)."""
    rng = np.random.default_rng(seed)
    return rng.normal(mu, 1.0, n), rng.normal(0.0, 1.0, n)


def rr_scores(eps: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n IN and n OUT runs of binary randomized response (exactly eps-DP): output 1 w.p. e^eps/(1+e^eps) if IN."""
    rng = np.random.default_rng(seed)
    return ((rng.random(n) < special.expit(eps)).astype(float),
            (rng.random(n) < special.expit(-eps)).astype(float))


def rr_canaries(eps: float, m: int, seed: int, reveal: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One run with m canaries, each included w.p. 1/2, observed through randomized response (eps-DP per
    canary); with probability ``reveal`` a canary's bit is published exactly instead (score +-10), which
    makes the mechanism (eps, reveal)-DP. A tiny independent jitter breaks ties (post-processing)."""
    rng = np.random.default_rng(seed)
    s = rng.random(m) < 0.5
    obs = np.where(rng.random(m) < special.expit(eps), s, ~s)
    score = np.where(obs, 1.0, -1.0)
    revealed = rng.random(m) < reveal
    score[revealed] = np.where(s[revealed], 10.0, -10.0)
    return score + 0.01 * rng.random(m), s


# ----------------------------------------------------------------------------------------------- exact
def test_docstring_examples_run():
    result = doctest.testmod(audit, verbose=False)
    assert result.attempted >= 8 and result.failed == 0


def test_clopper_pearson_matches_beta_quantiles_and_closed_forms():
    for k, n, beta in [(3, 20, 0.05), (17, 40, 0.1), (1, 1000, 0.01), (500, 1000, 0.05)]:
        lo, hi = clopper_pearson(k, n, beta)
        assert lo == pytest.approx(stats.beta.ppf(beta / 2, k, n - k + 1), rel=1e-12)
        assert hi == pytest.approx(stats.beta.ppf(1 - beta / 2, k + 1, n - k), rel=1e-12)
        assert lo < k / n < hi
    # k = 0 and k = n have closed forms: (0, 1 - (beta/2)^(1/n)) and ((beta/2)^(1/n), 1)
    assert clopper_pearson(0, 10, 0.05) == pytest.approx((0.0, 1 - 0.025 ** 0.1))
    assert clopper_pearson(10, 10, 0.05) == pytest.approx((0.025 ** 0.1, 1.0))
    assert clopper_pearson(0, 10, 0.05)[1] == pytest.approx(0.30850, abs=1e-5)
    # coverage of the two-sided 95% interval on 2000 simulated Binomial(50, 0.3) draws
    ks = np.random.default_rng(0).binomial(50, 0.3, 2000)
    covered = np.mean([lo <= 0.3 <= hi for lo, hi in (clopper_pearson(int(k), 50, 0.05) for k in ks)])
    assert covered >= 0.95
    for bad in [(-1, 10), (11, 10), (0, 0)]:
        with pytest.raises(DDError):
            clopper_pearson(*bad, 0.05)
    with pytest.raises(DDError):
        clopper_pearson(1, 10, 1.5)


def test_epsilon_from_rates_formula():
    assert epsilon_from_rates(0.01, 0.5, 0.0) == pytest.approx(math.log(0.5 / 0.01))
    assert epsilon_from_rates(0.5, 0.01, 1e-3) == pytest.approx(math.log((1 - 1e-3 - 0.5) / 0.01))
    assert epsilon_from_rates(0.2, 0.1, 0.05) == pytest.approx(
        max(math.log((1 - 0.05 - 0.1) / 0.2), math.log((1 - 0.05 - 0.2) / 0.1)))
    assert epsilon_from_rates(0.6, 0.5, 0.0) == 0.0  # worse than guessing: floored at 0
    assert epsilon_from_rates(0.5, 0.5, 0.0) == 0.0
    with pytest.raises(DDError):
        epsilon_from_rates(1.2, 0.1, 0.0)
    with pytest.raises(DDError):
        epsilon_from_rates(0.1, 0.1, 1.0)


def _profile_integrand(x: float, mu: float, eps: float) -> float:
    return float(stats.norm.pdf(x, mu) - math.exp(eps) * stats.norm.pdf(x))


def test_gdp_delta_matches_integral_and_inverts_gdp_epsilon():
    for mu in (0.5, 1.0, 2.0, 4.0):
        for eps in (0.0, 0.5, 2.0):
            # privacy profile of N(mu,1) vs N(0,1): integral of (p_in - e^eps p_out)_+
            cross = eps / mu + mu / 2  # p_in > e^eps p_out exactly for x > cross
            exact = integrate.quad(_profile_integrand, cross, np.inf, args=(mu, eps))[0]
            assert _profile_integrand(cross - 0.1, mu, eps) < 0 < _profile_integrand(cross + 0.1, mu, eps)
            assert gdp_delta(mu, eps) == pytest.approx(exact, rel=1e-6, abs=1e-12)
        for delta in (1e-3, 1e-5, 1e-8):
            eps = gdp_epsilon(mu, delta)
            assert eps > 0
            assert gdp_delta(mu, eps) == pytest.approx(delta, rel=1e-6)
    assert gdp_delta(1.0, 0.0) == pytest.approx(2 * stats.norm.cdf(0.5) - 1)
    assert gdp_epsilon(0.0, 1e-5) == 0.0
    assert gdp_epsilon(0.1, 0.5) == 0.0  # delta above delta(0): no epsilon needed
    assert gdp_epsilon(1.0, 1e-5) < gdp_epsilon(2.0, 1e-5) < gdp_epsilon(4.0, 1e-5)
    assert gdp_epsilon(1.0, 1e-5) == pytest.approx(4.3772, abs=1e-3)


def test_one_run_pvalue_is_the_binomial_tail_plus_delta_term():
    r, v, m = 60, 45, 200
    q = special.expit(1.0)
    assert audit._one_run_pvalue(1.0, r, v, m, 0.0) == pytest.approx(stats.binom.sf(v - 1, r, q))
    alpha = max(sum(stats.binom.pmf(v - j, r, q) for j in range(1, i + 1)) / i for i in range(1, v + 1))
    expected = stats.binom.sf(v - 1, r, q) + 2 * m * 1e-4 * alpha
    assert audit._one_run_pvalue(1.0, r, v, m, 1e-4) == pytest.approx(expected, rel=1e-10)
    # the reported bound is where the p-value crosses beta
    lb = one_run_audit(*rr_canaries(2.0, 400, 3), delta=1e-4, k_plus=200, k_minus=200)
    p = lambda e: audit._one_run_pvalue(e, lb["guesses"], lb["correct"], 400, 1e-4)  # noqa: E731
    assert p(lb["epsilon_lb"]) < 0.05 <= p(lb["epsilon_lb"] + 1e-6)


def test_results_are_json_and_keys_follow_the_contract():
    ins, outs = gaussian_scores(2.0, 300, 0)
    cp = epsilon_lower_bound(ins, outs, delta=1e-5)
    assert {"epsilon_lb", "threshold", "fp", "fn", "num_in", "num_out", "fpr_upper", "fnr_upper", "beta",
            "delta", "selection"} <= cp.keys()
    assert cp["num_in"] == 150 and cp["num_out"] == 150  # split: bounds on the held-out halves
    assert cp["fp"] == int(np.sum(np.random.default_rng(0).permutation(outs)[150:] >= cp["threshold"]))
    g = gdp_estimate(ins, outs, delta=1e-5, selection="bonferroni")
    assert {"mu", "epsilon", "delta", "threshold", "fpr_upper", "fnr_upper"} <= g.keys()
    assert g["num_in"] == 300 and g["beta_per_threshold"] == pytest.approx(0.05 / g["num_thresholds"])
    assert g["epsilon"] == pytest.approx(gdp_epsilon(g["mu"], 1e-5))
    one = one_run_audit(*rr_canaries(1.0, 200, 0), delta=1e-5)
    assert {"epsilon_lb", "guesses", "correct", "k_plus", "k_minus", "num_canaries", "beta", "delta"} <= one.keys()
    assert one["guesses"] == one["k_plus"] + one["k_minus"] and one["num_canaries"] == 200
    for result in (cp, g, one):
        json.loads(json.dumps(result, allow_nan=False))
    assert epsilon_lower_bound(ins, outs, delta=1e-5, seed=4) == epsilon_lower_bound(ins, outs, delta=1e-5, seed=4)


def test_one_run_counts_guesses_correctly():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    included = np.array([True, False, True, False, False, True])
    r = one_run_audit(scores, included, delta=0.0, k_plus=2, k_minus=2)
    assert (r["guesses"], r["correct"]) == (4, 2)  # top: 5 IN (right), 4 OUT (wrong); bottom: 1 OUT (right), 0 IN
    r = one_run_audit(scores, included, delta=0.0, k_plus=3, k_minus=3)
    assert (r["guesses"], r["correct"]) == (6, 4)
    r = one_run_audit(scores, included, delta=0.0, k_plus=1)
    assert (r["k_minus"], r["guesses"], r["correct"]) == (0, 1, 1)


def test_user_errors_are_dderrors():
    ins, outs = gaussian_scores(1.0, 10, 0)
    with pytest.raises(DDError, match="selection"):
        epsilon_lower_bound(ins, outs, delta=1e-5, selection="best")
    with pytest.raises(DDError, match="split"):
        epsilon_lower_bound(ins[:1], outs, delta=1e-5)
    with pytest.raises(DDError, match="NaN"):
        gdp_mu_lower_bound(np.array([np.nan, 1.0]), outs)
    with pytest.raises(DDError, match="No"):
        epsilon_lower_bound([], outs, delta=1e-5)
    with pytest.raises(DDError, match="delta"):
        epsilon_lower_bound(ins, outs, delta=-1.0)
    with pytest.raises(DDError, match="one entry per canary"):
        one_run_audit(ins, np.ones(3, bool), delta=0.0)
    with pytest.raises(DDError, match="k_plus"):
        one_run_audit(ins, ins > 0, delta=0.0, k_plus=8, k_minus=8)


# --------------------------------------------------------------------------------------------- soundness
@pytest.mark.parametrize("selection", ["split", "bonferroni"])
def test_soundness_gaussian_mechanism(selection):
    """mu-GDP scores: the CP bound and the GDP estimate never exceed the true epsilon(delta), mu_LB <= mu."""
    delta = 1e-5
    for mu in (1.0, 2.0):
        true_eps = gdp_epsilon(mu, delta)
        for seed in SEEDS:
            ins, outs = gaussian_scores(mu, 1000, seed)
            assert epsilon_lower_bound(ins, outs, delta=delta, selection=selection, seed=seed)["epsilon_lb"] <= true_eps
            g = gdp_estimate(ins, outs, delta=delta, selection=selection, seed=seed)
            assert g["mu"] <= mu and g["epsilon"] <= true_eps


@pytest.mark.parametrize("selection", ["split", "bonferroni"])
def test_soundness_randomized_response_where_the_cp_audit_is_nearly_tight(selection):
    """Binary randomized response is the worst case for eps-DP, so the CP bound gets close to eps and a
    beta = 0.05 audit does exceed eps now and then (that is what "valid with probability 1 - beta" allows):
    over 200 seeds the failure rate is at most beta; at beta = 0.001 no seed of 20 exceeds eps."""
    eps = 1.0
    lbs = np.array([epsilon_lower_bound(*rr_scores(eps, 1000, seed), delta=0.0, selection=selection,
                                        seed=seed)["epsilon_lb"] for seed in range(200)])
    assert np.mean(lbs > eps) <= 0.05
    assert np.median(lbs) > 0.7  # and it is nearly tight
    strict = [epsilon_lower_bound(*rr_scores(eps, 1000, seed), delta=0.0, beta=1e-3, selection=selection,
                                  seed=seed)["epsilon_lb"] for seed in SEEDS]
    assert max(strict) <= eps and min(strict) > 0.5


def test_soundness_one_run_randomized_response():
    """One run, m = 1000 canaries through eps-DP randomized response: the guesses are exactly Binomial(r, q),
    the case the theorem is tight for. Over 200 seeds the beta = 0.05 failure rate is at most beta; at
    beta = 0.001 (fixed guesses and the default grid) every seed of 20 stays below eps."""
    eps = 1.0
    fixed = np.array([one_run_audit(*rr_canaries(eps, 1000, seed), delta=0.0, k_plus=500,
                                    k_minus=500)["epsilon_lb"] for seed in range(200)])
    assert np.mean(fixed > eps) <= 0.05
    assert np.median(fixed) > 0.7
    for kw in ({"k_plus": 500, "k_minus": 500}, {}):
        strict = [one_run_audit(*rr_canaries(eps, 1000, seed), delta=0.0, beta=1e-3, **kw)["epsilon_lb"]
                  for seed in SEEDS]
        assert max(strict) <= eps and min(strict) > 0.4


def test_one_run_delta_term_is_needed_and_keeps_the_audit_sound():
    """(eps, delta)-DP mechanism: randomized response at eps = 0.5, but each canary's bit is published exactly
    with probability delta = 0.02. Guessing only the published ones gives ~20/20 correct: ignoring delta
    would "prove" eps > 1.5; with the delta term the bound stays below 0.5 on every seed."""
    eps, delta, m = 0.5, 0.02, 1000
    for seed in SEEDS:
        scores, included = rr_canaries(eps, m, seed, reveal=delta)
        revealed = np.abs(scores) > 5
        k = int(min(np.sum(revealed & included), np.sum(revealed & ~included)))
        assert k >= 3
        naive = one_run_audit(scores, included, delta=0.0, k_plus=k, k_minus=k)
        assert naive["correct"] == 2 * k
        if k >= 8:
            assert naive["epsilon_lb"] > 1.5 > eps  # unsound without the delta term
        assert one_run_audit(scores, included, delta=delta, k_plus=k, k_minus=k)["epsilon_lb"] <= eps
        assert one_run_audit(scores, included, delta=delta)["epsilon_lb"] <= eps


# ------------------------------------------------------------------------------------------------- power
def test_power_gaussian_mechanism():
    """mu = 2 (eps = 10.0 at delta = 1e-5), 2000 runs each way: the GDP estimate recovers most of eps; the
    CP bound is clearly positive but capped near log(runs) (about 2.7-3.6 here: it cannot see rare events)."""
    delta, mu = 1e-5, 2.0
    true_eps = gdp_epsilon(mu, delta)
    for seed in range(5):
        ins, outs = gaussian_scores(mu, 2000, seed)
        cp = epsilon_lower_bound(ins, outs, delta=delta, seed=seed)["epsilon_lb"]
        g = gdp_estimate(ins, outs, delta=delta, seed=seed)
        assert 2.0 < cp < true_eps
        assert 0.65 * true_eps < g["epsilon"] <= true_eps and 0.75 * mu < g["mu"] <= mu


def test_power_randomized_response():
    """eps = 2 randomized response: both audits land within a factor 1.4 of the truth."""
    eps = 2.0
    for seed in range(5):
        cp = epsilon_lower_bound(*rr_scores(eps, 2000, seed), delta=1e-5, seed=seed)["epsilon_lb"]
        one = one_run_audit(*rr_canaries(eps, 2000, seed), delta=1e-5)["epsilon_lb"]
        assert eps / 1.4 < cp <= eps
        assert eps / 1.4 < one <= eps


def test_power_one_run_gaussian_canaries():
    """m = 2000 canaries, each seen through a mu = 4 Gaussian (eps = 24.4 at delta = 1e-5): one run gives a
    clearly positive bound (the one-run audit is capped by log(guesses), so far below 24)."""
    rng = np.random.default_rng(0)
    included = rng.random(2000) < 0.5
    scores = rng.normal(4.0 * included, 1.0)
    r = one_run_audit(scores, included, delta=1e-5)
    assert 2.0 < r["epsilon_lb"] <= gdp_epsilon(4.0, 1e-5)


# -------------------------------------------------------------------------------------------- no signal
def test_no_signal_gives_zero():
    lbs, mus, ones = [], [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        ins, outs = rng.normal(0, 1, 1000), rng.normal(0, 1, 1000)
        lbs.append(epsilon_lower_bound(ins, outs, delta=1e-5, seed=seed)["epsilon_lb"])
        mus.append(gdp_mu_lower_bound(ins, outs, seed=seed, selection="bonferroni")["mu"])
        ones.append(one_run_audit(rng.normal(0, 1, 1000), rng.random(1000) < 0.5, delta=1e-5)["epsilon_lb"])
    for values in (lbs, mus, ones):
        assert max(values) < 0.2 and np.mean(np.asarray(values) == 0.0) >= 0.8
    # constant scores: every threshold is useless
    assert epsilon_lower_bound(np.zeros(50), np.zeros(50), delta=0.0)["epsilon_lb"] == 0.0
    assert one_run_audit(np.zeros(100), np.arange(100) % 2 == 0, delta=0.0)["epsilon_lb"] == 0.0

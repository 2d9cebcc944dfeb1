"""Statistical lower bounds on a mechanism's privacy loss from canary scores (pure numpy/scipy).

An audit runs a mechanism with and without a canary, scores how strongly the output suggests the canary
was IN (higher = IN), and turns the scores into a lower bound ε_LB that holds with probability ≥ 1 − β.
A correct (ε, δ)-DP implementation never lets a valid audit exceed its ε except with probability β, so
an ε_LB above the accountant's ε flags a bug (REFERENCE §6).

Three tools:

- :func:`epsilon_lower_bound` — many runs, one canary each (Jagielski et al. 2020; Nasr et al. 2021):
  Clopper-Pearson upper bounds on the false-positive and false-negative rates of one threshold test,
  with the threshold chosen on a separate split or paid for with a Bonferroni correction.
- :func:`one_run_audit` — one run with m canaries, each included with probability ½ (Steinke, Nasr &
  Jagielski 2023): count correct IN/OUT guesses and compare with a Binomial, δ term included.
- :func:`gdp_estimate` — the μ of a μ-GDP mechanism bounded the same way, converted to ε at δ
  (Nasr et al. 2023). Sound only for mechanisms that are GDP (the Gaussian mechanism, DP-SGD in its
  asymptotic regime); it is an estimate, tighter than the (ε, δ) bound, not a proof for other mechanisms.

>>> lo, hi = clopper_pearson(0, 10, 0.05)
>>> lo, round(hi, 4)
(0.0, 0.3085)
>>> round(epsilon_from_rates(0.01, 0.5, 0.0), 3)
3.912
>>> round(gdp_delta(1.0, gdp_epsilon(1.0, 1e-5)), 8)
1e-05
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from distillers.errors import DDError

SELECTIONS = ("split", "bonferroni")

# Default guess counts of the one-run audit when the caller gives none: fractions of the m canaries guessed
# in total (half IN from the top, half OUT from the bottom). Fixed here, before any scores are seen, and
# paid for with a Bonferroni split of beta over the grid.
ONE_RUN_GUESS_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

_EPS_GRID_STEP = 0.25  # coarse scan for the first ε whose one-run p-value reaches beta (then bisection)
_EPS_MAX = 60.0


# --------------------------------------------------------------------------------------------- validation
def _as_scores(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor; converted without importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise DDError(f"No {what} scores were given; an audit needs at least one score of each kind.")
    if not np.isfinite(arr).all():
        raise DDError(f"{int((~np.isfinite(arr)).sum())} {what} score(s) are NaN or infinite; "
                      "check the mechanism's outputs before auditing.")
    return arr


def _check_beta(beta: float) -> float:
    if not 0.0 < float(beta) < 1.0:
        raise DDError(f"beta must be in (0, 1) (the audit's failure probability, e.g. 0.05), got {beta}.")
    return float(beta)


def _check_delta(delta: float) -> float:
    if not 0.0 <= float(delta) < 1.0:
        raise DDError(f"delta must be in [0, 1) (e.g. 1e-5), got {delta}.")
    return float(delta)


def _check_selection(selection: str) -> str:
    if selection not in SELECTIONS:
        raise DDError(f'Unknown threshold selection "{selection}"; use one of {", ".join(SELECTIONS)}.')
    return selection


# ------------------------------------------------------------------------------------- Clopper-Pearson
def _cp_upper(k: np.ndarray, n: int, beta: float) -> np.ndarray:
    """Upper end of the two-sided (1 − beta) Clopper-Pearson interval, vectorised over counts ``k``."""
    k = np.asarray(k, dtype=np.float64)
    out = np.ones_like(k)
    below = k < n
    out[below] = stats.beta.ppf(1.0 - beta / 2.0, k[below] + 1.0, n - k[below])
    return out


def clopper_pearson(k: int, n: int, beta: float) -> tuple[float, float]:
    """Exact two-sided (1 − beta) confidence interval for a Binomial proportion after ``k`` of ``n`` successes.

    Lower = BetaInv(beta/2; k, n − k + 1) (0 when k = 0), upper = BetaInv(1 − beta/2; k + 1, n − k)
    (1 when k = n). Each end fails with probability at most beta/2.
    """
    beta = _check_beta(beta)
    if int(n) != n or int(k) != k or n < 1 or not 0 <= k <= n:
        raise DDError(f"clopper_pearson needs integers 0 <= k <= n and n >= 1, got k={k}, n={n}.")
    k, n = int(k), int(n)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(beta / 2.0, k, n - k + 1))
    hi = float(_cp_upper(np.array([k]), n, beta)[0])
    return lo, hi


# ------------------------------------------------------------------------------------------- (ε, δ) side
def _eps_from_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Vectorised REFERENCE §6 formula (floored at 0); a zero rate with a positive numerator gives inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1.0 - delta - fnr, 0.0)) - np.log(fpr)
        b = np.log(np.maximum(1.0 - delta - fpr, 0.0)) - np.log(fnr)
    eps = np.fmax(a, b)  # fmax ignores the NaN of -inf - (-inf)
    return np.where(np.isnan(eps), 0.0, np.maximum(eps, 0.0))


def epsilon_from_rates(fpr_upper: float, fnr_upper: float, delta: float) -> float:
    """ε implied by upper bounds on a test's error rates: an (ε, δ)-DP mechanism forces
    FNR ≥ 1 − δ − e^ε·FPR and FPR ≥ 1 − δ − e^ε·FNR, so

    ε ≥ max(log((1 − δ − FNR̄)/FPR̄), log((1 − δ − FPR̄)/FNR̄)), floored at 0.

    A rate of exactly 0 (impossible for Clopper-Pearson bounds) gives ``inf``.
    """
    delta = _check_delta(delta)
    for name, rate in (("fpr_upper", fpr_upper), ("fnr_upper", fnr_upper)):
        if not 0.0 <= float(rate) <= 1.0:
            raise DDError(f"{name} must be a rate in [0, 1], got {rate}.")
    return float(_eps_from_rates(np.array([float(fpr_upper)]), np.array([float(fnr_upper)]), delta)[0])


def _mu_from_rates(fpr: np.ndarray, fnr: np.ndarray) -> np.ndarray:
    """μ-GDP forces FNR ≥ Φ(Φ⁻¹(1 − FPR) − μ), so μ ≥ Φ⁻¹(1 − FPR̄) − Φ⁻¹(FNR̄) for upper bounds FPR̄, FNR̄.

    Floored at 0: a negative value says nothing (its absolute value would NOT be a valid bound).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = stats.norm.isf(fpr) - stats.norm.ppf(fnr)
    return np.where(np.isnan(mu), 0.0, np.maximum(mu, 0.0))


# --------------------------------------------------------------------------------- threshold selection
def _counts(in_s: np.ndarray, out_s: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FP, FN) of the tests "guess IN iff score >= t": FP = #OUT scores >= t, FN = #IN scores < t."""
    fn = np.searchsorted(np.sort(in_s), thresholds, side="left")
    fp = out_s.size - np.searchsorted(np.sort(out_s), thresholds, side="left")
    return fp, fn


def _bounded(in_s: np.ndarray, out_s: np.ndarray, thresholds: np.ndarray,
             beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    fp, fn = _counts(in_s, out_s, thresholds)
    return fp, fn, _cp_upper(fp, out_s.size, beta), _cp_upper(fn, in_s.size, beta)


_Criterion = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _threshold_audit(in_scores: Any, out_scores: Any, *, beta: float, selection: str, seed: int,
                     criterion: _Criterion, key: str) -> dict[str, Any]:
    """Pick the threshold maximising ``criterion(FPR̄, FNR̄)`` and bound the rates there at level beta.

    "split": each group is shuffled (seeded) and halved; the threshold is chosen on the first halves and the
    Clopper-Pearson bounds are computed on the second halves only, so choosing costs nothing in beta.
    "bonferroni": every distinct score is a candidate threshold on all the data, each bounded at
    beta / (number of candidates), so the maximum is valid simultaneously.
    """
    beta = _check_beta(beta)
    selection = _check_selection(selection)
    ins, outs = _as_scores(in_scores, "IN"), _as_scores(out_scores, "OUT")
    result: dict[str, Any] = {}
    if selection == "split":
        if ins.size < 2 or outs.size < 2:
            raise DDError('selection="split" needs at least 2 IN and 2 OUT scores; run more trials or use '
                          'selection="bonferroni".')
        rng = np.random.default_rng(seed)
        ins, outs = rng.permutation(ins), rng.permutation(outs)
        sel_in, ins = ins[: ins.size // 2], ins[ins.size // 2:]
        sel_out, outs = outs[: outs.size // 2], outs[outs.size // 2:]
        candidates = np.unique(np.concatenate([sel_in, sel_out]))
        _, _, fpr_c, fnr_c = _bounded(sel_in, sel_out, candidates, beta)
        threshold = candidates[int(np.argmax(criterion(fpr_c, fnr_c)))]
        fp, fn, fpr, fnr = _bounded(ins, outs, np.array([threshold]), beta)
        best = 0
        result.update(num_thresholds=int(candidates.size), beta_per_threshold=beta,
                      num_in_selection=int(sel_in.size), num_out_selection=int(sel_out.size))
    else:
        candidates = np.unique(np.concatenate([ins, outs]))
        beta_each = beta / candidates.size
        fp, fn, fpr, fnr = _bounded(ins, outs, candidates, beta_each)
        best = int(np.argmax(criterion(fpr, fnr)))
        threshold = candidates[best]
        result.update(num_thresholds=int(candidates.size), beta_per_threshold=float(beta_each))
    value = float(criterion(fpr[best:best + 1], fnr[best:best + 1])[0])
    result.update({key: value, "threshold": float(threshold), "fp": int(fp[best]), "fn": int(fn[best]),
                   "num_in": int(ins.size), "num_out": int(outs.size), "fpr_upper": float(fpr[best]),
                   "fnr_upper": float(fnr[best]), "beta": beta, "selection": selection})
    return result


def epsilon_lower_bound(in_scores: Any, out_scores: Any, *, delta: float, beta: float = 0.05,
                        selection: str = "split", seed: int = 0) -> dict[str, Any]:
    """Clopper-Pearson lower bound on ε at ``delta`` from IN-run and OUT-run canary scores (higher = IN).

    Valid with probability ≥ 1 − beta for any (ε, δ)-DP mechanism whose runs are independent. "num_in" /
    "num_out" / "fp" / "fn" refer to the scores the bounds were computed on (the second halves for "split").

    >>> rng = np.random.default_rng(0)
    >>> r = epsilon_lower_bound(rng.normal(4, 1, 2000), rng.normal(0, 1, 2000), delta=1e-5)
    >>> 3.0 < r["epsilon_lb"] < gdp_epsilon(4.0, 1e-5)
    True
    """
    delta = _check_delta(delta)
    result = _threshold_audit(in_scores, out_scores, beta=beta, selection=selection, seed=seed,
                              criterion=lambda fpr, fnr: _eps_from_rates(fpr, fnr, delta), key="epsilon_lb")
    result["delta"] = delta
    return result


# ------------------------------------------------------------------------------------------------- GDP
def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of μ-GDP: Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (the Gaussian mechanism's privacy profile)."""
    mu, epsilon = float(mu), float(epsilon)
    if mu < 0 or epsilon < 0:
        raise DDError(f"gdp_delta needs mu >= 0 and epsilon >= 0, got mu={mu}, epsilon={epsilon}.")
    if mu == 0.0:
        return 0.0
    first = stats.norm.cdf(-epsilon / mu + mu / 2.0)
    second = math.exp(epsilon + stats.norm.logcdf(-epsilon / mu - mu / 2.0))  # e^ε Φ(·) without overflow
    return float(max(first - second, 0.0))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The ε at which μ-GDP has privacy profile δ (inverse of :func:`gdp_delta` in ε; 0 when μ ≈ 0).

    δ(ε) decreases in ε, so the root is bracketed by doubling and found with brentq.
    """
    mu, delta = float(mu), _check_delta(delta)
    if mu < 0:
        raise DDError(f"gdp_epsilon needs mu >= 0, got {mu}.")
    if mu < 1e-12 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    if delta == 0.0:
        return math.inf  # μ-GDP with μ > 0 is never (ε, 0)-DP
    hi = max(1.0, mu * mu)
    while gdp_delta(mu, hi) > delta:
        hi *= 2.0
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gdp_mu_lower_bound(in_scores: Any, out_scores: Any, *, beta: float = 0.05, selection: str = "split",
                       seed: int = 0) -> dict[str, Any]:
    """Lower bound on μ, valid with probability ≥ 1 − beta if the mechanism is μ-GDP:
    μ_LB = max(0, Φ⁻¹(1 − FPR̄) − Φ⁻¹(FNR̄)) at the selected threshold (same selection rules as
    :func:`epsilon_lower_bound`). Returns {"mu", "threshold", "fp", "fn", "fpr_upper", "fnr_upper", ...}.
    """
    return _threshold_audit(in_scores, out_scores, beta=beta, selection=selection, seed=seed,
                            criterion=_mu_from_rates, key="mu")


def gdp_estimate(in_scores: Any, out_scores: Any, *, delta: float, beta: float = 0.05,
                 selection: str = "split", seed: int = 0) -> dict[str, Any]:
    """GDP audit: :func:`gdp_mu_lower_bound` plus "epsilon" = :func:`gdp_epsilon` (μ_LB, δ) and "delta".

    A lower bound on ε only if the mechanism really is GDP (true for the Gaussian mechanism); otherwise an
    estimate (Nasr et al. 2023 report it as such).
    """
    delta = _check_delta(delta)
    result = gdp_mu_lower_bound(in_scores, out_scores, beta=beta, selection=selection, seed=seed)
    eps = gdp_epsilon(result["mu"], delta) if delta > 0 or result["mu"] == 0 else math.inf
    result.update(epsilon=float(eps), delta=delta)
    return result


# ------------------------------------------------------------------------------------------ one-run audit
def _one_run_pvalue(epsilon: float, guesses: int, correct: int, canaries: int, delta: float) -> float:
    """Steinke, Nasr & Jagielski (2023): for an (ε, δ)-DP mechanism, P[≥ v of r guesses correct] ≤
    P[W ≥ v] + 2·m·δ·α with W ~ Binomial(r, e^ε/(1 + e^ε)) and α = max_{i=1..v} P[v > W ≥ v − i] / i.
    """
    r, v = guesses, correct
    q = float(special.expit(epsilon))
    p = float(stats.binom.sf(v - 1, r, q))  # P[W >= v]
    if delta > 0.0 and v > 0:
        i = np.arange(1, v + 1)
        window = np.cumsum(stats.binom.pmf(v - i, r, q))  # P[v - i <= W <= v - 1]
        p += 2.0 * canaries * delta * float(np.max(window / i))
    return min(p, 1.0)


def _one_run_epsilon(guesses: int, correct: int, canaries: int, delta: float, beta: float) -> float:
    """Largest ε with p(ε) < beta for all smaller ε: scan a coarse grid for the first ε with p(ε) ≥ beta
    (p is increasing in ε when δ = 0; with δ > 0 the scan keeps the first crossing), then bisect.
    """
    def passes(e: float) -> bool:
        return _one_run_pvalue(e, guesses, correct, canaries, delta) < beta

    if guesses == 0 or not passes(0.0):
        return 0.0
    lo = 0.0
    hi = _EPS_GRID_STEP
    while passes(hi):
        lo, hi = hi, hi + _EPS_GRID_STEP
        if hi > _EPS_MAX:  # cannot happen for r >= 1 (p -> 1 as ε grows); guards against a runaway loop
            return lo
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if passes(mid):
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    return float(lo)


def one_run_audit(scores: Any, included: Any, *, delta: float, beta: float = 0.05,
                  k_plus: int | None = None, k_minus: int | None = None) -> dict[str, Any]:
    """One-run audit (Steinke, Nasr & Jagielski 2023) of m canaries, each included with probability ½.

    Guess IN for the ``k_plus`` highest scores and OUT for the ``k_minus`` lowest (ties: stable order of the
    canary index, which is independent of the random inclusion); with r = k_plus + k_minus guesses and v
    correct, ε_LB is the largest ε whose p-value (δ term included) is below beta.

    ``included`` must be the fair coin flips actually used (i.i.d. probability ½): the bound relies on it.
    Guess counts: both None → the fixed grid :data:`ONE_RUN_GUESS_FRACTIONS` of m (half IN, half OUT),
    beta split evenly over the grid (Bonferroni) and the best bound reported; one of them given → the other
    defaults to 0; both given → one test at level beta. "grid" lists every tested (k+, k−, r, v, ε_LB).

    >>> rng = np.random.default_rng(0)
    >>> s = rng.random(1000) < 0.5
    >>> rr = np.where(rng.random(1000) < 0.88, s, ~s).astype(float)   # randomized response, ε = 2
    >>> r = one_run_audit(rr + 0.01 * rng.random(1000), s, delta=0.0, k_plus=500, k_minus=500)
    >>> 1.5 < r["epsilon_lb"] < 2.0, r["guesses"]
    (True, 1000)
    """
    delta, beta = _check_delta(delta), _check_beta(beta)
    s = _as_scores(scores, "canary")
    inc = np.asarray(included).reshape(-1)
    if inc.shape != s.shape:
        raise DDError(f"included must have one entry per canary score ({s.size}), got {inc.size}.")
    inc = inc.astype(bool)
    m = s.size
    if k_plus is None and k_minus is None:
        pairs = []
        for frac in ONE_RUN_GUESS_FRACTIONS:
            half = max(1, int(round(frac * m / 2.0)))
            pair = (min(half, m // 2 + m % 2), min(half, m // 2))
            if pair not in pairs and sum(pair) > 0:
                pairs.append(pair)
        mode = "grid-bonferroni"
    else:
        kp, km = int(k_plus or 0), int(k_minus or 0)
        if kp < 0 or km < 0 or kp + km > m or kp + km == 0:
            raise DDError(f"k_plus and k_minus must be >= 0 with 0 < k_plus + k_minus <= {m} (the number of "
                          f"canaries), got k_plus={k_plus}, k_minus={k_minus}.")
        pairs = [(kp, km)]
        mode = "fixed"
    beta_each = beta / len(pairs)
    order = np.argsort(-s, kind="stable")  # highest score first
    hits_top = np.concatenate([[0], np.cumsum(inc[order])])  # correct IN guesses among the top k
    hits_bottom = np.concatenate([[0], np.cumsum(~inc[order][::-1])])  # correct OUT guesses among the bottom k
    grid = []
    for kp, km in pairs:
        r, v = kp + km, int(hits_top[kp] + hits_bottom[km])
        grid.append({"k_plus": kp, "k_minus": km, "guesses": r, "correct": v,
                     "epsilon_lb": _one_run_epsilon(r, v, m, delta, beta_each)})
    best = max(grid, key=lambda g: g["epsilon_lb"])
    return {"epsilon_lb": float(best["epsilon_lb"]), "guesses": int(best["guesses"]),
            "correct": int(best["correct"]), "k_plus": int(best["k_plus"]), "k_minus": int(best["k_minus"]),
            "num_canaries": int(m), "num_included": int(inc.sum()), "beta": beta, "delta": delta,
            "guess_selection": mode, "beta_per_test": float(beta_each), "grid": grid}


__all__ = [
    "ONE_RUN_GUESS_FRACTIONS",
    "SELECTIONS",
    "clopper_pearson",
    "epsilon_from_rates",
    "epsilon_lower_bound",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_estimate",
    "gdp_mu_lower_bound",
    "one_run_audit",
]

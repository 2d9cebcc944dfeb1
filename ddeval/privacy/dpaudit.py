"""Canary audits of DP mechanisms: empirical lower bounds on ε to hold against the accountant's ε.

An audit inserts canaries into the training data, runs the whole private pipeline (DP-SGD, or a DP
distiller followed by training a model on its synthetic set) and scores each canary (higher = "was IN").
:func:`canary_audit` runs many independent pipelines with one canary IN or OUT and bounds ε with
Clopper-Pearson intervals (plus a GDP estimate); :func:`one_run_canary_audit` trains once with m canaries,
each IN with probability ½ (Steinke, Nasr & Jagielski 2023). The statistics live in
:mod:`ddeval.privacy.audit`. A correct implementation keeps every ε_LB at or below the accountant's ε (up
to the audit's β); the same audit of the non-private pipeline shows the audit has power.

Canaries (chosen for power): by default "mislabel" — real images held out of the base set and given a
fixed, random wrong label. Without the canary a model predicts the true class with confidence, so its
margin for the assigned label is very low; a model that memorises the canary flips it, which separates
IN from OUT sharply (and each canary is a normal-looking input, so it cannot be explained away as noise).
"ood" canaries are random ±2.5 pixel patterns with random labels: far from the data, so their gradients
are not cancelled by other examples (used for gradient-level audits in the literature). The score is the
LiRA statistic φ = z_y − logsumexp_{y'≠y} z_{y'} of the canary's assigned label (a "model" score); for
distillers a "distance" score (−min squared distance from the canary to the synthetic images of its
label) avoids training a model.

Neighbouring data sets here differ by adding or removing canaries. DP-SGD's sample rate (Opacus: 1 / the
number of batches) must not depend on how many canaries are IN, so :func:`dpsgd_mechanism` checks that the
batch count is the same for every possible canary count (DDError naming a batch size otherwise).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddeval.privacy.audit import epsilon_lower_bound, gdp_estimate, one_run_audit
from ddeval.privacy.dp import DPConfig, accountant_epsilon, calibrate_noise, num_batches, schedule, train_dp
from ddeval.privacy.lira import lira_statistic
from distillers.config import build_config, config_dict
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.protocol import TrainConfig, predict_logits, resolve_device
from distillers.protocol import train as train_net

CANARIES = ("mislabel", "ood")
SCORES = ("model", "distance")


# ------------------------------------------------------------------------------------------- canaries
def make_canaries(data: LabeledData, count: int, kind: str, *, seed: int = 0
                  ) -> tuple[LabeledData, torch.Tensor, torch.Tensor]:
    """Split ``data`` into a base set and ``count`` canaries ``(x [m, C, H, W], assigned labels [m])``.

    "mislabel": ``count`` images drawn (seeded) from ``data`` and removed from the base set, each relabelled
    to a random other class. "ood": the base set is all of ``data``; the canaries are random patterns with
    pixels ±2.5 (normalised units, beyond most real pixels) and random labels.
    """
    if kind not in CANARIES:
        raise DDError(f"Unknown canary kind {kind!r}; use one of {', '.join(CANARIES)}.")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DDError(f"The number of canaries must be a positive integer, got {count!r}.")
    gen = torch.Generator().manual_seed(seed)
    k = data.num_classes
    if kind == "mislabel":
        if count > len(data) - k:
            raise DDError(f"{count} mislabelled canaries leave too few base images out of {len(data)}; "
                          "use fewer canaries or more data.")
        perm = torch.randperm(len(data), generator=gen)
        chosen, rest = perm[:count], perm[count:]
        shift = torch.randint(1, k, (count,), generator=gen)
        return data.subset(rest), data.x[chosen].clone(), (data.y[chosen] + shift) % k
    signs = torch.randint(0, 2, (count, *data.x.shape[1:]), generator=gen).float() * 2 - 1
    labels = torch.randint(0, k, (count,), generator=gen)
    return data, 2.5 * signs, labels


def _with_canaries(base: LabeledData, x: torch.Tensor, y: torch.Tensor, mask: np.ndarray) -> LabeledData:
    keep = torch.from_numpy(np.flatnonzero(mask))
    return dataclasses.replace(base, x=torch.cat([base.x, x[keep]]), y=torch.cat([base.y, y[keep]]),
                               _fingerprint=[])


def _phi(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> np.ndarray:
    logits = predict_logits(model, x, device=device).double().numpy()
    return lira_statistic(logits, y.numpy())


# ------------------------------------------------------------------------------------------ mechanisms
@dataclass
class CanaryMechanism:
    """A private pipeline with ``num_canaries`` canary slots.

    ``multi(mask, seed)`` runs it once with the canaries where ``mask`` is True and returns every canary's
    score; calling the mechanism as ``mech(include, seed)`` is the one-canary form (canary 0 IN or OUT, the
    others OUT). ``epsilon_spent`` is the largest accountant ε seen over the runs so far (``None`` until a
    run reports one, or for non-private runs); ``epsilon_theory`` an a-priori value where known.
    """

    name: str
    run: Callable[[np.ndarray, int], tuple[np.ndarray, float | None]]
    num_canaries: int
    delta: float
    epsilon_theory: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    epsilon_spent: float | None = None
    private: bool = True

    def multi(self, mask: np.ndarray, seed: int) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.size != self.num_canaries:
            raise DDError(f"The canary mask has {mask.size} entries but the mechanism has {self.num_canaries} "
                          "canaries; build it with canaries=<mask length>.")
        scores, spent = self.run(mask, int(seed))
        if spent is not None:
            self.epsilon_spent = spent if self.epsilon_spent is None else max(self.epsilon_spent, spent)
        return np.asarray(scores, dtype=np.float64)

    def __call__(self, include: bool, seed: int) -> float:
        mask = np.zeros(self.num_canaries, dtype=bool)
        mask[0] = bool(include)
        return float(self.multi(mask, seed)[0])

    def epsilon(self) -> float | None:
        """The accountant's ε to compare against: the a-priori value, else the largest one seen."""
        if self.epsilon_theory is not None:
            return self.epsilon_theory
        return self.epsilon_spent


def canary_batch_size(num_train: int, canaries: int, batch_size: int) -> int:
    """The smallest batch size >= ``batch_size`` whose batch count is the same with 0 and with all canaries IN.

    A canary audit holds ``canaries`` images out of ``num_train`` and adds back the IN ones; Opacus' sample
    rate is 1 / the number of batches, which must not depend on how many canaries are IN (otherwise the
    audited runs would not be one mechanism).
    """
    low = max(num_train - canaries, 1)
    b = max(batch_size, 1)
    while num_batches(low, b) != num_batches(num_train, b):
        b += 1
    return b


def dpsgd_mechanism(data: LabeledData, config: DPConfig, *, network: str = "mlp",
                    network_args: dict[str, Any] | None = None, canary: str = "mislabel", canaries: int = 1,
                    seed: int = 0, device: str | torch.device = "cpu") -> CanaryMechanism:
    """DP-SGD (:func:`~ddeval.privacy.dp.train_dp`) on ``data`` minus the canary pool, plus the IN canaries;
    each canary is scored by φ of its assigned label under the trained model.

    δ is fixed once (``config.delta`` or 1/(10 n) for the base size n) and σ once (calibrated to
    ``config.epsilon`` for the base size), so every run is the same mechanism; its accountant ε is
    ``epsilon_theory`` (``None`` for σ = 0, i.e. not private).
    """
    if not isinstance(config, DPConfig):
        raise DDError(f"dpsgd_mechanism() needs a DPConfig, got {type(config).__name__}.")
    base, cx, cy = make_canaries(data, canaries, canary, seed=seed)
    n0 = len(base)
    if num_batches(n0, config.batch_size) != num_batches(n0 + canaries, config.batch_size):
        fixed_size = canary_batch_size(n0 + canaries, canaries, config.batch_size)
        raise DDError(f"With batch_size={config.batch_size} the number of batches (and so the sample rate) "
                      f"changes between {n0} and {n0 + canaries} training images; pick a batch size for which "
                      f"ceil(n / batch_size) is the same, e.g. batch_size={fixed_size}.")
    delta = config.resolved_delta(n0)
    sample_rate, steps = schedule(n0, config)
    sigma = calibrate_noise(config, sample_rate=sample_rate, steps=steps, delta=delta)
    fixed = dataclasses.replace(config, epsilon=None, noise_multiplier=sigma, delta=delta)
    theory = accountant_epsilon(sigma, sample_rate, steps, delta, config.accountant)
    dev = resolve_device(device)

    def run(mask: np.ndarray, run_seed: int) -> tuple[np.ndarray, float | None]:
        train = _with_canaries(base, cx, cy, mask)
        result = train_dp(network, train, fixed, seed=run_seed, device=dev, network_args=network_args)
        return _phi(result["model"], cx, cy, dev), result["epsilon"]

    info = {"mechanism": "dp-sgd", "network": network, "canary": canary, "base_size": n0,
            "noise_multiplier": sigma, "sample_rate": sample_rate, "steps": steps,
            "max_grad_norm": float(config.max_grad_norm), "accountant": config.accountant,
            "dp_config": config_dict(fixed)}
    return CanaryMechanism("dp-sgd", run, canaries, delta, epsilon_theory=theory, info=info,
                           private=theory is not None)


def distiller_mechanism(method: str, method_config: dict[str, Any] | None, data: LabeledData, ipc: int, *,
                        canary: str = "mislabel", canaries: int = 1, score: str = "model",
                        network: str = "mlp", network_args: dict[str, Any] | None = None,
                        train_config: TrainConfig | None = None, delta: float | None = None, seed: int = 0,
                        device: str | torch.device = "cpu") -> CanaryMechanism:
    """Distil ``data`` minus the canary pool plus the IN canaries with ``method``, then score each canary.

    ``score="model"``: train ``network`` on the synthetic set (``train_config``; default 100 epochs, lr 0.01,
    no augmentation, float32) and take φ of the canary's assigned label; ``"distance"``: minus the smallest
    squared distance from the canary to the synthetic images of its label. The ε to compare against is the
    largest ``meta["dp"]["epsilon"]`` over the runs (DP distillers record it; ``None`` for other methods).
    ``delta`` defaults to the method's own δ (meta), else 1e-5.
    """
    from distillers.methods import METHODS

    if score not in SCORES:
        raise DDError(f"Unknown canary score {score!r}; use one of {', '.join(SCORES)}.")
    distiller = METHODS.get(method)(**dict(method_config or {}))
    base, cx, cy = make_canaries(data, canaries, canary, seed=seed)
    tcfg = train_config or TrainConfig(epochs=100, lr=0.01, batch_size=256, fast=False)
    dev = resolve_device(device)
    cfg_delta = getattr(distiller.config, "delta", None)
    audit_delta = float(delta if delta is not None else cfg_delta if cfg_delta is not None else 1e-5)

    def run(mask: np.ndarray, run_seed: int) -> tuple[np.ndarray, float | None]:
        real = _with_canaries(base, cx, cy, mask)
        syn = distiller.distill(real, ipc, seed=run_seed, device=dev, progress=False)
        dp = syn.meta.get("dp") or {}
        spent = dp.get("epsilon")
        spent = float(spent) if spent is not None and math.isfinite(float(spent)) else None
        if score == "distance":
            images = syn.images.detach().cpu().float()
            labels = syn.hard_labels.cpu() if hasattr(syn, "hard_labels") else syn.labels.cpu()
            dist = torch.cdist(cx.flatten(1), images.flatten(1)) ** 2
            dist = dist.masked_fill(labels[None, :] != cy[:, None], math.inf)
            return (-dist.min(dim=1).values).double().numpy(), spent
        from distillers.networks import create as create_net

        net = create_net(network, channels=base.channels, num_classes=base.num_classes,
                         image_size=base.image_size, seed=run_seed, **(network_args or {}))
        train_net(net, syn, tcfg, generator=torch.Generator().manual_seed(run_seed), device=dev)
        return _phi(net, cx, cy, dev), spent

    info = {"mechanism": method, "method_config": config_dict(distiller.config), "ipc": ipc, "canary": canary,
            "score": score, "base_size": len(base)}
    if score == "model":
        info.update(network=network, train_config=config_dict(tcfg))
    return CanaryMechanism(method, run, canaries, audit_delta, info=info)


# ------------------------------------------------------------------------------------------------ audits
def _run_seeds(seed: int, count: int) -> list[int]:
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=count)]


Cache = Callable[[str, Callable[[], Any]], Any]


def _uncached(key: str, compute: Callable[[], Any]) -> Any:
    return compute()


def _score_once(mechanism: Callable[[bool, int], float], include: bool, run_seed: int) -> float:
    return float(mechanism(include, run_seed))


def canary_audit(mechanism: Callable[[bool, int], float], *, trials: int, delta: float, beta: float = 0.05,
                 seed: int = 0, epsilon_theory: float | None = None, selection: str = "split",
                 cache: Cache | None = None) -> dict[str, Any]:
    """Run ``mechanism(include, seed_i)`` ``trials`` times (half IN, half OUT, alternating, fresh seeds
    drawn from ``seed``) and bound ε from the scores (higher = IN).

    Returns {"epsilon_lb" (Clopper-Pearson, threshold chosen by ``selection``), "bound": the full
    :func:`~ddeval.privacy.audit.epsilon_lower_bound` result, "gdp": :func:`~ddeval.privacy.audit.gdp_estimate`,
    "epsilon_theory", "sound" (ε_LB ≤ ε_theory, or None), "trials", "delta", "beta", "in_scores",
    "out_scores", "seconds"}. Without ``epsilon_theory`` the mechanism's own ``epsilon()`` is used if it has one.
    ``cache(key, compute)`` may return a stored score for a finished trial (a run directory's unit cache), so
    a killed audit resumes without redoing finished trials.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 8:
        raise DDError(f"A canary audit needs at least 8 trials (4 IN, 4 OUT), got {trials!r}.")
    start = time.perf_counter()
    ins: list[float] = []
    outs: list[float] = []
    cached = cache or _uncached
    for i, run_seed in enumerate(_run_seeds(seed, trials)):
        include = i % 2 == 0
        value = float(cached(f"trial {i} include={include} seed={run_seed}",
                             functools.partial(_score_once, mechanism, include, run_seed)))
        if not math.isfinite(value):
            raise DDError("The mechanism returned a non-finite canary score; check its training settings.")
        (ins if include else outs).append(value)
    bound = epsilon_lower_bound(ins, outs, delta=delta, beta=beta, selection=selection, seed=seed)
    gdp = gdp_estimate(ins, outs, delta=delta, beta=beta, selection=selection, seed=seed)
    theory = _theory(mechanism, epsilon_theory)
    return {
        "epsilon_lb": float(bound["epsilon_lb"]),
        "bound": bound,
        "gdp": gdp,
        "epsilon_theory": theory,
        "sound": None if theory is None else bool(bound["epsilon_lb"] <= theory),
        "trials": trials,
        "delta": float(delta),
        "beta": float(beta),
        "in_scores": ins,
        "out_scores": outs,
        "seconds": time.perf_counter() - start,
    }


def one_run_canary_audit(mechanism_multi: Callable[[np.ndarray, int], np.ndarray], *, canaries: int,
                         delta: float, beta: float = 0.05, seed: int = 0, epsilon_theory: float | None = None,
                         k_plus: int | None = None, k_minus: int | None = None,
                         epsilon_source: Any = None, cache: Cache | None = None) -> dict[str, Any]:
    """One run with ``canaries`` canaries, each IN with probability ½ (fair coins from ``seed``).

    Returns :func:`~ddeval.privacy.audit.one_run_audit`'s result plus "epsilon_theory", "sound", "scores",
    "included", "seconds". ``k_plus``/``k_minus`` are passed on (None: audit.py's fixed guess grid).
    ``epsilon_source`` (e.g. the :class:`CanaryMechanism` whose ``multi`` is audited) supplies the ε when
    ``epsilon_theory`` is not given.
    """
    if isinstance(canaries, bool) or not isinstance(canaries, int) or canaries < 2:
        raise DDError(f"A one-run audit needs at least 2 canaries, got {canaries!r}.")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    included = rng.random(canaries) < 0.5
    run_seed = int(rng.integers(0, 2**31 - 1))
    scores = np.asarray((cache or _uncached)(
        f"one-run canaries={canaries} seed={run_seed}",
        lambda: [float(v) for v in np.asarray(mechanism_multi(included, run_seed)).reshape(-1)]),
        dtype=np.float64).reshape(-1)
    if scores.size != canaries or not np.all(np.isfinite(scores)):
        raise DDError(f"The mechanism must return {canaries} finite canary scores, got {scores.size} "
                      f"({int(np.sum(~np.isfinite(scores)))} non-finite).")
    result = dict(one_run_audit(scores, included, delta=delta, beta=beta, k_plus=k_plus, k_minus=k_minus))
    theory = _theory(epsilon_source if epsilon_source is not None else mechanism_multi, epsilon_theory)
    result.update({
        "epsilon_lb": float(result["epsilon_lb"]),
        "epsilon_theory": theory,
        "sound": None if theory is None else bool(result["epsilon_lb"] <= theory),
        "scores": scores.tolist(),
        "included": included.tolist(),
        "seconds": time.perf_counter() - start,
    })
    return result


def _theory(source: Any, given: float | None) -> float | None:
    if given is not None:
        return float(given)
    owner = getattr(source, "__self__", source)  # a bound method such as mech.multi
    getter = getattr(owner, "epsilon", None)
    value = getter() if callable(getter) else None
    return None if value is None else float(value)


# ------------------------------------------------------------------------------------------- front door
@dataclass(frozen=True)
class AuditSetup:
    """The audit's own keys in :func:`audit_dp`'s ``config`` (the rest configure the private target).

    ``network``: the model DP-SGD trains, or the one trained on a synthetic set (``score="model"``);
    ``canary``: "mislabel" or "ood"; ``score``: "model" or "distance" (distillers only); ``ipc``: images
    per class of the distilled set; ``train_epochs``/``train_lr``: the model trained on the synthetic set.
    """

    network: str = "mlp"
    canary: str = "mislabel"
    score: str = "model"
    ipc: int = 1
    train_epochs: int = 100
    train_lr: float = 0.01


def audit_dp(target: str, data: LabeledData, *, config: dict[str, Any] | None = None, trials: int = 0,
             canaries: int = 0, delta: float | None = None, beta: float = 0.05, seed: int = 0,
             device: str | torch.device = "cpu", cache: Cache | None = None) -> dict[str, Any]:
    """Audit ``target`` ("dp-sgd" or a registered (DP) distiller) on ``data`` with both audits.

    ``config`` mixes :class:`AuditSetup` keys with the target's own (DPConfig fields for "dp-sgd", the
    method's config keys otherwise). ``trials`` > 0 runs :func:`canary_audit`; ``canaries`` > 0 runs
    :func:`one_run_canary_audit` (m canaries in one run). ``delta=None``: the target's δ. Returns {"target",
    "epsilon_theory", "delta", "canary", "one_run", "setup", "mechanism", "seconds"} ("canary"/"one_run" are
    None when not run). ``cache`` is passed to both audits (per-trial resume).
    """
    if trials <= 0 and canaries <= 0:
        raise DDError("audit_dp needs trials > 0 (canary audit) or canaries > 0 (one-run audit).")
    start = time.perf_counter()
    values = dict(config or {})
    own = {f.name for f in dataclasses.fields(AuditSetup)}
    setup = build_config(AuditSetup, {k: v for k, v in values.items() if k in own}, what="audit setup")
    rest = {k: v for k, v in values.items() if k not in own}
    slots = max(canaries, 1)

    def build(slot_count: int) -> CanaryMechanism:
        if target == "dp-sgd":
            dp_values = dict(rest)
            if delta is not None and dp_values.get("delta") is None:
                dp_values["delta"] = delta
            dp_cfg = build_config(DPConfig, dp_values, what="DP-SGD config")
            return dpsgd_mechanism(data, dp_cfg, network=setup.network, canary=setup.canary, canaries=slot_count,
                                   seed=seed, device=device)
        tcfg = TrainConfig(epochs=setup.train_epochs, lr=setup.train_lr, fast=False)
        return distiller_mechanism(target, rest, data, setup.ipc, canary=setup.canary, canaries=slot_count,
                                   score=setup.score, network=setup.network, train_config=tcfg, delta=delta,
                                   seed=seed, device=device)

    canary_result = one_run = None
    mech = build(1)
    audit_delta = mech.delta
    if trials > 0:
        canary_result = canary_audit(mech, trials=trials, delta=audit_delta, beta=beta, seed=seed, cache=cache)
    multi_mech = mech
    if canaries > 0:
        multi_mech = build(slots) if slots != mech.num_canaries else mech
        one_run = one_run_canary_audit(multi_mech.multi, canaries=canaries, delta=audit_delta, beta=beta,
                                       seed=seed, epsilon_source=multi_mech, cache=cache)
    thetas = [m.epsilon() for m in (mech, multi_mech)]
    known = [t for t in thetas if t is not None]
    return {
        "target": target,
        "epsilon_theory": max(known) if known else None,
        "delta": audit_delta,
        "canary": canary_result,
        "one_run": one_run,
        "setup": config_dict(setup),
        "mechanism": mech.info,
        "seconds": time.perf_counter() - start,
    }


__all__ = ["AuditSetup", "CANARIES", "CanaryMechanism", "SCORES", "audit_dp", "canary_audit",
           "distiller_mechanism", "dpsgd_mechanism", "make_canaries", "one_run_canary_audit"]

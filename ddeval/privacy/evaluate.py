"""The privacy evaluator of a suite: membership inference on every target, DP-SGD baselines, DP audits.

Targets sit side by side in one table: each attacked method's synthetic set, the random real subset of the
same size (the "random" method), the full real data, and DP-SGD on the real data at each ε of
``privacy.dp_epsilons``. DP distillers are ordinary methods of the suite; their (ε, δ) comes from their
synthetic set's ``meta["dp"]``.

Two modes (``privacy.shadows``):

- ``0``: one model per target; members = the training images given to the distiller, non-members = the
  test images; threshold attacks only. Cheap, and what the quickstart runs.
- ``N > 0``: N + 1 shadow pipelines per target on balanced random halves of a population
  (:mod:`ddeval.privacy.shadow`), every pipeline attacked in turn with the others as its shadows
  (leave-one-out), scores pooled over ``privacy.targets`` pipelines; threshold attacks and LiRA are
  evaluated on exactly the same member/non-member split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ddeval.accuracy import mean_std, recipe
from ddeval.config import LIRA_ATTACKS, Suite, create_method, split_variant
from ddeval.executor import LocalExecutor, NNIExecutor, Unit
from ddeval.runs import RunDir, set_key
from distillers.augment import default_strategy
from distillers.data import LabeledData
from distillers.protocol import loss_spec
from distillers.synthetic import SyntheticSet

ROC_POINTS = 200


FIXED_VARIANCE_BELOW = 64  # shadows; with fewer, per-example variances are too noisy (Carlini et al. 2022)


def headline_attack(attacks: tuple[str, ...], shadows: int = 0) -> str:
    """The attack the summary shows, chosen before looking at results: LiRA online, with one global variance
    when there are fewer than 64 shadows (REFERENCE §6), else the loss attack."""
    order = ["lira-online", "lira-online-fixed"]
    if shadows < FIXED_VARIANCE_BELOW:
        order.reverse()
    for name in (*order, "lira-offline-fixed", "lira-offline", "loss"):
        if name in attacks:
            return name
    return attacks[0]


def _targets(suite: Suite, methods: Mapping[str, Mapping[str, Any]], strategy: str) -> list[dict[str, Any]]:
    """Every privacy target: label (and title for progress lines), ipc, how its model is made, which recipe
    trains it (``strategy``: the data set's DSA strategy, used when the accuracy recipe augments)."""
    pcfg, acc = suite.privacy, suite.accuracy
    train_recipe = recipe(acc, epochs=pcfg.epochs or acc.epochs, augment=strategy, fast=suite.fast)
    full_recipe = recipe(acc, epochs=pcfg.full_data_epochs or acc.full_data_epochs, augment=strategy,
                         fast=suite.fast)
    attacked = list(pcfg.methods) or [m for m in methods if m != "noise"]
    out = []
    for ipc in pcfg.ipc or suite.ipc:
        for name in attacked:
            out.append({"label": name, "title": f"{name} ipc={ipc}", "ipc": ipc, "recipe": train_recipe.__dict__,
                        "target": {"kind": "method", "name": split_variant(name, methods[name])[0],
                                   "config": _method_config(name, methods[name], ipc), "ipc": ipc}})
    if pcfg.full_data:
        out.append({"label": "full-data", "title": "full-data", "ipc": None, "recipe": full_recipe.__dict__,
                    "target": {"kind": "full-data"}})
    for eps in pcfg.dp_epsilons:
        out.append({"label": f"dp-sgd-eps{eps:g}", "title": f"dp-sgd-eps{eps:g}", "ipc": None, "recipe": {},
                    "target": {"kind": "dp-sgd", "dp": {**pcfg.dp_sgd, "epsilon": float(eps)}}})
    return out


def _method_config(name: str, cfg: Mapping[str, Any], ipc: int) -> dict[str, Any]:
    from distillers.config import key_dict

    return key_dict(create_method(name, cfg, ipc).config)


def evaluate_privacy(suite: Suite, methods: Mapping[str, Mapping[str, Any]],
                     sets: Mapping[tuple[str, int, int], SyntheticSet], train: LabeledData, test: LabeledData,
                     rd: RunDir, device: str, stage: Callable[[str], None], step: Callable[[], None]
                     ) -> dict[str, Any]:
    """The ``privacy`` block of results.json (see the module docstring for the two modes)."""
    pcfg = suite.privacy
    attacks = pcfg.attack_names()
    network = suite.accuracy.networks[0]
    net_args = suite.accuracy.args_for(network)
    strategy = default_strategy(train.name or suite.dataset)
    targets = _targets(suite, methods, strategy)
    flip = "flip" in strategy

    def on_done(unit: Unit, reused: bool) -> None:
        stage(unit.label + (" (cached)" if reused else ""))
        step()

    executor: LocalExecutor | NNIExecutor = (
        LocalExecutor(rd, workers=pcfg.workers, on_done=on_done) if pcfg.executor == "processes" else
        NNIExecutor(rd, engine=pcfg.executor, concurrency=pcfg.concurrency, port=pcfg.port, remote=pcfg.remote,
                    on_done=on_done))
    common = {"network": network, "network_args": net_args, "flip": flip, "device": device}
    if pcfg.shadows:
        rows, info = _shadow_mode(suite, targets, attacks, train, test, executor, common)
    else:
        rows, info = _single_mode(suite, targets, attacks, sets, train, test, executor, common)
    out: dict[str, Any] = {
        "mode": "shadow pipelines" if pcfg.shadows else "single target",
        "attacks": list(attacks),
        "headline_attack": headline_attack(attacks, pcfg.shadows),
        "network": network,
        **info,
        "rows": rows,
    }
    if pcfg.audit.enabled:
        out["audits"] = _audits(suite, methods, targets, train, rd, device, stage, step)
    return out


# ------------------------------------------------------------------------------------ single-target mode
def _single_mode(suite: Suite, targets: list[dict[str, Any]], attacks: tuple[str, ...],
                 sets: Mapping[tuple[str, int, int], SyntheticSet], train: LabeledData, test: LabeledData,
                 executor: LocalExecutor | NNIExecutor, common: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    units = []
    for t in targets:
        synthetic = None
        data_key = "full:" + train.fingerprint()
        if t["target"]["kind"] == "method":
            seeds = sorted(s for (m, k, s) in sets if m == t["label"] and k == t["ipc"])
            synthetic = sets[(t["label"], t["ipc"], seeds[0])]
            data_key = str(set_key(synthetic))
        spec = {"target": t["target"], "data": data_key, **loss_spec(synthetic), "members": train.fingerprint(),
                "nonmembers": test.fingerprint(), "recipe": t["recipe"], "seed": suite.seed,
                "attacks": list(attacks), "bootstrap": suite.privacy.bootstrap,
                **{k: v for k, v in common.items() if k != "device"}}
        units.append(Unit("privacy", spec, attack_single_target, (t["target"], synthetic, train, test),
                          {"attacks": attacks, "recipe": t["recipe"], "seed": 1000 + suite.seed,
                           "bootstrap": suite.privacy.bootstrap, **common},
                          label=f"privacy: attack {t['title']}"))
    results = executor.map(units)
    rows = []
    for t, res in zip(targets, results, strict=True):
        for attack in attacks:
            rows.append({"target": t["label"], "ipc": t["ipc"], "attack": attack, **res["attacks"][attack],
                         "target_accuracy": res["accuracy"], "dp": res.get("dp")})
    return rows, {"members": "real training images given to the distiller", "nonmembers": "real test images"}


def attack_single_target(target: Mapping[str, Any], synthetic: SyntheticSet | None, members: LabeledData,
                         nonmembers: LabeledData, *, attacks: tuple[str, ...], recipe: Mapping[str, Any], seed: int,
                         bootstrap: int, network: str, network_args: Mapping[str, Any], flip: bool,
                         device: str) -> dict[str, Any]:
    """Train the target's model (on ``synthetic`` for a method, else on ``members``), score members vs
    non-members with every threshold attack."""
    from ddeval.privacy.attacks import threshold_scores
    from ddeval.privacy.lira import query_logits
    from ddeval.privacy.metrics import roc_metrics
    from ddeval.privacy.shadow import train_target

    trained = train_target(target, members, nonmembers, seed=seed, network=network, network_args=network_args,
                           recipe=recipe, device=device, synthetic=synthetic)
    model = trained["model"]
    logits_in = query_logits(model, members, flip=False, device=device)[:, 0]
    logits_out = query_logits(model, nonmembers, flip=False, device=device)[:, 0]
    out = {}
    for i, attack in enumerate(attacks):
        out[attack] = roc_metrics(threshold_scores(attack, logits_in, members.y.numpy()),
                                  threshold_scores(attack, logits_out, nonmembers.y.numpy()),
                                  max_points=ROC_POINTS, bootstrap=bootstrap, seed=seed + i)
    return {"accuracy": float(trained["accuracy"]), "attacks": out, "dp": trained["dp"]}


# ------------------------------------------------------------------------------------ shadow mode
def _shadow_mode(suite: Suite, targets: list[dict[str, Any]], attacks: tuple[str, ...], train: LabeledData,
                 test: LabeledData, executor: LocalExecutor | NNIExecutor, common: Mapping[str, Any]
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from ddeval.privacy import shadow

    pcfg = suite.privacy
    pop_idx = shadow.population_indices(train, pcfg.population, suite.seed)
    population = train.subset(pop_idx)
    pipelines = pcfg.shadows + 1
    masks = shadow.half_masks(len(population), pipelines, suite.seed)
    data_key = f"{train.fingerprint()}:{shadow.digest(pop_idx.numpy())}"
    units: list[Unit] = []
    spans: list[tuple[int, int]] = []
    for t in targets:
        if t["ipc"]:
            shadow.check_halves(population.y, masks, population.num_classes, t["ipc"], t["title"])
        part = shadow.pipeline_units(t["target"], f"privacy: {t['title']}", population, masks, test,
                                     seed=10_000 + suite.seed, recipe=t["recipe"], data_key=data_key, **common)
        spans.append((len(units), len(units) + len(part)))
        units += part
    results = executor.map(units)
    n_targets = pcfg.targets or pipelines
    rows = []
    for t, (a, b) in zip(targets, spans, strict=True):
        rows += analyse_pipelines(t, results[a:b], population.y.numpy(), masks, list(range(n_targets)), attacks,
                                  bootstrap=pcfg.bootstrap, seed=suite.seed)
    info = {"members": "each pipeline's random half of the population (given to the distiller)",
            "nonmembers": "the other half of the population",
            "population": len(population), "pipelines": pipelines, "targets": n_targets}
    return rows, info


def analyse_pipelines(target: Mapping[str, Any], results: list[dict[str, Any]], labels: np.ndarray,
                      masks: np.ndarray, target_ids: list[int], attacks: tuple[str, ...], *, bootstrap: int,
                      seed: int) -> list[dict[str, Any]]:
    """One row per attack for one target's finished pipelines (leave-one-out, pooled over ``target_ids``)."""
    from ddeval.privacy.lira import leave_one_out, lira_statistic, threshold_leave_one_out
    from ddeval.privacy.metrics import roc_metrics
    from ddeval.privacy.shadow import stack_logits

    logits = stack_logits(results)  # [M, n, Q, K]
    stats = lira_statistic(logits, labels[:, None])  # [M, n, Q]: labels broadcast over the queries
    accs = [float(r["accuracy"]) for r in results]
    acc_mean, acc_std = mean_std(accs)
    dp = results[0].get("dp")
    rows = []
    for i, attack in enumerate(attacks):
        if attack in LIRA_ATTACKS:
            member, nonmember = leave_one_out(stats, masks, target_ids, attack.removeprefix("lira-"))
        else:
            member, nonmember = threshold_leave_one_out(logits, labels, masks, target_ids, attack)
        metrics = roc_metrics(member, nonmember, max_points=ROC_POINTS, bootstrap=bootstrap, seed=seed + i)
        rows.append({"target": target["label"], "ipc": target["ipc"], "attack": attack, **metrics,
                     "target_accuracy": acc_mean, "target_accuracy_std": acc_std, "pipelines": len(results),
                     "targets_pooled": len(target_ids),
                     "distill_seconds_mean": _mean_of(results, "distill_seconds"),
                     "pipeline_seconds_mean": _mean_of(results, "seconds"), "dp": dp})
    return rows


def _mean_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in results if r.get(key) is not None]
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------------------------ audits
def _audit_jobs(suite: Suite, methods: Mapping[str, Mapping[str, Any]], targets: list[dict[str, Any]]
                ) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, audited target, its configuration) of every DP target the suite audits."""
    import dataclasses

    from ddeval.privacy.dpaudit import AuditSetup

    acfg = suite.privacy.audit
    wanted = set(acfg.targets)
    setup_keys = {f.name for f in dataclasses.fields(AuditSetup)}  # the audit's own model, canary, score
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    for t in targets:
        if t["target"]["kind"] == "dp-sgd" and (not wanted or "dp-sgd" in wanted):
            jobs.append((t["label"], "dp-sgd", {**t["target"]["dp"], **acfg.config.get("dp-sgd", {})}))
    for name, entry_cfg in methods.items():
        audited_ipc = max(suite.privacy.ipc or suite.ipc)  # audit the set size that is attacked
        base, method_cfg = split_variant(name, entry_cfg, audited_ipc)
        if is_dp_method(base) and (not wanted or name in wanted):
            own = {k: v for k, v in method_cfg.items() if k not in setup_keys}
            own["ipc"] = audited_ipc
            jobs.append((name, base, {**own, **acfg.config.get(name, {})}))
    return jobs


def _audits(suite: Suite, methods: Mapping[str, Mapping[str, Any]], targets: list[dict[str, Any]],
            train: LabeledData, rd: RunDir, device: str, stage: Callable[[str], None],
            step: Callable[[], None]) -> list[dict[str, Any]]:
    """Empirical ε lower bounds of each DP target next to its accountant's ε (one cached unit per target,
    one per trial inside it)."""
    from ddeval.privacy.dp import DPConfig
    from ddeval.privacy.dpaudit import audit_dp, canary_batch_size
    from distillers.config import build_config

    acfg = suite.privacy.audit
    out = []
    for label, kind, cfg in _audit_jobs(suite, methods, targets):
        if kind == "dp-sgd" and "batch_size" not in acfg.config.get("dp-sgd", {}):
            # the audited DP-SGD may use a slightly larger batch than the baseline; the audit records it
            batch = build_config(DPConfig, cfg, what="privacy.dp_sgd").batch_size
            cfg = {**cfg, "batch_size": canary_batch_size(len(train), max(acfg.canaries, 1), batch)}
        spec = {"target": kind, "config": cfg, "data": train.fingerprint(), "trials": acfg.trials,
                "canaries": acfg.canaries, "beta": acfg.beta, "seed": suite.seed}
        stage(f"privacy: DP audit of {label}")

        def compute(kind: str = kind, cfg: dict[str, Any] = cfg, spec: dict[str, Any] = spec) -> dict[str, Any]:
            def cache(key: str, run: Callable[[], Any]) -> Any:  # each trial is a unit: resume per trial
                return rd.unit("audit-trial", {**spec, "trial": key}, lambda: {"value": run()})["value"]

            return audit_dp(kind, train, config=cfg, trials=acfg.trials, canaries=acfg.canaries,
                            delta=cfg.get("delta"), beta=acfg.beta, seed=suite.seed, device=device, cache=cache)

        result = rd.unit("audit", spec, compute)
        out.append({"label": label, **result})
        step()
    return out


def is_dp_method(name: str) -> bool:
    """A registered method that is differentially private w.r.t. the real images (its config has ``epsilon``)."""
    from distillers.methods import config_keys

    return {"epsilon", "delta"} <= config_keys(name)


def count_units(suite: Suite, methods: Mapping[str, Any]) -> int:
    """Units the progress bar counts for the privacy evaluator: every target's models, then the audits."""
    pcfg = suite.privacy
    targets = _targets(suite, methods, "")
    total = len(targets) * (pcfg.shadows + 1 if pcfg.shadows else 1)
    if pcfg.audit.enabled:
        total += len(_audit_jobs(suite, methods, targets))
    return total

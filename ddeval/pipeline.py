"""The main job: distil → evaluate (accuracy, privacy, NAS proxy) → results.json → report.

Every step is a cached unit of the run directory, so rerunning the same command in the same directory resumes
where an interrupted run stopped and reuses everything that had finished.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import distillers
from ddeval import datasets
from ddeval.accuracy import evaluate_over_seeds, mean_std, recipe, set_recipe
from ddeval.config import Suite, create_method, ipc_overrides, load_suite, split_variant
from ddeval.runs import RunDir, now_iso, set_key, unit_key
from ddeval.schema import METRICS, SCHEMA_VERSION
from distillers import parameterize
from distillers.augment import default_strategy
from distillers.config import config_dict, key_dict
from distillers.data import LabeledData
from distillers.errors import DDError, Diverged
from distillers.io import sha256_file
from distillers.methods import config_keys
from distillers.protocol import resolve_device
from distillers.synthetic import META_FILE, TENSORS_FILE, SyntheticSet

BASELINES = ("random", "noise")


def default_run_dir(suite: Suite) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{suite.name}-{suite.dataset.replace(':', '_').replace('/', '_')}-{stamp}"


class _Progress:
    """One tqdm bar over all units (off when stderr is not a terminal) plus a short status line per stage."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, disable=not enabled, desc="ddeval run", dynamic_ncols=True)
        self.enabled = enabled

    def stage(self, text: str) -> None:
        if self.enabled:
            self.bar.set_description(text)
        else:
            print(f"[ddeval] {text}", file=sys.stderr, flush=True)

    def step(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def run_suite(source: str | Path | Mapping[str, Any] | None = None, *, overrides: list[str] | None = None,
              run_dir: str | Path | None = None, device: str = "auto",
              progress: bool | None = None) -> dict[str, Any]:
    """Run a suite end to end and return its results (also written to ``run_dir/results.json``)."""
    suite = load_suite(source, overrides)
    dev = str(resolve_device(device))
    methods = _resolved_methods(suite)
    started, t0 = now_iso(), time.perf_counter()
    if progress is None:
        progress = sys.stderr.isatty()
    train, test = datasets.load(suite.dataset, root=suite.data_root, download=suite.download)
    _validate_plan(suite, methods, train)
    # The run directory appears only once the suite, its data and its plan are known to be good, so a
    # mistake leaves nothing behind (and never overwrites the config.yaml of a run being resumed).
    rd = RunDir(run_dir or default_run_dir(suite))
    rd.remove_stale_temporaries()  # left by a run killed mid-write (SIGKILL, power loss); never results
    rd.write_config(suite.to_dict())

    distill_seeds = [suite.seed + i for i in range(suite.distill_seeds)]
    eval_seeds = [1000 + suite.seed + i for i in range(suite.accuracy.eval_seeds)]
    bar = _Progress(_count_units(suite, methods), progress)
    try:
        # With shadow pipelines the privacy evaluator distils its own halves; the suite-level sets are then
        # needed only by the accuracy and NAS evaluators.
        sets = _distill_all(suite, methods, train, distill_seeds, rd, dev, bar) if _needs_sets(suite) else {}
        results: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run": {"suite": suite.name, "started": started, "device": dev,
                    "seeds": {"distill": distill_seeds, "eval": eval_seeds}},
            "dataset": _dataset_info(suite.dataset, train, test),
            "metrics": METRICS,
            "config": suite.to_dict(),
        }
        if suite.accuracy.enabled:
            results["accuracy"] = _accuracy(suite, methods, sets, train, test, eval_seeds, rd, dev, bar)
        if suite.privacy.enabled:
            results["privacy"] = _privacy(suite, methods, sets, train, test, rd, dev, bar)
        if suite.nas.enabled:
            results["nas"] = _nas(suite, methods, sets, train, test, distill_seeds[0], rd, dev, bar)
        results["synthetic"] = [
            {"method": m, "ipc": k, "seed": s, "path": f"synthetic/{_set_name(m, k, s)}",
             "distill_seconds": syn.meta.get("distill_seconds")}
            for (m, k, s), syn in sets.items()
        ]
    finally:
        bar.close()
    results["run"]["finished"] = now_iso()
    results["run"]["total_seconds"] = round(time.perf_counter() - t0, 2)  # this invocation only
    # Compute time of every unit the results rest on, including units finished by earlier (interrupted)
    # invocations and reused here: the cost of the whole run, not just of its last resume.
    results["run"]["unit_seconds"] = round(rd.unit_seconds, 2)
    results["run"]["units"] = {"computed": rd.computed, "reused": rd.reused}
    # Provenance goes into results.json too, so the report and comparisons need nothing else.
    results["provenance"] = rd.manifest(seeds={"suite": suite.seed, "distill": distill_seeds, "eval": eval_seeds},
                                        device=dev, started=started)
    rd.write_results(results)
    rd.write_manifest(results["provenance"])
    from ddeval.report.render import render_run

    render_run(rd.path)
    results["run"]["dir"] = str(rd.path)
    return results


# -------------------------------------------------------------------------------------------- helpers
def _resolved_methods(suite: Suite) -> dict[str, dict[str, Any]]:
    """Suite methods plus the baselines, each validated now (unknown names/keys fail before any work)."""
    methods = {name: dict(cfg) for name, cfg in suite.methods.items()}
    for name in BASELINES:
        methods.setdefault(name, {})
    for name, cfg in methods.items():
        fields = config_keys(split_variant(name, cfg)[0])
        if suite.network is not None and "network" in fields:
            cfg.setdefault("network", suite.network)
        if suite.network_args and "network_args" in fields:
            cfg.setdefault("network_args", dict(suite.network_args))
        if "fast" in fields:
            cfg.setdefault("fast", suite.fast)
        extra = [k for k in ipc_overrides(name, cfg) if k not in suite.ipc]
        if extra:
            raise DDError(f"methods.{name}.by_ipc has overrides for ipc {extra}, which the suite does not run "
                          f"(ipc: {list(suite.ipc)}); add the ipc to the suite or drop the overrides.")
        for ipc in suite.ipc:
            create_method(name, cfg, ipc)
    return methods


def _validate_plan(suite: Suite, methods: Mapping[str, Any], train: LabeledData) -> None:
    """Fail before any work on mistakes that would otherwise surface only late in a long run."""
    from distillers.networks import create as create_network

    too_small = [k for k in suite.ipc if k > min(train.class_counts())]
    if too_small:
        raise DDError(f"ipc {too_small[0]} exceeds the smallest class of {suite.dataset} "
                      f"({min(train.class_counts())} images); lower ipc.")
    for network in suite.accuracy.networks:
        create_network(network, channels=train.channels, num_classes=train.num_classes,
                       image_size=train.image_size, **suite.accuracy.args_for(network))
    if suite.privacy.enabled:
        missing = [k for k in suite.privacy.ipc if k not in suite.ipc]
        if missing:
            raise DDError(f"privacy.ipc {missing[0]} is not among the suite's ipc {list(suite.ipc)}; add it there.")
        unknown = [m for m in suite.privacy.methods if m not in methods]
        if unknown:
            raise DDError(f'privacy.methods names "{unknown[0]}", which is not a method of this suite; '
                          f"choose from {', '.join(methods)}.")
        from ddeval.privacy.evaluate import is_dp_method

        wanted = [t for t in suite.privacy.audit.targets if t != "dp-sgd"]
        bad = [t for t in wanted if t not in methods or not is_dp_method(split_variant(t, methods[t])[0])]
        if bad:
            raise DDError(f'privacy.audit.targets names "{bad[0]}", which is neither "dp-sgd" nor a DP method '
                          "of this suite (e.g. dp-dm, psg); fix the name or add the method.")
    if suite.nas.enabled:
        if suite.nas.ipc is not None and suite.nas.ipc not in suite.ipc:
            raise DDError(f"nas.ipc {suite.nas.ipc} is not among the suite's ipc {list(suite.ipc)}; add it there.")
        unknown = [p for p in suite.nas.proxies if p not in methods]
        if unknown:
            raise DDError(f'nas.proxies names "{unknown[0]}", which is not a method of this suite; '
                          f"choose from {', '.join(methods)}.")
        for name, folder in suite.nas.proxy_sets.items():
            if name in _nas_method_proxies(suite, methods):
                raise DDError(f'nas.proxy_sets names "{name}", which is also a method proxy; rename the saved set.')
            if not (Path(folder).expanduser() / "tensors.pt").is_file():
                raise DDError(f"nas.proxy_sets.{name}: {folder} is not a saved synthetic set (no tensors.pt); "
                              "make one with `ddeval distill ... --out FOLDER`.")


def _nas_method_proxies(suite: Suite, methods: Mapping[str, Any]) -> list[str]:
    """The suite methods used as NAS proxies: ``nas.proxies``, or every method but ``noise``."""
    return list(suite.nas.proxies) or [m for m in methods if m != "noise"]


def _needs_sets(suite: Suite) -> bool:
    return suite.accuracy.enabled or suite.nas.enabled or (suite.privacy.enabled and not suite.privacy.shadows)


def _count_units(suite: Suite, methods: Mapping[str, Any]) -> int:
    n_sets = len(methods) * len(suite.ipc) * suite.distill_seeds
    total = n_sets if _needs_sets(suite) else 0
    if suite.accuracy.enabled:
        total += n_sets * len(suite.accuracy.networks) + int(suite.accuracy.full_data)
    if suite.privacy.enabled:
        from ddeval.privacy.evaluate import count_units

        total += count_units(suite, methods)
    if suite.nas.enabled:
        total += 1 + len(_nas_method_proxies(suite, methods)) + len(suite.nas.proxy_sets)
    return total


def _set_name(method: str, ipc: int, seed: int) -> str:
    return f"{method}-ipc{ipc}-seed{seed}"


def _parameterization_recipe(config: Any) -> int:
    """The recipe version of the method's parameterisation (1 for methods without one)."""
    name = getattr(config, "parameterization", None)
    if not name or name not in parameterize.PARAMETERIZATIONS:
        return 1
    return parameterize.PARAMETERIZATIONS.get(name).recipe_version


def _distill_all(suite: Suite, methods: Mapping[str, dict[str, Any]], train: LabeledData,
                 seeds: list[int], rd: RunDir, device: str, bar: _Progress) -> dict[tuple[str, int, int], SyntheticSet]:
    sets = {}
    for ipc in suite.ipc:
        for name, cfg in methods.items():
            method = create_method(name, cfg, ipc)
            for seed in seeds:
                spec = {"method": name, "config": key_dict(method.config), "ipc": ipc, "seed": seed,
                        "data": train.fingerprint(), "version": distillers.__version__}
                recipe = _parameterization_recipe(method.config)
                if recipe > 1:  # only then, so sets cached under recipe 1 keep their keys
                    spec["parameterization_recipe"] = recipe
                key = unit_key(spec)
                folder = rd.path / "synthetic" / _set_name(name, ipc, seed)
                bar.stage(f"distil {name} ipc={ipc} seed={seed}")
                syn = _load_cached_set(folder, key)
                if syn is None:
                    syn = _distill_one(method, train, ipc, seed, device, bar.enabled, rd, name)
                    syn.meta["unit_key"] = key
                    syn.meta["content_sha256"] = syn.content_sha256()
                    syn.save(folder)
                    rd.computed += 1
                else:
                    rd.reused += 1
                for file in (TENSORS_FILE, META_FILE):
                    rd.artefacts[f"synthetic/{folder.name}/{file}"] = sha256_file(folder / file)
                rd.unit_seconds += float(syn.meta.get("distill_seconds") or 0.0)
                sets[(name, ipc, seed)] = syn
                bar.step()
    return sets


def _distill_one(method: Any, train: LabeledData, ipc: int, seed: int, device: str, progress: bool, rd: RunDir,
                 name: str) -> SyntheticSet:
    """One distillation; at a divergence its last finite set goes to ``diverged/`` (never ``synthetic/``, so
    a resumed run distils it again) and the run stops with the iteration and that folder in the message."""
    try:
        return method.distill(train, ipc, seed=seed, device=device, progress=progress)
    except Diverged as err:
        if not isinstance(err.last_good, SyntheticSet):
            raise
        folder = rd.path / "diverged" / _set_name(name, ipc, seed)
        err.last_good.save(folder)
        raise DDError(f"{name} at ipc {ipc} (seed {seed}): {err} Its synthetic set after iteration "
                      f"{err.iteration - 1} is in {folder}; finished results are kept, and rerunning the same "
                      "command after the fix resumes.") from None


def _load_cached_set(folder: Path, key: str) -> SyntheticSet | None:
    if not folder.is_dir():
        return None
    try:
        syn = SyntheticSet.load(folder)
    except DDError:
        return None  # damaged or partial: distil again
    return syn if syn.meta.get("unit_key") == key else None


def _dataset_info(spec: str, train: LabeledData, test: LabeledData) -> dict[str, Any]:
    return {"name": spec, "num_train": len(train), "num_test": len(test), "num_classes": train.num_classes,
            "classes": list(train.classes), "image_shape": list(train.image_shape),
            "fingerprint": train.fingerprint()}


def _accuracy(suite: Suite, methods: Mapping[str, Any], sets: Mapping[tuple[str, int, int], SyntheticSet],
              train: LabeledData, test: LabeledData, eval_seeds: list[int], rd: RunDir, device: str,
              bar: _Progress) -> dict[str, Any]:
    acc = suite.accuracy
    strategy = default_strategy(train.name or suite.dataset)
    cfg = recipe(acc, augment=strategy, fast=suite.fast)
    rows = []
    for ipc in suite.ipc:
        for name in methods:
            for network in acc.networks:
                bar.stage(f"accuracy {name} ipc={ipc} on {network}")
                per_seed = []
                distill_seeds = sorted(s for (m, k, s) in sets if m == name and k == ipc)
                for seed in distill_seeds:
                    syn = sets[(name, ipc, seed)]
                    per_seed.append(evaluate_over_seeds(
                        syn, test, network=network, network_args=acc.args_for(network),
                        train_config=set_recipe(cfg, syn, acc.learned_lr), seeds=eval_seeds, device=device,
                        run_unit=rd.unit, unit_spec={"set": set_key(syn), "test": test.fingerprint()}))
                    bar.step()
                accuracies = [a for r in per_seed for a in r["accuracies"]]
                mean, std = mean_std(accuracies)
                first = sets[(name, ipc, distill_seeds[0])]  # what all distillation seeds of a row share
                rows.append({
                    "method": name, "ipc": ipc, "network": network,
                    "cross_architecture": network != acc.networks[0],
                    "accuracy_mean": mean, "accuracy_std": std, "accuracies": accuracies,
                    "eval_seeds": eval_seeds,
                    "distill_seeds": distill_seeds,
                    "distill_seconds": _mean([sets[(name, ipc, s)].meta.get("distill_seconds", 0.0)
                                              for s in distill_seeds]),
                    "seconds_per_iteration": _mean_known([sets[(name, ipc, s)].meta.get("seconds_per_iteration")
                                                          for s in distill_seeds]),
                    "peak_memory_mb": _mean_known([sets[(name, ipc, s)].meta.get("peak_memory_mb")
                                                   for s in distill_seeds]),
                    "base_method": first.meta.get("method", name),
                    "parameterization": first.meta.get("parameterization"),
                    "images_per_class": len(first) // max(test.num_classes, 1),
                    "storage_ratio": first.storage_ratio,
                    "train_seconds_mean": _mean([r["train_seconds_mean"] for r in per_seed]),
                    "epochs": cfg.epochs,
                    "lr": _mean([set_recipe(cfg, sets[(name, ipc, s)], acc.learned_lr).lr for s in distill_seeds]),
                    "path": sorted({p for r in per_seed for p in r.get("path", [])}),
                    "method_config": first.meta.get("config"),
                    **(_own_protocol([sets[(name, ipc, s)] for s in distill_seeds], test, eval_seeds, rd, device)
                       if network == acc.networks[0] else {}),
                })
    out: dict[str, Any] = {"recipe": {**config_dict(cfg)}, "rows": rows}
    if acc.full_data:
        bar.stage("accuracy of the full real data")
        full_cfg = recipe(acc, epochs=acc.full_data_epochs, augment=strategy, fast=suite.fast)
        out["full_data"] = evaluate_over_seeds(
            train, test, network=acc.networks[0], network_args=acc.args_for(acc.networks[0]), train_config=full_cfg,
            seeds=eval_seeds, device=device, run_unit=rd.unit,
            unit_spec={"set": "full", "data": train.fingerprint(), "test": test.fingerprint()})
        bar.step()
    return out


def _own_protocol(syns: list[SyntheticSet], test: LabeledData, eval_seeds: list[int], rd: RunDir,
                  device: str) -> dict[str, Any]:
    """For sets made to train one particular way (DD: its learned step sizes, replayed from its own or a
    seeded initialisation), the accuracy under that protocol too, beside the standard recipe's."""
    from distillers.methods.performance import replay_accuracy

    if not syns or not all("lr_schedule" in syn.meta for syn in syns):
        return {}
    accuracies = []
    for syn in syns:
        for seed in eval_seeds:
            def compute(syn: SyntheticSet = syn, seed: int = seed) -> dict[str, Any]:
                return {"accuracy": replay_accuracy(syn, test, seed=seed, device=device)}

            spec = {"set": set_key(syn), "test": test.fingerprint(), "seed": seed}
            accuracies.append(float(rd.unit("replay", spec, compute)["accuracy"]))
    mean, std = mean_std(accuracies)
    return {"own_protocol": "dd-replay", "own_protocol_accuracy_mean": mean, "own_protocol_accuracy_std": std}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _mean_known(values: list[float | None]) -> float | None:
    """Mean of the values that were measured; ``None`` when none was (e.g. sets made by older versions)."""
    known = [float(v) for v in values if v is not None]
    return round(_mean(known), 6) if known else None


def _privacy(suite: Suite, methods: Mapping[str, Any], sets: Mapping[tuple[str, int, int], SyntheticSet],
             train: LabeledData, test: LabeledData, rd: RunDir, device: str, bar: _Progress) -> dict[str, Any]:
    from ddeval.privacy.evaluate import evaluate_privacy

    return evaluate_privacy(suite, methods, sets, train, test, rd, device, bar.stage, bar.step)


def _nas_proxy_sets(suite: Suite, train: LabeledData) -> dict[str, SyntheticSet]:
    """The saved synthetic sets named in ``nas.proxy_sets``, checked against the suite's data."""
    out = {}
    for name, folder in suite.nas.proxy_sets.items():
        syn = SyntheticSet.load(Path(folder).expanduser())
        if tuple(syn.images.shape[1:]) != train.image_shape or syn.classes != train.classes:
            raise DDError(f"nas.proxy_sets.{name} ({folder}) holds {'x'.join(map(str, syn.images.shape[1:]))} "
                          f"images of {len(syn.classes)} classes, but the suite's data are "
                          f"{'x'.join(map(str, train.image_shape))} with {len(train.classes)} classes; distil "
                          "it from the same data set.")
        out[name] = syn
    return out


def _nas(suite: Suite, methods: Mapping[str, Any], sets: Mapping[tuple[str, int, int], SyntheticSet],
         train: LabeledData, test: LabeledData, seed: int, rd: RunDir, device: str,
         bar: _Progress) -> dict[str, Any]:
    """Search the space on every proxy and on the full data; score each proxy's ranking against the full one.

    Every trial is cached by content (``nas.cache_dir``, default ``<run>/nas/trials``), so the full-data
    search is computed once, and reused by a later run that shares the cache folder.
    """
    from ddeval.nas.ranking import compare, top_k_lists
    from ddeval.nas.search import search
    from ddeval.nas.trials import data_fingerprint

    ncfg = suite.nas
    ipc = ncfg.ipc or max(suite.ipc)
    cache_dir = str(Path(ncfg.cache_dir).expanduser().resolve()) if ncfg.cache_dir else str(rd.path / "nas" / "trials")
    proxies: list[tuple[str, str, SyntheticSet, str]] = [
        (name, f"{name}-ipc{ipc}", sets[(name, ipc, seed)], "method") for name in _nas_method_proxies(suite, methods)]
    proxies += [(name, name, syn, "saved set") for name, syn in _nas_proxy_sets(suite, train).items()]
    if ncfg.test_images is not None:
        per_class = ncfg.test_images // test.num_classes
        if per_class < 1 or per_class * test.num_classes > len(test):
            raise DDError(f"nas.test_images={ncfg.test_images} must lie between {test.num_classes} (one per class) "
                          f"and the {len(test)} test images.")
        test = test.subset(test.stratified_indices(per_class, torch.Generator().manual_seed(suite.seed)),
                           name=f"{test.name} ({per_class * test.num_classes} for NAS)")

    def run_search(label: str, data: LabeledData | SyntheticSet, epochs: int) -> dict[str, Any]:
        cfg = ncfg.search_config(epochs, seed=suite.seed, fast=suite.fast)
        cfg = dataclasses.replace(cfg, cache_dir=cache_dir)
        spec = {"label": label, "data": data_fingerprint(data), "test": test.fingerprint(),
                "config": config_dict(cfg)}
        bar.stage(f"NAS search on {label}")
        result = rd.unit("nas", spec, lambda: search(data, test, cfg, rd.path / "nas" / label, label=label,
                                                      device=device))
        bar.step()
        return result

    full = run_search("full-data", train, ncfg.full_epochs)
    top = max(ncfg.top_k)
    rows = []
    for name, label, syn, kind in proxies:
        proxy = run_search(label, syn, ncfg.proxy_epochs)
        distill_seconds = float(syn.meta.get("distill_seconds") or 0.0)
        rows.append({"proxy": name, "kind": kind, "ipc": syn.ipc, "images": len(syn), **proxy,
                     **compare(proxy, full, top_k=ncfg.top_k, extra_proxy_seconds=distill_seconds),
                     "top_list": top_k_lists(proxy, full, top)})
    return {"strategy": ncfg.strategy, "space": ncfg.space, "subset": full.get("subset"), "num_test_images": len(test),
            "space_seed": ncfg.space_seed, "num_candidates": len(full["trials"]), "ipc": ipc,
            "proxy_epochs": ncfg.proxy_epochs, "full_epochs": ncfg.full_epochs, "top_k": list(ncfg.top_k),
            "full": {**full, "top_list": top_k_lists(full, full, top)}, "proxies": rows}

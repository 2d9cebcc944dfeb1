"""Suite configuration: frozen dataclasses loaded from YAML, with ``include:`` and ``--set key=value`` overrides.

A suite says which data set, which methods (each with its own config), which images-per-class budgets, and
which evaluators to run. Unknown keys anywhere are errors that list the valid keys, so a typo never silently
falls back to a default. Values given on the command line are parsed as YAML scalars/lists (never evaluated).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from distillers.config import build_config, check, config_dict, is_int
from distillers.errors import DDError, did_you_mean

PACKAGED_SUITES = ("quickstart", "ci-regression", "digits-benchmark-2", "digits-benchmark-3", "mnist-benchmark",
                   "mnist-benchmark-2", "mnist-benchmark-3", "model-augmentation-speedup", "privacy", "privacy-mnist", "nas", "nas-mnist")


@dataclass(frozen=True)
class AccuracyConfig:
    """How synthetic sets are evaluated: the standard recipe of REFERENCE §1 on one or more networks."""

    enabled: bool = True
    networks: tuple[str, ...] = ("convnet",)  # the first is the same-architecture net, the rest cross-arch
    network_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # per network name, e.g. {mlp: {hidden: 64}}
    eval_seeds: int = 3
    epochs: int = 300
    lr: float = 0.01
    batch_size: int = 256
    augment: bool = False  # DSA augmentation while training evaluation nets (papers: 1000 epochs with it)
    full_data: bool = True
    full_data_epochs: int = 30
    learned_lr: bool = False  # train sets that learned a learning rate (MTT, TESLA, DD) with it, as their authors do

    def __post_init__(self) -> None:
        check(len(self.networks) >= 1, "accuracy.networks needs at least one network name.")
        from distillers.networks import NETWORKS

        for name in self.networks:
            NETWORKS.get(name)  # an unknown name fails here, with a did-you-mean, not hours into a run
        check(self.eval_seeds >= 1, f"accuracy.eval_seeds must be >= 1, got {self.eval_seeds}.")
        check(self.epochs >= 1, f"accuracy.epochs must be >= 1, got {self.epochs}.")
        check(self.full_data_epochs >= 1, f"accuracy.full_data_epochs must be >= 1, got {self.full_data_epochs}.")
        check(self.lr > 0, f"accuracy.lr must be positive, got {self.lr}.")
        check(self.batch_size >= 1, f"accuracy.batch_size must be >= 1, got {self.batch_size}.")
        for name, args in self.network_args.items():
            check(name in self.networks and isinstance(args, Mapping),
                  f"accuracy.network_args.{name} must be a mapping of options for one of accuracy.networks "
                  f"({', '.join(self.networks)}).")

    def args_for(self, network: str) -> dict[str, Any]:
        return dict(self.network_args.get(network) or {})


THRESHOLD_ATTACKS = ("loss", "confidence", "entropy", "modified-entropy")
LIRA_ATTACKS = ("lira-online", "lira-offline", "lira-online-fixed", "lira-offline-fixed")


@dataclass(frozen=True)
class AuditConfig:
    """Empirical DP audits (canary ε lower bounds, one-run audit, GDP estimate) of the DP targets."""

    enabled: bool = False
    targets: tuple[str, ...] = ()  # "dp-sgd" and/or DP method names of the suite; empty: every DP target
    trials: int = 64  # mechanism runs of the canary audit, half with the canary
    canaries: int = 200  # canaries of the one-run audit
    beta: float = 0.05  # 1 - confidence of every bound
    config: dict[str, Any] = field(default_factory=dict)  # per target: overrides of its audited configuration

    def __post_init__(self) -> None:
        check(self.trials >= 8 and self.trials % 2 == 0,
              f"privacy.audit.trials must be an even number >= 8 (half with the canary), got {self.trials}.")
        check(self.canaries >= 2, f"privacy.audit.canaries must be >= 2, got {self.canaries}.")
        check(0 < self.beta < 1, f"privacy.audit.beta must lie in (0, 1), got {self.beta}.")


@dataclass(frozen=True)
class PrivacyConfig:
    """Membership inference on models trained on each distilled set, beside its baselines and DP-SGD.

    ``shadows: 0`` attacks one model per target (members = the training set, non-members = the test set)
    with threshold attacks. ``shadows: N`` runs N + 1 pipelines per target on balanced random halves of a
    population (distil → train → query, REFERENCE §6) and adds LiRA; every pipeline is a target in turn
    (leave-one-out), scores pooled over ``targets`` of them.
    """

    enabled: bool = True
    attacks: tuple[str, ...] = ()  # empty: the threshold attacks, plus the LiRA variants when shadows > 0
    ipc: tuple[int, ...] = ()  # empty: every ipc of the suite
    methods: tuple[str, ...] = ()  # suite methods attacked; empty: all but "noise"
    epochs: int | None = None  # None: the accuracy recipe's epochs
    full_data: bool = True  # a model trained on all the real data (all of each half with shadows)
    full_data_epochs: int | None = None  # None: accuracy.full_data_epochs
    dp_epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)  # DP-SGD baselines on the real data; () for none
    dp_sgd: dict[str, Any] = field(default_factory=dict)  # other DP-SGD settings (ddeval.privacy.dp.DPConfig)
    shadows: int = 0
    targets: int | None = None  # pipelines scored as targets with shadows (None: all of them)
    population: int | None = None  # images drawn from the training set for the halves (None: all)
    bootstrap: int = 200  # bootstrap resamples for confidence intervals (0: none)
    workers: int = 1  # local worker processes for the pipelines
    executor: str = "processes"  # processes (here, `workers` of them), nni-local or nni-remote (NNI trials)
    concurrency: int = 2  # NNI trials at once (nni-local / nni-remote)
    port: int | None = None  # NNI server port (None: a free one)
    remote: dict[str, Any] = field(default_factory=dict)  # nni-remote machines, as for nas.remote
    audit: AuditConfig = field(default_factory=AuditConfig)

    def __post_init__(self) -> None:
        known = THRESHOLD_ATTACKS + LIRA_ATTACKS
        for name in self.attacks:
            check(name in known, f'Unknown privacy attack "{name}".{did_you_mean(name, known)} '
                                 f"Valid attacks: {', '.join(known)}.")
        lira = [a for a in self.attacks if a in LIRA_ATTACKS]
        check(not lira or self.shadows >= 1,
              f"{lira[0] if lira else ''} needs shadow pipelines; set privacy.shadows >= 1 (16 or more for "
              "stable per-example Gaussians), or drop the LiRA attacks.")
        check(self.shadows >= 0, f"privacy.shadows must be >= 0, got {self.shadows}.")
        check(self.targets is None or 1 <= self.targets <= self.shadows + 1,
              f"privacy.targets must lie in 1..shadows+1 ({self.shadows + 1}), got {self.targets}.")
        check(self.bootstrap >= 0, f"privacy.bootstrap must be >= 0, got {self.bootstrap}.")
        check(self.workers >= 1, f"privacy.workers must be >= 1, got {self.workers}.")
        from ddeval.executor import ENGINES
        from ddeval.nas.engines import check_port

        check(self.executor in ENGINES, f"privacy.executor must be one of {', '.join(ENGINES)}, got {self.executor!r}.")
        check(is_int(self.concurrency) and self.concurrency >= 1,
              f"privacy.concurrency must be a positive integer, got {self.concurrency!r}.")
        check_port(self.port, "privacy.port")
        check(self.executor == "nni-remote" or not self.remote,
              "privacy.remote is only used with privacy.executor: nni-remote.")
        check(all(e > 0 for e in self.dp_epsilons),
              f"privacy.dp_epsilons must be positive, got {list(self.dp_epsilons)}.")
        check("epsilon" not in self.dp_sgd and "noise_multiplier" not in self.dp_sgd,
              "Set the DP-SGD budgets with privacy.dp_epsilons, not privacy.dp_sgd.epsilon/noise_multiplier.")

    def attack_names(self) -> tuple[str, ...]:
        if self.attacks:
            return self.attacks
        return THRESHOLD_ATTACKS[:3] + (LIRA_ATTACKS if self.shadows else ())


@dataclass(frozen=True)
class NASConfig:
    """NAS proxy evaluation (REFERENCE §5): the same NNI search on each proxy and on the full data.

    ``space``/``subset``/``space_seed``/``strategy``/``max_trials``/``cache_dir`` and the engine settings
    (``engine``/``concurrency``/``port``/``remote``) are those of :class:`ddeval.nas.search.NASConfig`. Proxies are the suite's methods named in ``proxies`` (default: all
    but ``noise``) at ``ipc`` (default: the suite's largest), plus ``proxy_sets``: saved synthetic sets
    (``name: folder`` from ``ddeval distill --out``). Proxies train ``proxy_epochs``, the full data
    ``full_epochs``; both with ``batch_size``, ``lr`` and the suite's seed. ``test_images``: test every
    candidate on that many test images (the same class-balanced random choice, by the suite's seed, for all
    searches) instead of the whole test set, which dominates a search's cost on a CPU when the proxies are
    small. ``top_k``: the k of the top-k figures and of the side-by-side top lists.
    """

    enabled: bool = True
    space: str | dict[str, Any] = "small"
    subset: int | None = None
    space_seed: int = 0
    strategy: str = "grid"
    max_trials: int | None = None
    ipc: int | None = None  # None: the largest ipc of the suite
    proxies: tuple[str, ...] = ()  # method names; empty: every method except "noise"
    proxy_sets: dict[str, str] = field(default_factory=dict)
    proxy_epochs: int = 100
    full_epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01
    cache_dir: str | None = None
    test_images: int | None = None
    top_k: tuple[int, ...] = (5, 10, 20)
    engine: str = "sequential"
    concurrency: int = 1
    port: int | None = None
    remote: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(all(is_int(k) and k >= 1 for k in self.top_k) and len(self.top_k) >= 1,
              f"nas.top_k must be a list of positive integers, got {list(self.top_k)}.")
        check(self.test_images is None or (is_int(self.test_images) and self.test_images >= 1),
              f"nas.test_images must be a positive integer or null (the whole test set), got {self.test_images!r}.")
        for name, path in self.proxy_sets.items():
            check(isinstance(path, str) and path.strip() != "",
                  f"nas.proxy_sets.{name} must be the folder of a saved synthetic set, got {path!r}.")
        if self.enabled:
            self.search_config(self.proxy_epochs, seed=0)
            self.search_config(self.full_epochs, seed=0)

    def search_config(self, epochs: int, *, seed: int, fast: bool = True) -> Any:
        """The :class:`ddeval.nas.search.NASConfig` of one search (checks every value)."""
        from ddeval.nas.search import NASConfig as SearchConfig

        return SearchConfig(space=self.space, subset=self.subset, space_seed=self.space_seed,
                            strategy=self.strategy, max_trials=self.max_trials, epochs=epochs, lr=self.lr,
                            batch_size=self.batch_size, seed=seed, fast=fast, cache_dir=self.cache_dir,
                            engine=self.engine, concurrency=self.concurrency, port=self.port, remote=self.remote)


@dataclass(frozen=True)
class Suite:
    """A whole evaluation: data set, methods × ipc × seeds, and the evaluators."""

    name: str = "custom"
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    ipc: tuple[int, ...] = (1, 10)
    distill_seeds: int = 1
    seed: int = 0
    network: str | None = None  # distillation network for every method that has one (unless it sets its own)
    network_args: dict[str, Any] = field(default_factory=dict)
    fast: bool = True  # bf16 autocast / torch.compile where they pay (distillers.fastpath); false = fp32 eager
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {"random": {}, "dm": {}})
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    nas: NASConfig = field(default_factory=NASConfig)

    def __post_init__(self) -> None:
        check(len(self.ipc) >= 1 and all(k >= 1 for k in self.ipc),
              f"ipc must be a list of positive integers, got {list(self.ipc)}.")
        check(self.distill_seeds >= 1, f"distill_seeds must be >= 1, got {self.distill_seeds}.")
        check(isinstance(self.fast, bool), f"fast must be true or false, got {self.fast!r}.")
        check(len(self.methods) >= 1, "methods needs at least one method name.")
        if self.network is not None:  # checked even when no listed method distils with a network
            from distillers.methods.common import check_network

            check_network(self.network, self.network_args)
        for name, cfg in self.methods.items():
            check(isinstance(cfg, Mapping),
                  f"methods.{name} must be a mapping of that method's config keys (or {{}}), got {cfg!r}.")

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)


# ---------------------------------------------------------------------------------------------- variants
VARIANT_KEY = "method"
BY_IPC_KEY = "by_ipc"
"""A suite entry may run a registered method under another name, e.g. ``dm-haba: {method: dm,
parameterization: haba}``, so one method can appear with several configs (parameterisations, budgets)."""


def split_variant(name: str, cfg: Mapping[str, Any], ipc: int | None = None) -> tuple[str, dict[str, Any]]:
    """(registered method, its config) of suite entry ``name`` at ``ipc``.

    Drops the variant key, and the ``by_ipc`` table of per-ipc overrides after applying the one for ``ipc``
    (``mtt: {iterations: 200, by_ipc: {10: {syn_steps: 10}}}``: the authors tune several methods per ipc).
    """
    rest = dict(cfg)
    base = rest.pop(VARIANT_KEY, name)
    check(isinstance(base, str) and bool(base),
          f"methods.{name}.{VARIANT_KEY} must name a registered method, got {base!r}.")
    table = rest.pop(BY_IPC_KEY, None) or {}
    check(isinstance(table, Mapping) and all(isinstance(v, Mapping) for v in table.values()),
          f"methods.{name}.{BY_IPC_KEY} must map an ipc to a mapping of config overrides, e.g. "
          f"{{10: {{iterations: 100}}}}; got {table!r}.")
    by_ipc: dict[int, Mapping[str, Any]] = {}
    for key, overrides in table.items():
        check(is_int(key) or (isinstance(key, str) and key.isdigit()),
              f"methods.{name}.{BY_IPC_KEY} keys must be ipc values (positive integers), got {key!r}.")
        check(VARIANT_KEY not in overrides and BY_IPC_KEY not in overrides,
              f"methods.{name}.{BY_IPC_KEY}.{key} may not set {VARIANT_KEY!r} or nest {BY_IPC_KEY!r}.")
        by_ipc[int(key)] = overrides
    if ipc is not None:
        rest.update(by_ipc.get(ipc, {}))
    return base, rest


def ipc_overrides(name: str, cfg: Mapping[str, Any]) -> list[int]:
    """The ipc values that suite entry ``name`` has ``by_ipc`` overrides for."""
    table = cfg.get(BY_IPC_KEY) or {}
    return sorted(int(k) for k in table) if isinstance(table, Mapping) else []


def create_method(name: str, cfg: Mapping[str, Any], ipc: int | None = None) -> Any:
    """The distiller of suite entry ``name`` (a registered method, or a variant naming one) at ``ipc``."""
    import distillers

    base, rest = split_variant(name, cfg, ipc)
    return distillers.create(base, **rest)


# ---------------------------------------------------------------------------------------------- loading
def packaged_suite_path(name: str) -> Path:
    path = resources.files("ddeval") / "suites" / f"{name}.yaml"
    return Path(str(path))


def read_suite_mapping(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The raw mapping of a suite: a packaged name, a YAML path, or a mapping; ``include:`` resolved."""
    if source is None:
        source = "quickstart"
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    text_source = str(source)
    path = Path(text_source)
    if not path.suffix and not path.exists():
        if text_source not in PACKAGED_SUITES:
            raise DDError(f'No suite "{text_source}".{did_you_mean(text_source, PACKAGED_SUITES)} Packaged '
                          f"suites: {', '.join(PACKAGED_SUITES)}; or give the path of a YAML file.")
        path = packaged_suite_path(text_source)
    return _read_yaml_with_includes(path, seen=())


def _read_yaml_with_includes(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise DDError(f"Suite file {path} does not exist; check the path (packaged suites: "
                      f"{', '.join(PACKAGED_SUITES)}).")
    resolved = path.resolve()
    if resolved in seen:
        raise DDError(f"Suite {path} includes itself (include cycle); remove the cycle.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DDError(f"Suite {path} is not valid YAML{where}; fix the syntax.") from None
    except UnicodeDecodeError:
        raise DDError(f"Suite {path} is not a text file; give a YAML suite.") from None
    if data is None:  # an empty file must not silently run the defaults
        raise DDError(f"Suite {path} is empty; write its keys (name, dataset, methods, ...) or name a packaged "
                      f"suite ({', '.join(PACKAGED_SUITES)}).")
    if not isinstance(data, dict):
        raise DDError(f"Suite {path} must be a YAML mapping of keys (name, dataset, methods, ...).")
    include = data.pop("include", None)
    if include is None:
        return data
    base_path = Path(include)
    if not base_path.is_absolute():
        candidate = path.parent / base_path
        base_path = candidate if candidate.exists() else packaged_suite_path(str(include).removesuffix(".yaml"))
    base = _read_yaml_with_includes(base_path, seen + (resolved,))
    return deep_merge(base, data)


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``; nested mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(mapping: dict[str, Any], overrides: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars or lists, never evaluated).

    ``methods=dm,random`` keeps only those methods (with their configs from the suite where present);
    ``methods.dm.iterations=50`` sets one method's config key.
    """
    out = copy.deepcopy(mapping)
    for item in overrides or ():
        if "=" not in item:
            raise DDError(f'Override "{item}" must look like key=value (e.g. accuracy.eval_seeds=5).')
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise DDError(f'Override "{item}" has an empty key; write e.g. nas.enabled=false.')
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if key == "methods":
            names = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
            current = out.get("methods") or {}
            out["methods"] = {str(n): (current.get(str(n)) or {}) for n in names}
            continue
        if isinstance(value, str) and "," in value and key in ("ipc", "accuracy.networks", "nas.proxies", "nas.top_k",
                                                                "privacy.ipc"):
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise DDError(f'Override "{item}": "{part}" is not a section with sub-keys.')
            node = child
        node[parts[-1]] = value
    return out


def _ipc_list(value: Any) -> list[int]:
    """The integer ipc values of a raw ``ipc`` entry; anything else is left for validation to reject."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if is_int(v)]


def _drop_by_ipc_of_dropped_ipc(written: Mapping[str, Any], mapping: dict[str, Any]) -> None:
    """Remove the suite file's ``by_ipc`` entries for an ipc that the file runs but ``--set ipc=...`` leaves
    out (``--set ipc=1`` on a suite tuned for 1 and 10), so running part of a suite needs no edit. An entry
    for an ipc the file does not run, or one the overrides add, is still an error (caught in the pipeline)."""
    dropped = set(_ipc_list(written.get("ipc"))) - set(_ipc_list(mapping.get("ipc")))
    file_methods, methods = written.get("methods"), mapping.get("methods")
    if not dropped or not isinstance(file_methods, Mapping) or not isinstance(methods, Mapping):
        return
    for name, cfg in methods.items():
        file_cfg = file_methods.get(name)
        file_table = file_cfg.get(BY_IPC_KEY) if isinstance(file_cfg, Mapping) else None
        table = cfg.get(BY_IPC_KEY) if isinstance(cfg, dict) else None
        if not isinstance(table, dict) or not isinstance(file_table, Mapping):
            continue
        for key in [k for k in table if is_int(k) and k in dropped and file_table.get(k) == table[k]]:
            del table[key]
        if not table:
            del cfg[BY_IPC_KEY]


def load_suite(source: str | Path | Mapping[str, Any] | None = None,
               overrides: list[str] | tuple[str, ...] | None = None) -> Suite:
    """Read, merge, override and validate a suite; unknown keys and bad values raise DDError."""
    written = read_suite_mapping(source)
    mapping = apply_overrides(written, overrides)
    _drop_by_ipc_of_dropped_ipc(written, mapping)
    methods = mapping.get("methods")
    if isinstance(methods, list):  # a plain list of names is accepted too
        mapping["methods"] = {str(m): {} for m in methods}
    elif isinstance(methods, Mapping):
        mapping["methods"] = {str(k): (dict(v) if isinstance(v, Mapping) else v) if v is not None else {}
                              for k, v in methods.items()}
    if isinstance(mapping.get("ipc"), int):
        mapping["ipc"] = [mapping["ipc"]]
    return build_config(Suite, mapping, what="suite")

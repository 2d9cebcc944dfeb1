"""Architecture search with NNI 3.0 over the ConvNet space, run in-process (REFERENCE §5, §5b).

:func:`search` trains every candidate the strategy proposes (by default: the whole grid) on ``train`` with the
standard recipe, tests it on ``test`` and returns every trial with its accuracy and wall time. Running the
same search on a distilled proxy and on the full data, then :func:`ddeval.nas.ranking.compare`, measures how
well the proxy ranks architectures and how much time it saves.

How the run is kept local and tidy:

- NNI's *sequential* execution engine runs each trial in this process: no NNI manager, no web server, no open
  port, no child process. The experiment class used here refuses to start the NNI manager at all.
- The data reach the trials as file paths (``workdir/data``), loaded with ``torch.load(weights_only=True)``:
  NNI serialises evaluator arguments and rejects large payloads.
- Everything NNI writes lands in ``workdir/nni``: ``HOME`` points there for the duration (NNI's
  ``~/nni-experiments/.experiment`` manifest, its ``experiment_working_directory``) and so does
  ``NNI_CONFIG_DIR`` (which otherwise defaults to the Python environment). Both are restored afterwards.
- ``exp.stop()`` always runs (``finally``), and SIGTERM is turned into ``KeyboardInterrupt`` during the search
  so a terminated run unwinds through the same cleanup instead of dying mid-way.
- NNI's INFO chatter on stdout is held back during the search (warnings and errors still show); the full log
  is in ``workdir/nni/nni-experiments/<id>/log/experiment.log``.

Importing NNI also imports matplotlib (through pytorch-lightning), whose first import on a machine writes its
font cache under ``~/.cache/matplotlib`` (or ``$MPLCONFIGDIR``); that happens before the redirection, as it
would for any plot.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddeval.nas.space import (
    ARCH_KEYS,
    arch_key,
    arch_name,
    enumerate_space,
    import_nni,
    resolve_space,
    space_size,
)
from distillers.config import build_config, check, config_dict
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.io import atomic_write, atomic_write_json
from distillers.synthetic import SyntheticSet

_logger = logging.getLogger(__name__)

STRATEGIES = ("grid", "random", "evolution")
ENGINES = ("sequential",)


@dataclass(frozen=True)
class NASConfig:
    """What to search and how to train each candidate.

    ``space``: a name from :data:`ddeval.nas.space.SPACES` or a mapping of allowed values. ``strategy``:
    ``grid`` (every candidate, in enumeration order), ``random`` (distinct candidates drawn uniformly) or
    ``evolution`` (regularized evolution); the last two are seeded with ``seed`` and run ``max_trials``
    candidates (default: all of them). Every candidate is trained with the standard recipe (SGD, momentum
    0.9, weight decay 5e-4, lr x0.1 at half the epochs) for ``epochs``, its weights and shuffling drawn from
    ``seed``. The default of 300 epochs is the papers' recipe for synthetic sets; callers pass less.
    ``engine``: only ``sequential`` (in-process) is offered; NNI's parallel engine starts a server that
    listens on all network interfaces.
    """

    space: str | dict[str, Any] = "small"
    strategy: str = "grid"
    epochs: int = 300
    lr: float = 0.01
    batch_size: int = 256
    augment: str | None = None
    seed: int = 0
    max_trials: int | None = None
    engine: str = "sequential"
    fast: bool = True

    def __post_init__(self) -> None:
        resolve_space(self.space)
        check(self.strategy in STRATEGIES,
              f"Unknown NAS strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}.")
        check(self.engine in ENGINES,
              f"NAS engine {self.engine!r} is not offered: only 'sequential' (in-process, no server). NNI's "
              "parallel engine starts a server listening on all interfaces; it is not wired in.")
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool),
              f"NAS seed must be an integer, got {self.seed!r}.")
        check(self.max_trials is None or (isinstance(self.max_trials, int) and self.max_trials >= 1),
              f"NAS max_trials must be a positive integer or None (all candidates), got {self.max_trials!r}.")
        size = space_size(self.space)
        check(self.strategy != "grid" or self.max_trials is None or self.max_trials >= size,
              f"Strategy 'grid' trains all {size} candidates; for a subset of {self.max_trials} use strategy "
              "'random' (or leave max_trials unset).")
        self.train_config()  # checks epochs, lr, batch_size and augment

    def train_config(self) -> Any:
        """The :class:`distillers.protocol.TrainConfig` every candidate is trained with."""
        from distillers.protocol import TrainConfig

        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, augment=self.augment,
                           fast=self.fast)


# --------------------------------------------------------------------------------------------- the trial
def train_candidate(arch: Mapping[str, Any], train: LabeledData | SyntheticSet, test: LabeledData,
                    config: NASConfig | Any, *, seed: int, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train the ConvNet ``arch`` on ``train`` and test it on ``test`` (no NNI involved).

    ``config`` is a :class:`NASConfig` or a ``TrainConfig``. The network's initial weights and the batch
    order come from ``seed`` alone, so the same call gives the same accuracy. Returns
    ``distillers.protocol.train_and_evaluate``'s dict plus ``"arch"``.
    """
    from distillers.protocol import train_and_evaluate

    train_config = config.train_config() if isinstance(config, NASConfig) else config
    arch = {k: arch[k] for k in ARCH_KEYS}
    result = train_and_evaluate("convnet", train, test, train_config, seed=seed, device=device, network_args=arch)
    result["arch"] = arch
    return result


def nni_trial(model: Any, *, train_path: str, test_path: str, epochs: int, lr: float, batch_size: int,
              augment: str | None, seed: int, device: str, fast: bool = True) -> float:
    """The evaluator function NNI calls for each candidate; reports the test accuracy as the metric.

    ``model`` is the frozen :class:`~ddeval.nas.space.ConvNetSpace`; only its ``arch`` is used: the network
    is rebuilt here from ``seed`` so that the weights do not depend on NNI's construction order.
    """
    import nni

    from distillers.protocol import TrainConfig

    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, augment=augment, fast=fast)
    test = load_data(test_path)
    if not isinstance(test, LabeledData):
        raise DDError(f"The NAS test data at {test_path} must be a labelled data file, not a synthetic set.")
    result = train_candidate(model.arch, load_data(train_path), test, config, seed=seed, device=device)
    _logger.info("%s: accuracy %.4f", arch_name(result["arch"]), result["accuracy"])
    nni.report_final_result(result["accuracy"])
    return result["accuracy"]


# ------------------------------------------------------------------------------------- data by file path
_DATA_CACHE: dict[tuple[str, int, int], LabeledData | SyntheticSet] = {}


def save_data(data: LabeledData | SyntheticSet, folder: Path, name: str) -> Path:
    """Write ``data`` under ``folder`` for :func:`load_data`: ``name.pt`` (LabeledData) or ``name/`` (SyntheticSet)."""
    if isinstance(data, SyntheticSet):
        return data.save(folder / name)
    if not isinstance(data, LabeledData):
        raise DDError(f"NAS data must be LabeledData or a SyntheticSet, got {type(data).__name__}.")
    payload = {"x": data.x.detach().cpu().contiguous(), "y": data.y.detach().cpu().contiguous(),
               "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std), "name": data.name}
    return atomic_write(folder / f"{name}.pt", lambda fh: torch.save(payload, fh))


def load_data(path: str | Path) -> LabeledData | SyntheticSet:
    """Read what :func:`save_data` wrote (tensors only, ``weights_only=True``); cached while unchanged."""
    path = Path(path)
    stat = path.stat() if path.is_file() else (path / "tensors.pt").stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _DATA_CACHE:
        if path.is_dir():
            _DATA_CACHE[key] = SyntheticSet.load(path)
        else:
            d = torch.load(path, map_location="cpu", weights_only=True)
            _DATA_CACHE[key] = LabeledData(d["x"], d["y"], tuple(d["classes"]), tuple(d["mean"]), tuple(d["std"]),
                                           name=d["name"])
    return _DATA_CACHE[key]


# ------------------------------------------------------------------------------------ local NNI plumbing
@functools.cache
def _nni_classes() -> tuple[type, type]:
    """The in-process experiment and its timed sequential engine (NNI subclasses, built on first use)."""
    import_nni()
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.experiment import NasExperiment
    from nni.nas.experiment.config import SequentialEngineConfig
    from nni.tools.nnictl.config_utils import Experiments

    class TimedSequentialEngine(SequentialExecutionEngine):
        """NNI's in-process engine, also timing each trial and recording (not raising) user-fixable failures.

        A trial that fails with :class:`DDError` (e.g. training diverged at this lr) is an outcome of the
        search: it is kept as failed and the search goes on. Any other exception is a bug and stops the search.
        """

        def __init__(self, max_model_count: int | None, max_duration: float | None) -> None:
            super().__init__(max_model_count, max_duration, continue_on_failure=False)
            self.seconds: dict[int, float] = {}
            self.errors: dict[int, str] = {}

        def _run_single_model(self, model: Any) -> None:
            start = time.perf_counter()
            try:
                super()._run_single_model(model)
            except DDError as err:
                self.errors[id(model)] = str(err)
                _logger.warning("Trial %s failed: %s", getattr(model, "sample", None), err)
            finally:
                self.seconds[id(model)] = time.perf_counter() - start

    class InProcessExperiment(NasExperiment):
        """A NAS experiment that can only run in-process and keeps its manifest under the current ``HOME``.

        NNI binds ``~/nni-experiments`` when it is first imported; the manifest is written to
        ``Path.home()`` as it is at run time instead, so redirecting ``HOME`` for the run is enough.
        """

        engine: Any = None

        def execution_engine_factory(self, config: Any) -> Any:
            if not isinstance(config, SequentialEngineConfig):
                raise DDError("ddeval runs NNI searches with the sequential (in-process) engine only.")
            self.engine = TimedSequentialEngine(config.max_model_count, config.max_duration)
            return self.engine

        def _start_nni_manager(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("ddeval never starts the NNI manager (it would open a network port).")

        def _manifest(self) -> Any:
            return Experiments(home_dir=str(Path.home() / "nni-experiments"))

        def _start_without_nni_manager(self) -> None:
            self._manifest().add_experiment(
                self.id, "N/A", int(time.time() * 1000), "N/A", self.config.experiment_name, "N/A",
                status="RUNNING", tag=["retiarii"], logDir=str(self.config.experiment_working_directory))

        def _stop_without_nni_manager(self) -> None:
            manifest = self._manifest()
            manifest.update_experiment(self.id, "status", "STOPPED")
            manifest.update_experiment(self.id, "endTime", int(time.time() * 1000))

    return InProcessExperiment, TimedSequentialEngine


@contextlib.contextmanager
def _redirected_home(home: Path) -> Iterator[None]:
    """Point ``HOME`` and ``NNI_CONFIG_DIR`` into ``home`` for the duration; restore them exactly."""
    new = {"HOME": home, "NNI_CONFIG_DIR": home / ".config" / "nni"}
    saved = {name: os.environ.get(name) for name in new}
    try:
        for name, folder in new.items():
            folder.mkdir(parents=True, exist_ok=True)
            os.environ[name] = str(folder)
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Raise ``KeyboardInterrupt`` on SIGTERM during the search so cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"NAS search stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _quiet_nni_console() -> Iterator[None]:
    """Raise NNI's console handlers to WARNING for the duration (its log file keeps INFO)."""
    handlers = [h for h in logging.getLogger("nni").handlers if not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in handlers]
    try:
        for h in handlers:
            h.setLevel(max(h.level, logging.WARNING))
        yield
    finally:
        for h, level in zip(handlers, levels, strict=True):
            h.setLevel(level)


def _make_strategy(config: NASConfig, budget: int, num_candidates: int) -> Any:
    import nni.nas.strategy as strategies

    if config.strategy == "grid":
        return strategies.GridSearch(shuffle=False)
    if config.strategy == "random":
        if budget >= num_candidates:
            # Every candidate in a seeded random order. (NNI's Random would, once the space is exhausted,
            # retry 500 duplicate draws before giving up.)
            return strategies.GridSearch(shuffle=True, seed=config.seed)
        return strategies.Random(seed=config.seed, dedup=True)
    population = max(2, min(100, budget // 4))
    return strategies.RegularizedEvolution(population_size=population, sample_size=max(1, population // 4),
                                           seed=config.seed)


# --------------------------------------------------------------------------------------------- search
def search(train: LabeledData | SyntheticSet, test: LabeledData, config: NASConfig | Mapping[str, Any] | None,
           workdir: str | Path, *, label: str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Run an NNI search of ``config.space`` trained on ``train`` and tested on ``test``.

    Returns ``{"label", "strategy", "space", "num_candidates", "num_trials", "seconds", "trials",
    "config", "device", "experiment_id", "experiment_dir"}``, where ``trials`` lists every trial run (in
    the space's enumeration order) as ``{"arch", "accuracy", "seconds"}`` (plus ``"error"``, with accuracy
    None, for a trial that failed with a user-fixable error such as divergence) and ``seconds`` is the
    wall time of the whole search. The dict is also written to ``workdir/search.json``. Everything the
    search writes is under ``workdir``; an interrupt (Ctrl-C or SIGTERM) stops NNI cleanly and propagates.
    """
    from distillers.protocol import resolve_device

    if not isinstance(config, NASConfig):
        config = build_config(NASConfig, config or {}, what="NAS config")
    if not isinstance(test, LabeledData):
        raise DDError(f"The NAS test set must be LabeledData, got {type(test).__name__}.")
    if not isinstance(train, (LabeledData, SyntheticSet)):
        raise DDError(f"The NAS training set must be LabeledData or a SyntheticSet, got {type(train).__name__}.")
    channels, height, width = (int(s) for s in train.images.shape[1:]) if isinstance(train, SyntheticSet) \
        else train.image_shape
    if (channels, height, width) != test.image_shape or train.num_classes != test.num_classes:
        raise DDError(f"NAS training data ({channels}x{height}x{width}, {train.num_classes} classes) and test "
                      f"data ({'x'.join(map(str, test.image_shape))}, {test.num_classes} classes) must match.")
    device = str(resolve_device(device))
    values = resolve_space(config.space)
    candidates = enumerate_space(values)
    order = {arch_key(arch): i for i, arch in enumerate(candidates)}
    budget = min(config.max_trials or len(candidates), len(candidates))

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    train_path = save_data(train, workdir / "data", "train")
    test_path = save_data(test, workdir / "data", "test")
    nni_home = workdir / "nni"

    # Import NNI (and build the space) before HOME moves: modules that read HOME at import keep the real one.
    import_nni()
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperimentConfig

    from ddeval.nas.space import ConvNetSpace

    experiment_cls, _ = _nni_classes()
    space = ConvNetSpace(values, channels=channels, num_classes=test.num_classes, image_size=(height, width),
                         seed=config.seed)
    evaluator = FunctionalEvaluator(nni_trial, train_path=str(train_path), test_path=str(test_path),
                                    epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                                    augment=config.augment, seed=config.seed, device=device, fast=config.fast)
    exp_config = NasExperimentConfig("sequential", "simplified")
    exp_config.experiment_name = label
    exp_config.experiment_working_directory = str(nni_home / "nni-experiments")
    exp_config.max_trial_number = budget
    exp = experiment_cls(space, evaluator, _make_strategy(config, budget, len(candidates)), exp_config)

    start = time.perf_counter()
    try:
        # NNI resolves its config (and copies a default file to NNI_CONFIG_DIR) whenever the experiment
        # config is canonicalised, so even the guard below runs inside the redirection.
        with _redirected_home(nni_home), _sigterm_as_interrupt(), _quiet_nni_console():
            if exp._nni_manager_required():  # the sequential engine needs no manager, hence opens no port
                raise RuntimeError("internal error: the NAS experiment would start the NNI manager")
            try:
                exp.start()
                models = list(exp.strategy.list_models(sort=False))
            finally:
                exp.stop()
    finally:
        _DATA_CACHE.clear()
    seconds = time.perf_counter() - start
    if exp.port is not None:
        raise RuntimeError("internal error: the NAS experiment reported an open port")

    engine = exp.engine
    trials = []
    for model in models:
        arch = {k: model.sample[k] for k in ARCH_KEYS}
        trial: dict[str, Any] = {"arch": arch, "accuracy": None if model.metric is None else float(model.metric),
                                 "seconds": engine.seconds.get(id(model))}
        if id(model) in engine.errors:
            trial["error"] = engine.errors[id(model)]
        trials.append(trial)
    trials.sort(key=lambda t: order[arch_key(t["arch"])])
    if trials and all(t["accuracy"] is None for t in trials):
        raise DDError(f"Every NAS trial of {label!r} failed; the first error: {trials[0].get('error')}")

    result = {
        "label": label,
        "strategy": config.strategy,
        "space": {k: list(v) for k, v in values.items()},
        "num_candidates": len(candidates),
        "num_trials": len(trials),
        "seconds": seconds,
        "trials": trials,
        "config": config_dict(config),
        "device": device,
        "engine": "sequential (in-process; no NNI manager, no port)",
        "experiment_id": exp.id,
        "experiment_dir": str((nni_home / "nni-experiments" / exp.id).relative_to(workdir)),
    }
    atomic_write_json(workdir / "search.json", result)
    return result


__all__ = ["ENGINES", "STRATEGIES", "NASConfig", "load_data", "nni_trial", "save_data", "search",
           "train_candidate"]

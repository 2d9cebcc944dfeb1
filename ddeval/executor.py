"""Runs independent units of work (shadow pipelines, audit trials, seeds) and caches each result on finish.

A :class:`Unit` is a picklable top-level function plus its arguments and a ``spec``: the JSON-able description
of everything that determines its result. The executor first takes every unit already finished in the run
directory from its cache, then computes the rest, storing each result the moment it is done, so a killed run
resumed in the same directory redoes only the units that had not finished.

:class:`LocalExecutor`: ``workers=1`` (the default) computes in this process, one unit after another.
``workers=N`` uses N spawned worker processes on this machine, each with ``cores // N`` torch threads: worth it
for many small networks, which use two cores poorly from one process.

:class:`NNIExecutor` hands the same units to NNI's training services instead (``local``: trial processes on
this machine; ``remote``: SSH machines), one NNI trial per unit, for runs too big for one machine. It starts
NNI's server, which listens on all network interfaces, and stops it (and its trials) on exit; see
:mod:`ddeval.nas.engines`. Each trial loads its unit from a pickle in the run directory and stores the result
there itself, so remote machines need the run directory at the same path (a shared file system).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddeval.runs import RunDir, unit_key
from distillers.errors import DDError
from distillers.io import atomic_write_bytes

ENGINES = ("processes", "nni-local", "nni-remote")
_TRIAL_ENDED = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")
"""Where units run: ``processes`` (:class:`LocalExecutor`), or NNI's local / remote training service."""


@dataclass(frozen=True)
class Unit:
    """One independent piece of work: ``fn(*args, **kwargs) -> dict`` cached under ``(kind, spec)``."""

    kind: str
    spec: Mapping[str, Any]
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _from_cache(run_dir: RunDir, units: Sequence[Unit], on_done: Callable[[Unit, bool], None]
                ) -> tuple[list[dict[str, Any] | None], list[int]]:
    """The results of the units already finished in ``run_dir`` (None for the others) and the others' indices."""
    results: list[dict[str, Any] | None] = [None] * len(units)
    todo = []
    for i, unit in enumerate(units):
        cached = run_dir.lookup(unit.kind, unit.spec)
        if cached is None:
            todo.append(i)
        else:
            results[i] = cached
            on_done(unit, True)
    return results, todo


def _timed(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], kwargs: Mapping[str, Any]
           ) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


class LocalExecutor:
    """Computes units on this machine (in-process, or in ``workers`` spawned processes), cached in ``run_dir``.

    ``on_done(unit, reused)`` is called once per unit, in completion order (progress bars hook in here).
    """

    def __init__(self, run_dir: RunDir, *, workers: int = 1,
                 on_done: Callable[[Unit, bool], None] | None = None) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise DDError(f"workers must be a positive integer, got {workers!r}.")
        self.run_dir = run_dir
        self.workers = workers
        self.on_done = on_done or (lambda unit, reused: None)

    def map(self, units: Sequence[Unit]) -> list[dict[str, Any]]:
        """Results of ``units`` in order; finished units come from the cache, the rest are computed."""
        results, todo = _from_cache(self.run_dir, units, self.on_done)
        if self.workers == 1 or len(todo) <= 1:
            for i in todo:
                unit = units[i]
                result, seconds = _timed(unit.fn, unit.args, unit.kwargs)
                results[i] = self.run_dir.store(unit.kind, unit.spec, result, seconds=seconds)
                self.on_done(unit, False)
        else:
            self._map_processes(units, todo, results)
        return [r for r in results if r is not None]

    def _map_processes(self, units: Sequence[Unit], todo: list[int], results: list[dict[str, Any] | None]) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(todo)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(threads,))
        pending: dict[Future[tuple[dict[str, Any], float]], int] = {}
        try:
            for i in todo:
                unit = units[i]
                pending[pool.submit(_timed, unit.fn, unit.args, dict(unit.kwargs))] = i
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    result, seconds = future.result()  # a worker's exception surfaces here, unchanged
                    results[i] = self.run_dir.store(units[i].kind, units[i].spec, result, seconds=seconds)
                    self.on_done(units[i], False)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class NNIExecutor:
    """Computes units as NNI trials (one per unit) through a training service; cached in ``run_dir``.

    ``engine``: ``nni-local`` (``concurrency`` trial processes here) or ``nni-remote`` (``remote["machines"]``,
    as for the NAS engines). The units still to do are pickled to ``run_dir/nni-units/``; each trial runs
    ``python -m ddeval.nni_unit`` on one of them (after checking its SHA-256 against the digest this process
    passed it through NNI, so a file swapped in the run directory is never unpickled) and stores the result in the run directory, so a killed run
    resumes like with the local executor. A unit whose trial fails (e.g. an error in the unit) stops the run
    with a message naming the trial logs.
    """

    def __init__(self, run_dir: RunDir, *, engine: str = "nni-local", concurrency: int = 2, port: int | None = None,
                 remote: Mapping[str, Any] | None = None,
                 on_done: Callable[[Unit, bool], None] | None = None) -> None:
        if engine not in ENGINES[1:]:
            raise DDError(f"NNIExecutor runs {' or '.join(ENGINES[1:])}, got {engine!r}.")
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise DDError(f"concurrency must be a positive integer, got {concurrency!r}.")
        self.run_dir, self.engine, self.concurrency, self.port = run_dir, engine, concurrency, port
        self.remote = dict(remote or {})
        self.on_done = on_done or (lambda unit, reused: None)

    def map(self, units: Sequence[Unit]) -> list[dict[str, Any]]:
        """Results of ``units`` in order; finished units come from the cache, the rest run as NNI trials."""
        import pickle

        results, missing = _from_cache(self.run_dir, units, self.on_done)
        todo: dict[str, int] = {}  # one trial per distinct unit
        for i in missing:
            todo.setdefault(unit_key({"kind": units[i].kind, **units[i].spec}), i)
        if todo:
            folder = self.run_dir.path / "nni-units"
            (folder / "code").mkdir(parents=True, exist_ok=True)  # the trials' (empty) code directory
            choices = []
            for key, i in todo.items():
                blob = pickle.dumps(units[i])
                atomic_write_bytes(folder / f"{key}.pkl", blob)
                # the trial unpickles only the bytes this process wrote: it checks their digest first
                choices.append(f"{key}:{hashlib.sha256(blob).hexdigest()}")
            self._run_trials(folder, choices)
            for key, i in todo.items():
                unit = units[i]
                result = self.run_dir.lookup(unit.kind, unit.spec, computed=True)
                if result is None:
                    raise DDError(f"The NNI trial of unit {unit.label or key} left no result; its log is under "
                                  f"{self.run_dir.path / 'nni'} (trial.stderr). Fix the cause and rerun to resume.")
                results[i] = result
                self.on_done(unit, False)
        for i, unit in enumerate(units):  # duplicates of a unit computed above
            if results[i] is None:
                results[i] = self.run_dir.lookup(unit.kind, unit.spec)
        return [r for r in results if r is not None]

    def _run_trials(self, folder: Path, keys: list[str]) -> None:
        import shlex
        import sys
        import time

        from ddeval.nas import engines
        from ddeval.nas.space import import_nni

        import_nni()
        from nni.experiment import AlgorithmConfig, ExperimentConfig

        config = ExperimentConfig(training_service=engines.training_service(self.engine[4:], self.remote))
        config.experiment_name = f"ddeval units ({len(keys)})"
        config.experiment_working_directory = str(self.run_dir.path / "nni" / "nni-experiments")
        config.trial_command = " ".join(shlex.quote(a) for a in (
            sys.executable, "-m", "ddeval.nni_unit", str(folder), str(self.run_dir.path.resolve())))
        config.trial_code_directory = str(folder / "code")
        config.trial_concurrency = self.concurrency
        config.trial_gpu_number = 0
        config.max_trial_number = len(keys)
        config.search_space = {"unit": {"_type": "choice", "_value": keys}}  # "KEY:SHA256" each
        config.tuner = AlgorithmConfig(name="GridSearch")
        port = self.port or engines.free_port()
        with engines.redirected_home(self.run_dir.path / "nni"), engines.sigterm_as_interrupt():
            exp = engines.unit_experiment_class()(config)  # before quietening: it adds NNI's console handler
            with engines.quiet_nni_console():
                try:
                    engines.warn_server("units", port)
                    exp.start(port=port)
                    while True:  # until every trial has ended (or the experiment has)
                        jobs = exp.list_trial_jobs() or []
                        ended = sum(str(j.status) in _TRIAL_ENDED for j in jobs)
                        live = any(str(j.status) in ("WAITING", "RUNNING", "UNKNOWN") for j in jobs)
                        if ended >= len(keys) or (exp.get_status() in ("DONE", "STOPPED", "ERROR") and not live):
                            break
                        time.sleep(2)
                finally:
                    engines.stop_and_reap(exp)

"""Runs independent units of work (shadow pipelines, audit trials, seeds) and caches each result on finish.

A :class:`Unit` is a picklable top-level function plus its arguments and a ``spec``: the JSON-able description
of everything that determines its result. The executor first takes every unit already finished in the run
directory from its cache, then computes the rest, storing each result the moment it is done, so a killed run
resumed in the same directory redoes only the units that had not finished.

``workers=1`` (the default) computes in this process, one unit after another. ``workers=N`` uses N spawned
worker processes on this machine, each with ``cores // N`` torch threads: worth it for many small networks,
which use two cores poorly from one process. Remote execution belongs to NNI's training services (the NAS
search already runs through NNI); this module never schedules anything beyond the local machine.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ddeval.runs import RunDir
from distillers.errors import DDError


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
        results: list[dict[str, Any] | None] = [None] * len(units)
        todo = []
        for i, unit in enumerate(units):
            cached = self.run_dir.lookup(unit.kind, unit.spec)
            if cached is None:
                todo.append(i)
            else:
                results[i] = cached
                self.on_done(unit, True)
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

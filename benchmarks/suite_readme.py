"""Shared by the benchmark scripts that run a packaged suite and write a README table from its results."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ddeval.pipeline import run_suite
from distillers.errors import DDError
from distillers.io import atomic_write_text


def time_line(results: dict) -> str:
    """How long the last invocation took and how much compute its results hold: a resumed run reuses units, so
    its own wall time alone would understate what the table cost."""
    run = results["run"]
    units = run.get("units") or {}
    cached = f", {units['reused']} of {units['reused'] + units['computed']} units reused from the run directory" \
        if units.get("reused") else ""
    compute = f"; compute time of all its units: {run['unit_seconds'] / 60:.1f} min" if run.get("unit_seconds") else ""
    return (f"Wall time of the last invocation: {run['total_seconds'] / 60:.1f} min on {run['device']} (2-core CPU "
            f"unless stated){cached}{compute}.")


def run_and_write(suite: str, *, overrides: list[str], out: Path, device: str, table_only: bool, command: str,
                  table: Callable[[dict, str], str]) -> int:
    """Run ``suite`` into ``out/run`` (resumable), or with ``table_only`` read that run's results, then write
    ``out/README.md`` from ``table(results, command)``. User errors end in one line and exit status 2."""
    os.environ.setdefault("DDEVAL_COMMAND", command)
    try:
        if table_only:
            results_path = out / "run" / "results.json"
            if not results_path.is_file():
                raise DDError(f"{results_path} does not exist; run without --table-only first.")
            results = json.loads(results_path.read_text())
            command = json.loads((out / "run" / "manifest.json").read_text()).get("command") or command
        else:
            results = run_suite(suite, overrides=overrides, run_dir=out / "run", device=device)
    except DDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    atomic_write_text(out / "README.md", table(results, command))
    print(f"wrote {out / 'README.md'}")
    return 0

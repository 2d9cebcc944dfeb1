"""pytest plugin (entry point ``pytest11``): check a suite's metrics against a baseline stored beside the test.

    def test_dm_holds_up(ddeval_check):
        ddeval_check("ci-regression", baseline="dm-digits.json")            # runs the suite, then checks
        ddeval_check("runs/nightly", baseline="nightly.json")               # or checks a finished run

A regression (or a baseline metric the run lacks) fails the test with the table of what moved. A missing
baseline is written from the run and the test fails, so a first run is never silently green; review the file
and commit it. Options:

- ``--ddeval-update-baselines``: rewrite every baseline the tests touch from their runs (the tests pass).
- ``--ddeval-tolerance METRIC=VALUE`` (repeatable): override a metric's tolerance, as ``ddeval check
  --tolerance`` (``accuracy=0.01``, ``auc=5%``, ``distill_seconds=off``).
- ``--ddeval-device``: device for suites the fixture runs (default: cpu).
- ini ``ddeval_baselines``: a folder (relative to the rootdir) to keep baselines in instead of beside the tests.

Nothing heavy is imported until the fixture is used, so the plugin costs nothing to projects that don't.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ddeval", "ddeval regression checks")
    group.addoption("--ddeval-update-baselines", action="store_true", default=False,
                    help="rewrite the baselines used by ddeval_check from this run's metrics")
    group.addoption("--ddeval-tolerance", action="append", default=[], metavar="METRIC=VALUE",
                    help="tolerance override for ddeval_check, e.g. accuracy=0.01 or auc=5% (repeatable)")
    group.addoption("--ddeval-device", default="cpu", help="device for suites run by ddeval_check")
    parser.addini("ddeval_baselines", "folder (relative to the rootdir) holding ddeval_check baselines; "
                                      "default: beside each test file", default="")


def baseline_path(config: pytest.Config, test_file: Path, name: str | Path) -> Path:
    """Where a baseline named ``name`` lives: absolute as given, else in the ini folder, else beside the test."""
    path = Path(name)
    if path.is_absolute():
        return path
    folder = str(config.getini("ddeval_baselines") or "")
    return (Path(config.rootpath) / folder / path) if folder else test_file.parent / path


@pytest.fixture
def ddeval_check(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``ddeval_check(source, *, baseline, overrides=(), tolerances=None, run_dir=None)`` -> Comparison.

    ``source``: a finished run directory (with results.json), or a suite (packaged name, YAML path or mapping)
    that is run into ``run_dir`` (default: a temporary folder) with ``overrides``. ``tolerances``: METRIC to
    a :class:`ddeval.regression.Tolerance` or a ``"0.01"`` / ``"5%"`` / ``"off"`` string; the command line's
    ``--ddeval-tolerance`` wins over them.
    """
    config = request.config

    def check(source: str | Path | Mapping[str, Any], *, baseline: str | Path, overrides: Sequence[str] = (),
              tolerances: Mapping[str, Any] | None = None, run_dir: str | Path | None = None) -> Any:
        from ddeval import regression as rg
        from distillers.errors import DDError

        try:
            results = _results(source, overrides, run_dir or tmp_path / "ddeval-run",
                               str(config.getoption("ddeval_device")))
            layers = {name: (tol if isinstance(tol, rg.Tolerance) else rg.parse_tolerance(f"{name}={tol}")[1])
                      for name, tol in (tolerances or {}).items()}
            layers.update(rg.parse_tolerance(t) for t in config.getoption("ddeval_tolerance"))
            path = baseline_path(config, Path(str(request.path)), baseline)
            update = bool(config.getoption("ddeval_update_baselines"))
            if update or not path.is_file():
                kept = rg.load_baseline(path).tolerances if path.is_file() else {}
                new = rg.baseline_from_results(results, tolerances={**kept, **layers},
                                               source={"test": request.node.nodeid})
                rg.save_baseline(new, path)
                if not update:
                    pytest.fail(f"No baseline at {path}: wrote one from this run ({len(new.metrics)} metrics). "
                                "Review it, commit it and rerun; pass --ddeval-update-baselines to rewrite "
                                "baselines on purpose.", pytrace=False)
                return rg.compare(rg.extract(results), new)
            comparison = rg.compare(rg.extract(results), rg.load_baseline(path), tolerances=layers)
        except DDError as err:
            pytest.fail(f"ddeval: {err}", pytrace=False)
        table = comparison.table()
        request.node.add_report_section("call", "ddeval check", table)
        if comparison.failed:
            pytest.fail(f"ddeval regression against {path}:\n{table}\n(If this change is intended, rerun with "
                        "--ddeval-update-baselines and commit the new baseline.)", pytrace=False)
        return comparison

    return check


def _results(source: str | Path | Mapping[str, Any], overrides: Sequence[str], run_dir: str | Path,
             device: str) -> dict[str, Any]:
    from ddeval.regression import load_results

    if not isinstance(source, Mapping) and (Path(source) / "results.json").is_file():
        if overrides:
            from distillers.errors import DDError

            raise DDError(f"{source} is a finished run; overrides apply only to suites that the fixture runs.")
        return load_results(source)
    from ddeval.pipeline import run_suite
    from ddeval.schema import validate

    return dict(validate(run_suite(source, overrides=list(overrides), run_dir=run_dir, device=device,
                                   progress=False)))

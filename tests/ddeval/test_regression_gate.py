"""The regression gate end to end, on real runs of the packaged ``ci-regression`` suite (DM at ipc 1 on digits).

1. This project's CI gate: the suite, run through the pytest plugin's ``ddeval_check`` fixture, must hold the
   committed baseline ``reports/baselines/ci-regression.json`` (the ``ddeval_baselines`` ini value), so a
   change that makes DM worse on digits fails CI. After an intended change:
   ``pytest tests/ddeval/test_regression_gate.py --ddeval-update-baselines``, then commit the baseline.
2. A deliberate regression (DM with 2 iterations instead of 100) makes ``ddeval check`` and the plugin fail
   with a table naming the metric; the unchanged run passes; the improvement passes and is reported as one.
"""

from __future__ import annotations

import json

import pytest

from ddeval.cli import main
from ddeval.pipeline import run_suite
from ddeval.report.browser import chromium_skip_reason, inspect_page
from ddeval.schema import problems

DM = "accuracy [method=dm, ipc=1, network=convnet-d2]"
WORSE = ["methods.dm.iterations=2"]


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    """Run directory of the unchanged suite; whichever test comes first computes it, the rest reuse it."""
    return tmp_path_factory.mktemp("ci-good") / "run"


@pytest.fixture(scope="module")
def good(good_dir):
    run_suite("ci-regression", run_dir=good_dir, device="cpu", progress=False)
    return good_dir


@pytest.fixture(scope="module")
def worse(tmp_path_factory):
    out = tmp_path_factory.mktemp("ci-worse") / "run"
    run_suite("ci-regression", overrides=WORSE, run_dir=out, device="cpu", progress=False)
    return out


def test_ci_gate_dm_on_digits_holds_the_committed_baseline(ddeval_check, good_dir):
    comparison = ddeval_check("ci-regression", baseline="ci-regression.json", run_dir=good_dir)
    assert any(c.metric.title() == DM and c.base is not None for c in comparison.changes)
    assert problems(json.loads((good_dir / "results.json").read_text())) == []


def test_the_suite_separates_dm_from_its_regression(good, worse):
    acc = {}
    for label, folder in (("good", good), ("worse", worse)):
        rows = json.loads((folder / "results.json").read_text())["accuracy"]["rows"]
        acc[label] = {r["method"]: r["accuracy_mean"] for r in rows}
    # the gate only works if the deliberate regression moves DM well past the 2-point tolerance
    assert acc["good"]["dm"] - acc["worse"]["dm"] > 0.06
    assert acc["good"]["dm"] > acc["good"]["random"] + 0.1
    assert acc["good"]["random"] == acc["worse"]["random"]  # the baseline rows are untouched


def test_cli_check_fails_on_the_regression_and_reports_the_improvement(good, worse, tmp_path, capsys):
    base = tmp_path / "base.json"
    assert main(["check", str(good), "--baseline", str(base), "--update-baseline"]) == 0
    capsys.readouterr()
    assert main(["check", str(good), "--baseline", str(base)]) == 0  # unchanged
    assert main(["check", str(worse), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and DM in out and "FAIL" in out.splitlines()[-1]
    worse_base = tmp_path / "worse.json"
    assert main(["check", str(worse), "--baseline", str(worse_base), "--update-baseline"]) == 0
    capsys.readouterr()
    assert main(["check", str(good), "--baseline", str(worse_base)]) == 0
    out = capsys.readouterr().out
    assert "improved" in out and DM in out and "1 improved" in out


PLUGIN_TEST = """
def test_against_baseline(ddeval_check):
    ddeval_check({run!r}, baseline={baseline!r})
"""


def test_plugin_fails_with_the_table_passes_unchanged_and_creates_missing_baselines(pytester, good, worse):
    base = pytester.path / "dm.json"
    pytester.makepyfile(test_good=PLUGIN_TEST.format(run=str(good), baseline="dm.json"),
                        test_worse=PLUGIN_TEST.format(run=str(worse), baseline="dm.json"))
    # no baseline yet: the first run writes it and fails (never silently green)
    first = pytester.runpytest_inprocess("test_good.py")
    first.assert_outcomes(failed=1)
    assert "No baseline at" in first.stdout.str() and base.is_file()
    pytester.runpytest_inprocess("test_good.py").assert_outcomes(passed=1)
    failed = pytester.runpytest_inprocess("test_worse.py")
    failed.assert_outcomes(failed=1)
    text = failed.stdout.str()
    assert "REGRESSION" in text and DM in text and "--ddeval-update-baselines" in text
    # a looser tolerance from the command line lets it through
    pytester.runpytest_inprocess("test_worse.py", "--ddeval-tolerance", "accuracy=0.5").assert_outcomes(passed=1)
    # regenerate from the worse run: the good run is then an improvement, and passes
    pytester.runpytest_inprocess("test_worse.py", "--ddeval-update-baselines").assert_outcomes(passed=1)
    improved = pytester.runpytest_inprocess("test_good.py", "-rA")
    improved.assert_outcomes(passed=1)
    assert "improved" in improved.stdout.str()


def test_report_compares_two_runs_side_by_side(good, worse, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["report", str(worse), str(good), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "improved" in md and DM in md and "methods.dm.iterations" in md  # the setup difference is named
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "https://" not in html
    assert main(["report", str(good)]) == 0  # re-render in place
    assert (good / "report.html").stat().st_size < 5_000_000
    capsys.readouterr()
    assert main(["report", str(good), str(worse), str(good)]) == 2
    assert main(["report", str(good), "--out", str(out)]) == 2
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and err.count("\n") == 3


@pytest.mark.skipif(chromium_skip_reason() is not None, reason=str(chromium_skip_reason()))
def test_compare_report_renders_in_chromium(good, worse, tmp_path):
    out = tmp_path / "cmp"
    main(["report", str(worse), str(good), "--out", str(out)])
    seen = inspect_page(out / "report.html", tmp_path / "shot.png")
    assert seen.images and not seen.broken_images and seen.errors == []

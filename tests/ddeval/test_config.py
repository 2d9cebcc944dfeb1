"""Suite loading: packaged suites, include:, --set overrides, and clear errors for every bad key or value."""

from __future__ import annotations

import pytest

from ddeval.config import PACKAGED_SUITES, apply_overrides, load_suite
from ddeval.runs import RunDir, unit_key
from distillers.errors import DDError


def test_quickstart_suite_loads_and_validates():
    suite = load_suite()
    assert suite.name == "quickstart" and suite.dataset == "digits"
    assert {"dm", "dsa", "dc", "random", "herding", "kcenter", "kmeans"} <= set(suite.methods)
    assert suite.accuracy.eval_seeds >= 3


def test_overrides_set_nested_values_and_select_methods():
    suite = load_suite("quickstart", ["accuracy.eval_seeds=5", "ipc=1,2", "methods=dm,random",
                                      "methods.dm.iterations=7", "nas.enabled=false"])
    assert suite.accuracy.eval_seeds == 5 and suite.ipc == (1, 2) and not suite.nas.enabled
    assert list(suite.methods) == ["dm", "random"]
    assert suite.methods["dm"]["iterations"] == 7 and suite.methods["dm"]["batch_real"] == 64


def test_include_merges_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ndataset: digits\nipc: [1]\naccuracy: {epochs: 5}\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\nname: child\naccuracy: {eval_seeds: 2}\n")
    suite = load_suite(tmp_path / "child.yaml")
    assert suite.name == "child" and suite.ipc == (1,)
    assert suite.accuracy.epochs == 5 and suite.accuracy.eval_seeds == 2


@pytest.mark.parametrize("overrides, message", [
    (["accuracy.eval_seed=3"], 'Unknown key "eval_seed".*Did you mean "eval_seeds"'),
    (["datset=digits"], 'Unknown key "datset"'),
    (["accuracy.eval_seeds=0"], "eval_seeds must be >= 1"),
    (["accuracy.epochs=many"], "must be an integer"),
    (["ipc=0"], "positive integers"),
    (["nas.enabled=perhaps"], "true or false"),
    (["noequals"], "key=value"),
    (["methods.dm=5"], "must be a mapping"),
])
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(DDError, match=message) as info:
        load_suite("quickstart", overrides)
    assert "\n" not in str(info.value)


def test_bad_suite_files(tmp_path):
    with pytest.raises(DDError, match="does not exist"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(DDError, match='No suite "quickstrat".*Did you mean "quickstart"'):
        load_suite("quickstrat")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(DDError, match="not valid YAML"):
        load_suite(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("include: loop.yaml\n")
    with pytest.raises(DDError, match="includes itself"):
        load_suite(loop)


def test_override_values_are_never_evaluated():
    out = apply_overrides({}, ["name=__import__('os').system('true')"])
    assert out["name"] == "__import__('os').system('true')"


def test_run_dir_unit_cache_reuses_and_recovers(tmp_path):
    rd = RunDir(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    assert rd.unit("eval", {"a": 1}, compute) == {"value": 1}
    assert rd.unit("eval", {"a": 1}, compute) == {"value": 1}
    assert rd.unit("eval", {"a": 2}, compute) == {"value": 2}
    assert len(calls) == 2 and rd.reused == 1
    # a damaged cache entry is recomputed, never trusted
    rd.unit_path("eval", unit_key({"kind": "eval", "a": 1})).write_text("{trunc")
    assert rd.unit("eval", {"a": 1}, compute) == {"value": 3}


@pytest.mark.parametrize("name", PACKAGED_SUITES)
def test_every_packaged_suite_loads_and_its_method_configs_validate(name) -> None:
    from ddeval.pipeline import _resolved_methods

    suite = load_suite(name)
    methods = _resolved_methods(suite)  # builds every method at every ipc: unknown keys or bad values raise
    assert set(suite.methods) <= set(methods)


def test_running_part_of_a_suite_drops_its_per_ipc_overrides_for_the_ipc_left_out(tmp_path) -> None:
    """``--set ipc=1`` on a suite tuned per ipc runs; overrides that name an ipc nothing runs still fail."""
    from ddeval.pipeline import _resolved_methods

    suite = load_suite("mnist-benchmark-3", ["ipc=1"])
    assert list(suite.ipc) == [1]
    assert "by_ipc" not in suite.methods["dcc"] and suite.methods["dcc"]["iterations"] == 20
    _resolved_methods(suite)
    # Both ipc kept: the table stays and applies at 10.
    both = load_suite("mnist-benchmark-3")
    assert both.methods["dcc"]["by_ipc"] == {10: {"iterations": 10, "warmup_iterations": 3}}
    # An entry the file has for an ipc the file does not run is still a mistake, and so is one the overrides add.
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndataset: digits\nipc: [1]\nmethods:\n  dm: {iterations: 2, by_ipc: {10: {iterations: 3}}}\n")
    with pytest.raises(DDError, match="does not run"):
        _resolved_methods(load_suite(path))
    with pytest.raises(DDError, match="does not run"):
        _resolved_methods(load_suite("mnist-benchmark-3", ["ipc=1", "methods.dm-multi.by_ipc.10.iterations=5"]))


@pytest.mark.parametrize("ipc", [[[]], [True], [1.5], "ten", [{}]])
def test_a_malformed_ipc_entry_is_a_clear_error_not_a_crash_in_the_per_ipc_pruning(ipc) -> None:
    """The by-ipc pruning reads ``ipc`` before validation, so a nested list or a non-integer must reach the check."""
    with pytest.raises(DDError, match="ipc"):
        load_suite({"name": "s", "dataset": "digits", "ipc": ipc, "methods": {"dm": {"by_ipc": {1: {}}}}})

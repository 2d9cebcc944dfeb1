"""Regression checks on hand-made results: metric extraction, tolerances, directions, baselines, CLI exit codes,
and the results schema validator."""

from __future__ import annotations

import copy
import json

import pytest

from ddeval import regression as rg
from ddeval.cli import main
from ddeval.schema import METRICS, SCHEMA_VERSION, problems, validate
from distillers.errors import DDError


def make_results(dm: float = 0.90, auc: float = 0.55, rho: float = 0.8, seconds: float = 10.0) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"suite": "hand-made", "device": "cpu", "total_seconds": 1.0},
        "dataset": {"name": "digits", "num_classes": 10, "image_shape": [1, 8, 8]},
        "metrics": METRICS,
        "accuracy": {
            "rows": [
                {"method": "random", "ipc": 10, "network": "convnet", "accuracy_mean": 0.80, "accuracy_std": 0.01,
                 "accuracies": [0.79, 0.81], "distill_seconds": 0.0},
                {"method": "dm", "ipc": 10, "network": "convnet", "accuracy_mean": dm, "accuracy_std": 0.01,
                 "accuracies": [dm, dm], "distill_seconds": seconds},
                {"method": "dm", "ipc": 10, "network": "mlp", "accuracy_mean": 0.70, "accuracy_std": 0.02,
                 "accuracies": [0.7, 0.7], "distill_seconds": seconds},
            ],
            "full_data": {"network": "convnet", "accuracy_mean": 0.97, "accuracy_std": 0.0, "epochs": 5},
        },
        "privacy": {
            "rows": [
                {"target": "dm", "ipc": 10, "attack": "loss", "auc": auc, "tpr_at_1pct_fpr": 0.02,
                 "tpr_at_0p1pct_fpr": 0.004, "resolves_1pct_fpr": True, "resolves_0p1pct_fpr": False},
            ],
            "audits": [{"label": "dp-sgd-eps1", "epsilon_theory": 1.0, "canary": {"epsilon_lb": 0.2},
                        "one_run": {"epsilon_lb": None}}],
        },
        "nas": {"proxies": [{"label": "dm-ipc10", "spearman": rho, "kendall": 0.6, "top1_regret": 0.01,
                             "speedup": 3.0}]},
    }


def by_title(metrics):
    return {m.title(): m for m in metrics}


# ------------------------------------------------------------------------------------------ extraction
def test_extract_finds_every_comparable_number():
    found = by_title(rg.extract(make_results()))
    assert found["accuracy [method=dm, ipc=10, network=convnet]"].value == 0.90
    assert found["accuracy [method=dm, ipc=10, network=convnet]"].std == 0.01
    assert found["accuracy [method=full-data, network=convnet]"].value == 0.97
    assert found["auc [target=dm, ipc=10, attack=loss]"].direction == "lower"
    assert "tpr_at_1pct_fpr [target=dm, ipc=10, attack=loss]" in found
    # 0.1% FPR is not resolved by this row's non-members: not a number to gate on
    assert not any(t.startswith("tpr_at_0p1pct_fpr") for t in found)
    assert found["epsilon_lb [audit=dp-sgd-eps1, method=canary]"].value == 0.2
    assert not any("one-run" in t for t in found)  # no bound measured
    assert found["spearman [proxy=dm-ipc10]"].direction == "higher"
    # one distillation time per (method, ipc), none for the baselines
    seconds = [t for t in found if t.startswith("distill_seconds")]
    assert seconds == ["distill_seconds [method=dm, ipc=10]"]


def test_direction_comes_from_the_runs_metric_table():
    results = make_results()
    results["metrics"] = {**METRICS, "accuracy": {"direction": "lower", "unit": "fraction"}}
    assert all(m.direction == "lower" for m in rg.extract(results) if m.name == "accuracy")


# ------------------------------------------------------------------------------------------ tolerances
@pytest.mark.parametrize("text, expected", [
    ("accuracy=0.01", ("accuracy", rg.Tolerance(abs=0.01))),
    ("auc=5%", ("auc", rg.Tolerance(rel=0.05))),
    ("accuracy=0.01,5%", ("accuracy", rg.Tolerance(abs=0.01, rel=0.05))),
    ("distill_seconds=off", ("distill_seconds", rg.Tolerance(gate=False))),
    (" accuracy = 0.02 ", ("accuracy", rg.Tolerance(abs=0.02))),
])
def test_parse_tolerance(text, expected):
    assert rg.parse_tolerance(text) == expected


@pytest.mark.parametrize("text", ["accuracy", "accuracy=", "=0.1", "accuracy=lots", "accuracy=-0.1",
                                  "accuracy=nan"])
def test_bad_tolerance_is_one_clear_error(text):
    with pytest.raises(DDError) as err:
        rg.parse_tolerance(text)
    assert "\n" not in str(err.value)


def test_allowed_is_the_larger_of_absolute_and_relative():
    tol = rg.Tolerance(abs=0.01, rel=0.1)
    assert tol.allowed(0.05) == pytest.approx(0.01) and tol.allowed(1.0) == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------ comparison
def compare(base: dict, run: dict, **tol):
    return rg.compare(rg.extract(run), rg.baseline_from_results(base), tolerances=tol or None)


def status_of(comparison, title):
    return next(c.status for c in comparison.changes if c.metric.title() == title)


DM = "accuracy [method=dm, ipc=10, network=convnet]"
AUC = "auc [target=dm, ipc=10, attack=loss]"


def test_unchanged_run_passes():
    comparison = compare(make_results(), make_results())
    assert not comparison.failed and comparison.moved() == []
    assert comparison.summary().startswith("PASS")


def test_accuracy_falling_past_tolerance_is_a_regression_and_the_table_names_it():
    comparison = compare(make_results(dm=0.90), make_results(dm=0.85))
    assert comparison.failed and status_of(comparison, DM) == rg.REGRESSION
    table = comparison.table()
    assert DM in table and "-5.00 points" in table and table.splitlines()[-1].startswith("FAIL")


def test_accuracy_rising_past_tolerance_is_an_improvement_and_passes():
    comparison = compare(make_results(dm=0.85), make_results(dm=0.90))
    assert not comparison.failed and status_of(comparison, DM) == rg.IMPROVEMENT
    assert "improved" in comparison.table() and "1 improved" in comparison.summary()


def test_small_moves_stay_within_tolerance():
    comparison = compare(make_results(dm=0.90), make_results(dm=0.885))
    assert status_of(comparison, DM) == rg.UNCHANGED and not comparison.failed


def test_attack_auc_rising_is_a_regression_falling_an_improvement():
    assert status_of(compare(make_results(auc=0.55), make_results(auc=0.65)), AUC) == rg.REGRESSION
    assert status_of(compare(make_results(auc=0.65), make_results(auc=0.55)), AUC) == rg.IMPROVEMENT


def test_timings_move_but_never_gate_unless_named():
    slow = compare(make_results(seconds=10), make_results(seconds=100))
    assert status_of(slow, "distill_seconds [method=dm, ipc=10]") == rg.MOVED and not slow.failed
    gated = compare(make_results(seconds=10), make_results(seconds=100),
                    distill_seconds=rg.parse_tolerance("distill_seconds=50%")[1])
    assert status_of(gated, "distill_seconds [method=dm, ipc=10]") == rg.REGRESSION


def test_command_line_tolerance_overrides_baseline_and_defaults():
    base = rg.baseline_from_results(make_results(dm=0.90), tolerances={"accuracy": rg.Tolerance(abs=0.2)})
    assert not rg.compare(rg.extract(make_results(dm=0.85)), base).failed  # the baseline's own tolerance
    assert rg.compare(rg.extract(make_results(dm=0.85)), base,
                      tolerances={"accuracy": rg.Tolerance(abs=0.01)}).failed


def test_a_metric_missing_from_the_run_fails_and_a_new_one_is_only_reported():
    run = make_results()
    del run["nas"]
    run["accuracy"]["rows"].append({"method": "dsa", "ipc": 10, "network": "convnet", "accuracy_mean": 0.9,
                                    "accuracy_std": 0.0, "accuracies": [0.9]})
    comparison = compare(make_results(), run)
    assert comparison.failed and status_of(comparison, "spearman [proxy=dm-ipc10]") == rg.MISSING
    assert status_of(comparison, "accuracy [method=dsa, ipc=10, network=convnet]") == rg.NEW
    only_new = compare(make_results(), {**make_results(), "accuracy": run["accuracy"]})
    assert not only_new.failed


def test_label_order_does_not_matter():
    base = rg.Baseline((rg.Metric("accuracy", (("network", "convnet"), ("ipc", 10), ("method", "dm")), 0.9,
                                  "higher", "fraction"),))
    assert rg.compare(rg.extract(make_results()), base).changes[0].status == rg.UNCHANGED


# ------------------------------------------------------------------------------------------ baseline files
def test_baseline_round_trip(tmp_path):
    base = rg.baseline_from_results(make_results(), tolerances={"auc": rg.Tolerance(abs=0.1)})
    path = rg.save_baseline(base, tmp_path / "b.json")
    loaded = rg.load_baseline(path)
    assert loaded.metrics == base.metrics and loaded.tolerances == {"auc": rg.Tolerance(abs=0.1)}
    assert loaded.source["suite"] == "hand-made"
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]  # no temporary file left behind


@pytest.mark.parametrize("content, message", [
    (None, "--update-baseline"),
    ("{not json", "cannot be read"),
    ('{"kind": "something-else"}', "is not a ddeval baseline"),
    ('{"kind": "ddeval-baseline", "version": 99, "metrics": []}', "version 99"),
    ('{"kind": "ddeval-baseline", "version": 1, "metrics": []}', "lists no metrics"),
    ('{"kind": "ddeval-baseline", "version": 1, "metrics": [{"metric": "accuracy"}]}', "not a valid baseline"),
    ('{"kind": "ddeval-baseline", "version": 1, "metrics": [{"metric": "accuracy", "value": 1, '
     '"direction": "up"}]}', "direction"),
    ('{"kind": "ddeval-baseline", "version": 1, "tolerances": {"accuracy": {"abs": -1}}, "metrics": '
     '[{"metric": "accuracy", "value": 1}]}', "tolerance"),
    ('{"kind": "ddeval-baseline", "version": 1, "tolerances": {"accuracy": {"absolute": 1}}, "metrics": '
     '[{"metric": "accuracy", "value": 1}]}', "unknown keys"),
])
def test_bad_baselines_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DDError) as err:
        rg.load_baseline(path)
    assert message in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------ CLI
def write_run(folder, results):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_cli_check_exit_codes_and_update(tmp_path, capsys):
    good = write_run(tmp_path / "good", make_results(dm=0.90))
    bad = write_run(tmp_path / "bad", make_results(dm=0.80))
    base = tmp_path / "baselines" / "b.json"
    assert main(["check", str(good), "--baseline", str(base)]) == 2  # missing baseline: never green
    assert "--update-baseline" in capsys.readouterr().err
    assert main(["check", str(good), "--baseline", str(base), "--update-baseline"]) == 0
    assert base.is_file() and "Wrote baseline" in capsys.readouterr().out
    assert main(["check", str(good), "--baseline", str(base)]) == 0
    assert capsys.readouterr().out.startswith("PASS")
    assert main(["check", str(bad), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and DM in out and "FAIL" in out
    assert main(["check", str(bad), "--baseline", str(base), "--tolerance", "accuracy=0.2"]) == 0
    capsys.readouterr()
    # replacing the baseline first shows what moved against the old one
    assert main(["check", str(bad), "--baseline", str(base), "--update-baseline"]) == 0
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["check", str(good), "--baseline", str(base)]) == 0
    assert "improved" in capsys.readouterr().out
    assert main(["check", str(good), "--baseline", str(base), "--all"]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("argv_tail, message", [
    (["--tolerance", "accuracy"], "METRIC=VALUE"),
    (["--tolerance", "accuracy=abc"], "not a number"),
])
def test_cli_check_bad_tolerance(tmp_path, capsys, argv_tail, message):
    good = write_run(tmp_path / "good", make_results())
    assert main(["check", str(good), "--baseline", str(tmp_path / "b.json"), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_check_rejects_results_that_break_the_schema(tmp_path, capsys):
    broken = make_results()
    broken["accuracy"]["rows"][0]["accuracy_mean"] = "high"
    run = write_run(tmp_path / "run", broken)
    assert main(["check", str(run), "--baseline", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "accuracy.rows[0].accuracy_mean" in err and "results schema" in err
    assert main(["check", str(tmp_path / "nowhere"), "--baseline", str(tmp_path / "b.json")]) == 2
    assert "No results.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ schema
def test_schema_accepts_conforming_results():
    assert problems(make_results()) == []
    assert validate(make_results())


@pytest.mark.parametrize("edit, where", [
    (lambda r: r.pop("run"), "run: required key is missing"),
    (lambda r: r.update(schema_version=7), "schema_version: version 7"),
    (lambda r: r["metrics"]["auc"].update(direction="down"), "metrics.auc.direction"),
    (lambda r: r["accuracy"]["rows"][1].update(accuracy_mean=1.5), "accuracy.rows[1].accuracy_mean: must be <="),
    (lambda r: r["accuracy"]["rows"][1].update(ipc="10"), "accuracy.rows[1].ipc: expected integer"),
    (lambda r: r["accuracy"]["rows"][1].update(accuracies=[0.5, float("nan")]), "must be a finite number"),
    (lambda r: r["privacy"]["rows"][0].pop("auc"), "privacy.rows[0].auc: required key is missing"),
    (lambda r: r["nas"]["proxies"][0].update(spearman=2.0), "nas.proxies[0].spearman"),
    (lambda r: r["dataset"].update(image_shape=[1, 0, 8]), "dataset.image_shape[1]"),
    (lambda r: r["accuracy"].update(rows={}), "accuracy.rows: expected array"),
])
def test_schema_names_each_problem(edit, where):
    results = copy.deepcopy(make_results())
    edit(results)
    found = problems(results)
    assert any(where in p for p in found), found
    with pytest.raises(DDError):
        validate(results)


def test_schema_rejects_a_non_object():
    assert problems([1, 2]) == ["(top level): results must be a JSON object, found array"]

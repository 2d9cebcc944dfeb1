"""`ddeval bench`: measurements, ratios, the written report, and user errors."""

from __future__ import annotations

import json

import pytest

from ddeval import bench
from ddeval.cli import main
from distillers.errors import DDError


def test_peak_runs_in_its_own_process() -> None:
    res = bench.run_isolated({"kind": "peak", "device": "cpu", "threads": 1, "n": 64, "reps": 2, "rounds": 1})
    assert res["ok"], res
    assert res["fp32_gflops"] > 0


def test_training_measurement_counts_flops_of_convnet3() -> None:
    task = {"kind": "train", "device": "cpu", "threads": 1, "fast": False, "images": 8, "batch": 8, "epochs": 1,
            "warmup_epochs": 1, "size": 28}
    res = bench._train_task(task)
    assert res["images_per_second"] > 0 and res["path"] == "fp32 eager"
    # forward FLOPs of ConvNet-3 w128 on 28x28 (padded to 32): three 3x3 convolutions and the linear head
    forward = 2 * (128 * 9 * 32 * 32 + 128 * 128 * 9 * 16 * 16 + 128 * 128 * 9 * 8 * 8 + 2048 * 10)
    per_image = res["flops_per_epoch"] / 8
    assert 2 * forward < per_image < 3.2 * forward  # backward ≈ 2x forward, minus the first layer's input grad
    assert res["peak_rss_mb"] >= res["rss_before_mb"] > 0


def test_method_measurement_times_one_iteration() -> None:
    task = {"kind": "method", "device": "cpu", "threads": 1, "method": "dm", "fast": False, "long_run": False,
            "ipc": 1, "real_size": 30, "size": 28, "budget": {"iterations": 2, "batch_real": 4}}
    res = bench._method_task(task)
    assert res["per"] == "iteration" and res["seconds"] > 0 and res["flops"] > 0
    coreset = bench._method_task({**task, "method": "random", "budget": {}})
    assert coreset["per"] == "selection" and coreset["flops"] is None


def _runs(values: list[float], key: str, path: str, **extra) -> list[dict]:
    return [{"ok": True, key: v, "path": path, "peak_rss_mb": 900.0, "rss_before_mb": 500.0, **extra}
            for v in values]


def test_rows_report_the_ratio_of_medians() -> None:
    peak = {"fp32_gflops": 100.0, "bf16_gflops": 200.0}
    runs = {False: _runs([100, 120, 110], "images_per_second", "fp32 eager", flops_per_epoch=1e9),
            True: _runs([250, 300, 260], "images_per_second", "bf16+compile")}
    row = bench._training_row(100, 100, runs, peak)
    assert row["speedup"] == pytest.approx(260 / 110, abs=0.01)
    assert row["baseline"]["achieved_gflops"] == pytest.approx(110 * 1e7 / 1e9, abs=0.1)
    assert row["fast"]["fraction_of_peak"] == pytest.approx(260 * 1e7 / 1e9 / 200, abs=1e-3)

    mruns = {False: _runs([2.0, 4.0], "seconds", None, per="iteration", flops=4e9),
             True: _runs([1.0, 1.0], "seconds", "bf16+compile", per="iteration", flops=None)}
    mrow = bench._method_row("dm", mruns, peak, {"iterations": 5})
    assert mrow["speedup"] == 3.0 and mrow["baseline"]["path"] == "n/a"
    assert mrow["fast"]["achieved_gflops"] == pytest.approx(4.0)


def test_failed_repeats_are_reported_not_hidden() -> None:
    runs = {False: [{"ok": False, "error": "worker died"}], True: _runs([1.0], "seconds", "bf16")}
    with pytest.raises(DDError, match="worker died"):
        bench._method_row("dm", runs, {}, {})


def test_written_report_has_tables_and_plot(tmp_path) -> None:
    peak = {"ok": True, "fp32_gflops": 100.0, "bf16_gflops": 200.0}
    train_row = bench._training_row(
        100, 100, {False: _runs([100], "images_per_second", "fp32 eager", flops_per_epoch=1e9),
                   True: _runs([250], "images_per_second", "bf16+compile")}, peak)
    method_row = bench._method_row("dm", {False: _runs([2.0], "seconds", None, per="iteration", flops=4e9),
                                          True: _runs([1.0], "seconds", "bf16+compile", per="iteration")},
                                   peak, {"iterations": 5})
    scaling = [{"ok": True, "method": "dm", "ipc": k, "real_size": n, "seconds": 0.1 * k, "peak_rss_mb": 900.0,
                "rss_before_mb": 500.0} for k, n in ((1, 500), (10, 500), (10, 200))]
    scaling.append({"ok": False, "method": "dsa", "ipc": 50, "real_size": 500, "error": "worker died"})
    results = {"schema_version": 1, "config": bench.config_dict(bench.BenchConfig()), "peak": peak,
               "machine": {"device": "cpu", "cpu": "test cpu", "cpu_count": 2, "torch": "x", "python": "3"},
               "sizes": {"ipc": 10, "real_size": 500}, "training": [train_row], "methods": [method_row],
               "scaling": scaling, "wall_seconds": 60.0, "command": "ddeval bench"}
    bench.write_bench(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "**2.50x**" in text and "**2.00x**" in text and "failed: worker died" in text
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())["training"][0]["speedup"] == 2.5


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "repeats must be at least 1"),
    (["--methods", "dmm"], "dm"),
])
def test_bench_user_errors_are_one_line(args, message, capsys) -> None:
    assert main(["bench", "--out", "unused", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err

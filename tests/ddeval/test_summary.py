"""The printed summary keeps its columns aligned whatever the method names' lengths, and signs gains right."""

from __future__ import annotations

from ddeval.summary import signed_points, summary_table


def test_long_method_names_keep_the_columns_aligned() -> None:
    rows = [{"method": m, "ipc": 10, "accuracy_mean": a, "accuracy_std": 0.01}
            for m, a in (("random", 0.91), ("label-distillation", 0.922), ("dd", 0.387))]
    results = {"dataset": {"name": "d", "num_train": 5, "num_test": 5}, "accuracy": {"rows": rows},
               "run": {"total_seconds": 1.0, "device": "cpu"}}
    lines = summary_table(results).splitlines()
    body = [line for line in lines if line.startswith("  10")]
    assert len(body) == 3
    assert len({line.index("±") for line in body}) == 1, body  # accuracy column
    assert len({len(line) for line in body + [lines[1]]}) == 1, lines  # right-aligned columns end together
    assert body[1].split()[1:3] == ["label-distillation", "92.2"], body


def test_a_gain_that_rounds_to_zero_prints_plus_zero() -> None:
    assert signed_points(0.910 - 0.9104) == "+0.0"  # was "-0.0", read as a loss
    assert signed_points(-0.0006) == "-0.1"
    assert signed_points(0.0326) == "+3.3"
    rows = [{"method": m, "ipc": 10, "accuracy_mean": a, "accuracy_std": 0.01}
            for m, a in (("random", 0.9104), ("cafe", 0.9100))]
    results = {"dataset": {"name": "d", "num_train": 5, "num_test": 5}, "accuracy": {"rows": rows},
               "run": {"total_seconds": 1.0, "device": "cpu"}}
    cafe = next(line for line in summary_table(results).splitlines() if " cafe " in line)
    assert "+0.0" in cafe and "-0.0" not in cafe, cafe

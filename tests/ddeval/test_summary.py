"""The printed summary keeps its columns aligned whatever the method names' lengths."""

from __future__ import annotations

from ddeval.summary import summary_table


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

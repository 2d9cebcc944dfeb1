"""Two runs side by side: ``ddeval report RUN_A RUN_B`` writes ``report.md`` and ``report.html`` comparing them.

Run A plays the baseline: every metric of B is set against A's with the regression check's tolerances and
directions (so "improved" and "REGRESSION" mean the same here as in ``ddeval check``), grouped by evaluator,
followed by what differs in the setup (suite values, package versions, commit, machine). Rendered from the two
``results.json`` files alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ddeval.regression import (
    IMPROVEMENT,
    MISSING,
    NEW,
    REGRESSION,
    Change,
    Comparison,
    baseline_from_results,
    compare,
    extract,
    format_delta,
    load_results,
    metric_text,
)
from ddeval.report import plots
from ddeval.report.render import DASH, Image, PlotWriter, Section, Table, Text, flatten, to_html, to_markdown
from distillers.io import atomic_write_text

GROUPS = (
    ("accuracy", "Accuracy", ("accuracy",),
     "Test accuracy of networks trained on each run's synthetic sets (mean over evaluation seeds). Higher is "
     "better."),
    ("privacy", "Privacy", ("auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr", "epsilon_lb"),
     "Membership-inference AUC and TPR at low FPR, and empirical ε lower bounds from DP audits. Lower is "
     "better (less leakage)."),
    ("nas", "Architecture search proxy", ("spearman", "kendall", "top1_regret", "speedup"),
     "Rank agreement between proxy and full-data searches (higher is better), regret (lower is better) and "
     "speed-up (higher is better; a timing, not gated)."),
    ("timing", "Distillation time", ("distill_seconds",),
     "Seconds to distil each set. Depends on the machine and its load, so it is reported, never gated."),
)
HEADERS = ["Status", "Metric", "Run A", "Run B", "Change", "Tolerance"]


def render_comparison(run_a: str | Path, run_b: str | Path, out: str | Path) -> dict[str, Path]:
    """Write ``out/report.md``, ``out/report.html`` and ``out/plots/*.png``; return the written paths."""
    a, b = load_results(run_a), load_results(run_b)
    out = Path(out)
    name_a, name_b = f"A: {_run_name(a, run_a)}", f"B: {_run_name(b, run_b)}"
    comparison = compare(extract(b), baseline_from_results(a))
    writer = PlotWriter(out)
    sections = [summary_section(comparison, a, b, name_a, name_b)]
    for key, title, names, explain in GROUPS:
        changes = [c for c in comparison.changes if c.metric.name in names]
        if changes:
            blocks: list[Text | Table | Image] = [Table(HEADERS, [_row(c) for c in _sorted(changes)])]
            if key == "accuracy":
                blocks.append(accuracy_plot(changes, writer, name_a, name_b))
            sections.append(Section(key, title, explain, blocks))
    sections.append(setup_section(a, b))
    title = f"Comparison: {name_a} against {name_b}"
    lead = ("Run A is the reference. Each metric of run B is set against run A's, with the tolerances and "
            "directions of `ddeval check`: \"improved\" and \"REGRESSION\" mean B moved past the tolerance in "
            "the better or the worse direction, \"ok\" that it stayed within it.")
    md = atomic_write_text(out / "report.md", to_markdown(title, lead, sections))
    page = atomic_write_text(out / "report.html", to_html(title, lead, sections, out))
    paths = {"report.md": md, "report.html": page}
    paths.update({str(p.relative_to(out)): p for p in writer.written})
    return paths


def _run_name(results: Mapping[str, Any], source: str | Path) -> str:
    suite = (results.get("run") or {}).get("suite") or "run"
    return f"{suite} ({Path(source).name})"


def _sorted(changes: Sequence[Change]) -> list[Change]:
    order = {REGRESSION: 0, MISSING: 1, IMPROVEMENT: 2}
    return sorted(changes, key=lambda c: (order.get(c.status, 3), c.metric.title()))


def _row(change: Change) -> list[str]:
    status = {NEW: "only in B", MISSING: "only in A"}.get(change.status, change.status)
    delta = DASH if change.delta is None else format_delta(change.delta, change.metric.unit, signed=True)
    return [status, change.metric.title(), metric_text(change.base), metric_text(change.run), delta,
            change.tolerance.text(change.metric.unit)]


def summary_section(comparison: Comparison, a: Mapping[str, Any], b: Mapping[str, Any], name_a: str,
                    name_b: str) -> Section:
    rows = []
    for label, results in ((name_a, a), (name_b, b)):
        run, prov = results.get("run") or {}, results.get("provenance") or {}
        git = prov.get("git") or {}
        commit = (str(git.get("commit") or "")[:12] or DASH) + (" (uncommitted changes)" if git.get("dirty")
                                                                 else "")
        rows.append([label, str((results.get("dataset") or {}).get("name") or DASH),
                     str(run.get("finished") or DASH), str(run.get("device") or DASH), commit])
    counts = Table(["Regressed", "Missing in B", "Improved", "Within tolerance", "Only in B"],
                   [[str(comparison.count(s)) for s in (REGRESSION, MISSING, IMPROVEMENT, "ok", NEW)]])
    blocks: list[Text | Table | Image] = [Table(["Run", "Dataset", "Finished", "Device", "Commit"], rows), counts,
                                          Text(comparison.summary())]
    worst = [c for c in comparison.changes if c.status in (REGRESSION, MISSING)]
    if worst:
        blocks.append(Text("Worse in B: " + "; ".join(c.metric.title() for c in _sorted(worst)[:8])
                           + (" ..." if len(worst) > 8 else "") + "."))
    return Section("summary", "Summary", "What moved between the two runs, counted by verdict.", blocks)


def accuracy_plot(changes: Sequence[Change], writer: PlotWriter, name_a: str, name_b: str) -> Image:
    rows = [(", ".join(str(v) for _, v in c.base.labels), c.base.value, c.run.value, c.base.std or 0.0,
             c.run.std or 0.0) for c in changes if c.base is not None and c.run is not None][:30]
    fig = plots.comparison_figure(rows, name_a, name_b)
    return writer.save("compare-accuracy", fig, "Accuracy of run A and run B per method, ipc and network",
                       "Bars: mean test accuracy; whiskers: std over evaluation seeds (first 30 rows).")


def setup_section(a: Mapping[str, Any], b: Mapping[str, Any]) -> Section:
    """Values that differ between the runs' suite configs and provenance (commit, versions, machine)."""
    blocks: list[Text | Table | Image] = []
    for key, what in (("config", "Suite values"), ("provenance", "Provenance")):
        left, right = dict(_flat(a.get(key))), dict(_flat(b.get(key)))
        if key == "provenance":  # these differ between any two runs and say nothing about the setup
            for noisy in ("started", "finished", "timings_seconds", "units"):
                left = {k: v for k, v in left.items() if not k.startswith(noisy)}
                right = {k: v for k, v in right.items() if not k.startswith(noisy)}
        rows = [[k, left.get(k, DASH), right.get(k, DASH)] for k in sorted(set(left) | set(right))
                if left.get(k) != right.get(k)]
        if not left and not right:
            blocks.append(Text(f"{what}: not recorded in either results.json."))
        elif rows:
            blocks.append(Table([what, "Run A", "Run B"], rows))
        else:
            blocks.append(Text(f"{what}: identical."))
    return Section("setup", "What differs in the setup",
                   "Differences in the resolved suite configuration and in provenance. A difference here is "
                   "often the reason for a difference above.", blocks)


def _flat(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return []
    return [(k, v if len(v) < 120 else v[:117] + "...") for k, v in flatten(json.loads(json.dumps(value)))]

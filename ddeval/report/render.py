"""Render a run directory's ``results.json`` into ``report.md``, ``report.html`` and ``plots/*.png``.

The report is built from the JSON alone (plus the synthetic sets it points to, for the image grids), so it can
be re-rendered at any time without recomputing anything. Each section builder returns a :class:`Section`
made of small blocks (text, tables, images); the Markdown and HTML writers only lay those blocks out.
Sections whose key is missing from ``results.json`` are left out. The HTML file is self-contained: inline
CSS, images as base64 ``data:`` URIs, no scripts and no external links, so one file can be mailed.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddeval.nas.ranking import by_spearman
from ddeval.report import plots
from ddeval.schema import SCHEMA_VERSION
from ddeval.summary import signed_points
from distillers.errors import DDError
from distillers.io import atomic_write_text
from distillers.synthetic import SyntheticSet

RESULTS_FILE = "results.json"
MANIFEST_FILE = "manifest.json"
PLOTS_DIR = "plots"
MAX_CANDIDATE_ROWS = 40
IMAGE_BUDGET_BYTES = 3_000_000  # PNG bytes embedded in report.html (base64 adds a third)
DASH = "—"


# ============================================================================================ report model
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    folded: str = ""  # HTML: shown folded under this summary line (long reference tables)


@dataclass(frozen=True)
class Image:
    path: str  # relative to the run directory
    alt: str
    caption: str = ""
    embed: bool = True  # False: too big for the HTML budget, only named there


@dataclass
class Section:
    key: str
    title: str
    explain: str
    blocks: list[Text | Table | Image] = field(default_factory=list)


# Section titles and the short explanation shown under each (what the numbers mean, which way is better).
SECTIONS = {
    "summary": (
        "Summary",
        "Each distillation method against the random real subset with the same number of images per class "
        "(the baseline to beat) and against training on the full data (the ceiling). Higher accuracy is "
        "better."),
    "accuracy": (
        "Accuracy",
        "A fresh network is trained from scratch on the synthetic images only and tested on the real test "
        "set, once per evaluation seed. Higher is better. \"random\" trains on randomly chosen real images "
        "(same count), \"noise\" on random noise images (the floor), \"full data\" on the whole training set "
        "(the ceiling)."),
    "privacy": (
        "Privacy (membership inference)",
        "An attacker sees a model trained on the released data and tries to tell whether a given real "
        "training image (a member) was used, against images never used (non-members). AUC 0.5 is pure "
        "guessing; lower AUC and lower true-positive rate (TPR) at a small false-positive rate (FPR) are "
        "better. TPR at 0.1% FPR needs at least 1000 non-members to be measured. Targets: each method's "
        "synthetic set, a random real subset of the same size (\"random\"), the full training data, and "
        "DP-SGD on the real data at several ε (differential privacy: smaller ε = stronger guarantee). LiRA "
        "(likelihood-ratio attack, run when privacy.shadows > 0) compares each image's score with shadow "
        "models trained with and without it, and is the strongest attack here."),
    "nas": (
        "Architecture search with a distilled proxy",
        "Each candidate network is trained on the small synthetic set (the proxy) instead of the full "
        "data, to rank architectures cheaply. A proxy is useful when its ranking agrees with the "
        "full-data ranking: Spearman ρ and Kendall τ run from -1 to 1, higher is better (1 = same order, "
        "0 = unrelated). Speed-up = full-data search time / proxy search time (the proxy's distillation "
        "time included), higher is better."),
    "synthetic": (
        "Synthetic images",
        "What the distilled images look like, mapped back to pixel values. Each row is one class (with one "
        "image per class, each column); at most "
        f"{plots.GRID_MAX_PER_CLASS} images per class and {plots.GRID_MAX_CLASSES} classes are shown, for "
        "the lowest distillation seed."),
    "metrics": (
        "How to read the metrics",
        "Which direction is better for every metric in results.json (used by regression checks)."),
    "provenance": (
        "Provenance",
        "What produced these numbers: seeds, timings, package versions, source commit and machine, so the "
        "run can be repeated and compared."),
}


def section(key: str, blocks: list[Text | Table | Image]) -> Section:
    title, explain = SECTIONS[key]
    return Section(key, title, explain, list(blocks))


class PlotWriter:
    """Saves figures under ``run_dir/plots`` and hands back :class:`Image` blocks that point at them.

    Images are marked for embedding in the HTML until ``budget`` bytes of PNG are used up, so report.html
    stays well under 5 MB however many synthetic sets a run has (the first plots, the key ones, always fit).
    """

    def __init__(self, run_dir: Path, budget: int | None = None) -> None:
        self.run_dir = run_dir
        self.budget = IMAGE_BUDGET_BYTES if budget is None else budget
        self.embedded_bytes = 0
        self.written: list[Path] = []

    def save(self, name: str, fig: Any, alt: str, caption: str = "") -> Image:
        rel = f"{PLOTS_DIR}/{safe_name(name)}.png"
        path = plots.save_png(fig, self.run_dir / rel)
        self.written.append(path)
        size = path.stat().st_size
        embed = self.embedded_bytes + size <= self.budget
        self.embedded_bytes += size if embed else 0
        return Image(rel, alt, caption, embed)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "plot"


# ============================================================================================ formatting
def pct(value: Any, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * float(value):.{digits}f}%"


def pct_pm(mean: Any, std: Any) -> str:
    if mean is None:
        return DASH
    return f"{100 * float(mean):.1f} ± {100 * float(std or 0.0):.1f}%"


def num(value: Any, digits: int = 3) -> str:
    return DASH if value is None else f"{float(value):.{digits}f}"


def points(fraction: Any) -> str:
    return DASH if fraction is None else f"{100 * float(fraction):.1f} points"


def duration(seconds: Any) -> str:
    if seconds is None:
        return DASH
    s = float(seconds)
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def ratio(value: Any) -> str:
    return DASH if value is None else f"{float(value):.1f}×"


def flops(value: Any) -> str:
    """A FLOP count with its unit (GFLOP to PFLOP)."""
    if value is None:
        return DASH
    v = float(value)
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if v >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.2g} FLOP"


def ipc_text(ipc: Any) -> str:
    return DASH if ipc is None else str(ipc)


# ============================================================================================ entry point
def render_run(run_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for ``run_dir``; return the written paths.

    Keys are paths relative to ``run_dir`` (``"report.md"``, ``"report.html"``, ``"plots/accuracy.png"``...),
    values the absolute paths.
    """
    run_dir = Path(run_dir)
    results = load_json(run_dir / RESULTS_FILE, required=True)
    if "schema_version" in results and results["schema_version"] != SCHEMA_VERSION:  # never guess at another version
        raise DDError(f"{run_dir / RESULTS_FILE} has schema_version {results.get('schema_version')!r}; this ddeval "
                      f"renders version {SCHEMA_VERSION}: re-run the suite with it to rewrite the file.")
    # results.json carries its provenance; runs written before it did have it only in manifest.json
    manifest = results.get("provenance") or load_json(run_dir / MANIFEST_FILE, required=False)
    writer = PlotWriter(run_dir)
    title = report_title(results)
    lead = overview(results)
    sections = build_sections(results, manifest, run_dir, writer)
    md = atomic_write_text(run_dir / "report.md", to_markdown(title, lead, sections))
    page = atomic_write_text(run_dir / "report.html", to_html(title, lead, sections, run_dir))
    paths = {"report.md": md, "report.html": page}
    paths.update({str(p.relative_to(run_dir)): p for p in writer.written})
    return paths


def load_json(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise DDError(f"No {path.name} in {path.parent}: point the report at a finished run directory "
                          "(made by `ddeval run`).")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DDError(f"{path} is not valid JSON ({err}); re-run the suite to rewrite it.") from None
    if not isinstance(data, dict):
        raise DDError(f"{path} must hold a JSON object; re-run the suite to rewrite it.")
    return data


def build_sections(results: Mapping[str, Any], manifest: Mapping[str, Any], run_dir: Path,
                   writer: PlotWriter) -> list[Section]:
    candidates = [
        summary_section(results),
        accuracy_section(results, writer),
        privacy_section(results, writer),
        nas_section(results, writer),
        synthetic_section(results, run_dir, writer),
        metrics_section(results),
        provenance_section(results, manifest),
    ]
    return [s for s in candidates if s is not None]


def report_title(results: Mapping[str, Any]) -> str:
    suite = (results.get("run") or {}).get("suite") or "run"
    dataset = (results.get("dataset") or {}).get("name")
    return f"Dataset distillation report: {suite}" + (f" on {dataset}" if dataset else "")


def overview(results: Mapping[str, Any]) -> str:
    """One paragraph saying what was run, on what, and for how long."""
    ds, run = results.get("dataset") or {}, results.get("run") or {}
    parts = []
    if ds:
        shape = "x".join(str(d) for d in ds.get("image_shape") or []) or "?"
        parts.append(f"Dataset {ds.get('name', '?')}: {ds.get('num_train', '?')} training and "
                     f"{ds.get('num_test', '?')} test images, {ds.get('num_classes', '?')} classes, "
                     f"image shape {shape}.")
    if run:
        text = (f"Run finished {run.get('finished') or '?'} on device {run.get('device') or '?'} "
                f"in {duration(run.get('total_seconds'))}")
        units = run.get("units") or {}
        if units.get("reused"):
            text += (f" ({units['reused']} finished units reused from earlier invocations; compute time of all "
                     f"units: {duration(run.get('unit_seconds'))})")
        parts.append(text + ".")
    parts.append("Dataset distillation compresses a training set into a few synthetic images per class "
                 "(ipc); this report asks how useful, how private and how good a stand-in for architecture "
                 "search those images are.")
    return " ".join(parts)


# ============================================================================================ accuracy
def accuracy_rows(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = (results.get("accuracy") or {}).get("rows") or []
    return [r for r in rows if r.get("accuracy_mean") is not None and r.get("ipc") is not None]


def find_row(rows: Sequence[Mapping[str, Any]], method: str,
             row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``method`` row at the same ipc as ``row`` (same network when there is one)."""
    same_ipc = [r for r in rows if r.get("method") == method and r.get("ipc") == row.get("ipc")]
    same_net = [r for r in same_ipc if r.get("network") == row.get("network")]
    matches = same_net or same_ipc
    return matches[0] if matches else None


def verdict(row: Mapping[str, Any], random_row: Mapping[str, Any] | None,
            noise_row: Mapping[str, Any] | None, full: Mapping[str, Any] | None) -> str:
    """A verdict in words: the gap to the random subset (in points), the noise floor, the gap to full data."""
    mean, std = float(row["accuracy_mean"]), float(row.get("accuracy_std") or 0.0)
    parts = [versus_random(mean, std, random_row)]
    if noise_row is not None:
        noise_spread = 100 * math.hypot(std, float(noise_row.get("accuracy_std") or 0.0))
        if 100 * (mean - float(noise_row["accuracy_mean"])) <= noise_spread:
            parts.append("no better than the noise floor")
    if full and full.get("accuracy_mean") is not None:
        gap = 100 * (float(full["accuracy_mean"]) - mean)
        parts.append(f"{gap:.1f} points below full data" if gap > 0
                     else f"matches full data ({signed_points(mean - float(full['accuracy_mean']))} points)")
    return "; ".join(parts)


def versus_random(mean: float, std: float, random_row: Mapping[str, Any] | None) -> str:
    if random_row is None:
        return "no random-subset baseline at this ipc"
    gain = mean - float(random_row["accuracy_mean"])
    diff = 100 * gain
    spread = 100 * math.hypot(std, float(random_row.get("accuracy_std") or 0.0))
    if abs(diff) <= spread:
        return f"on par with random subset ({signed_points(gain)} points, within the seed spread)"
    if diff > 0:
        return f"beats random subset by {diff:+.1f} points"
    return f"trails random subset by {-diff:.1f} points"


def summary_section(results: Mapping[str, Any]) -> Section | None:
    rows = accuracy_rows(results)
    if not rows:
        return None
    full = (results.get("accuracy") or {}).get("full_data")
    methods = sorted((r for r in rows if r.get("method") not in plots.BASELINES),
                     key=lambda r: (int(r["ipc"]), -float(r["accuracy_mean"])))
    many_networks = len({r.get("network") for r in rows}) > 1
    table = []
    for row in methods:
        rnd, noise = find_row(rows, "random", row), find_row(rows, "noise", row)
        table.append([plots.series_label(row, many_networks), ipc_text(row.get("ipc")),
                      pct(row["accuracy_mean"]),
                      pct(rnd["accuracy_mean"] if rnd else None), pct((full or {}).get("accuracy_mean")),
                      verdict(row, rnd, noise, full)])
    blocks: list[Text | Table | Image] = [
        Table(["Method", "IPC", "Accuracy", "Random subset", "Full data", "Verdict"], table)
        if table else Text("This run has only baselines (random subset, noise), no distillation method."),
        Text("A point is one percentage point of test accuracy. \"On par\" means the gap is smaller than the "
             "combined standard deviation over seeds, i.e. not distinguishable in this run."),
    ]
    return section("summary", blocks)


def accuracy_section(results: Mapping[str, Any], writer: PlotWriter) -> Section | None:
    accuracy = results.get("accuracy")
    if not accuracy:
        return None
    rows = accuracy_rows(results)
    order = {m: i for i, m in enumerate(plots.BASELINES, start=1)}
    rows = sorted(rows, key=lambda r: (int(r["ipc"]), order.get(str(r.get("method")), 0)))
    # Parameterised sets (multi-formation, HaBa, ...) decode to other than ipc images: say how many, and what
    # they cost to store relative to plain images.
    storage = any(r.get("parameterization") not in (None, "pixels") for r in rows)
    table = [[str(r.get("method")), ipc_text(r.get("ipc")), str(r.get("network") or DASH),
              pct_pm(r["accuracy_mean"], r.get("accuracy_std")), str(len(r.get("accuracies") or [])),
              duration(r.get("distill_seconds")), duration(r.get("train_seconds_mean"))]
             + ([str(r.get("images_per_class") or DASH), num(r.get("storage_ratio"), 3)] if storage else [])
             for r in rows]
    full = accuracy.get("full_data")
    if full and full.get("accuracy_mean") is not None:
        table.append(["full data", "all", str(full.get("network") or DASH),
                      pct_pm(full["accuracy_mean"], full.get("accuracy_std")),
                      str(len(full.get("accuracies") or [])), DASH, DASH] + ([DASH, DASH] if storage else []))
    headers = ["Method", "IPC", "Network", "Accuracy (mean ± std)", "Seeds", "Distillation time",
               "Training time per net"] + (["Images per class", "Storage ratio"] if storage else [])
    blocks: list[Text | Table | Image] = [Table(headers, table)]
    if storage:
        blocks.append(Text("Images per class: what a set decodes to (a parameterisation can pack more than ipc "
                           "images into the storage of ipc). Storage ratio: bytes stored per decoded image over "
                           "the bytes of one plain image (1 for pixels; lower is more compact)."))
    paths = sorted({p for r in rows for p in (r.get("path") or [])})
    if paths:
        blocks.append(Text(f"Evaluation networks trained with: {', '.join(paths)} (\"fp32 eager\" is plain "
                           "float32 PyTorch; bf16 and compile are the fast path, off with fast: false)."))
    if rows:
        num_classes = (results.get("dataset") or {}).get("num_classes")
        fig = plots.accuracy_figure({**accuracy, "rows": rows}, num_classes=num_classes)
        blocks.append(writer.save("accuracy", fig, "Bar chart of test accuracy per method and ipc",
                                  "Bars: mean over evaluation seeds; whiskers: ± one standard deviation."))
    return section("accuracy", blocks)


# ============================================================================================ privacy
def tpr_cell(row: Mapping[str, Any], key: str, fpr: float, resolved: bool | None) -> str:
    """TPR at a fixed FPR, or why it cannot be measured with this many non-members."""
    needed = round(1 / fpr)
    if resolved is None:
        count = row.get("num_nonmembers")
        resolved = count is None or int(count) >= needed
    if not resolved:
        return f"n/a (needs ≥{needed} non-members)"
    return pct(row.get(key), 2)


def with_ci(row: Mapping[str, Any], key: str, fmt: Any) -> str:
    """A metric with its bootstrap interval when there is one, e.g. ``0.62 [0.60, 0.64]``."""
    value = fmt(row.get(key))
    ci = (row.get("ci") or {}).get(key)
    if isinstance(ci, Sequence) and len(ci) == 2 and value != DASH:
        value += f" [{fmt(ci[0])}, {fmt(ci[1])}]"
    return value


def dp_text(dp: Any) -> str:
    if not isinstance(dp, Mapping) or dp.get("epsilon") is None:
        return DASH
    delta = dp.get("delta")
    return f"ε={float(dp['epsilon']):.2f}" + (f", δ={float(delta):.0e}" if delta is not None else "")


def privacy_section(results: Mapping[str, Any], writer: PlotWriter) -> Section | None:
    privacy = results.get("privacy") or {}
    rows = privacy.get("rows") or []
    if not rows:
        return None
    headline = str(privacy.get("headline_attack") or privacy.get("attack") or rows[0].get("attack") or "?")
    blocks: list[Text | Table | Image] = []
    if privacy.get("mode") == "shadow pipelines":
        blocks.append(Text(
            f"Shadow pipelines: each target's whole chain (random half of a population of "
            f"{privacy.get('population', '?')} real training images → distil → train) was run "
            f"{privacy.get('pipelines', '?')} times; each pipeline was attacked with the others as its shadow "
            f"models (leave-one-out) and the scores of {privacy.get('targets', '?')} target pipelines were pooled. "
            "Members: the half a pipeline was given; non-members: the other half."))
    else:
        blocks.append(Text("One model per target. Members: the real training images given to the distiller; "
                           "non-members: the real test images."))
    head_rows = [r for r in rows if r.get("attack", headline) == headline]
    table = [[str(r.get("target")), ipc_text(r.get("ipc")), dp_text(r.get("dp")),
              pct(r.get("target_accuracy")), with_ci(r, "auc", num),
              tpr_cell(r, "tpr_at_1pct_fpr", 0.01, r.get("resolves_1pct_fpr"))
              + _ci_suffix(r, "tpr_at_1pct_fpr", r.get("resolves_1pct_fpr")),
              tpr_cell(r, "tpr_at_0p1pct_fpr", 0.001, r.get("resolves_0p1pct_fpr"))
              + _ci_suffix(r, "tpr_at_0p1pct_fpr", r.get("resolves_0p1pct_fpr")),
              str(r.get("num_members", DASH)), str(r.get("num_nonmembers", DASH))] for r in head_rows]
    blocks.append(Text(f"Headline attack: {headline} (fixed before looking at results: LiRA when shadow "
                       "pipelines were run, with one global variance below 64 shadows; otherwise the loss "
                       f"attack). Brackets: {_ci_level(head_rows)} bootstrap confidence intervals."))
    blocks.append(Table(["Target", "IPC", "DP guarantee", "Test accuracy", "AUC", "TPR @ 1% FPR",
                         "TPR @ 0.1% FPR", "Members", "Non-members"], table))
    attacks = list(dict.fromkeys(str(r.get("attack")) for r in rows))
    if len(attacks) > 1:
        by_target: dict[tuple[str, Any], dict[str, Mapping[str, Any]]] = {}
        for r in rows:
            by_target.setdefault((str(r.get("target")), r.get("ipc")), {})[str(r.get("attack"))] = r
        grid = [[t, ipc_text(ipc)] + [_attack_cell(cells.get(a)) for a in attacks]
                for (t, ipc), cells in by_target.items()]
        blocks.append(Text("Every attack, as AUC / TPR at 1% FPR (in %):"))
        blocks.append(Table(["Target", "IPC", *attacks], grid))
    notes = sorted({str(r["note"]) for r in rows if r.get("note")})
    blocks += [Text(f"Note: {n}") for n in notes]
    if any(isinstance(r.get("roc"), Mapping) and r["roc"].get("fpr") for r in head_rows):
        blocks.append(writer.save("roc", plots.roc_figure(head_rows), "Membership inference ROC curves, log-log",
                                  f"{headline}: log-log axes show the low false-positive region, where an "
                                  "attack is dangerous; the dotted diagonal is guessing."))
        blocks.append(writer.save("privacy_utility", plots.frontier_figure(head_rows),
                                  "Privacy-utility frontier",
                                  "Left: test accuracy of the model trained on each target against the attack's "
                                  "TPR at 0.1% FPR (1% where 0.1% is not resolved); up and to the left is "
                                  "better. Right: accuracy against the accountant's ε for the DP targets."))
    audits = privacy.get("audits") or []
    if audits:
        blocks.append(Text("Empirical DP audits: lower bounds on ε measured with canaries, beside the ε the "
                           "accountant guarantees. A correct DP implementation never has a lower bound above "
                           "its guarantee; a bound far below it means the audit (or the guarantee) is loose."))
        blocks.append(Table(["Target", "Accountant ε (δ)", "Canary ε lower bound", "GDP ε estimate",
                             "One-run ε lower bound", "Runs / canaries"],
                            [_audit_row(a) for a in audits]))
    return section("privacy", blocks)


def _ci_level(rows: Sequence[Mapping[str, Any]]) -> str:
    for r in rows:
        level = (r.get("ci") or {}).get("level")
        if level:
            return f"{100 * float(level):.0f}%"
    return "no"


def _ci_suffix(row: Mapping[str, Any], key: str, resolved: Any) -> str:
    ci = (row.get("ci") or {}).get(key)
    if resolved is False or not (isinstance(ci, Sequence) and len(ci) == 2):
        return ""
    return f" [{pct(ci[0], 2)}, {pct(ci[1], 2)}]"


def _attack_cell(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return DASH
    return f"{num(row.get('auc'))} / {tpr_cell(row, 'tpr_at_1pct_fpr', 0.01, row.get('resolves_1pct_fpr'))}"


def _audit_row(audit: Mapping[str, Any]) -> list[str]:
    canary = audit.get("canary") or {}
    one_run = audit.get("one_run") or {}
    gdp = canary.get("gdp") or {}
    theory = audit.get("epsilon_theory")
    delta = audit.get("delta")
    return [str(audit.get("label") or audit.get("target")),
            DASH if theory is None else f"{float(theory):.2f}" + (f" ({float(delta):.0e})" if delta else ""),
            num(canary.get("epsilon_lb"), 2), num(gdp.get("epsilon"), 2), num(one_run.get("epsilon_lb"), 2),
            f"{canary.get('trials', DASH)} / {one_run.get('num_canaries', DASH)}"]


# ============================================================================================ NAS
def arch_text(arch: Mapping[str, Any], varying: Sequence[str]) -> str:
    keys = [k for k in arch if k in varying] or list(arch)
    return ", ".join(f"{k}={arch[k]}" for k in keys) or DASH


def varying_keys(trials: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, set[str]] = {}
    for trial in trials:
        for k, v in (trial.get("arch") or {}).items():
            keys.setdefault(k, set()).add(json.dumps(v, default=str))
    return [k for k, values in keys.items() if len(values) > 1]


def ranks(values: Sequence[float | None]) -> list[int | None]:
    """1 = best (highest accuracy); None stays None."""
    order = sorted((v, i) for i, v in enumerate(values) if v is not None)
    out: list[int | None] = [None] * len(values)
    for rank, (_, i) in enumerate(reversed(order), start=1):
        out[i] = rank
    return out


def proxy_name(proxy: Mapping[str, Any]) -> str:
    ipc = proxy.get("ipc")
    return str(proxy.get("proxy", "?")) + (f" (ipc {ipc})" if ipc is not None else "")


def rho_text(proxy: Mapping[str, Any]) -> str:
    """ρ with its 95% bootstrap interval over candidates when the result carries one: ``0.74 [0.58, 0.86]``."""
    ci = proxy.get("spearman_ci")
    text = num(proxy.get("spearman"), 2)
    return text if not ci or proxy.get("spearman") is None else f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]"


def proxy_table(nas: Mapping[str, Any]) -> Table:
    """Proxies ranked by ρ, with the quality of their pick and the compute they save (full data on top)."""
    full = nas.get("full") or {}
    proxies = by_spearman(nas.get("proxies") or [])
    k = max([t["k"] for p in proxies for t in p.get("top_k") or []] or [0])
    with_regret = any("top1_regret" in p for p in proxies)
    compute = any("compute_seconds" in p for p in proxies)
    full_seconds = full.get("compute_seconds", full.get("seconds"))
    rows = []
    if full:
        rows.append(["full data (reference)", DASH, str(full.get("num_train_images") or DASH), DASH, DASH]
                    + ([DASH] if k else []) + ([DASH, "#1"] if with_regret else [])
                    + [duration(full_seconds)] + ([DASH, flops(full.get("train_flops"))] if compute else [])
                    + ["1.0×"] + (["1.0×"] if compute else []))
    for p in proxies:
        overlap = next((t["overlap"] for t in p.get("top_k") or [] if t["k"] == k), None)
        rank = p.get("proxy_pick_full_rank")
        rows.append([str(p.get("proxy", "?")), ipc_text(p.get("ipc")), str(p.get("images") or DASH),
                     rho_text(p), num(p.get("kendall"), 2)]
                    + ([pct(overlap, 0)] if k else [])
                    + ([points(p.get("top1_regret")), DASH if rank is None else f"#{rank}"] if with_regret else [])
                    + [duration(p.get("compute_seconds", p.get("seconds")))]
                    + ([duration(p.get("distill_seconds")), flops(p.get("train_flops"))] if compute else [])
                    + [ratio(p.get("speedup"))] + ([ratio(p.get("flops_ratio"))] if compute else []))
    headers = (["Proxy", "IPC", "Images", "Spearman ρ", "Kendall τ"] + ([f"Top-{k} overlap"] if k else [])
               + (["Regret of the pick", "Pick's full-data rank"] if with_regret else []) + ["Search time"]
               + (["Distillation", "Training FLOPs"] if compute else []) + ["Speed-up"]
               + (["FLOPs saved"] if compute else []))
    return Table(headers, rows)


def top_lists_table(nas: Mapping[str, Any]) -> Table | None:
    """The k best architectures by the full data and by each proxy, side by side (with full-data ranks)."""
    full_list = (nas.get("full") or {}).get("top_list") or []
    proxies = [p for p in by_spearman(nas.get("proxies") or []) if p.get("top_list")]
    if not full_list or not proxies:
        return None
    varying = varying_keys((nas.get("full") or {}).get("trials") or []) or None

    def cell(entry: Mapping[str, Any] | None, with_rank: bool) -> str:
        if entry is None:
            return DASH
        text = f"{compact_arch(entry.get('arch') or {}, varying)} {pct(entry.get('full_accuracy'))}"
        return text + (f" (#{entry.get('full_rank')})" if with_rank else "")

    rows = [[str(i + 1), cell(full_list[i], False),
             *(cell((p["top_list"] + [None] * len(full_list))[i], True) for p in proxies)]
            for i in range(len(full_list))]
    return Table(["Rank", "Full data", *(proxy_name(p) for p in proxies)], rows)


def compact_arch(arch: Mapping[str, Any], varying: Sequence[str] | None = None) -> str:
    """``d3 w128 relu instancenorm avgpool``, keeping only the keys that vary in the search when known."""
    short = {"depth": lambda v: f"d{v}", "width": lambda v: f"w{v}"}
    keys = [k for k in arch if varying is None or k in varying] or list(arch)
    return " ".join(short.get(k, str)(arch[k]) for k in keys)


def top_k_table(nas: Mapping[str, Any]) -> Table | None:
    """Agreement among the k best architectures (by full-data accuracy), when the results carry it."""
    rows = [[proxy_name(p), str(t.get("k")), pct(t.get("overlap"), 0), num(t.get("spearman")),
             num(t.get("kendall"))] for p in nas.get("proxies") or [] for t in p.get("top_k") or []]
    return Table(["Proxy", "Top k", "Overlap", "Spearman ρ", "Kendall τ"], rows) if rows else None


def candidate_table(nas: Mapping[str, Any]) -> tuple[Table, int]:
    """Per-candidate accuracies (rank in brackets): full data first, then each proxy; best full-data first."""
    full_trials = list((nas.get("full") or {}).get("trials") or [])
    proxies = list(nas.get("proxies") or [])
    lookups = [{plots.arch_key(t.get("arch") or {}): t.get("accuracy") for t in p.get("trials") or []}
               for p in proxies]
    full_trials.sort(key=lambda t: -float(t.get("accuracy") or 0.0))
    columns = [[t.get("accuracy") for t in full_trials]]
    columns += [[lk.get(plots.arch_key(t.get("arch") or {})) for t in full_trials] for lk in lookups]
    ranked = [ranks(col) for col in columns]
    varying = varying_keys(full_trials)
    rows = []
    for i, trial in enumerate(full_trials[:MAX_CANDIDATE_ROWS]):
        cells = [DASH if col[i] is None else f"{pct(col[i])} (#{rk[i]})"
                 for col, rk in zip(columns, ranked, strict=True)]
        rows.append([arch_text(trial.get("arch") or {}, varying), *cells])
    headers = ["Architecture", "Full data", *(proxy_name(p) for p in proxies)]
    return Table(headers, rows), len(full_trials)


def nas_section(results: Mapping[str, Any], writer: PlotWriter) -> Section | None:
    nas = results.get("nas")
    if not nas:
        return None
    blocks: list[Text | Table | Image] = []
    if nas.get("num_candidates"):
        subset = (f", a stratified subset (space seed {nas.get('space_seed', 0)}) of the {nas.get('space')} space"
                  if nas.get("subset") else f" of the {nas.get('space')} space")
        tested = (f"the same {nas['num_test_images']} test images" if nas.get("num_test_images")
                  else "the same test set")
        epochs = (f" Each candidate trains {nas['proxy_epochs']} epochs on a proxy and {nas['full_epochs']} on "
                  f"the full data, tested on {tested}." if nas.get("proxy_epochs") else "")
        blocks.append(Text(f"{nas['num_candidates']} candidate ConvNets{subset}, searched with "
                           f"{nas.get('strategy', 'grid')}.{epochs} Proxies are ranked by Spearman ρ."))
    blocks.append(proxy_table(nas))
    if any(p.get("spearman_ci") for p in nas.get("proxies") or []):
        blocks.append(Text("In brackets: the 95% bootstrap interval of ρ (candidates resampled with "
                           "replacement). Proxies whose intervals overlap widely are not told apart by this "
                           "search: a larger space or more seeds would be needed."))
    if any("top1_regret" in p for p in nas.get("proxies") or []):
        blocks.append(Text("Regret of the pick: full-data accuracy of the best architecture minus that of "
                           "the architecture the proxy ranks first (lower is better; 0 = it finds the "
                           "best), and that architecture's rank on the full data. Search time counts every "
                           "candidate's training at its own cost (cached trials included); FLOPs saved = "
                           "the full search's training FLOPs / the proxy's (3× forward FLOPs per image)."))
    lists = top_lists_table(nas)
    if lists is not None:
        blocks += [Text("Top architectures by the full data and by each proxy, side by side: architecture, its "
                        "full-data accuracy and (for a proxy's list) its full-data rank."), lists]
    top_k = top_k_table(nas)
    if top_k is not None:
        blocks += [Text("Among the k best architectures by full-data accuracy: the share the proxy also puts "
                        "in its top k (overlap), and the rank correlations within them (higher is better)."),
                   top_k]
    if (nas.get("full") or {}).get("trials"):
        table, total = candidate_table(nas)
        blocks.append(Text(f"Candidate architectures ({nas.get('strategy', 'search')}, {total} candidates"
                           + (f"; the {MAX_CANDIDATE_ROWS} best by full-data accuracy shown" if
                              total > MAX_CANDIDATE_ROWS else "") + "), accuracy and rank (#1 = best):"))
        blocks.append(table)
    if nas.get("proxies"):
        blocks.append(writer.save("nas", plots.nas_figure(nas), "Proxy accuracy against full-data accuracy",
                                  "Each dot is a candidate architecture; a good proxy puts them on a rising "
                                  "line. The star is the architecture the proxy would pick."))
    return section("nas", blocks)


# ========================================================================================== synthetic images
def synthetic_entries(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """One entry per (method, ipc): the lowest seed, to keep the report small."""
    chosen: dict[tuple[str, Any], Mapping[str, Any]] = {}
    entries = results.get("synthetic") or []
    for entry in sorted(entries, key=lambda e: (e.get("seed") is None, e.get("seed") or 0)):
        if entry.get("path"):
            chosen.setdefault((str(entry.get("method")), entry.get("ipc")), entry)
    return list(chosen.values())


def synthetic_block(entry: Mapping[str, Any], run_dir: Path, writer: PlotWriter) -> Text | Image:
    method, ipc, seed = entry.get("method", "?"), entry.get("ipc"), entry.get("seed")
    label = f"{method}, {ipc} images per class, seed {seed}"
    try:
        synthetic = SyntheticSet.load(run_dir / str(entry["path"]))
    except DDError as err:
        return Text(f"{label}: cannot show the images ({err})")
    fig = plots.synthetic_grid_figure(synthetic, title=f"{method}, ipc {ipc}")
    return writer.save(f"synthetic-{method}-ipc{ipc}-seed{seed}", fig, f"Synthetic images of {label}",
                       f"{label} ({entry['path']}).")


def synthetic_section(results: Mapping[str, Any], run_dir: Path, writer: PlotWriter) -> Section | None:
    entries = synthetic_entries(results)
    if not entries:
        return None
    return section("synthetic", [synthetic_block(e, run_dir, writer) for e in entries])


# ======================================================================================= metrics, provenance
def metrics_section(results: Mapping[str, Any]) -> Section | None:
    metrics = results.get("metrics")
    if not metrics:
        return None
    rows = [[name, str((m or {}).get("direction") or DASH), str((m or {}).get("unit") or DASH)]
            for name, m in metrics.items()]
    return section("metrics", [Table(["Metric", "Better when", "Unit"], rows)])


def flatten(value: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """(dotted key, short text) pairs of a nested JSON value."""
    if isinstance(value, Mapping) and value and depth < 3:
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
        return
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = DASH if value in (None, "") else str(value)
    in_seconds = any(part.endswith("seconds") for part in prefix.split(".")[-2:])
    if in_seconds and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = duration(value)
    yield prefix, text if len(text) <= 200 else text[:197] + "..."


def provenance_section(results: Mapping[str, Any], manifest: Mapping[str, Any]) -> Section | None:
    run = results.get("run") or {}
    if not run and not manifest:
        return None
    blocks: list[Text | Table | Image] = []
    if run:
        blocks.append(Table(["Run", "Value"], [list(kv) for kv in flatten(run)]))
    if manifest:
        git = manifest.get("git") or {}
        versions = manifest.get("versions") or {}
        machine = manifest.get("machine") or {}
        key_rows = [["command", str(manifest.get("command") or DASH)],
                    ["git commit", str(git.get("commit") or DASH) + (" (uncommitted changes)" if git.get("dirty")
                                                                    else "")],
                    ["ddeval / torch", f"{versions.get('ddeval', DASH)} / {versions.get('torch', DASH)}"],
                    ["python", str(manifest.get("python") or DASH)],
                    ["machine", f"{machine.get('processor') or DASH}, {machine.get('cpu_count') or DASH} CPUs, "
                                f"device {machine.get('device') or DASH}"]]
        blocks.append(Table(["Key facts", "Value"], key_rows))
        blocks.append(Table(["Manifest", "Value"], [list(kv) for kv in flatten(manifest)],
                            folded="Everything recorded: package versions, machine, seeds, timings"))
    else:
        blocks.append(Text("No provenance in results.json and no manifest.json in the run directory: package "
                           "versions, git commit and machine are unknown."))
    config = results.get("config")
    if config:
        blocks.append(Text("Resolved suite configuration (every value the run used, defaults included):"))
        blocks.append(Table(["Config", "Value"], [list(kv) for kv in flatten(config)],
                            folded="Show the configuration"))
    return section("provenance", blocks)


# ============================================================================================ Markdown
def md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(table: Table) -> str:
    lines = ["| " + " | ".join(md_cell(h) for h in table.headers) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def md_block(block: Text | Table | Image) -> str:
    if isinstance(block, Table):
        return md_table(block)
    if isinstance(block, Image):
        return f"![{md_cell(block.alt)}]({block.path})" + (f"\n\n*{block.caption}*" if block.caption else "")
    return block.text


def to_markdown(title: str, lead: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}", lead]
    for s in sections:
        parts += [f"## {s.title}", f"> {s.explain}", *(md_block(b) for b in s.blocks)]
    return "\n\n".join(parts) + "\n"


# ============================================================================================ HTML
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:64rem;margin:2rem auto;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
nav ul{columns:2;font-size:.95rem}
table{border-collapse:collapse;margin:.7rem 0;font-size:.9rem}
th,td{border:1px solid #d0d0d0;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f1f3f5}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.explain{background:#f4f8fc;border-left:4px solid #6b9bd1;padding:.45rem .8rem;color:#333}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
section#synthetic figure{display:inline-block;vertical-align:top;margin:.6rem 1.2rem .6rem 0;max-width:100%}
details{margin:.6rem 0}summary{cursor:pointer;color:#2a5d9f}
"""
_NUMERIC = re.compile(r"^[+\-−]?\d")


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(html_cell(c) for c in row) + "</tr>" for row in table.rows)
    page = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if table.folded:
        return f"<details><summary>{html.escape(table.folded)}</summary>{page}</details>"
    return page


def html_cell(text: str) -> str:
    cls = ' class="num"' if _NUMERIC.match(str(text)) else ""
    return f"<td{cls}>{html.escape(str(text))}</td>"


def html_image(image: Image, run_dir: Path) -> str:
    if not image.embed:
        return (f"<p>{html.escape(image.caption or image.alt)} Not embedded, to keep this file small: "
                f"see {html.escape(image.path)} in the run directory.</p>")
    data = base64.b64encode((run_dir / image.path).read_bytes()).decode("ascii")
    caption = f"<figcaption>{html.escape(image.caption)}</figcaption>" if image.caption else ""
    img = f'<img src="data:image/png;base64,{data}" alt="{html.escape(image.alt)}">'
    return f"<figure>{img}{caption}</figure>"


def html_block(block: Text | Table | Image, run_dir: Path) -> str:
    if isinstance(block, Table):
        return html_table(block)
    if isinstance(block, Image):
        return html_image(block, run_dir)
    return f"<p>{html.escape(block.text)}</p>"


def html_section(section: Section, run_dir: Path) -> str:
    body = "\n".join(html_block(b, run_dir) for b in section.blocks)
    return (f'<section id="{html.escape(section.key)}"><h2>{html.escape(section.title)}</h2>\n'
            f'<p class="explain">{html.escape(section.explain)}</p>\n{body}</section>')


def to_html(title: str, lead: str, sections: Sequence[Section], run_dir: Path) -> str:
    toc = "".join(f'<li><a href="#{html.escape(s.key)}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(html_section(s, run_dir) for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(lead)}</p>\n"
            f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>\n{body}\n</body></html>\n")

"""Report figures, built with matplotlib's object API only (no pyplot, no global state).

Every function takes plain data from ``results.json`` (or a :class:`SyntheticSet`) and returns a
:class:`~matplotlib.figure.Figure` with an Agg canvas, so figures can be made in threads and tests without a
display. :func:`save_png` writes one atomically at a modest dpi, small enough to embed in a mailed HTML
report.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from distillers.io import atomic_write_bytes
from distillers.synthetic import SyntheticSet

DPI = 100
BASELINES = ("random", "noise")
ROC_MIN_FPR = 1e-5
GRID_MAX_CLASSES = 20
GRID_MAX_PER_CLASS = 10
GRID_CELL_PIXELS = 48  # about this many output pixels per synthetic image side
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_BASELINE_STYLE = {"random": {"color": "#7f7f7f", "hatch": "//"},
                   "noise": {"color": "#d9d9d9", "hatch": ".."}}


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches bound to its own Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, *, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (never a half-written file)."""
    return atomic_write_bytes(path, png_bytes(fig, dpi=dpi))


def color_for(index: int) -> str:
    return _COLORS[index % len(_COLORS)]


def no_data_figure(message: str) -> Figure:
    """A small placeholder figure saying why there is nothing to plot."""
    fig = new_figure(4, 1.2)
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return fig


# ---------------------------------------------------------------------------------------------- accuracy
def series_label(row: Mapping[str, Any], many_networks: bool) -> str:
    method = str(row.get("method", "?"))
    return f"{method} ({row.get('network')})" if many_networks else method


def _series(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    """Group rows into bar series: label -> ipc -> row; distillation methods first, baselines last."""
    many = len({r.get("network") for r in rows}) > 1
    series: dict[str, dict[int, Mapping[str, Any]]] = {}
    ordered = [r for r in rows if r.get("method") not in BASELINES] + \
              [r for b in BASELINES for r in rows if r.get("method") == b]
    for row in ordered:
        series.setdefault(series_label(row, many), {})[int(row["ipc"])] = row
    return series


def _bar_style(label: str, index: int) -> dict[str, Any]:
    base = label.split(" (")[0]
    style = _BASELINE_STYLE.get(base)
    if style:
        return {"color": style["color"], "hatch": style["hatch"], "edgecolor": "#404040"}
    return {"color": color_for(index), "edgecolor": "none"}


def accuracy_figure(accuracy: Mapping[str, Any], *, num_classes: int | None = None) -> Figure:
    """Grouped bars of mean test accuracy (%) per method at each ipc, error bars = std over seeds.

    The random-real-subset baseline (grey, hatched) and the noise floor (light, dotted) are bars beside the
    methods; full-data accuracy is a dashed line with its ±std band, chance level a dotted line.
    """
    rows = [r for r in accuracy.get("rows") or []
            if r.get("accuracy_mean") is not None and r.get("ipc") is not None]
    if not rows:
        return no_data_figure("no accuracy rows")
    series = _series(rows)
    ipcs = sorted({int(r["ipc"]) for r in rows})
    fig = new_figure(max(5.0, 1.2 + 0.45 * len(ipcs) * (len(series) + 1)), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for i, (label, by_ipc) in enumerate(series.items()):
        xs = [k + (i - (len(series) - 1) / 2) * width for k, ipc in enumerate(ipcs) if ipc in by_ipc]
        present = [by_ipc[ipc] for ipc in ipcs if ipc in by_ipc]
        means = [100 * float(r["accuracy_mean"]) for r in present]
        stds = [100 * float(r.get("accuracy_std") or 0.0) for r in present]
        ax.bar(xs, means, width * 0.92, yerr=stds, capsize=2, label=label, **_bar_style(label, i))
    _reference_lines(ax, accuracy.get("full_data"), num_classes)
    ax.set_xticks(range(len(ipcs)), [f"{ipc} img/class" for ipc in ipcs])
    ax.set_xlabel("images per class (ipc)")
    ax.set_ylabel("test accuracy (%)  ↑ better")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    bars_first = sorted(range(len(labels)), key=lambda i: isinstance(handles[i], Line2D))
    ax.legend([handles[i] for i in bars_first], [labels[i] for i in bars_first], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle("Accuracy of a network trained on the synthetic set")
    return fig


def _reference_lines(ax: Any, full: Mapping[str, Any] | None, num_classes: int | None) -> None:
    if full and full.get("accuracy_mean") is not None:
        mean, std = 100 * float(full["accuracy_mean"]), 100 * float(full.get("accuracy_std") or 0.0)
        ax.axhline(mean, color="black", linestyle="--", linewidth=1.2, label=f"full data ({mean:.1f}%)")
        if std > 0:
            ax.axhspan(mean - std, mean + std, color="black", alpha=0.08, linewidth=0)
    if num_classes:
        chance = 100.0 / num_classes
        ax.axhline(chance, color="#999999", linestyle=":", linewidth=1, label=f"chance ({chance:.1f}%)")


# ---------------------------------------------------------------------------------------------- privacy
def roc_label(row: Mapping[str, Any]) -> str:
    target = str(row.get("target", "?"))
    ipc = row.get("ipc")
    name = target if ipc is None else f"{target} (ipc {ipc})"
    auc = row.get("auc")
    return name if auc is None else f"{name}, AUC {float(auc):.3f}"


def _roc_style(target: str, index: int) -> dict[str, Any]:
    if target == "full-data":
        return {"color": "black", "linestyle": "-", "linewidth": 1.8}
    if target == "random":
        return {"color": "#7f7f7f", "linestyle": "--", "linewidth": 1.4}
    return {"color": color_for(index), "linestyle": "-", "linewidth": 1.4}


def roc_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Membership-inference ROC curves on log-log axes (1e-5 .. 1), one per privacy target, with chance."""
    curves = [r for r in rows if isinstance(r.get("roc"), Mapping) and r["roc"].get("fpr")]
    fig = new_figure(5.8, 4.4)
    ax = fig.add_subplot()
    grid = np.logspace(np.log10(ROC_MIN_FPR), 0, 50)
    ax.plot(grid, grid, color="#999999", linestyle=":", linewidth=1, label="chance (random guess)")
    for i, row in enumerate(curves):
        fpr = np.clip(np.asarray(row["roc"]["fpr"], dtype=float), ROC_MIN_FPR, 1.0)
        tpr = np.clip(np.asarray(row["roc"]["tpr"], dtype=float), ROC_MIN_FPR, 1.0)
        # Steps: between two ROC vertices the TPR reachable at a given FPR is that of the left vertex.
        ax.plot(fpr, tpr, label=roc_label(row), drawstyle="steps-post", **_roc_style(str(row.get("target")), i))
    for x, name in ((1e-3, "0.1% FPR"), (1e-2, "1% FPR")):
        ax.axvline(x, color="#cccccc", linewidth=0.8, zorder=0)
        ax.text(x * 1.2, 3e-5, name, rotation=90, fontsize=7, color="#888888")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(ROC_MIN_FPR, 1)
    ax.set_ylim(ROC_MIN_FPR, 1)
    ax.set_xlabel("false-positive rate (non-members flagged)")
    ax.set_ylabel("true-positive rate (members found)")
    fig.suptitle("Membership inference ROC (closer to the diagonal = more private)", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.2, which="major")
    ax.set_aspect("equal")
    return fig


def frontier_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Privacy-utility frontier: accuracy vs TPR at 0.1% FPR (1% where unresolved), and vs ε for DP targets."""
    fig = new_figure(9.0, 3.8)
    left, right = fig.subplots(1, 2)
    points = [r for r in rows if r.get("target_accuracy") is not None]
    use_low = all(r.get("resolves_0p1pct_fpr") for r in points) and bool(points)
    key = "tpr_at_0p1pct_fpr" if use_low else "tpr_at_1pct_fpr"
    for i, r in enumerate(points):
        x = max(float(r.get(key) or 0.0), ROC_MIN_FPR)
        y = 100 * float(r["target_accuracy"])
        style = _roc_style(str(r.get("target")), i)
        left.scatter([x], [y], color=style["color"], s=30, zorder=3)
        left.annotate(_short_label(r), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set_xscale("log")
    left.set_xlim(ROC_MIN_FPR, 1.5)
    left.axvline(0.001 if use_low else 0.01, color="#999999", linestyle=":", linewidth=1)
    left.set_xlabel(f"attack TPR at {'0.1' if use_low else '1'}% FPR (dotted: chance)")
    left.set_ylabel("test accuracy (%)")
    left.set_title("accuracy vs membership leakage", fontsize=9)
    left.grid(alpha=0.2)
    dp = [r for r in points if isinstance(r.get("dp"), Mapping) and r["dp"].get("epsilon") is not None]
    series: dict[str, list[tuple[float, float]]] = {}
    for r in dp:
        name = "DP-SGD" if str(r.get("target")).startswith("dp-sgd") else str(r.get("target"))
        series.setdefault(name, []).append((float(r["dp"]["epsilon"]), 100 * float(r["target_accuracy"])))
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        right.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color_for(i), label=name)
    right.set_xlabel("accountant ε (δ as in the table)")
    right.set_ylabel("test accuracy (%)")
    right.set_title("accuracy vs DP budget", fontsize=9)
    right.grid(alpha=0.2)
    if series:
        right.set_xscale("log")
        right.legend(fontsize=7)
    else:
        right.text(0.5, 0.5, "no DP targets in this run", ha="center", va="center", transform=right.transAxes,
                   fontsize=8, color="#777777")
    fig.suptitle("Privacy-utility frontier", fontsize=10)
    return fig


def _short_label(row: Mapping[str, Any]) -> str:
    ipc = row.get("ipc")
    return str(row.get("target")) + ("" if ipc is None else f" ({ipc})")


# ---------------------------------------------------------------------------------------------- NAS
def arch_key(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True, default=str)


def paired_accuracies(full_trials: Sequence[Mapping[str, Any]],
                      proxy_trials: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """(proxy accuracies, full accuracies) for the architectures present in both trial lists."""
    full = {arch_key(t.get("arch") or {}): t.get("accuracy") for t in full_trials}
    xs, ys = [], []
    for trial in proxy_trials:
        y = full.get(arch_key(trial.get("arch") or {}))
        if y is not None and trial.get("accuracy") is not None:
            xs.append(float(trial["accuracy"]))
            ys.append(float(y))
    return xs, ys


def proxy_label(proxy: Mapping[str, Any]) -> str:
    name = str(proxy.get("proxy", "?"))
    if proxy.get("ipc") is not None:
        name += f" (ipc {proxy['ipc']})"
    return f"{name}: ρ = {_num(proxy.get('spearman'))}, τ = {_num(proxy.get('kendall'))}"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def nas_figure(nas: Mapping[str, Any]) -> Figure:
    """Proxy accuracy vs full-data accuracy of each candidate, one panel per proxy (ρ, τ in the legend)."""
    proxies = list(nas.get("proxies") or [])
    if not proxies:
        return no_data_figure("no NAS proxies")
    full_trials = (nas.get("full") or {}).get("trials") or []
    cols = min(3, len(proxies))
    nrows = -(-len(proxies) // cols)
    fig = new_figure(3.4 * cols, 3.2 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for i, proxy in enumerate(proxies):
        _nas_panel(axes[i], proxy, full_trials, color_for(i))
    for ax in axes[len(proxies):]:
        ax.set_visible(False)
    fig.suptitle("Does the proxy rank architectures like the full data does?")
    return fig


def _nas_panel(ax: Any, proxy: Mapping[str, Any], full_trials: Sequence[Mapping[str, Any]],
               color: str) -> None:
    xs, ys = paired_accuracies(full_trials, proxy.get("trials") or [])
    xs_pct, ys_pct = [100 * x for x in xs], [100 * y for y in ys]
    ax.scatter(xs_pct, ys_pct, s=18, color=color, alpha=0.8, label=proxy_label(proxy))
    if xs:
        best = int(np.argmax(xs))
        ax.scatter([xs_pct[best]], [ys_pct[best]], s=90, marker="*", color="black", label="proxy's pick")
    ax.set_xlabel("accuracy with the proxy (%)")
    ax.set_ylabel("accuracy with full data (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)


# ---------------------------------------------------------------------------------------------- images
def grid_pixels(synthetic: SyntheticSet, *, max_classes: int = GRID_MAX_CLASSES,
                max_per_class: int = GRID_MAX_PER_CLASS) -> tuple[np.ndarray, list[str]]:
    """A montage ``[rows*H, cols*W(, 3)]`` in [0, 1]: one row per class, its images left to right (with one
    image per class: one row, a class per column).

    Empty cells (a class with fewer images) stay white; 1-pixel white gaps separate the images.
    """
    pixels = synthetic.pixels().numpy()
    labels = synthetic.hard_labels.numpy()
    classes = list(synthetic.classes)[:max_classes]
    per_class = [np.flatnonzero(labels == c)[:max_per_class] for c in range(len(classes))]
    cols = max([len(idx) for idx in per_class] + [1])
    c, h, w = pixels.shape[1:]
    if cols == 1:  # one image per class: a single row, one class per column, reads better than a tall strip
        canvas = np.ones((h, (w + 1) * len(classes) - 1, c), dtype=np.float32)
        for col, idx in enumerate(per_class):
            if len(idx):
                canvas[:, col * (w + 1):col * (w + 1) + w] = pixels[idx[0]].transpose(1, 2, 0)
        return (canvas[..., 0] if c == 1 else canvas[..., :3]), classes
    canvas = np.ones(((h + 1) * len(classes) - 1, (w + 1) * cols - 1, c), dtype=np.float32)
    for row, idx in enumerate(per_class):
        top = row * (h + 1)
        for col, i in enumerate(idx):
            left = col * (w + 1)
            canvas[top:top + h, left:left + w] = pixels[i].transpose(1, 2, 0)
    return (canvas[..., 0] if c == 1 else canvas[..., :3]), classes


def synthetic_grid_figure(synthetic: SyntheticSet, *, title: str | None = None,
                          max_classes: int = GRID_MAX_CLASSES,
                          max_per_class: int = GRID_MAX_PER_CLASS) -> Figure:
    """Synthetic images as a grid: rows = classes (named on the left), columns = images of that class."""
    canvas, classes = grid_pixels(synthetic, max_classes=max_classes, max_per_class=max_per_class)
    h, w = synthetic.images.shape[2], synthetic.images.shape[3]
    rows = len(classes)
    one_row = canvas.shape[0] == h and rows > 1
    shown = f" (first {rows} of {synthetic.num_classes} classes)" if rows < synthetic.num_classes else ""
    title = (title or f"{synthetic.method}: synthetic images") + shown
    scale = max(1, round(GRID_CELL_PIXELS / h)) / DPI  # inches per image pixel: integer upscaling at DPI
    label_width = 0.3 + 0.07 * max(len(c) for c in classes)
    if one_row:
        scale = max(scale, (0.3 + 0.07 * max(len(c) for c in classes)) / (w + 1))  # room for each class name
        label_width = 0.2
    width = max(label_width + scale * canvas.shape[1], 0.3 + 0.07 * len(title))
    fig = new_figure(width, 0.45 + scale * canvas.shape[0] + (0.3 if one_row else 0.0))
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    if one_row:
        ax.set_xticks([k * (w + 1) + (w - 1) / 2 for k in range(rows)], classes, fontsize=8)
        ax.set_yticks([])
        ax.tick_params(bottom=False)
    else:
        ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(rows)], classes, fontsize=8)
        ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.tick_params(left=False)
    ax.set_title(title, fontsize=9)
    return fig


# -------------------------------------------------------------------------------------------- comparison
def comparison_figure(rows: Sequence[tuple[str, float, float, float, float]], name_a: str,
                      name_b: str) -> Figure:
    """Accuracy (%) of run A and run B side by side, one pair of horizontal bars per row label.

    ``rows``: (label, mean A, mean B, std A, std B) as fractions.
    """
    if not rows:
        return no_data_figure("no accuracy in common")
    fig = new_figure(7.0, 0.9 + 0.42 * len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    styles: tuple[tuple[str, int, dict[str, Any]], ...] = ((name_a, 1, {"color": "#9aa5b1", "hatch": "//"}),
                                                           (name_b, 2, {"color": color_for(0)}))
    for offset, (name, index, style) in enumerate(styles):
        values = [100 * float(r[index]) for r in rows]
        errors = [100 * float(r[index + 2]) for r in rows]
        ax.barh([y + (offset - 0.5) * 0.38 for y in ys], values, 0.36, xerr=errors, capsize=2, label=name,
                **style)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("test accuracy (%)  → better")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Accuracy: run A against run B")
    return fig

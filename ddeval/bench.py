"""``ddeval bench``: the fp32 eager baseline and the fast path side by side, measured against the hardware.

One run measures, each in a fresh worker process (so that peak memory belongs to one measurement and no
compiled code or allocator state leaks between them):

* the machine's matrix-multiply peak in fp32 and bf16 (GFLOP/s), the yardstick for everything else;
* evaluation training of the standard ConvNet-3 (width 128, instance norm) on 28x28 grey images: images per
  second through :func:`distillers.protocol.train` at batch 256 and on a 100-image (ipc 10) set, baseline and
  fast path in alternating repeats, with achieved GFLOP/s and the fraction of the matching peak;
* one distillation iteration of every registered method (coreset methods: the whole selection), baseline and
  fast path, seconds and peak memory, FLOPs counted on the baseline;
* scaling of the fast path with ipc (1, 10, 50) and with the real-set size, plotted.

Data are random MNIST-shaped tensors (timing does not depend on the pixels), so the benchmark needs no files.
"Long-run" measurements (evaluation training, DM, DC, DSA) take the path a full-length run takes, compiled
where :mod:`distillers.fastpath` compiles long runs, after one warm-up call that pays the compilation.
Results go to ``<out>/<device kind>/``: ``results.json``, ``README.md`` and ``scaling.png``.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillers.config import check, config_dict
from distillers.errors import DDError

LONG_RUN_METHODS = ("dm", "dc", "dsa")  # iterative: timed per iteration, on the compiled long-run path


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``quick`` shrinks every size so that the whole benchmark runs in about a minute
    (for tests and smoke checks; its figures are not meaningful)."""

    device: str = "cpu"
    quick: bool = False
    repeats: int = 3
    method_repeats: int = 2
    methods: tuple[str, ...] = ()  # empty: every registered method
    ipc: int = 10
    real_size: int = 5000
    scaling: bool = True
    scaling_ipc: tuple[int, ...] = (1, 10, 50)
    scaling_sizes: tuple[int, ...] = (1000, 2500, 5000)
    threads: int | None = None  # torch threads per worker (default: torch's own choice)
    budgets: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "dm": {"iterations": 5, "batch_real": 256},
        "dc": {"iterations": 1, "outer_loop": 2, "inner_loop": 5, "batch_real": 256},
        "dsa": {"iterations": 1, "outer_loop": 2, "inner_loop": 5, "batch_real": 256},
        "herding": {"embed_epochs": 3}, "kcenter": {"embed_epochs": 3}, "kmeans": {"embed_epochs": 3},
    })

    def __post_init__(self) -> None:
        check(self.repeats >= 1 and self.method_repeats >= 1, "bench repeats must be at least 1.")
        check(self.ipc >= 1 and self.real_size >= 10 * self.ipc,
              f"bench needs ipc >= 1 and real_size >= 10 * ipc, got ipc={self.ipc}, real_size={self.real_size}.")
        check(all(k >= 1 for k in self.scaling_ipc) and all(n >= 10 for n in self.scaling_sizes),
              "scaling_ipc must be positive and scaling_sizes at least 10 images.")
        check(self.threads is None or self.threads >= 1, f"threads must be positive, got {self.threads}.")


# ------------------------------------------------------------------------------------------ the workers
def _setup(task: dict[str, Any]) -> Any:
    import torch

    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    if task.get("long_run"):
        import distillers.fastpath as fastpath

        fastpath.COMPILE_MIN_STEPS = 0  # this worker measures the path of a full-length run
    return torch


def _rss_mb() -> float:
    """Peak resident memory of this worker so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def _memory(torch: Any, device: Any, before_mb: float) -> dict[str, float]:
    out = {"peak_rss_mb": round(_rss_mb(), 1), "rss_before_mb": round(before_mb, 1)}
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _fake_data(n: int, classes: int, size: int, seed: int) -> Any:
    import torch

    from distillers.data import LabeledData

    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, size, size), generator=g)
    y = torch.arange(classes).repeat_interleave(math.ceil(n / classes))[:n]
    return LabeledData(x, y, classes=tuple(str(c) for c in range(classes)), mean=(0.0,), std=(1.0,),
                       name="mnist")


def _count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of ``fn()`` as counted by torch's FlopCounterMode (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _peak_task(task: dict[str, Any]) -> dict[str, Any]:
    torch = _setup(task)
    from distillers.fastpath import bf16_supported
    from distillers.protocol import _sync, resolve_device

    device = resolve_device(task["device"])
    n = task["n"]
    out: dict[str, float | None] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not bf16_supported(device):
            out[f"{name}_gflops"] = None
            continue
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        best = 0.0
        for _ in range(task["rounds"]):
            torch.mm(a, b)
            _sync(device)
            start = time.perf_counter()
            for _ in range(task["reps"]):
                torch.mm(a, b)
            _sync(device)
            best = max(best, 2 * n**3 * task["reps"] / (time.perf_counter() - start) / 1e9)
        out[f"{name}_gflops"] = round(best, 1)
    return out


def _train_task(task: dict[str, Any]) -> dict[str, Any]:
    torch = _setup(task)
    from distillers.networks import create
    from distillers.protocol import TrainConfig, resolve_device, train

    device = resolve_device(task["device"])
    data = _fake_data(task["images"], 10, task["size"], seed=0)
    before = _rss_mb()

    def fresh() -> Any:
        return create("convnet", channels=1, num_classes=10, image_size=(task["size"], task["size"]), seed=0)

    cfg = TrainConfig(epochs=task["epochs"], batch_size=task["batch"], fast=task["fast"])
    flops = None
    if not task["fast"]:  # FLOPs are the same on both paths; count one epoch of the baseline
        flops = _count_flops(lambda: train(fresh(), data, TrainConfig(epochs=1, batch_size=task["batch"],
                                                                       fast=False),
                                           generator=torch.Generator().manual_seed(0), device=device))
    train(fresh(), data, TrainConfig(epochs=task["warmup_epochs"], batch_size=task["batch"], fast=task["fast"]),
          generator=torch.Generator().manual_seed(0), device=device)  # warm-up: compilation, allocator
    stats = train(fresh(), data, cfg, generator=torch.Generator().manual_seed(1), device=device)
    images = task["images"] * task["epochs"]
    return {"images_per_second": images / stats["train_seconds"], "seconds": stats["train_seconds"],
            "path": stats["fast"], "flops_per_epoch": flops, **_memory(torch, device, before)}


def _method_task(task: dict[str, Any]) -> dict[str, Any]:
    torch = _setup(task)
    import distillers
    from distillers.methods import config_keys
    from distillers.protocol import resolve_device

    device = resolve_device(task["device"])
    data = _fake_data(task["real_size"], 10, task["size"], seed=0)
    before = _rss_mb()
    cfg = dict(task["budget"])
    if "fast" in config_keys(task["method"]):
        cfg["fast"] = task["fast"]
    long_run = task["method"] in LONG_RUN_METHODS
    flops = None
    if long_run:  # one warm-up iteration (compilation, allocator); on the baseline it also counts the FLOPs
        one = distillers.create(task["method"], **{**cfg, "iterations": 1})

        def warm_up() -> Any:
            return one.distill(data, task["ipc"], seed=0, device=device, progress=False)

        if task["fast"]:
            warm_up()
        else:
            flops = _count_flops(warm_up)
    syn = distillers.create(task["method"], **cfg).distill(data, task["ipc"], seed=1, device=device,
                                                           progress=False)
    seconds = syn.meta.get("seconds_per_iteration", syn.meta["distill_seconds"])
    return {"seconds": seconds, "per": "iteration" if long_run else "selection", "path": syn.meta.get("fast"),
            "flops": flops, **_memory(torch, device, before)}


_TASKS = {"peak": _peak_task, "train": _train_task, "method": _method_task}


def _worker(task: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": True, **_TASKS[task["kind"]](task)}
    except DDError as err:
        return {"ok": False, "error": str(err)}


def run_isolated(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh spawned process; a failure becomes ``{"ok": False, "error": ...}``."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(_worker, task).result()
        except concurrent.futures.process.BrokenProcessPool as err:
            return {"ok": False, "error": f"worker died ({err}); out of memory?"}


# ------------------------------------------------------------------------------------------ the benchmark
def _sizes(cfg: BenchConfig) -> dict[str, Any]:
    if cfg.quick:
        return {"size": 28, "peak_n": 256, "peak_reps": 3, "peak_rounds": 2, "train_batches": (64, 20),
                "train_epochs": 3, "warmup_epochs": 1, "real_size": 200, "ipc": 2}
    return {"size": 28, "peak_n": 2048, "peak_reps": 10, "peak_rounds": 3, "train_batches": (256, 100),
            "train_epochs": None, "warmup_epochs": 2, "real_size": cfg.real_size, "ipc": cfg.ipc}


def _budget(cfg: BenchConfig, method: str) -> dict[str, Any]:
    budget = dict(cfg.budgets.get(method, {}))
    if cfg.quick:
        if method in ("dm",):
            budget.update(iterations=2, batch_real=16)
        if method in ("dc", "dsa"):
            budget.update(iterations=1, outer_loop=2, inner_loop=1, batch_real=16)
        if method in ("herding", "kcenter", "kmeans"):
            budget.update(embed_epochs=1)
    return budget


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def run_bench(cfg: BenchConfig, *, out: str | Path = "reports/benchmarks",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark described by ``cfg`` and write ``<out>/<device kind>/``; returns the results."""
    import distillers
    from distillers.protocol import resolve_device

    device = resolve_device(cfg.device)
    sizes = _sizes(cfg)
    methods = list(cfg.methods) or list(distillers.available())
    for name in methods:
        distillers.METHODS.get(name)  # unknown names fail before any work
    base = {"device": str(device), "threads": cfg.threads}
    started = time.time()
    results: dict[str, Any] = {"schema_version": 1, "config": config_dict(cfg), "machine": _machine(device),
                               "sizes": sizes, "command": os.environ.get("DDEVAL_COMMAND", "ddeval bench")}

    log("matrix-multiply peak ...")
    peak = run_isolated({**base, "kind": "peak", "n": sizes["peak_n"], "reps": sizes["peak_reps"],
                         "rounds": sizes["peak_rounds"]})
    results["peak"] = peak

    results["training"] = []
    for batch in sizes["train_batches"]:
        images = batch if batch < 256 else 2 * batch  # a 100-image set is one batch; batch 256 two per epoch
        epochs = sizes["train_epochs"] or (30 if batch < 256 else 8)
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for r in range(cfg.repeats):
            for fast in (False, True):  # alternate so that drifting machine load hits both paths alike
                log(f"evaluation training batch {batch} ({'fast' if fast else 'fp32 eager'}, repeat {r + 1})")
                runs[fast].append(run_isolated({**base, "kind": "train", "long_run": True, "fast": fast,
                                                "images": images, "batch": batch, "epochs": epochs,
                                                "warmup_epochs": sizes["warmup_epochs"], "size": sizes["size"]}))
        results["training"].append(_training_row(batch, images, runs, peak))

    results["methods"] = []
    for name in methods:
        runs = {False: [], True: []}
        repeats = cfg.method_repeats if name in LONG_RUN_METHODS else 1
        for r in range(repeats):
            for fast in (False, True):
                log(f"method {name} ipc {sizes['ipc']} ({'fast' if fast else 'fp32 eager'}, repeat {r + 1})")
                runs[fast].append(run_isolated({**base, "kind": "method", "method": name, "fast": fast,
                                                "long_run": name in LONG_RUN_METHODS, "ipc": sizes["ipc"],
                                                "real_size": sizes["real_size"], "size": sizes["size"],
                                                "budget": _budget(cfg, name)}))
        results["methods"].append(_method_row(name, runs, peak, _budget(cfg, name)))

    results["scaling"] = []
    if cfg.scaling:
        ipcs = (1, 2) if cfg.quick else cfg.scaling_ipc
        real_sizes = (100, 200) if cfg.quick else cfg.scaling_sizes
        points = [(k, sizes["real_size"]) for k in ipcs] + [(sizes["ipc"], n) for n in real_sizes]
        for name in methods:
            for ipc, n in dict.fromkeys(points):
                if n < 10 * ipc:
                    continue
                log(f"scaling {name} ipc {ipc} real {n}")
                res = run_isolated({**base, "kind": "method", "method": name, "fast": True,
                                    "long_run": name in LONG_RUN_METHODS, "ipc": ipc, "real_size": n,
                                    "size": sizes["size"], "budget": _budget(cfg, name)})
                results["scaling"].append({"method": name, "ipc": ipc, "real_size": n, **res})
    results["wall_seconds"] = round(time.time() - started, 1)
    write_bench(results, Path(out) / device.type)
    return results


def _ok(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    good = [r for r in runs if r.get("ok")]
    if not good:
        errors = "; ".join(sorted({str(r.get("error")) for r in runs}))
        raise DDError(f"Every benchmark repeat failed: {errors}")
    return good


def _training_row(batch: int, images: int, runs: dict[bool, list[dict[str, Any]]],
                  peak: dict[str, Any]) -> dict[str, Any]:
    base, fast = _ok(runs[False]), _ok(runs[True])
    flops_per_image = base[0]["flops_per_epoch"] / images
    row: dict[str, Any] = {"workload": f"ConvNet-3 w128, 28x28, batch {batch}, {images} images", "batch": batch}
    for label, good in (("baseline", base), ("fast", fast)):
        ips = _median([r["images_per_second"] for r in good])
        gflops = ips * flops_per_image / 1e9
        yardstick = peak.get("bf16_gflops") if label == "fast" and "bf16" in good[0]["path"] else peak.get(
            "fp32_gflops")
        row[label] = {"images_per_second": round(ips, 1), "all_images_per_second":
                      [round(r["images_per_second"], 1) for r in good], "path": good[0]["path"],
                      "achieved_gflops": round(gflops, 1),
                      "fraction_of_peak": round(gflops / yardstick, 3) if yardstick else None,
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in good)}
    row["speedup"] = round(row["fast"]["images_per_second"] / row["baseline"]["images_per_second"], 2)
    return row


def _method_row(name: str, runs: dict[bool, list[dict[str, Any]]], peak: dict[str, Any],
                budget: dict[str, Any]) -> dict[str, Any]:
    base, fast = _ok(runs[False]), _ok(runs[True])
    flops = next((r["flops"] for r in base if r.get("flops")), None)
    row: dict[str, Any] = {"method": name, "per": base[0]["per"], "budget": budget}
    for label, good in (("baseline", base), ("fast", fast)):
        seconds = _median([r["seconds"] for r in good])
        gflops = flops / seconds / 1e9 if flops else None
        path = good[0]["path"] or "n/a"
        yardstick = peak.get("bf16_gflops") if "bf16" in path else peak.get("fp32_gflops")
        row[label] = {"seconds": round(seconds, 4), "all_seconds": [round(r["seconds"], 4) for r in good],
                      "path": path, "achieved_gflops": round(gflops, 1) if gflops else None,
                      "fraction_of_peak": round(gflops / yardstick, 3) if gflops and yardstick else None,
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in good)}
    b, f = row["baseline"]["seconds"], row["fast"]["seconds"]
    row["speedup"] = round(b / f, 2) if f > 0 else None
    return row


def _machine(device: Any) -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ------------------------------------------------------------------------------------------ writing
def write_bench(results: dict[str, Any], folder: Path) -> None:
    """``results.json``, ``README.md`` and (with scaling data) ``scaling.png`` under ``folder``."""
    from distillers.io import atomic_write_json, atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "results.json", results)
    if results.get("scaling"):
        from ddeval.report.plots import save_png

        save_png(scaling_figure(results["scaling"], ipc=results["sizes"]["ipc"],
                                real_size=results["sizes"]["real_size"]), folder / "scaling.png")
    atomic_write_text(folder / "README.md", bench_markdown(results))


def scaling_figure(points: Sequence[dict[str, Any]], *, ipc: int, real_size: int) -> Any:
    """Time and peak memory of each method against ipc (at ``real_size`` real images) and against the
    real-set size (at ``ipc``), fast path."""
    from ddeval.report.plots import color_for, new_figure

    fig = new_figure(11, 7.5)
    axes = fig.subplots(2, 2)
    good = [p for p in points if p.get("ok")]
    full, mid = real_size, ipc
    for i, name in enumerate(dict.fromkeys(p["method"] for p in good)):
        mine = [p for p in good if p["method"] == name]
        by_ipc = sorted((p["ipc"], p) for p in mine if p["real_size"] == full)
        by_size = sorted((p["real_size"], p) for p in mine if p["ipc"] == mid)
        style = {"color": color_for(i), "marker": "o", "label": name}
        for col, series in ((0, by_ipc), (1, by_size)):
            xs = [x for x, _ in series]
            axes[0][col].plot(xs, [max(p["seconds"], 1e-4) for _, p in series], **style)
            axes[1][col].plot(xs, [p["peak_rss_mb"] - p["rss_before_mb"] for _, p in series], **style)
    for col, xlabel in ((0, f"images per class (real set {full})"), (1, f"real-set size (ipc {mid})")):
        axes[0][col].set_yscale("log")
        axes[0][col].set_ylabel("seconds per iteration / selection")
        axes[1][col].set_ylabel("peak memory above start (MB)")
        for row in (0, 1):
            axes[row][col].set_xscale("log")
            axes[row][col].set_xlabel(xlabel)
            axes[row][col].grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, ncol=2)
    fig.suptitle("Fast path: time and memory scaling per method")
    return fig


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def bench_markdown(results: dict[str, Any]) -> str:
    m, peak = results["machine"], results["peak"]
    cfg = results["config"]
    lines = [
        f"# Benchmark: fp32 eager baseline vs fast path ({m['device']})",
        "",
        f"Machine: {m.get('cpu', m.get('gpu', '?'))}, {m['cpu_count']} CPUs, torch {m['torch']}, python "
        f"{m['python']}{' (quick mode: sizes too small to mean anything)' if cfg.get('quick') else ''}. "
        f"Whole benchmark: {results['wall_seconds'] / 60:.1f} min.",
        "",
        f"Matrix-multiply peak (best of repeated square products): fp32 {_fmt(peak.get('fp32_gflops'))} "
        f"GFLOP/s, bf16 {_fmt(peak.get('bf16_gflops'))} GFLOP/s. Fractions of peak below use the fp32 peak "
        "for fp32 runs and the bf16 peak for bf16 runs; FLOPs are counted with torch's FlopCounterMode "
        "(convolutions and matrix products) on the baseline.",
        "",
        "## Evaluation training (distillers.protocol.train)",
        "",
        "| workload | fp32 eager img/s | fast img/s | speedup | fast path | GFLOP/s (fp32 / fast) | "
        "% of peak (fp32 / fast) | peak RSS MB (fp32 / fast) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["training"]:
        b, f = r["baseline"], r["fast"]
        lines.append(
            f"| {r['workload']} | {b['images_per_second']:.0f} | {f['images_per_second']:.0f} | "
            f"**{r['speedup']:.2f}x** | {f['path']} | {_pair_cells(b, f)} |")
    lines += [
        "",
        f"Medians of {cfg['repeats']} alternating repeats (each in a fresh process, after a warm-up call that "
        "pays any compilation); every repeat is in results.json.",
        "",
        f"## One distillation iteration per method (ipc {results['sizes']['ipc']}, "
        f"{results['sizes']['real_size']} real images of 28x28)",
        "",
        "| method | timed unit | fp32 eager s | fast s | speedup | fast path | GFLOP/s (fp32 / fast) | "
        "% of peak (fp32 / fast) | peak RSS MB (fp32 / fast) | budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["methods"]:
        b, f = r["baseline"], r["fast"]
        budget = ", ".join(f"{k}={v}" for k, v in r["budget"].items()) or "defaults"
        lines.append(
            f"| {r['method']} | {r['per']} | {b['seconds']:.3g} | {f['seconds']:.3g} | **{_fmt(r['speedup'], '.2f')}x** | "
            f"{f['path']} | {_pair_cells(b, f)} | {budget} |")
    lines += [
        "",
        "DM, DC and DSA: seconds per iteration (median of repeats) on the long-run path after a warm-up "
        "iteration; DC/DSA iterations use the reduced loops in the budget column. Coreset methods: the whole "
        "selection (herding, k-center and k-means include training their embedding ConvNet, for the epochs in the "
        "budget column; the default is 10). "
        "noise and random do no computation worth timing.",
    ]
    if results.get("scaling"):
        lines += ["", "## Scaling (fast path)", "", "![scaling](scaling.png)", "",
                  "| method | ipc | real images | seconds | peak RSS MB | above start MB |", "|---|---|---|---|---|---|"]
        for p in results["scaling"]:
            if p.get("ok"):
                lines.append(f"| {p['method']} | {p['ipc']} | {p['real_size']} | {p['seconds']:.3g} | "
                             f"{p['peak_rss_mb']:.0f} | {p['peak_rss_mb'] - p['rss_before_mb']:.0f} |")
            else:
                lines.append(f"| {p['method']} | {p['ipc']} | {p['real_size']} | failed: {p.get('error')} | | |")
    lines += ["", "Regenerate:", "", "    " + results.get("command", "ddeval bench"), ""]
    return "\n".join(lines)


def _pair_cells(b: dict[str, Any], f: dict[str, Any]) -> str:
    """The GFLOP/s, %-of-peak and peak-memory cells of a baseline/fast pair."""
    return (f"{_fmt(b['achieved_gflops'])} / {_fmt(f['achieved_gflops'])} | "
            f"{_pct(b['fraction_of_peak'])} / {_pct(f['fraction_of_peak'])} | "
            f"{b['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f}")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


__all__ = ["BenchConfig", "bench_markdown", "run_bench", "run_isolated", "scaling_figure", "write_bench"]

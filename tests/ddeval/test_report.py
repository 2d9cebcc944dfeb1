"""The run report: Markdown + self-contained HTML rendered from results.json, and its figures."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image as PILImage

from ddeval.report import plots, render_run
from ddeval.report.browser import chromium_skip_reason, find_chromium, inspect_page
from ddeval.report.render import verdict
from distillers.errors import DDError
from distillers.synthetic import SyntheticSet

CLASSES = [str(c) for c in range(10)]


def acc_row(method: str, ipc: int, mean: float, std: float) -> dict:
    return {"method": method, "ipc": ipc, "network": "convnet", "accuracy_mean": mean, "accuracy_std": std,
            "accuracies": [mean - std, mean, mean + std], "eval_seeds": [0, 1, 2], "distill_seeds": [0],
            "distill_seconds": 4.2, "train_seconds_mean": 1.5, "iterations": 20}


def roc(power: float) -> dict:
    fpr = [0.0, 0.001, 0.01, 0.1, 0.5, 1.0]
    return {"fpr": fpr, "tpr": [0.0] + [f ** power for f in fpr[1:]]}


def priv_row(target: str, ipc: int | None, auc: float, nonmembers: int) -> dict:
    return {"target": target, "ipc": ipc, "attack": "loss", "auc": auc, "tpr_at_1pct_fpr": 0.012,
            "tpr_at_0p1pct_fpr": 0.0, "num_members": 400, "num_nonmembers": nonmembers,
            "fpr_resolution": 1 / nonmembers, "resolves_0p1pct_fpr": nonmembers >= 1000,
            "note": None if nonmembers >= 1000 else f"only {nonmembers} non-members: 0.1% FPR not resolved",
            "roc": roc(0.9 if target == "full-data" else 1.0)}


def nas_block() -> dict:
    archs = [{"depth": d, "width": w, "act": "relu"} for d in (2, 3) for w in (32, 64)]
    full = [0.90, 0.92, 0.93, 0.95]

    def trials(accs: list[float]) -> list[dict]:
        return [{"arch": a, "accuracy": x, "seconds": 1.0} for a, x in zip(archs, accs, strict=True)]

    def top(order: list[int], accs: list[float], ranks: list[int]) -> list[dict]:
        return [{"arch": archs[i], "full_accuracy": full[i], "proxy_accuracy": accs[i], "full_rank": r}
                for i, r in zip(order, ranks, strict=True)]

    dm, rnd = [0.6, 0.62, 0.61, 0.7], [0.5, 0.45, 0.52, 0.4]
    return {"strategy": "grid", "num_candidates": 4, "space": {"depth": [2, 3], "width": [32, 64]},
            "proxy_epochs": 100, "full_epochs": 10, "num_test_images": 450,
            "full": {"seconds": 120.0, "trials": trials(full), "num_train_images": 1347, "compute_seconds": 120.0,
                     "train_flops": 1e13, "top_list": top([3, 2], full, [1, 2])},
            "proxies": [{"proxy": "dm", "ipc": 10, "images": 100, "seconds": 15.0, "compute_seconds": 15.0,
                         "distill_seconds": 30.0, "train_flops": 2e12, "flops_ratio": 5.0,
                         "trials": trials(dm), "proxy_pick_full_rank": 1, "top_list": top([3, 1], dm, [1, 3]),
                         "spearman": 0.8, "spearman_ci": [0.2, 1.0], "kendall": 0.67, "speedup": 8.0,
                         "top1_regret": 0.0,
                         "top_k": [{"k": 2, "overlap": 0.5, "spearman": 1.0, "kendall": 1.0}]},
                        {"proxy": "random", "ipc": 10, "images": 100, "seconds": 12.0,
                         "trials": trials(rnd), "top_list": top([2, 0], rnd, [2, 4]),
                         "spearman": -0.4, "kendall": -0.33, "speedup": 10.0}]}


def make_results() -> dict:
    return {
        "schema_version": 1,
        "run": {"suite": "quickstart", "started": "2026-11-21T12:00:00Z", "finished": "2026-11-21T12:05:12Z",
                "total_seconds": 312.5, "device": "cpu", "seeds": {"distill": [0], "eval": [0, 1, 2]}},
        "dataset": {"name": "digits", "num_train": 1347, "num_test": 450, "num_classes": 10,
                    "classes": CLASSES, "image_shape": [1, 8, 8]},
        "metrics": {"accuracy": {"direction": "higher", "unit": "fraction"},
                    "auc": {"direction": "lower", "unit": "fraction"}},
        "accuracy": {
            "full_data": {"network": "convnet", "accuracy_mean": 0.97, "accuracy_std": 0.004,
                          "accuracies": [0.966, 0.97, 0.974], "eval_seeds": [0, 1, 2], "epochs": 30},
            "rows": [acc_row("dm", 1, 0.55, 0.02), acc_row("dm", 10, 0.93, 0.01),
                     acc_row("random", 1, 0.40, 0.03), acc_row("random", 10, 0.889, 0.01),
                     acc_row("noise", 1, 0.12, 0.01), acc_row("noise", 10, 0.15, 0.02)]},
        "privacy": {"attack": "loss", "rows": [priv_row("dm", 10, 0.51, 450),
                                               priv_row("random", 10, 0.55, 450),
                                               priv_row("full-data", None, 0.62, 1200)]},
        "nas": nas_block(),
        "synthetic": [{"method": "dm", "ipc": 10, "seed": 0, "path": "synthetic/dm-ipc10-seed0"},
                      {"method": "dm", "ipc": 10, "seed": 1, "path": "synthetic/dm-ipc10-seed1"}],
    }


def grey_set(ipc: int = 10) -> SyntheticSet:
    g = torch.Generator().manual_seed(0)
    return SyntheticSet(torch.randn(10 * ipc, 1, 8, 8, generator=g), torch.arange(10).repeat_interleave(ipc),
                        classes=CLASSES, mean=(0.3,), std=(0.3,), meta={"method": "dm", "ipc": ipc})


def write_run(run_dir: Path, results: dict, *, manifest: dict | None = None, with_set: bool = True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(results))
    if manifest is not None:
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
    if with_set:
        grey_set().save(run_dir / "synthetic" / "dm-ipc10-seed0")
    return run_dir


MANIFEST = {"command": "ddeval run quickstart", "git": {"commit": "abc123def", "dirty": False},
            "versions": {"torch": "2.4.0", "matplotlib": "3.11.2"}, "python": "3.11.2",
            "machine": {"platform": "Linux", "cpu_count": 2, "device": "cpu"},
            "seeds": {"distill": [0], "eval": [0, 1, 2]}, "timings_seconds": {"distill": 41.2}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    run_dir = write_run(tmp_path_factory.mktemp("run"), make_results(), manifest=MANIFEST)
    return run_dir, render_run(run_dir)


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


# ------------------------------------------------------------------------------------------------ full report
def test_render_writes_files(rendered):
    run_dir, paths = rendered
    assert paths["report.md"] == run_dir / "report.md" and paths["report.html"] == run_dir / "report.html"
    for rel in ("plots/accuracy.png", "plots/roc.png", "plots/nas.png", "plots/synthetic-dm-ipc10-seed0.png"):
        assert paths[rel].is_file(), rel
    assert not list(run_dir.rglob("*.tmp"))


def test_markdown_content(rendered):
    run_dir, _ = rendered
    md = (run_dir / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Accuracy") < md.index("## Privacy")
    for name in ("dm", "random", "noise", "full data"):
        assert name in md
    assert "93.0 ± 1.0%" in md and "88.9 ± 1.0%" in md and "97.0 ± 0.4%" in md
    assert "beats random subset by +4.1 points" in md
    assert "beats random subset by +15.0 points" in md
    assert "4.0 points below full data" in md
    assert "n/a (needs ≥1000 non-members)" in md
    assert "0.510" in md and "1.20%" in md
    assert "| dm | 10 | 100 | 0.80 [0.20, 1.00] | 0.67 | 50% | 0.0 points | #1 | 15.0 s | 30.0 s | 2.0 TFLOP | 8.0× | 5.0× |" in md
    assert "2.0 min" in md and md.index("| dm |") < md.index("| random |")  # ranked by rho
    assert "Top architectures by the full data and by each proxy" in md
    assert "| 1 | d3 w64 95.0% | d3 w64 95.0% (#1) | d3 w32 93.0% (#2) |" in md
    assert "depth=3, width=64" in md and "95.0% (#1)" in md
    assert "| random | 10 | 100 | -0.40 | -0.33 | — | — | — | 12.0 s | — | — | 10.0× | — |" in md
    assert "| full data (reference) | — | 1347 |" in md and "10.0 TFLOP | 1.0× | 1.0× |" in md
    assert "| dm (ipc 10) | 2 | 50% | 1.000 | 1.000 |" in md
    assert "![" in md and "(plots/synthetic-dm-ipc10-seed0.png)" in md
    assert "abc123def" in md and "torch" in md


def test_html_self_contained(rendered):
    run_dir, _ = rendered
    page = (run_dir / "report.html").read_text()
    assert (run_dir / "report.html").stat().st_size < 5 * 1024 * 1024
    assert "<script" not in page.lower()
    for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
        assert ref.startswith(("data:", "#")), ref
    assert "data:image/png;base64," in page
    for section in ("summary", "accuracy", "privacy", "nas", "synthetic", "metrics", "provenance"):
        assert f'<section id="{section}">' in page
        assert f'href="#{section}"' in page
    assert "beats random subset by +4.1 points" in page


def test_embedded_pngs_decode(rendered):
    run_dir, paths = rendered
    pngs = embedded_pngs((run_dir / "report.html").read_text())
    assert len(pngs) == sum(1 for k in paths if k.startswith("plots/"))
    for data in pngs:
        with PILImage.open(io.BytesIO(data)) as img:
            img.verify()
            assert img.format == "PNG"


def test_one_grid_per_method_and_ipc(rendered):
    _, paths = rendered
    assert "plots/synthetic-dm-ipc10-seed1.png" not in paths


# ------------------------------------------------------------------------------------------------ robustness
def test_missing_sections_are_skipped(tmp_path):
    run_dir = write_run(tmp_path, small_results("nas", "privacy", "synthetic", "metrics"), with_set=False)
    paths = render_run(run_dir)
    page = paths["report.html"].read_text()
    assert '<section id="nas">' not in page and '<section id="privacy">' not in page
    assert '<section id="accuracy">' in page and "no manifest.json" in page
    assert set(paths) == {"report.md", "report.html", "plots/accuracy.png"}


def test_bare_results_render(tmp_path):
    paths = render_run(write_run(tmp_path, {"schema_version": 1}, with_set=False))
    assert "<h1>" in paths["report.html"].read_text()
    assert paths["report.md"].read_text().startswith("# ")


def test_full_data_only_has_no_accuracy_plot(tmp_path):
    results = {"accuracy": {"full_data": {"network": "convnet", "accuracy_mean": 0.97, "accuracy_std": 0.0}}}
    paths = render_run(write_run(tmp_path, results, with_set=False))
    assert "plots/accuracy.png" not in paths
    assert "97.0 ± 0.0%" in paths["report.md"].read_text()


def test_image_budget_keeps_html_small(tmp_path, monkeypatch):
    import ddeval.report.render as render

    monkeypatch.setattr(render, "IMAGE_BUDGET_BYTES", 1)
    paths = render_run(write_run(tmp_path, small_results("nas", "privacy"), with_set=False))
    page = paths["report.html"].read_text()
    assert "data:image/png" not in page and "see plots/accuracy.png in the run directory" in page
    assert "(plots/accuracy.png)" in paths["report.md"].read_text()


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(DDError, match="results.json"):
        render_run(tmp_path)


def small_results(*drop: str) -> dict:
    """The fake results without the sections a test does not need (fewer figures, faster tests)."""
    results = make_results()
    for key in drop:
        del results[key]
    return results


def test_unreadable_synthetic_set_is_reported_not_fatal(tmp_path):
    results = small_results("nas", "privacy")
    results["synthetic"] = [{"method": "dm", "ipc": 10, "seed": 0, "path": "synthetic/missing"}]
    paths = render_run(write_run(tmp_path, results, with_set=False))
    assert "cannot show the images" in paths["report.md"].read_text()


def test_text_is_escaped(tmp_path):
    results = small_results("nas", "privacy", "synthetic")
    results["accuracy"]["rows"][0]["method"] = "<b>evil</b>"
    page = render_run(write_run(tmp_path, results))["report.html"].read_text()
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page


def test_verdict_wording():
    full = {"accuracy_mean": 0.9}
    row = acc_row("dm", 10, 0.50, 0.01)
    assert verdict(row, acc_row("random", 10, 0.55, 0.01), None, full).startswith(
        "trails random subset by 5.0 points")
    assert "on par with random subset" in verdict(row, acc_row("random", 10, 0.505, 0.01), None, full)
    assert "on par with random subset (+0.0 points" in verdict(row, acc_row("random", 10, 0.5004, 0.01), None, full)
    assert "matches full data (+0.0 points)" in verdict(row, None, None, {"accuracy_mean": 0.5})
    assert "no better than the noise floor" in verdict(row, None, acc_row("noise", 10, 0.5, 0.01), None)
    assert "no random-subset baseline" in verdict(row, None, None, None)


# ------------------------------------------------------------------------------------------------ figures
def test_roc_figure_is_log_log():
    fig = plots.roc_figure(make_results()["privacy"]["rows"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlim() == pytest.approx((1e-5, 1))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("chance" in t for t in labels) and sum("AUC" in t for t in labels) == 3


def test_accuracy_and_nas_figures():
    results = make_results()
    fig = plots.accuracy_figure(results["accuracy"], num_classes=10)
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:3] == ["dm", "random", "noise"] and any("full data" in t for t in labels)
    fig = plots.nas_figure(results["nas"])
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "ρ = 0.80" in legend and "τ = 0.67" in legend


@pytest.mark.parametrize("channels", [1, 3])
def test_synthetic_grid(channels):
    g = torch.Generator().manual_seed(0)
    syn = SyntheticSet(torch.randn(6, channels, 8, 8, generator=g), torch.tensor([0, 0, 1, 1, 2, 2]),
                       classes=["cat", "dog", "emu"], mean=(0.5,) * channels, std=(0.2,) * channels)
    canvas, classes = plots.grid_pixels(syn)
    assert canvas.shape[:2] == (3 * 9 - 1, 2 * 9 - 1) and (canvas.ndim == 3) == (channels == 3)
    assert 0.0 <= canvas.min() and canvas.max() <= 1.0
    fig = plots.synthetic_grid_figure(syn)
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["cat", "dog", "emu"]


def test_save_png_is_atomic_and_decodes(tmp_path):
    path = plots.save_png(plots.no_data_figure("nothing"), tmp_path / "sub" / "x.png")
    with PILImage.open(path) as img:
        assert img.format == "PNG"
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]



def test_parameterised_rows_show_images_per_class_and_storage(tmp_path):
    results = make_results()
    results["accuracy"]["rows"].append({**acc_row("dm-haba", 10, 0.91, 0.01), "parameterization": "haba",
                                        "images_per_class": 25, "storage_ratio": 0.52})
    md = render_run(write_run(tmp_path, results, with_set=False))["report.md"].read_text()
    assert "| Images per class | Storage ratio |" in md and "| 25 | 0.520 |" in md
    plain = render_run(write_run(tmp_path / "plain", make_results(), with_set=False))["report.md"].read_text()
    assert "Storage ratio" not in plain  # no parameterised set, no extra columns


@pytest.mark.skipif(chromium_skip_reason() is not None, reason=str(chromium_skip_reason()))
def test_browser_check_catches_broken_images_and_console_errors(tmp_path):
    """The browser check can fail: a missing image and a console error are both reported."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>bad</title></head><body><img src="missing.png">'
                    '<script>console.error("boom")</script></body></html>')
    seen = inspect_page(page)
    assert seen.title == "bad" and len(seen.broken_images) == 1
    assert any("boom" in e for e in seen.errors) and any("missing.png" in e for e in seen.errors)


def test_browser_check_without_chromium_is_a_clear_error(tmp_path, monkeypatch):
    page = tmp_path / "p.html"
    page.write_text("<html></html>")
    monkeypatch.setenv("DDEVAL_CHROMIUM", str(tmp_path / "no-such-browser"))
    assert find_chromium() is None
    with pytest.raises(DDError, match="apt-get install chromium"):
        inspect_page(page)

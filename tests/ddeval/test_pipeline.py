"""The main job end to end on tiny budgets: files, schema, resume, and the CLI's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ddeval.cli import main
from ddeval.pipeline import run_suite
from ddeval.report.browser import chromium_skip_reason, inspect_page
from ddeval.schema import problems

TINY = [
    "ipc=1,2", "methods=random,dm", "methods.dm.iterations=5", "methods.dm.batch_real=16",
    "network=convnet-d2", "network_args.width=16",
    "accuracy.networks=convnet-d2,mlp", "accuracy.network_args.convnet-d2.width=16", "accuracy.eval_seeds=2",
    "accuracy.epochs=30", "accuracy.full_data_epochs=2",
    "privacy.ipc=2", "privacy.dp_epsilons=8", "privacy.dp_sgd.epochs=1", "privacy.bootstrap=20", "nas.ipc=2", "nas.space=tiny", "nas.proxy_epochs=3", "nas.full_epochs=1", "nas.proxies=dm,random",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("run") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(home))
    try:
        results = run_suite("quickstart", overrides=TINY, run_dir=out, device="cpu", progress=False)
    finally:
        mp.undo()
    return results, out, home


def test_run_writes_every_artefact(tiny_run):
    results, out, home = tiny_run
    for name in ("config.yaml", "manifest.json", "results.json", "report.md", "report.html"):
        assert (out / name).is_file(), name
    written = [p for p in home.rglob("*") if p.is_file() and "matplotlib" not in p.parts]
    assert written == [], "nothing but matplotlib's font cache may land in the user's home (NNI included)"
    assert list((out / "nas").rglob("nni-experiments")), "NNI's files belong in the run directory"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "https://" not in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["torch"] and manifest["seeds"]["eval"] == [1000, 1001]
    assert "git" in manifest and "machine" in manifest


def test_results_schema(tiny_run):
    results, out, _ = tiny_run
    stored = json.loads((out / "results.json").read_text())
    assert stored["schema_version"] == 1
    rows = stored["accuracy"]["rows"]
    combos = {(r["method"], r["ipc"], r["network"]) for r in rows}
    assert {("dm", 2, "convnet-d2"), ("random", 2, "mlp"), ("noise", 1, "convnet-d2")} <= combos
    for r in rows:
        assert 0.0 <= r["accuracy_mean"] <= 1.0 and len(r["accuracies"]) == 2
        assert len(r["path"]) == 1 and r["path"][0] in ("fp32 eager", "bf16+eager", "bf16+compile")
    assert "Evaluation networks trained with:" in (out / "report.md").read_text()
    assert 0.0 < stored["accuracy"]["full_data"]["accuracy_mean"] <= 1.0
    targets = {r["target"] for r in stored["privacy"]["rows"]}
    assert {"dm", "random", "full-data", "dp-sgd-eps8"} == targets  # noise is not attacked by default
    assert {r["attack"] for r in stored["privacy"]["rows"]} == {"loss", "confidence", "entropy"}
    for r in stored["privacy"]["rows"]:
        assert 0.0 <= r["auc"] <= 1.0 and r["num_nonmembers"] == stored["dataset"]["num_test"]
        assert r["resolves_0p1pct_fpr"] is False and r["note"]
        lo, hi = r["ci"]["auc"]
        assert lo <= r["auc"] <= hi
    dp_row = next(r for r in stored["privacy"]["rows"] if r["target"] == "dp-sgd-eps8")
    assert 0 < dp_row["dp"]["epsilon"] <= 8.0 + 1e-6 and dp_row["dp"]["delta"] > 0
    nas = stored["nas"]
    assert nas["num_candidates"] == 4 and {p["proxy"] for p in nas["proxies"]} == {"dm", "random"}
    for p in nas["proxies"]:
        assert -1.0 <= p["spearman"] <= 1.0 or p["spearman"] is None
    dm_set = next(s for s in stored["synthetic"] if s["method"] == "dm" and s["ipc"] == 2)
    assert (out / dm_set["path"] / "tensors.pt").is_file()
    # the distilled DM set uses the suite-level distillation network
    meta = json.loads((out / dm_set["path"] / "meta.json").read_text())
    assert meta["meta"]["config"]["network"] == "convnet-d2" and meta["meta"]["config"]["network_args"] == {"width": 16}


@pytest.mark.skipif(chromium_skip_reason() is not None, reason=str(chromium_skip_reason()))
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    """The quickstart suite's report (tiny budgets, every section) opens from disk in Chromium: every image
    loads, no console error or failed load, well under 5 MB; the screenshot is a real full-page PNG."""
    _, out, _ = tiny_run
    page = out / "report.html"
    assert page.stat().st_size < 5_000_000
    seen = inspect_page(page, tmp_path / "report.png")
    assert seen.title.startswith("Dataset distillation report: quickstart")
    assert len(seen.images) >= 5  # accuracy, ROC, frontier, NAS scatter, synthetic grids
    assert seen.broken_images == [] and seen.errors == []
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000 and seen.height > 2000


def test_results_follow_the_documented_schema(tiny_run):
    _, out, _ = tiny_run
    stored = json.loads((out / "results.json").read_text())
    assert problems(stored) == []
    # the report is rendered from results.json alone: its provenance and resolved config are in it
    assert stored["provenance"]["git"] and stored["provenance"]["versions"]["torch"]
    assert stored["config"]["methods"]["dm"]["iterations"] == 5


def test_rerun_resumes_from_cache(tiny_run):
    results, out, home = tiny_run
    again = run_suite("quickstart", overrides=TINY, run_dir=out, device="cpu", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"]["computed"] == 0 and manifest["units"]["reused"] > 0
    assert again["accuracy"] == results["accuracy"]
    assert again["privacy"] == results["privacy"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["run", "--set", "methods=dmm"], 'Unknown method "dmm".*Did you mean "dm"'),
    (["run", "--set", "dataset=digitz"], 'Unknown dataset "digitz"'),
    (["run", "--set", "accuracy.epoch=3"], 'Unknown key "epoch".*Did you mean "epochs"'),
    (["run", "--set", "methods.dm.iteration=3"], 'Unknown key "iteration"'),
    (["run", "--set", "accuracy.eval_seeds=-1"], "eval_seeds must be >= 1"),
    (["run", "no_such_suite.yaml"], "does not exist"),
    (["distill", "dm", "--set", "lr_img=fast", "--out", "unused"], "must be a number"),
    (["distill", "dm", "--dataset", "npz:/no/such/file.npz", "--out", "unused"], "file.npz"),
])
def test_cli_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    import re

    assert re.search(message, _error_line(capsys))


def test_cli_malformed_npz_and_wrong_shape(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"this is not a zip file")
    assert main(["distill", "random", "--dataset", f"npz:{tmp_path / 'bad.npz'}", "--out", "x"]) == 2
    assert "bad.npz" in _error_line(capsys)
    # a digits (8x8) synthetic set cannot be evaluated on 12x12 images
    assert main(["distill", "random", "--ipc", "1", "--out", str(tmp_path / "syn")]) == 0
    capsys.readouterr()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "other.npz", x_train=rng.integers(0, 255, (20, 12, 12), dtype=np.uint8),
             y_train=np.arange(20) % 10, x_test=rng.integers(0, 255, (10, 12, 12), dtype=np.uint8),
             y_test=np.arange(10))
    assert main(["evaluate", str(tmp_path / "syn"), "--dataset", f"npz:{tmp_path / 'other.npz'}"]) == 2
    assert "shape" in _error_line(capsys)
    assert not Path("x").exists()


def test_cli_distill_then_evaluate(tmp_path, capsys):
    syn = tmp_path / "syn"
    assert main(["distill", "herding", "--ipc", "2", "--set", "embedding=pixels", "--out", str(syn)]) == 0
    assert (syn / "tensors.pt").is_file()
    assert main(["evaluate", str(syn), "--network", "mlp", "--seeds", "2", "--epochs", "20"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "±" in out


def test_no_fast_switch_reaches_every_method_and_recipe(tmp_path, capsys):
    from ddeval.config import load_suite
    from ddeval.pipeline import _resolved_methods

    slow = _resolved_methods(load_suite("quickstart", ["fast=false"]))
    assert slow["dm"]["fast"] is False and slow["herding"]["fast"] is False
    assert "fast" not in slow["random"]  # nothing to speed up: no such key
    assert _resolved_methods(load_suite("quickstart"))["dsa"]["fast"] is True
    syn = tmp_path / "syn"
    assert main(["distill", "dm", "--ipc", "1", "--set", "iterations=2", "--set", "network=convnet-d2",
                 "--no-fast", "--out", str(syn)]) == 0
    assert json.loads((syn / "meta.json").read_text())["meta"]["config"]["fast"] is False
    assert main(["distill", "random", "--ipc", "1", "--no-fast", "--out", str(tmp_path / "r")]) == 0
    assert main(["evaluate", str(syn), "--network", "convnet-d2", "--seeds", "1", "--epochs", "2",
                 "--no-fast"]) == 0


def test_cli_ls_lists_every_kind(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for word in ("methods:", "dm", "dsa", "idc", "parameterizations:", "multi-formation", "latents", "networks:",
                 "convnet", "resnet18", "datasets:", "digits", "npz", "evaluators:", "privacy", "suites:",
                 "quickstart", "digits-benchmark-3"):
        assert word in out


def _descendants(pid: int) -> list[int]:
    """Process ids whose parent chain reaches ``pid`` (from /proc, no extra dependency)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list processes")
def test_sigterm_during_nas_stops_cleanly_and_rerun_resumes(tmp_path):
    """SIGTERM mid-search: exit 130, no process left, nothing in HOME; the rerun reuses finished units."""
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "run"
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "ddeval.cli", "run", "--out", str(out), "--device", "cpu"]
    for item in TINY:
        argv += ["--set", item]
    argv += ["--set", "nas.full_epochs=40"]  # long enough to be caught mid-search
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(out.glob("nas/full-data/nni/nni-experiments/*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    time.sleep(0.5)
    alive = [p for p in children if Path(f"/proc/{p}").exists()]
    assert alive == [], f"processes left behind: {alive}"
    assert [p for p in home.rglob("*") if p.is_file() and "matplotlib" not in p.parts] == []
    assert not (out / "results.json").exists()
    finished = len(list((out / "units").glob("*.json")))
    assert finished > 0
    rerun = subprocess.run(argv[:-2] + ["--set", "nas.full_epochs=1"], env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"]["reused"] >= finished


def test_learned_learning_rate_is_used_only_when_asked(tmp_path, capsys):
    from ddeval.accuracy import set_recipe
    from distillers.protocol import TrainConfig
    from distillers.synthetic import SyntheticSet

    kw = {"classes": ("a", "b"), "mean": (0.0,), "std": (1.0,)}
    with_lr = SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), lr=0.003, **kw)
    without = SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), **kw)
    base = TrainConfig(epochs=3, lr=0.01)
    assert set_recipe(base, with_lr, True).lr == 0.003 and set_recipe(base, with_lr, True).epochs == 3
    assert set_recipe(base, with_lr, False) is base and set_recipe(base, without, True) is base
    syn = tmp_path / "dd"
    assert main(["distill", "dd", "--ipc", "1", "--set", "iterations=2", "--set", "batch_real=32",
                 "--out", str(syn)]) == 0
    learned = SyntheticSet.load(syn).lr
    capsys.readouterr()
    assert main(["evaluate", str(syn), "--network", "mlp", "--seeds", "1", "--epochs", "2", "--learned-lr"]) == 0
    assert f"(lr {learned:.4g})" in capsys.readouterr().out


def test_rows_carry_speed_memory_and_a_methods_own_protocol(tmp_path):
    suite = tmp_path / "dd.yaml"
    suite.write_text(
        "name: dd-tiny\ndataset: digits\nipc: [1]\nmethods:\n  dd: {iterations: 2, batch_real: 32}\n"
        "accuracy: {networks: [mlp], eval_seeds: 2, epochs: 2, full_data: false}\n"
        "privacy: {enabled: false}\nnas: {enabled: false}\n")
    results = run_suite(str(suite), run_dir=tmp_path / "run", device="cpu", progress=False)
    rows = {r["method"]: r for r in results["accuracy"]["rows"]}
    dd, random = rows["dd"], rows["random"]
    assert dd["own_protocol"] == "dd-replay" and 0.0 <= dd["own_protocol_accuracy_mean"] <= 1.0
    assert "own_protocol" not in random  # a random subset has no protocol of its own
    assert dd["seconds_per_iteration"] > 0 and dd["peak_memory_mb"] is not None
    assert random["seconds_per_iteration"] is None  # one-shot selection: no iterations


def test_a_suite_runs_one_method_under_several_names(tmp_path):
    """A variant entry (``method: dm``) runs a registered method with another config under its own name; the
    rows say which method and parameterisation made each set, how many images it decodes to and its
    storage ratio."""
    suite = tmp_path / "variants.yaml"
    suite.write_text(
        "name: variants\ndataset: digits\nipc: [1]\nnetwork: convnet-d2\nnetwork_args: {width: 16}\n"
        "methods:\n  dm: {iterations: 2, batch_real: 16}\n"
        "  dm-multi: {method: dm, iterations: 2, batch_real: 16, parameterization: multi-formation}\n"
        "accuracy: {networks: [mlp], eval_seeds: 1, epochs: 2, full_data: false}\n"
        "privacy: {enabled: false}\nnas: {enabled: false}\n")
    results = run_suite(str(suite), run_dir=tmp_path / "run", device="cpu", progress=False)
    rows = {r["method"]: r for r in results["accuracy"]["rows"]}
    assert rows["dm-multi"]["base_method"] == rows["dm"]["base_method"] == "dm"
    assert rows["dm-multi"]["parameterization"] == "multi-formation" and rows["dm"]["parameterization"] == "pixels"
    assert (rows["dm-multi"]["images_per_class"], rows["dm"]["images_per_class"]) == (4, 1)
    assert rows["dm-multi"]["storage_ratio"] == pytest.approx(0.25) and rows["dm"]["storage_ratio"] == 1.0
    assert rows["random"]["parameterization"] is None  # a coreset has no parameterisation
    bad = tmp_path / "bad.yaml"
    bad.write_text(suite.read_text().replace("method: dm,", "method: dmm,"))
    with pytest.raises(Exception, match='Unknown method "dmm"'):
        run_suite(str(bad), run_dir=tmp_path / "bad", device="cpu", progress=False)


DIVERGING = ["ipc=1", "methods=random,kip", "methods.kip.iterations=50", "methods.kip.lr_img=1e30",
             "accuracy.epochs=5", "accuracy.eval_seeds=1", "accuracy.full_data=false", "privacy.enabled=false",
             "nas.enabled=false"]


def test_a_diverging_method_stops_the_run_and_keeps_its_last_good_set(tmp_path, capsys):
    """One clear line naming the iteration and where the last finite set went; finished sets are kept, the
    diverged one is not passed off as finished (so a resumed run distils it again), and no results.json."""
    out = tmp_path / "run"
    argv = ["run", "quickstart", "--out", str(out), "--device", "cpu", *sum((["--set", s] for s in DIVERGING), [])]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[ddeval]")]
    assert len(err) == 1 and "kip at ipc 1 (seed 0)" in err[0] and "at iteration" in err[0], err
    assert "lower lr_img" in err[0] and str(out / "diverged" / "kip-ipc1-seed0") in err[0]
    from distillers.synthetic import SyntheticSet

    kept = SyntheticSet.load(out / "diverged" / "kip-ipc1-seed0")
    assert bool(torch.isfinite(kept.images).all()) and kept.meta["diverged"]["iteration"] >= 1
    assert (out / "synthetic" / "random-ipc1-seed0").is_dir()  # finished before the fault: kept
    assert not (out / "synthetic" / "kip-ipc1-seed0").exists()
    assert not (out / "results.json").exists()


def test_cli_distill_divergence_writes_nothing_to_out(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["distill", "kip", "--ipc", "1", "--set", "iterations=50", "--set", "lr_img=1e30",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KIP diverged" in err[0] and f"{out}.diverged" in err[0], err
    assert not out.exists() and Path(f"{out}.diverged", "tensors.pt").is_file()


def test_per_ipc_overrides_apply_to_their_ipc_only(tmp_path):
    """methods.X.by_ipc: a budget per ipc (as the authors tune MTT); other ipcs keep their finished sets."""
    base = ["ipc=1,2", "methods=dm", "methods.dm.iterations=3", "methods.dm.batch_real=8", "network=convnet-d2",
            "network_args.width=8", "accuracy.epochs=2", "accuracy.eval_seeds=1", "accuracy.networks=mlp",
            "accuracy.full_data=false", "privacy.enabled=false", "nas.enabled=false"]
    plain = run_suite("quickstart", overrides=base, run_dir=tmp_path / "a", device="cpu", progress=False)
    tuned = run_suite("quickstart", overrides=[*base, "methods.dm.by_ipc.2.iterations=5"],
                      run_dir=tmp_path / "b", device="cpu", progress=False)
    budget = {r["ipc"]: r["method_config"]["iterations"] for r in tuned["accuracy"]["rows"] if r["method"] == "dm"}
    assert budget == {1: 3, 2: 5}
    from distillers.synthetic import SyntheticSet

    key = {run: {ipc: SyntheticSet.load(tmp_path / run / "synthetic" / f"dm-ipc{ipc}-seed0").meta["unit_key"]
                 for ipc in (1, 2)} for run in ("a", "b")}
    assert key["a"][1] == key["b"][1] and key["a"][2] != key["b"][2]
    assert plain["accuracy"]["rows"][0]["method_config"]["iterations"] == 3


@pytest.mark.parametrize("override, message", [
    ("methods.dm.by_ipc.10.iterations=5", "does not run"),
    ("methods.dm.by_ipc.x.iterations=5", "keys must be ipc values"),
    ("methods.dm.by_ipc.1=5", "must map an ipc to a mapping"),
    ("methods.dm.by_ipc.1.method=dc", "may not set"),
    ("methods.dm.by_ipc.1.bogus=5", 'Unknown key "bogus"'),
])
def test_per_ipc_override_errors(override, message, tmp_path):
    from distillers.errors import DDError

    with pytest.raises(DDError, match=message):
        run_suite("quickstart", overrides=["ipc=1", "methods=dm", override], run_dir=tmp_path / "r", device="cpu",
                  progress=False)
    assert not (tmp_path / "r" / "results.json").exists()


def test_a_set_distilled_again_under_the_same_key_is_evaluated_again(tmp_path):
    """Evaluation results are keyed by the set's content, not only by its distillation key: a set that changed
    under the same key (distilled again after a code fix) is evaluated again, an unchanged one is reused, and
    a set saved before content digests were recorded keeps its old key (its cached results stay valid)."""
    from ddeval.runs import set_key
    from distillers.synthetic import SyntheticSet

    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        "name: tiny\ndataset: digits\nipc: [1]\nnetwork: convnet-d2\nnetwork_args: {width: 16}\n"
        "methods:\n  dm: {iterations: 2, batch_real: 16}\n"
        "accuracy: {networks: [mlp], eval_seeds: 1, epochs: 2, full_data: false}\n"
        "privacy: {enabled: false}\nnas: {enabled: false}\n")
    run = tmp_path / "run"

    def units() -> dict:
        run_suite(str(suite), run_dir=run, device="cpu", progress=False)
        return json.loads((run / "manifest.json").read_text())["units"]

    assert units()["computed"] >= 2  # the dm set and the evaluations
    assert units()["computed"] == 0
    folder = run / "synthetic" / "dm-ipc1-seed0"
    syn = SyntheticSet.load(folder)
    assert syn.meta["content_sha256"] == syn.content_sha256() and set_key(syn) != syn.meta["unit_key"]
    changed = SyntheticSet(syn.images.flip(-1), syn.labels, classes=syn.classes, mean=syn.mean, std=syn.std,
                           meta=dict(syn.meta))
    changed.meta["content_sha256"] = changed.content_sha256()
    changed.save(folder)
    assert units()["computed"] == 1  # dm's one evaluation; the random subset's is reused
    assert units()["computed"] == 0
    legacy = dict(changed.meta)
    del legacy["content_sha256"]
    assert set_key(SyntheticSet(changed.images, changed.labels, classes=changed.classes, mean=changed.mean,
                                std=changed.std, meta=legacy)) == changed.meta["unit_key"]


def test_a_parameterization_recipe_change_is_in_the_distillation_key():
    """A parameterisation whose initialisation changed (recipe above 1) keys its sets on the recipe, so sets
    cached under the old recipe are distilled again; other methods' keys do not carry it."""
    from ddeval.config import create_method
    from ddeval.pipeline import _parameterization_recipe

    assert _parameterization_recipe(create_method("dm", {"parameterization": "addressing"}, 1).config) == 2
    assert _parameterization_recipe(create_method("dm", {"parameterization": "haba"}, 1).config) == 1
    assert _parameterization_recipe(create_method("dm", {}, 1).config) == 1
    assert _parameterization_recipe(create_method("random", {}, 1).config) == 1

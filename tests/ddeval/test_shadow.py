"""Shadow pipelines and the privacy evaluator: balanced halves, the whole chain per pipeline, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddeval.cli import main
from ddeval.config import load_suite
from ddeval.pipeline import run_suite
from ddeval.privacy import shadow
from distillers.errors import DDError


def test_half_masks_are_balanced_and_seeded():
    masks = shadow.half_masks(500, 17, seed=3)
    per_point = masks.sum(0)
    assert set(np.unique(per_point)) <= {8, 9}  # every point IN for half of the pipelines
    per_pipeline = masks.sum(1)
    assert abs(per_pipeline.mean() - 500 * per_point.mean() / 17) < 1e-9
    assert per_pipeline.min() > 200 and per_pipeline.max() < 300
    np.testing.assert_array_equal(masks, shadow.half_masks(500, 17, seed=3))
    assert not np.array_equal(masks, shadow.half_masks(500, 17, seed=4))
    even = shadow.half_masks(100, 4, seed=0)
    assert (even.sum(0) == 2).all()
    with pytest.raises(DDError, match="at least 2 pipelines"):
        shadow.half_masks(10, 1, seed=0)


def test_population_is_stratified(tiny_digits):
    train, _ = tiny_digits
    idx = shadow.population_indices(train, 200, seed=0)
    counts = np.bincount(train.y[idx].numpy(), minlength=10)
    assert counts.sum() == 200 and (counts == 20).all()
    assert torch.equal(shadow.population_indices(train, None, seed=0), torch.arange(len(train)))
    with pytest.raises(DDError, match="population"):
        shadow.population_indices(train, 5, seed=0)


def test_check_halves_names_the_fix(tiny_digits):
    train, _ = tiny_digits
    masks = shadow.half_masks(len(train), 3, seed=0)
    shadow.check_halves(train.y, masks, 10, 5, "dm ipc=5")
    with pytest.raises(DDError, match="raise privacy.population or lower ipc"):
        shadow.check_halves(train.y, masks, 10, 39, "dm ipc=39")


def test_lira_config_needs_shadows():
    with pytest.raises(DDError, match="privacy.shadows"):
        load_suite("quickstart", ["privacy.attacks=lira-online"])
    with pytest.raises(DDError, match='Did you mean "lira-online"'):
        load_suite("quickstart", ["privacy.attacks=lira-onlin", "privacy.shadows=4"])
    suite = load_suite("quickstart", ["privacy.shadows=4"])
    assert "lira-online" in suite.privacy.attack_names() and "loss" in suite.privacy.attack_names()


SHADOW = [
    "ipc=2", "methods=random", "network=convnet-d2", "network_args.width=8",
    "accuracy.networks=convnet-d2", "accuracy.network_args.convnet-d2.width=8", "accuracy.epochs=15",
    "accuracy.full_data_epochs=3", "accuracy.enabled=false", "nas.enabled=false",
    "privacy.ipc=2", "privacy.shadows=3", "privacy.population=200", "privacy.dp_epsilons=[]",
    "privacy.bootstrap=20",
]


def test_shadow_mode_end_to_end_and_resume(tmp_path):
    out = tmp_path / "run"
    results = run_suite("quickstart", overrides=SHADOW, run_dir=out, device="cpu", progress=False)
    priv = results["privacy"]
    assert priv["mode"] == "shadow pipelines" and priv["pipelines"] == 4 and priv["population"] == 200
    assert priv["headline_attack"] == "lira-online-fixed"  # few shadows: one global variance
    rows = priv["rows"]
    assert {r["target"] for r in rows} == {"random", "full-data"}
    assert {r["attack"] for r in rows} >= {"loss", "lira-online", "lira-offline", "lira-online-fixed"}
    for r in rows:
        # leave-one-out over all 4 pipelines: every population image scored once per target pipeline
        assert r["num_members"] + r["num_nonmembers"] == 4 * 200
        assert r["pipelines"] == 4 and r["targets_pooled"] == 4
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 < r["target_accuracy"] <= 1.0
    units = sorted(out.glob("units/shadow-*.json"))
    assert len(units) == 8 and len(sorted(out.glob("units/shadow-*.npz"))) == 8
    logits = np.load(units[0].with_suffix(".npz"))["logits"]
    assert logits.shape == (200, 1, 10)  # [population, queries (no flip for digits), classes]
    # kill-and-resume: drop two finished pipelines; the rerun recomputes exactly those two
    for path in units[:2]:
        path.unlink()
    again = run_suite("quickstart", overrides=SHADOW, run_dir=out, device="cpu", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"]["computed"] == 2
    # the resumed run's cost counts the reused units too, not only this invocation's wall time
    assert again["run"]["units"]["reused"] >= 6
    assert again["run"]["unit_seconds"] >= 0.5 * results["run"]["unit_seconds"] > 0
    def no_timings(rs):
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rs]

    assert no_timings(again["privacy"]["rows"]) == no_timings(rows)  # same seeds and pipelines, same numbers
    text = (out / "report.md").read_text()
    assert "Shadow pipelines" in text and "lira-online" in text and (out / "plots" / "privacy_utility.png").is_file()


def test_audit_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["audit", "quickstart", "--out", str(out), "--device", "cpu",
                 *[a for item in SHADOW + ["privacy.shadows=0", "privacy.dp_epsilons=8",
                                           "privacy.dp_sgd.epochs=1"] for a in ("--set", item)]])
    assert code == 0
    printed = capsys.readouterr().out
    assert "attack: loss" in printed and "dp-sgd-eps8" in printed
    stored = json.loads((out / "results.json").read_text())
    assert "accuracy" not in stored and "nas" not in stored
    code = main(["audit", "quickstart", "--out", str(tmp_path / "bad"), "--set", "privacy.methods=dn"])
    assert code == 2


def test_audits_sit_beside_the_accountant(tmp_path):
    """privacy.audit runs the canary and one-run audits of DP-SGD and of a DP distiller inside a suite."""
    out = tmp_path / "audit"
    overrides = [
        "ipc=2", "methods=random,dp-dm", "methods.dp-dm.iterations=3", "methods.dp-dm.batch_real=8",
        "methods.dp-dm.epsilon=8", "network=convnet-d2", "network_args.width=8", "accuracy.enabled=false",
        "nas.enabled=false", "accuracy.networks=convnet-d2", "accuracy.network_args.convnet-d2.width=8",
        "accuracy.epochs=5", "accuracy.full_data_epochs=1", "privacy.ipc=2", "privacy.dp_epsilons=8",
        "privacy.dp_sgd.epochs=1", "privacy.bootstrap=0", "privacy.audit.enabled=true",
        "privacy.audit.trials=8", "privacy.audit.canaries=4",
        "privacy.audit.config={dp-dm: {train_epochs: 5}}",
    ]
    results = run_suite("quickstart", overrides=overrides, run_dir=out, device="cpu", progress=False)
    audits = {a["label"]: a for a in results["privacy"]["audits"]}
    assert set(audits) == {"dp-sgd-eps8", "dp-dm"}
    for a in audits.values():
        assert a["epsilon_theory"] is not None and a["epsilon_theory"] <= 8.0 + 1e-6
        for kind in ("canary", "one_run"):
            assert 0.0 <= a[kind]["epsilon_lb"] <= a["epsilon_theory"]
    assert audits["dp-sgd-eps8"]["canary"]["trials"] == 8
    text = (out / "report.md").read_text()
    assert "Empirical DP audits" in text and "dp-dm" in text
    # kill-and-resume inside an audit: the finished trials are units, only the lost one is recomputed
    entries = {p: json.loads(p.read_text())["kind"] for p in out.glob("units/*.json")}
    for path, kind in entries.items():
        if kind == "audit":
            path.unlink()
    trials = sorted(p for p, kind in entries.items() if kind == "audit-trial")
    assert len(trials) == 2 * (8 + 1)  # two targets x (8 canary trials + 1 one-run training)
    trials[0].unlink()
    again = run_suite("quickstart", overrides=overrides, run_dir=out, device="cpu", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"]["computed"] == 2 + 1  # the two audit summaries and the one lost trial
    assert [a["epsilon_theory"] for a in again["privacy"]["audits"]] == \
        [a["epsilon_theory"] for a in results["privacy"]["audits"]]


def test_audit_batch_size_keeps_the_sample_rate_fixed():
    import math

    from ddeval.privacy.dpaudit import canary_batch_size as audit_batch_size

    for n, canaries, batch in ((1347, 100, 256), (5000, 200, 256), (100, 10, 256), (1000, 1, 128)):
        b = audit_batch_size(n, canaries, batch)
        assert b >= batch and math.ceil((n - canaries) / b) == math.ceil(n / b)
        assert b == batch or math.ceil((n - canaries) / (b - 1)) != math.ceil(n / (b - 1))  # the smallest such b


def test_headline_attack_is_fixed_in_advance():
    from ddeval.privacy.evaluate import headline_attack

    lira = ("loss", "lira-online", "lira-offline", "lira-online-fixed", "lira-offline-fixed")
    assert headline_attack(lira, shadows=16) == "lira-online-fixed"
    assert headline_attack(lira, shadows=128) == "lira-online"
    assert headline_attack(("confidence", "loss"), shadows=0) == "loss"
    assert headline_attack(("entropy",), shadows=0) == "entropy"

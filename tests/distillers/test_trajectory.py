"""Trajectory matching: expert trajectories cached by content, TESLA's meta-gradient equal to MTT's unrolled
one (float64, with and without augmentation), and TESLA's peak memory flat in the number of student steps
while MTT's grows (measured in fresh processes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import distillers
from distillers import trajectories
from distillers.methods.common import build_network, make_augment
from distillers.methods.trajectory import (
    Plan,
    Student,
    adjoint_meta_gradient,
    mtt_defaults,
    step_graph_bytes,
    trajectory_memory_bytes,
    unrolled_meta_loss,
)
from distillers.trajectories import ExpertConfig, flat_params, load_or_train

NET = {"width": 8, "depth": 1}


def test_experts_are_trained_once_and_reused_by_content(tiny_digits, tmp_path, monkeypatch) -> None:
    real, _ = tiny_digits
    cfg = ExpertConfig(num_experts=2, epochs=3)
    first = load_or_train(real, network="convnet", network_args=NET, config=cfg, seed=5, cache_dir=tmp_path)
    assert len(first) == 2 and first[0].shape[0] == 4 and not torch.equal(first[0], first[1])
    assert not torch.equal(first[0][0], first[0][-1])  # the expert trained

    def no_training(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("an expert was retrained although it is cached")

    monkeypatch.setattr(trajectories, "_train_expert", no_training)
    again = load_or_train(real, network="convnet", network_args=NET, config=cfg, seed=5, cache_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Anything the experts depend on changes the key: another recipe is trained anew.
    with pytest.raises(AssertionError, match="retrained"):
        load_or_train(real, network="convnet", network_args=NET, config=ExpertConfig(num_experts=2, epochs=3, lr=0.02),
                      seed=5, cache_dir=tmp_path)
    monkeypatch.undo()
    damaged = sorted(tmp_path.rglob("expert-0000.pt"))[0]
    damaged.write_bytes(b"not a tensor")
    repaired = load_or_train(real, network="convnet", network_args=NET, config=cfg, seed=5, cache_dir=tmp_path)
    assert torch.equal(repaired[0], first[0])  # retrained, deterministically


@pytest.mark.parametrize("augmented", [False, True])
def test_tesla_meta_gradient_equals_mtt_unrolled_gradient(tiny_digits, augmented: bool) -> None:
    real, _ = tiny_digits
    net = build_network("convnet", real, 0, NET, "cpu").double()
    student = Student(net)
    g = torch.Generator().manual_seed(0)
    images = real.x[:20].double().clone().requires_grad_(True)
    labels = real.y[:20]
    start = flat_params(net).double()
    target = start + 0.01 * torch.randn(start.shape, generator=g, dtype=torch.float64)
    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    augment = make_augment(True, None, "digits") if augmented else None
    plan = Plan(20, 6, 7, torch.Generator().manual_seed(1), augmented)
    loss = unrolled_meta_loss(student, images, labels, lr, start, target, plan, augment)
    grad_images, grad_lr = torch.autograd.grad(loss, (images, lr))
    loss2, grad_images2, grad_lr2 = adjoint_meta_gradient(student, images, labels, lr, start, target, plan, augment)
    torch.testing.assert_close(loss2, loss.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_images2, grad_images, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(grad_lr2, grad_lr, rtol=1e-10, atol=0)
    assert grad_images.abs().max() > 0


_PEAK = r"""
import json, sys, torch
from distillers.methods.trajectory import Plan, Student, adjoint_meta_gradient, unrolled_meta_loss
from distillers import networks
from distillers.trajectories import flat_params
mode, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
torch.set_num_threads(1)
net = networks.create("convnet", channels=1, num_classes=10, image_size=(28, 28), seed=0, width=32, depth=2)
student = Student(net)
images = torch.randn(100, 1, 28, 28).requires_grad_(True)
labels = torch.arange(10).repeat_interleave(10)
start = flat_params(net)
target = start + 0.01 * torch.randn(start.shape)
lr = torch.tensor(0.01, requires_grad=True)
plan = Plan(100, steps, 100, torch.Generator().manual_seed(1), False)
def peak_kb():
    # VmHWM: this process image's peak RSS (ru_maxrss would carry over the forking parent's peak)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = peak_kb()
if mode == "mtt":
    loss = unrolled_meta_loss(student, images, labels, lr, start, target, plan, None)
    loss.backward()
else:
    adjoint_meta_gradient(student, images, labels, lr, start, target, plan, None)
after = peak_kb()
print(json.dumps({"mb": (after - before) / 1024}))
"""


def _peak_mb(mode: str, steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", _PEAK, mode, str(steps)], capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["mb"]


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_tesla_memory_is_flat_in_student_steps_while_mtt_grows() -> None:
    """Peak resident memory added by one meta-gradient, in fresh processes (VmHWM), at 3 and 12 steps.

    Measured here (100 images of 28x28, ConvNet of width 32 and depth 2): MTT 384-433 MB at 3 steps and 1,156 MB
    at 12 (about 80 MB of graph per step); TESLA 221-230 and 278-290 MB. Its 9 extra parameter vectors are 0.1 MB
    each, so the rest of its difference is the allocator's noise, hence a relative criterion.
    """
    mtt = [_peak_mb("mtt", n) for n in (3, 12)]
    tesla = [_peak_mb("tesla", n) for n in (3, 12)]
    assert mtt[1] - mtt[0] > 300, mtt
    assert tesla[1] - tesla[0] < 0.2 * (mtt[1] - mtt[0]), (tesla, mtt)


def test_authors_settings_by_ipc() -> None:
    assert mtt_defaults(1) == (50, 2, 1e-7, 0.01) and mtt_defaults(10) == (30, 20, 1e-5, 0.001)
    assert mtt_defaults(50) == mtt_defaults(10) and mtt_defaults(2) == mtt_defaults(1)
    cfg = distillers.create("mtt").config
    assert (cfg.iterations, cfg.expert_epochs, cfg.lr_img, cfg.init) == (5000, 2, 100.0, "real")
    assert cfg.expert_config() == ExpertConfig() and ExpertConfig().num_experts == 100
    assert distillers.create("tesla").config.soft_labels is False  # on for ImageNet in the paper
    with pytest.raises(distillers.DDError, match="exceeds"):
        distillers.create("mtt", max_start_epoch=50, experts={"epochs": 50})
    with pytest.raises(distillers.DDError, match="Unknown key"):
        distillers.create("mtt", experts={"epoch": 3})


@pytest.mark.parametrize("name", ["mtt", "tesla"])
def test_trajectory_matching_learns(tiny_digits, name: str) -> None:
    """One expert, always from epoch 0: the matching loss falls, the images move, the learned lr is kept."""
    real, _ = tiny_digits
    syn = distillers.create(name, iterations=40, syn_steps=5, max_start_epoch=1, lr_img=100, dsa=False,
                            network_args=NET, experts={"num_experts": 1, "epochs": 3}).distill(
        real, 2, seed=0, progress=False)
    history = syn.meta["loss_history"]
    assert sum(history[-5:]) < 0.8 * sum(history[:5]), history
    start = real.x[real.stratified_indices(2, torch.Generator().manual_seed(0))]
    assert (syn.images - start).abs().mean() > 1e-3 and syn.lr is not None and syn.lr > 0
    assert syn.meta["syn_steps"] == 5 and not syn.soft_labels


def _mnist_sized_student() -> tuple[Student, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The setup of ``_PEAK``: ConvNet width 32 depth 2, 100 images of 28x28."""
    from distillers import networks

    net = networks.create("convnet", channels=1, num_classes=10, image_size=(28, 28), seed=0, width=32, depth=2)
    return Student(net), torch.randn(100, 1, 28, 28), torch.arange(10).repeat_interleave(10), flat_params(net)


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_memory_estimate_matches_the_measured_peak_of_mtt() -> None:
    """The estimate made before a run (one probe step's saved tensors) against MTT's measured peak in a fresh
    process at 3 and 12 steps: the total within 35%, the growth per step within 25%."""
    student, images, labels, start = _mnist_sized_student()
    step = step_graph_bytes(student, images, labels, torch.tensor(0.01), start, None)
    estimate = {n: trajectory_memory_bytes(step, n, start.numel(), 0, constant_memory=False) / 2**20 for n in (3, 12)}
    measured = {n: _peak_mb("mtt", n) for n in (3, 12)}
    assert 0.65 < estimate[12] / measured[12] < 1.35, (estimate, measured)
    per_step = (estimate[12] - estimate[3]) / (measured[12] - measured[3])
    assert 0.75 < per_step < 1.25, (estimate, measured)
    tesla = trajectory_memory_bytes(step, 12, start.numel(), 0, constant_memory=True) / 2**20
    assert tesla < 0.25 * estimate[12]


def test_a_run_that_cannot_fit_stops_before_training_experts(tiny_digits, tmp_path, monkeypatch) -> None:
    """With less memory available than MTT's estimate, MTT stops at once (no expert trained) naming what to
    lower and TESLA; TESLA, whose estimate fits, runs; memory_check=false skips the check and is not part of a
    result's content key."""
    from distillers.config import key_dict
    from distillers.methods import trajectory

    real = tiny_digits[0]
    kw = {"iterations": 1, "syn_steps": 40, "max_start_epoch": 1, "dsa": False, "network_args": NET,
          "experts": {"num_experts": 1, "epochs": 2}, "expert_cache": str(tmp_path / "experts")}
    mtt, tesla = distillers.create("mtt", **kw), distillers.create("tesla", **kw)
    student, images = Student(build_network("convnet", real, 0, NET, torch.device("cpu"))), real.x[:20]
    step = step_graph_bytes(student, images, real.y[:20], torch.tensor(0.01), flat_params(student.net), None)
    params = flat_params(student.net).numel()
    need_mtt = trajectory_memory_bytes(step, 40, params, 3 * params, constant_memory=False)
    need_tesla = trajectory_memory_bytes(step, 40, params, 3 * params, constant_memory=True)
    assert need_tesla < need_mtt / 4
    monkeypatch.setattr(trajectory, "available_bytes", lambda device: (need_mtt + need_tesla) // 2)
    with pytest.raises(distillers.DDError, match=r"MTT at ipc 2 needs about .* lower syn_steps \(now 40\) or "
                                                 r"batch_syn \(now 20 .*use method tesla") as err:
        mtt.distill(real, 2, seed=0, progress=False)
    assert "\n" not in str(err.value)
    assert not any((tmp_path / "experts").rglob("*.pt"))  # stopped before any expert was trained
    syn = tesla.distill(real, 2, seed=0, progress=False)
    assert 0.8 < syn.meta["memory_estimate_mb"] * 2**20 / need_tesla < 1.25  # the same estimate, in the set
    monkeypatch.setattr(trajectory, "available_bytes", lambda device: 1)
    with pytest.raises(distillers.DDError, match="TESLA .* lower batch_syn"):
        tesla.distill(real, 2, seed=0, progress=False)
    distillers.create("mtt", **kw, memory_check=False).distill(real, 2, seed=0, progress=False)
    assert key_dict(mtt.config) == key_dict(distillers.create("mtt", **kw, memory_check=False).config)
    assert distillers.create("mtt", memory_check="no").config.memory_check is False  # as --set writes it
    with pytest.raises(distillers.DDError, match="memory_check must be true or false"):
        distillers.create("mtt", memory_check="maybe")

"""Trajectory matching: MTT (Cazenavette et al. 2022) and TESLA (Cui et al. 2023).

Both train a student from an expert's parameters at epoch ``t`` for ``syn_steps`` SGD steps on the synthetic
set (learnable learning rate) and minimise ``||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2``.
MTT differentiates through the unrolled steps with autograd: memory grows with ``syn_steps``, since every
step's graph is kept. TESLA computes the *same* meta-gradient by a reverse (adjoint) sweep that rebuilds one
step's graph at a time: it keeps only the N parameter vectors, not N activation graphs, so its memory is
constant in the number of steps up to those vectors. (The TESLA paper's own update drops the terms through
which earlier images change later steps' parameters; we keep them, so the two methods agree exactly.) TESLA
also labels the synthetic images with the expert's soft predictions at the target epoch (``soft_labels``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from distillers.config import (
    NOT_IN_KEY,
    DDError,
    check,
    check_positive_ints,
    check_positive_numbers,
    is_number,
)
from distillers.data import LabeledData
from distillers.memory import available_bytes
from distillers.methods.base import Distiller
from distillers.methods.common import (
    LossLog,
    build_network,
    check_augment,
    check_network,
    class_labels,
    draw_seed,
    make_augment,
)
from distillers.parameterize import initial_images
from distillers.synthetic import SyntheticSet
from distillers.trajectories import ExpertConfig, flat_params, load_or_train, unflatten

# MTT's CIFAR-10 settings by ipc (REFERENCE §3): syn_steps N, max_start_epoch, lr_lr, lr_init.
_BY_IPC = {1: (50, 2, 1e-7, 0.01), 10: (30, 20, 1e-5, 0.001)}


def mtt_defaults(ipc: int) -> tuple[int, int, float, float]:
    """(syn_steps, max_start_epoch, lr_lr, lr_init) of the nearest ipc in the authors' table."""
    return _BY_IPC[min(_BY_IPC, key=lambda k: (abs(math.log(ipc / k)), k))]


class Student:
    """A network evaluated at a flat parameter vector (``torch.func.functional_call``)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.buffers = dict(net.named_buffers())

    def logits(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        return functional_call(self.net, (unflatten(self.net, flat), self.buffers), (x,))

    def loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(flat, x), y)


class Plan:
    """The batches and augmentations of one student run, drawn once so they can be replayed exactly."""

    def __init__(self, m: int, steps: int, batch: int, generator: torch.Generator, augment: bool) -> None:
        self.indices: list[torch.Tensor] = []
        order: list[torch.Tensor] = []
        for _ in range(steps):
            if not order:
                order = list(torch.randperm(m, generator=generator).split(batch))
            self.indices.append(order.pop())
        self.seeds = [draw_seed(generator) for _ in range(steps)] if augment else [None] * steps


def _augmented(x: torch.Tensor, augment: Any, seed: int | None) -> torch.Tensor:
    """``x`` under the plan's augmentation for one step (the same transform each time ``seed`` is replayed)."""
    if augment is None or seed is None:
        return x
    return augment(x, generator=torch.Generator().manual_seed(seed))


def unrolled_meta_loss(student: Student, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
                       start: torch.Tensor, target: torch.Tensor, plan: Plan, augment: Any) -> torch.Tensor:
    """MTT: the normalised parameter-matching loss with the whole unrolled graph kept (memory ~ N steps)."""
    theta = start.clone().requires_grad_(True)
    for idx, seed in zip(plan.indices, plan.seeds, strict=True):
        x = _augmented(images[idx], augment, seed)
        grad = torch.autograd.grad(student.loss(theta, x, labels[idx]), theta, create_graph=True)[0]
        theta = theta - lr * grad
    return ((theta - target) ** 2).sum() / ((start - target) ** 2).sum()


def adjoint_meta_gradient(student: Student, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
                          start: torch.Tensor, target: torch.Tensor, plan: Plan,
                          augment: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TESLA: the same loss and its exact gradients (images, lr) with one step's graph alive at a time.

    Forward without graphs, keeping the N parameter vectors; then for i = N-1..0, with
    ``theta_{i+1} = theta_i - lr g_i(theta_i, X)`` and the adjoint ``a = dL/dtheta_{i+1}``:
    ``dL/dX += -lr (dg_i/dX)^T a``, ``dL/dlr += -g_i . a``, ``dL/dtheta_i = a - lr H_i a`` (a
    Hessian-vector product). Returns ``(loss, dL/dimages, dL/dlr)``.
    """
    lr_value = lr.detach()
    thetas = [start.detach()]
    grads = []
    for idx, seed in zip(plan.indices, plan.seeds, strict=True):
        theta = thetas[-1].clone().requires_grad_(True)
        x = _augmented(images.detach()[idx], augment, seed)
        with torch.enable_grad():
            g = torch.autograd.grad(student.loss(theta, x, labels[idx]), theta)[0]
        grads.append(g.detach())
        thetas.append((thetas[-1] - lr_value * g).detach())
    scale = ((start - target) ** 2).sum()
    loss = ((thetas[-1] - target) ** 2).sum() / scale
    adjoint = 2 * (thetas[-1] - target) / scale
    image_grad = torch.zeros_like(images)
    lr_grad = torch.zeros_like(lr_value)
    for i in range(len(plan.indices) - 1, -1, -1):
        lr_grad = lr_grad - (grads[i] * adjoint).sum()
        idx, seed = plan.indices[i], plan.seeds[i]
        theta = thetas[i].clone().requires_grad_(True)
        leaf = images.detach()[idx].clone().requires_grad_(True)
        x = _augmented(leaf, augment, seed)
        with torch.enable_grad():
            g = torch.autograd.grad(student.loss(theta, x, labels[idx]), theta, create_graph=True)[0]
            d_theta, d_x = torch.autograd.grad((g * adjoint).sum(), (theta, leaf))
        image_grad.index_add_(0, idx.to(images.device), -lr_value * d_x)
        adjoint = adjoint - lr_value * d_theta
    return loss.detach(), image_grad, lr_grad


# Resident memory an unrolled step adds over the bytes autograd saves for it (allocator slack, temporaries):
# 83 MB measured per step (VmHWM, 3 against 12 steps) against 67 MB of saved tensors, ConvNet width 32 on
# 100 MNIST-sized images (tests/distillers/test_trajectory.py).
ALLOCATOR_OVERHEAD = 1.25


def step_graph_bytes(student: Student, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
                     start: torch.Tensor, augment: Any) -> int:
    """Bytes one unrolled student step keeps alive until the meta-backward: the tensors autograd saves in the
    forward pass and in the differentiable backward (``create_graph``), each storage counted once, plus the
    step's new parameter vectors. Measured by running the step once on ``images`` (one batch)."""
    seen: dict[tuple[int, str], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), str(t.device))] = storage.nbytes()
        return t

    theta = start.detach().clone().requires_grad_(True)
    probe = images.detach().clone().requires_grad_(True)  # the synthetic images are leaves of the graph too
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = _augmented(probe, augment, 0)
        grad = torch.autograd.grad(student.loss(theta, x, labels), theta, create_graph=True)[0]
        _ = theta - lr * grad
    return sum(seen.values()) + 3 * start.numel() * start.element_size()


def trajectory_memory_bytes(step_bytes: int, steps: int, params: int, expert_floats: int, *,
                            constant_memory: bool) -> int:
    """Memory estimate of one MTT (``constant_memory=False``) or TESLA meta-gradient plus the loaded experts.

    MTT keeps every step's graph until the backward, which needs about one more step's worth of gradient
    buffers: ``(steps + 1) * step_bytes``. TESLA keeps the ``steps`` parameter vectors and gradients and
    one step's graph at a time: ``2 * step_bytes + 2 * steps * params * 4``. Both times the allocator's
    overhead, plus the expert trajectories held in memory (float32)."""
    graphs = 2 * step_bytes + 2 * steps * params * 4 if constant_memory else (steps + 1) * step_bytes
    return int(ALLOCATOR_OVERHEAD * graphs) + 4 * expert_floats


class MTT(Distiller):
    """Matching training trajectories: student steps on the synthetic set should follow an expert's.

    Defaults are the authors' (REFERENCE §3): experts trained 50 epochs with SGD lr 0.01 (100 of them),
    target M = 2 expert epochs ahead, image lr 100 (SGD momentum 0.5), and by ipc (CIFAR-10 table; None
    picks it): ipc 1 → N = 50 student steps, start epoch below 2, lr-of-lr 1e-7, initial lr 0.01; ipc 10 →
    N = 30, start below 20, 1e-5, 0.001. Experts are trained once and cached (``expert_cache``; see
    :mod:`distillers.trajectories`). The learned student learning rate is stored as the set's ``lr``.
    """

    name = "mtt"
    constant_memory = False

    @dataclass(frozen=True)
    class Config:
        iterations: int = 5000
        syn_steps: int | None = None
        expert_epochs: int = 2
        max_start_epoch: int | None = None
        lr_img: float = 100.0
        momentum_img: float = 0.5
        lr_lr: float | None = None
        lr_init: float | None = None
        batch_syn: int | None = None
        init: Literal["real", "noise"] = "real"
        dsa: bool = True
        dsa_strategy: str | None = None
        soft_labels: bool = False
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)
        experts: dict[str, Any] = field(default_factory=dict)
        expert_cache: str | None = None
        memory_check: bool = field(default=True, metadata=NOT_IN_KEY)

        def __post_init__(self) -> None:
            check_positive_ints(self, "iterations", "expert_epochs")
            check_positive_ints(self, "syn_steps", "max_start_epoch", "batch_syn", optional=True)  # None: authors'
            check_positive_numbers(self, "lr_img", "lr_lr", "lr_init", optional=True)
            check(is_number(self.momentum_img) and 0 <= self.momentum_img < 1,
                  f"momentum_img must lie in [0, 1), got {self.momentum_img!r}.")
            check_augment(self.dsa, self.dsa_strategy)
            check_network(self.network, self.network_args)
            experts = self.expert_config()
            start = self.max_start_epoch or 1  # start epochs are drawn from 0 .. max_start_epoch - 1
            check(start - 1 + self.expert_epochs <= experts.epochs,
                  f"max_start_epoch ({start}) - 1 + expert_epochs ({self.expert_epochs}) exceeds the experts' "
                  f"{experts.epochs} epochs; train longer experts (experts.epochs) or start earlier.")

        def expert_config(self) -> ExpertConfig:
            from distillers.config import build_config

            return build_config(ExpertConfig, dict(self.experts), what="experts")

    def settings(self, ipc: int) -> tuple[int, int, float, float]:
        steps, start, lr_lr, lr_init = mtt_defaults(ipc)
        cfg = self.config
        experts = cfg.expert_config()
        start = cfg.max_start_epoch or min(start, experts.epochs - cfg.expert_epochs + 1)
        return cfg.syn_steps or steps, max(1, start), cfg.lr_lr or lr_lr, cfg.lr_init or lr_init

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        steps, max_start, lr_lr, lr_init = self.settings(ipc)
        k = real.num_classes
        images = initial_images(real, ipc, cfg.init, generator).to(device).requires_grad_(True)
        net = build_network(cfg.network, real, 0, cfg.network_args, device)
        student = Student(net)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        batch = min(cfg.batch_syn or images.shape[0], images.shape[0])
        hard = class_labels(k, ipc).to(device)
        estimate = self.check_memory(student, images[:batch], hard[:batch], lr_init, augment, steps, batch, ipc,
                                     device)
        experts = load_or_train(real, network=cfg.network, network_args=cfg.network_args,
                                config=cfg.expert_config(), seed=draw_seed(generator), dsa_strategy=cfg.dsa_strategy,
                                cache_dir=cfg.expert_cache, device=device, progress=progress)
        labels: torch.Tensor = hard
        lr = torch.tensor(lr_init, device=device).requires_grad_(True)
        opt_img = torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum_img)
        opt_lr = torch.optim.SGD([lr], lr=lr_lr, momentum=0.5)
        log = LossLog(cfg.iterations, f"{self.name.upper()} diverged; lower lr_img (now "
                                      f"{cfg.lr_img}) or lr_lr (now {lr_lr}).", watch=[images, lr])
        start_time = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, self.name) as bar, log.guard():
            for _ in range(cfg.iterations):
                trajectory = experts[int(torch.randint(len(experts), (1,), generator=generator))]
                t = int(torch.randint(max_start, (1,), generator=generator))
                start = trajectory[t].to(device)
                target = trajectory[t + cfg.expert_epochs].to(device)
                if cfg.soft_labels:
                    with torch.no_grad():
                        labels = F.softmax(student.logits(target, images.detach()), dim=1)
                plan = Plan(images.shape[0], steps, batch, generator, augment is not None)
                opt_img.zero_grad(set_to_none=True)
                opt_lr.zero_grad(set_to_none=True)
                if self.constant_memory:
                    loss, images.grad, lr.grad = adjoint_meta_gradient(student, images, labels, lr, start, target,
                                                                       plan, augment)
                else:
                    loss = unrolled_meta_loss(student, images, labels, lr, start, target, plan, augment)
                    loss.backward()
                opt_img.step()
                opt_lr.step()
                with torch.no_grad():
                    lr.clamp_(min=1e-8)  # a learning rate must stay positive
                log.show(loss, bar)
        log.flush()
        seconds = time.perf_counter() - start_time
        final_labels = labels.detach().cpu() if cfg.soft_labels else hard.cpu()
        return self.make_set(images.detach(), final_labels, real, lr=float(lr.detach()), syn_steps=steps,
                             max_start_epoch=max_start, seconds_per_iteration=round(seconds / cfg.iterations, 6),
                             memory_estimate_mb=round(estimate / 2**20, 1), **log.meta())

    def check_memory(self, student: Student, images: torch.Tensor, labels: torch.Tensor, lr_init: float,
                     augment: Any, steps: int, batch: int, ipc: int, device: torch.device) -> int:
        """Estimate the run's memory (one probe step, :func:`trajectory_memory_bytes`) before the experts are
        trained or loaded, and stop with what to change when it exceeds what ``device`` has available."""
        cfg = self.config
        start = flat_params(student.net).to(device)
        step = step_graph_bytes(student, images, labels, torch.tensor(lr_init, device=device), start, augment)
        experts = cfg.expert_config()  # trajectories are held in RAM, so they count only against the CPU's memory
        expert_floats = experts.num_experts * (experts.epochs + 1) * start.numel() if device.type == "cpu" else 0
        estimate = trajectory_memory_bytes(step, steps, start.numel(), expert_floats,
                                           constant_memory=self.constant_memory)
        available = available_bytes(device) if cfg.memory_check else None
        if available is not None and estimate > available:
            gb = 2**30
            where = "GPU" if device.type == "cuda" else "RAM"
            if self.constant_memory:
                fix = (f"lower batch_syn (now {batch} images per student step) or the image count (ipc {ipc}), or "
                       f"use fewer or shorter experts (experts.num_experts, experts.epochs)")
            else:
                fix = (f"lower syn_steps (now {steps}) or batch_syn (now {batch} images per student step), or "
                       "use method tesla, whose memory does not grow with syn_steps")
            raise DDError(f"{self.name.upper()} at ipc {ipc} needs about {estimate / gb:.1f} GB ({steps} student "
                          f"steps, {step / 2**20:.0f} MB of graph each) but only {available / gb:.1f} GB of "
                          f"{where} is available; {fix}. (memory_check=false skips this check.)")
        return estimate


class TESLA(MTT):
    """MTT with the meta-gradient computed in memory constant in ``syn_steps`` (exactly MTT's gradient), and
    optionally soft labels from the expert at the target epoch (``soft_labels``; the authors use them for
    ImageNet-1K, not for CIFAR, so they are off by default: early-epoch experts give nearly uniform labels).
    """

    name = "tesla"
    constant_memory = True


__all__ = ["MTT", "TESLA", "adjoint_meta_gradient", "mtt_defaults", "unrolled_meta_loss"]

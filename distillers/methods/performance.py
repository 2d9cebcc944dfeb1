"""Performance matching by unrolled inner training: DD (Wang et al. 2018) and label distillation (Bohdal et al. 2020).

Both train a network for a few gradient steps on the synthetic set inside the graph
(``torch.func.functional_call`` on a flat parameter vector), measure the trained network's cross-entropy on
a batch of real images, and backpropagate that loss through the unrolled steps (REFERENCE §3):

- **DD** learns the images and one learning rate per inner step. The synthetic set is split into
  ``steps`` groups (one group per distill step, every class in each), which are applied in order for
  ``inner_epochs`` passes: 10 steps x 3 epochs = 30 inner steps in the paper. ``init_mode="fixed"`` learns
  the images for one fixed network initialisation (the paper's headline: the images only work from that
  start, with the learned step sizes; :func:`replay` trains that network); ``"random"`` draws a fresh
  initialisation every iteration, so the images work from any start.
- **Label distillation** keeps real base images fixed and learns their labels: each iteration takes
  ``inner_steps`` steps of an online model on the base images with the current soft labels, scores the
  stepped model on real data, updates the labels, and keeps the stepped model (reset every ``reset_every``
  iterations).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from distillers.config import check, check_positive_ints, check_positive_numbers, is_number
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.methods.base import Distiller
from distillers.methods.common import (
    LossLog,
    build_network,
    check_network,
    class_labels,
    draw_seed,
    step_images,
)
from distillers.methods.trajectory import Student
from distillers.parameterize import initial_images
from distillers.synthetic import SyntheticSet
from distillers.trajectories import flat_params


def dd_network(name: str, data: LabeledData, seed: int, network_args: dict[str, Any], net_init: str,
               device: torch.device | str) -> torch.nn.Module:
    """A network initialised as DD initialises it: ``"xavier"`` (the authors' code: Xavier-normal weights with
    gain 1 and zero biases in every conv and linear layer, drawn from ``seed``) or ``"default"`` (PyTorch's).

    PyTorch's default initialisation is much smaller for LeNet, and a few dozen small GD steps from it barely
    move the loss: that is why the authors' init matters here."""
    net = build_network(name, data, seed, network_args, device)
    if net_init == "xavier":
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                    weight = torch.empty(module.weight.shape)
                    torch.nn.init.xavier_normal_(weight, gain=1.0, generator=generator)
                    module.weight.copy_(weight)
                    if module.bias is not None:
                        module.bias.zero_()
    return net


def _inverse_softplus(value: float) -> float:
    return math.log(math.expm1(value))


def _default_iterations(real: LabeledData, epochs: int, batch_real: int) -> int:
    """``epochs`` passes over the real data in batches of ``batch_real`` (the authors count outer epochs)."""
    return epochs * math.ceil(len(real) / min(batch_real, len(real)))


class DD(Distiller):
    """Dataset distillation (Wang et al. 2018): learn images and per-step learning rates through unrolled GD.

    Defaults are the authors' (REFERENCE §3): 10 distill steps x 3 epochs, learnable step sizes starting at
    0.02 (use ``lr_init=0.001`` for CIFAR), outer Adam lr 0.01 with betas (0.5, 0.999) halved every tenth of
    the run, 400 outer epochs of real batches of 1024, images from noise, LeNet. ``steps=None`` uses
    ``min(ipc, 10)`` distill steps (ipc 1: one step of 10 images; ipc 10: ten steps of one image per class);
    ``ipc`` must be a multiple of ``steps``. The set's ``lr`` is the mean learned step size; the whole
    schedule, the mode and (fixed mode) the initialisation seed are in its metadata for :func:`replay`.
    """

    name = "dd"

    @dataclass(frozen=True)
    class Config:
        iterations: int | None = None
        epochs: int = 400
        batch_real: int = 1024
        steps: int | None = None
        inner_epochs: int = 3
        lr_init: float = 0.02
        lr_img: float = 0.01
        decay: float = 0.5
        init_mode: Literal["random", "fixed"] = "random"
        net_init: Literal["xavier", "default"] = "xavier"
        nets_per_iteration: int = 1
        init: Literal["noise", "real"] = "noise"
        network: str = "lenet"
        network_args: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_positive_ints(self, "epochs", "batch_real", "inner_epochs", "nets_per_iteration")
            check_positive_ints(self, "iterations", "steps", optional=True)
            check_positive_numbers(self, "lr_init", "lr_img")
            check(is_number(self.decay) and 0 < self.decay <= 1, f"decay must lie in (0, 1], got {self.decay!r}.")
            check(self.init_mode in ("random", "fixed"), f'init_mode must be "random" or "fixed", got {self.init_mode!r}.')
            check(self.init in ("noise", "real"), f'init must be "noise" or "real", got {self.init!r}.')
            check(self.net_init in ("xavier", "default"),
                  f'net_init must be "xavier" or "default", got {self.net_init!r}.')
            check_network(self.network, self.network_args)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        steps = cfg.steps or min(ipc, 10)
        if ipc % steps:
            raise DDError(f"DD splits the {ipc} images per class over steps={steps} distill steps; choose steps "
                          f"that divide ipc (e.g. steps={math.gcd(ipc, steps)}) or leave steps unset.")
        k = real.num_classes
        iterations = cfg.iterations or _default_iterations(real, cfg.epochs, cfg.batch_real)
        images = _grouped(initial_images(real, ipc, cfg.init, generator), k, ipc, steps).to(device)
        labels = _grouped(class_labels(k, ipc), k, ipc, steps).to(device)
        images.requires_grad_(True)
        n_lrs = steps * cfg.inner_epochs
        raw_lrs = torch.full((n_lrs,), _inverse_softplus(cfg.lr_init), device=device, requires_grad=True)
        optimizer = torch.optim.Adam([images, raw_lrs], lr=cfg.lr_img, betas=(0.5, 0.999))
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, iterations // 10), gamma=cfg.decay)
        init_seed = draw_seed(generator)
        net = dd_network(cfg.network, real, init_seed, cfg.network_args, cfg.net_init, device)
        student = Student(net)
        fixed_start = flat_params(net)
        x_real, y_real = real.x.to(device), real.y.to(device)
        batch = min(cfg.batch_real, len(real))
        log = LossLog(iterations, f"DD diverged; lower lr_img (now {cfg.lr_img}) or lr_init "
                                  f"(now {cfg.lr_init}).", watch=[images, raw_lrs])
        group = images.shape[0] // steps
        start_time = time.perf_counter()
        with self.progress_bar(iterations, progress, "dd") as bar, log.guard():
            for _ in range(iterations):
                idx = torch.randperm(len(real), generator=generator)[:batch].to(device)
                lrs = F.softplus(raw_lrs)
                loss = torch.zeros((), device=device)
                for _ in range(cfg.nets_per_iteration):
                    if cfg.init_mode == "fixed":
                        theta = fixed_start
                    else:
                        theta = flat_params(dd_network(cfg.network, real, draw_seed(generator), cfg.network_args,
                                                 cfg.net_init, device))
                    theta = theta.clone().requires_grad_(True)
                    for j in range(n_lrs):
                        s = j % steps
                        x, y = images[s * group:(s + 1) * group], labels[s * group:(s + 1) * group]
                        grad = torch.autograd.grad(student.loss(theta, x, y), theta, create_graph=True)[0]
                        theta = theta - lrs[j] * grad
                    loss = loss + student.loss(theta, x_real[idx], y_real[idx]) / cfg.nets_per_iteration
                step_images(optimizer, loss, log, bar)
                scheduler.step()
        log.flush()
        seconds = time.perf_counter() - start_time
        schedule = [round(float(v), 8) for v in F.softplus(raw_lrs.detach()).cpu()]
        return self.make_set(
            images.detach(), labels.cpu(), real, lr=sum(schedule) / len(schedule),
            lr_schedule=schedule, steps=steps, inner_epochs=cfg.inner_epochs, init_mode=cfg.init_mode,
            net_init=cfg.net_init, init_seed=init_seed if cfg.init_mode == "fixed" else None, network=cfg.network,
            network_args=dict(cfg.network_args), iterations=iterations,
            seconds_per_iteration=round(seconds / iterations, 6), **log.meta())


def _grouped(tensor: torch.Tensor, k: int, ipc: int, steps: int) -> torch.Tensor:
    """Reorder a class-by-class tensor (``ipc`` rows per class) into ``steps`` groups that each hold
    ``ipc / steps`` rows of every class, group after group (DD applies one group per distill step)."""
    per = ipc // steps
    index = torch.arange(k * ipc).view(k, steps, per).transpose(0, 1).reshape(-1)
    return tensor[index]


def replay(syn: SyntheticSet, *, seed: int | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Train a network the way a DD set was learned to train it: its learned step sizes, groups and epochs.

    Fixed-init sets start from the initialisation they were learned for (``seed`` is ignored); random-init
    sets start from a fresh initialisation drawn from ``seed`` (default 0). Returns the trained network.
    """
    meta = syn.meta
    if "lr_schedule" not in meta or meta.get("method") != "dd":
        raise DDError("replay needs a set distilled by DD (its metadata holds the learned step sizes); "
                      "train other sets with the standard protocol (distillers.protocol.train).")
    data = syn.as_labeled()
    init_seed = meta["init_seed"] if meta.get("init_mode") == "fixed" else (0 if seed is None else seed)
    net = dd_network(meta["network"], data, int(init_seed), dict(meta.get("network_args") or {}),
                     meta.get("net_init", "default"), device)
    student = Student(net)
    theta = flat_params(net)
    steps, schedule = int(meta["steps"]), [float(v) for v in meta["lr_schedule"]]
    x, y = syn.images.to(device), syn.hard_labels.to(device)
    group = x.shape[0] // steps
    for j, lr in enumerate(schedule):
        s = j % steps
        theta = theta.clone().requires_grad_(True)
        grad = torch.autograd.grad(student.loss(theta, x[s * group:(s + 1) * group], y[s * group:(s + 1) * group]),
                                   theta)[0]
        theta = (theta - lr * grad).detach()
    torch.nn.utils.vector_to_parameters(theta, net.parameters())
    return net


def replay_accuracy(syn: SyntheticSet, test: LabeledData, *, seed: int = 0,
                    device: str | torch.device = "cpu") -> float:
    """Test accuracy of a network trained by :func:`replay`: DD's own evaluation protocol (the paper's
    numbers), as opposed to the standard recipe's 300 epochs from a fresh initialisation."""
    from distillers.protocol import evaluate

    return evaluate(replay(syn, seed=seed, device=device), test, device=device)


class LabelDistillation(Distiller):
    """Label distillation (Bohdal et al. 2020): learn soft labels for fixed real base images.

    Each iteration steps an online ``network`` ``inner_steps`` times with SGD (``inner_lr``) on the base
    images against the current soft labels, takes the cross-entropy of the stepped network on a real batch,
    and updates the labels with Adam (``lr_label``). The online network keeps the step and restarts from a
    fresh initialisation every ``reset_every`` iterations, so the labels must teach from any stage of
    training. Labels are ``softmax(z)`` of free vectors ``z``, starting with ``label_init`` of the mass on the
    true class; the set trains with cross-entropy against them. ``inner_lr`` 0.3: with 0.01 one step barely
    moves a freshly reset network, the meta-loss stays at ln 10 and the labels learn nothing (measured on
    digits at ipc 10: 2000 iterations left the loss at 2.30 and the set 3 points below the random subset;
    0.3 gave 95.3% against the random subset's 94.3%).
    """

    name = "label-distillation"

    @dataclass(frozen=True)
    class Config:
        iterations: int = 1000
        batch_real: int = 1024
        inner_steps: int = 1
        inner_lr: float = 0.3
        lr_label: float = 0.01
        reset_every: int = 50
        label_init: float = 0.9
        network: str = "lenet"
        network_args: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_positive_ints(self, "iterations", "batch_real", "inner_steps", "reset_every")
            check_positive_numbers(self, "inner_lr", "lr_label")
            check(is_number(self.label_init) and 0 < self.label_init < 1,
                  f"label_init (initial mass on the true class) must lie in (0, 1), got {self.label_init!r}.")
            check_network(self.network, self.network_args)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        images = initial_images(real, ipc, "real", generator).to(device)
        hard = class_labels(k, ipc).to(device)
        logits = label_logits(hard, k, cfg.label_init).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=cfg.lr_label)
        x_real, y_real = real.x.to(device), real.y.to(device)
        batch = min(cfg.batch_real, len(real))
        net = build_network(cfg.network, real, 0, cfg.network_args, device)
        student = Student(net)
        theta = torch.empty(0)
        log = LossLog(cfg.iterations, f"Label distillation diverged; lower lr_label (now "
                                      f"{cfg.lr_label}) or inner_lr (now {cfg.inner_lr}).", watch=[logits])
        start_time = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "label-distillation") as bar, log.guard():
            for it in range(cfg.iterations):
                if it % cfg.reset_every == 0:
                    theta = flat_params(build_network(cfg.network, real, draw_seed(generator), cfg.network_args,
                                                      device))
                targets = F.softmax(logits, dim=1)
                theta_i = theta.clone().requires_grad_(True)
                for _ in range(cfg.inner_steps):
                    inner = F.cross_entropy(student.logits(theta_i, images), targets)
                    theta_i = theta_i - cfg.inner_lr * torch.autograd.grad(inner, theta_i, create_graph=True)[0]
                idx = torch.randperm(len(real), generator=generator)[:batch].to(device)
                loss = student.loss(theta_i, x_real[idx], y_real[idx])
                step_images(optimizer, loss, log, bar)
                theta = theta_i.detach()
        log.flush()
        seconds = time.perf_counter() - start_time
        soft = F.softmax(logits.detach(), dim=1).cpu()
        return self.make_set(images, soft, real, seconds_per_iteration=round(seconds / cfg.iterations, 6),
                             label_agreement=float((soft.argmax(1) == hard.cpu()).float().mean()), **log.meta())


def label_logits(hard: torch.Tensor, num_classes: int, confidence: float) -> torch.Tensor:
    """Logits whose softmax puts ``confidence`` on each row's class and spreads the rest evenly."""
    rest = (1.0 - confidence) / (num_classes - 1) if num_classes > 1 else 1.0
    probs = torch.full((hard.numel(), num_classes), rest, device=hard.device)
    probs.scatter_(1, hard.view(-1, 1), confidence)
    return probs.log()


__all__ = ["DD", "LabelDistillation", "label_logits", "replay", "replay_accuracy"]

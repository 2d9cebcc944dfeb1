"""Kernel methods: kernel inducing points (KIP, Nguyen et al. 2021) and neural feature regression with a model
pool (FRePO, Zhou et al. 2022).

In both, the synthetic set is the support set of a kernel ridge regression: KIP predicts a batch of real images from
the synthetic ones through the kernel, and moves the synthetic images (and optionally their labels) to make
that prediction right (REFERENCE §3). Labels are centred one-hot vectors (one-hot minus 1/K). No network is
trained during distillation; the kernel stands for an infinitely wide one. FRePO uses instead the kernel of
the penultimate features of finite networks, which it trains alongside on the synthetic set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from distillers.config import check, check_positive_ints, check_positive_numbers, is_number
from distillers.data import LabeledData
from distillers.kernels import empirical_ntk, fc_kernels, krr_predict
from distillers.methods.base import Distiller
from distillers.methods.common import (
    LossLog,
    build_network,
    check_augment,
    check_network,
    class_labels,
    draw_seed,
    embed,
    make_augment,
    step_images,
)
from distillers.optim import Lamb
from distillers.parameterize import initial_images
from distillers.synthetic import SyntheticSet


def centred_one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot rows minus ``1/K``: KIP's and FRePO's regression targets."""
    return torch.nn.functional.one_hot(labels, num_classes).float() - 1.0 / num_classes


def half_squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * ||pred - target||^2`` per row, averaged: the regression loss of KIP and FRePO."""
    return 0.5 * ((pred - target) ** 2).sum(1).mean()


class KIP(Distiller):
    """Kernel inducing points: learn the support set of kernel ridge regression on a real target batch.

    Defaults follow the paper (REFERENCE §3): Adam with lr 0.04, target batch up to 5,000 real images per
    iteration, centred one-hot labels, regulariser ``reg * trace(K_ss) / n``. ``kernel``: ``ntk`` or ``nngp``
    of a fully connected ReLU network of ``depth`` layers in closed form (the first paper), or ``empirical``:
    the empirical NTK of ``network`` at a fresh random initialisation each iteration (any registered network;
    costs one Jacobian per image, so keep ``batch_target`` small). ``learn_labels`` also learns the label
    vectors; the set is then trained with squared error onto them (``label_loss="mse"``), otherwise with
    cross-entropy on its hard labels, like every other set.
    """

    name = "kip"

    @dataclass(frozen=True)
    class Config:
        iterations: int = 1000
        lr_img: float = 0.04
        lr_label: float = 0.04
        batch_target: int = 5000
        kernel: Literal["ntk", "nngp", "empirical"] = "ntk"
        depth: int = 3
        w_std: float = math.sqrt(2.0)
        b_std: float = 0.1
        reg: float = 1e-6
        learn_labels: bool = False
        init: Literal["real", "noise"] = "real"
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_positive_ints(self, "iterations", "batch_target", "depth")
            check_positive_numbers(self, "lr_img", "lr_label", "w_std")
            for name in ("reg", "b_std"):
                value = getattr(self, name)
                check(is_number(value) and value >= 0, f"{name} must be a number >= 0, got {value!r}.")
            if self.kernel == "empirical":
                check_network(self.network, self.network_args)

    def _kernels(self, real: LabeledData, generator: torch.Generator, device: torch.device) -> Any:
        cfg = self.config
        if cfg.kernel == "empirical":
            def empirical(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
                net.eval()
                net.requires_grad_(True)
                return empirical_ntk(net, torch.cat([a, b]), b)

            return empirical

        def closed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            both = torch.cat([a, b])
            return fc_kernels(both, b, depth=cfg.depth, w_std=cfg.w_std, b_std=cfg.b_std)[cfg.kernel]

        return closed

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        syn = initial_images(real, ipc, cfg.init, generator).to(device).requires_grad_(True)
        hard = class_labels(k, ipc)
        y_syn = centred_one_hot(hard, k).to(device).requires_grad_(cfg.learn_labels)
        groups = [{"params": [syn], "lr": cfg.lr_img}] + ([{"params": [y_syn], "lr": cfg.lr_label}]
                                                         if cfg.learn_labels else [])
        optimizer = torch.optim.Adam(groups)
        x_real, y_real = real.x.to(device), centred_one_hot(real.y, k).to(device)
        batch = min(cfg.batch_target, len(real))
        kernel = self._kernels(real, generator, device)
        log = LossLog(cfg.iterations, f"KIP diverged; lower lr_img (now {cfg.lr_img}) "
                                      f"or raise reg (now {cfg.reg}).", watch=[syn, y_syn])
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "kip") as bar, log.guard():
            for _ in range(cfg.iterations):
                idx = torch.randperm(len(real), generator=generator)[:batch].to(device)
                joint = kernel(x_real[idx], syn)  # [(batch + m), m]: target rows, then support rows
                k_ts, k_ss = joint[:batch], joint[batch:]
                pred = krr_predict(k_ts, k_ss, y_syn, cfg.reg)
                loss = half_squared_error(pred, y_real[idx])
                step_images(optimizer, loss, log, bar)
        log.flush()
        seconds = time.perf_counter() - start
        if cfg.learn_labels:
            return self.make_set(syn.detach(), y_syn.detach(), real, label_loss="mse",
                                 seconds_per_iteration=round(seconds / cfg.iterations, 6), **log.meta())
        return self.make_set(syn.detach(), hard, real, seconds_per_iteration=round(seconds / cfg.iterations, 6),
                             **log.meta())


def margin_penalty(labels: torch.Tensor) -> torch.Tensor:
    """FRePO's label regulariser: ``-min(top1 - top2, 1/K)`` per row, averaged. It rewards each learned label
    for keeping its top class ahead of the runner-up by up to ``1/K`` and no further."""
    top2 = labels.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1]).clamp(max=1.0 / labels.shape[1]).mean()


class FRePO(Distiller):
    """Neural feature regression with a pool of online models (Zhou et al. 2022).

    Each iteration takes one model from a pool of ``pool_size``, embeds the synthetic images and a real batch
    with it (penultimate features ``F``), predicts the real batch by kernel ridge regression on the feature
    kernel ``F F^T`` (regulariser ``reg * trace / n``), and updates images and labels from the squared error
    plus the label-margin penalty (:func:`margin_penalty`). The model then takes one Adam step (``lr_online``)
    on the synthetic set (MSE onto the learned labels, DSA-augmented) and is re-initialised after
    ``max_online_updates`` steps; the pool starts staggered so its models span early to late training.
    Defaults are the authors' (REFERENCE §3): pool 10, reset after 100, LAMB with lr 3e-4 and cosine decay to
    a tenth for images and labels, Adam 3e-4 online, real batch 1024, labels learned from centred one-hot
    vectors, ConvNet-3 width 128 without normalisation. LAMB's step is relative (3e-4 of the images' norm),
    so short CPU runs need a larger ``lr_img``. The set is trained with MSE onto its labels, as the authors
    evaluate it.
    """

    name = "frepo"

    @dataclass(frozen=True)
    class Config:
        iterations: int = 1000
        lr_img: float = 3e-4
        lr_online: float = 3e-4
        batch_real: int = 1024
        batch_online: int = 500
        pool_size: int = 10
        max_online_updates: int = 100
        reg: float = 1e-6
        learn_labels: bool = True
        dsa: bool = True
        dsa_strategy: str | None = None
        init: Literal["real", "noise"] = "real"
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=lambda: {"norm": "none"})

        def __post_init__(self) -> None:
            check_positive_ints(self, "iterations", "batch_real", "batch_online", "pool_size", "max_online_updates")
            check_positive_numbers(self, "lr_img", "lr_online")
            check(is_number(self.reg) and self.reg >= 0, f"reg must be a number >= 0, got {self.reg!r}.")
            check_augment(self.dsa, self.dsa_strategy)
            check_network(self.network, self.network_args)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        syn = initial_images(real, ipc, cfg.init, generator).to(device).requires_grad_(True)
        hard = class_labels(k, ipc)
        # centred one-hot, scaled by sqrt(K / 10) as the authors do, so the label norm does not grow with K
        y_syn = (centred_one_hot(hard, k) / math.sqrt(k / 10)).to(device).requires_grad_(cfg.learn_labels)
        optimizer = Lamb([syn, y_syn] if cfg.learn_labels else [syn], lr=cfg.lr_img)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, cfg.iterations) / cfg.iterations)))
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        pool = _ModelPool(cfg, real, generator, device)
        x_real = real.x.to(device)
        y_real = (centred_one_hot(real.y, k) / math.sqrt(k / 10)).to(device)
        batch = min(cfg.batch_real, len(real))
        for slot in range(cfg.pool_size):  # stagger: model i starts i/pool of the way to its reset
            for _ in range(slot * cfg.max_online_updates // cfg.pool_size):
                pool.train_step(slot, syn.detach(), y_syn.detach(), augment)
        log = LossLog(cfg.iterations, f"FRePO diverged; lower lr_img (now {cfg.lr_img}) or raise "
                                      f"reg (now {cfg.reg}).", watch=[syn, y_syn])
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "frepo") as bar, log.guard():
            for _ in range(cfg.iterations):
                slot = int(torch.randint(cfg.pool_size, (1,), generator=generator))
                net = pool.models[slot]
                net.eval()
                net.requires_grad_(False)  # the loss moves images and labels only, not the model
                idx = torch.randperm(len(real), generator=generator)[:batch].to(device)
                with torch.no_grad():
                    f_real = embed(net, x_real[idx])
                f_syn = embed(net, syn)
                pred = krr_predict(f_real @ f_syn.T, f_syn @ f_syn.T, y_syn, cfg.reg)
                loss = half_squared_error(pred, y_real[idx])
                if cfg.learn_labels:
                    loss = loss + margin_penalty(y_syn)
                step_images(optimizer, loss, log, bar)
                scheduler.step()
                pool.train_step(slot, syn.detach(), y_syn.detach(), augment)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(syn.detach(), y_syn.detach(), real, label_loss="mse", resets=pool.resets,
                             seconds_per_iteration=round(seconds / cfg.iterations, 6), **log.meta())


class _ModelPool:
    """FRePO's online models: each trained a step at a time on the synthetic set and re-initialised after
    ``max_online_updates`` steps (fresh weights and a fresh Adam state)."""

    def __init__(self, cfg: Any, real: LabeledData, generator: torch.Generator, device: torch.device) -> None:
        self.cfg, self.real, self.generator, self.device = cfg, real, generator, device
        fresh = [self._fresh() for _ in range(cfg.pool_size)]
        self.models = [net for net, _ in fresh]
        self.optimizers = [opt for _, opt in fresh]
        self.updates = [0] * cfg.pool_size
        self.resets = 0

    def _fresh(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        cfg = self.cfg
        net = build_network(cfg.network, self.real, draw_seed(self.generator), cfg.network_args, self.device)
        return net, torch.optim.Adam(net.parameters(), lr=cfg.lr_online)

    def train_step(self, slot: int, images: torch.Tensor, labels: torch.Tensor, augment: Any) -> None:
        cfg = self.cfg
        net, optimizer = self.models[slot], self.optimizers[slot]
        net.train()
        net.requires_grad_(True)
        n = images.shape[0]
        idx = torch.randperm(n, generator=self.generator)[:min(cfg.batch_online, n)].to(images.device)
        x = images[idx]
        if augment is not None:
            x = augment(x, generator=self.generator)
        loss = half_squared_error(net(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.updates[slot] += 1
        if self.updates[slot] >= cfg.max_online_updates:
            self.models[slot], self.optimizers[slot] = self._fresh()
            self.updates[slot] = 0
            self.resets += 1

"""Distribution matching (DM, Zhao & Bilen 2023).

DM makes the synthetic images of each class have the same mean embedding as the real images of that class,
under many randomly initialised (never trained) networks. No bilevel optimisation, hence its low cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch

from distillers.config import check
from distillers.data import LabeledData
from distillers.fastpath import FastPath
from distillers.methods.base import Distiller
from distillers.methods.common import (
    ClassSampler,
    LossLog,
    build_network,
    check_matching,
    class_labels,
    draw_seed,
    initial_images,
    make_augment,
    step_images,
)
from distillers.synthetic import SyntheticSet

# --------------------------------------------------------------------------------------------- DM


class DM(Distiller):
    """Distribution matching: match per-class mean embeddings of real and synthetic images under random nets.

    Defaults are the authors' (REFERENCE §3): 20,000 iterations, image lr 1.0 with SGD momentum 0.5, 256 real
    images per class per iteration, real init, DSA on, a fresh randomly initialised ConvNet each iteration
    whose weights are frozen; loss Σ_c ‖mean embed(real_c) − mean embed(syn_c)‖² on penultimate features.
    ``fast`` embeds under bf16 autocast (and compiles ``embed`` for runs of 250+ iterations); the means and
    the loss stay float32.
    ``batch_real`` is capped at the class size. ``meta`` records ``loss_history`` (window means of the loss,
    one per ``loss_every`` iterations) and ``seconds_per_iteration``.
    """

    name = "dm"

    @dataclass(frozen=True)
    class Config:
        iterations: int = 20000
        lr_img: float = 1.0
        momentum: float = 0.5
        batch_real: int = 256
        init: Literal["real", "noise"] = "real"
        dsa: bool = True
        dsa_strategy: str | None = None
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)
        fast: bool = True

        def __post_init__(self) -> None:
            check_matching(self)
            check(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}.")

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        sampler = ClassSampler(real, device)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        syn = initial_images(real, ipc, cfg.init, generator).to(device).requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        fast = FastPath.resolve(cfg.fast, device, steps=cfg.iterations)
        log = LossLog(cfg.iterations, f"DM diverged (the loss became NaN or Inf); lower lr_img (now {cfg.lr_img}).")
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "dm") as bar:
            for _ in range(cfg.iterations):
                net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
                net.train()  # as the authors do; BatchNorm nets then normalise with batch statistics
                net.requires_grad_(False)
                embed_fn = fast.wrap(cast(Callable[[torch.Tensor], torch.Tensor], net.embed))
                reals, syns = [], []
                for c in range(k):
                    x_real = sampler.sample(c, cfg.batch_real, generator)
                    x_syn = syn[c * ipc:(c + 1) * ipc]
                    if augment is not None:
                        seed = draw_seed(generator)  # siamese: the same transform for both batches
                        x_real, x_syn = augment(x_real, seed=seed), augment(x_syn, seed=seed)
                    reals.append(x_real)
                    syns.append(x_syn)
                # One forward pass for all classes: identical to per-class passes for per-sample norms
                # (instance/group/layer norm) and the authors' choice for BatchNorm nets.
                with fast.autocast():
                    with torch.no_grad():
                        f_real = embed_fn(torch.cat(reals)).float()
                    f_syn = embed_fn(torch.cat(syns)).float()
                loss = torch.zeros((), device=device)
                for fr, fs in zip(f_real.split([len(r) for r in reals]), f_syn.split(ipc), strict=True):
                    loss = loss + ((fr.mean(0) - fs.mean(0)) ** 2).sum()
                step_images(optimizer, loss, log, bar)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(syn.detach(), class_labels(k, ipc), real, fast=fast.label,
                             seconds_per_iteration=round(seconds / cfg.iterations, 6), **log.meta())

"""Distribution and feature matching: DM (Zhao & Bilen 2023) and CAFE (Wang et al. 2022).

DM makes the synthetic images of each class have the same mean embedding as the real images of that class,
under many randomly initialised (never trained) networks. No bilevel optimisation, hence its low cost.
CAFE aligns the class means of every layer's feature maps, adds a loss that makes the synthetic class
centres classify real images, and trains the network on the synthetic set between image updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from distillers import parameterize
from distillers.config import check
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.fastpath import FastPath
from distillers.methods.base import Distiller
from distillers.methods.common import (
    ClassSampler,
    LossLog,
    build_network,
    check_loops,
    check_matching,
    class_batches,
    class_labels,
    draw_seed,
    make_augment,
    step_images,
    step_synthetic,
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
        parameterization: str = "pixels"
        parameterization_args: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_matching(self)
            check(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}.")

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        sampler = ClassSampler(real, device)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        param = parameterize.create(cfg.parameterization, cfg.parameterization_args, real, ipc, cfg.init,
                                    generator, device)
        n = param.per_class
        optimizer = torch.optim.SGD(param.param_groups(cfg.lr_img), lr=cfg.lr_img, momentum=cfg.momentum)
        fast = FastPath.resolve(cfg.fast, device, steps=cfg.iterations)
        log = LossLog(cfg.iterations, f"DM diverged; lower lr_img (now {cfg.lr_img}).", watch=param.learnable())
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "dm") as bar, log.guard():
            for _ in range(cfg.iterations):
                net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
                net.train()  # as the authors do; BatchNorm nets then normalise with batch statistics
                net.requires_grad_(False)
                embed_fn = fast.wrap(cast(Callable[[torch.Tensor], torch.Tensor], net.embed))
                syn = param.decode()
                batches = list(class_batches(sampler, syn, n, cfg.batch_real, augment, generator))
                reals, syns = [b[1] for b in batches], [b[2] for b in batches]
                # One forward pass for all classes: identical to per-class passes for per-sample norms
                # (instance/group/layer norm) and the authors' choice for BatchNorm nets.
                with fast.autocast():
                    with torch.no_grad():
                        f_real = embed_fn(torch.cat(reals)).float()
                    f_syn = embed_fn(torch.cat(syns)).float()
                loss = torch.zeros((), device=device)
                for fr, fs in zip(f_real.split([len(r) for r in reals]), f_syn.split(n), strict=True):
                    loss = loss + ((fr.mean(0) - fs.mean(0)) ** 2).sum()
                step_images(optimizer, loss, log, bar)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(param.decode().detach(), class_labels(k, n), real, fast=fast.label,
                             parameterization=param, seconds_per_iteration=round(seconds / cfg.iterations, 6),
                             **log.meta())


# -------------------------------------------------------------------------------------------- CAFE
def class_mean_distance(real: torch.Tensor, syn: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Σ_c ‖mean(real_c) − mean(syn_c)‖² over every feature element; both batches are class by class with
    equal counts per class (CAFE's alignment term, no normalisation)."""
    r = real.float().reshape(num_classes, -1, *real.shape[1:]).mean(1)
    s = syn.float().reshape(num_classes, -1, *syn.shape[1:]).mean(1)
    return ((r - s) ** 2).sum()


class CAFE(Distiller):
    """CAFE: learning to condense a dataset by aligning features (Wang et al. 2022).

    Loss per image update (the whole synthetic set against ``batch_real`` real images per class): the class
    means of every ConvNet block's activation (before pooling) and of the final pooled map, weighted shallow
    to deep by ``layer_weights`` (default: 1 for the two deepest maps, 0.1 for the others, as the authors'
    1, 1, 0.1, 0.1 on ConvNet-3), the same for the final embedding (``embed_weight``), plus a discrimination
    term: the synthetic class centres (mean embeddings) used as a linear classifier on the real embeddings,
    cross-entropy summed over the real images, times ``discrimination_weight`` (0.01).

    Each iteration starts a new random ConvNet (SGD, ``lr_net``). ``schedule: dynamic`` is the authors'
    dynamic bi-level loop: image updates continue until the network's accuracy on ``batch_eval`` real
    images per class has varied by less than ``image_patience`` over the last ``window`` updates, and
    between image updates the network trains epochs on the synthetic set until its real accuracy has moved
    by more than ``net_patience`` within the last ``window`` epochs. Both loops are capped
    (``max_image_steps``, ``max_net_epochs``), because on a small budget they need not converge; ``meta``
    records the mean number of image steps and network epochs taken. ``schedule: fixed`` uses DC's
    (outer_loop, inner_loop) table instead. Image lr halved at 60%, 80% and 90% of the iterations
    (the authors' 1200, 1600, 1800 of 2000). Noise init by default. ``dsa: true`` gives CAFE+DSA. Like DM
    and the DC family, it optimises any ``parameterization`` (pixels by default).
    """

    name = "cafe"

    @dataclass(frozen=True)
    class Config:
        iterations: int = 2000
        lr_img: float = 0.1
        momentum: float = 0.5
        lr_net: float = 0.01
        batch_real: int = 256
        batch_train: int = 256
        init: Literal["real", "noise"] = "noise"
        dsa: bool = False
        dsa_strategy: str | None = None
        layer_weights: tuple[float, ...] | None = None
        embed_weight: float = 1.0
        discrimination_weight: float = 0.01
        schedule: Literal["dynamic", "fixed"] = "dynamic"
        outer_loop: int | None = None
        inner_loop: int | None = None
        window: int = 10
        image_patience: float = 0.04
        net_patience: float = 0.03
        max_image_steps: int = 50
        max_net_epochs: int = 50
        batch_eval: int = 128
        lr_decay_at: tuple[float, ...] = (0.6, 0.8, 0.9)
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)
        parameterization: str = "pixels"
        parameterization_args: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_matching(self)
            check(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}.")
            check(self.lr_net > 0, f"lr_net must be positive, got {self.lr_net}.")
            check(self.schedule in ("dynamic", "fixed"), f'schedule must be "dynamic" or "fixed", got {self.schedule!r}.')
            check(self.layer_weights is None or all(w >= 0 for w in self.layer_weights),
                  f"layer_weights must be non-negative, got {self.layer_weights}.")
            check(self.embed_weight >= 0 and self.discrimination_weight >= 0,
                  "embed_weight and discrimination_weight must be non-negative.")
            check(self.window >= 2, f"window must be at least 2, got {self.window}.")
            check(self.max_image_steps >= 1 and self.max_net_epochs >= 0,
                  "max_image_steps must be at least 1 and max_net_epochs at least 0.")
            for key in ("batch_train", "batch_eval"):
                check(getattr(self, key) >= 1, f"{key} must be at least 1, got {getattr(self, key)}.")
            check_loops(self)
            check(all(0 < f < 1 for f in self.lr_decay_at), f"lr_decay_at must lie in (0, 1), got {self.lr_decay_at}.")

    def weights(self, num_maps: int) -> tuple[float, ...]:
        """Weights of the ``num_maps`` aligned maps, shallow to deep (the configured ones, else 0.1 ... 1, 1)."""
        if self.config.layer_weights is not None:
            if len(self.config.layer_weights) != num_maps:
                raise DDError(f"layer_weights has {len(self.config.layer_weights)} entries but the network has "
                              f"{num_maps} aligned maps (one per block, then the pooled output); give {num_maps}.")
            return tuple(self.config.layer_weights)
        return tuple(0.1 if i < num_maps - 2 else 1.0 for i in range(num_maps))

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        from distillers.methods.gradient import configured_loops

        cfg = self.config
        k = real.num_classes
        sampler = ClassSampler(real, device)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        param = parameterize.create(cfg.parameterization, cfg.parameterization_args, real, ipc, cfg.init,
                                    generator, device)
        params, n = param.learnable(), param.per_class
        labels = class_labels(k, n).to(device)
        optimizer = torch.optim.SGD(param.param_groups(cfg.lr_img), lr=cfg.lr_img, momentum=cfg.momentum)
        milestones = sorted({int(f * cfg.iterations) for f in cfg.lr_decay_at})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)
        outer, inner = configured_loops(cfg, ipc)
        log = LossLog(cfg.iterations, f"CAFE diverged; lower lr_img (now {cfg.lr_img}).", watch=params)
        image_steps = net_epochs = 0
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "cafe") as bar, log.guard():
            for _ in range(cfg.iterations):
                net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
                if not hasattr(net, "activation_maps"):
                    raise DDError(f"CAFE aligns the feature maps of every ConvNet block; network {cfg.network!r} "
                                  "does not expose them. Use a ConvNet (convnet, convnet-d2, ...).")
                net.train()
                net_opt = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
                image_acc: list[float] = []
                losses = []
                for step in range(cfg.max_image_steps if cfg.schedule == "dynamic" else outer):
                    loss = self._loss(net, sampler, param.decode(), n, augment, generator)
                    step_synthetic(optimizer, loss, params)
                    losses.append(loss.detach())
                    image_steps += 1
                    if cfg.schedule == "dynamic":
                        image_acc.append(self._real_accuracy(net, sampler, k, generator))
                        if self._settled(image_acc, cfg.image_patience):
                            break
                    elif step == outer - 1:
                        break
                    with torch.no_grad():
                        syn = param.decode()
                    net_epochs += self._train_net(net, net_opt, syn, labels, inner, sampler, augment, generator)
                scheduler.step()
                log.show(torch.stack(losses).mean(), bar)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(param.decode().detach(), class_labels(k, n), real, parameterization=param,
                             seconds_per_iteration=round(seconds / cfg.iterations, 6),
                             image_steps_per_iteration=round(image_steps / cfg.iterations, 3),
                             net_epochs_per_image_step=round(net_epochs / max(image_steps, 1), 3),
                             schedule=cfg.schedule, **log.meta())

    def _spread(self, history: Sequence[float]) -> float | None:
        """max − min of the last ``window`` accuracies (None until there are that many)."""
        w = self.config.window
        return max(history[-w:]) - min(history[-w:]) if len(history) >= w else None

    def _settled(self, history: Sequence[float], patience: float) -> bool:
        """The last ``window`` accuracies spread by less than ``patience`` (the image loop has converged)."""
        spread = self._spread(history)
        return spread is not None and spread < patience

    def _loss(self, net: nn.Module, sampler: ClassSampler, syn: torch.Tensor, ipc: int, augment: Any,
              generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        k = len(sampler.index)
        batches = list(class_batches(sampler, syn, ipc, cfg.batch_real, augment, generator))
        reals, syns = [b[1] for b in batches], [b[2] for b in batches]
        n_real = min(len(r) for r in reals)  # equal counts per class (a small class caps the batch)
        x_real = torch.cat([r[:n_real] for r in reals])
        activation_maps = cast(Callable[[torch.Tensor], list[torch.Tensor]], net.activation_maps)
        maps_syn = activation_maps(torch.cat(syns))
        with torch.no_grad():
            maps_real = activation_maps(x_real)
        loss = torch.zeros((), device=syn.device)
        for w, fr, fs in zip(self.weights(len(maps_syn)), maps_real, maps_syn, strict=True):
            if w:
                loss = loss + w * class_mean_distance(fr, fs, k)
        e_real, e_syn = maps_real[-1].flatten(1).float(), maps_syn[-1].flatten(1).float()
        loss = loss + cfg.embed_weight * class_mean_distance(e_real, e_syn, k)
        if cfg.discrimination_weight:
            centres = e_syn.reshape(k, ipc, -1).mean(1)
            y_real = torch.arange(k, device=syn.device).repeat_interleave(n_real)
            loss = loss + cfg.discrimination_weight * F.cross_entropy(e_real @ centres.T, y_real, reduction="sum")
        return loss

    def _real_accuracy(self, net: nn.Module, sampler: ClassSampler, k: int, generator: torch.Generator) -> float:
        """The network's accuracy on ``batch_eval`` fresh real images per class (the schedule's signal)."""
        xs = [sampler.sample(c, self.config.batch_eval, generator) for c in range(k)]
        y = torch.cat([torch.full((len(x),), c, device=x.device) for c, x in enumerate(xs)])
        with torch.no_grad():
            return float((net(torch.cat(xs)).argmax(1) == y).float().mean())

    def _train_net(self, net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                   epochs: int, sampler: ClassSampler, augment: Any, generator: torch.Generator) -> int:
        """Train on the synthetic set: ``epochs`` epochs (fixed schedule), or, dynamic, until the real accuracy
        has moved by more than ``net_patience`` within the last ``window`` epochs. Returns the epochs run."""
        cfg = self.config
        dynamic = cfg.schedule == "dynamic"
        history: list[float] = []
        done = 0
        for _ in range(cfg.max_net_epochs if dynamic else epochs):
            order = torch.randperm(len(x), generator=generator).to(x.device)
            for begin in range(0, len(x), cfg.batch_train):
                idx = order[begin:begin + cfg.batch_train]
                xb = x[idx] if augment is None else augment(x[idx], generator=generator)
                loss = F.cross_entropy(net(xb), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            done += 1
            if dynamic:
                history.append(self._real_accuracy(net, sampler, len(sampler.index), generator))
                spread = self._spread(history)
                if spread is not None and spread > cfg.net_patience:
                    break
        return done

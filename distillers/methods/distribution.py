"""Distribution matching (DM, Zhao & Bilen 2023), plus small helpers shared by the learning-based methods.

DM makes the synthetic images of each class have the same mean embedding as the real images of that class,
under many randomly initialised (never trained) networks. No bilevel optimisation, hence its low cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from torch import nn

from distillers.config import check
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.methods.base import Distiller
from distillers.synthetic import SyntheticSet

# --------------------------------------------------------------------------------------------- helpers

_SEED_HIGH = 2**31 - 1


def draw_seed(generator: torch.Generator) -> int:
    """An integer seed drawn from ``generator`` (for network initialisation and siamese augmentation)."""
    return int(torch.randint(0, _SEED_HIGH, (1,), generator=generator))


def check_network(name: str, network_args: dict[str, Any]) -> None:
    """Fail early (at config time) on an unknown network name or a non-mapping ``network_args``."""
    from distillers.networks import NETWORKS

    NETWORKS.get(name)  # raises DDError with a did-you-mean suggestion
    check(isinstance(network_args, dict), f"network_args must be a mapping of keyword arguments, got {network_args!r}.")


def build_network(name: str, real: LabeledData, seed: int, network_args: dict[str, Any],
                  device: torch.device | str = "cpu") -> nn.Module:
    """A freshly initialised network for ``real``'s image shape and classes, deterministic from ``seed``."""
    from distillers import networks

    try:
        net = networks.create(name, channels=real.channels, num_classes=real.num_classes,
                              image_size=real.image_size, seed=seed, **network_args)
    except TypeError as err:
        raise DDError(f'Invalid network_args {network_args!r} for network "{name}" ({err}); '
                      "fix or remove the offending key.") from None
    return net.to(device)


def check_augment(dsa: bool, strategy: str | None) -> None:
    """Validate a (dsa, dsa_strategy) pair at config time."""
    check(dsa or strategy is None,
          f"dsa_strategy={strategy!r} is set but dsa is false; pass dsa=true to use it, or drop dsa_strategy.")
    if dsa and strategy is not None:
        from distillers.augment import DSA

        DSA(strategy)  # raises DDError listing the valid operations


def make_augment(dsa: bool, strategy: str | None, dataset_name: str) -> Any:
    """The DSA transform to use (``None`` when off); ``strategy=None`` → the dataset's default strategy."""
    if not dsa:
        return None
    from distillers.augment import DSA, default_strategy

    return DSA(default_strategy(dataset_name) if strategy is None else strategy)


def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features of ``net`` (every registered network has ``embed``)."""
    return cast(Callable[[torch.Tensor], torch.Tensor], net.embed)(x)


class ClassSampler:
    """Random real images of one class, drawn like :meth:`LabeledData.sample_class` but with the per-class
    index lists computed once and the images kept on ``device`` (no host/device sync per draw)."""

    def __init__(self, real: LabeledData, device: torch.device | str) -> None:
        self.x = real.x.to(device)
        self.index = [real.indices_of(c) for c in range(real.num_classes)]

    def sample(self, label: int, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = self.index[label]
        perm = torch.randperm(idx.numel(), generator=generator)[: min(n, idx.numel())]
        return self.x[idx[perm].to(self.x.device)]


def initial_images(real: LabeledData, ipc: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """``ipc`` starting images per class (class by class): random real images or N(0, 1) noise."""
    if init == "real":
        return real.x[real.stratified_indices(ipc, generator)].clone()
    return torch.randn((real.num_classes * ipc, *real.image_shape), generator=generator)


def class_labels(num_classes: int, ipc: int) -> torch.Tensor:
    """Hard labels ``0..K-1``, each repeated ``ipc`` times (the layout every method here uses)."""
    return torch.arange(num_classes).repeat_interleave(ipc)


class LossLog:
    """Averages a loss over windows of iterations (about ``points`` windows in all) without a host sync per step.

    A non-finite window mean raises :class:`DDError` with ``diverged`` (a sentence naming the fix).
    """

    def __init__(self, total: int, diverged: str, points: int = 100) -> None:
        self.every = max(1, math.ceil(total / points))
        self.values: list[float] = []
        self._diverged = diverged
        self._sum: torch.Tensor | None = None
        self._count = 0

    def add(self, loss: torch.Tensor) -> float | None:
        """Record one iteration's loss; returns the window mean when a window closes."""
        value = loss.detach()
        self._sum = value if self._sum is None else self._sum + value
        self._count += 1
        return self.flush() if self._count >= self.every else None

    def flush(self) -> float | None:
        if not self._count or self._sum is None:
            return None
        mean = float(self._sum) / self._count
        if not math.isfinite(mean):
            raise DDError(self._diverged)
        self.values.append(round(mean, 6))
        self._sum, self._count = None, 0
        return mean

    def meta(self) -> dict[str, Any]:
        return {"loss_history": list(self.values), "loss_every": self.every}


# --------------------------------------------------------------------------------------------- DM


class DM(Distiller):
    """Distribution matching: match per-class mean embeddings of real and synthetic images under random nets.

    Defaults are the authors' (REFERENCE §3): 20,000 iterations, image lr 1.0 with SGD momentum 0.5, 256 real
    images per class per iteration, real init, DSA on, a fresh randomly initialised ConvNet each iteration
    whose weights are frozen; loss Σ_c ‖mean embed(real_c) − mean embed(syn_c)‖² on penultimate features.
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

        def __post_init__(self) -> None:
            check(self.iterations >= 1, f"iterations must be at least 1, got {self.iterations}.")
            check(self.lr_img > 0, f"lr_img must be positive, got {self.lr_img}.")
            check(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}.")
            check(self.batch_real >= 1, f"batch_real must be at least 1, got {self.batch_real}.")
            check(self.init in ("real", "noise"), f'init must be "real" or "noise", got {self.init!r}.')
            check_augment(self.dsa, self.dsa_strategy)
            check_network(self.network, self.network_args)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        sampler = ClassSampler(real, device)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        syn = initial_images(real, ipc, cfg.init, generator).to(device).requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        log = LossLog(cfg.iterations, f"DM diverged (the loss became NaN or Inf); lower lr_img (now {cfg.lr_img}).")
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, "dm") as bar:
            for _ in range(cfg.iterations):
                net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
                net.train()  # as the authors do; BatchNorm nets then normalise with batch statistics
                net.requires_grad_(False)
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
                with torch.no_grad():
                    f_real = embed(net, torch.cat(reals))
                f_syn = embed(net, torch.cat(syns))
                loss = torch.zeros((), device=device)
                for fr, fs in zip(f_real.split([len(r) for r in reals]), f_syn.split(ipc), strict=True):
                    loss = loss + ((fr.mean(0) - fs.mean(0)) ** 2).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                window = log.add(loss)
                if window is not None:
                    bar.set_postfix(loss=f"{window:.4g}", refresh=False)
                bar.update(1)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(syn.detach(), class_labels(k, ipc), real,
                             seconds_per_iteration=round(seconds / cfg.iterations, 6), **log.meta())

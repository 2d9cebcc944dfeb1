"""Pieces shared by the learning-based methods: seeds from a generator, fresh networks, DSA, class sampling,
initial images, hard labels and a loss log that stops a diverging distillation within one iteration."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from distillers.config import check
from distillers.data import LabeledData
from distillers.errors import DDError, Diverged

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


def check_matching(cfg: Any) -> None:
    """Checks shared by the configs of the matching methods (DM, DC, DSA): budgets, init, DSA, network."""
    check(cfg.iterations >= 1, f"iterations must be at least 1, got {cfg.iterations}.")
    check(cfg.lr_img > 0, f"lr_img must be positive, got {cfg.lr_img}.")
    check(cfg.batch_real >= 1, f"batch_real must be at least 1, got {cfg.batch_real}.")
    check(cfg.init in ("real", "noise"), f'init must be "real" or "noise", got {cfg.init!r}.')
    check_augment(cfg.dsa, cfg.dsa_strategy)
    check_network(cfg.network, cfg.network_args)
    if hasattr(cfg, "parameterization"):
        from distillers.parameterize import check_parameterization

        check_parameterization(cfg.parameterization, cfg.parameterization_args)


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


def class_batches(sampler: ClassSampler, syn: torch.Tensor, ipc: int, batch_real: int, augment: Any,
                  generator: torch.Generator) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Per class: (class, ``batch_real`` real images, its ``ipc`` synthetic images), both under the same
    random DSA transform when ``augment`` is set (siamese augmentation, one seed per class)."""
    for c in range(len(sampler.index)):
        x_real, x_syn = siamese(augment, sampler.sample(c, batch_real, generator), syn[c * ipc:(c + 1) * ipc],
                                generator)
        yield c, x_real, x_syn


def siamese(augment: Any, x_real: torch.Tensor, x_syn: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Both batches under one random transform drawn from ``generator`` (unchanged when ``augment`` is None)."""
    if augment is None:
        return x_real, x_syn
    seed = draw_seed(generator)
    return augment(x_real, seed=seed), augment(x_syn, seed=seed)


def class_labels(num_classes: int, ipc: int) -> torch.Tensor:
    """Hard labels ``0..K-1``, each repeated ``ipc`` times (the layout every method here uses)."""
    return torch.arange(num_classes).repeat_interleave(ipc)


class LossLog:
    """Averages a loss over windows of iterations (about ``points`` windows in all) and guards the synthetic
    parameters against divergence.

    Every :meth:`add` (one per outer iteration) checks that the loss and the ``watch`` tensors (the synthetic
    parameters: images, labels, learned learning rates) are finite: one host sync per iteration, one flag
    for all of them. A finite iteration is copied aside; a non-finite one restores the last finite copy into
    ``watch`` and raises :class:`~distillers.errors.Diverged` naming the iteration and ``diverged`` (a sentence
    naming the fix). Inside :meth:`guard` the method's loop stops there, the method packages the restored
    parameters as usual, and :meth:`Distiller.distill` raises the error with that last good set attached.
    """

    def __init__(self, total: int, diverged: str, points: int = 100, watch: Sequence[torch.Tensor] = ()) -> None:
        self.total = total
        self.every = max(1, math.ceil(total / points))
        self.values: list[float] = []
        self._diverged = diverged
        self._sum: torch.Tensor | None = None
        self._count = 0
        self.iteration = 0
        self.failure: Diverged | None = None
        self._watch = list(watch)
        self._good = [t.detach().clone() for t in self._watch]

    def add(self, loss: torch.Tensor) -> float | None:
        """Record one iteration's loss; returns the window mean when a window closes."""
        value = loss.detach()
        self.iteration += 1
        finite = torch.isfinite(value).all()
        for t in self._watch:
            # min and max are NaN or ±Inf exactly when some element is; 10x faster than isfinite().all()
            # on a large set, which builds a boolean copy first (benchmarks/divergence_guard.py)
            low, high = torch.aminmax(t.detach())
            finite = finite & torch.isfinite(low) & torch.isfinite(high)
        if not bool(finite):
            self._fail(value)
        with torch.no_grad():
            for good, t in zip(self._good, self._watch, strict=True):
                good.copy_(t)
        self._sum = value if self._sum is None else self._sum + value
        self._count += 1
        return self.flush() if self._count >= self.every else None

    def _fail(self, value: torch.Tensor) -> None:
        with torch.no_grad():
            for good, t in zip(self._good, self._watch, strict=True):
                t.copy_(good)
        what = "loss" if not bool(torch.isfinite(value).all()) else "synthetic parameters"
        raise Diverged(f"{self._diverged} Stopped at iteration {self.iteration} of {self.total}: the {what} "
                       f"became NaN or Inf.", self.iteration, self.total)

    def flush(self) -> float | None:
        if not self._count or self._sum is None:
            return None
        mean = float(self._sum) / self._count
        if not math.isfinite(mean):
            raise DDError(self._diverged)
        self.values.append(round(mean, 6))
        self._sum, self._count = None, 0
        return mean

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Stop the loop inside at a divergence, keeping the error for :meth:`meta` (see the class doc)."""
        try:
            yield
        except Diverged as err:
            if not self._watch:
                raise
            self.failure = err

    def show(self, loss: torch.Tensor, bar: Any) -> None:
        """Record one iteration's loss (:meth:`add`), show the window mean on ``bar`` and advance it."""
        window = self.add(loss)
        if window is not None:
            bar.set_postfix(loss=f"{window:.4g}", refresh=False)
        bar.update(1)

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loss_history": list(self.values), "loss_every": self.every}
        if self.failure is not None:
            out["diverged"] = {"iteration": self.failure.iteration, "total": self.failure.total,
                               "message": str(self.failure)}
        return out


def step_synthetic(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
    """One optimiser step of the synthetic parameters from ``loss``, whose gradient reaches only them
    (``loss.backward()`` would also fill the ``.grad`` of the network the loss went through)."""
    for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
        p.grad = g
    optimizer.step()


def check_loops(cfg: Any) -> None:
    """``outer_loop`` (image updates per network) at least 1, ``inner_loop`` (network epochs between them)
    at least 0; either may be unset for the ipc default."""
    check(cfg.outer_loop is None or cfg.outer_loop >= 1,
          f"outer_loop must be at least 1 (or unset for the ipc default), got {cfg.outer_loop}.")
    check(cfg.inner_loop is None or cfg.inner_loop >= 0,
          f"inner_loop must be at least 0 (or unset for the ipc default), got {cfg.inner_loop}.")


def step_images(optimizer: torch.optim.Optimizer, loss: torch.Tensor, log: LossLog, bar: Any) -> None:
    """One update of the synthetic images from ``loss``, logged (divergence check) and shown on ``bar``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    log.show(loss, bar)

"""Gradient matching: DC (Zhao et al. 2021), DSA (Zhao & Bilen 2021) and DCC / DSAC (Lee et al. 2022).

The synthetic images of each class are updated so that the gradient they induce in a network's weights
points the same way (layer by layer, row by row) as the gradient of real images of that class, along the
training trajectory of freshly initialised networks that are themselves trained on the synthetic set.
DCC matches the gradient of all classes together instead, so the signal that tells classes apart (the
logits of the other classes) takes part in the match.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from distillers import parameterize
from distillers.config import check
from distillers.data import LabeledData
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
    siamese,
    step_synthetic,
)
from distillers.synthetic import SyntheticSet

# (outer_loop, inner_loop) per ipc, from the authors' code; other ipc values use the nearest entry.
LOOPS: dict[int, tuple[int, int]] = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15),
                                     50: (50, 10)}
BN_IMAGES_PER_CLASS = 16  # real images per class used to set BatchNorm statistics before they are frozen


def default_loops(ipc: int, table: dict[int, tuple[int, int]] = LOOPS) -> tuple[int, int]:
    """The authors' (outer_loop, inner_loop) for ``ipc``; the nearest tabulated ipc (ties: the smaller)."""
    nearest = min(table, key=lambda known: (abs(known - ipc), known))
    return table[nearest]


def configured_loops(cfg: Any, ipc: int, table: dict[int, tuple[int, int]] = LOOPS) -> tuple[int, int]:
    """``cfg``'s (outer_loop, inner_loop), each falling back to ``table``'s default for ``ipc`` when unset."""
    outer, inner = default_loops(ipc, table)
    return (outer if cfg.outer_loop is None else cfg.outer_loop,
            inner if cfg.inner_loop is None else cfg.inner_loop)


def gradient_distance(grads_syn: Sequence[torch.Tensor], grads_real: Sequence[torch.Tensor],
                      eps: float = 1e-6) -> torch.Tensor:
    """DC's layer-wise gradient distance: Σ_layers Σ_rows (1 − cos(row_syn, row_real)).

    Each weight gradient is reshaped to ``[out, -1]`` (one row per output unit); 1-D gradients (biases and
    normalisation parameters) are ignored. ``eps`` guards the cosine against zero rows.
    """
    total: torch.Tensor | None = None
    for gs, gr in zip(grads_syn, grads_real, strict=True):
        if gs.dim() < 2:
            continue
        a, b = gs.reshape(gs.shape[0], -1), gr.reshape(gr.shape[0], -1)
        cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)
        term = (1 - cos).sum()
        total = term if total is None else total + term
    if total is None:
        ref = grads_syn[0] if len(grads_syn) else torch.zeros(())
        return torch.zeros((), dtype=ref.dtype, device=ref.device)
    return total


def _freeze_batchnorm(net: nn.Module, sampler: ClassSampler, num_classes: int,
                      generator: torch.Generator) -> None:
    """For BatchNorm nets: refresh running statistics on a real batch, then freeze them (eval mode).

    The authors do this so that the tiny per-class synthetic batches are normalised with real-data statistics
    during matching. Nets without BatchNorm (the default instance-norm ConvNet) are left untouched.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    net.train()
    batch = torch.cat([sampler.sample(c, BN_IMAGES_PER_CLASS, generator) for c in range(num_classes)])
    with torch.no_grad():
        net(batch)
    for m in bns:
        m.eval()


class DC(Distiller):
    """Dataset condensation with gradient matching.

    Defaults are the authors' (REFERENCE §3): 1000 outer iterations, image lr 0.1 (SGD momentum 0.5), network
    lr 0.01, 256 real images per class, noise init, (outer, inner) loops by ipc (1→(1,1), 10→(10,50),
    50→(50,10)); each iteration a new random network. The inner loop trains the network ``inner_loop`` epochs
    on the (detached) synthetic set. ``meta`` records the loops used, ``seconds_per_iteration`` and
    ``loss_history``: window means (one per ``loss_every`` iterations) of the matching loss summed over
    classes and averaged over the outer steps of an iteration. ``fast`` runs the networks under bf16
    autocast (gradients, distances and image updates stay float32) and compiles the single-backward passes
    (real batches, inner loop) for runs of 250+ outer steps.
    """

    name = "dc"
    loop_table: dict[int, tuple[int, int]] = LOOPS

    @dataclass(frozen=True)
    class Config:
        iterations: int = 1000
        lr_img: float = 0.1
        momentum_img: float = 0.5
        lr_net: float = 0.01
        batch_real: int = 256
        batch_train: int = 256
        outer_loop: int | None = None
        inner_loop: int | None = None
        init: Literal["real", "noise"] = "noise"
        dsa: bool = False
        dsa_strategy: str | None = None
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)
        fast: bool = True
        parameterization: str = "pixels"
        parameterization_args: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_matching(self)
            check(0 <= self.momentum_img < 1, f"momentum_img must lie in [0, 1), got {self.momentum_img}.")
            check(self.lr_net > 0, f"lr_net must be positive, got {self.lr_net}.")
            check(self.batch_train >= 1, f"batch_train must be at least 1, got {self.batch_train}.")
            check_loops(self)

    def loops(self, ipc: int) -> tuple[int, int]:
        """(outer_loop, inner_loop) for ``ipc``: the configured values, else the authors' defaults."""
        return configured_loops(self.config, ipc, self.loop_table)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        outer_loop, inner_loop = self.loops(ipc)
        sampler = ClassSampler(real, device)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        param = parameterize.create(cfg.parameterization, cfg.parameterization_args, real, ipc, cfg.init,
                                    generator, device)
        params, n = param.learnable(), param.per_class
        labels = class_labels(k, n).to(device)
        optimizer_img = torch.optim.SGD(param.param_groups(cfg.lr_img), lr=cfg.lr_img, momentum=cfg.momentum_img)
        fast = FastPath.resolve(cfg.fast, device, steps=cfg.iterations * outer_loop)
        log = LossLog(cfg.iterations, f"{self.name.upper()} diverged; "
                                      f"lower lr_img (now {cfg.lr_img}) or lr_net (now {cfg.lr_net}).", watch=params)
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, self.name) as bar, log.guard():
            for iteration in range(cfg.iterations):
                net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
                net.train()
                forward = fast.wrap(net)  # single-backward passes only; the synthetic pass stays eager
                weights = [p for p in net.parameters() if p.requires_grad and p.dim() >= 2]
                optimizer_net = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
                iteration_loss = torch.zeros((), device=device)
                for step in range(outer_loop):
                    _freeze_batchnorm(net, sampler, k, generator)
                    match = self._loss_at(iteration, step)
                    loss = match(net, forward, fast, weights, sampler, param.decode(), n, augment, generator)
                    step_synthetic(optimizer_img, loss, params)
                    iteration_loss = iteration_loss + loss.detach()
                    if step == outer_loop - 1:
                        break
                    with torch.no_grad():
                        syn = param.decode()
                    self._train_net(net, forward, fast, optimizer_net, syn, labels, inner_loop, augment, generator)
                log.show(iteration_loss / outer_loop, bar)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(param.decode().detach(), class_labels(k, n), real, outer_loop=outer_loop,
                             fast=fast.label, inner_loop=inner_loop, parameterization=param,
                             seconds_per_iteration=round(seconds / cfg.iterations, 6), **self._extra_meta(),
                             **log.meta())

    def _loss_at(self, iteration: int, step: int) -> Any:
        """The matching loss of image update ``step`` of outer ``iteration`` (DC: always the class-wise one)."""
        return self._matching_loss

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def _matching_loss(self, net: nn.Module, forward: Any, fast: FastPath, weights: Sequence[torch.Tensor],
                       sampler: ClassSampler, syn: torch.Tensor, ipc: int, augment: Any,
                       generator: torch.Generator) -> torch.Tensor:
        """Σ_c gradient_distance(∇ CE(syn_c), ∇ CE(real_c)) over the network's weight matrices/kernels.

        ``forward`` is ``net`` or its compiled twin (same weights) for the real batch; the synthetic batch
        needs a double backward, which compiled graphs do not support, so it goes through ``net``.
        """
        loss = torch.zeros((), device=syn.device)
        for c, x_real, x_syn in class_batches(sampler, syn, ipc, self.config.batch_real, augment, generator):
            y_real = torch.full((len(x_real),), c, dtype=torch.long, device=syn.device)
            y_syn = torch.full((ipc,), c, dtype=torch.long, device=syn.device)
            with fast.autocast():
                out_real, out_syn = forward(x_real), net(x_syn)
            g_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(out_real.float(), y_real), weights)]
            g_syn = torch.autograd.grad(F.cross_entropy(out_syn.float(), y_syn), weights, create_graph=True)
            loss = loss + gradient_distance(g_syn, g_real)
        return loss

    def _train_net(self, net: nn.Module, forward: Any, fast: FastPath, optimizer: torch.optim.Optimizer,
                   x: torch.Tensor, y: torch.Tensor, epochs: int, augment: Any, generator: torch.Generator) -> None:
        """``epochs`` epochs of SGD on the synthetic set (per-image DSA augmentation when enabled)."""
        batch = self.config.batch_train
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(x.device)
            for begin in range(0, len(x), batch):
                idx = order[begin:begin + batch]
                xb = x[idx]
                if augment is not None:
                    xb = augment(xb, generator=generator)
                with fast.autocast():
                    logits = forward(xb)
                loss = F.cross_entropy(logits.float(), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


class DSA(DC):
    """DC with differentiable siamese augmentation: the same random transform on the real and synthetic batch
    of each class during matching (per-image transforms while training the inner network), real init."""

    name = "dsa"

    @dataclass(frozen=True)
    class Config(DC.Config):
        init: Literal["real", "noise"] = "real"
        dsa: bool = True


# (outer_loop, inner_loop) per ipc in DCC's code: as DC's except ipc 1, which gets 10 image updates per
# network with 5 epochs of network training between them (DC: 1 and 1).
DCC_LOOPS: dict[int, tuple[int, int]] = {**LOOPS, 1: (10, 5)}


class DCC(DC):
    """Dataset condensation with contrastive signals (Lee et al. 2022): class-collective gradient matching.

    DC matches each class's gradient on its own, so nothing in the loss depends on how the classes differ.
    DCC matches one gradient for all classes: the mean over classes of the real per-class gradients against
    the gradient of the cross-entropy over the whole synthetic set, with DC's layer-wise distance applied
    once. Bi-level warm-up, as in the authors' code: during the first ``warmup_iterations`` outer
    iterations, the first ``warmup_steps`` image updates of each network use DC's class-wise loss; every
    other update uses the collective one (with the ipc-1 and ipc-10 loops, that is plain DC for the first
    250 iterations, then DCC). Real init; loops by ipc from the authors' table (:data:`DCC_LOOPS`).
    """

    name = "dcc"
    loop_table = DCC_LOOPS

    @dataclass(frozen=True)
    class Config(DC.Config):
        init: Literal["real", "noise"] = "real"
        warmup_iterations: int = 250
        warmup_steps: int = 10

        def __post_init__(self) -> None:
            super().__post_init__()
            check(self.warmup_iterations >= 0,
                  f"warmup_iterations must be at least 0 (0 = no warm-up), got {self.warmup_iterations}.")
            check(self.warmup_steps >= 0, f"warmup_steps must be at least 0, got {self.warmup_steps}.")

    def _loss_at(self, iteration: int, step: int) -> Any:
        cfg = self.config
        warm = iteration < cfg.warmup_iterations and step < cfg.warmup_steps
        return self._matching_loss if warm else self._collective_loss

    def _extra_meta(self) -> dict[str, Any]:
        return {"warmup_iterations": self.config.warmup_iterations, "warmup_steps": self.config.warmup_steps}

    def _collective_loss(self, net: nn.Module, forward: Any, fast: FastPath, weights: Sequence[torch.Tensor],
                         sampler: ClassSampler, syn: torch.Tensor, ipc: int, augment: Any,
                         generator: torch.Generator) -> torch.Tensor:
        """gradient_distance(∇ CE(all synthetic images), mean_c ∇ CE(real_c)): one match for all classes."""
        g_real: list[torch.Tensor] | None = None
        parts = []
        for c, x_real, x_syn in class_batches(sampler, syn, ipc, self.config.batch_real, augment, generator):
            y_real = torch.full((len(x_real),), c, dtype=torch.long, device=syn.device)
            with fast.autocast():
                out_real = forward(x_real)
            grads = [g.detach() for g in torch.autograd.grad(F.cross_entropy(out_real.float(), y_real), weights)]
            g_real = grads if g_real is None else [a + b for a, b in zip(g_real, grads, strict=True)]
            parts.append(x_syn)
        assert g_real is not None
        k = len(parts)
        y_syn = class_labels(k, ipc).to(syn.device)
        with fast.autocast():
            out_syn = net(torch.cat(parts))
        g_syn = torch.autograd.grad(F.cross_entropy(out_syn.float(), y_syn), weights, create_graph=True)
        return gradient_distance(g_syn, [g / k for g in g_real])


class DSAC(DCC):
    """DCC with differentiable siamese augmentation (the authors' DSAC): DSA's transforms, DCC's loss."""

    name = "dsac"

    @dataclass(frozen=True)
    class Config(DCC.Config):
        dsa: bool = True


# ------------------------------------------------------------------------------------------------ IDC
def chain_augment(strategy: str) -> Any:
    """IDC's condensation augmentation: every group of ``strategy`` applied in turn (one shared transform
    per group for a batch when given ``seed``, per image when given ``generator``), not one group drawn
    per call as in DSA. ``"none"`` or ``""`` gives None."""
    from distillers.augment import DSA, parse_strategy

    groups = [DSA(op) for op in parse_strategy(strategy)]
    if not groups:
        return None

    def apply(x: torch.Tensor, *, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        for i, group in enumerate(groups):
            x = group(x, seed=None if seed is None else seed + i, generator=generator)
        return x

    return apply


def cutmix(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor, float]:
    """CutMix (Yun et al. 2019) with beta(1, 1): paste a random box from a shuffled copy of the batch; returns
    (images, labels, shuffled labels, lam) for the loss lam·CE(y) + (1 − lam)·CE(y_shuffled)."""
    n, _, h, w = x.shape
    lam = float(torch.rand((), generator=generator))
    perm = torch.randperm(n, generator=generator).to(x.device)
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, (), generator=generator)), int(torch.randint(w, (), generator=generator))
    y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, y, y[perm], lam


class IDC(Distiller):
    """Efficient dataset condensation (Kim et al. 2022): multi-formation + gradient matching on networks
    trained on *real* data.

    Each of ``iterations`` outer iterations starts a new random network (SGD lr 0.01, momentum 0.9, weight
    decay 5e-4) and runs ``inner_loop`` steps. A step makes one image update per class: the distance
    (``metric``: summed squared, ``mse``, or absolute, ``l1``, differences over whole tensors) between the
    gradients of the convolution weights (``match_fc`` adds the linear layer) for a real batch and for the
    class's decoded synthetic images (at most ``batch_syn_max``, drawn at random), both under the same
    ``augment`` transforms (every group applied, as the authors' code does). Then the network trains on
    ``net_samples`` real images (batches of ``batch_net``, per-image augmentation, CutMix with probability
    ``cutmix``), so the matching follows a network's real training trajectory. The image lr is ``lr_img``
    x ipc / 10 (``scale_lr``), as the authors. Defaults: ConvNet-3, multi-formation with factor 2, real
    init, 2000 iterations of 100 steps, CIFAR's ``mse`` / 5e-3 / 2000 samples / CutMix 0.5; MNIST in the
    paper uses ``l1``, lr_img 1e-4, 500 samples, augment ``color_crop`` and no CutMix (see the suites).
    """

    name = "idc"

    @dataclass(frozen=True)
    class Config:
        iterations: int = 2000
        inner_loop: int = 100
        lr_img: float = 5e-3
        scale_lr: bool = True
        momentum_img: float = 0.5
        metric: Literal["mse", "l1"] = "mse"
        match_fc: bool = False
        batch_real: int = 64
        batch_syn_max: int = 128
        net_samples: int = 2000
        batch_net: int = 64
        lr_net: float = 0.01
        augment: str = "color_crop_cutout"
        cutmix: float = 0.5
        init: Literal["real", "noise"] = "real"
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)
        parameterization: str = "multi-formation"
        parameterization_args: dict[str, Any] = field(default_factory=lambda: {"factor": 2})

        def __post_init__(self) -> None:
            check(self.iterations >= 1 and self.inner_loop >= 1, "iterations and inner_loop must be at least 1.")
            check(self.lr_img > 0 and self.lr_net > 0, "lr_img and lr_net must be positive.")
            check(0 <= self.momentum_img < 1, f"momentum_img must lie in [0, 1), got {self.momentum_img}.")
            check(self.metric in ("mse", "l1"), f'metric must be "mse" or "l1", got {self.metric!r}.')
            for key in ("batch_real", "batch_syn_max", "batch_net"):
                check(getattr(self, key) >= 1, f"{key} must be at least 1, got {getattr(self, key)}.")
            check(self.net_samples >= 0, f"net_samples must be at least 0, got {self.net_samples}.")
            check(0.0 <= self.cutmix <= 1.0, f"cutmix is a probability in [0, 1], got {self.cutmix}.")
            check(self.init in ("real", "noise"), f'init must be "real" or "noise", got {self.init!r}.')
            from distillers.augment import parse_strategy
            from distillers.methods.common import check_network
            from distillers.parameterize import check_parameterization

            parse_strategy(self.augment)
            check_network(self.network, self.network_args)
            check_parameterization(self.parameterization, self.parameterization_args)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        sampler = ClassSampler(real, device)
        augment = chain_augment(cfg.augment)
        param = parameterize.create(cfg.parameterization, cfg.parameterization_args, real, ipc, cfg.init,
                                    generator, device)
        params, n = param.learnable(), param.per_class
        lr = cfg.lr_img * (ipc / 10 if cfg.scale_lr else 1.0)
        optimizer = torch.optim.SGD(param.param_groups(lr), lr=lr, momentum=cfg.momentum_img)
        log = LossLog(cfg.iterations, f"IDC diverged; lower lr_img (now "
                                      f"{cfg.lr_img}).", watch=params)
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, self.name) as bar, log.guard():
            for _ in range(cfg.iterations):
                net = self._network(real, generator, device)
                optimizer_net = torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=0.9, weight_decay=5e-4)
                total = torch.zeros((), device=device)
                for _ in range(cfg.inner_loop):
                    net.train()
                    weights = [p for p in net.parameters() if p.dim() == 4 or (cfg.match_fc and p.dim() == 2)]
                    for c in range(k):
                        loss = self._class_loss(net, weights, sampler, param.decode(), n, c, augment, generator)
                        step_synthetic(optimizer, loss, params)
                        total = total + loss.detach()
                    self._train_on_real(net, optimizer_net, real, sampler, augment, generator)
                log.show(total / (cfg.inner_loop * k), bar)
        log.flush()
        seconds = time.perf_counter() - start
        return self.make_set(param.decode().detach(), class_labels(k, n), real, parameterization=param,
                             lr_img_used=lr, seconds_per_iteration=round(seconds / cfg.iterations, 6),
                             **self._extra_meta(), **log.meta())

    def _network(self, real: LabeledData, generator: torch.Generator, device: torch.device) -> nn.Module:
        """The network of one outer iteration (IDC: a new random one)."""
        return build_network(self.config.network, real, draw_seed(generator), self.config.network_args, device)

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def _class_loss(self, net: nn.Module, weights: Sequence[torch.Tensor], sampler: ClassSampler,
                    syn: torch.Tensor, n: int, c: int, augment: Any, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        x_real = sampler.sample(c, cfg.batch_real, generator)
        x_syn = syn[c * n:(c + 1) * n]
        if n > cfg.batch_syn_max:
            x_syn = x_syn[torch.randperm(n, generator=generator)[:cfg.batch_syn_max].to(x_syn.device)]
        x_real, x_syn = siamese(augment, x_real, x_syn, generator)
        y_real = torch.full((len(x_real),), c, dtype=torch.long, device=syn.device)
        y_syn = torch.full((len(x_syn),), c, dtype=torch.long, device=syn.device)
        g_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(x_real), y_real), weights)]
        g_syn = torch.autograd.grad(F.cross_entropy(net(x_syn), y_syn), weights, create_graph=True)
        power = 2 if cfg.metric == "mse" else 1
        return torch.stack([(a - b).abs().pow(power).sum() for a, b in zip(g_syn, g_real, strict=True)]).sum()

    def _train_on_real(self, net: nn.Module, optimizer: torch.optim.Optimizer, real: LabeledData,
                       sampler: ClassSampler, augment: Any, generator: torch.Generator,
                       samples: int | None = None) -> None:
        """``samples`` (default ``net_samples``) real images of SGD in batches of ``batch_net``, drawn with
        replacement, with per-image augmentation and CutMix."""
        cfg = self.config
        samples = cfg.net_samples if samples is None else samples
        done = 0
        while done < samples:
            size = min(cfg.batch_net, samples - done)
            idx = torch.randint(len(real.y), (size,), generator=generator)
            x, y = sampler.x[idx.to(sampler.x.device)], real.y[idx].to(sampler.x.device)
            if augment is not None:
                x = augment(x, generator=generator)
            if cfg.cutmix and float(torch.rand((), generator=generator)) < cfg.cutmix:
                x, y_a, y_b, lam = cutmix(x, y, generator)
                out = net(x)
                loss = lam * F.cross_entropy(out, y_a) + (1 - lam) * F.cross_entropy(out, y_b)
            else:
                loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += size


# ------------------------------------------------------------------------------------ model augmentation
def perturb_weights(net: nn.Module, low: float, high: float, generator: torch.Generator,
                    directions: int = 2) -> None:
    """Acc-DD's weight perturbation: W += Σ_d a_d · D_d over ``directions`` random directions, each rescaled
    filter by filter to the norm of W's filter (loss-landscape "filter normalisation"), with a_d ~ U(low, high)
    times a random sign. Biases and normalisation parameters (1-D) stay as they are."""
    with torch.no_grad():
        coefs = [(low + (high - low) * float(torch.rand((), generator=generator)))
                 * (1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0) for _ in range(directions)]
        for p in net.parameters():
            if p.dim() < 2:
                continue
            norms = p.reshape(p.shape[0], -1).norm(dim=1)
            for a in coefs:
                d = torch.randn(p.shape, generator=generator).to(p.device)
                d_norms = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12)
                d = d * (norms / d_norms).view(-1, *([1] * (p.dim() - 1)))
                p.add_(a * d)


class ModelAugmentation(IDC):
    """Accelerating dataset distillation via model augmentation (Zhang et al. 2023): IDC whose networks are
    early-stage models instead of new random ones. Before distilling, ``pool_size`` networks train
    ``pretrain_epochs`` epochs on the real data (IDC's real-data recipe); each outer iteration copies one of
    them (uniformly at random) and perturbs its weights (:func:`perturb_weights`, two filter-normalised
    directions with coefficients in [``perturb_min``, ``perturb_max``]). The gain the authors claim is
    speed: comparable accuracy in far fewer outer iterations (500 by default against IDC's 2000).
    ``meta`` records ``pretrain_seconds`` (included in the distillation time)."""

    name = "model-augmentation"

    @dataclass(frozen=True)
    class Config(IDC.Config):
        iterations: int = 500
        pool_size: int = 5
        pretrain_epochs: int = 2
        perturb_min: float = 0.01
        perturb_max: float = 0.09

        def __post_init__(self) -> None:
            super().__post_init__()
            check(self.pool_size >= 1, f"pool_size must be at least 1, got {self.pool_size}.")
            check(self.pretrain_epochs >= 0, f"pretrain_epochs must be at least 0, got {self.pretrain_epochs}.")
            check(0 <= self.perturb_min <= self.perturb_max,
                  f"need 0 <= perturb_min <= perturb_max, got {self.perturb_min} and {self.perturb_max}.")

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        start = time.perf_counter()
        sampler = ClassSampler(real, device)
        augment = chain_augment(cfg.augment)
        pool = []
        for _ in range(cfg.pool_size):
            net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
            net.train()
            optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=0.9, weight_decay=5e-4)
            self._train_on_real(net, optimizer, real, sampler, augment, generator,
                                samples=cfg.pretrain_epochs * len(real.y))
            pool.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        self._pool, self._pretrain_seconds = pool, time.perf_counter() - start
        try:
            return super()._distill(real, ipc, generator, device, progress)
        finally:
            self._pool = []

    def _network(self, real: LabeledData, generator: torch.Generator, device: torch.device) -> nn.Module:
        cfg = self.config
        net = build_network(cfg.network, real, 0, cfg.network_args, device)
        net.load_state_dict(self._pool[int(torch.randint(len(self._pool), (), generator=generator))])
        perturb_weights(net, cfg.perturb_min, cfg.perturb_max, generator)
        return net

    def _extra_meta(self) -> dict[str, Any]:
        return {"pretrain_seconds": round(self._pretrain_seconds, 3)}

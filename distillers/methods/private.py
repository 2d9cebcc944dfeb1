"""Differentially private distillation: DP distribution matching ("dp-dm") and PSG-style DP gradient matching ("psg").

Both methods touch the real images only through one release per step: for every class, the SUM over a
Poisson-sampled batch of per-example vectors (embeddings for DP-DM, weight gradients for PSG), each clipped
to L2 norm ``C``, plus Gaussian noise N(0, σ²C²) per coordinate, divided by the class's expected batch size.
Everything else (the noise initialisation of the synthetic images, the random networks, DSA parameters, the
inner-loop training of PSG on synthetic images, learning rates, stopping) is independent of the real data,
so the synthetic set is post-processing of these releases.

Privacy statement. Neighbouring datasets differ by adding or removing one real example (add/remove relation).
The classes are disjoint, so at each step only one class's sum changes, by at most ``C`` in L2 norm: the
step is one subsampled Gaussian mechanism with noise multiplier σ. Class c is sampled with rate
q_c = min(1, batch_real / n_c); the accountant is run with q = max_c q_c (amplification is monotone in q, so
this is conservative). The class sizes n_c (hence the rates and the expected batch sizes q_c·n_c) are treated
as public, as Opacus treats the dataset size in ``sample_rate = batch / N``. The networks must process each
example independently: BatchNorm (batch statistics, running statistics) is rejected; the default
instance-norm ConvNet is fine. Noise comes from the run's seeded ``torch.Generator`` (not a cryptographic
generator: fine for research and audits, not for production releases). Floating-point effects are ignored,
as usual. ``meta["source"]["fingerprint"]`` (added by the base class) is a hash of the real data, kept for
provenance: strip it before publishing a set.

``meta["dp"]`` = {"epsilon" (the accountant's ε after all steps; ``None`` when σ = 0, i.e. not private),
"delta", "noise_multiplier", "max_grad_norm" (the absolute clip C used), "sample_rate", "steps",
"accountant", "target_epsilon", "neighbouring"}.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from distillers.accounting import accountant_epsilon, check_budget, noise_for_epsilon
from distillers.config import check, is_number
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.fastpath import FastPath
from distillers.methods.base import Distiller
from distillers.methods.common import (
    LossLog,
    build_network,
    check_network,
    class_labels,
    draw_seed,
    make_augment,
    step_images,
)
from distillers.methods.distribution import DM
from distillers.methods.gradient import DC
from distillers.parameterize import initial_images
from distillers.synthetic import SyntheticSet

#: ε target used when neither ``epsilon`` nor ``noise_multiplier`` is given (PSG's headline setting).
DEFAULT_EPSILON = 10.0
NEIGHBOURING = "add/remove one real example (class sizes public)"

# ------------------------------------------------------------------------------------------ checks


def check_privacy(cfg: Any) -> None:
    """Validate the privacy keys shared by both methods; fill in the default ε when σ is not given."""
    check_budget(cfg, default_epsilon=DEFAULT_EPSILON)
    check(is_number(cfg.delta) and 0 < cfg.delta < 1, f"delta must lie in (0, 1), got {cfg.delta!r}.")
    check(cfg.max_grad_norm is None or (is_number(cfg.max_grad_norm) and cfg.max_grad_norm > 0),
          f"max_grad_norm must be a positive finite number, got {cfg.max_grad_norm!r}.")
    check(cfg.init == "noise", f'init must be "noise" for a private method (init={cfg.init!r} would copy real '
                               'images into the synthetic set); pass init="noise" or drop the key.')
    check_per_example(cfg.network, cfg.network_args)


def couples_examples(net: nn.Module) -> bool:
    """True when ``net`` has a module whose output for one example depends on other examples or on past
    batches (BatchNorm's batch and running statistics, InstanceNorm with running statistics)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return True
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            return True
    return False


def _batchnorm_error(name: str) -> DDError:
    return DDError(f'Network "{name}" uses BatchNorm, whose batch/running statistics would leak real data past '
                   'the per-example clipping; use a per-example norm (the default "convnet", instance norm).')


def check_per_example(name: str, network_args: dict[str, Any]) -> None:
    """Config-time check: the network exists and processes examples independently (a tiny build)."""
    from distillers import networks

    check_network(name, network_args)
    try:
        net = networks.create(name, channels=1, num_classes=2, image_size=(8, 8), seed=0, **network_args)
    except DDError:
        raise
    except Exception:  # noqa: BLE001 - shape-specific build failures are re-checked on the real shape
        return
    if couples_examples(net):
        raise _batchnorm_error(name)


# ------------------------------------------------------------------------------ the private release


def clip_rows(v: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Each row of ``v`` ``[m, d]`` scaled down to L2 norm ≤ ``max_norm`` (rows already inside are kept);
    differentiable, so the synthetic side can use the same map."""
    factor = max_norm / v.norm(dim=1).clamp(min=max_norm)
    return v * factor[:, None]


def gaussian(shape: Sequence[int] | torch.Size, std: float, generator: torch.Generator,
             device: torch.device | str) -> torch.Tensor:
    """N(0, std²) noise drawn from ``generator`` (on its device, the CPU) and moved to ``device``."""
    if std == 0:
        return torch.zeros(tuple(shape), device=device)
    return (torch.randn(tuple(shape), generator=generator) * std).to(device)


def private_mean_embedding(features: torch.Tensor, *, max_norm: float, noise_multiplier: float,
                           expected_size: float, generator: torch.Generator) -> torch.Tensor:
    """(Σ_i clip(f_i, C) + N(0, σ²C² I)) / expected_size for per-example features ``[m, d]`` (m may be 0)."""
    total = clip_rows(features.float(), max_norm).sum(0)
    return (total + gaussian(total.shape, noise_multiplier * max_norm, generator, total.device)) / expected_size


def per_example_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str],
                          chunk: int = 64) -> list[torch.Tensor]:
    """∇ CE(net(x_i), y_i) with respect to the parameters ``names``, one row per example: ``[m, *shape]``.

    torch.func (functional_call + vmap(grad)) in float32; the other parameters and the buffers are held
    fixed. Computed in chunks of ``chunk`` examples to bound memory.
    """
    from torch.func import functional_call, grad, vmap

    fixed = {n: p.detach() for n, p in net.named_parameters()}
    buffers = {n: b.detach() for n, b in net.named_buffers()}
    wanted = {n: fixed[n] for n in names}

    def loss_one(w: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, ({**fixed, **w}, buffers), (xi[None],))
        return F.cross_entropy(out.float(), yi[None])

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    parts: list[dict[str, torch.Tensor]] = [per_example(wanted, x[i:i + chunk].float(), y[i:i + chunk])
                                            for i in range(0, len(x), chunk)]
    return [torch.cat([p[n] for p in parts]) if parts else fixed[n].new_zeros((0, *fixed[n].shape))
            for n in names]


def private_gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str], *, max_norm: float,
                     noise_multiplier: float, expected_size: float, generator: torch.Generator) -> list[torch.Tensor]:
    """(Σ_i clip(g_i, C) + N(0, σ²C² I)) / expected_size, with g_i the per-example gradient of the parameters
    ``names`` flattened together (one joint norm per example), returned per parameter."""
    params = dict(net.named_parameters())
    shapes = [params[n].shape for n in names]
    device = params[names[0]].device
    if len(x):
        grads = per_example_gradients(net, x, y, names)
        flat = clip_rows(torch.cat([g.flatten(1) for g in grads], dim=1), max_norm).sum(0)
    else:
        flat = torch.zeros(sum(s.numel() for s in shapes), device=device)
    flat = (flat + gaussian(flat.shape, noise_multiplier * max_norm, generator, device)) / expected_size
    return [piece.view(shape) for piece, shape in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]


class PoissonSampler:
    """Poisson sampling per class: each real image of class c is in the batch independently with probability
    q_c = min(1, batch_real / n_c), so the expected batch size is q_c · n_c (= batch_real when n_c ≥ batch_real)."""

    def __init__(self, real: LabeledData, batch_real: int, device: torch.device | str) -> None:
        self.x = real.x.to(device)
        self.index = [real.indices_of(c) for c in range(real.num_classes)]
        self.rates = [min(1.0, batch_real / len(idx)) if len(idx) else 1.0 for idx in self.index]
        self.expected = [max(q * len(idx), 1.0) for q, idx in zip(self.rates, self.index, strict=True)]

    @property
    def sample_rate(self) -> float:
        """The rate the accountant uses: the largest per-class rate."""
        return max(self.rates)

    def sample(self, label: int, generator: torch.Generator) -> torch.Tensor:
        """A Poisson batch of class ``label`` (possibly empty)."""
        idx = self.index[label]
        keep = torch.rand(idx.numel(), generator=generator) < self.rates[label]
        return self.x[idx[keep].to(self.x.device)]


# --------------------------------------------------------------------------------------- accounting


def calibrate_noise(cfg: Any, sample_rate: float, steps: int) -> float:
    """σ: the configured ``noise_multiplier``, or the smallest σ (Opacus' search) whose accountant ε after
    ``steps`` steps at ``sample_rate`` is ≤ ``cfg.epsilon`` (within 0.01)."""
    if cfg.noise_multiplier is not None:
        return float(cfg.noise_multiplier)
    try:
        return noise_for_epsilon(float(cfg.epsilon), float(cfg.delta), float(sample_rate), int(steps),
                                 cfg.accountant)
    except ValueError as err:
        raise DDError(f"Cannot reach epsilon={cfg.epsilon} at delta={cfg.delta:g} with {steps} steps at sample "
                      f"rate {sample_rate:.4g} ({err}); raise epsilon, or lower iterations or batch_real.") from None


def dp_meta(cfg: Any, noise_multiplier: float, max_norm: float, sample_rate: float, steps: int) -> dict[str, Any]:
    """The ``meta["dp"]`` record (JSON-able)."""
    return {"epsilon": accountant_epsilon(noise_multiplier, sample_rate, steps, cfg.delta, cfg.accountant),
            "delta": float(cfg.delta), "noise_multiplier": float(noise_multiplier), "max_grad_norm": float(max_norm),
            "sample_rate": float(sample_rate), "steps": int(steps), "accountant": cfg.accountant,
            "target_epsilon": None if cfg.epsilon is None else float(cfg.epsilon), "neighbouring": NEIGHBOURING}


def _network(cfg: Any, real: LabeledData, seed: int, device: torch.device) -> nn.Module:
    net = build_network(cfg.network, real, seed, cfg.network_args, device)
    if couples_examples(net):
        raise _batchnorm_error(cfg.network)
    return net


# ------------------------------------------------------------------------------------------- DP-DM


class DPDM(Distiller):
    """DP distribution matching: DM whose real-side class means are private (see the module docstring).

    Per iteration and class: a Poisson batch of real images (rate batch_real / n_c), siamese DSA, embeddings
    under a fresh random frozen network, each clipped to norm ``C``, summed, N(0, σ²C²) added, divided by the
    expected batch size. The synthetic embeddings go through the same clipping map (so that with a large C
    and σ = 0 the objective is DM's) and their class mean is matched in squared L2. Budget keys and defaults
    are DM's (REFERENCE §3: 20,000 iterations, lr_img 1.0, momentum 0.5, batch_real 256, DSA on) except
    init, which must be "noise". Privacy keys: ``epsilon`` (default 10 unless ``noise_multiplier`` is given;
    σ is calibrated to it), ``noise_multiplier``, ``delta`` = 1e-5, ``accountant`` = "prv",
    ``max_grad_norm`` = None → C = √d / 2 for d-dimensional embeddings (an architecture constant: random
    instance-norm ConvNet features have norm ≈ 0.4–0.5·√d on any input, so this C clips little and keeps DM's
    scale and learning rate). ``fast`` embeds under bf16 autocast (the clipping, sums, noise and loss are
    float32; the clip bounds whatever vector the network returns, so the guarantee does not depend on the
    precision); it never compiles, as Poisson batch sizes change every step.
    """

    name = "dp-dm"

    @dataclass(frozen=True)
    class Config(DM.Config):
        init: Literal["real", "noise"] = "noise"
        epsilon: float | None = None
        noise_multiplier: float | None = None
        delta: float = 1e-5
        max_grad_norm: float | None = None
        accountant: Literal["rdp", "prv"] = "prv"

        def __post_init__(self) -> None:
            super().__post_init__()
            check_privacy(self)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        k = real.num_classes
        sampler = PoissonSampler(real, cfg.batch_real, device)
        sigma = calibrate_noise(cfg, sampler.sample_rate, cfg.iterations)
        augment = make_augment(cfg.dsa, cfg.dsa_strategy, real.name)
        syn = initial_images(real, ipc, "noise", generator).to(device).requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        fast = dataclasses.replace(FastPath.resolve(cfg.fast, device, steps=cfg.iterations), compile=False)
        log = LossLog(cfg.iterations, f"DP-DM diverged; lower lr_img (now {cfg.lr_img}).", watch=[syn])
        clip: float | None = cfg.max_grad_norm
        start = time.perf_counter()
        with self.progress_bar(cfg.iterations, progress, self.name) as bar, log.guard():
            for _ in range(cfg.iterations):
                net = _network(cfg, real, draw_seed(generator), device)
                net.train()
                net.requires_grad_(False)
                embed_fn = cast(Callable[[torch.Tensor], torch.Tensor], net.embed)
                reals, syns = [], []
                for c in range(k):
                    x_real = sampler.sample(c, generator)
                    x_syn = syn[c * ipc:(c + 1) * ipc]
                    if augment is not None:
                        seed = draw_seed(generator)  # siamese: one transform for both batches
                        x_syn = augment(x_syn, seed=seed)
                        x_real = augment(x_real, seed=seed) if len(x_real) else x_real
                    reals.append(x_real)
                    syns.append(x_syn)
                with fast.autocast():
                    f_syn = embed_fn(torch.cat(syns)).float()
                if clip is None:
                    clip = math.sqrt(f_syn.shape[1]) / 2
                real_batch = torch.cat(reals)
                with torch.no_grad(), fast.autocast():
                    f_real = (embed_fn(real_batch).float() if len(real_batch)
                              else f_syn.new_zeros((0, f_syn.shape[1])))
                loss = torch.zeros((), device=device)
                chunks = f_real.detach().split([len(r) for r in reals])
                for c, (fr, fs) in enumerate(zip(chunks, f_syn.split(ipc), strict=True)):
                    target = private_mean_embedding(fr, max_norm=clip, noise_multiplier=sigma,
                                                    expected_size=sampler.expected[c], generator=generator)
                    loss = loss + ((target - clip_rows(fs, clip).mean(0)) ** 2).sum()
                step_images(optimizer, loss, log, bar)
        log.flush()
        seconds = time.perf_counter() - start
        assert clip is not None
        return self.make_set(syn.detach(), class_labels(k, ipc), real, fast=fast.label,
                             seconds_per_iteration=round(seconds / cfg.iterations, 6), **log.meta(),
                             dp=dp_meta(cfg, sigma, clip, sampler.sample_rate, cfg.iterations))


# --------------------------------------------------------------------------------------------- PSG


@dataclass
class _Release:
    """State of one PSG run shared with the matching loss: the sampler, σ and the count of releases."""

    sampler: PoissonSampler
    noise_multiplier: float
    steps: int = 0


class PSG(DC):
    """DP gradient matching in the style of PSG (Chen et al. 2022) on DC's loops (see the module docstring).

    Per outer step and class: a Poisson batch of real images (rate batch_real / n_c), per-example CE
    gradients of the network's weight matrices/kernels (the tensors DC's distance uses; biases and norm
    parameters are neither released nor matched), each clipped jointly to norm ``max_grad_norm`` = 0.1
    (PSG's value, REFERENCE §6), summed, N(0, σ²C²) added, divided by the expected batch size; the synthetic
    gradient is matched to it with DC's layer-wise cosine distance. Per-example gradients are float32
    (torch.func); the synthetic side and the inner loop (synthetic images only) may use the fast path. Steps
    accounted: iterations × outer_loop. Budget defaults are DC's (REFERENCE §3: 1000 iterations, lr_img 0.1,
    lr_net 0.01, batch_real 256, noise init, loops by ipc); ε = 10, δ = 1e-5 as in PSG; accountant "prv".
    """

    name = "psg"

    @dataclass(frozen=True)
    class Config(DC.Config):
        epsilon: float | None = None
        noise_multiplier: float | None = None
        delta: float = 1e-5
        max_grad_norm: float = 0.1
        accountant: Literal["rdp", "prv"] = "prv"

        def __post_init__(self) -> None:
            super().__post_init__()
            check_privacy(self)

    _release: _Release | None = None

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        cfg = self.config
        outer_loop, _ = self.loops(ipc)
        steps = cfg.iterations * outer_loop
        sampler = PoissonSampler(real, cfg.batch_real, device)
        _network(cfg, real, 0, device)  # BatchNorm check on the real image shape, before any real data is read
        release = _Release(sampler, calibrate_noise(cfg, sampler.sample_rate, steps))
        self._release = release
        try:
            syn = super()._distill(real, ipc, generator, device, progress)
        finally:
            self._release = None
        if release.steps != steps and "diverged" not in syn.meta:  # pragma: no cover - guards the accounting
            raise RuntimeError(f"PSG released {release.steps} gradients but accounted for {steps}.")
        syn.meta["dp"] = dp_meta(cfg, release.noise_multiplier, cfg.max_grad_norm, sampler.sample_rate, steps)
        return syn

    def _matching_loss(self, net: nn.Module, forward: Any, fast: FastPath, weights: Sequence[torch.Tensor],
                       sampler: Any, syn: torch.Tensor, ipc: int, augment: Any,
                       generator: torch.Generator) -> torch.Tensor:
        """Σ_c gradient_distance(∇ CE(syn_c), private real gradient of class c); one accounted release.

        DC's ``sampler`` (uniform batches) is not used: real batches come from the Poisson sampler."""
        from distillers.methods.gradient import gradient_distance

        release = self._release
        if release is None:
            raise RuntimeError("PSG._matching_loss runs only inside PSG.distill.")
        cfg = self.config
        names = [n for n, p in net.named_parameters() if p.requires_grad and p.dim() >= 2]
        loss = torch.zeros((), device=syn.device)
        for c in range(len(release.sampler.index)):
            x_real = release.sampler.sample(c, generator)
            x_syn = syn[c * ipc:(c + 1) * ipc]
            if augment is not None:
                seed = draw_seed(generator)  # siamese: the same transform for the real and the synthetic batch
                x_syn = augment(x_syn, seed=seed)
                x_real = augment(x_real, seed=seed) if len(x_real) else x_real
            y_real = torch.full((len(x_real),), c, dtype=torch.long, device=syn.device)
            g_real = private_gradient(net, x_real.detach(), y_real, names, max_norm=cfg.max_grad_norm,
                                      noise_multiplier=release.noise_multiplier,
                                      expected_size=release.sampler.expected[c], generator=generator)
            y_syn = torch.full((ipc,), c, dtype=torch.long, device=syn.device)
            with fast.autocast():
                out_syn = net(x_syn)
            g_syn = torch.autograd.grad(F.cross_entropy(out_syn.float(), y_syn), weights, create_graph=True)
            loss = loss + gradient_distance(g_syn, g_real)
        release.steps += 1
        return loss

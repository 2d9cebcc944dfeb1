"""Synthetic-data parameterisations: how the learned tensors become training images.

A parameterisation is a small ``nn.Module`` whose learnable tensors are the synthetic set's *compact form*
and whose :meth:`Parameterization.decode` turns them into images (class by class, the same number per
class), differentiably, so any matching method can optimise it in place of raw pixels. Chosen by a method's
``parameterization`` config key (with ``parameterization_args``), never by a new method:

- ``pixels``: the images themselves (the default; ``ipc`` images per class).
- ``multi-formation`` (IDC, Kim et al. 2022): each stored image is split into ``factor`` x ``factor`` tiles,
  each tile upsampled back to full size: ``ipc * factor**2`` images per class from the storage of ``ipc``.
- ``haba`` (Liu et al. 2022): per-class bases and a few hallucinator networks shared by all classes; every
  (base, hallucinator) pair is an image.
- ``addressing`` (RTP, Deng & Russakovsky 2022): a memory of bases shared by all classes (at reduced
  resolution) and one coefficient vector per (class, slot) that mixes them; the number of slots per class
  follows the authors' fixed-budget formula, so the storage equals that of ``ipc`` images per class.
- ``latents`` (GAN inversion, Zhao & Bilen 2022): ``ipc`` latent codes per class of a small conditional GAN
  trained here on the real data (:mod:`distillers.generative`); real init inverts real images into it. The
  generator is frozen and stored with the set (it counts towards the storage).

``compact()`` is what a :class:`~distillers.synthetic.SyntheticSet` stores, :func:`rebuild` what it
decodes on load; :meth:`Parameterization.storage_bytes` gives the size it reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from distillers.config import build_config, check, config_dict
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.registry import Registry

PARAMETERIZATIONS: Registry = Registry("parameterization")


class Parameterization(nn.Module):
    """Base class: ``Config`` (frozen dataclass), shapes fixed by (config, classes, ipc, image shape)."""

    name: ClassVar[str] = ""
    # Raised when a change alters what a given config distils to (e.g. a new initialisation), so cached sets
    # made before are distilled again; runs key a set on it when it is above 1.
    recipe_version: ClassVar[int] = 1

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any, num_classes: int, ipc: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.num_classes, self.ipc = int(num_classes), int(ipc)
        self.image_shape = tuple(int(s) for s in image_shape)

    @property
    def per_class(self) -> int:
        """Decoded images per class."""
        raise NotImplementedError

    def decode(self) -> torch.Tensor:
        """``[num_classes * per_class, C, H, W]``, class by class (differentiable in the parameters)."""
        raise NotImplementedError

    def initialize(self, real: LabeledData, init: str, generator: torch.Generator) -> None:
        """Set the parameters from real images (``init="real"``) or noise (``"noise"``)."""
        raise NotImplementedError

    def learnable(self) -> list[nn.Parameter]:
        """The tensors a method optimises (a frozen part, such as a generator, is stored but not learned)."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups for a method's image step size ``lr``: one group at ``lr`` unless a
        parameterisation steps some of its tensors at another rate."""
        return [{"params": self.learnable(), "lr": lr}]

    def compact(self) -> dict[str, torch.Tensor]:
        """The stored form: every parameter, detached, float32, on the CPU."""
        return {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}

    def storage_bytes(self) -> int:
        """Bytes of the compact form as float32."""
        return sum(4 * t.numel() for t in self.compact().values())

    def spec(self) -> dict[str, Any]:
        """Everything :func:`rebuild` needs besides the tensors (JSON-ready)."""
        return {"name": self.name, "args": config_dict(self.config), "num_classes": self.num_classes,
                "ipc": self.ipc, "image_shape": list(self.image_shape)}


def _real_images(real: LabeledData, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """``per_class`` random real images of every class, class by class (``real.stratified_indices``)."""
    return real.x[real.stratified_indices(per_class, generator)].clone()


def initial_images(real: LabeledData, ipc: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """``ipc`` starting images per class (class by class): random real images or N(0, 1) noise. Every method
    starts from these, so ``pixels`` starts exactly where a method without this layer does."""
    if init == "real":
        return _real_images(real, ipc, generator)
    return torch.randn((real.num_classes * ipc, *real.image_shape), generator=generator)


# ------------------------------------------------------------------------------------------- pixels
@PARAMETERIZATIONS.register("pixels", help="the images themselves (default)")
class Pixels(Parameterization):
    name = "pixels"

    def __init__(self, config: Any, num_classes: int, ipc: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, num_classes, ipc, image_shape)
        self.images = nn.Parameter(torch.zeros(num_classes * ipc, *self.image_shape))

    @property
    def per_class(self) -> int:
        return self.ipc

    def decode(self) -> torch.Tensor:
        return self.images

    def initialize(self, real: LabeledData, init: str, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.images.copy_(initial_images(real, self.ipc, init, generator))


# --------------------------------------------------------------------------------- multi-formation
@PARAMETERIZATIONS.register("multi-formation", help="IDC: each stored image decodes to factor^2 upsampled tiles")
class MultiFormation(Parameterization):
    """IDC's multi-formation: a stored image is an ``factor`` x ``factor`` grid of tiles, each tile upsampled
    (bilinear) to the full size. Real init: ``factor**2`` real images per stored image, each shrunk into a
    tile (nearest), as the authors' ``mix`` init. Image sides not divisible by ``factor`` are padded with
    zeros (the normalised data's mean) on the right and bottom before splitting."""

    name = "multi-formation"

    @dataclass(frozen=True)
    class Config:
        factor: int = 2

        def __post_init__(self) -> None:
            check(self.factor >= 1, f"multi-formation factor must be at least 1, got {self.factor}.")

    def __init__(self, config: Any, num_classes: int, ipc: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, num_classes, ipc, image_shape)
        f = config.factor
        _, h, w = self.image_shape
        check(h >= 2 * f and w >= 2 * f, f"multi-formation factor {f} is too large for {h}x{w} images.")
        self.tile = (math.ceil(h / f), math.ceil(w / f))
        self.images = nn.Parameter(torch.zeros(num_classes * ipc, *self.image_shape))

    @property
    def per_class(self) -> int:
        return self.ipc * self.config.factor ** 2

    def decode(self) -> torch.Tensor:
        f = self.config.factor
        if f == 1:
            return self.images
        c, h, w = self.image_shape
        th, tw = self.tile
        x = F.pad(self.images, (0, tw * f - w, 0, th * f - h))
        # [N, C, f*th, f*tw] -> [N, f, f, C, th, tw] -> [N*f*f, C, th, tw], tiles in row-major order.
        tiles = x.reshape(-1, c, f, th, f, tw).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, th, tw)
        return F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)

    def initialize(self, real: LabeledData, init: str, generator: torch.Generator) -> None:
        f = self.config.factor
        if init != "real":
            with torch.no_grad():
                self.images.copy_(torch.randn(self.images.shape, generator=generator))
            return
        c, h, w = self.image_shape
        th, tw = self.tile
        small = F.interpolate(_real_images(real, self.ipc * f * f, generator), size=(th, tw), mode="nearest")
        grid = small.reshape(-1, f, f, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(-1, c, f * th, f * tw)
        with torch.no_grad():
            self.images.copy_(grid[:, :, :h, :w])


# -------------------------------------------------------------------------------------------- HaBa
class Hallucinator(nn.Module):
    """HaBa's hallucinator: 3x3 conv (no padding), a learnable per-position scale and shift, 3x3 transposed
    conv back to the image size."""

    def __init__(self, channels: int, hidden: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.enc = nn.Conv2d(channels, hidden, kernel_size=3)
        self.scale = nn.Parameter(torch.ones(1, hidden, size[0] - 2, size[1] - 2))
        self.shift = nn.Parameter(torch.zeros(1, hidden, size[0] - 2, size[1] - 2))
        self.dec = nn.ConvTranspose2d(hidden, channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x) * self.scale + self.shift)


@PARAMETERIZATIONS.register("haba", help="HaBa: per-class bases x shared hallucinator networks")
class HaBa(Parameterization):
    """Bases and hallucinators (Liu et al. 2022): ``bases`` per class (default: ipc) and ``hallucinators``
    networks shared by every class; the set is every hallucinator applied to every base, so
    ``bases * hallucinators`` images per class. Hallucinators are initialised from a seeded generator (the
    method's), bases from real images or noise. Only the factorisation: HaBa's adversarial contrastive
    term belongs to a method, not to this layer."""

    name = "haba"

    @dataclass(frozen=True)
    class Config:
        bases: int | None = None
        hallucinators: int = 5
        hidden: int | None = None  # hallucinator channels (default: the image channels, as the authors)

        def __post_init__(self) -> None:
            check(self.bases is None or self.bases >= 1, f"haba bases must be at least 1, got {self.bases}.")
            check(self.hallucinators >= 1, f"haba hallucinators must be at least 1, got {self.hallucinators}.")
            check(self.hidden is None or self.hidden >= 1, f"haba hidden must be at least 1, got {self.hidden}.")

    def __init__(self, config: Any, num_classes: int, ipc: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, num_classes, ipc, image_shape)
        c, h, w = self.image_shape
        check(h >= 3 and w >= 3, "haba needs images of at least 3x3 pixels.")
        self.num_bases = config.bases or ipc
        self.bases = nn.Parameter(torch.zeros(num_classes * self.num_bases, c, h, w))
        self.hallucinator_nets = nn.ModuleList(
            Hallucinator(c, config.hidden or c, (h, w)) for _ in range(config.hallucinators))

    @property
    def per_class(self) -> int:
        return self.num_bases * self.config.hallucinators

    def decode(self) -> torch.Tensor:
        out = torch.stack([net(self.bases) for net in self.hallucinator_nets], dim=1)  # [K*nb, H, C, h, w]
        return out.reshape(self.num_classes, self.per_class, *self.image_shape).flatten(0, 1)

    def initialize(self, real: LabeledData, init: str, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.bases.copy_(_real_images(real, self.num_bases, generator) if init == "real"
                             else torch.randn(self.bases.shape, generator=generator))
            for net in cast(list[Hallucinator], list(self.hallucinator_nets)):
                for conv in (net.enc, net.dec):  # PyTorch's default uniform bound, drawn from the seed
                    weight, bias = cast(torch.Tensor, conv.weight), cast(torch.Tensor, conv.bias)
                    bound = 1.0 / math.sqrt(weight[0].numel())
                    weight.copy_((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound)
                    bias.copy_((torch.rand(bias.shape, generator=generator) * 2 - 1) * bound)


# --------------------------------------------------------------------------------------- addressing
@PARAMETERIZATIONS.register("addressing", help="RTP: shared memory of bases + per-class addressing vectors")
class Addressing(Parameterization):
    """Addressable memory (Deng & Russakovsky 2022): ``bases`` images of reduced resolution (side divided by
    ``downsample``) shared by all classes, and for every (class, slot) a coefficient vector over the bases;
    image (c, j) = bilinear upsampling of Σ_b A[c, j, b] M_b. Slots per class follow the authors'
    fixed-budget rule, floor((ipc·K·C·H·W − bases·C·H·W/ds²) / (K·bases)), so the stored floats do not
    exceed those of ``ipc`` images per class (``slots`` overrides it). Xavier-uniform init for both, as the
    authors; real init instead sets the bases to shrunken real images (classes interleaved) and each slot's
    coefficients to a one-hot on a random base of the slot's own class, plus noise of std 0.1/sqrt(bases) so
    the mixed-in images stay small however many bases there are. (Recipe 1 picked the base from any class,
    with noise 0.1 whatever the bases: slots began as images of random classes, 9% label agreement on MNIST,
    and at 128 bases the noise outweighed the image.)"""

    name = "addressing"
    recipe_version = 2

    @dataclass(frozen=True)
    class Config:
        bases: int = 16
        downsample: int = 2
        slots: int | None = None
        # The coefficients' step size over the method's image step size (the bases take the latter). A
        # coefficient's gradient sums over every pixel of its base, so at 1.0 one DM step at lr 0.1 mixes
        # every slot with all 128 bases on MNIST (reports/mnist-part2/FINDINGS.md).
        address_lr_scale: float = 1.0

        def __post_init__(self) -> None:
            check(self.bases >= 1, f"addressing bases must be at least 1, got {self.bases}.")
            check(self.downsample >= 1, f"addressing downsample must be at least 1, got {self.downsample}.")
            check(self.slots is None or self.slots >= 1, f"addressing slots must be at least 1, got {self.slots}.")
            check(self.address_lr_scale > 0,
                  f"addressing address_lr_scale must be positive, got {self.address_lr_scale}.")

    def __init__(self, config: Any, num_classes: int, ipc: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, num_classes, ipc, image_shape)
        c, h, w = self.image_shape
        ds = config.downsample
        self.small = (math.ceil(h / ds), math.ceil(w / ds))
        slots = config.slots or self.budget_slots(config, num_classes, ipc, self.image_shape)
        if slots < 1:
            raise DDError(f"addressing with {config.bases} bases does not fit the storage of ipc={ipc}: the "
                          "memory alone is larger; use fewer bases, a larger downsample, or set slots.")
        self.slots = slots
        self.memory = nn.Parameter(torch.zeros(config.bases, c, *self.small))
        self.addresses = nn.Parameter(torch.zeros(num_classes, slots, config.bases))

    @staticmethod
    def budget_slots(config: Any, num_classes: int, ipc: int, image_shape: tuple[int, ...]) -> int:
        c, h, w = image_shape
        budget = ipc * num_classes * c * h * w
        memory = config.bases * c * math.ceil(h / config.downsample) * math.ceil(w / config.downsample)
        return (budget - memory) // (num_classes * config.bases)

    @staticmethod
    def base_classes(bases: int, num_classes: int) -> torch.Tensor:
        """The class whose real images real init puts in each base: base i holds class i mod num_classes."""
        return torch.arange(bases) % num_classes

    @staticmethod
    def own_class_bases(bases: int, num_classes: int, slots: int, generator: torch.Generator) -> torch.Tensor:
        """For every (class, slot) a random index among the bases real init filled from that class
        (:meth:`base_classes`); any base when there are fewer bases than classes."""
        owner = Addressing.base_classes(bases, num_classes)
        pick = torch.empty(num_classes, slots, dtype=torch.long)
        for c in range(num_classes):
            own = torch.nonzero(owner == c).flatten() if bases >= num_classes else torch.arange(bases)
            pick[c] = own[torch.randint(len(own), (slots,), generator=generator)]
        return pick

    @property
    def per_class(self) -> int:
        return self.slots

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [self.memory], "lr": lr},
                {"params": [self.addresses], "lr": lr * self.config.address_lr_scale}]

    def decode(self) -> torch.Tensor:
        mixed = torch.einsum("ksb,bchw->kschw", self.addresses, self.memory).flatten(0, 1)
        if self.config.downsample == 1:
            return mixed
        _, h, w = self.image_shape
        return F.interpolate(mixed, size=(h, w), mode="bilinear", align_corners=False)

    def initialize(self, real: LabeledData, init: str, generator: torch.Generator) -> None:
        b = self.config.bases
        with torch.no_grad():
            if init == "real":
                per = max(1, math.ceil(b / real.num_classes))
                images = _real_images(real, per, generator)
                order = torch.arange(per * real.num_classes).reshape(real.num_classes, per).T.flatten()[:b]
                self.memory.copy_(F.interpolate(images[order], size=self.small, mode="bilinear",
                                                align_corners=False))
                pick = self.own_class_bases(b, self.num_classes, self.slots, generator)
                noise = (0.1 / math.sqrt(b)) * torch.randn(self.addresses.shape, generator=generator)
                self.addresses.copy_(F.one_hot(pick, b).float() + noise)
            else:
                for t in (self.memory, self.addresses):
                    fan_in, fan_out = t.shape[-1], t.shape[0]
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    t.copy_((torch.rand(t.shape, generator=generator) * 2 - 1) * bound)


# ------------------------------------------------------------------------------------------ latents
@PARAMETERIZATIONS.register("latents", help="latent codes of a conditional GAN trained on the real data")
class Latents(Parameterization):
    """GAN inversion (Zhao & Bilen 2022): the set is G(z, y) for ``ipc`` learned latent codes z per class of a
    frozen class-conditional generator G that is trained on the real data being distilled (cached by
    content, :func:`distillers.generative.load_or_train_generator`). Real init inverts ``ipc`` random real
    images per class (Adam on the pixel error, ``inversion_steps`` at ``inversion_lr``); noise init draws
    z ~ N(0, I). The generator's weights are part of the compact form, so the set decodes without the cache."""

    name = "latents"

    @dataclass(frozen=True)
    class Config:
        z_dim: int = 32
        width: int = 64
        generator_epochs: int = 30
        generator_batch: int = 64
        generator_lr: float = 2e-4
        generator_seed: int = 0
        inversion_steps: int = 300
        inversion_lr: float = 0.1
        cache_dir: str | None = None

        def __post_init__(self) -> None:
            self.generator_config()  # validates the generator's part
            check(self.inversion_steps >= 0, f"inversion_steps must be at least 0, got {self.inversion_steps}.")
            check(self.inversion_lr > 0, f"inversion_lr must be positive, got {self.inversion_lr}.")

        def generator_config(self) -> Any:
            from distillers.generative import GeneratorConfig

            return GeneratorConfig(z_dim=self.z_dim, width=self.width, epochs=self.generator_epochs,
                                   batch_size=self.generator_batch, lr=self.generator_lr, seed=self.generator_seed)

    def __init__(self, config: Any, num_classes: int, ipc: int, image_shape: tuple[int, int, int]) -> None:
        from distillers.generative import build_generator

        super().__init__(config, num_classes, ipc, image_shape)
        with torch.random.fork_rng(devices=[]):  # placeholder weights, replaced by initialize() or a load
            torch.manual_seed(0)
            self.generator = build_generator(cast(tuple[int, int, int], self.image_shape), num_classes,
                                             config.generator_config())
        self.generator.requires_grad_(False)
        self.latents = nn.Parameter(torch.zeros(num_classes * ipc, config.z_dim))

    def labels(self) -> torch.Tensor:
        return torch.arange(self.num_classes, device=self.latents.device).repeat_interleave(self.ipc)

    @property
    def per_class(self) -> int:
        return self.ipc

    def decode(self) -> torch.Tensor:
        return self.generator(self.latents, self.labels())

    def initialize(self, real: LabeledData, init: str, generator: torch.Generator) -> None:
        from distillers.generative import invert, load_or_train_generator

        device = self.latents.device
        trained = load_or_train_generator(real, self.config.generator_config(), cache_dir=self.config.cache_dir,
                                          device=device)
        self.generator.load_state_dict(trained.state_dict())
        with torch.no_grad():
            if init != "real":
                self.latents.copy_(torch.randn(self.latents.shape, generator=generator))
                return
        x = _real_images(real, self.ipc, generator).to(device)
        z = invert(self.generator, x, self.labels(), steps=self.config.inversion_steps,
                   lr=self.config.inversion_lr, generator=generator)
        with torch.no_grad():
            self.latents.copy_(z)


# ------------------------------------------------------------------------------------------ building
def build(name: str, args: dict[str, Any] | None, num_classes: int, ipc: int,
          image_shape: tuple[int, ...]) -> Parameterization:
    """A parameterisation by registered name with its (validated) arguments; unknown keys are user errors."""
    cls = PARAMETERIZATIONS.get(name)
    config = build_config(cls.Config, args or {}, what=f"parameterization {name!r}")
    return cls(config, num_classes, ipc, tuple(image_shape))


def check_parameterization(name: str, args: dict[str, Any]) -> None:
    """Config-time check of a method's ``parameterization`` and ``parameterization_args``."""
    cls = PARAMETERIZATIONS.get(name)
    check(isinstance(args, dict), f"parameterization_args must be a mapping, got {args!r}.")
    build_config(cls.Config, args, what=f"parameterization {name!r}")


def create(name: str, args: dict[str, Any] | None, real: LabeledData, ipc: int, init: str,
           generator: torch.Generator, device: torch.device | str = "cpu") -> Parameterization:
    """A parameterisation for distilling ``real`` at ``ipc``, initialised (``init``), on ``device``."""
    check(init in ("real", "noise"), f'init must be "real" or "noise", got {init!r}.')
    param = build(name, args, real.num_classes, ipc, real.image_shape)
    param.initialize(real, init, generator)
    return param.to(device)


def rebuild(spec: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Parameterization:
    """The parameterisation described by ``spec`` (from :meth:`Parameterization.spec`) with stored tensors."""
    try:
        param = build(spec["name"], spec.get("args"), spec["num_classes"], spec["ipc"], tuple(spec["image_shape"]))
    except KeyError as err:
        raise DDError(f"The stored parameterisation lacks {err}; re-create the synthetic set.") from None
    try:
        param.load_state_dict(tensors)
    except RuntimeError as err:
        raise DDError(f"The stored {spec['name']} tensors do not match its description ({err}); the set is "
                      "damaged: re-create it.") from None
    return param


def available() -> list[str]:
    return PARAMETERIZATIONS.names()


__all__ = ["PARAMETERIZATIONS", "Addressing", "HaBa", "Latents", "MultiFormation", "Parameterization", "Pixels", "available",
           "build", "check_parameterization", "create", "rebuild"]

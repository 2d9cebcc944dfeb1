"""A small class-conditional GAN trained on the real data, and GAN inversion (for the ``latents``
parameterisation, after Zhao & Bilen 2022, "Synthesizing informative training samples with GAN").

Nothing is downloaded: the generator is trained here, on the data being distilled, and cached by content
(data fingerprint, architecture, recipe, seed) under ``$DISTILLERS_CACHE/generators`` (default
``~/.cache/distillers/generators``), so every method and ipc distilling the same data reuses it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distillers.config import check, config_dict
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.io import atomic_write, cache_root

# 2: the discriminator gained the minibatch-std channel and a flattened map; generators trained by version 1
# could collapse (one image per class), so their cache entries are not reused.
FORMAT_VERSION = 2
# below this sample spread (relative to the real images'), the generator ignores its latent code
COLLAPSE_RATIO = 0.25


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture and training recipe of the conditional GAN (non-saturating loss, Adam 2e-4, β1 0.5)."""

    z_dim: int = 32
    width: int = 64
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("z_dim", "width", "epochs", "batch_size"):
            check(getattr(self, key) >= 1, f"generator {key} must be at least 1, got {getattr(self, key)}.")
        check(self.lr > 0, f"generator lr must be positive, got {self.lr}.")


class Generator(nn.Module):
    """z (+ class embedding) → linear to a (H/4, W/4) map → two (upsample x2, 3x3 conv, LeakyReLU) blocks →
    3x3 conv to the image channels, resized to the exact image size. Output in the data's normalised space."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int], z_dim: int, width: int) -> None:
        super().__init__()
        self.image_size, self.z_dim, self.width = tuple(image_size), z_dim, width
        self.start = (max(1, math.ceil(image_size[0] / 4)), max(1, math.ceil(image_size[1] / 4)))
        self.embed = nn.Embedding(num_classes, z_dim)
        self.fc = nn.Linear(2 * z_dim, 2 * width * self.start[0] * self.start[1])
        self.conv1 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.fc(torch.cat([z, self.embed(y)], 1)), 0.2)
        h = h.view(len(z), 2 * self.width, *self.start)
        h = F.leaky_relu(self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest")), 0.2)
        h = F.leaky_relu(self.conv2(F.interpolate(h, scale_factor=2.0, mode="nearest")), 0.2)
        x = self.out(h)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x


class Discriminator(nn.Module):
    """Two stride-2 3x3 convs (LeakyReLU), a minibatch-std channel, the flattened map through a linear layer,
    then a linear score plus a class projection term.

    Flattening keeps where the strokes are, and the minibatch-std channel (the spread of the batch's features,
    Karras et al. 2018) lets it see a batch that does not vary. A version that averaged the map globally let
    the generator collapse on MNIST: one image per class whatever z was, so no real image could be inverted
    (``benchmarks/generator_check.py`` on mnist-5k, 30 epochs: inversion MSE 0.92 against a data variance of
    0.99 and a sample spread of 0.13 of the real one; with this discriminator 0.14 and 0.93)."""

    def __init__(self, channels: int, num_classes: int, width: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        h, w = image_size
        side = (math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))  # after two stride-2 convs
        self.feature = nn.Linear((2 * width + 1) * side[0] * side[1], 2 * width)
        self.score = nn.Linear(2 * width, 1)
        self.project = nn.Embedding(num_classes, 2 * width)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        spread = h.std(0, unbiased=False).mean().expand(len(h), 1, *h.shape[2:])
        h = F.leaky_relu(self.feature(torch.cat([h, spread], 1).flatten(1)), 0.2)
        return self.score(h).squeeze(1) + (self.project(y) * h).sum(1)


def build_generator(real_shape: tuple[int, int, int], num_classes: int, config: GeneratorConfig) -> Generator:
    c, h, w = real_shape
    return Generator(c, num_classes, (h, w), config.z_dim, config.width)


def default_cache_dir() -> Path:
    return cache_root("generators")


def generator_key(real: LabeledData, config: GeneratorConfig) -> str:
    spec = {"version": FORMAT_VERSION, "data": real.fingerprint(), "recipe": config_dict(config)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def train_generator(real: LabeledData, config: GeneratorConfig, device: torch.device | str = "cpu") -> Generator:
    """Train the conditional GAN on ``real`` (deterministic from ``config.seed``)."""
    g = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = build_generator(real.image_shape, real.num_classes, config).to(device)
        disc = Discriminator(real.channels, real.num_classes, config.width, real.image_shape[1:]).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
    x_all, y_all = real.x.to(device), real.y.to(device)
    from tqdm.auto import tqdm

    # minutes on a CPU for MNIST-sized data: show the epochs when a person is watching a terminal
    for _ in tqdm(range(config.epochs), disable=not sys.stderr.isatty(), desc="generator", leave=False):
        for idx in torch.randperm(len(real), generator=g).split(config.batch_size):
            idx = idx.to(device)
            x, y = x_all[idx], y_all[idx]
            z = torch.randn(len(idx), config.z_dim, generator=g).to(device)
            fake = gen(z, y)
            loss_d = F.softplus(-disc(x, y)).mean() + F.softplus(disc(fake.detach(), y)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-disc(fake, y)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            raise DDError(f"The generator's GAN training diverged; lower its lr (now {config.lr}).")
    gen = gen.eval().requires_grad_(False)
    ratio = diversity_ratio(gen, real, torch.Generator().manual_seed(config.seed))
    if ratio < COLLAPSE_RATIO:
        warnings.warn(f"The latents generator has collapsed: its samples of one class vary {ratio:.2f} times "
                      "as much as the real images of that class, so real images cannot be inverted into it and "
                      "the distilled set will be poor. Train it longer (generator_epochs) or from another "
                      "generator_seed.", stacklevel=2)
    return gen


def diversity_ratio(gen: Generator, real: LabeledData, generator: torch.Generator, samples: int = 16) -> float:
    """How much the generator's samples of a class vary with z, over how much that class's real images vary
    (per-pixel std, averaged over pixels and classes). Near 0: the generator ignores z (mode collapse)."""
    device = next(gen.parameters()).device
    fake, spread = [], []
    with torch.no_grad():
        for c in range(real.num_classes):
            x = real.x[real.y == c][:samples]
            if len(x) < 2:
                continue
            z = torch.randn(samples, gen.z_dim, generator=generator).to(device)
            fake.append(gen(z, torch.full((samples,), c, device=device)).std(0).mean().item())
            spread.append(x.std(0).mean().item())
    return sum(fake) / max(sum(spread), 1e-12)


def load_or_train_generator(real: LabeledData, config: GeneratorConfig, *, cache_dir: str | Path | None = None,
                            device: torch.device | str = "cpu") -> Generator:
    """The cached generator for (``real``, ``config``), training and caching it when missing."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{generator_key(real, config)}.pt"
    gen = build_generator(real.image_shape, real.num_classes, config)
    if path.is_file():
        try:
            gen.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return gen.to(device).eval().requires_grad_(False)
        except Exception as err:  # damaged cache entry: retrain and replace it
            print(f"[distillers] retraining the generator: cannot read {path} ({type(err).__name__})")
    gen = train_generator(real, config, device)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in gen.state_dict().items()}, buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return gen


def invert(gen: Generator, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float,
           generator: torch.Generator) -> torch.Tensor:
    """Latents z with gen(z, y) ≈ x: Adam on the pixel MSE from N(0, I) starts (GAN inversion)."""
    z = torch.randn(len(x), gen.z_dim, generator=generator).to(x.device).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = F.mse_loss(gen(z, y), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return z.detach()


def describe(gen: Generator) -> dict[str, Any]:
    return {"z_dim": gen.z_dim, "width": gen.width, "parameters": sum(p.numel() for p in gen.parameters())}


__all__ = ["Discriminator", "Generator", "GeneratorConfig", "build_generator", "generator_key", "invert",
           "load_or_train_generator", "train_generator"]

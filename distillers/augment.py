"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021; REFERENCE §2).

A strategy such as ``"color_crop_cutout_flip_scale_rotate"`` names a set of transform groups. Each call draws
one group at random and applies it, with every random number taken from an explicit source:

* ``generator=g``: each image gets its own parameters (training an evaluation network);
* ``seed=s``: a fresh generator seeded with ``s`` draws one parameter set shared by the whole batch, so the
  real and the synthetic batch augmented with the same seed receive the identical transform (siamese mode,
  used while distilling).

Every transform is differentiable with respect to the images, so gradients reach synthetic pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distillers.errors import DDError, did_you_mean

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")

BRIGHTNESS = 1.0  # x + (u - 0.5) * BRIGHTNESS
SATURATION = 2.0  # (x - mean over channels) * (u * SATURATION) + mean
CONTRAST = 0.5  # (x - image mean) * (u + CONTRAST) + mean
CROP = 0.125  # translation up to int(CROP * side + 0.5) pixels
CUTOUT = 0.5  # zeroed square of side int(CUTOUT * side + 0.5)
SCALE = 1.2  # sx, sy ~ U[1 / SCALE, SCALE]
ROTATE_DEGREES = 15.0  # angle ~ U[-ROTATE_DEGREES, ROTATE_DEGREES]


def parse_strategy(strategy: str | None) -> tuple[str, ...]:
    """The transform groups of a strategy string (``""``, ``"none"`` and ``None`` mean no augmentation)."""
    if strategy is None:
        return ()
    if not isinstance(strategy, str):
        raise DDError(f"A DSA strategy must be a string like 'color_crop_cutout_scale_rotate', got {strategy!r}.")
    text = strategy.strip().lower()
    if text in ("", "none"):
        return ()
    ops = tuple(p for p in text.split("_") if p)
    for op in ops:
        if op not in OPS:
            raise DDError(f'Unknown DSA augmentation "{op}" in strategy "{strategy}".{did_you_mean(op, OPS)} '
                          f"Valid augmentations: {', '.join(OPS)} (joined with '_'), or 'none'.")
    return ops


class DSA:
    """Callable augmentation for a strategy string; ``DSA("none")`` is the identity."""

    def __init__(self, strategy: str | None) -> None:
        self.ops = parse_strategy(strategy)
        self.strategy = "_".join(self.ops) if self.ops else "none"

    @property
    def is_identity(self) -> bool:
        return not self.ops

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """Augment a batch ``x`` ``[B, C, H, W]``: per-image parameters from ``generator``, or one shared
        parameter set drawn from ``seed`` (siamese). Exactly one of the two must be given."""
        if (generator is None) == (seed is None):
            raise DDError("DSA needs exactly one source of randomness: generator= (per-image parameters) or "
                          "seed= (one transform shared by the batch).")
        if not self.ops:
            return x
        if x.dim() != 4:
            raise DDError(f"DSA expects a batch of images [B, C, H, W], got shape {tuple(x.shape)}.")
        gen: torch.Generator
        if generator is None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise DDError(f"The DSA seed must be an integer, got {seed!r}.")
            gen, n = torch.Generator().manual_seed(seed), 1
        else:
            gen, n = generator, x.shape[0]
        op = self.ops[int(torch.randint(len(self.ops), (1,), generator=gen, device=gen.device).item())]
        return _TRANSFORMS[op](x, gen, n)

    def __repr__(self) -> str:
        return f"DSA({self.strategy!r})"


def default_strategy(dataset_name: str) -> str:
    """The DSA strategy of the papers for a data set: no flips for digits (MNIST, SVHN, USPS, digits)."""
    name = (dataset_name or "").lower()
    if name.startswith(("digits", "mnist", "svhn", "usps")):
        return "color_crop_cutout_scale_rotate"
    return "color_crop_cutout_flip_scale_rotate"


# ---------------------------------------------------------------------- transforms
def _uniform(gen: torch.Generator, n: int, x: torch.Tensor) -> torch.Tensor:
    """``n`` draws from U[0, 1) shaped to broadcast over ``x`` (``[n, 1, 1, 1]``)."""
    u = torch.rand(n, generator=gen, device=gen.device)
    return u.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)


def _randint(gen: torch.Generator, low: int, high: int, n: int, x: torch.Tensor) -> torch.Tensor:
    """``n`` integers in ``[low, high)``, on ``x``'s device."""
    return torch.randint(low, high, (n,), generator=gen, device=gen.device).to(x.device)


def _color(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    x = x + (_uniform(gen, n, x) - 0.5) * BRIGHTNESS
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(gen, n, x) * SATURATION) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(gen, n, x) + CONTRAST) + mean


def _crop(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    """Integer translation with zero fill (gathers from a zero-padded copy, so it is differentiable)."""
    b, _, h, w = x.shape
    sh, sw = int(h * CROP + 0.5), int(w * CROP + 0.5)
    dy = _randint(gen, -sh, sh + 1, n, x).expand(b)
    dx = _randint(gen, -sw, sw + 1, n, x).expand(b)
    padded = F.pad(x, (sw, sw, sh, sh))
    rows = torch.arange(h, device=x.device)[None, :] + sh - dy[:, None]  # [B, H]
    cols = torch.arange(w, device=x.device)[None, :] + sw - dx[:, None]  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    b, _, h, w = x.shape
    side_h, side_w = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    top = (_randint(gen, 0, h, n, x) - side_h // 2).expand(b)
    left = (_randint(gen, 0, w, n, x) - side_w // 2).expand(b)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side_h)  # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side_w)  # [B, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _flip(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    flip = _uniform(gen, n, x) < 0.5
    return torch.where(flip, x.flip(3), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _scale(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    low = 1.0 / SCALE
    sx = _uniform(gen, n, x).view(n) * (SCALE - low) + low
    sy = _uniform(gen, n, x).view(n) * (SCALE - low) + low
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def _rotate(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    angle = (_uniform(gen, n, x).view(n) - 0.5) * (2 * ROTATE_DEGREES * math.pi / 180.0)
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _affine(x, theta)


_TRANSFORMS = {"color": _color, "crop": _crop, "cutout": _cutout, "flip": _flip, "scale": _scale,
               "rotate": _rotate}

__all__ = ["DSA", "OPS", "default_strategy", "parse_strategy"]

"""LabeledData: an in-memory image classification set (normalised tensors + class names + normalisation).

Everything in the toolkit, real data and decoded synthetic sets alike, flows through this one type so that
networks, the training protocol and the evaluators need no data-loader machinery for small sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from distillers.errors import DDError


@dataclass(frozen=True, eq=False)
class LabeledData:
    """Images ``x`` (float32, ``[N, C, H, W]``, already normalised) with integer labels ``y`` (``[N]``).

    ``mean``/``std`` are the per-channel statistics used to normalise ``x`` (needed to show images and to
    write them back out); ``classes`` names every label ``0..K-1``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = f"data set {self.name!r}" if self.name else "data set"
        if not isinstance(self.x, torch.Tensor) or self.x.dim() != 4:
            shape = tuple(self.x.shape) if isinstance(self.x, torch.Tensor) else type(self.x).__name__
            raise DDError(
                f"Images of {label} must be a 4-D tensor [N, C, H, W], got shape {shape}; "
                "add a channel axis for grey images (x[:, None])."
            )
        if not self.x.is_floating_point():
            raise DDError(f"Images of {label} must be floating point (normalised), got {self.x.dtype}.")
        if not isinstance(self.y, torch.Tensor) or self.y.dim() != 1 or self.y.dtype != torch.int64:
            raise DDError(f"Labels of {label} must be a 1-D int64 tensor, got {getattr(self.y, 'dtype', self.y)}.")
        if self.x.shape[0] != self.y.shape[0]:
            raise DDError(f"{label} has {self.x.shape[0]} images but {self.y.shape[0]} labels; they must match.")
        if self.x.shape[0] == 0:
            raise DDError(f"{label} is empty; give it at least one image per class.")
        k = len(self.classes)
        if k < 2:
            raise DDError(f"{label} needs at least 2 classes, got {k}.")
        lo, hi = int(self.y.min()), int(self.y.max())
        if lo < 0 or hi >= k:
            raise DDError(f"Labels of {label} must lie in 0..{k - 1} (one per class name), found {lo}..{hi}.")
        c = self.x.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise DDError(f"{label}: mean/std need one value per channel ({c}), got {len(self.mean)}/{len(self.std)}.")
        if not _all_finite(self.x):
            raise DDError(f"Images of {label} contain NaN or Inf values; clean the input before loading it.")

    # ------------------------------------------------------------------ shape facts
    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x.shape[2]), int(self.x.shape[3])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return int(self.x.shape[1]), int(self.x.shape[2]), int(self.x.shape[3])

    def class_counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()

    # ------------------------------------------------------------------ sampling
    def indices_of(self, label: int) -> torch.Tensor:
        """Indices of all examples of class ``label`` (ascending)."""
        return torch.nonzero(self.y == label, as_tuple=False).flatten()

    def sample_indices(self, label: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` distinct indices of class ``label`` drawn with ``generator`` (error if the class is too small)."""
        idx = self.indices_of(label)
        if n > idx.numel():
            raise DDError(
                f"Class {self.classes[label]!r} of {self.name or 'the data set'} has {idx.numel()} images, "
                f"fewer than the {n} requested; lower ipc (images per class) or the real batch size."
            )
        perm = torch.randperm(idx.numel(), generator=generator)[:n]
        return idx[perm]

    def sample_class(self, label: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random images of class ``label`` (without replacement; ``n`` capped at the class size)."""
        idx = self.indices_of(label)
        perm = torch.randperm(idx.numel(), generator=generator)[: min(n, idx.numel())]
        return self.x[idx[perm]]

    def stratified_indices(self, per_class: int, generator: torch.Generator) -> torch.Tensor:
        """``per_class`` random indices from every class, concatenated class by class."""
        return torch.cat([self.sample_indices(c, per_class, generator) for c in range(self.num_classes)])

    def subset(self, indices: torch.Tensor | Sequence[int], name: str | None = None) -> LabeledData:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return LabeledData(self.x[idx], self.y[idx], self.classes, self.mean, self.std,
                           name=self.name if name is None else name)

    def to(self, device: torch.device | str) -> LabeledData:
        if self.x.device == torch.device(device):
            return self
        return LabeledData(self.x.to(device), self.y.to(device), self.classes, self.mean, self.std, self.name)

    # ------------------------------------------------------------------ provenance
    def fingerprint(self) -> str:
        """Content hash (sha256 of images, labels and class names), cached: identifies the exact data."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(self.x.detach().cpu().contiguous().float().numpy().tobytes())
            h.update(self.y.detach().cpu().numpy().tobytes())
            h.update("\x00".join(self.classes).encode())
            self._fingerprint.append(h.hexdigest()[:16])
        return self._fingerprint[0]

    def denormalize(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] pixel space (for plotting and export)."""
        x = self.x if x is None else x
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)


def _all_finite(x: torch.Tensor, chunk: int = 4096) -> bool:
    """NaN/Inf check in chunks, so a large data set does not need a full-size boolean copy."""
    flat = x.reshape(x.shape[0], -1)
    return all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.shape[0], chunk))

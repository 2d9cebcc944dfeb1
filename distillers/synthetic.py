"""SyntheticSet: the output of every distiller, with safe save/load.

A synthetic set holds images (in the same normalised space as the real data it was distilled from), labels
(hard class indices, or soft labels ``[M, K]``), how networks learn from those labels (``label_loss``:
``"ce"``, cross-entropy against the class or the label distribution, or ``"mse"``, regression onto the label
vectors as kernel methods such as KIP and FRePO evaluate), an optional learned learning rate, and metadata (method, resolved config, source-data fingerprint, ipc, seed, timings). On disk it is a folder with
``tensors.pt`` (plain tensors only, read back with ``torch.load(weights_only=True)``) and ``meta.json``.

A set distilled through a parameterisation other than pixels (:mod:`distillers.parameterize`) also carries
its compact form: on disk it stores only that (so factorised sets really are smaller than their images)
and decodes the images on load, on the CPU, exactly as when it was made.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.io import atomic_write, atomic_write_json, sha256_file

FORMAT_VERSION = 1
TENSORS_FILE = "tensors.pt"
META_FILE = "meta.json"
LABEL_LOSSES = ("ce", "mse")
COMPACT_PREFIX = "compact."


def decode(spec: dict[str, Any], compact: dict[str, torch.Tensor]) -> torch.Tensor:
    """The images of a parameterised set, decoded on the CPU from its compact tensors (no autograd)."""
    from distillers.parameterize import rebuild

    if not isinstance(spec, dict):
        raise DDError("The stored parameterization is not a mapping; re-create the synthetic set.")
    with torch.no_grad():
        return rebuild(spec, compact).decode().detach().float().cpu()


class SyntheticSet:
    """A distilled data set: ``images`` ``[M, C, H, W]``, ``labels`` ``[M]`` (int64) or ``[M, K]`` (soft)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, classes: tuple[str, ...] | list[str],
                 mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float],
                 lr: float | None = None, meta: dict[str, Any] | None = None, label_loss: str = "ce",
                 parameterization: dict[str, Any] | None = None,
                 compact: dict[str, torch.Tensor] | None = None) -> None:
        if (parameterization is None) != (compact is None):
            raise DDError("A parameterised synthetic set needs both its parameterization spec and its compact "
                          "tensors (or neither).")
        self.parameterization = None if parameterization is None else dict(parameterization)
        self.compact = None if compact is None else {k: v.detach().float().cpu().contiguous()
                                                     for k, v in compact.items()}
        self.images = images.detach().float().cpu().contiguous()
        self.labels = labels.detach().cpu()
        self.label_loss = label_loss
        self.classes = tuple(classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.lr = None if lr is None else float(lr)
        self.meta: dict[str, Any] = dict(meta or {})
        self._validate()

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def soft_labels(self) -> bool:
        return self.labels.is_floating_point()

    @property
    def hard_labels(self) -> torch.Tensor:
        """Class index per image (argmax of soft labels)."""
        return self.labels.argmax(dim=1) if self.soft_labels else self.labels

    @property
    def ipc(self) -> int:
        return int(self.meta.get("ipc") or max(torch.bincount(self.hard_labels, minlength=self.num_classes).tolist()))

    @property
    def method(self) -> str:
        return str(self.meta.get("method", "unknown"))

    @property
    def storage_bytes(self) -> int:
        """Bytes the images take on disk as float32: the compact form of a parameterised set, else the pixels."""
        tensors = self.compact.values() if self.compact is not None else [self.images]
        return sum(4 * t.numel() for t in tensors)

    @property
    def storage_ratio(self) -> float:
        """Stored bytes per decoded image over the bytes of one image (1.0 for pixels, below 1 when a
        parameterisation packs more images into the same storage)."""
        return self.storage_bytes / max(len(self), 1) / (4 * math.prod(self.images.shape[1:]))

    def content_sha256(self) -> str:
        """SHA-256 of the decoded images (float32) and the labels: what a model trained on the set sees."""
        digest = hashlib.sha256()
        for t in (self.images.detach().float(), self.labels.detach()):
            t = t.cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    def as_labeled(self, name: str | None = None) -> LabeledData:
        """The synthetic images with hard labels, as :class:`LabeledData` (for training and evaluation)."""
        return LabeledData(self.images, self.hard_labels.long(), self.classes, self.mean, self.std,
                           name=name or f"synthetic:{self.method}")

    def pixels(self) -> torch.Tensor:
        """Images mapped back to [0, 1] pixel space (for plots)."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (self.images * std + mean).clamp(0, 1)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``tensors.pt`` and ``meta.json`` into ``folder`` (each written atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"labels": self.labels}
        if self.compact is None:
            tensors["images"] = self.images
        else:
            tensors.update({COMPACT_PREFIX + k: v for k, v in self.compact.items()})
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        blob = buffer.getvalue()
        atomic_write(folder / TENSORS_FILE, lambda fh: fh.write(blob))
        meta = {
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "lr": self.lr,
            "num_images": len(self),
            "image_shape": list(self.images.shape[1:]),
            "soft_labels": self.soft_labels,
            "label_loss": self.label_loss,
            "meta": self.meta,
            # written after tensors.pt and checked on load: a tensors.pt that is not the one this meta.json
            # describes (a half-finished overwrite, a damaged or swapped file) is refused, never used
            "tensors_sha256": hashlib.sha256(blob).hexdigest(),
        }
        if self.parameterization is not None:
            meta["parameterization"] = self.parameterization
        atomic_write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SyntheticSet:
        """Read a set written by :meth:`save`; never unpickles arbitrary objects."""
        folder = Path(folder)
        tensors_path, meta_path = folder / TENSORS_FILE, folder / META_FILE
        if not folder.is_dir() or not tensors_path.is_file() or not meta_path.is_file():
            raise DDError(
                f"No synthetic set at {folder}: expected a folder with {TENSORS_FILE} and {META_FILE} "
                "(as written by SyntheticSet.save or `ddeval distill --out`)."
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DDError(f"{meta_path} is not valid JSON ({err}); re-create the synthetic set.") from None
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise DDError(f"{meta_path} has format_version {version!r}; this version reads {FORMAT_VERSION}.")
        digest = meta.get("tensors_sha256")  # absent in sets written before checksums were recorded
        if digest is not None and sha256_file(tensors_path) != digest:
            raise DDError(f"{tensors_path} does not match the checksum in {meta_path} (damaged, truncated or "
                          "replaced); re-create the synthetic set.")
        try:
            tensors = torch.load(tensors_path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated file, wrong format, or an object weights_only refuses
            raise DDError(f"Cannot read {tensors_path} ({type(err).__name__}); the file is damaged or not a "
                          "synthetic set: re-create it.") from None
        spec = meta.get("parameterization")
        if not isinstance(tensors, dict) or "labels" not in tensors or (spec is None and "images" not in tensors):
            raise DDError(f"{tensors_path} lacks the 'images' and 'labels' tensors; re-create the synthetic set.")
        if not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise DDError(f"{tensors_path} holds something other than tensors; re-create the synthetic set.")
        if spec is None and not tensors["images"].is_floating_point():
            raise DDError(f"{tensors_path} stores {tensors['images'].dtype} images; a synthetic set stores "
                          "floating-point images normalised with the data set's mean and std: convert and "
                          "re-save it (SyntheticSet(images.float(), ...).save).")
        missing = [key for key in ("classes", "mean", "std") if key not in meta]
        if missing:
            raise DDError(f"{meta_path} lacks the key {missing[0]!r}; re-create the synthetic set.")
        for key in ("classes", "mean", "std"):
            if not isinstance(meta[key], list):
                raise DDError(f"{meta_path}: {key!r} must be a list, got {meta[key]!r}; re-create the synthetic set.")
        if not isinstance(meta.get("meta") or {}, dict):
            raise DDError(f"{meta_path}: 'meta' must be an object; re-create the synthetic set.")
        compact = None
        try:  # everything below reads values from the files: any failure is the file's, said in one line
            if spec is not None:
                compact = {k[len(COMPACT_PREFIX):]: v for k, v in tensors.items() if k.startswith(COMPACT_PREFIX)}
                tensors["images"] = decode(spec, compact)
            return cls(tensors["images"], tensors["labels"], classes=meta["classes"], mean=meta["mean"],
                       std=meta["std"], lr=meta.get("lr"), meta=meta.get("meta") or {},
                       label_loss=meta.get("label_loss", "ce"), parameterization=spec, compact=compact)
        except DDError:
            raise
        except Exception as err:  # noqa: BLE001 - a malformed file may fail anywhere in decoding or checks
            detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise DDError(f"{folder} is not a valid synthetic set ({type(err).__name__}: {detail}); re-create "
                          "it.") from None

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        if self.images.dim() != 4:
            raise DDError(f"Synthetic images must be [M, C, H, W], got shape {tuple(self.images.shape)}.")
        m, k = self.images.shape[0], len(self.classes)
        if self.labels.shape[0] != m:
            raise DDError(f"Synthetic set has {m} images but {self.labels.shape[0]} labels.")
        if self.label_loss not in LABEL_LOSSES:
            raise DDError(f"label_loss must be one of {', '.join(LABEL_LOSSES)}, got {self.label_loss!r}.")
        if self.label_loss == "mse" and not self.labels.is_floating_point():
            raise DDError("label_loss 'mse' regresses onto label vectors: give float labels [M, K].")
        if self.labels.is_floating_point():
            if self.labels.dim() != 2 or self.labels.shape[1] != k:
                raise DDError(f"Soft labels must be [M, {k}], got {tuple(self.labels.shape)}.")
            self.labels = self.labels.float()
            if self.label_loss == "ce" and m and (
                    float(self.labels.min()) < -1e-6 or
                    float((self.labels.sum(1) - 1).abs().max()) > 1e-4):
                raise DDError("Soft labels trained with cross-entropy must be distributions (each row "
                              "non-negative, summing to 1); use label_loss 'mse' for other label vectors.")
        else:
            if self.labels.dim() != 1:
                raise DDError(f"Hard labels must be 1-D, got shape {tuple(self.labels.shape)}.")
            self.labels = self.labels.long()
            if m and (int(self.labels.min()) < 0 or int(self.labels.max()) >= k):
                raise DDError(f"Synthetic labels must lie in 0..{k - 1}.")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise DDError("Synthetic set mean/std need one value per image channel.")
        if not bool(torch.isfinite(self.images).all()) or not bool(torch.isfinite(self.labels.float()).all()):
            raise DDError("Synthetic set contains NaN or Inf values; the distillation diverged "
                          "(lower the image learning rate).")

    def __repr__(self) -> str:
        return (f"SyntheticSet(method={self.method!r}, images={tuple(self.images.shape)}, "
                f"soft_labels={self.soft_labels}, label_loss={self.label_loss!r}, lr={self.lr})")

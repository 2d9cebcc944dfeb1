"""The contract every distillation method follows.

A method is a small class with a frozen ``Config`` dataclass and one ``distill`` call::

    class MyMethod(Distiller):
        @dataclass(frozen=True)
        class Config:
            iterations: int = 100

        def _distill(self, real, ipc, generator, device, progress) -> SyntheticSet: ...

``distillers.create("my-method", iterations=10)`` builds it; unknown keys are errors listing the valid ones.
"""

from __future__ import annotations

import sys
import time
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from distillers.config import build_config, config_dict
from distillers.data import LabeledData
from distillers.errors import DDError, Diverged
from distillers.memory import PeakMemory
from distillers.parameterize import Parameterization
from distillers.synthetic import SyntheticSet, decode


class Distiller:
    """Base class: turns real :class:`LabeledData` into a :class:`SyntheticSet` with ``ipc`` images per class."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise TypeError("pass either a Config object or keyword overrides, not both")
        if config is None:
            config = build_config(self.Config, overrides, what=f'method "{self.name}"')
        elif not isinstance(config, self.Config):
            config = build_config(self.Config, dict(config), what=f'method "{self.name}"')
        self.config = config

    def distill(self, real: LabeledData, ipc: int, *, generator: torch.Generator | None = None,
                seed: int = 0, device: str | torch.device = "cpu", progress: bool | None = None) -> SyntheticSet:
        """Distil ``real`` into ``ipc`` images per class.

        Randomness comes only from ``generator`` (built from ``seed`` when not given), so the same seed gives
        the same synthetic set on the same machine. ``progress=None`` shows a bar only on a terminal. The
        set's metadata records the time taken and the peak memory the distillation added
        (:class:`distillers.memory.PeakMemory`). A loss or synthetic parameter that turns NaN or Inf stops
        the loop within that iteration and raises :class:`~distillers.errors.Diverged`, whose ``last_good``
        is the set after the last finite iteration.
        """
        if not isinstance(ipc, int) or isinstance(ipc, bool) or ipc < 1:
            raise DDError(f"ipc (images per class) must be a positive integer, got {ipc!r}.")
        counts = real.class_counts()
        if min(counts) < ipc:
            small = real.classes[counts.index(min(counts))]
            raise DDError(f"ipc={ipc} but class {small!r} has only {min(counts)} real images; lower ipc.")
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        seed = generator.initial_seed()
        if progress is None:
            progress = sys.stderr.isatty()
        start = time.perf_counter()
        with PeakMemory(device) as memory:
            syn = self._distill(real, ipc, generator, torch.device(device), progress)
        syn.meta.update({
            "method": self.name,
            "config": config_dict(self.config),
            "ipc": ipc,
            "seed": int(seed),
            "source": {"name": real.name, "fingerprint": real.fingerprint(), "num_images": len(real)},
            "distill_seconds": round(time.perf_counter() - start, 3),
            **memory.result,
        })
        failure = syn.meta.get("diverged")
        if failure:  # the loop stopped at a NaN/Inf: hand the last finite set over with the error
            raise Diverged(failure["message"], failure["iteration"], failure["total"], last_good=syn)
        return syn

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers for subclasses
    @staticmethod
    def make_set(images: torch.Tensor, labels: torch.Tensor, real: LabeledData, *, lr: float | None = None,
                 label_loss: str = "ce", parameterization: Parameterization | None = None,
                 **meta: Any) -> SyntheticSet:
        """Wrap tensors in a :class:`SyntheticSet` carrying ``real``'s classes and normalisation.

        With a ``parameterization`` other than pixels, the set keeps its compact form and its images are
        decoded from that on the CPU (``images`` is ignored), so they equal what loading the saved set gives.
        """
        spec = compact = None
        if parameterization is not None and parameterization.name != "pixels":
            spec, compact = parameterization.spec(), parameterization.compact()
            images = decode(spec, compact)
        out = SyntheticSet(images, labels, classes=real.classes, mean=real.mean, std=real.std, lr=lr, meta=meta,
                           label_loss=label_loss, parameterization=spec, compact=compact)
        if parameterization is not None:
            out.meta.update(parameterization=parameterization.name, storage_bytes=out.storage_bytes,
                            storage_ratio=round(out.storage_ratio, 6))
        return out

    @staticmethod
    def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
        return tqdm(total=total, disable=not enabled, desc=desc, leave=False, dynamic_ncols=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

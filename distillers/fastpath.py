"""The fast path shared by every training loop: bf16 autocast and ``torch.compile``, behind one switch.

``FastPath.resolve(enabled, device)`` turns the user's switch (``fast: true`` in configs, ``--no-fast`` on
the CLI) into what this device can actually do:

* **bf16 autocast** where the hardware has bf16 arithmetic (CPUs with AVX512-BF16 or AMX, CUDA GPUs that
  report bf16 support). Weights, optimiser state and losses stay float32; convolutions and matrix multiplies
  run in bf16. Measured on this project's 2-core AMD EPYC (AVX512-BF16, no AMX): ~2x on ConvNet-3 training
  steps, the bf16/fp32 matrix-multiply peak ratio of that CPU being 2.24 (``reports/benchmarks/cpu/``).
* **torch.compile** (Inductor) of the network's forward, where the work is long enough to repay the
  ~10-20 s first compilation (``compile_min_steps``). It fuses the instance-norm / ReLU / pooling chain
  that dominates once the convolutions are in bf16. A new network of the same architecture reuses the
  compiled code, so DM's fresh network per iteration costs one compilation in all. If compilation is not
  possible (no C++ compiler, an unsupported op) the eager network is used and a warning says so once.
* channels_last memory layout is *off*: on that CPU it made bf16 instance norm 7.5x slower than in NCHW
  for little or no gain on the convolutions (``benchmarks/layout_micro.py``, ``reports/benchmarks/layout/``).

The baseline (``enabled=False``) is plain float32 eager PyTorch, which the benchmark (``ddeval bench``)
runs side by side with the fast path. Double backward (DC/DSA's ``create_graph=True``) is never compiled.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: Training steps below which compiling does not pay (measured on 2 cores: a cold compilation of ConvNet-3
#: takes 10-20 s, a warm one (Inductor's on-disk cache) ~2 s; compiling saves ~10-40 % of a bf16 step).
COMPILE_MIN_STEPS = 250


def bf16_supported(device: torch.device) -> bool:
    """True when ``device`` computes in bf16 natively (not emulated, which would be slower than fp32)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def compile_supported(device: torch.device) -> bool:
    """Inductor needs a C++ compiler on the CPU (and Triton on CUDA); without one we stay eager."""
    if device.type == "cpu":
        return shutil.which("c++") is not None or shutil.which("g++") is not None
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return False


@dataclass(frozen=True)
class FastPath:
    """What a training loop does to go fast on one device (see the module docstring)."""

    enabled: bool = False
    bf16: bool = False
    compile: bool = False
    device_type: str = "cpu"

    @classmethod
    def resolve(cls, enabled: bool, device: torch.device | str, *, steps: int | None = None) -> FastPath:
        """The fast path for ``device``; ``steps`` (the loop's length) decides whether compiling pays
        (at least :data:`COMPILE_MIN_STEPS`)."""
        device = torch.device(device)
        if not enabled:
            return cls(enabled=False, device_type=device.type)
        pays = steps is None or steps >= COMPILE_MIN_STEPS
        return cls(enabled=True, bf16=bf16_supported(device), compile=pays and compile_supported(device),
                   device_type=device.type)

    @property
    def label(self) -> str:
        """Short description for reports: ``fp32 eager``, ``bf16``, ``bf16+compile`` ..."""
        parts = ["bf16" if self.bf16 else "fp32"]
        parts.append("compile" if self.compile else "eager")
        return "+".join(parts) if self.bf16 or self.compile else "fp32 eager"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on this path's device, or a no-op."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def wrap(self, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``fn`` (a network or its ``embed``) compiled when this path compiles, else ``fn`` itself."""
        if not self.compile:
            return fn
        return _Compiled(fn)


class _Compiled:
    """``torch.compile(fn)`` that falls back to ``fn`` (with a warning, which Python's default filter shows
    once per call site) when compilation fails."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn
        self.compiled: Callable[..., torch.Tensor] | None = torch.compile(fn, dynamic=False)

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.compiled is not None:
            try:
                with _quiet_cpp_extension():
                    return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure: retry eagerly below
                if not _is_compile_error(err):
                    raise
                self.compiled = None
                warnings.warn(f"torch.compile failed ({type(err).__name__}); continuing without compiling. "
                              "Set fast: false to silence this.", RuntimeWarning, stacklevel=2)
        return self.fn(*args, **kwargs)


@contextlib.contextmanager
def _quiet_cpp_extension() -> Iterator[None]:
    """Hide torch's "No CUDA runtime is found" warning, which Inductor's CPU compiler triggers on CPU-only
    machines and which says nothing about the user's run; the logger's level is restored afterwards."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _is_compile_error(err: Exception) -> bool:
    """Errors raised by Dynamo/Inductor themselves (as opposed to the model's own errors)."""
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch.fx", "triton")) or (
        isinstance(err, (RuntimeError, OSError)) and "compile" in str(err).lower())


__all__ = ["COMPILE_MIN_STEPS", "FastPath", "bf16_supported", "compile_supported"]

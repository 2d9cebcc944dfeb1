"""Peak memory of one piece of work (a distillation), for the method tables' "peak memory" column.

On CUDA it is torch's allocator peak (``max_memory_allocated`` after a reset). On Linux CPUs it is the
process's resident-set high-water mark (``VmHWM``), which the kernel lets a process reset to its current
size by writing ``5`` to ``/proc/self/clear_refs``: so the peak belongs to this work alone even in a
long-lived process (``ru_maxrss`` cannot be reset and also carries a forking parent's peak). Where neither
is available (macOS, a /proc that refuses the reset) the figures are ``None``, never a guess.

Reported: ``peak_memory_mb``, the peak minus what the process (or the device) held when the work began,
i.e. the memory the work itself needed; and ``peak_rss_mb`` / ``peak_gpu_mb``, the absolute peak.

Memory that earlier work freed can stay resident (glibc keeps freed heap pages), and new work reusing it
would not raise the resident size: a second distillation in one process would then report almost nothing.
So on glibc the free pages are first handed back to the kernel (``malloc_trim(0)``) before the baseline is
taken.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path
from typing import Any

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def _status_kb(field: str, path: Path = _STATUS) -> int | None:
    """The kB figure of ``field`` in a /proc key-value file (``/proc/self/status``, ``/proc/meminfo``)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (looked up once), or None where there is no such function."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_free_heap() -> None:
    """Return freed heap pages to the kernel (glibc's ``malloc_trim``); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(ctypes.c_size_t(0))


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Context manager measuring the peak memory of its block on ``device``; read :attr:`result` after."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.result: dict[str, Any] = {"peak_memory_mb": None}
        self._base: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            _release_free_heap()
            if _reset_high_water_mark():
                self._base = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._base is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.result = {"peak_memory_mb": round((peak - self._base) / 2**20, 1),
                           "peak_gpu_mb": round(peak / 2**20, 1), "memory_kind": "cuda allocator"}
            return
        peak_kb = _status_kb("VmHWM")
        if peak_kb is not None:
            self.result = {"peak_memory_mb": round(max(0, peak_kb - self._base) / 1024, 1),
                           "peak_rss_mb": round(peak_kb / 1024, 1), "memory_kind": "process RSS (VmHWM)"}


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup memory limit (a container's, v2 or v1), or None if unlimited."""
    candidates = []
    try:
        for line in _PROC_CGROUP.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            relative = path.strip().lstrip("/")
            if controllers == "":  # v2
                candidates += [(_CGROUP / relative, "memory.max", "memory.current"),
                               (_CGROUP, "memory.max", "memory.current")]
            elif "memory" in controllers.split(","):  # v1 (the mount may already be the container's group)
                candidates += [(_CGROUP / "memory" / relative, "memory.limit_in_bytes", "memory.usage_in_bytes"),
                               (_CGROUP / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]
    except (OSError, ValueError):
        return None
    for folder, limit_name, usage_name in candidates:
        try:
            limit = (folder / limit_name).read_text().strip()
            usage = int((folder / usage_name).read_text())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:  # v1 writes "no limit" as a huge number
            return None
        return max(0, int(limit) - usage)
    return None


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory new work can still take on ``device``, or None where it cannot be read (never a guess).

    CUDA: the driver's free memory plus what torch's caching allocator holds unused. CPU on Linux: the
    kernel's ``MemAvailable``, capped by the headroom under a cgroup (container) memory limit.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    kb = _status_kb("MemAvailable", _MEMINFO)
    if kb is None:
        return None
    headroom = _cgroup_headroom()
    return kb * 1024 if headroom is None else min(kb * 1024, headroom)


__all__ = ["PeakMemory", "available_bytes"]

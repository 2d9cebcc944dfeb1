"""PeakMemory: the peak belongs to the measured block alone, also after a larger earlier peak in the process."""

from __future__ import annotations

import os

import pytest
import torch

import distillers
from distillers.memory import PeakMemory

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")


def test_the_peak_of_a_block_ignores_an_earlier_larger_peak() -> None:
    big = torch.ones(300 * 2**18)  # 300 MB, touched, then freed: an earlier, larger peak
    del big
    with PeakMemory() as small:
        block = torch.ones(100 * 2**18)  # 100 MB
        del block
    assert small.result["memory_kind"] == "process RSS (VmHWM)"
    assert 95 <= small.result["peak_memory_mb"] < 200, small.result
    with PeakMemory() as nothing:
        pass
    assert nothing.result["peak_memory_mb"] < 20, nothing.result


def test_every_distillation_records_its_peak_memory(tiny_digits) -> None:
    syn = distillers.create("random").distill(tiny_digits[0], 1, seed=0, progress=False)
    assert syn.meta["peak_memory_mb"] is not None and syn.meta["peak_memory_mb"] >= 0
    assert syn.meta["peak_rss_mb"] > 50  # the whole process, torch included


def test_memory_freed_by_earlier_work_does_not_hide_a_later_peak(tiny_digits) -> None:
    """MTT then TESLA in one process: MTT's freed (but still resident) heap used to absorb TESLA's
    allocations, so TESLA reported 0 MB; the freed heap is now returned to the kernel first."""
    real = tiny_digits[0]
    kw = {"iterations": 2, "syn_steps": 30, "max_start_epoch": 1, "experts": {"num_experts": 1, "epochs": 2},
          "network_args": {"width": 64, "depth": 2}}
    distillers.create("mtt", **kw).distill(real, 10, seed=0, progress=False)
    tesla = distillers.create("tesla", **kw).distill(real, 10, seed=0, progress=False)
    assert tesla.meta["peak_memory_mb"] > 20, tesla.meta["peak_memory_mb"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_available_memory_is_capped_by_a_container_limit(tmp_path, monkeypatch, version: str) -> None:
    """MemAvailable is the machine's; inside a container with a cgroup memory limit only the headroom under
    that limit counts (v1 and v2 layouts); no limit ("max", or v1's huge number) leaves MemAvailable."""
    from distillers import memory

    (tmp_path / "meminfo").write_text("MemTotal: 100000000 kB\nMemAvailable:   50000000 kB\n")
    group = tmp_path / "cg" / ("memory/box" if version == "v1" else "box")
    group.mkdir(parents=True)
    (tmp_path / "self-cgroup").write_text("4:memory:/box\n" if version == "v1" else "0::/box\n")
    limit, usage = ("memory.limit_in_bytes", "memory.usage_in_bytes") if version == "v1" else (
        "memory.max", "memory.current")
    (group / limit).write_text(str(3 * 2**30))
    (group / usage).write_text(str(2**30))
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(memory, "_CGROUP", tmp_path / "cg")
    monkeypatch.setattr(memory, "_PROC_CGROUP", tmp_path / "self-cgroup")
    assert memory.available_bytes("cpu") == 2 * 2**30
    (group / limit).write_text("max" if version == "v2" else str(2**63 - 4096))
    assert memory.available_bytes("cpu") == 50000000 * 1024
    (tmp_path / "meminfo").write_text("garbage")
    assert memory.available_bytes("cpu") is None  # unreadable: no check, never a guess


def test_available_memory_on_this_machine_is_plausible() -> None:
    from distillers.memory import available_bytes

    free = available_bytes("cpu")
    assert free is not None and 2**26 < free < 2**50

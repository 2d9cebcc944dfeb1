"""A full disk (issue 9): a write that fails with ENOSPC leaves the previous file, synthetic set and run
directory intact, no temporary file behind, and ``ddeval`` ends with one line saying what to do."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch

from ddeval.cli import main
from distillers.io import atomic_write, atomic_write_json
from distillers.synthetic import SyntheticSet


def _full_disk(monkeypatch, after: int = 0) -> None:
    """Make every fsync after the first ``after`` fail as a full disk does."""
    real = os.fsync
    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"accuracy": 0.9})
    before = target.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(OSError) as info:
        atomic_write(target, lambda fh: fh.write(b"{half a fi"))
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


@pytest.mark.parametrize("after", [0, 1])  # tensors.pt fails, or tensors.pt lands and meta.json fails
def test_synthetic_set_overwrite_on_full_disk_keeps_a_loadable_set(tmp_path, monkeypatch, after):
    g = torch.Generator().manual_seed(0)
    old = SyntheticSet(images=torch.rand(4, 1, 8, 8, generator=g), labels=torch.arange(4) % 2, classes=("a", "b"), mean=(0.5,), std=(0.5,))
    old.save(tmp_path / "syn")
    new = SyntheticSet(images=torch.rand(4, 1, 8, 8, generator=g), labels=torch.arange(4) % 2, classes=("a", "b"), mean=(0.5,), std=(0.5,))
    _full_disk(monkeypatch, after=after)
    with pytest.raises(OSError):
        new.save(tmp_path / "syn")
    monkeypatch.undo()
    leftovers = [p.name for p in (tmp_path / "syn").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    if after == 0:  # nothing was replaced: the old set loads unchanged
        assert torch.equal(SyntheticSet.load(tmp_path / "syn").images, old.images)
    else:  # tensors.pt is new but meta.json is old: the checksum refuses the mix, never serving it as a set
        with pytest.raises(Exception, match="checksum"):
            SyntheticSet.load(tmp_path / "syn")


SUITE = ["ipc=1", "methods=random", "network_args.width=8", "accuracy.networks=convnet-d2",
         "accuracy.network_args.convnet-d2.width=8", "accuracy.epochs=5", "accuracy.full_data_epochs=1",
         "privacy.enabled=false", "nas.enabled=false"]


def _run(out: Path, *extra: str) -> int:
    argv = ["run", "--out", str(out), "--device", "cpu"]
    for item in [*SUITE, *extra]:
        argv += ["--set", item]
    return main(argv)


def test_run_on_full_disk_fails_cleanly_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _run(out, "accuracy.eval_seeds=1") == 0
    before = _digests(out)
    capsys.readouterr()
    _full_disk(monkeypatch)  # the next run must write a new evaluation unit: the disk is full
    assert _run(out, "accuracy.eval_seeds=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no space left on the disk"), err
    assert "Traceback" not in "\n".join(err)
    after = _digests(out)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing written before was touched
    assert not [p for p in out.rglob("*.tmp")]
    monkeypatch.undo()
    assert _run(out, "accuracy.eval_seeds=2") == 0  # space freed: the same command resumes
    assert (out / "results.json").is_file()

"""Interruption and tampering (issue 9): a ``ddeval run`` killed at random points (SIGINT, SIGTERM, SIGKILL)
resumes to exactly the results of an uninterrupted run, reusing every finished unit and recomputing only the
rest; finished files are never rewritten; a unit or synthetic file changed on disk is recomputed, not used."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUITE = [
    "ipc=1,2", "methods=random,dm,herding", "methods.dm.iterations=30", "methods.dm.batch_real=16",
    "network_args.width=16", "accuracy.networks=convnet-d2", "accuracy.network_args.convnet-d2.width=16",
    "accuracy.eval_seeds=2", "accuracy.epochs=40", "accuracy.full_data_epochs=2",
    "privacy.enabled=false", "nas.enabled=false",
]
KILL_POINTS = 20
CHAINS = 4  # KILL_POINTS kills spread over this many run directories, each resumed after every kill
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
VOLATILE = ("seconds", "peak_memory", "started", "finished")  # timings and clocks differ between processes


def _argv(out: Path) -> list[str]:
    argv = [sys.executable, "-m", "ddeval", "run", "--out", str(out), "--device", "cpu"]
    for item in SUITE:
        argv += ["--set", item]
    return argv


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(out: Path, home: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(_argv(out), env=_env(home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def _finished(out: Path) -> dict[str, tuple[str, int]]:
    """Every finished artefact (unit JSON and arrays, complete synthetic sets) with its SHA-256 and mtime."""
    files = [p for p in (out / "units").glob("*") if p.suffix in (".json", ".npz") and not p.name.startswith(".")]
    for meta in (out / "synthetic").glob("*/meta.json"):  # meta.json is written last: the set is complete
        files += [meta, meta.parent / "tensors.pt"]
    return {str(p.relative_to(out)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in files if p.is_file()}


def _started(pid: int) -> bool:
    """True once ddeval's entry point runs: it has installed its SIGTERM handler (``SigCgt`` in /proc). Before
    that the interpreter itself is still booting, and no Python program can catch a signal there (SIGTERM
    would end it with the default action), so SIGINT and SIGTERM are sent only after this point."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except (OSError, ValueError):
        return False
    return False


def _count(out: Path) -> int:
    return len(list((out / "units").glob("*.json"))) + len(list((out / "synthetic").glob("*/meta.json")))


def _stable(obj):
    """results.json without timings, clocks, unit counts and provenance: what must not depend on interruptions."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items()
                if k not in ("provenance", "units") and not any(word in k for word in VOLATILE)}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _results(out: Path):
    return _stable(json.loads((out / "results.json").read_text()))


def _check_manifest(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    artefacts = manifest["artefacts"]
    on_disk = _finished(out)
    assert set(artefacts) == set(on_disk), set(artefacts) ^ set(on_disk)
    for rel, digest in artefacts.items():
        assert on_disk[rel][0] == digest, f"manifest checksum of {rel} does not match the file"
    return manifest


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: the results every interrupted-and-resumed run must reproduce."""
    base = tmp_path_factory.mktemp("reference")
    home = base / "home"
    home.mkdir()
    _run(base / "run", home)
    manifest = _check_manifest(base / "run")
    total = manifest["units"]["computed"]
    assert manifest["units"]["reused"] == 0 and total == _count(base / "run")
    return base / "run", total, home


def test_run_killed_at_random_points_resumes_exactly(reference, tmp_path):
    ref_out, total, home = reference
    assert total == _count(ref_out) == 26  # 8 sets (4 methods incl. noise x 2 ipc) + 16 evaluations + 2 full data
    expected = _results(ref_out)
    rng = random.Random(20261206)
    kills = []
    for chain in range(CHAINS):
        out = tmp_path / f"chain{chain}"
        for _ in range(KILL_POINTS // CHAINS):
            before = _finished(out) if out.exists() else {}
            done = len([k for k in before if not k.endswith("tensors.pt")])
            target = rng.randrange(done, total + 1)  # kill once `target` artefacts are finished, plus a jitter
            jitter = rng.uniform(0.0, 0.4)
            sig = rng.choice(SIGNALS)
            proc = subprocess.Popen(_argv(out), env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
            deadline = time.monotonic() + 300
            while proc.poll() is None and (not out.exists() or _count(out) < target
                                           or (sig is not signal.SIGKILL and not _started(proc.pid))) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(jitter)
            kept = _finished(out) if out.exists() else {}
            if proc.poll() is None:
                proc.send_signal(sig)
            _, err = proc.communicate(timeout=300)
            kills.append((chain, target, sig.name, proc.returncode))
            if proc.returncode == 0:  # finished before the signal landed: a valid outcome, nothing to resume
                break
            if sig is signal.SIGKILL:
                assert proc.returncode == -signal.SIGKILL, err
            else:
                assert proc.returncode == 130, (kills, err)
                assert "interrupted" in err and "Traceback" not in err, err
            if (out / "results.json").exists():  # killed after the last write: it must be the full result
                assert _results(out) == expected
            after = _finished(out)
            for rel, (digest, mtime) in kept.items():
                assert after[rel] == (digest, mtime), f"{rel} finished before the kill but changed"
        # resume to the end: every finished artefact is reused untouched, only the rest is computed
        before = _finished(out)
        _run(out, home)
        after = _finished(out)
        for rel, stamp in before.items():
            assert after[rel] == stamp, f"{rel} was recomputed although it had finished"
        manifest = _check_manifest(out)
        finished_units = len([k for k in before if not k.endswith("tensors.pt")])
        assert manifest["units"] == {"computed": total - finished_units, "reused": finished_units}, kills
        assert _results(out) == expected, f"resumed results differ from the uninterrupted run ({kills})"
        assert list(out.rglob(".*.tmp")) == [], "temporary files of a killed run are removed on resume"
    assert len(kills) >= KILL_POINTS - CHAINS, kills  # a chain stops early only when its run finished
    assert any(code != 0 for *_, code in kills)


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_tampered_unit_is_recomputed_not_used(reference, tmp_path):
    ref_out, total, home = reference
    out = _copy_run(ref_out, tmp_path / "run")
    unit = sorted((out / "units").glob("eval-*.json"))[0]
    entry = json.loads(unit.read_text())
    key = next(k for k, v in entry["result"].items() if isinstance(v, float))
    entry["result"][key] = 0.999  # a plausible value edited in place, JSON still valid
    unit.write_text(json.dumps(entry))
    _run(out, home)
    manifest = _check_manifest(out)
    assert manifest["units"] == {"computed": 1, "reused": total - 1}
    assert json.loads(unit.read_text())["result"][key] != 0.999
    assert _results(out) == _results(ref_out)


def test_tampered_synthetic_set_is_distilled_again(reference, tmp_path):
    ref_out, total, home = reference
    out = _copy_run(ref_out, tmp_path / "run")
    tensors = out / "synthetic" / "dm-ipc1-seed0" / "tensors.pt"
    blob = bytearray(tensors.read_bytes())
    blob[-100] ^= 0xFF  # one flipped byte
    tensors.write_bytes(bytes(blob))
    _run(out, home)
    manifest = _check_manifest(out)
    assert manifest["units"] == {"computed": 1, "reused": total - 1}  # the set; its evaluations match again
    assert _results(out) == _results(ref_out)

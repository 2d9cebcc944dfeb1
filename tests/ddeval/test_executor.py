"""The local executor and the run directory's unit cache: cached results, arrays beside them, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ddeval.executor import LocalExecutor, Unit
from ddeval.runs import RunDir
from distillers.errors import DDError


def square(x: int, *, scale: float = 1.0) -> dict:
    return {"value": x * x * scale, "arrays": {"row": np.arange(x, dtype=np.float32) * scale}}


def fail_on(x: int, bad: int) -> dict:
    if x == bad:
        raise RuntimeError(f"unit {x} failed")
    return {"value": x}


def units_of(fn, xs, *, keyed: bool = True, **kwargs):
    """Units computing ``fn(x, **kwargs)``; ``keyed=False`` leaves kwargs out of the cache key."""
    return [Unit("test", {"x": x, **(kwargs if keyed else {})}, fn, (x,), kwargs, label=f"unit {x}") for x in xs]


def test_results_in_order_with_arrays_and_cache(tmp_path):
    rd = RunDir(tmp_path)
    done = []
    ex = LocalExecutor(rd, on_done=lambda unit, reused: done.append((unit.label, reused)))
    out = ex.map(units_of(square, [3, 1, 2], scale=2.0))
    assert [r["value"] for r in out] == [18.0, 2.0, 8.0]
    np.testing.assert_array_equal(out[0]["arrays"]["row"], np.arange(3) * 2.0)
    assert done == [("unit 3", False), ("unit 1", False), ("unit 2", False)]
    # a new executor on the same directory computes nothing and returns identical arrays
    rd2 = RunDir(tmp_path)
    again = LocalExecutor(rd2).map(units_of(square, [3, 1, 2], scale=2.0))
    assert rd2.reused == 3 and rd2.computed == 0
    np.testing.assert_array_equal(again[2]["arrays"]["row"], out[2]["arrays"]["row"])
    stored = json.loads(next(tmp_path.glob("units/test-*.json")).read_text())
    assert "arrays" not in stored["result"] and stored["arrays"]["sha256"]


def test_damaged_arrays_are_recomputed(tmp_path):
    rd = RunDir(tmp_path)
    LocalExecutor(rd).map(units_of(square, [4]))
    npz = next(tmp_path.glob("units/*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10])  # truncated: checksum no longer matches
    rd2 = RunDir(tmp_path)
    out = LocalExecutor(rd2).map(units_of(square, [4]))
    assert rd2.computed == 1 and out[0]["value"] == 16
    npz.unlink()
    rd3 = RunDir(tmp_path)
    LocalExecutor(rd3).map(units_of(square, [4]))
    assert rd3.computed == 1


def test_failure_keeps_finished_units_and_resume_skips_them(tmp_path):
    rd = RunDir(tmp_path)
    with pytest.raises(RuntimeError, match="unit 2 failed"):
        LocalExecutor(rd).map(units_of(fail_on, [0, 1, 2, 3], keyed=False, bad=2))
    assert rd.computed == 2  # units 0 and 1 were stored before the failure
    rd2 = RunDir(tmp_path)
    out = LocalExecutor(rd2).map(units_of(fail_on, [0, 1, 2, 3], keyed=False, bad=99))
    assert [r["value"] for r in out] == [0, 1, 2, 3]
    assert rd2.reused == 2 and rd2.computed == 2


def test_process_workers_match_in_process(tmp_path):
    local = LocalExecutor(RunDir(tmp_path / "a")).map(units_of(square, [2, 5, 3]))
    rd = RunDir(tmp_path / "b")
    pooled = LocalExecutor(rd, workers=2).map(units_of(square, [2, 5, 3]))
    assert [r["value"] for r in pooled] == [r["value"] for r in local]
    assert rd.computed == 3
    np.testing.assert_array_equal(pooled[1]["arrays"]["row"], local[1]["arrays"]["row"])


def test_bad_worker_count(tmp_path):
    with pytest.raises(DDError, match="workers"):
        LocalExecutor(RunDir(tmp_path), workers=0)


@pytest.mark.skipif(__import__("os").environ.get("DDEVAL_TEST_NNI_SERVER") != "1",
                    reason="starts NNI's server on all interfaces; set DDEVAL_TEST_NNI_SERVER=1 to run")
def test_nni_local_executor_runs_units_as_trials_and_resumes(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    pytest.importorskip("nni")
    from ddeval.executor import NNIExecutor

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    # The trial processes import this module by the name pytest gave it: put its folder on their path.
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    local = LocalExecutor(RunDir(tmp_path / "a")).map(units_of(square, [2, 5, 3], scale=2.0))
    rd = RunDir(tmp_path / "b")
    LocalExecutor(rd).map(units_of(square, [5], scale=2.0))  # one unit already finished: reused, not rerun
    done = []
    rd = RunDir(tmp_path / "b")
    out = NNIExecutor(rd, engine="nni-local", concurrency=2,
                      on_done=lambda unit, reused: done.append((unit.label, reused))).map(
        units_of(square, [2, 5, 3], scale=2.0))
    assert [r["value"] for r in out] == [r["value"] for r in local]
    assert all(np.array_equal(a["arrays"]["row"], b["arrays"]["row"]) for a, b in zip(out, local, strict=True))
    assert sorted(done) == [("unit 2", False), ("unit 3", False), ("unit 5", True)]
    assert (rd.computed, rd.reused) == (2, 1)
    # (matplotlib, which NNI imports, caches its fonts under HOME on first import, as for any plot)
    assert [p for p in home.rglob("*") if p.is_file() and "matplotlib" not in p.parts] == []
    with pytest.raises(DDError, match="left no result"):
        NNIExecutor(RunDir(tmp_path / "c"), engine="nni-local").map(units_of(fail_on, [0, 1], keyed=False, bad=1))
    assert RunDir(tmp_path / "c").lookup("test", {"x": 0}) is not None  # the good unit was kept


def test_nni_trial_unpickles_only_the_bytes_its_executor_wrote(tmp_path, monkeypatch, capsys):
    """The trial side of NNIExecutor (no server): it runs a unit whose pickle matches the digest passed with
    its key, and refuses (exit 2, nothing stored, nothing unpickled) a file swapped in the run directory."""
    import hashlib
    import pickle

    nni = pytest.importorskip("nni")
    from ddeval import nni_unit

    unit = units_of(square, [3])[0]
    blob = pickle.dumps(unit)
    folder, run = tmp_path / "nni-units", tmp_path / "run"
    folder.mkdir()
    (folder / "k1.pkl").write_bytes(blob)
    param = {"unit": f"k1:{hashlib.sha256(blob).hexdigest()}"}
    monkeypatch.setattr(nni, "get_next_parameter", lambda: param)
    monkeypatch.setattr(nni, "report_final_result", lambda value: None)
    assert nni_unit.main([str(folder), str(run)]) == 0
    assert RunDir(run).lookup("test", unit.spec)["value"] == 9

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (folder / "k1.pkl").write_bytes(pickle.dumps(Boom()))
    run2 = tmp_path / "run2"
    assert nni_unit.main([str(folder), str(run2)]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert RunDir(run2).lookup("test", unit.spec) is None

"""Run directories: resolved config, manifest (provenance), results, and a content-addressed unit cache.

Every independent piece of work (one distillation, one evaluation-net training, one attack, one search) is a
*unit* identified by a hash of everything that determines its result. Its JSON result is written atomically
under ``units/`` when it finishes, so an interrupted run resumed in the same directory redoes only unfinished
units, and a changed config never reuses a stale result.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from distillers.errors import DDError
from distillers.io import atomic_write, atomic_write_json, atomic_write_text, sha256_file

TRACKED_PACKAGES = ("ddeval", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "opacus", "nni",
                    "matplotlib")


def unit_key(spec: Mapping[str, Any]) -> str:
    """A stable short hash of a JSON-able description of a unit of work."""
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def set_key(syn: Any) -> Any:
    """What a unit computed from a distilled set (an evaluation, an attack) is keyed by: the set's distillation
    key plus the digest of its content. A set distilled again under the same key by changed code (a fixed bug)
    thus never reuses the old set's results. A set saved before digests were recorded keeps its key alone, so
    the results cached for it stay valid."""
    key, digest = syn.meta.get("unit_key"), syn.meta.get("content_sha256")
    return f"{key}:{digest}" if digest else key


def _result_digest(result: Any) -> str:
    """SHA-256 of a unit result's canonical JSON (sorted keys), stored with it and checked on reuse."""
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunDir:
    """One run's folder. ``unit(kind, spec, compute)`` returns a cached result or computes and stores it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "units").mkdir(exist_ok=True)
        except OSError as err:
            raise DDError(f"Cannot create the run directory {self.path} ({err.strerror}); "
                          "choose another --out.") from None
        self.git = git_info()  # the code that runs is the code at the start, not at the end
        self.reused = 0
        self.computed = 0
        self.unit_seconds = 0.0  # compute time of every unit this run used, including ones reused from the cache
        self.timings: dict[str, float] = {}
        # every artefact this run's results rest on -> its SHA-256 (each is also checked when reused)
        self.artefacts: dict[str, str] = {}

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a killed earlier run left mid-write (``.NAME.*.tmp`` from atomic writes).

        Called by the main job before any work starts, never by unit workers (their writes may be in flight).
        Such files were never renamed into place, so no result rests on them. Returns how many were removed.
        """
        removed = 0
        for folder in (self.path, self.path / "units", *sorted((self.path / "synthetic").glob("*/"))):
            for tmp in folder.glob(".*.tmp"):
                try:
                    tmp.unlink()
                    removed += 1
                except OSError:
                    pass
        return removed

    # ------------------------------------------------------------------ units
    def unit_path(self, kind: str, key: str) -> Path:
        return self.path / "units" / f"{kind}-{key}.json"

    def unit(self, kind: str, spec: Mapping[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached result of the unit ``(kind, spec)``, or ``compute()``'s result, stored before returning."""
        cached = self.lookup(kind, spec)
        if cached is not None:
            return cached
        start = time.perf_counter()
        result = compute()
        return self.store(kind, spec, result, seconds=time.perf_counter() - start)

    def lookup(self, kind: str, spec: Mapping[str, Any], *, computed: bool = False) -> dict[str, Any] | None:
        """A finished unit's result (its arrays loaded back under ``"arrays"``), or None when absent/damaged.

        ``computed``: the unit was just computed for this run by another process (an NNI trial), so it
        counts as computed, not reused.
        """
        key = unit_key({"kind": kind, **spec})
        path = self.unit_path(kind, key)
        if not path.is_file():
            return None
        try:
            blob = path.read_bytes()
            stored = json.loads(blob)
            if stored.get("spec_key") != key:
                return None
            result = stored["result"]
            digest = stored.get("result_sha256")  # absent in units written before checksums were recorded
            if digest is not None and digest != _result_digest(result):
                return None  # edited or damaged in place: recompute the unit
            # units written before "seconds" was recorded: their own timing, where the result has one
            seconds = float(stored.get("seconds") or result.get("seconds") or 0.0)
            if stored.get("arrays"):
                arrays_path = path.with_suffix(".npz")
                if sha256_file(arrays_path) != stored["arrays"]["sha256"]:
                    return None  # the arrays were damaged or replaced: recompute the unit
                with np.load(arrays_path, allow_pickle=False) as npz:
                    result = {**result, "arrays": {name: npz[name] for name in npz.files}}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            return None  # damaged cache entry: recompute it
        self.artefacts[f"units/{path.name}"] = hashlib.sha256(blob).hexdigest()
        if stored.get("arrays"):
            self.artefacts[f"units/{path.with_suffix('.npz').name}"] = stored["arrays"]["sha256"]
        if computed:
            self.computed += 1
            self.timings[kind] = self.timings.get(kind, 0.0) + seconds
        else:
            self.reused += 1
        self.unit_seconds += seconds
        return result

    def store(self, kind: str, spec: Mapping[str, Any], result: dict[str, Any], *,
              seconds: float = 0.0) -> dict[str, Any]:
        """Write a finished unit. Numpy arrays under ``result["arrays"]`` go to a ``.npz`` beside the JSON,
        written (and checksummed) first, so a JSON entry never points at arrays that are not there."""
        key = unit_key({"kind": kind, **spec})
        path = self.unit_path(kind, key)
        self.timings[kind] = self.timings.get(kind, 0.0) + seconds
        self.unit_seconds += seconds
        arrays = result.get("arrays")
        payload = {k: v for k, v in result.items() if k != "arrays"}
        payload = json.loads(json.dumps(payload, default=str))  # exactly what lookup() will read back
        entry: dict[str, Any] = {"spec_key": key, "kind": kind, "spec": json.loads(json.dumps(spec, default=str)),
                                 "seconds": round(seconds, 3), "result": payload,
                                 "result_sha256": _result_digest(payload)}
        if arrays:
            arrays_path = path.with_suffix(".npz")

            named: dict[str, Any] = {name: np.asarray(a) for name, a in arrays.items()}

            def write_npz(fh: Any) -> None:
                np.savez(fh, **named)

            atomic_write(arrays_path, write_npz)
            entry["arrays"] = {"file": arrays_path.name, "names": sorted(arrays), "sha256": sha256_file(arrays_path)}
        atomic_write_json(path, entry)
        self.artefacts[f"units/{path.name}"] = sha256_file(path)
        if arrays:
            self.artefacts[f"units/{path.with_suffix('.npz').name}"] = entry["arrays"]["sha256"]
        self.computed += 1
        return result

    # ------------------------------------------------------------------ files
    def write_config(self, config: Mapping[str, Any]) -> Path:
        return atomic_write_text(self.path / "config.yaml", yaml.safe_dump(dict(config), sort_keys=False))

    def write_results(self, results: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.path / "results.json", results)

    def manifest(self, *, seeds: Mapping[str, Any], device: str, started: str,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Provenance of this run: command, code version, packages, machine, seeds, timings."""
        return {
            "started": started,
            "finished": now_iso(),
            "command": os.environ.get("DDEVAL_COMMAND", ""),
            "git": self.git,
            "versions": package_versions(),
            "python": platform.python_version(),
            "machine": machine_info(device),
            "seeds": dict(seeds),
            "timings_seconds": {k: round(v, 3) for k, v in self.timings.items()},
            "units": {"computed": self.computed, "reused": self.reused},
            "artefacts": dict(sorted(self.artefacts.items())),
            **dict(extra or {}),
        }

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.path / "manifest.json", manifest)


def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_info() -> dict[str, Any]:
    """The source checkout's commit and whether it had uncommitted changes (empty outside a checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info

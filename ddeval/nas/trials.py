"""One NAS trial (train a candidate, test it) and the cache that makes every trial run at most once.

A trial's result depends only on the architecture, the training data, the test data, the training recipe, the
seed and the kind of device, so it is stored under a hash of exactly those (:func:`trial_key`) as one JSON
file in a cache folder. The full-data search of a space is then computed once and reused by every proxy's
comparison, also by later runs that point ``nas.cache_dir`` at the same folder, and a killed search resumes
without retraining the candidates it had finished. Trials reach the data through file paths (NNI rejects large
payloads, and trials may run in other processes), and a trial writes its own record, so the same code serves
NNI's in-process engine and its training services.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ddeval.nas.space import ARCH_KEYS, arch_name
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.io import atomic_write, atomic_write_json
from distillers.protocol import loss_spec
from distillers.synthetic import SyntheticSet

_logger = logging.getLogger(__name__)

RECORD_VERSION = 1


def data_fingerprint(data: LabeledData | SyntheticSet) -> str:
    """Content hash of a training or test set (soft labels included, for synthetic sets that learn them)."""
    if isinstance(data, LabeledData):
        return data.fingerprint()
    h = hashlib.sha256()
    h.update(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().float().numpy().tobytes())
    h.update("\x00".join(data.classes).encode())
    loss = loss_spec(data)
    if loss:
        h.update(json.dumps(loss, sort_keys=True).encode())
    return h.hexdigest()[:16]


def trial_spec(arch: Mapping[str, Any], *, train: str, test: str, recipe: Mapping[str, Any], seed: int,
               device: str) -> dict[str, Any]:
    """Everything a trial's result depends on, as JSON: the key of its cache record."""
    return {"version": RECORD_VERSION, "arch": {k: arch[k] for k in ARCH_KEYS}, "train": train, "test": test,
            "recipe": dict(recipe), "seed": int(seed), "device": torch.device(device).type}


def trial_key(spec: Mapping[str, Any]) -> str:
    """The cache file stem of ``spec``: a readable architecture name and a hash of the whole spec."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return f"{arch_name(spec['arch'])}-{digest}"


def read_record(cache_dir: str | Path, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cached record of ``spec``, or None when there is none (or only a damaged one, which is ignored)."""
    path = Path(cache_dir) / f"{trial_key(spec)}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("spec") != json.loads(json.dumps(spec)):
        return None
    return record


# ------------------------------------------------------------------------------------ data by file path
_DATA_CACHE: dict[tuple[str, int, int], LabeledData | SyntheticSet] = {}


def save_data(data: LabeledData | SyntheticSet, folder: Path, name: str) -> Path:
    """Write ``data`` under ``folder`` for :func:`load_data`: ``name.pt`` (LabeledData) or ``name/`` (SyntheticSet)."""
    if isinstance(data, SyntheticSet):
        return data.save(folder / name)
    if not isinstance(data, LabeledData):
        raise DDError(f"NAS data must be LabeledData or a SyntheticSet, got {type(data).__name__}.")
    payload = {"x": data.x.detach().cpu().contiguous(), "y": data.y.detach().cpu().contiguous(),
               "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std), "name": data.name}
    return atomic_write(folder / f"{name}.pt", lambda fh: torch.save(payload, fh))


def load_data(path: str | Path) -> LabeledData | SyntheticSet:
    """Read what :func:`save_data` wrote (tensors only, ``weights_only=True``); cached while unchanged."""
    path = Path(path)
    stat = path.stat() if path.is_file() else (path / "tensors.pt").stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _DATA_CACHE:
        if path.is_dir():
            _DATA_CACHE[key] = SyntheticSet.load(path)
        else:
            d = torch.load(path, map_location="cpu", weights_only=True)
            _DATA_CACHE[key] = LabeledData(d["x"], d["y"], tuple(d["classes"]), tuple(d["mean"]), tuple(d["std"]),
                                           name=d["name"])
    return _DATA_CACHE[key]


def clear_data_cache() -> None:
    """Forget the loaded data (the search calls this when it ends, so memory does not outlive it)."""
    _DATA_CACHE.clear()


# --------------------------------------------------------------------------------------------- the trial
def train_candidate(arch: Mapping[str, Any], train: LabeledData | SyntheticSet, test: LabeledData, config: Any,
                    *, seed: int, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train the ConvNet ``arch`` on ``train`` and test it on ``test`` (no NNI, no cache).

    ``config`` is a :class:`distillers.protocol.TrainConfig` (or anything with ``train_config()``). The
    network's initial weights and the batch order come from ``seed`` alone, so the same call gives the same
    accuracy. Returns ``distillers.protocol.train_and_evaluate``'s dict plus ``"arch"``.
    """
    from distillers.protocol import train_and_evaluate

    train_config = config.train_config() if hasattr(config, "train_config") else config
    arch = {k: arch[k] for k in ARCH_KEYS}
    result = train_and_evaluate("convnet", train, test, train_config, seed=seed, device=device, network_args=arch)
    result["arch"] = arch
    return result


def run_trial(arch: Mapping[str, Any], *, train_path: str, test_path: str, recipe: Mapping[str, Any],
              seed: int, device: str, cache_dir: str, train_key: str, test_key: str) -> dict[str, Any]:
    """The cached record of this trial, computing and storing it first when there is none.

    The record is ``{"spec", "arch", "accuracy", "seconds", "train_seconds", "eval_seconds", "steps",
    "train_samples", "error", "started_at", "pid"}`` (the last two: when and in which process it ran): ``seconds`` is the trial's own wall time when it was computed (so reusing
    it still charges the search its real cost), ``train_samples`` the number of images it trained on
    (epochs x set size), ``error`` the message of a user-fixable failure such as divergence (then
    ``accuracy`` is None). A failure is stored too: it is as deterministic as a success.
    """
    from distillers.protocol import TrainConfig

    spec = trial_spec(arch, train=train_key, test=test_key, recipe=recipe, seed=seed, device=device)
    record = read_record(cache_dir, spec)
    if record is not None:
        return record
    config = TrainConfig(**recipe)
    train, test = load_data(train_path), load_data(test_path)
    if not isinstance(test, LabeledData):
        raise DDError(f"The NAS test data at {test_path} must be a labelled data file, not a synthetic set.")
    start = time.perf_counter()
    record = {"spec": spec, "arch": spec["arch"], "accuracy": None, "seconds": None, "train_seconds": None,
              "eval_seconds": None, "steps": None, "train_samples": len(train) * config.epochs, "error": None,
              "started_at": time.time(), "pid": os.getpid()}
    try:
        result = train_candidate(arch, train, test, config, seed=seed, device=device)
    except DDError as err:
        record["error"] = str(err)
    else:
        record.update({k: result.get(k) for k in ("train_seconds", "eval_seconds", "steps")})
        record["accuracy"] = float(result["accuracy"])
    record["seconds"] = time.perf_counter() - start
    atomic_write_json(Path(cache_dir) / f"{trial_key(spec)}.json", record)
    _logger.info("%s: accuracy %s (%.1f s)", arch_name(spec["arch"]), record["accuracy"], record["seconds"])
    return record


def nni_trial(model: Any, *, train_path: str, test_path: str, recipe: dict[str, Any], seed: int, device: str,
              cache_dir: str, train_key: str, test_key: str) -> float:
    """The evaluator function NNI calls for each candidate; reports the test accuracy as the metric.

    ``model`` is the frozen :class:`~ddeval.nas.space.ConvNetSpace`; only its ``arch`` is used: the network
    is rebuilt from ``seed`` so that the weights do not depend on NNI's construction order. A failed trial
    raises :class:`DDError` (the search records it as failed and goes on).
    """
    import nni

    record = run_trial(model.arch, train_path=train_path, test_path=test_path, recipe=recipe, seed=seed,
                       device=device, cache_dir=cache_dir, train_key=train_key, test_key=test_key)
    if record["error"] is not None:
        raise DDError(record["error"])
    nni.report_final_result(record["accuracy"])
    return record["accuracy"]


__all__ = ["clear_data_cache", "data_fingerprint", "load_data", "nni_trial", "read_record", "run_trial",
           "save_data", "train_candidate", "trial_key", "trial_spec"]

"""Shadow pipelines: the whole chain (random half of the population → distil → train → query), repeated.

For a distilled set the attacked artefact is a model trained on the synthetic images, and the members are the
real images the *distiller* saw. A faithful likelihood-ratio attack (LiRA, Carlini et al. 2022) must therefore
repeat the whole chain in its shadow models, not just the final training: each pipeline draws a random half of
a fixed population, distils it (or, for the baselines, takes a random real subset of the same size, all of it,
or trains with DP-SGD), trains a fresh network on the result and records that network's logits on every
population image. Halves are balanced so that each image is IN for half of the pipelines.

Every pipeline is one :class:`~ddeval.executor.Unit`, keyed by its target, its half, its seed, the recipe and
the data fingerprints: cached in the run directory, reused on resume, never recomputed when present.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ddeval.executor import Unit
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.synthetic import SyntheticSet

KIND = "shadow"


def population_indices(data: LabeledData, size: int | None, seed: int) -> torch.Tensor:
    """``size`` indices of ``data`` drawn per class in proportion to the class sizes (all when None).

    Quotas are rounded by largest remainder, so exactly ``size`` images are drawn (at least 2 per class).
    """
    if size is None or size >= len(data):
        return torch.arange(len(data))
    if size < 2 * data.num_classes:
        raise DDError(f"privacy.population={size} is too small: it needs at least 2 images per class "
                      f"({2 * data.num_classes}); raise it or leave it unset for the whole training set.")
    g = torch.Generator().manual_seed(seed)
    counts = np.asarray(data.class_counts(), dtype=np.float64)
    share = size * counts / counts.sum()
    quota = np.maximum(np.floor(share).astype(int), 2)
    for label in np.argsort(-(share - np.floor(share)), kind="stable"):  # largest remainders first
        if quota.sum() >= size:
            break
        quota[label] += 1
    picked = []
    for label, q in enumerate(quota):
        idx = data.indices_of(label)
        picked.append(idx[torch.randperm(idx.numel(), generator=g)[:int(q)]])
    return torch.sort(torch.cat(picked)).values


def half_masks(num_points: int, pipelines: int, seed: int) -> np.ndarray:
    """``[pipelines, num_points]`` booleans: pipeline ``m`` trains on point ``i`` where True.

    Every point is IN for exactly ⌊M/2⌋ or ⌈M/2⌉ of the M pipelines (random which), and each pipeline gets
    about half of the points, so per-point IN and OUT Gaussians both have data.
    """
    if pipelines < 2:
        raise DDError(f"LiRA needs at least 2 pipelines (shadows + 1), got {pipelines}; raise privacy.shadows.")
    rng = np.random.default_rng(seed)
    rank = np.argsort(rng.random((pipelines, num_points)), axis=0).argsort(axis=0)
    masks = rank < pipelines // 2
    if pipelines % 2:
        masks |= (rank == pipelines // 2) & (rng.random(num_points) < 0.5)[None, :]
    return masks


def check_halves(labels: torch.Tensor, masks: np.ndarray, num_classes: int, needed: int, what: str) -> None:
    """Every pipeline's half must hold ``needed`` images of every class (the ipc it distils to)."""
    y = labels.numpy()
    for m, mask in enumerate(masks):
        counts = np.bincount(y[mask], minlength=num_classes)
        if counts.min() < needed:
            raise DDError(f"Shadow pipeline {m} of {what} gets only {int(counts.min())} images of class "
                          f"{int(counts.argmin())} but needs {needed} (ipc); raise privacy.population or lower ipc.")


def digest(values: np.ndarray) -> str:
    """A short content hash of an index array (part of a pipeline's cache key)."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.int64).tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ one pipeline
def run_pipeline(target: Mapping[str, Any], population: LabeledData, members: np.ndarray, test: LabeledData, *,
                 seed: int, network: str, network_args: Mapping[str, Any], recipe: Mapping[str, Any],
                 flip: bool, device: str) -> dict[str, Any]:
    """Train one target/shadow model on ``population[members]`` the way ``target`` says; query every point.

    ``target["kind"]``: ``"method"`` (distil with ``name``/``config`` at ``ipc``, then train on the set),
    ``"full-data"`` (train on all members), ``"dp-sgd"`` (DP-SGD on all members with ``dp`` config).
    Returns test accuracy, timings, the DP guarantee where there is one, and ``arrays.logits`` ``[n, Q, K]``.
    """
    from ddeval.privacy.lira import query_logits

    start = time.perf_counter()
    data = population.subset(torch.as_tensor(members, dtype=torch.long))
    trained = train_target(target, data, test, seed=seed + 1, distill_seed=seed, network=network,
                           network_args=network_args, recipe=recipe, device=device)
    out = {k: trained[k] for k in ("distill_seconds", "dp") if trained.get(k) is not None}
    logits = query_logits(trained["model"], population, flip=flip, device=device)
    return {
        **out,
        "accuracy": float(trained["accuracy"]),
        "train_seconds": trained.get("train_seconds"),
        "seconds": round(time.perf_counter() - start, 3),
        "num_members": int(len(members)),
        "arrays": {"logits": np.asarray(logits, dtype=np.float32)},
    }


DP_KEYS = ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "accountant")


def train_target(target: Mapping[str, Any], data: LabeledData, test: LabeledData, *, seed: int,
                 network: str, network_args: Mapping[str, Any], recipe: Mapping[str, Any], device: str,
                 synthetic: SyntheticSet | None = None, distill_seed: int | None = None) -> dict[str, Any]:
    """The model a privacy target describes, trained (seed ``seed``) and tested on ``test``.

    ``"method"``: train on ``synthetic``, or on the set the method distils from ``data`` (seed
    ``distill_seed``); ``"full-data"``: train on ``data``; ``"dp-sgd"``: DP-SGD on ``data``. Returns
    train_and_evaluate's dict (model, accuracy, train_seconds, ...) plus ``"dp"`` (the DP guarantee or None)
    and ``"distill_seconds"`` when this call distilled.
    """
    from distillers.protocol import TrainConfig, train_and_evaluate

    kind = target["kind"]
    extra: dict[str, Any] = {"dp": None}
    if kind == "dp-sgd":
        from ddeval.privacy.dp import DPConfig, train_and_evaluate_dp
        from distillers.config import build_config

        dp_cfg = build_config(DPConfig, dict(target["dp"]), what="privacy.dp_sgd")
        trained = train_and_evaluate_dp(network, data, test, dp_cfg, seed=seed, device=device,
                                        network_args=dict(network_args))
        return {**trained, "dp": {k: trained[k] for k in DP_KEYS if k in trained}}
    if kind == "method":
        if synthetic is None:
            import distillers

            method = distillers.create(target["name"], **dict(target.get("config") or {}))
            synthetic = method.distill(data, int(target["ipc"]), seed=seed if distill_seed is None else distill_seed,
                                       device=device, progress=False)
            extra["distill_seconds"] = synthetic.meta.get("distill_seconds")
        extra["dp"] = dict(synthetic.meta["dp"]) if synthetic.meta.get("dp") else None
        train_on: LabeledData | SyntheticSet = synthetic
    elif kind == "full-data":
        train_on = data
    else:
        raise DDError(f"Unknown privacy target kind {kind!r}; use method, full-data or dp-sgd.")
    trained = train_and_evaluate(network, train_on, test, TrainConfig(**recipe), seed=seed, device=device,
                                 network_args=dict(network_args), return_model=True)
    return {**trained, **extra}


def pipeline_units(target: Mapping[str, Any], label: str, population: LabeledData, masks: np.ndarray,
                   test: LabeledData, *, seed: int, network: str, network_args: Mapping[str, Any],
                   recipe: Mapping[str, Any], flip: bool, device: str, data_key: str) -> list[Unit]:
    """One cached unit per pipeline of ``target`` (pipeline ``m`` trains on ``masks[m]``)."""
    units = []
    for m, mask in enumerate(masks):
        members = np.flatnonzero(mask)
        pipeline_seed = seed + 7919 * m
        spec = {"target": dict(target), "population": data_key, "members": digest(members),
                "test": test.fingerprint(), "seed": pipeline_seed, "network": network,
                "network_args": dict(network_args), "recipe": dict(recipe), "flip": flip}
        units.append(Unit(KIND, spec, run_pipeline, (target, population, members, test),
                          {"seed": pipeline_seed, "network": network, "network_args": dict(network_args),
                           "recipe": dict(recipe), "flip": flip, "device": device},
                          label=f"{label} pipeline {m + 1}/{len(masks)}"))
    return units


def stack_logits(results: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``[M, n, Q, K]`` logits of M finished pipelines."""
    return np.stack([np.asarray(r["arrays"]["logits"]) for r in results])

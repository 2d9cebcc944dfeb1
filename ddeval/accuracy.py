"""Accuracy of a training set (synthetic, random-subset or full real data) under the standard recipe.

Each (set, network, evaluation seed) is one independent training run of REFERENCE §1: a freshly initialised
network trained from scratch, then tested once, at the end, on the full test set (no checkpoint selection).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from ddeval.config import AccuracyConfig
from distillers.data import LabeledData
from distillers.protocol import TrainConfig, loss_spec, train_and_evaluate
from distillers.synthetic import SyntheticSet

UnitRunner = Callable[[str, dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]


def recipe(config: AccuracyConfig, *, epochs: int | None = None, augment: str | None = None,
           fast: bool = True) -> TrainConfig:
    """The evaluation TrainConfig for ``config`` (``augment`` is the DSA strategy when enabled, ``fast``
    the suite's fast-path switch)."""
    return TrainConfig(epochs=epochs or config.epochs, lr=config.lr, batch_size=config.batch_size,
                       augment=augment if config.augment else None, fast=fast)


def set_recipe(config: TrainConfig, syn: LabeledData | SyntheticSet, learned_lr: bool) -> TrainConfig:
    """``config``, with the set's own learned learning rate when ``learned_lr`` is on and the set has one
    (MTT, TESLA and DD learn it, and their authors evaluate with it); otherwise ``config`` unchanged."""
    if learned_lr and isinstance(syn, SyntheticSet) and syn.lr is not None:
        return dataclasses.replace(config, lr=syn.lr)
    return config


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def evaluate_over_seeds(train: LabeledData | SyntheticSet, test: LabeledData, *, network: str,
                        network_args: dict[str, Any], train_config: TrainConfig, seeds: Sequence[int],
                        device: str, run_unit: UnitRunner, unit_spec: dict[str, Any]) -> dict[str, Any]:
    """Train one fresh network per seed on ``train`` and test it; returns accuracies with mean ± std.

    ``run_unit(kind, spec, compute)`` caches each seed's result (the run directory's unit cache).
    """
    results = []
    for seed in seeds:
        spec = {**unit_spec, "network": network, "network_args": network_args, "seed": seed,
                "recipe": train_config.__dict__, **loss_spec(train)}

        def compute(seed: int = seed) -> dict[str, Any]:
            out = train_and_evaluate(network, train, test, train_config, seed=seed, device=device,
                                     network_args=network_args)
            return {k: out[k] for k in ("accuracy", "train_seconds", "eval_seconds", "fast")}

        results.append(run_unit("eval", spec, compute))
    accuracies = [float(r["accuracy"]) for r in results]
    mean, std = mean_std(accuracies)
    return {
        "network": network,
        "accuracy_mean": mean,
        "accuracy_std": std,
        "accuracies": accuracies,
        "eval_seeds": list(seeds),
        "train_seconds_mean": sum(float(r["train_seconds"]) for r in results) / len(results),
        "epochs": train_config.epochs,
        "path": sorted({str(r.get("fast", "fp32 eager")) for r in results}),  # e.g. ["bf16+compile"]
    }

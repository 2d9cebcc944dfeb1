"""Cached training results of squared-error sets depend on the loss scale: accuracy units and NAS trial keys
change with distillers.protocol.MSE_SCALE, cross-entropy sets' keys do not."""

from __future__ import annotations

import pytest
import torch

from ddeval.accuracy import evaluate_over_seeds
from ddeval.nas.trials import data_fingerprint
from distillers import protocol
from distillers.protocol import TrainConfig
from distillers.synthetic import SyntheticSet

KW = {"classes": ("a", "b"), "mean": (0.0,), "std": (1.0,)}


def _sets() -> tuple[SyntheticSet, SyntheticSet]:
    images = torch.linspace(0, 1, 32).reshape(2, 1, 4, 4)
    mse = SyntheticSet(images, torch.tensor([[0.5, -0.5], [-0.5, 0.5]]), label_loss="mse", **KW)
    return mse, SyntheticSet(images, torch.tensor([0, 1]), **KW)


def _accuracy_spec(data: SyntheticSet) -> dict:
    specs = []

    def run_unit(kind, spec, compute):
        specs.append(spec)
        return {"accuracy": 0.5, "train_seconds": 0.0, "eval_seconds": 0.0}

    evaluate_over_seeds(data, None, network="convnet", network_args={}, train_config=TrainConfig(epochs=1),
                        seeds=[0], device="cpu", run_unit=run_unit, unit_spec={"set": "x"})
    return specs[0]


def test_accuracy_unit_and_nas_trial_keys_follow_the_mse_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    mse, ce = _sets()
    before = (_accuracy_spec(mse), _accuracy_spec(ce), data_fingerprint(mse), data_fingerprint(ce))
    assert before[0]["mse_scale"] == protocol.MSE_SCALE and "mse_scale" not in before[1]
    monkeypatch.setattr(protocol, "MSE_SCALE", protocol.MSE_SCALE * 2)
    after = (_accuracy_spec(mse), _accuracy_spec(ce), data_fingerprint(mse), data_fingerprint(ce))
    assert after[0] != before[0] and after[2] != before[2]  # squared-error results are recomputed
    assert after[1] == before[1] and after[3] == before[3]  # cross-entropy results stay cached

"""The evaluation recipe: trains, reproduces, detects divergence and validates its configuration."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from distillers.config import build_config
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.networks import create
from distillers.protocol import (
    TrainConfig,
    evaluate,
    predict_logits,
    resolve_device,
    train,
    train_and_evaluate,
)
from distillers.synthetic import SyntheticSet

SMALL = {"width": 16, "depth": 2}
FAST = TrainConfig(epochs=4, batch_size=64, lr=0.05)


def test_defaults_are_the_papers_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.augment, cfg.decay_at) == (
        300, 0.01, 0.9, 5e-4, 256, None, 0.5)
    assert cfg.decay_epoch == 150
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [
    {"epochs": 0}, {"epochs": -3}, {"epochs": 2.5}, {"epochs": True}, {"lr": 0}, {"lr": -0.1},
    {"lr": float("nan")}, {"lr": float("inf")}, {"momentum": 1.0}, {"momentum": -0.1}, {"weight_decay": -1e-4},
    {"batch_size": 0}, {"decay_at": 0.0}, {"decay_at": 1.5}, {"augment": "color_blur"},
])
def test_bad_config_values(bad: dict) -> None:
    with pytest.raises(DDError):
        TrainConfig(**bad)


def test_config_from_a_mapping() -> None:
    assert build_config(TrainConfig, {"epochs": "7", "augment": "crop"}).epochs == 7
    with pytest.raises(DDError, match="Did you mean"):
        build_config(TrainConfig, {"epoch": 7})


def test_training_learns_and_reproduces(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, test_set = tiny_digits
    state = torch.random.get_rng_state()
    first = train_and_evaluate("convnet", train_set, test_set, FAST, seed=0, network_args=SMALL)
    second = train_and_evaluate("convnet", train_set, test_set, FAST, seed=0, network_args=SMALL)
    assert torch.equal(state, torch.random.get_rng_state())
    assert first["accuracy"] > 0.5  # chance is 0.1
    assert first["accuracy"] == second["accuracy"]
    assert first["final_loss"] == second["final_loss"]
    assert first["steps"] == 4 * 7 and first["seed"] == 0 and first["network"] == "convnet"
    assert first["train_seconds"] > 0 and first["eval_seconds"] >= 0
    assert "model" not in first


def test_augmented_training_reproduces(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, test_set = tiny_digits
    cfg = TrainConfig(epochs=2, batch_size=64, augment="color_crop_cutout_scale_rotate")
    runs = [train_and_evaluate("convnet", train_set, test_set, cfg, seed=1, network_args=SMALL, return_model=True)
            for _ in range(2)]
    assert runs[0]["accuracy"] == runs[1]["accuracy"] and runs[0]["final_loss"] == runs[1]["final_loss"]
    assert isinstance(runs[0]["model"], torch.nn.Module)


def test_divergence_is_a_clear_error(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, test_set = tiny_digits
    cfg = TrainConfig(epochs=20, lr=1e6)
    with pytest.raises(DDError, match="lr=1000000.0; lower the learning rate"):
        train_and_evaluate("convnet-sigmoid", train_set, test_set, cfg, seed=0,
                           network_args={"width": 8, "depth": 1, "norm": "none"})


def test_synthetic_sets_hard_and_soft(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, test_set = tiny_digits
    idx = train_set.stratified_indices(2, torch.Generator().manual_seed(0))
    hard = SyntheticSet(train_set.x[idx], train_set.y[idx], classes=train_set.classes, mean=train_set.mean,
                        std=train_set.std)
    soft = SyntheticSet(train_set.x[idx], torch.nn.functional.one_hot(train_set.y[idx], 10).float() * 0.9 + 0.01,
                        classes=train_set.classes, mean=train_set.mean, std=train_set.std)
    cfg = TrainConfig(epochs=3)
    for syn in (hard, soft):
        result = train_and_evaluate("mlp", syn, test_set, cfg, seed=0)
        assert 0.0 <= result["accuracy"] <= 1.0 and result["steps"] == 3


def test_trailing_single_example_batch_with_batchnorm(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, _ = tiny_digits
    data = train_set.subset(list(range(5)))
    net = create("convnet-bn", channels=1, num_classes=10, image_size=(8, 8), seed=0, width=8)
    stats = train(net, data, TrainConfig(epochs=2, batch_size=4), generator=torch.Generator().manual_seed(0))
    assert stats["steps"] == 2 and stats["final_loss"] > 0


def test_predict_and_evaluate(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    _, test_set = tiny_digits
    net = create("mlp", channels=1, num_classes=10, image_size=(8, 8), seed=0)
    net.train()
    logits = predict_logits(net, test_set.x, batch_size=7)
    assert logits.shape == (len(test_set), 10) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert net.training  # mode restored
    acc = evaluate(net, test_set)
    assert 0.0 <= acc <= 1.0
    assert acc == float((logits.argmax(1) == test_set.y).float().mean())


def test_mismatched_train_and_test(tiny_digits: tuple[LabeledData, LabeledData], tiny_rgb: LabeledData) -> None:
    with pytest.raises(DDError, match="same kind of images"):
        train_and_evaluate("mlp", tiny_rgb, tiny_digits[1], FAST, seed=0)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "cuda:x", "gpu0"):
        with pytest.raises(DDError, match="Unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(DDError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(DDError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")

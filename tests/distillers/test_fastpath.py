"""The fast path: what it turns on where, its fallbacks, and that it leaves training results intact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import distillers
import distillers.fastpath as fastpath
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.fastpath import FastPath
from distillers.networks import create
from distillers.protocol import TrainConfig, train, train_and_evaluate


def test_switched_off_is_plain_fp32_eager() -> None:
    path = FastPath.resolve(False, "cpu", steps=10**9)
    assert (path.bf16, path.compile, path.label) == (False, False, "fp32 eager")
    with path.autocast():
        assert F.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32
    fn = lambda x: x  # noqa: E731
    assert path.wrap(fn) is fn


def test_on_follows_the_hardware_and_the_length_of_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    short = FastPath.resolve(True, "cpu", steps=fastpath.COMPILE_MIN_STEPS - 1)
    assert short.bf16 == fastpath.bf16_supported(torch.device("cpu"))
    assert not short.compile
    long = FastPath.resolve(True, "cpu", steps=fastpath.COMPILE_MIN_STEPS)
    assert long.compile == fastpath.compile_supported(torch.device("cpu"))
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: False)
    monkeypatch.setattr(fastpath, "compile_supported", lambda device: False)
    none = FastPath.resolve(True, "cpu", steps=10**9)
    assert (none.bf16, none.compile, none.label) == (False, False, "fp32 eager")


def test_bf16_autocast_runs_convolutions_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: True)
    path = FastPath.resolve(True, "cpu", steps=0)
    assert path.label == "bf16+eager"
    with path.autocast():
        out = F.conv2d(torch.randn(1, 1, 5, 5), torch.randn(2, 1, 3, 3))
    assert out.dtype == torch.bfloat16


class _FakeCompilerError(RuntimeError):
    pass


_FakeCompilerError.__module__ = "torch._dynamo.exc"


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise _FakeCompilerError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    wrapped = FastPath(enabled=True, compile=True).wrap(lambda x: x + 1)
    with pytest.warns(RuntimeWarning, match="continuing without compiling"):
        assert wrapped(torch.ones(1)).item() == 2
    assert wrapped(torch.ones(1)).item() == 2  # stays eager, no second warning needed


def test_errors_of_the_model_itself_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_passthrough(fn, **kwargs):
        return fn

    monkeypatch.setattr(torch, "compile", compile_passthrough)

    def bad(x):
        raise ValueError("shape mismatch in the user's model")

    with pytest.raises(ValueError, match="shape mismatch"):
        FastPath(enabled=True, compile=True).wrap(bad)(torch.ones(1))


def test_fast_must_be_a_bool() -> None:
    with pytest.raises(DDError, match="fast must be true or false"):
        TrainConfig(fast="yes")  # type: ignore[arg-type]
    with pytest.raises(DDError, match="fast"):
        distillers.create("dm", fast=1)


def test_fast_and_fp32_training_reach_the_same_accuracy(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, test = tiny_digits
    accs = {}
    for fast in (False, True):
        res = train_and_evaluate("convnet-d2", train_set, test, TrainConfig(epochs=15, fast=fast), seed=3)
        accs[fast] = res["accuracy"]
        assert res["fast"] == ("fp32 eager" if not fast else FastPath.resolve(True, "cpu", steps=0).label)
    assert accs[False] > 0.8
    assert abs(accs[True] - accs[False]) < 0.06, accs


def test_compiled_training_learns(monkeypatch: pytest.MonkeyPatch, tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    """The real torch.compile path (forced on for a short run) trains as well as eager."""
    if not fastpath.compile_supported(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile on this machine")
    train_set, test = tiny_digits
    accs = {}
    for threshold in (10**9, 0):  # eager, then compiled (forced on for this short run)
        monkeypatch.setattr(fastpath, "COMPILE_MIN_STEPS", threshold)
        net = create("convnet-d2", channels=1, num_classes=10, image_size=(8, 8), seed=0)
        stats = train(net, train_set, TrainConfig(epochs=10, fast=True), generator=torch.Generator().manual_seed(0))
        assert stats["fast"].endswith("+compile") == (threshold == 0)
        with torch.no_grad():
            accs[threshold] = (net(test.x).argmax(1) == test.y).float().mean().item()
    assert accs[0] > 0.8
    assert abs(accs[0] - accs[10**9]) < 0.05, accs


def test_fast_distillation_still_beats_noise(tiny_digits: tuple[LabeledData, LabeledData]) -> None:
    train_set, test = tiny_digits
    syn = distillers.create("dm", iterations=20, batch_real=32, network="convnet-d2", fast=True).distill(
        train_set, 2, seed=0)
    assert syn.meta["fast"] == FastPath.resolve(True, "cpu", steps=0).label
    acc = train_and_evaluate("convnet-d2", syn, test, TrainConfig(epochs=30), seed=0)["accuracy"]
    assert acc > 0.4  # noise images give ~0.1

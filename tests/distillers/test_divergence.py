"""Numerical faults: a NaN or Inf in a distillation's loss or synthetic parameters stops it within the
iteration it appears in, names that iteration, and hands back the set of the last finite iteration."""

from __future__ import annotations

import pytest
import torch
from test_methods import small_config

import distillers
from distillers.errors import DDError, Diverged
from distillers.methods import common
from distillers.synthetic import SyntheticSet

NON_ITERATIVE = {"random", "noise", "herding", "kcenter", "kmeans"}
ITERATIVE = [m for m in distillers.available() if m not in NON_ITERATIVE]
FAULT_AT = 2  # the iteration (1-based) at which the fault is injected


def _inject(monkeypatch: pytest.MonkeyPatch, where: str, at: int = FAULT_AT) -> list[int]:
    """Make iteration ``at`` of every LossLog non-finite: its loss (``where="loss"``) or one element of its
    first watched tensor (``where="params"``), as a diverging step would. Returns the iterations seen."""
    seen: list[int] = []
    original = common.LossLog.add

    def add(self: common.LossLog, loss: torch.Tensor) -> float | None:
        seen.append(self.iteration + 1)
        if self.iteration + 1 == at:
            if where == "loss":
                loss = loss * float("nan")
            else:
                with torch.no_grad():
                    self._watch[0].view(-1)[0] = float("inf")
        return original(self, loss)

    monkeypatch.setattr(common.LossLog, "add", add)
    return seen


def _budget(name: str) -> dict:
    cfg = small_config(name)
    return {**cfg, "iterations": max(3, int(cfg.get("iterations", 3)))}


@pytest.mark.parametrize("where", ["loss", "params"])
@pytest.mark.parametrize("name", ITERATIVE)
def test_every_iterative_method_stops_at_the_faulty_iteration(name, where, tiny_digits, monkeypatch):
    real = tiny_digits[0]
    seen = _inject(monkeypatch, where)
    with pytest.raises(Diverged) as info:
        distillers.create(name, **_budget(name)).distill(real, 1, seed=0, progress=False)
    err = info.value
    assert err.iteration == FAULT_AT and seen[-1] == FAULT_AT  # no iteration ran after the fault
    assert f"iteration {FAULT_AT} of" in str(err)
    assert ("loss" if where == "loss" else "synthetic parameters") in str(err)
    kept = err.last_good
    assert isinstance(kept, SyntheticSet)
    assert bool(torch.isfinite(kept.images).all()) and bool(torch.isfinite(kept.labels.float()).all())
    assert kept.meta["diverged"]["iteration"] == FAULT_AT and kept.meta["method"] == name


def test_the_kept_set_is_the_set_after_the_last_finite_iteration(tiny_digits, monkeypatch):
    """DM (plain SGD, no schedule): stopped at iteration 3, it keeps exactly what 2 iterations give."""
    real = tiny_digits[0]
    cfg = {**small_config("dm"), "iterations": 5}
    two = distillers.create("dm", **{**cfg, "iterations": 2}).distill(real, 2, seed=0, progress=False)
    _inject(monkeypatch, "params", at=3)
    with pytest.raises(Diverged) as info:
        distillers.create("dm", **cfg).distill(real, 2, seed=0, progress=False)
    assert torch.equal(info.value.last_good.images, two.images)


def test_a_real_divergence_is_caught_without_injection(tiny_digits):
    real = tiny_digits[0]
    with pytest.raises(Diverged) as info:
        distillers.create("kip", iterations=50, batch_target=64, lr_img=1e30).distill(real, 1, seed=0,
                                                                                      progress=False)
    assert 1 <= info.value.iteration <= 3  # Adam's first steps already move the images by ~lr
    assert "lower lr_img" in str(info.value)
    assert bool(torch.isfinite(info.value.last_good.images).all())


def test_unwatched_logs_still_raise(monkeypatch):
    log = common.LossLog(10, "X diverged; lower lr.")
    with pytest.raises(Diverged, match="iteration 1 of 10"), log.guard():
        log.add(torch.tensor(float("inf")))


def test_diverged_is_a_user_error():
    assert issubclass(Diverged, DDError)


def test_a_finite_run_records_no_divergence(tiny_digits):
    syn = distillers.create("dm", **small_config("dm")).distill(tiny_digits[0], 1, seed=0, progress=False)
    assert "diverged" not in syn.meta

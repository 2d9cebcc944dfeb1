"""DP-SGD training of any registered network with Opacus: the differentially private baseline.

Models trained this way sit beside every distilled set in the privacy tables (REFERENCE §6): a DP guarantee
for the real training images that an audit can check (:mod:`ddeval.privacy.dpaudit`). Training uses Opacus'
``PrivacyEngine.make_private`` with Poisson sampling (sample rate q = 1 / number of batches, Opacus'
definition), flat per-example clipping to ``max_grad_norm`` and Gaussian noise of standard deviation
``noise_multiplier × max_grad_norm`` on the summed clipped gradients, accounted with the PRV (default) or
RDP accountant. With ``epsilon`` the noise multiplier is calibrated so the accountant's ε after all steps
is at most the target. Opacus is imported lazily so the rest of the toolkit works without it.

Defaults: plain SGD (momentum 0) with lr 0.5. The clipped, averaged DP gradient has norm ≤ C = 1, so lr 0.5
moves the weights by at most 0.5 per step; DP-SGD favours few large steps with large batches (De et al. 2022
use lr ~ 2–4 with momentum 0), and 0.5 trains the small networks here stably at ε ≈ 1–8.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distillers.accounting import ACCOUNTANTS, accountant_epsilon, check_budget, noise_for_epsilon
from distillers.config import check, is_int, is_number
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.networks import create
from distillers.protocol import evaluate, resolve_device

#: ε target used when neither ``epsilon`` nor ``noise_multiplier`` is given.
DEFAULT_EPSILON = 8.0


@dataclass(frozen=True)
class DPConfig:
    """How to train with DP-SGD.

    Give exactly one of ``epsilon`` (target ε; the noise multiplier is calibrated to it) and
    ``noise_multiplier`` (σ; ε is whatever the accountant reports, ``None`` for σ = 0, which is not private).
    When neither is given the target is ε = 8. ``delta=None`` means 1/(10·n) for n training images (stated
    in the result). ``batch_size`` is the expected Poisson batch size; ``max_grad_norm`` is the per-example
    clipping norm C.
    """

    epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.5
    momentum: float = 0.0
    accountant: str = "prv"

    def __post_init__(self) -> None:
        check_budget(self, default_epsilon=DEFAULT_EPSILON, prefix="DPConfig.")
        if self.delta is not None:
            check(is_number(self.delta) and 0 < self.delta < 1,
                  f"DPConfig.delta must lie in (0, 1) (or be omitted for 1/(10 n)), got {self.delta!r}.")
        check(is_number(self.max_grad_norm) and self.max_grad_norm > 0,
              f"DPConfig.max_grad_norm must be a positive number, got {self.max_grad_norm!r}.")
        check(is_int(self.epochs) and self.epochs >= 1,
              f"DPConfig.epochs must be a positive integer, got {self.epochs!r}.")
        check(is_int(self.batch_size) and self.batch_size >= 1,
              f"DPConfig.batch_size must be a positive integer, got {self.batch_size!r}.")
        check(is_number(self.lr) and self.lr > 0, f"DPConfig.lr must be a positive number, got {self.lr!r}.")
        check(is_number(self.momentum) and 0 <= self.momentum < 1,
              f"DPConfig.momentum must lie in [0, 1), got {self.momentum!r}.")

    def resolved_delta(self, n: int) -> float:
        """δ for a training set of ``n`` examples: the configured one, else 1/(10·n)."""
        return float(self.delta) if self.delta is not None else 1.0 / (10.0 * n)


def _opacus() -> Any:
    try:
        import opacus
    except ImportError:  # pragma: no cover - opacus is a declared dependency of the privacy extra
        raise DDError("DP-SGD needs Opacus; install it with `pip install opacus`.") from None
    return opacus


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch for ``n`` images: Opacus' Poisson sample rate is 1 / this number."""
    return math.ceil(n / min(batch_size, n))


def schedule(n: int, config: DPConfig) -> tuple[float, int]:
    """``(sample_rate, steps)`` of DP-SGD on ``n`` images: what Opacus' Poisson loader and accountant use."""
    batches = num_batches(n, config.batch_size)
    return 1.0 / batches, config.epochs * batches


def calibrate_noise(config: DPConfig, *, sample_rate: float, steps: int, delta: float) -> float:
    """σ such that the accountant's ε after ``steps`` steps at ``sample_rate`` is ≤ ``config.epsilon``."""
    if config.noise_multiplier is not None:
        return float(config.noise_multiplier)
    assert config.epsilon is not None
    try:
        return noise_for_epsilon(float(config.epsilon), float(delta), float(sample_rate), int(steps),
                                 config.accountant)
    except ValueError as err:
        raise DDError(f"Cannot reach ε={config.epsilon} at δ={delta:g} with {steps} steps ({err}); "
                      "raise epsilon or train fewer epochs.") from None


def train_dp(network: str, data: LabeledData, config: DPConfig, *, seed: int, device: str | torch.device = "cpu",
             network_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a fresh ``network`` (weights from ``seed``) on ``data`` with DP-SGD.

    Returns ``{"model", "epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps",
    "accountant", "train_seconds", "final_loss"}``; ``model`` is the plain trained module (Opacus' hooks
    removed), ``epsilon`` the accountant's ε after all steps (``None`` when σ = 0). The batch sampling and
    the noise come from generators seeded with ``seed``, so the same seed gives the same model on the same
    machine. Non-finite weights raise :class:`DDError` naming the learning rate.
    """
    if not isinstance(config, DPConfig):
        raise DDError(f"train_dp() needs a DPConfig, got {type(config).__name__}.")
    if not is_int(seed):
        raise DDError(f"seed must be an integer, got {seed!r}.")
    if not isinstance(data, LabeledData):
        raise DDError(f"train_dp() trains on LabeledData, got {type(data).__name__}.")
    n = len(data)
    if n < 1:
        raise DDError("The DP-SGD training set is empty; pass at least one image.")
    _opacus()
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    device = resolve_device(device)
    net = create(network, channels=data.channels, num_classes=data.num_classes, image_size=data.image_size,
                 seed=seed, **(network_args or {}))
    net = ModuleValidator.fix(net)
    errors = ModuleValidator.validate(net, strict=False)
    if errors:
        raise DDError(f'Network "{network}" cannot be trained with DP-SGD ({errors[0]}); pick another network.')
    net.to(device)
    net.train()

    delta = config.resolved_delta(n)
    sample_rate, steps = schedule(n, config)
    sigma = calibrate_noise(config, sample_rate=sample_rate, steps=steps, delta=delta)

    dataset = torch.utils.data.TensorDataset(data.x, data.y)
    loader_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(config.batch_size, n), shuffle=True,
                                         generator=loader_gen)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")  # seeded generators are the point here
        engine = PrivacyEngine(accountant=config.accountant)
        private_net, optimizer, loader = engine.make_private(
            module=net, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=config.max_grad_norm, poisson_sampling=True, noise_generator=noise_gen)
    start = time.perf_counter()
    total, count = 0.0, 0
    try:
        with warnings.catch_warnings():
            # the first layer's input needs no gradient; Opacus' hooks still see every output gradient
            warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook is firing.*")
            for epoch in range(config.epochs):
                total, count = 0.0, 0
                for xb, yb in loader:
                    xb, yb = xb.to(device), yb.to(device)
                    optimizer.zero_grad(set_to_none=True)
                    # An empty Poisson batch still runs (Opacus needs its empty per-example gradients), adds
                    # noise and counts as a step; the sum / max(b, 1) form keeps its loss finite.
                    b = xb.shape[0]
                    loss = F.cross_entropy(private_net(xb), yb, reduction="sum") / max(b, 1)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * b
                    count += b
                if not math.isfinite(total):
                    _diverged(config, epoch)
    finally:
        model: nn.Module = private_net.to_standard_module()
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        _diverged(config, config.epochs - 1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    spent = accountant_epsilon(sigma, sample_rate, steps, delta, config.accountant)
    for p in model.parameters():
        p.grad = None
    return {
        "model": model,
        "epsilon": spent,
        "delta": delta,
        "noise_multiplier": sigma,
        "max_grad_norm": float(config.max_grad_norm),
        "sample_rate": sample_rate,
        "steps": steps,
        "accountant": config.accountant,
        "train_seconds": seconds,
        "final_loss": total / count if count else float("nan"),
    }


def _diverged(config: DPConfig, epoch: int) -> None:
    raise DDError(f"DP-SGD diverged (non-finite loss or weights in epoch {epoch + 1} of {config.epochs}) "
                  f"with lr={config.lr}; lower the learning rate.")


def train_and_evaluate_dp(network: str, data: LabeledData, test: LabeledData, config: DPConfig, *, seed: int,
                          device: str | torch.device = "cpu",
                          network_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`train_dp`, then top-1 accuracy on ``test`` (a fraction in [0, 1]) under ``"accuracy"``."""
    if tuple(data.x.shape[1:]) != tuple(test.x.shape[1:]) or data.num_classes != test.num_classes:
        raise DDError("The DP-SGD training and test sets differ in image shape or number of classes; "
                      "use matching splits.")
    result = train_dp(network, data, config, seed=seed, device=device, network_args=network_args)
    result["accuracy"] = evaluate(result["model"], test, device=device)
    result["seed"] = seed
    result["network"] = network
    return result


__all__ = ["ACCOUNTANTS", "DEFAULT_EPSILON", "DPConfig", "accountant_epsilon", "calibrate_noise", "train_and_evaluate_dp",
           "train_dp"]

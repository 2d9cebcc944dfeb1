"""The standard evaluation recipe: train a fresh network on a (synthetic or real) set, test it once at the end.

SGD with momentum 0.9 and weight decay 5e-4, batch 256, learning rate ×0.1 once at ``decay_at`` of the epochs,
optional DSA augmentation with per-image parameters (REFERENCE §1). Data stay in memory as tensors and are
batched by index with a generator-driven shuffle (no DataLoader), which keeps training on tiny synthetic sets
fast. Randomness comes only from the seed / generator passed in, so the same seed gives the same accuracy on
the same machine (on CUDA some kernels are not bit-deterministic).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distillers.augment import DSA
from distillers.config import check, is_int, is_number
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.fastpath import FastPath
from distillers.networks import create
from distillers.synthetic import SyntheticSet


@dataclass(frozen=True)
class TrainConfig:
    """How to train an evaluation network (defaults: the papers' recipe without augmentation).

    ``augment`` is a DSA strategy string (e.g. ``"color_crop_cutout_scale_rotate"``) or ``None``;
    ``decay_at`` is the fraction of the epochs after which the learning rate is multiplied by 0.1 once
    (``1.0`` = never); ``fast`` turns on the fast path of :mod:`distillers.fastpath` (bf16 autocast where
    the device supports it, ``torch.compile`` for long runs); ``False`` is plain float32 eager PyTorch.
    """

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augment: str | None = None
    decay_at: float = 0.5
    fast: bool = True

    def __post_init__(self) -> None:
        check(is_int(self.epochs) and self.epochs >= 1,
              f"TrainConfig.epochs must be a positive integer, got {self.epochs!r}.")
        check(is_number(self.lr) and self.lr > 0,
              f"TrainConfig.lr must be a positive number, got {self.lr!r}.")
        check(is_number(self.momentum) and 0 <= self.momentum < 1,
              f"TrainConfig.momentum must lie in [0, 1), got {self.momentum!r}.")
        check(is_number(self.weight_decay) and self.weight_decay >= 0,
              f"TrainConfig.weight_decay must be a number >= 0, got {self.weight_decay!r}.")
        check(is_int(self.batch_size) and self.batch_size >= 1,
              f"TrainConfig.batch_size must be a positive integer, got {self.batch_size!r}.")
        check(is_number(self.decay_at) and 0 < self.decay_at <= 1,
              f"TrainConfig.decay_at must lie in (0, 1] (1 = no decay), got {self.decay_at!r}.")
        check(isinstance(self.fast, bool), f"TrainConfig.fast must be true or false, got {self.fast!r}.")
        DSA(self.augment)  # raises DDError naming the valid augmentations

    @property
    def decay_epoch(self) -> int:
        """Index of the first epoch trained with the decayed learning rate (``epochs`` = never)."""
        return int(self.decay_at * self.epochs)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` are
    checked for availability; anything else is a :class:`DDError`."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise DDError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {spec!r}.")
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DDError("Device 'mps' is not available on this machine; use --device cpu.")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text[5:]
        if index_text and not index_text.isdigit():
            raise DDError(f"Unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
        if not torch.cuda.is_available():
            raise DDError(f"Device {spec!r} was requested but CUDA is not available; use --device cpu or auto.")
        if index_text and int(index_text) >= torch.cuda.device_count():
            raise DDError(f"Device {spec!r} does not exist: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s), numbered from 0.")
        return torch.device(text)
    raise DDError(f"Unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")


def _as_tensors(data: LabeledData | SyntheticSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and training targets: class indices, or label vectors for soft-labelled synthetic sets."""
    if isinstance(data, SyntheticSet):
        return data.images, (data.labels.float() if data.soft_labels else data.labels)
    if isinstance(data, LabeledData):
        return data.x, data.y
    raise DDError(f"Expected LabeledData or a SyntheticSet to train on, got {type(data).__name__}.")


# Squared error for ``label_loss: "mse"`` sets is MSE_SCALE * ||logits - target||^2 per example. Its curvature in
# the logits is then 2 * MSE_SCALE = 1/2, the most cross-entropy's can reach, so the SGD recipe tuned for
# cross-entropy stays stable. The plain sum (curvature 2) diverges within ten steps on MNIST ConvNet features
# at lr 0.01, momentum 0.9; the mean over classes (torch's default, 1/K) is stable but under-trains in 300 epochs.
MSE_SCALE = 0.25


def label_loss_fn(data: LabeledData | SyntheticSet) -> Any:
    """The training loss for ``data``'s labels: cross-entropy (class indices or label distributions), or
    ``MSE_SCALE`` times the squared error onto the label vectors, averaged over the batch, for sets whose
    ``label_loss`` is ``"mse"``."""
    if isinstance(data, SyntheticSet) and data.label_loss == "mse":
        return lambda logits, target: MSE_SCALE * F.mse_loss(logits, target, reduction="sum") / logits.shape[0]
    return F.cross_entropy


def loss_spec(data: LabeledData | SyntheticSet | None) -> dict[str, Any]:
    """What a cached training result depends on in the loss beyond the recipe: nothing for cross-entropy,
    the squared error's scale for ``"mse"`` sets (so results trained with another scale are recomputed)."""
    if isinstance(data, SyntheticSet) and data.label_loss == "mse":
        return {"label_loss": "mse", "mse_scale": MSE_SCALE}
    return {}


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled split of ``range(n)`` into batches; a trailing batch of one joins the previous batch
    (batch norm cannot train on a single example)."""
    perm = torch.randperm(n, generator=generator, device=generator.device).cpu()
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        last = chunks.pop()
        chunks[-1] = torch.cat([chunks[-1], last])
    return chunks


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(net: nn.Module, data: LabeledData | SyntheticSet, config: TrainConfig, *,
          generator: torch.Generator, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train ``net`` in place on ``data`` with the standard recipe.

    Returns ``{"train_seconds", "final_loss", "steps", "fast"}`` (``final_loss``: mean loss of the last
    epoch; ``fast``: the fast path used, e.g. ``"bf16+compile"`` or ``"fp32 eager"``).
    A non-finite loss raises :class:`DDError` naming the learning rate. Soft-labelled synthetic sets are
    trained with cross-entropy against their label distributions, or with squared error onto their label
    vectors when their ``label_loss`` is ``"mse"`` (:func:`label_loss_fn`).
    """
    if not isinstance(config, TrainConfig):
        raise DDError(f"train() needs a TrainConfig, got {type(config).__name__}.")
    device = resolve_device(device)
    x, y = _as_tensors(data)
    x, y = x.to(device), y.to(device)
    criterion = label_loss_fn(data)
    n = x.shape[0]
    dsa = DSA(config.augment)
    net.to(device)
    net.train()
    fast = FastPath.resolve(config.fast, device, steps=config.epochs * math.ceil(n / config.batch_size))
    forward = fast.wrap(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    steps = 0
    epoch_loss = torch.zeros((), device=device)
    _sync(device)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        if epoch == config.decay_epoch:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.1
        epoch_loss = torch.zeros((), device=device)
        for idx in _batches(n, config.batch_size, generator):
            idx = idx.to(device)
            xb, yb = x[idx], y[idx]
            if not dsa.is_identity:
                xb = dsa(xb, generator=generator)
            with fast.autocast():
                logits = forward(xb)
            loss = criterion(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss = epoch_loss + loss.detach() * idx.numel()
            steps += 1
        if not bool(torch.isfinite(epoch_loss)):
            _diverged(config, epoch)
    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        _diverged(config, config.epochs - 1)
    _sync(device)
    return {"train_seconds": time.perf_counter() - start, "final_loss": float(epoch_loss) / n, "steps": steps,
            "fast": fast.label}


_train_net = train  # train_and_evaluate's ``train`` argument shadows the function


def _diverged(config: TrainConfig, epoch: int) -> None:
    raise DDError(f"Training diverged (non-finite loss or weights in epoch {epoch + 1} of {config.epochs}) "
                  f"with lr={config.lr}; lower the learning rate.")


@torch.no_grad()
def predict_logits(net: nn.Module, x: torch.Tensor, *, batch_size: int = 1024,
                   device: str | torch.device = "cpu", fast: bool = False) -> torch.Tensor:
    """Logits of ``net`` for images ``x`` in eval mode, without gradients, as a CPU float32 tensor.

    ``fast=True`` computes them under bf16 autocast where supported: fine for an argmax (accuracy), too
    coarse for the per-example losses membership-inference attacks threshold, hence off by default.
    """
    if isinstance(x, LabeledData):
        x = x.x
    if not is_int(batch_size) or batch_size < 1:
        raise DDError(f"batch_size must be a positive integer, got {batch_size!r}.")
    device = resolve_device(device)
    was_training = net.training
    net.to(device)
    net.eval()
    path = FastPath.resolve(fast, device, steps=0)
    try:
        with path.autocast():
            outs = [net(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def evaluate(net: nn.Module, data: LabeledData, *, batch_size: int = 1024,
             device: str | torch.device = "cpu", fast: bool = False) -> float:
    """Top-1 accuracy of ``net`` on ``data`` as a fraction in [0, 1] (``fast``: bf16 inference)."""
    logits = predict_logits(net, data.x, batch_size=batch_size, device=device, fast=fast)
    return float((logits.argmax(dim=1) == data.y.cpu()).float().mean())


def train_and_evaluate(network: str, train: LabeledData | SyntheticSet, test: LabeledData, config: TrainConfig,
                       *, seed: int, device: str | torch.device = "cpu", network_args: dict[str, Any] | None = None,
                       return_model: bool = False) -> dict[str, Any]:
    """Build ``network`` (weights from ``seed``), train it on ``train`` and test it once on ``test``.

    Returns ``{"accuracy", "train_seconds", "eval_seconds", "seed", "network", "final_loss", "steps", "fast"}``
    (plus ``"model"`` when ``return_model``). The shuffling and augmentation draws also come from ``seed``.
    """
    if not is_int(seed):
        raise DDError(f"seed must be an integer, got {seed!r}.")
    x_train, _ = _as_tensors(train)
    if tuple(x_train.shape[1:]) != tuple(test.x.shape[1:]):
        raise DDError(f"Training images have shape {tuple(x_train.shape[1:])} but test images "
                      f"{tuple(test.x.shape[1:])}; train and test on the same kind of images.")
    if train.num_classes != test.num_classes:
        raise DDError(f"The training set has {train.num_classes} classes but the test set "
                      f"{test.num_classes}; they must match.")
    device = resolve_device(device)
    net = create(network, channels=int(x_train.shape[1]), num_classes=test.num_classes,
                 image_size=(int(x_train.shape[2]), int(x_train.shape[3])), seed=seed, **(network_args or {}))
    generator = torch.Generator().manual_seed(seed)
    stats = _train_net(net, train, config, generator=generator, device=device)
    _sync(device)
    start = time.perf_counter()
    accuracy = evaluate(net, test, device=device, fast=config.fast)
    eval_seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "accuracy": accuracy,
        "train_seconds": stats["train_seconds"],
        "eval_seconds": eval_seconds,
        "seed": seed,
        "network": network,
        "final_loss": stats["final_loss"],
        "steps": stats["steps"],
        "fast": stats["fast"],
    }
    if return_model:
        result["model"] = net
    return result


__all__ = ["MSE_SCALE", "TrainConfig", "evaluate", "label_loss_fn", "loss_spec", "predict_logits", "resolve_device", "train", "train_and_evaluate"]

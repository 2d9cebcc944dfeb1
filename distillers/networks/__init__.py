"""Network registry: the ConvNet family and the classic cross-architecture networks.

``create(name, channels=..., num_classes=..., image_size=..., seed=...)`` builds a registered network. With a
``seed`` the initial weights depend on that seed only: construction runs inside ``torch.random.fork_rng`` so
the global random state is left untouched. Every network has ``embed(x)`` (flattened penultimate features)
and ``forward(x)`` (logits), and a ``feature_dim`` attribute.

>>> net = create("convnet", channels=1, num_classes=10, image_size=(8, 8), seed=0, width=32)
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from distillers.errors import DDError, did_you_mean
from distillers.networks.classic import MLP, VGG11, AlexNet, LeNet, ResNet18
from distillers.networks.convnet import ACTIVATIONS, NORMS, POOLS, ConvNet, image_hw
from distillers.registry import Registry

NETWORKS: Registry = Registry("network")

_FIXED = ("channels", "num_classes", "image_size")


def _alias(cls: type[nn.Module], **preset: Any) -> Any:
    """A builder for ``cls`` with some options preset (explicit keyword arguments still win)."""
    return functools.partial(cls, **preset)


_TABLE: dict[str, tuple[Any, str]] = {
    "convnet": (ConvNet, "ConvNet-3: conv3x3-instancenorm-relu-avgpool x3, width 128 (the standard)"),
    **{f"convnet-d{d}": (_alias(ConvNet, depth=d), f"ConvNet with depth {d}") for d in (1, 2, 3, 4)},
    **{f"convnet-w{w}": (_alias(ConvNet, width=w), f"ConvNet with width {w}") for w in (32, 64, 128, 256)},
    "convnet-bn": (_alias(ConvNet, norm="batchnorm"), "ConvNet with batch norm"),
    "convnet-ln": (_alias(ConvNet, norm="layernorm"), "ConvNet with layer norm (over C,H,W per example)"),
    "convnet-gn": (_alias(ConvNet, norm="groupnorm"), "ConvNet with group norm (4 groups)"),
    "convnet-nn": (_alias(ConvNet, norm="none"), "ConvNet without normalisation"),
    "convnet-nopool": (_alias(ConvNet, pool="none"), "ConvNet without pooling"),
    "convnet-maxpool": (_alias(ConvNet, pool="maxpool"), "ConvNet with max pooling"),
    "convnet-sigmoid": (_alias(ConvNet, act="sigmoid"), "ConvNet with sigmoid activations"),
    "convnet-leakyrelu": (_alias(ConvNet, act="leakyrelu"), "ConvNet with leaky ReLU activations"),
    "mlp": (MLP, "MLP with two hidden layers of 128 units"),
    "lenet": (LeNet, "LeNet-5 for small images"),
    "alexnet": (AlexNet, "AlexNet for small images"),
    "vgg11": (VGG11, "VGG-11 with instance norm, for small images"),
    "vgg11-bn": (_alias(VGG11, norm="batchnorm"), "VGG-11 with batch norm"),
    "resnet18": (ResNet18, "ResNet-18 with instance norm, for small images"),
    "resnet18-bn": (_alias(ResNet18, norm="batchnorm"), "ResNet-18 with batch norm"),
}
for _name, (_builder, _help) in _TABLE.items():
    NETWORKS.register(_name, _builder, help=_help)


def available(pattern: str | None = None) -> list[str]:
    """Registered network names, optionally filtered by a shell pattern (``"convnet*"``)."""
    return NETWORKS.names(pattern)


def options(name: str) -> dict[str, Any]:
    """The options a network accepts besides channels/num_classes/image_size, with their defaults."""
    params = inspect.signature(NETWORKS.get(name)).parameters
    return {k: p.default for k, p in params.items()
            if k not in _FIXED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create(name: str, *, channels: int, num_classes: int, image_size: tuple[int, int] | int,
           seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered network ``name`` for ``channels``-channel images of ``image_size``.

    ``None`` option values fall back to the network's defaults; unknown options raise :class:`DDError`
    naming the valid ones. With ``seed`` the initial weights are a function of the seed alone and the global
    random state is not touched.
    """
    builder = NETWORKS.get(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    params = inspect.signature(builder).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        valid = options(name)
        for key in kwargs:
            if key not in valid:
                listing = ", ".join(sorted(valid)) or "none"
                raise DDError(f'Unknown option "{key}" for network "{name}".{did_you_mean(key, valid)} '
                              f"Valid options: {listing}.")
    size = image_hw(image_size)
    if seed is None:
        return builder(channels, num_classes, size, **kwargs)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DDError(f"The network seed must be an integer, got {seed!r}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(channels, num_classes, size, **kwargs)


__all__ = [
    "ACTIVATIONS", "NETWORKS", "NORMS", "POOLS", "MLP", "AlexNet", "ConvNet", "LeNet", "ResNet18", "VGG11",
    "available", "create", "options",
]

"""Cross-architecture evaluation networks for small images: MLP, LeNet, AlexNet, VGG11, ResNet18.

These follow the small-image versions used by the dataset-distillation code bases (inputs 28x28 grey or 32x32
colour), adapted so that every network builds and gives an input-dependent output for any image size from 8x8
to 32x32: 28-pixel sides get extra padding on the first convolution (28 → 32, as in the ConvNet), pooling and
strides stop shrinking the maps once they are 2x2 while layers still follow, and the last stage pools to 1x1
when it can. Each network has ``embed(x)`` (penultimate features, flattened) and ``forward(x)`` (logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from distillers.networks.convnet import (
    Classifier,
    ShapeTracker,
    _positive_int,
    first_conv_padding,
    image_hw,
    make_norm,
)


def _pads(size: tuple[int, int], rule: Callable[[int], int]) -> tuple[int, int]:
    return rule(size[0]), rule(size[1])


def _check_common(channels: int, num_classes: int, image_size: tuple[int, int]) -> tuple[int, int, tuple[int, int]]:
    return (_positive_int(channels, "channels"), _positive_int(num_classes, "num_classes"), image_hw(image_size))


class MLP(Classifier):
    """Two hidden layers of ``hidden`` units with ReLU on the flattened image."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int], hidden: int = 128) -> None:
        super().__init__()
        channels, num_classes, (h, w) = _check_common(channels, num_classes, image_size)
        hidden = _positive_int(hidden, "hidden")
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * h * w, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.feature_dim = hidden
        self.num_classes = num_classes
        self.classifier = nn.Linear(hidden, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LeNet(Classifier):
    """LeNet-5: conv 5x5 (6) → pool → conv 5x5 (16) → pool → 120 → 84 → classes, ReLU activations."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        channels, num_classes, size = _check_common(channels, num_classes, image_size)
        shape = ShapeTracker(size, "LeNet")
        pad1 = _pads(size, lambda s: 0 if s >= 32 else 2)  # 32 → 28; smaller sides keep their size
        shape.conv(5, pad1)
        layers: list[nn.Module] = [nn.Conv2d(channels, 6, kernel_size=5, padding=pad1), nn.ReLU()]
        if shape.can_pool(2):
            layers.append(nn.MaxPool2d(2, 2))
            shape.pool()
        pad2 = _pads(shape.size, lambda s: 0 if s >= 10 else 2)
        shape.conv(5, pad2)
        layers += [nn.Conv2d(6, 16, kernel_size=5, padding=pad2), nn.ReLU()]
        if shape.can_pool(1):
            layers.append(nn.MaxPool2d(2, 2))
            shape.pool()
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * shape.h * shape.w, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
        )
        self.feature_dim = 84
        self.num_classes = num_classes
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class AlexNet(Classifier):
    """Small-image AlexNet: conv5(128) → pool → conv5(192) → pool → conv3(256, 192, 192) → pool → linear."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        channels, num_classes, size = _check_common(channels, num_classes, image_size)
        shape = ShapeTracker(size, "AlexNet")
        pad1 = first_conv_padding(size, 2, 2)
        layers: list[nn.Module] = [nn.Conv2d(channels, 128, kernel_size=5, padding=pad1), nn.ReLU()]
        shape.conv(5, pad1)
        if shape.can_pool(2):
            layers.append(nn.MaxPool2d(2, 2))
            shape.pool()
        layers += [nn.Conv2d(128, 192, kernel_size=5, padding=2), nn.ReLU()]
        shape.conv(5, 2)
        if shape.can_pool(2):
            layers.append(nn.MaxPool2d(2, 2))
            shape.pool()
        for cin, cout in ((192, 256), (256, 192), (192, 192)):
            layers += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU()]
            shape.conv(3, 1)
        if shape.can_pool(1):
            layers.append(nn.MaxPool2d(2, 2))
            shape.pool()
        self.features = nn.Sequential(*layers)
        self.feature_dim = 192 * shape.h * shape.w
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


_VGG11: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(Classifier):
    """VGG-11 for small images: conv 3x3 → norm → ReLU stages with 2x2 max pooling, then one linear layer.

    ``norm`` is instance norm by default (as in the distillation code bases); ``"batchnorm"`` gives VGG11-BN.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 norm: str = "instancenorm") -> None:
        super().__init__()
        channels, num_classes, size = _check_common(channels, num_classes, image_size)
        shape = ShapeTracker(size, "VGG11")
        layers: list[nn.Module] = []
        in_ch = channels
        last_pool = len(_VGG11) - 1
        for i, item in enumerate(_VGG11):
            if item == "M":
                if shape.can_pool(1 if i == last_pool else 2):
                    layers.append(nn.MaxPool2d(2, 2))
                    shape.pool()
                continue
            out_ch = int(item)
            padding = first_conv_padding(size, 1, 2) if i == 0 else (1, 1)
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=padding), make_norm(norm, out_ch), nn.ReLU()]
            shape.conv(3, padding)
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.feature_dim = 512 * shape.h * shape.w
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_ch)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_ch)
        self.act2 = nn.ReLU()
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), make_norm(norm, out_ch))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(Classifier):
    """ResNet-18 for small images: a 3x3 stem (no max pooling), four stages of two basic blocks (64-512
    channels), global average pooling and one linear layer. A stage halves the maps only while they are at
    least 4x4. ``norm`` is instance norm by default; ``"batchnorm"`` gives ResNet18-BN.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 norm: str = "instancenorm") -> None:
        super().__init__()
        channels, num_classes, size = _check_common(channels, num_classes, image_size)
        shape = ShapeTracker(size, "ResNet18")
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, kernel_size=3, padding=1, bias=False),
                                  make_norm(norm, 64), nn.ReLU())
        shape.conv(3, 1)
        stages = []
        in_ch = 64
        for i, out_ch in enumerate((64, 128, 256, 512)):
            stride = 2 if i > 0 and min(shape.size) >= 4 else 1
            stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride, norm), BasicBlock(out_ch, out_ch, 1, norm)))
            shape.conv(3, 1, stride)
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512
        self.num_classes = num_classes
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


__all__ = ["MLP", "LeNet", "AlexNet", "VGG11", "ResNet18", "BasicBlock"]

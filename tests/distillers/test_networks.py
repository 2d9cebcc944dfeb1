"""Every registered network builds for small images, is seed-deterministic, and rejects bad options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distillers.errors import DDError
from distillers.networks import NETWORKS, ConvNet, available, create, options

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
ALL = available()


def _build(name: str, shape: tuple[int, int, int], seed: int | None = 0, **kwargs: object) -> nn.Module:
    return create(name, channels=shape[0], num_classes=5, image_size=shape[1:], seed=seed, **kwargs)


def test_registry_has_the_contract_names() -> None:
    expected = {"convnet", "mlp", "lenet", "alexnet", "vgg11", "resnet18", "convnet-bn", "convnet-ln",
                "convnet-gn", "convnet-nn", "convnet-nopool", "convnet-maxpool", "convnet-sigmoid",
                "convnet-leakyrelu"}
    expected |= {f"convnet-d{d}" for d in range(1, 5)} | {f"convnet-w{w}" for w in (32, 64, 128, 256)}
    assert expected <= set(ALL)
    assert available("convnet-d*") == ["convnet-d1", "convnet-d2", "convnet-d3", "convnet-d4"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ALL)
def test_builds_and_runs(name: str, shape: tuple[int, int, int]) -> None:
    net = _build(name, shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    logits = net(x)
    features = net.embed(x)
    assert logits.shape == (3, 5)
    assert features.dim() == 2 and features.shape == (3, net.feature_dim)
    assert torch.isfinite(logits).all()
    # the output depends on the input (no layer collapses tiny maps to a constant)
    assert not torch.allclose(logits[0], logits[1])
    for module in net.modules():
        assert getattr(module, "inplace", False) is False, f"{name}: {module} is in-place"


@pytest.mark.parametrize("name", ALL)
def test_seed_determinism_without_touching_global_rng(name: str) -> None:
    state = torch.random.get_rng_state()
    a = _build(name, (1, 8, 8), seed=3).state_dict()
    b = _build(name, (1, 8, 8), seed=3).state_dict()
    c = _build(name, (1, 8, 8), seed=4).state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_convnet_follows_the_reference_shapes() -> None:
    net = _build("convnet", (3, 32, 32))
    assert net.feature_dim == 128 * 4 * 4
    grey28 = _build("convnet", (1, 28, 28))
    assert grey28.features[0][0].padding == (3, 3)  # 28 → 32 → 16 → 8 → 4
    assert grey28.feature_dim == 128 * 4 * 4
    assert _build("convnet", (1, 8, 8)).feature_shape == (128, 1, 1)  # 8 → 4 → 2 → 1
    assert _build("convnet-d1", (3, 32, 32)).feature_shape == (128, 16, 16)
    assert _build("convnet-nopool", (3, 32, 32)).feature_shape == (128, 32, 32)
    assert _build("convnet-d4", (1, 8, 8)).feature_shape == (128, 1, 1)


def test_convnet_layers_match_the_options() -> None:
    net = _build("convnet", (1, 8, 8), depth=2, width=32, act="leakyrelu", norm="layernorm", pool="maxpool")
    conv, norm, act, pool = net.features[0]
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 32 and conv.kernel_size == (3, 3)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.affine
    assert isinstance(act, nn.LeakyReLU) and isinstance(pool, nn.MaxPool2d)
    inorm = _build("convnet", (1, 8, 8), width=32).features[0][1]
    assert isinstance(inorm, nn.GroupNorm) and inorm.num_groups == 32 and inorm.affine
    assert _build("convnet-gn", (1, 8, 8), width=32).features[0][1].num_groups == 4
    assert isinstance(_build("convnet-bn", (1, 8, 8)).features[0][1], nn.BatchNorm2d)
    assert isinstance(_build("convnet-nn", (1, 8, 8)).features[0][1], nn.Identity)
    assert isinstance(_build("convnet-sigmoid", (1, 8, 8)).features[0][2], nn.Sigmoid)
    assert isinstance(_build("convnet", (1, 8, 8)).features[0][3], nn.AvgPool2d)


def test_aliases_and_overrides() -> None:
    net = _build("convnet-d2", (1, 8, 8), width=16, norm=None)
    assert isinstance(net, ConvNet) and (net.depth, net.width, net.norm_name) == (2, 16, "instancenorm")
    assert options("convnet-w64")["width"] == 64
    assert NETWORKS.help("convnet-bn")


def test_embed_is_the_penultimate_layer() -> None:
    x = torch.randn(2, 1, 8, 8)
    for name in ("convnet", "mlp", "lenet", "resnet18"):
        net = _build(name, (1, 8, 8)).eval()
        assert torch.allclose(net(x), net.classifier(net.embed(x)))


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"act": "tanh"}, "sigmoid, relu, leakyrelu"),
    ({"norm": "batch"}, "batchnorm"),
    ({"pool": "median"}, "maxpool"),
    ({"depth": 0}, "depth"),
    ({"depth": 5}, "depth"),
    ({"width": 0}, "width"),
    ({"width": 6, "norm": "groupnorm"}, "multiple of 4"),
    ({"dept": 2}, 'Did you mean "depth"'),
])
def test_bad_convnet_options(kwargs: dict, fragment: str) -> None:
    with pytest.raises(DDError, match=fragment):
        _build("convnet", (1, 8, 8), **kwargs)


def test_bad_network_arguments() -> None:
    with pytest.raises(DDError, match="Unknown network"):
        _build("convnet9", (1, 8, 8))
    with pytest.raises(DDError, match="image_size"):
        create("mlp", channels=1, num_classes=3, image_size=(8,))
    with pytest.raises(DDError, match="channels"):
        create("lenet", channels=0, num_classes=3, image_size=8)
    with pytest.raises(DDError, match="Valid options: norm"):
        _build("vgg11", (1, 8, 8), width=3)
    with pytest.raises(DDError, match="seed"):
        _build("mlp", (1, 8, 8), seed="zero")  # type: ignore[arg-type]

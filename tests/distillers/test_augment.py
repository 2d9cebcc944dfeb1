"""DSA: every transform changes images, keeps shapes, is differentiable, and the siamese mode is shared."""

from __future__ import annotations

import pytest
import torch

from distillers.augment import DSA, OPS, default_strategy, parse_strategy
from distillers.errors import DDError


def _images(n: int = 8, shape: tuple[int, int, int] = (3, 16, 16), seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", OPS)
def test_each_op_changes_images_and_keeps_shape(op: str) -> None:
    x = _images()
    out = DSA(op)(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, x)
    # per-image parameters: identical inputs come out different
    same = x[:1].expand(8, -1, -1, -1)
    varied = DSA(op)(same, generator=torch.Generator().manual_seed(1))
    assert not all(torch.allclose(varied[0], varied[i]) for i in range(1, 8))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_full_strategy_keeps_shape(shape: tuple[int, int, int]) -> None:
    x = _images(4, shape)
    dsa = DSA("color_crop_cutout_flip_scale_rotate")
    for seed in range(6):
        assert dsa(x, seed=seed).shape == x.shape
        assert dsa(x, generator=torch.Generator().manual_seed(seed)).shape == x.shape


@pytest.mark.parametrize("op", OPS)
def test_siamese_seed_applies_the_same_transform(op: str) -> None:
    dsa = DSA(op)
    real, syn = _images(6, seed=1), _images(3, seed=2)
    both = dsa(torch.cat([real, syn]), seed=11)
    assert torch.allclose(dsa(real, seed=11), both[:6], atol=1e-6)
    assert torch.allclose(dsa(syn, seed=11), both[6:], atol=1e-6)
    # one transform for the whole batch: identical inputs stay identical
    same = dsa(real[:1].expand(5, -1, -1, -1), seed=5)
    assert all(torch.allclose(same[0], same[i]) for i in range(5))


def test_siamese_seed_draws_one_group_and_differs_between_seeds() -> None:
    dsa = DSA("color_crop_cutout_flip_scale_rotate")
    x = _images(4)
    outs = [dsa(x, seed=s) for s in range(8)]
    assert torch.equal(outs[0], dsa(x, seed=0))
    assert len({tuple(o.flatten()[:50].tolist()) for o in outs}) > 1


def test_generator_mode_is_reproducible() -> None:
    dsa = DSA("color_crop_cutout_scale_rotate")
    x = _images()
    a = dsa(x, generator=torch.Generator().manual_seed(3))
    b = dsa(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("op", OPS)
def test_gradients_reach_the_images(op: str) -> None:
    x = _images(4).requires_grad_(True)
    for kwargs in ({"seed": 2}, {"generator": torch.Generator().manual_seed(2)}):
        x.grad = None
        DSA(op)(x, **kwargs).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_crop_translates_within_the_limit() -> None:
    x = torch.zeros(16, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    out = DSA("crop")(x, generator=torch.Generator().manual_seed(0))
    limit = int(0.125 * 32 + 0.5)
    shifts = set()
    for img in out[:, 0]:
        assert img.sum() == 1.0  # a pure translation: the pixel moved, nothing blurred
        r, c = (int(v) for v in torch.nonzero(img)[0])
        assert abs(r - 16) <= limit and abs(c - 16) <= limit
        shifts.add((r, c))
    assert len(shifts) > 1


def test_cutout_zeroes_one_square() -> None:
    x = torch.ones(16, 1, 16, 16)
    out = DSA("cutout")(x, generator=torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 8 * 8).all() and (zeros == 64).any()
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_flip_is_horizontal() -> None:
    x = _images(16)
    out = DSA("flip")(x, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_identity_and_parsing() -> None:
    x = _images(2)
    for strategy in ("", "none", "None", None):
        dsa = DSA(strategy)
        assert dsa.is_identity and dsa(x, seed=0) is x
    assert parse_strategy("color_crop_cutout_flip_scale_rotate") == OPS
    assert repr(DSA("crop_flip")) == "DSA('crop_flip')"


def test_bad_strategies_and_arguments() -> None:
    with pytest.raises(DDError, match="Valid augmentations: color, crop"):
        DSA("color_blur")
    with pytest.raises(DDError, match='Did you mean "rotate"'):
        DSA("rotat")
    with pytest.raises(DDError, match="exactly one"):
        DSA("crop")(_images(2))
    with pytest.raises(DDError, match="exactly one"):
        DSA("crop")(_images(2), seed=1, generator=torch.Generator())


def test_default_strategy() -> None:
    for name in ("digits", "mnist", "svhn", "usps", "MNIST"):
        assert "flip" not in default_strategy(name)
    for name in ("cifar10", "cifar100", "fashion-mnist"):
        assert default_strategy(name) == "color_crop_cutout_flip_scale_rotate"
    assert default_strategy("digits") == "color_crop_cutout_scale_rotate"

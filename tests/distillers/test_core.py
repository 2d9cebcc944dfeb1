"""Registry, config building, LabeledData and SyntheticSet: the contracts everything else relies on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch

import distillers
from distillers.config import build_config, config_dict
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.registry import Registry
from distillers.synthetic import SyntheticSet


def test_registry_lazy_entries_did_you_mean_and_no_silent_overwrite():
    reg: Registry = Registry("thing")
    reg.register_lazy("sqrt", "math:sqrt", help="square root")
    assert reg.get("sqrt")(9.0) == 3.0
    assert reg.help("sqrt") == "square root"

    @reg.register("double")
    def double(x):
        """Twice x."""
        return 2 * x

    assert reg.get("DOUBLE")(2) == 4 and reg.help("double") == "Twice x."
    assert reg.names("d*") == ["double"]
    with pytest.raises(DDError, match='Did you mean "sqrt"'):
        reg.get("sqr")
    with pytest.raises(DDError, match="already registered"):
        reg.register("double", lambda x: x)
    reg.register("double", lambda x: 3 * x, override=True)
    assert reg.get("double")(1) == 3


@dataclass(frozen=True)
class _Cfg:
    iterations: int = 10
    lr: float = 0.1
    init: Literal["real", "noise"] = "real"
    dsa: bool = True
    networks: tuple[str, ...] = ("convnet",)
    args: dict = field(default_factory=dict)
    maybe: int | None = None


def test_build_config_converts_and_rejects():
    cfg = build_config(_Cfg, {"iterations": "5", "lr": 1, "dsa": "false", "networks": "a,b", "maybe": None})
    assert cfg == _Cfg(iterations=5, lr=1.0, dsa=False, networks=("a", "b"))
    assert config_dict(cfg)["networks"] == ["a", "b"]
    with pytest.raises(DDError, match='Unknown key "iteration".*Did you mean "iterations".*Valid keys'):
        build_config(_Cfg, {"iteration": 3})
    with pytest.raises(DDError, match="must be an integer"):
        build_config(_Cfg, {"iterations": 2.5})
    with pytest.raises(DDError, match="must be one of"):
        build_config(_Cfg, {"init": "zeros"})
    with pytest.raises(DDError, match="true or false"):
        build_config(_Cfg, {"dsa": "maybe"})


def test_create_unknown_method_and_key():
    with pytest.raises(DDError, match='Unknown method "dmm".*Did you mean "dm"'):
        distillers.create("dmm")
    with pytest.raises(DDError, match="Valid keys"):
        distillers.create("dm", not_a_key=1)


def test_register_user_method(tiny_digits):
    @distillers.register("first-images-test")
    class FirstImages(distillers.Distiller):
        """Takes the first ipc images of each class."""

        @dataclass(frozen=True)
        class Config:
            pass

        def _distill(self, real, ipc, generator, device, progress):
            idx = torch.cat([real.indices_of(c)[:ipc] for c in range(real.num_classes)])
            return self.make_set(real.x[idx], real.y[idx], real)

    syn = distillers.create("first-images-test").distill(tiny_digits[0], 2, seed=3)
    assert len(syn) == 20 and syn.meta["method"] == "first-images-test" and syn.meta["seed"] == 3
    with pytest.raises(DDError, match="already registered"):
        distillers.register("first-images-test")(FirstImages)


def test_labeled_data_validation_and_sampling(tiny_digits):
    train, _ = tiny_digits
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(train.stratified_indices(3, g1), train.stratified_indices(3, g2))
    with pytest.raises(DDError, match="fewer than the 1000 requested"):
        train.sample_indices(0, 1000, g1)
    x, y = train.x, train.y
    with pytest.raises(DDError, match="4-D tensor"):
        LabeledData(x[:, 0], y, train.classes, train.mean, train.std)
    with pytest.raises(DDError, match="must lie in 0..9"):
        LabeledData(x, y + 5, train.classes, train.mean, train.std)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DDError, match="NaN or Inf"):
        LabeledData(bad, y, train.classes, train.mean, train.std)
    assert train.fingerprint() == train.subset(torch.arange(len(train))).fingerprint()
    assert train.fingerprint() != train.subset(torch.arange(len(train) - 1)).fingerprint()


def test_synthetic_set_round_trip(tmp_path, tiny_digits):
    train, _ = tiny_digits
    syn = SyntheticSet(train.x[:20], train.y[:20], classes=train.classes, mean=train.mean, std=train.std,
                       lr=0.01, meta={"method": "x", "ipc": 2})
    syn.save(tmp_path / "s")
    back = SyntheticSet.load(tmp_path / "s")
    assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)
    assert back.lr == 0.01 and back.meta["method"] == "x" and back.classes == train.classes
    soft = SyntheticSet(train.x[:4], torch.softmax(torch.randn(4, 10), 1), classes=train.classes,
                        mean=train.mean, std=train.std)
    soft.save(tmp_path / "soft")
    assert SyntheticSet.load(tmp_path / "soft").soft_labels


def test_synthetic_set_load_errors(tmp_path, tiny_digits):
    train, _ = tiny_digits
    with pytest.raises(DDError, match="No synthetic set"):
        SyntheticSet.load(tmp_path / "missing")
    folder = SyntheticSet(train.x[:10], train.y[:10], classes=train.classes, mean=train.mean,
                          std=train.std).save(tmp_path / "s")
    data = (folder / "tensors.pt").read_bytes()
    (folder / "tensors.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DDError, match="damaged"):
        SyntheticSet.load(folder)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(DDError, match="not valid JSON"):
        SyntheticSet.load(folder)
    meta = {"format_version": 99}
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DDError, match="format_version"):
        SyntheticSet.load(folder)


def test_synthetic_set_refuses_pickled_objects(tmp_path, tiny_digits):
    """A tensors.pt carrying an arbitrary object must not be unpickled (weights_only=True)."""
    train, _ = tiny_digits
    folder = SyntheticSet(train.x[:10], train.y[:10], classes=train.classes, mean=train.mean,
                          std=train.std).save(tmp_path / "s")
    torch.save({"images": train.x[:10], "labels": train.y[:10], "evil": _Evil()}, folder / "tensors.pt")
    # Refresh the checksum so the load gets past it and reaches torch.load(weights_only=True).
    import json

    from distillers.io import sha256_file

    meta = json.loads((folder / "meta.json").read_text())
    meta["tensors_sha256"] = sha256_file(folder / "tensors.pt")
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DDError, match="damaged or not a synthetic set"):
        SyntheticSet.load(folder)


class _Evil:
    def __reduce__(self):
        return (print, ("should never run",))


def test_atomic_writes_follow_the_umask_not_mkstemps_0600(tmp_path):
    """Reports and results are meant to be shared: a written file gets 0666 minus the umask, as open() gives."""
    import os

    from distillers.io import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        assert (path.stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        path = atomic_write_text(tmp_path / "b.txt", "x")
        assert (path.stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)

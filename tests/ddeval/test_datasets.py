"""ddeval.datasets: bundled digits, npz and image-folder loading, and the errors users can fix."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ddeval import datasets
from distillers.errors import DDError

MNIST_5K = Path(__file__).parents[3] / "shared" / "data" / "mnist-5k.npz"


# ------------------------------------------------------------------------------------------------ digits
def test_digits_shapes_split_and_normalisation():
    train, test = datasets.load("digits")
    assert (len(train), len(test)) == (1347, 450)
    assert train.image_shape == test.image_shape == (1, 8, 8)
    assert train.classes == tuple(str(c) for c in range(10)) and train.name == "digits"
    assert train.mean == test.mean and train.std == test.std
    assert abs(float(train.x.mean())) < 1e-4 and abs(float(train.x.std()) - 1) < 1e-3
    # stratified: every class is ~25% test
    counts_tr, counts_te = train.class_counts(), test.class_counts()
    for a, b in zip(counts_tr, counts_te, strict=True):
        assert abs(b / (a + b) - 0.25) < 0.02
    # pixel range recovered and split fixed
    assert float(train.denormalize().max()) == pytest.approx(1.0)
    again_train, again_test = datasets.load("DIGITS")
    assert again_train.fingerprint() == train.fingerprint() and again_test.fingerprint() == test.fingerprint()
    assert datasets.DATASETS.help("digits").startswith("scikit-learn")


def test_unknown_name_suggests():
    with pytest.raises(DDError, match="Did you mean \"digits\""):
        datasets.load("digit")
    with pytest.raises(DDError, match="npz:"):
        datasets.load(str(MNIST_5K))
    with pytest.raises(DDError, match="takes no path"):
        datasets.load("digits:foo")
    with pytest.raises(DDError, match="Give a path"):
        datasets.load("npz:")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])
def test_torchvision_missing_files_ask_for_download(name, tmp_path):
    with pytest.raises(DDError, match="--download"):
        datasets.load(name, root=tmp_path, download=False)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_local_torchvision_files(tmp_path):
    """A tiny fake copy of the MNIST files exercises the torchvision path without a download."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    listed = {row["name"]: row for row in datasets.describe(root=tmp_path)}
    assert listed["mnist"]["available"] is True and listed["cifar10"]["available"] is False
    train, test = datasets.load("mnist", root=tmp_path)
    assert (len(train), len(test), train.image_shape, train.name) == (20, 10, (1, 28, 28), "mnist")
    assert train.mean == (0.1307,) and train.std == (0.3081,)
    assert train.y.tolist() == [i % 10 for i in range(20)]


def test_describe_lists_every_dataset():
    rows = datasets.describe()
    names = {row["name"] for row in rows}
    assert {"digits", "mnist", "cifar10", "npz:PATH", "imagefolder:PATH"} <= names
    assert all(row["summary"] for row in rows)


# ------------------------------------------------------------------------------------------------ npz
def _save(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def _labels(n: int, k: int) -> np.ndarray:
    return (np.arange(n) % k).astype(np.int64)


@pytest.mark.parametrize("layout", ["grey-nhw", "grey-nhwc", "colour-nhwc", "colour-nchw-float"])
def test_npz_round_trip(tmp_path, layout):
    rng = np.random.default_rng(1)
    if layout == "grey-nhw":
        xtr, xte = rng.integers(0, 256, (12, 6, 5), dtype=np.uint8), rng.integers(0, 256, (6, 6, 5), dtype=np.uint8)
        expect_tr = xtr[:, None] / 255.0
    elif layout == "grey-nhwc":
        xtr, xte = rng.integers(0, 256, (12, 6, 5, 1), dtype=np.uint8), rng.integers(0, 256, (6, 6, 5, 1), dtype=np.uint8)
        expect_tr = xtr.transpose(0, 3, 1, 2) / 255.0
    elif layout == "colour-nhwc":
        xtr, xte = rng.integers(0, 256, (12, 6, 5, 3), dtype=np.uint8), rng.integers(0, 256, (6, 6, 5, 3), dtype=np.uint8)
        expect_tr = xtr.transpose(0, 3, 1, 2) / 255.0
    else:
        xtr, xte = rng.random((12, 3, 6, 5), dtype=np.float32), rng.random((6, 3, 6, 5), dtype=np.float32)
        expect_tr = xtr
    classes = np.array(["cat", "dog", "eel"])
    spec = _save(tmp_path / "set.npz", x_train=xtr, y_train=_labels(12, 3), x_test=xte, y_test=_labels(6, 3),
                 classes=classes)
    train, test = datasets.load(spec)
    c = expect_tr.shape[1]
    assert train.image_shape == test.image_shape == (c, 6, 5)
    assert (len(train), len(test)) == (12, 6)
    assert train.classes == ("cat", "dog", "eel") and train.name == "npz:set"
    assert train.y.dtype == torch.int64 and train.y.tolist() == _labels(12, 3).tolist()
    assert torch.allclose(train.denormalize(), torch.as_tensor(expect_tr, dtype=torch.float32), atol=1e-5)
    per_channel = train.x.transpose(0, 1).reshape(c, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(c), atol=1e-5)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(c), atol=1e-4)


def test_npz_without_classes_names_labels(tmp_path):
    rng = np.random.default_rng(2)
    spec = _save(tmp_path / "plain.npz", x_train=rng.integers(0, 256, (8, 4, 4), dtype=np.uint8),
                 y_train=_labels(8, 4), x_test=rng.integers(0, 256, (4, 4, 4), dtype=np.uint8),
                 y_test=_labels(4, 4).astype(np.int32))
    train, test = datasets.load(spec)
    assert train.classes == ("0", "1", "2", "3") and test.y.dtype == torch.int64


def _good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"x_train": rng.integers(0, 256, (8, 5, 5), dtype=np.uint8), "y_train": _labels(8, 2),
            "x_test": rng.integers(0, 256, (4, 5, 5), dtype=np.uint8), "y_test": _labels(4, 2)}


def _broken(**changes):
    arrays = _good_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


NPZ_ERRORS = {
    "missing-key": (_broken(y_test=None), "lacks y_test"),
    "x-2d": (_broken(x_train=np.zeros((8, 25), np.uint8)), "must be \\[N, H, W\\]"),
    "x-5d": (_broken(x_train=np.zeros((8, 1, 5, 5, 1), np.uint8)), "must be \\[N, H, W\\]"),
    "bad-channels": (_broken(x_train=np.zeros((8, 5, 5, 5), np.uint8)), "channel axis"),
    "length-mismatch": (_broken(y_train=_labels(7, 2)), "7 labels for 8 images"),
    "shape-mismatch": (_broken(x_test=np.zeros((4, 6, 6), np.uint8)), "differ in shape"),
    "float-labels": (_broken(y_train=_labels(8, 2).astype(np.float32)), "must be integers"),
    "2d-labels": (_broken(y_train=np.eye(2, dtype=np.int64)[_labels(8, 2)]), "1-D array"),
    "negative-label": (_broken(y_test=np.array([0, 1, -1, 0])), "must lie in 0..1"),
    "label-beyond-classes": (_broken(y_test=np.array([0, 1, 5, 0]), classes=np.array(["a", "b"])),
                             "must lie in 0..1"),
    "gap-in-labels": (_broken(y_train=np.array([0, 2] * 4), y_test=np.array([0, 2, 0, 2])),
                      "no examples of label"),
    "single-class": (_broken(y_train=np.zeros(8, np.int64), y_test=np.zeros(4, np.int64)), "single class"),
    "nan-pixels": (_broken(x_train=np.full((8, 5, 5), np.nan, np.float32)), "NaN or Inf"),
    "inf-pixels": (_broken(x_test=np.full((4, 5, 5), np.inf, np.float32)), "NaN or Inf"),
    "float-0-255": (_broken(x_train=np.full((8, 5, 5), 200.0, np.float32)), "divide 0-255 values by 255"),
    "empty-split": (_broken(x_test=np.zeros((0, 5, 5), np.uint8), y_test=np.zeros(0, np.int64)), "no images"),
    "duplicate-classes": (_broken(classes=np.array(["a", "a"])), "repeated names"),
    "constant-images": (_broken(x_train=np.zeros((8, 5, 5), np.uint8)), "constant"),
}


@pytest.mark.parametrize("case", sorted(NPZ_ERRORS))
def test_npz_errors(tmp_path, case):
    arrays, message = NPZ_ERRORS[case]
    spec = _save(tmp_path / f"{case}.npz", **arrays)
    with pytest.raises(DDError, match=message):
        datasets.load(spec)


def test_npz_file_level_errors(tmp_path):
    with pytest.raises(DDError, match="does not exist"):
        datasets.load(f"npz:{tmp_path / 'nope.npz'}")
    good = tmp_path / "good.npz"
    np.savez_compressed(good, **_good_arrays())
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DDError, match="not a valid .npz"):
        datasets.load(f"npz:{truncated}")
    text = tmp_path / "text.npz"
    text.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DDError, match="not a valid .npz"):
        datasets.load(f"npz:{text}")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(DDError, match="not a valid .npz"):
        datasets.load(f"npz:{single}")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **_good_arrays(), classes=np.array([{"a": 1}, {"b": 2}], dtype=object))
    with pytest.raises(DDError, match="pickled"):
        datasets.load(f"npz:{pickled}")
    # a corrupted member inside an otherwise valid zip (flip bytes in the middle of compressed data)
    corrupt = tmp_path / "corrupt.npz"
    middle = len(data) // 3
    corrupt.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    with pytest.raises(DDError):
        datasets.load(f"npz:{corrupt}")


@pytest.mark.skipif(not MNIST_5K.exists(), reason=f"shared data file {MNIST_5K} is not on this machine")
def test_shared_mnist_5k_loads():
    train, test = datasets.load(f"npz:{MNIST_5K}")
    assert (len(train), len(test)) == (5000, 10000)
    assert train.image_shape == (1, 28, 28) and train.name == "npz:mnist-5k"
    assert train.classes == tuple(str(c) for c in range(10))
    assert train.class_counts() == [500] * 10


# ------------------------------------------------------------------------------------------------ imagefolder
def _png(path: Path, size=(6, 5), mode="RGB", value=0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def _folder(root: Path, mode="RGB", classes=("b_dog", "a_cat"), n_train=3, n_test=2) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        for ci, c in enumerate(classes):
            for i in range(n):
                _png(root / split / c / f"{i}.png", mode=mode, value=100 * ci + 10 * i + (split == "test"))
    return root


def test_imagefolder_colour_and_grey(tmp_path):
    train, test = datasets.load(f"imagefolder:{_folder(tmp_path / 'rgb')}")
    assert train.classes == ("a_cat", "b_dog")  # sorted folder names
    assert train.image_shape == test.image_shape == (3, 5, 6)
    assert (len(train), len(test), train.name) == (6, 4, "imagefolder:rgb")
    assert train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert abs(float(train.x.mean())) < 1e-4
    train, _ = datasets.load(f"imagefolder:{_folder(tmp_path / 'grey', mode='L')}")
    assert train.image_shape == (1, 5, 6)
    mixed = _folder(tmp_path / "mixed", mode="L")
    _png(mixed / "test" / "a_cat" / "colour.png", mode="RGB")
    (mixed / "train" / "a_cat" / "notes.txt").write_text("ignored")
    train, test = datasets.load(f"imagefolder:{mixed}")
    assert train.channels == 3 and len(test) == 5


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DDError, match="does not exist"):
        datasets.load(f"imagefolder:{tmp_path / 'nope'}")
    no_test = _folder(tmp_path / "no_test")
    for f in (no_test / "test").rglob("*.png"):
        f.unlink()
    for d in (no_test / "test").iterdir():
        d.rmdir()
    (no_test / "test").rmdir()
    with pytest.raises(DDError, match='no "test" folder'):
        datasets.load(f"imagefolder:{no_test}")
    nested = tmp_path / "outer"
    _folder(nested / "inner")
    with pytest.raises(DDError, match="did you mean"):
        datasets.load(f"imagefolder:{nested}")
    empty = _folder(tmp_path / "empty")
    (empty / "train" / "c_empty").mkdir()
    (empty / "test" / "c_empty").mkdir()
    with pytest.raises(DDError, match="holds no .png"):
        datasets.load(f"imagefolder:{empty}")
    differ = _folder(tmp_path / "differ")
    _png(differ / "test" / "z_extra" / "0.png")
    with pytest.raises(DDError, match="only in test: z_extra"):
        datasets.load(f"imagefolder:{differ}")
    sizes = _folder(tmp_path / "sizes")
    _png(sizes / "test" / "a_cat" / "big.png", size=(7, 7))
    with pytest.raises(DDError, match="same size"):
        datasets.load(f"imagefolder:{sizes}")
    corrupt = _folder(tmp_path / "corrupt")
    (corrupt / "train" / "a_cat" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DDError, match="Could not decode"):
        datasets.load(f"imagefolder:{corrupt}")
    one_class = _folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DDError, match="single class"):
        datasets.load(f"imagefolder:{one_class}")
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(DDError, match="unpack it first"):
        datasets.load(f"imagefolder:{archive}")


def test_download_refuses_archive_members_outside_the_root(tmp_path, monkeypatch):
    """torchvision extracts downloads with an unfiltered extractall; ours run under the tar "data" filter,
    so a member such as ../../escaped.txt ends the load with one clear error and writes nothing outside."""
    import io
    import shutil
    import tarfile

    import torchvision.datasets.utils as tvu

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    def fake_download(url, root, filename=None, md5=None, **kwargs):  # no network: the "download" is the tar
        shutil.copy(evil, Path(root) / (filename or "archive.tar.gz"))

    monkeypatch.setattr(tvu, "download_url", fake_download)
    root = tmp_path / "a" / "b"
    with pytest.raises(DDError, match="unsafe archive member"):
        datasets.load("cifar10", root=root, download=True)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert tarfile.TarFile.extraction_filter is None  # the default is restored after the load

"""Named data sets → a (train, test) pair of :class:`~distillers.data.LabeledData`, held in memory.

Specs understood by :func:`load`:

- ``digits``: scikit-learn's bundled 8x8 grey digits (1,797 images, no download), split once and for all into
  1,347 train / 450 test images (stratified, ``random_state=0``) and normalised with the train statistics.
- ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn``: torchvision's files under ``root``
  (default ``$DDEVAL_DATA`` or ``~/.cache/ddeval/data``), fetched only when ``download=True``; normalised
  with the constants every dataset-distillation paper uses.
- ``npz:PATH``: a NumPy archive with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally
  ``classes``), e.g. ``npz:../shared/data/mnist-5k.npz``; normalised with the train statistics.
- ``imagefolder:PATH``: ``PATH/train/<class>/*.png|jpg|jpeg`` and ``PATH/test/<class>/...``; normalised with
  the train statistics.

Every problem a user can fix (missing files, malformed archives, bad labels) raises
:class:`~distillers.errors.DDError` with a one-line message naming the fix.

>>> train, test = load("digits")
>>> len(train), len(test), train.image_shape, train.name
(1347, 450, (1, 8, 8), 'digits')
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.registry import Registry

Loader = Callable[[str | None, Path, bool], tuple[LabeledData, LabeledData]]


@dataclass(frozen=True)
class DatasetSource:
    """One registry entry: how to load a data set, and what ``ddeval ls`` says about it."""

    name: str
    summary: str
    kind: str  # "bundled" | "torchvision" | "path"
    loader: Loader
    image_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    num_train: int | None = None
    num_test: int | None = None
    files: tuple[str, ...] = ()  # paths under root that show the torchvision files are present

    @property
    def takes_path(self) -> bool:
        return self.kind == "path"


DATASETS: Registry[DatasetSource] = Registry("dataset")

# Per-channel (mean, std) in [0, 1] pixel units: REFERENCE §1; SVHN uses the values common in DD code bases.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2861,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _register(source: DatasetSource) -> None:
    DATASETS.register(source.name, source, help=source.summary)


# ---------------------------------------------------------------------------------------------- public API
def default_root() -> Path:
    """Where torchvision files live unless ``root`` is given: ``$DDEVAL_DATA`` or ``~/.cache/ddeval/data``."""
    env = os.environ.get("DDEVAL_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ddeval" / "data"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"npz:PATH"`` into ``("npz", "PATH")``; a plain name gives ``(name, None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise DDError("Give a data set name such as \"digits\", \"mnist\", \"npz:PATH\" or \"imagefolder:PATH\".")
    spec = spec.strip()
    head, sep, tail = spec.partition(":")
    if sep and head.lower() in DATASETS:
        return head.lower(), tail.strip()
    return spec.lower(), None


def load(spec: str, *, root: str | Path | None = None, download: bool = False
         ) -> tuple[LabeledData, LabeledData]:
    """Load the data set named by ``spec`` as ``(train, test)``, both normalised with the same statistics."""
    name, arg = parse_spec(spec)
    if name not in DATASETS:
        hint = _path_hint(spec)
        if hint:
            raise DDError(f'Unknown dataset "{spec}"; {hint}')
    source = DATASETS.get(name)
    if source.takes_path and not arg:
        raise DDError(f'Give a path after "{name}:", e.g. "{name}:data/my-set{".npz" if name == "npz" else ""}".')
    if not source.takes_path and arg is not None:
        raise DDError(f'The dataset "{name}" takes no path; use "{name}" alone.')
    root_path = Path(root).expanduser() if root is not None else default_root()
    return source.loader(arg, root_path, bool(download))


def describe(*, root: str | Path | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per registered data set, for ``ddeval ls`` (cheap: reads no images)."""
    root_path = Path(root).expanduser() if root is not None else default_root()
    rows = []
    for name in DATASETS.names():
        src = DATASETS.get(name)
        if src.kind == "bundled":
            available: bool | None = True
            where = "bundled with scikit-learn"
        elif src.kind == "torchvision":
            available = all((root_path / f).exists() for f in src.files)
            where = str(root_path) if available else f"not under {root_path} (pass --download to fetch it)"
        else:
            available = None
            where = f"your files: {name}:PATH"
        rows.append({
            "name": name if not src.takes_path else f"{name}:PATH",
            "summary": src.summary,
            "kind": src.kind,
            "image_shape": list(src.image_shape) if src.image_shape else None,
            "num_classes": src.num_classes,
            "num_train": src.num_train,
            "num_test": src.num_test,
            "available": available,
            "location": where,
        })
    return rows


def _path_hint(spec: str) -> str:
    p = Path(spec).expanduser()
    if spec.lower().endswith(".npz") or (p.is_file() and zipfile.is_zipfile(p)):
        return f'for a NumPy archive write "npz:{spec}".'
    if p.is_dir():
        return f'for a folder of images write "imagefolder:{spec}".'
    return ""


# ---------------------------------------------------------------------------------------------- tensors
def _pixels_to_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float 0-1 pixels [N, C, H, W] → float32 tensor in [0, 1] (a fresh, writable copy)."""
    if isinstance(x, np.ndarray):
        if not x.flags.writeable or any(s < 0 for s in x.strides):
            x = np.ascontiguousarray(x)  # torch.from_numpy needs writable memory with positive strides
        x = torch.from_numpy(x)  # shares memory, keeps strides: the float copy below is the only copy
    t = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    return t.div_(255.0) if x.dtype == torch.uint8 else t


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``x`` [N, C, H, W], accumulated in float64 in chunks."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for chunk in x.split(4096):
        chunk = chunk.to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _normalize_(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _make_pair(name: str, x_train: torch.Tensor, y_train: Any, x_test: torch.Tensor, y_test: Any,
               classes: Sequence[str], stats: tuple[Sequence[float], Sequence[float]] | None = None,
               ) -> tuple[LabeledData, LabeledData]:
    """Normalise both splits (with ``stats`` or the train statistics) and wrap them as LabeledData."""
    if stats is None:
        mean, std = _channel_stats(x_train)
        flat = [i for i, s in enumerate(std) if s < 1e-8]
        if flat:
            raise DDError(f"Channel {flat[0]} of the {name} train images is constant, so it cannot be normalised; "
                          "check that the images are not blank.")
    else:
        mean, std = tuple(float(v) for v in stats[0]), tuple(float(v) for v in stats[1])
    _normalize_(x_train, mean, std)
    _normalize_(x_test, mean, std)
    y_tr = torch.as_tensor(np.asarray(y_train), dtype=torch.int64)
    y_te = torch.as_tensor(np.asarray(y_test), dtype=torch.int64)
    classes = tuple(str(c) for c in classes)
    return (LabeledData(x_train.contiguous(), y_tr, classes, mean, std, name=name),
            LabeledData(x_test.contiguous(), y_te, classes, mean, std, name=name))


# ---------------------------------------------------------------------------------------------- digits
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def _load_digits(arg: str | None, root: Path, download: bool) -> tuple[LabeledData, LabeledData]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # [1797, 1, 8, 8] in [0, 1]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION,
                                           random_state=DIGITS_SPLIT_SEED, stratify=labels)
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)  # membership defines the split, not order
    return _make_pair("digits", _pixels_to_tensor(images[idx_train]), labels[idx_train],
                      _pixels_to_tensor(images[idx_test]), labels[idx_test], [str(c) for c in range(10)])


_register(DatasetSource(
    "digits", "scikit-learn's bundled 8x8 grey handwritten digits (fixed stratified 75/25 split)",
    "bundled", _load_digits, (1, 8, 8), 10, 1347, 450))


# ---------------------------------------------------------------------------------------------- torchvision
def _torchvision_loader(name: str, builder: Callable[[Any, str, bool, bool], tuple[Any, Any, Sequence[str]]],
                        files: Sequence[str]) -> Loader:
    """A loader that reads both splits of a torchvision data set via ``builder(tv_datasets, root, train)``."""

    def loader(arg: str | None, root: Path, download: bool) -> tuple[LabeledData, LabeledData]:
        import torchvision.datasets as tvd

        if not download and not all((root / f).exists() for f in files):
            raise DDError(f"The {name} files are not under {root}; pass --download (download=True) to fetch them, "
                          "or point --data-root (root=, or $DDEVAL_DATA) at a folder that has them.")
        splits = []
        for train in (True, False):
            try:
                if download:
                    root.mkdir(parents=True, exist_ok=True)
                with safe_tar_extraction():
                    splits.append(builder(tvd, str(root), train, download))
            except tarfile.FilterError as err:
                raise DDError(f"The {name} download holds an unsafe archive member ({_one_line(err)}); nothing was "
                              f"extracted outside {root}. Delete the downloaded archive there and fetch it again "
                              "from a source you trust.") from None
            except (RuntimeError, OSError, ValueError) as err:
                what = "download" if download else "read"
                raise DDError(f"Could not {what} {name} under {root} ({_one_line(err)}); check the network "
                              "connection, or delete the folder and fetch it again with --download.") from None
        (x_tr, y_tr, classes), (x_te, y_te, _) = splits
        return _make_pair(name, _pixels_to_tensor(x_tr), y_tr, _pixels_to_tensor(x_te), y_te, classes,
                          NORMALIZATION[name])

    return loader


@contextlib.contextmanager
def safe_tar_extraction() -> Iterator[None]:
    """While inside, tar archives extract with Python's ``data`` filter: no member may land outside the target
    folder (``..``, absolute paths, links pointing out), be a device file, or keep unsafe permission bits.

    torchvision extracts its downloads with ``TarFile.extractall(path)`` and no filter, which on Python < 3.14
    trusts the archive's paths; this sets the class default that call falls back to, and restores it after.
    (``zipfile`` already drops ``..`` and absolute prefixes itself.)
    """
    before = tarfile.TarFile.extraction_filter
    tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)  # type: ignore[assignment]
    try:
        yield
    finally:
        tarfile.TarFile.extraction_filter = before  # type: ignore[method-assign]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] or type(err).__name__


def _mnist_like(cls_name: str, classes: Sequence[str] | None):
    def build(tvd: Any, root: str, train: bool, download: bool = False):
        ds = getattr(tvd, cls_name)(root, train=train, download=download)
        x = ds.data.numpy()[:, None]  # uint8 [N, 1, 28, 28]
        return x, ds.targets.numpy(), classes or list(ds.classes)
    return build


def _cifar(cls_name: str):
    def build(tvd: Any, root: str, train: bool, download: bool = False):
        ds = getattr(tvd, cls_name)(root, train=train, download=download)
        x = np.asarray(ds.data).transpose(0, 3, 1, 2)  # uint8 NHWC → NCHW
        return x, np.asarray(ds.targets), list(ds.classes)
    return build


def _svhn(tvd: Any, root: str, train: bool, download: bool = False):
    ds = tvd.SVHN(root, split="train" if train else "test", download=download)
    return np.asarray(ds.data), np.asarray(ds.labels), [str(c) for c in range(10)]  # data already NCHW


_MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")
_TORCHVISION = {
    "mnist": ("MNIST handwritten digits, 28x28 grey (torchvision)", (1, 28, 28), 10, 60000, 10000,
              _mnist_like("MNIST", [str(c) for c in range(10)]), tuple(f"MNIST/raw/{f}" for f in _MNIST_RAW)),
    "fashion-mnist": ("Fashion-MNIST clothing, 28x28 grey (torchvision)", (1, 28, 28), 10, 60000, 10000,
                      _mnist_like("FashionMNIST", None), tuple(f"FashionMNIST/raw/{f}" for f in _MNIST_RAW)),
    "cifar10": ("CIFAR-10, 32x32 colour, 10 classes (torchvision)", (3, 32, 32), 10, 50000, 10000,
                _cifar("CIFAR10"), ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch")),
    "cifar100": ("CIFAR-100, 32x32 colour, 100 classes (torchvision)", (3, 32, 32), 100, 50000, 10000,
                 _cifar("CIFAR100"), ("cifar-100-python/train", "cifar-100-python/test")),
    "svhn": ("SVHN street-view house numbers, 32x32 colour (torchvision; needs scipy)", (3, 32, 32), 10,
             73257, 26032, _svhn, ("train_32x32.mat", "test_32x32.mat")),
}
for _name, (_summary, _shape, _k, _ntr, _nte, _builder, _files) in _TORCHVISION.items():
    _register(DatasetSource(_name, _summary, "torchvision", _torchvision_loader(_name, _builder, _files),
                            _shape, _k, _ntr, _nte, _files))
del _name, _summary, _shape, _k, _ntr, _nte, _builder, _files


# ---------------------------------------------------------------------------------------------- npz
def _load_npz(arg: str | None, root: Path, download: bool) -> tuple[LabeledData, LabeledData]:
    path = Path(str(arg)).expanduser()
    if not path.is_file():
        raise DDError(f'The file "{path}" does not exist; check the path after "npz:".')
    if not zipfile.is_zipfile(path):
        raise DDError(f'"{path}" is not a valid .npz archive (not a zip file, or truncated); '
                      "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DDError(f'"{path}" holds a single array, not an .npz archive; save it with numpy.savez.')
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise DDError(f'"{path}" lacks {", ".join(missing)}; an npz data set needs the arrays '
                              f'{", ".join(NPZ_KEYS)} (and optionally classes), found: '
                              f'{", ".join(archive.files) or "none"}.')
            arrays = {k: archive[k] for k in (*NPZ_KEYS, "classes") if k in archive.files}
    except DDError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DDError(f'"{path}" contains object (pickled) arrays, which are not loaded for safety; save '
                          "images, labels and class names as plain numeric/string arrays.") from None
        raise DDError(f'"{path}" is malformed or truncated ({_one_line(err)}); write it again with '
                      "numpy.savez.") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError) as err:
        raise DDError(f'"{path}" is malformed or truncated ({_one_line(err)}); write it again with '
                      "numpy.savez.") from None

    where = f'"{path.name}"'
    x_train = _npz_images(arrays["x_train"], f"x_train of {where}")
    x_test = _npz_images(arrays["x_test"], f"x_test of {where}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DDError(f"Train and test images of {where} differ in shape: {list(x_train.shape[1:])} vs "
                      f"{list(x_test.shape[1:])} as [C, H, W]; store both splits at the same size.")
    y_train = _npz_labels(arrays["y_train"], len(x_train), f"y_train of {where}")
    y_test = _npz_labels(arrays["y_test"], len(x_test), f"y_test of {where}")
    classes = _npz_classes(arrays.get("classes"), where)
    k = len(classes) if classes is not None else int(max(y_train.max(), y_test.max())) + 1
    for y, split in ((y_train, "y_train"), (y_test, "y_test")):
        if y.min() < 0 or y.max() >= k:
            known = f"the {k} names in classes" if classes is not None else "the classes seen in y_train"
            raise DDError(f"{split} of {where} has labels {int(y.min())}..{int(y.max())} but they must lie in "
                          f"0..{k - 1} ({known}); relabel them as 0..K-1.")
    absent = sorted(set(range(k)) - set(np.unique(y_train).tolist()))
    if absent:
        raise DDError(f"y_train of {where} has no examples of label(s) {', '.join(map(str, absent[:10]))}; labels must "
                      "be 0..K-1 with every class present in the train split (relabel them, or give classes).")
    if k < 2:
        raise DDError(f"{where} has a single class; a classification data set needs at least 2.")
    names = classes if classes is not None else [str(c) for c in range(k)]
    return _make_pair(f"npz:{path.stem}", _pixels_to_tensor(x_train), y_train, _pixels_to_tensor(x_test), y_test,
                      names)


def _npz_images(x: np.ndarray, what: str) -> np.ndarray:
    """Validate and reshape to [N, C, H, W]; uint8 stays uint8, other types become float32 in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise DDError(f"{what} has shape {list(x.shape)}; colour images need a channel axis of size 1 or 3 "
                          "([N, H, W, C] or [N, C, H, W]).")
    else:
        raise DDError(f"{what} has shape {list(x.shape)}; images must be [N, H, W], [N, H, W, C] or "
                      "[N, C, H, W] with C = 1 or 3.")
    if x.shape[0] == 0:
        raise DDError(f"{what} holds no images; both splits need at least one.")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind in "iu":
        if x.min() < 0 or x.max() > 255:
            raise DDError(f"{what} holds integers outside 0..255; store pixels as uint8 (0-255) or as floats in [0, 1].")
        return x.astype(np.uint8)
    if x.dtype.kind != "f":
        raise DDError(f"{what} has dtype {x.dtype}; store pixels as uint8 (0-255) or as floats in [0, 1].")
    if not np.isfinite(x).all():
        raise DDError(f"{what} contains NaN or Inf values; clean the images before saving them.")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DDError(f"{what} holds floats in [{lo:.3g}, {hi:.3g}] but float pixels must be in [0, 1]; "
                      "divide 0-255 values by 255 (or store them as uint8).")
    return x.astype(np.float32, copy=False)


def _npz_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.ndim != 1:
        raise DDError(f"{what} has shape {list(y.shape)}; labels must be a 1-D array of class indices "
                      "(use y.argmax(1) for one-hot labels).")
    if y.dtype.kind not in "iu":
        raise DDError(f"{what} has dtype {y.dtype}; labels must be integers 0..K-1 (use y.astype(np.int64)).")
    if len(y) != n:
        raise DDError(f"{what} has {len(y)} labels for {n} images; every image needs exactly one label.")
    return y.astype(np.int64)


def _npz_classes(classes: np.ndarray | None, where: str) -> list[str] | None:
    if classes is None:
        return None
    if classes.ndim != 1 or len(classes) == 0:
        raise DDError(f"classes of {where} must be a 1-D array of class names, got shape {list(classes.shape)}.")
    if classes.dtype.kind == "S":
        names = [c.decode("utf-8", "replace") for c in classes.tolist()]
    else:
        names = [str(c) for c in classes.tolist()]
    if len(set(names)) != len(names):
        raise DDError(f"classes of {where} has repeated names; give every class a distinct name.")
    return names


_register(DatasetSource(
    "npz", "NumPy archive: x_train, y_train, x_test, y_test (+ classes), e.g. npz:../shared/data/mnist-5k.npz",
    "path", _load_npz))


# ---------------------------------------------------------------------------------------------- imagefolder
_GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def _load_imagefolder(arg: str | None, root: Path, download: bool) -> tuple[LabeledData, LabeledData]:
    path = Path(str(arg)).expanduser()
    layout = "PATH/train/<class>/*.png|jpg and PATH/test/<class>/*"
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar", ".zip")):
        raise DDError(f'"{path}" is an archive; unpack it first (tar -xzf {path} -C DIR) and pass '
                      "imagefolder:DIR/<unpacked folder>.")
    if not path.is_dir():
        raise DDError(f'The folder "{path}" does not exist; check the path after "imagefolder:".')
    for split in ("train", "test"):
        if not (path / split).is_dir():
            inner = [d for d in _subdirs(path) if (d / "train").is_dir()]
            hint = f' (did you mean "imagefolder:{inner[0]}"?)' if inner else ""
            raise DDError(f'"{path}" has no "{split}" folder{hint}; the layout must be {layout}.')
    classes = [d.name for d in _subdirs(path / "train")]
    test_classes = [d.name for d in _subdirs(path / "test")]
    if not classes:
        raise DDError(f'"{path / "train"}" has no class folders; the layout must be {layout}.')
    if len(classes) < 2:
        raise DDError(f'"{path / "train"}" has a single class folder; a classification set needs at least 2.')
    if classes != test_classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        parts = ([f"only in train: {', '.join(only_train)}"] if only_train else []) + \
                ([f"only in test: {', '.join(only_test)}"] if only_test else [])
        raise DDError(f'The class folders of "{path}" differ between train and test ({"; ".join(parts)}); '
                      "give both splits the same classes.")
    splits = {}
    for split in ("train", "test"):
        files, labels = [], []
        for label, name in enumerate(classes):
            found = sorted(f for f in (path / split / name).iterdir()
                           if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DDError(f'"{path / split / name}" holds no .png/.jpg/.jpeg images; every class needs '
                              "images in both splits.")
            files.extend(found)
            labels.extend([label] * len(found))
        splits[split] = (files, np.asarray(labels, dtype=np.int64))
    reference: list[Any] = []  # (height, width, file) of the first train image, set while decoding
    decoded = {split: _decode_images(files, reference) for split, (files, _) in splits.items()}
    all_grey = all(bool(grey.all()) for _, grey in decoded.values())
    tensors = {}
    for split in ("train", "test"):
        pixels, _ = decoded.pop(split)
        pixels = pixels[..., :1] if all_grey else pixels
        tensors[split] = _pixels_to_tensor(pixels.transpose(0, 3, 1, 2))  # one contiguous NCHW copy
        del pixels
    return _make_pair(f"imagefolder:{path.resolve().name}", tensors["train"], splits["train"][1],
                      tensors["test"], splits["test"][1], classes)


def _subdirs(path: Path) -> list[Path]:
    return sorted((d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _decode_images(files: Sequence[Path], reference: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Decode every file into one uint8 [N, H, W, 3] buffer (grey images repeated over the 3 channels).

    Returns the buffer and a boolean array saying which images were grey. Every image must match the size
    recorded in ``reference`` (filled from the first image decoded when empty).
    """
    from PIL import Image, UnidentifiedImageError

    buffer: np.ndarray | None = None
    grey = np.zeros(len(files), dtype=bool)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                grey[i] = im.mode in _GREY_MODES
                arr = np.asarray(im.convert("L" if grey[i] else "RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise DDError(f'Could not decode the image "{f}" ({_one_line(err)}); remove or replace it.') from None
        if not reference:
            reference.extend([arr.shape[0], arr.shape[1], f])
        h0, w0, f0 = reference
        if arr.shape[:2] != (h0, w0):
            h, w = arr.shape[:2]
            raise DDError(f'"{f}" is {w}x{h} pixels but "{f0}" is {w0}x{h0}; all images must have the same size '
                          "(resize them first).")
        if buffer is None:
            buffer = np.empty((len(files), h0, w0, 3), dtype=np.uint8)
        buffer[i] = arr[:, :, None] if arr.ndim == 2 else arr
    assert buffer is not None  # callers pass at least one file
    return buffer, grey


_register(DatasetSource(
    "imagefolder", "Folder of images: PATH/train/<class>/*.png|jpg and PATH/test/<class>/*",
    "path", _load_imagefolder))

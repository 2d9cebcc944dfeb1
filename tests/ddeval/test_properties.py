"""Property-based tests (hypothesis) for the two parsers users feed most: suite configs and SyntheticSet files.

Whatever is thrown at them, they either return a valid object or raise DDError (the one-line error the CLI
prints); never another exception, which would reach the user as a traceback. Valid objects round-trip.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddeval.config import Suite, apply_overrides, load_suite
from distillers.errors import DDError
from distillers.synthetic import META_FILE, TENSORS_FILE, SyntheticSet

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Key names users really write (so the generator reaches deep validation, not only "unknown key"), plus noise.
KEYS = st.sampled_from([
    "name", "dataset", "ipc", "methods", "network", "network_args", "seed", "distill_seeds", "fast", "accuracy",
    "privacy", "nas", "networks", "eval_seeds", "epochs", "lr", "batch_size", "full_data", "iterations",
    "batch_real", "dm", "random", "dc", "herding", "by_ipc", "enabled", "shadows", "dp_epsilons", "space",
    "strategy", "proxies", "width", "data_root", "download", "include",
]) | st.text(min_size=1, max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers(-5, 1000) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=10) | st.sampled_from(["digits", "dm", "random", "convnet", "mlp", "1,10", "nan"]))
VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(KEYS, children, max_size=4), max_leaves=12)


def _parse(mapping):
    try:
        suite = load_suite(mapping)
    except DDError as err:
        assert str(err).strip(), "a DDError must say what is wrong"
        return None
    assert isinstance(suite, Suite)
    return suite


@SETTINGS
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_suite_mapping_parses_or_fails_with_ddError(mapping):
    # "include" would read files named by the generator; keep the test inside the process
    mapping.pop("include", None)
    suite = _parse(mapping)
    if suite is not None:  # a valid suite round-trips through its resolved dict
        assert load_suite(suite.to_dict()) == suite


@SETTINGS
@given(st.lists(st.text(max_size=30), max_size=4))
def test_any_override_strings_apply_or_fail_with_ddError(overrides):
    try:
        mapping = apply_overrides({}, overrides)
    except DDError:
        return
    assert isinstance(mapping, dict)
    _parse({k: v for k, v in mapping.items() if k != "include"})


@SETTINGS
@given(st.sampled_from(["ipc", "accuracy.epochs", "accuracy.eval_seeds", "methods.dm.iterations", "seed",
                        "methods.dm.lr_img", "privacy.shadows", "nas.ipc", "distill_seeds", "fast"]),
       st.text(max_size=12) | st.integers(-3, 3).map(str) | st.floats().map(str))
def test_one_override_of_a_real_key_parses_or_fails_with_ddError(key, value):
    try:
        suite = load_suite("quickstart", [f"{key}={value}"])
    except DDError:
        return
    assert isinstance(suite, Suite)


# ---------------------------------------------------------------------------------------- SyntheticSet
def _write_set(folder: Path, tensors: object, meta: object, *, checksum: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    (folder / TENSORS_FILE).write_bytes(buffer.getvalue())
    if checksum and isinstance(meta, dict):
        meta = {**meta, "tensors_sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
    (folder / META_FILE).write_text(json.dumps(meta))


def _load(folder: Path) -> SyntheticSet | None:
    try:
        return SyntheticSet.load(folder)
    except DDError as err:
        assert str(err)
        return None


DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=5)


@st.composite
def tensors(draw):
    shape = draw(SHAPES)
    dtype = draw(DTYPES)
    fill = draw(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 12))
    try:
        return torch.full(shape, fill).to(dtype)
    except (RuntimeError, OverflowError):
        return torch.zeros(shape, dtype=dtype)


@st.composite
def meta_dicts(draw):
    meta = {"format_version": draw(st.sampled_from([1, 1, 1, 0, 2, "1", None])),
            "classes": draw(st.lists(st.text(max_size=3), max_size=4) | st.integers() | st.none()),
            "mean": draw(st.lists(st.floats(allow_nan=True), max_size=3) | st.none()),
            "std": draw(st.lists(st.floats(allow_nan=True), max_size=3) | st.text(max_size=3)),
            "lr": draw(st.none() | st.floats(allow_nan=True) | st.text(max_size=3)),
            "label_loss": draw(st.sampled_from(["ce", "mse", "l1", 3])),
            "meta": draw(st.none() | st.dictionaries(st.text(max_size=4), SCALARS, max_size=3) | st.integers())}
    if draw(st.booleans()):
        meta["parameterization"] = draw(st.dictionaries(st.sampled_from(["kind", "args", "shape"]), VALUES,
                                                        max_size=3) | SCALARS)
    for key in draw(st.lists(st.sampled_from(list(meta)), max_size=2)):
        meta.pop(key, None)
    return meta


@SETTINGS
@given(st.dictionaries(st.sampled_from(["images", "labels", "compact.a", "other"]), tensors(), max_size=4),
       meta_dicts(), st.booleans())
def test_any_tensors_and_meta_load_or_fail_with_ddError(content, meta, checksum):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "syn"
        _write_set(folder, content, meta, checksum=checksum)
        syn = _load(folder)
        if syn is not None:  # whatever loads is a usable set
            assert syn.images.dim() == 4 and syn.images.is_floating_point()
            assert bool(torch.isfinite(syn.images).all()) and syn.labels.shape[0] == len(syn)


@SETTINGS
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_arbitrary_bytes_load_or_fail_with_ddError(tensor_bytes, meta_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / TENSORS_FILE).write_bytes(tensor_bytes)
        (folder / META_FILE).write_bytes(meta_bytes)
        assert _load(folder) is None


@st.composite
def valid_sets(draw):
    k = draw(st.integers(1, 4))
    ipc = draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(k * ipc, c, size, size, generator=g)
    if draw(st.booleans()):
        labels = torch.softmax(torch.randn(k * ipc, k, generator=g), dim=1)
    else:
        labels = torch.arange(k).repeat_interleave(ipc)
    return SyntheticSet(images, labels, classes=[f"c{i}" for i in range(k)], mean=[0.5] * c, std=[0.25] * c,
                        lr=draw(st.none() | st.floats(1e-4, 1.0)), meta={"seed": seed})


@SETTINGS
@given(valid_sets())
def test_valid_sets_round_trip_exactly(syn):
    with tempfile.TemporaryDirectory() as tmp:
        folder = syn.save(Path(tmp) / "set")
        back = SyntheticSet.load(folder)
        assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)
        assert back.classes == syn.classes and back.lr == syn.lr and back.meta == syn.meta
        assert (back.mean, back.std) == (syn.mean, syn.std)

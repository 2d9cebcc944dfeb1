"""The ConvNet search space of the DC paper (REFERENCE §5) as plain Python and as an NNI 3.0 ``ModelSpace``.

An architecture is a dict ``{"depth", "width", "act", "norm", "pool"}`` passed straight to
``distillers.networks.create("convnet", ...)``. A *space* maps each of those keys to the values it may take;
keys left out keep the standard ConvNet-3 value. The full DC space (4 depths x 4 widths x 3 activations x
5 norms x 3 poolings) has 720 architectures; smaller named spaces serve quick runs and tests.

The plain-Python part (:data:`SPACES`, :func:`resolve_space`, :func:`enumerate_space`) does not import NNI.
:class:`ConvNetSpace` does, and importing NNI takes seconds (it pulls in pytorch-lightning), so that class is
created on first access (PEP 562 module ``__getattr__``) under its ordinary importable name.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from distillers.errors import DDError, did_you_mean
from distillers.registry import Registry

ARCH_KEYS: tuple[str, ...] = ("depth", "width", "act", "norm", "pool")
"""The architecture dimensions, in the order used for enumeration and for printing."""

ACTIVATIONS = ("sigmoid", "relu", "leakyrelu")
NORMS = ("none", "batchnorm", "layernorm", "instancenorm", "groupnorm")
POOLS = ("none", "maxpool", "avgpool")
DEPTHS = (1, 2, 3, 4)

DEFAULT_ARCH: dict[str, Any] = {"depth": 3, "width": 128, "act": "relu", "norm": "instancenorm", "pool": "avgpool"}
"""ConvNet-3, the standard evaluation network; the value of every key a space leaves out."""

SPACES: Registry = Registry("NAS search space")
SPACES.register("full", {
    "depth": DEPTHS, "width": (32, 64, 128, 256), "act": ACTIVATIONS, "norm": NORMS, "pool": POOLS,
}, help="the DC paper's 720 ConvNets: depth x width x activation x norm x pooling")
SPACES.register("medium", {
    "depth": (2, 3), "width": (32, 128), "act": ("relu", "sigmoid"), "norm": ("instancenorm", "batchnorm", "none"),
    "pool": ("avgpool", "maxpool"),
}, help="48 ConvNets: depth {2,3} x width {32,128} x act {relu,sigmoid} x norm {instance,batch,none} x pool {avg,max}")
SPACES.register("small", {
    "depth": (1, 2, 3), "width": (32, 64), "norm": ("instancenorm", "none"),
}, help="12 ConvNets: depth {1,2,3} x width {32,64} x norm {instancenorm,none} (relu, avgpool)")
SPACES.register("tiny", {
    "depth": (1, 2), "width": (16,), "act": ("relu", "sigmoid"),
}, help="4 narrow ConvNets: depth {1,2} x act {relu,sigmoid} (width 16; for tests)")


def _check_value(key: str, value: Any) -> Any:
    if key == "width":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DDError(f"NAS space: width values must be positive integers, got {value!r}.")
        return value
    if key == "depth":
        if isinstance(value, bool) or value not in DEPTHS:
            raise DDError(f"NAS space: depth values must be among {DEPTHS}, got {value!r}.")
        return int(value)
    valid = {"act": ACTIVATIONS, "norm": NORMS, "pool": POOLS}[key]
    if not isinstance(value, str) or value.lower() not in valid:
        hint = did_you_mean(value.lower(), valid) if isinstance(value, str) else ""
        raise DDError(f"NAS space: unknown {key} value {value!r}.{hint} Valid values: {', '.join(valid)}.")
    return value.lower()


def resolve_space(space: str | Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The space as ``{key: (values, ...)}`` over all :data:`ARCH_KEYS`, checked.

    ``space`` is a name from :data:`SPACES` or a mapping of allowed values; a scalar stands for a single
    value, missing keys take the ConvNet-3 value, unknown keys or values raise :class:`DDError`.
    """
    if isinstance(space, str):
        space = SPACES.get(space)
    if not isinstance(space, Mapping):
        raise DDError(f"A NAS space must be a name ({', '.join(SPACES.names())}) or a mapping of allowed values, "
                      f"got {space!r}.")
    for key in space:
        if key not in ARCH_KEYS:
            raise DDError(f"Unknown NAS space key {key!r}.{did_you_mean(str(key), ARCH_KEYS)} "
                          f"Valid keys: {', '.join(ARCH_KEYS)}.")
    resolved: dict[str, tuple[Any, ...]] = {}
    for key in ARCH_KEYS:
        raw = space.get(key, DEFAULT_ARCH[key])
        values: Sequence[Any] = raw if isinstance(raw, (list, tuple)) else (raw,)
        checked = tuple(_check_value(key, v) for v in values)
        if not checked:
            raise DDError(f"NAS space: {key} needs at least one value (leave the key out for {DEFAULT_ARCH[key]!r}).")
        if len(set(checked)) != len(checked):
            raise DDError(f"NAS space: {key} lists a value twice ({list(checked)}); list each value once.")
        resolved[key] = checked
    return resolved


def enumerate_space(space: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every architecture of ``space`` (the full grid, in a fixed order: last key varies fastest)."""
    resolved = resolve_space(space)
    return [dict(zip(ARCH_KEYS, combo, strict=True)) for combo in itertools.product(*(resolved[k] for k in ARCH_KEYS))]


def space_size(space: str | Mapping[str, Any]) -> int:
    """Number of architectures in ``space`` (without listing them)."""
    size = 1
    for values in resolve_space(space).values():
        size *= len(values)
    return size


def arch_key(arch: Mapping[str, Any]) -> tuple[Any, ...]:
    """A hashable identity of an architecture (its values in :data:`ARCH_KEYS` order)."""
    return tuple(arch[k] for k in ARCH_KEYS)


def arch_name(arch: Mapping[str, Any]) -> str:
    """Short readable name, e.g. ``"d3-w128-relu-instancenorm-avgpool"``."""
    return f"d{arch['depth']}-w{arch['width']}-{arch['act']}-{arch['norm']}-{arch['pool']}"


def build_network(arch: Mapping[str, Any], *, channels: int, num_classes: int, image_size: tuple[int, int],
                  seed: int | None = None) -> Any:
    """The concrete ConvNet of ``arch`` (initial weights from ``seed``), via the network registry."""
    from distillers.networks import create

    missing = [k for k in ARCH_KEYS if k not in arch]
    if missing:
        raise DDError(f"Architecture {dict(arch)} lacks {', '.join(missing)}; give all of {', '.join(ARCH_KEYS)}.")
    size = (int(image_size[0]), int(image_size[1]))
    return create("convnet", channels=channels, num_classes=num_classes, image_size=size, seed=seed,
                  **{k: arch[k] for k in ARCH_KEYS})


def import_nni() -> None:
    """Import the parts of NNI used here (seconds, once per process).

    NNI 3.0 warns at import that some classes of newer torch versions are "not a nn.Module"; that is harmless
    here (REFERENCE §5b), so exactly that warning is filtered; anything else NNI says still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module", category=RuntimeWarning)
        import nni.nas.evaluator  # noqa: F401
        import nni.nas.experiment  # noqa: F401
        import nni.nas.nn.pytorch  # noqa: F401
        import nni.nas.strategy  # noqa: F401


def _define_model_space() -> type:
    """Create the NNI ``ModelSpace`` class (imports NNI; called once, from the module ``__getattr__``)."""
    import_nni()
    import nni
    from nni.mutable import SampleValidationError, ensure_frozen
    from nni.nas.nn.pytorch import ModelSpace
    from nni.nas.space import model_context

    class ConvNetSpace(ModelSpace):
        """NNI model space of the ConvNet family: one ``nni.choice`` per architecture key.

        ``space.freeze(arch)`` (``arch``: a dict from :func:`enumerate_space`) gives a module whose
        ``network`` is the concrete ConvNet built by ``distillers.networks.create`` and whose ``arch`` is the
        dict; ``forward``/``embed`` delegate to it. Before freezing, the instance holds the first architecture
        (NNI's dry run).
        """

        def __init__(self, space: str | Mapping[str, Any] = "full", *, channels: int = 3, num_classes: int = 10,
                     image_size: tuple[int, int] = (32, 32), seed: int | None = 0) -> None:
            super().__init__()
            values = resolve_space(space)
            self.arch = {key: ensure_frozen(self.add_mutable(nni.choice(key, list(values[key]))))
                         for key in ARCH_KEYS}
            self.network = build_network(self.arch, channels=channels, num_classes=num_classes,
                                         image_size=image_size, seed=seed)

        def freeze(self, sample: Mapping[str, Any]) -> ConvNetSpace:
            """This space rebuilt with the architecture ``sample`` (a full arch dict; extra keys ignored)."""
            missing = [k for k in ARCH_KEYS if k not in sample]
            if missing:
                raise DDError(f"Architecture {dict(sample)} lacks {', '.join(missing)}; give all of "
                              f"{', '.join(ARCH_KEYS)}.")
            arch = {k: sample[k] for k in ARCH_KEYS}
            try:
                self.validate(arch)
            except SampleValidationError as err:
                raise DDError(f"Architecture {arch} is not in this search space ({err}).") from None
            with model_context(arch):
                return type(self)(*self.trace_args, **self.trace_kwargs)

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.network(x)

        def embed(self, x):  # noqa: ANN001, ANN201
            return self.network.embed(x)

    ConvNetSpace.__module__ = __name__
    ConvNetSpace.__qualname__ = "ConvNetSpace"
    return ConvNetSpace


def __getattr__(name: str) -> Any:
    if name == "ConvNetSpace":
        cls = _define_model_space()
        globals()["ConvNetSpace"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: F822 (ConvNetSpace comes from __getattr__)
    "ARCH_KEYS", "DEFAULT_ARCH", "SPACES", "ConvNetSpace", "arch_key", "arch_name", "build_network",
    "enumerate_space", "import_nni", "resolve_space", "space_size",
]

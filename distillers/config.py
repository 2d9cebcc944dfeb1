"""Frozen configuration dataclasses built from plain mappings, rejecting unknown keys.

Every pluggable piece (method, training recipe, suite section) declares a ``@dataclass(frozen=True)`` config.
:func:`build_config` turns a mapping (from YAML, ``--set`` overrides or keyword arguments) into one, converting
simple types and naming the valid keys when a key is unknown, so that typos fail loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from distillers.errors import DDError, did_you_mean

C = TypeVar("C")


def build_config(cls: type[C], values: Mapping[str, Any] | None = None, *, what: str | None = None) -> C:
    """Instantiate the frozen dataclass ``cls`` from ``values``.

    Unknown keys and values of the wrong type raise :class:`DDError` naming the valid keys or the expected
    type. ``None`` values fall back to the field's default (timm's convention).
    """
    what = what or cls.__name__
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = unknown[0]
        raise DDError(
            f'Unknown key "{key}" for {what}.{did_you_mean(key, fields)} Valid keys: {", ".join(sorted(fields))}.'
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if value is None:
            continue
        kwargs[key] = _coerce(value, hints.get(key, Any), f"{what}.{key}")
    try:
        return cls(**kwargs)
    except DDError:
        raise
    except (TypeError, ValueError) as err:
        raise DDError(f"Invalid {what}: {err}") from None


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return _jsonable(dataclasses.asdict(config))


# Field metadata marking a setting that cannot change a method's result (a safety check, a cache folder), so
# runs key their units without it: a new such setting, or a different value, still reuses finished work.
NOT_IN_KEY = {"key": False}


def key_dict(config: Any) -> dict[str, Any]:
    """:func:`config_dict` without the fields marked :data:`NOT_IN_KEY`: what a result's content key hashes."""
    skip = {f.name for f in dataclasses.fields(config) if f.metadata.get("key", True) is False}
    return {k: v for k, v in config_dict(config).items() if k not in skip}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type where that is lossless; raise DDError otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except DDError as err:
                errors.append(str(err))
        raise DDError(errors[0] if errors else f"{where}: unsupported value {value!r}.")
    if origin is typing.Literal:
        if value in args:
            return value
        raise DDError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}.")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = args[0] if args else Any
        items = [_coerce(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise DDError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise DDError(f"{where} must be true or false, got {value!r}.")
    if hint is int:
        if isinstance(value, bool):
            raise DDError(f"{where} must be an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise DDError(f"{where} must be an integer, got {value!r}.")
    if hint is float:
        if isinstance(value, bool):
            raise DDError(f"{where} must be a number, got {value!r}.")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise DDError(f"{where} must be a number, got {value!r}.")
    if hint is str:
        if isinstance(value, str):
            return value
        raise DDError(f"{where} must be a string, got {value!r}.")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return build_config(hint, value, what=where)
        raise DDError(f"{where} must be a mapping of {hint.__name__} keys, got {value!r}.")
    return value


def is_int(value: object) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a valid count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float that is not a bool (for config checks: NaN and ±inf are never valid)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check(condition: bool, message: str) -> None:
    """Raise :class:`DDError` with ``message`` unless ``condition`` holds (for ``__post_init__`` checks)."""
    if not condition:
        raise DDError(message)


def check_positive_ints(config: Any, *names: str, optional: bool = False) -> None:
    """Each named field of ``config`` must be an int >= 1 (or ``None`` when ``optional``: the default)."""
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        check(is_int(value) and value >= 1,
              f"{name} must be a positive integer{' or null (the default)' if optional else ''}, got {value!r}.")


def check_positive_numbers(config: Any, *names: str, optional: bool = False) -> None:
    """Each named field of ``config`` must be a finite number > 0 (or ``None`` when ``optional``)."""
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        check(is_number(value) and value > 0, f"{name} must be a positive number, got {value!r}.")

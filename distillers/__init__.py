"""distillers: dataset distillation methods behind one registry and one :class:`SyntheticSet` type.

>>> import distillers
>>> "dm" in distillers.available()
True
"""

from __future__ import annotations

from typing import Any

from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.methods import METHODS
from distillers.methods.base import Distiller
from distillers.registry import Registry
from distillers.synthetic import SyntheticSet

__version__ = "0.1.0"

__all__ = [
    "DDError", "Distiller", "LabeledData", "Registry", "SyntheticSet", "METHODS",
    "available", "create", "register", "__version__",
]


def create(name: str, config: Any = None, /, **overrides: Any) -> Distiller:
    """Build the registered method ``name`` with its config (``None`` values keep the defaults)."""
    cls = METHODS.get(name)
    return cls(config, **overrides) if config is not None else cls(**overrides)


def available(pattern: str | None = None) -> list[str]:
    """Registered method names, optionally filtered by a shell pattern (``"d*"``)."""
    return METHODS.names(pattern)


def register(name: str, *, override: bool = False) -> Any:
    """Class decorator registering a user's own :class:`Distiller` subclass under ``name``."""

    def decorator(cls: type[Distiller]) -> type[Distiller]:
        if not (isinstance(cls, type) and issubclass(cls, Distiller)):
            raise TypeError("@distillers.register expects a Distiller subclass")
        cls.name = name
        METHODS.register(name, cls, override=override)
        return cls

    return decorator

"""One registry class for every pluggable kind (methods, networks, datasets, attacks, ...).

Entries are either objects registered with the ``@registry.register(name)`` decorator, or *lazy* entries
("module:attribute" strings) that are imported only when first used, so listing names stays fast and cheap.
Registering a name twice is an error unless ``override=True`` is given: names are never silently replaced.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from distillers.errors import DDError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object table for one kind of thing (e.g. ``Registry("method")``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, override: bool = False,
                 help: str = "") -> Any:
        """Register ``obj`` under ``name``; without ``obj`` this is a decorator."""
        key = self._check_name(name, override)

        def decorator(target: T) -> T:
            self._entries[key] = target
            if help:
                self._help[key] = help
            return target

        return decorator(obj) if obj is not None else decorator

    def register_lazy(self, name: str, target: str, *, help: str = "", override: bool = False) -> None:
        """Register ``"package.module:attribute"``, imported on first ``get``."""
        if ":" not in target:
            raise ValueError(f"lazy target {target!r} must look like 'package.module:attribute'")
        key = self._check_name(name, override)
        self._entries[key] = target
        if help:
            self._help[key] = help

    def get(self, name: str) -> T:
        """Return the entry for ``name``, importing a lazy one; unknown names raise :class:`DDError`."""
        key = name.lower() if isinstance(name, str) else name
        if key not in self._entries:
            raise DDError(
                f'Unknown {self.kind} "{name}".{did_you_mean(str(name).lower(), self._entries)} '
                f"Available: {', '.join(self.names())}."
            )
        entry = self._entries[key]
        if isinstance(entry, str):
            module_name, attr = entry.split(":", 1)
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[key] = entry
        return entry  # type: ignore[return-value]

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell-style pattern such as ``"convnet*"``."""
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def help(self, name: str) -> str:
        """One-line description of an entry (from ``help=`` or the first docstring line)."""
        if name in self._help:
            return self._help[name]
        entry = self._entries.get(name)
        if entry is None or isinstance(entry, str):
            return ""
        doc = getattr(entry, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def _check_name(self, name: str, override: bool) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        key = name.lower()
        if key in self._entries and not override:
            raise DDError(
                f'A {self.kind} named "{name}" is already registered; pick another name or pass override=True.'
            )
        return key

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


def lazy_table(registry: Registry[Any], table: dict[str, str], prefix: str = "") -> None:
    """Register many lazy entries at once: ``{"name": "module:attr"}``."""
    for name, target in table.items():
        registry.register_lazy(name, prefix + target)


Factory = Callable[..., Any]

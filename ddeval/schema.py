"""The results schema: what ``results.json`` holds, which way each metric is better, and a validator.

``results.json`` is the one source every report, comparison and regression check is rendered from, so its shape
is versioned (``schema_version``) and checked here. Version 1 (the README's "Results schema" section lists it
for readers):

- ``schema_version`` (int), ``run`` (suite, device, seeds, start/finish, timings), ``dataset`` (name, sizes,
  classes, image shape, fingerprint), ``metrics`` (every metric name: ``direction`` "higher" or "lower" is
  better, and its ``unit``), ``config`` (the resolved suite) and ``provenance`` (command, git commit, package
  versions, machine, seeds, timings);
- optional evaluator sections: ``accuracy`` (``recipe``, ``rows``: one per method x ipc x network, and
  ``full_data``), ``privacy`` (``rows``: one per target x attack, and ``audits``), ``nas`` (``full`` search and
  one entry per proxy in ``proxies``), and ``synthetic`` (where each distilled set was saved).

Fractions (accuracy, AUC, TPR) are in [0, 1]; correlations in [-1, 1]; times in seconds. Extra keys are
allowed (a newer writer may add fields), missing required keys and wrong types are not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillers.errors import DDError

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)

#: Every metric a run can report, which way is better, and its unit (results.json carries this table).
METRICS: dict[str, dict[str, str]] = {
    "accuracy": {"direction": "higher", "unit": "fraction"},
    "auc": {"direction": "lower", "unit": "fraction"},
    "tpr_at_1pct_fpr": {"direction": "lower", "unit": "fraction"},
    "tpr_at_0p1pct_fpr": {"direction": "lower", "unit": "fraction"},
    "epsilon_lb": {"direction": "lower", "unit": "epsilon"},
    "spearman": {"direction": "higher", "unit": "correlation"},
    "kendall": {"direction": "higher", "unit": "correlation"},
    "top1_regret": {"direction": "lower", "unit": "fraction"},
    "speedup": {"direction": "higher", "unit": "ratio"},
    "distill_seconds": {"direction": "lower", "unit": "seconds"},
}
DIRECTIONS = ("higher", "lower")


# ------------------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class Field:
    """One key of an object: its JSON type(s), whether it must be there, and for numbers an allowed range."""

    types: tuple[str, ...]
    required: bool = True
    low: float | None = None
    high: float | None = None
    items: Any = None  # spec of list items (a dict of Fields, or a Field for scalars)
    keys: Any = None  # spec of a nested object (a dict of Fields)
    values: Any = None  # spec of every value of a mapping with free keys


def req(*types: str, **kw: Any) -> Field:
    return Field(tuple(types), True, **kw)


def opt(*types: str, **kw: Any) -> Field:
    return Field(tuple(types), False, **kw)


FRACTION: dict[str, Any] = {"low": 0.0, "high": 1.0}
CORRELATION: dict[str, Any] = {"low": -1.0, "high": 1.0}

ACCURACY_ROW = {
    "method": req("string"), "ipc": req("integer", low=1), "network": req("string"),
    "accuracy_mean": req("number", **FRACTION), "accuracy_std": req("number", low=0.0),
    "accuracies": req("array", items=Field(("number",), low=0.0, high=1.0)),
    "eval_seeds": opt("array", items=Field(("integer",))),
    "distill_seconds": opt("number", "null", low=0.0),
    "own_protocol_accuracy_mean": opt("number", "null", **FRACTION),
}
FULL_DATA = {"network": req("string"), "accuracy_mean": req("number", **FRACTION),
             "accuracy_std": req("number", low=0.0), "epochs": opt("integer", low=0)}
PRIVACY_ROW = {
    "target": req("string"), "attack": req("string"), "ipc": opt("integer", "null"),
    "auc": req("number", "null", **FRACTION), "tpr_at_1pct_fpr": req("number", "null", **FRACTION),
    "tpr_at_0p1pct_fpr": req("number", "null", **FRACTION),
    "num_members": opt("integer", low=0), "num_nonmembers": opt("integer", low=0),
}
AUDIT_BOUND = {"epsilon_lb": req("number", "null", low=0.0), "epsilon_theory": opt("number", "null")}
AUDIT = {"label": req("string"), "target": opt("string"), "epsilon_theory": opt("number", "null"),
         "canary": opt("object", "null", keys=AUDIT_BOUND), "one_run": opt("object", "null", keys=AUDIT_BOUND)}
PROXY = {"label": req("string"), "proxy": opt("string"), "ipc": opt("integer", "null"),
         "spearman": req("number", "null", **CORRELATION), "kendall": opt("number", "null", **CORRELATION),
         "top1_regret": opt("number", "null"), "speedup": opt("number", "null", low=0.0)}
METRIC = {"direction": req("string"), "unit": req("string")}

RESULTS = {
    "schema_version": req("integer"),
    "run": req("object", keys={"suite": req("string"), "device": opt("string"),
                               "seeds": opt("object"), "total_seconds": opt("number", low=0.0)}),
    "dataset": req("object", keys={"name": req("string"), "num_classes": opt("integer", low=1),
                                   "image_shape": opt("array", items=Field(("integer",), low=1))}),
    "metrics": req("object", values=METRIC),
    "config": opt("object"),
    "provenance": opt("object", keys={"git": opt("object"), "versions": opt("object"), "machine": opt("object"),
                                      "seeds": opt("object")}),
    "accuracy": opt("object", keys={"recipe": opt("object"), "rows": req("array", items=ACCURACY_ROW),
                                    "full_data": opt("object", "null", keys=FULL_DATA)}),
    "privacy": opt("object", keys={"rows": req("array", items=PRIVACY_ROW),
                                   "audits": opt("array", items=AUDIT)}),
    "nas": opt("object", keys={"proxies": req("array", items=PROXY), "full": opt("object", "null")}),
    "synthetic": opt("array", items={"method": req("string"), "ipc": req("integer"), "path": req("string")}),
}


# ------------------------------------------------------------------------------------------ validator
@dataclass
class _Problems:
    found: list[str] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.found.append(f"{where or '(top level)'}: {what}")


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _matches(value: Any, types: tuple[str, ...]) -> bool:
    kind = _type_of(value)
    return kind in types or (kind == "integer" and "number" in types)


def _check_value(value: Any, spec: Field, where: str, out: _Problems) -> None:
    if not _matches(value, spec.types):
        out.add(where, f"expected {' or '.join(spec.types)}, found {_type_of(value)}")
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            out.add(where, f"must be a finite number, found {value}")
        elif spec.low is not None and value < spec.low - 1e-9:
            out.add(where, f"must be >= {spec.low}, found {value}")
        elif spec.high is not None and value > spec.high + 1e-9:
            out.add(where, f"must be <= {spec.high}, found {value}")
    if isinstance(value, list) and spec.items is not None:
        for i, item in enumerate(value):
            _check_item(item, spec.items, f"{where}[{i}]", out)
    if isinstance(value, Mapping):
        if spec.keys is not None:
            _check_object(value, spec.keys, where, out)
        if spec.values is not None:
            for key, item in value.items():
                _check_item(item, spec.values, f"{where}.{key}", out)


def _check_item(item: Any, spec: Any, where: str, out: _Problems) -> None:
    if isinstance(spec, Field):
        _check_value(item, spec, where, out)
    elif not isinstance(item, Mapping):
        out.add(where, f"expected object, found {_type_of(item)}")
    else:
        _check_object(item, spec, where, out)


def _check_object(obj: Mapping[str, Any], spec: Mapping[str, Field], where: str, out: _Problems) -> None:
    for key, f in spec.items():
        path = f"{where}.{key}" if where else key
        if key not in obj:
            if f.required:
                out.add(path, "required key is missing")
            continue
        _check_value(obj[key], f, path, out)


def problems(results: Any) -> list[str]:
    """Every way ``results`` departs from the schema (empty when it conforms)."""
    out = _Problems()
    if not isinstance(results, Mapping):
        out.add("", f"results must be a JSON object, found {_type_of(results)}")
        return out.found
    _check_object(results, RESULTS, "", out)
    version = results.get("schema_version")
    if isinstance(version, int) and version not in SUPPORTED_VERSIONS:
        out.add("schema_version", f"version {version} is not one this ddeval reads "
                                  f"({', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade ddeval")
    for name, m in (results.get("metrics") or {}).items():
        if isinstance(m, Mapping) and m.get("direction") not in DIRECTIONS:
            out.add(f"metrics.{name}.direction", f"must be 'higher' or 'lower', found {m.get('direction')!r}")
    return out.found


def validate(results: Any, source: str = "results.json") -> Mapping[str, Any]:
    """``results`` when it conforms; else one :class:`DDError` naming the first problems and the fix."""
    found = problems(results)
    if found:
        shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        raise DDError(f"{source} does not follow the results schema (version {SCHEMA_VERSION}): {shown}. "
                      "Re-run the suite with this ddeval to rewrite it.")
    return results

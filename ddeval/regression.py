"""Regression checks: a run's metrics against a committed baseline, with direction-aware tolerances.

A *metric* is one number of ``results.json`` with a name (``accuracy``, ``auc``, ``spearman``...), labels that
say which row it comes from (method, ipc, network; target and attack; proxy) and the direction in which it is
better. A *baseline* is a JSON file of such metrics plus the tolerances to check them with. A metric that moved
the wrong way by more than its tolerance is a regression (accuracy falling, attack AUC or TPR rising); one that
moved the right way by more than its tolerance is an improvement and passes; a metric of the baseline that the
run lacks is missing and fails (a check must never pass because nothing was compared).

    comparison = compare(extract(results), load_baseline("reports/baselines/x.json"))
    print(comparison.table()); sys.exit(1 if comparison.failed else 0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ddeval.schema import METRICS, validate
from distillers.errors import DDError, did_you_mean
from distillers.io import atomic_write_json

BASELINE_KIND = "ddeval-baseline"
BASELINE_VERSION = 1


# ============================================================================================== metrics
@dataclass(frozen=True)
class Metric:
    """One number of a run: ``name`` (a key of :data:`ddeval.schema.METRICS`), the ``labels`` of the row it
    comes from, its value (a mean over seeds where there are several, with their ``std``)."""

    name: str
    labels: tuple[tuple[str, Any], ...]
    value: float
    direction: str
    unit: str
    std: float | None = None

    @property
    def key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """Identity for matching a run's metric with a baseline's: the name and the labels in any order."""
        return self.name, tuple(sorted(self.labels, key=lambda kv: kv[0]))

    def title(self) -> str:
        """e.g. ``accuracy [method=dm, ipc=10, network=convnet]``."""
        return f"{self.name} [" + ", ".join(f"{k}={v}" for k, v in self.labels) + "]"

    def to_json(self) -> dict[str, Any]:
        out = {"metric": self.name, "labels": dict(self.labels), "value": self.value,
               "direction": self.direction, "unit": self.unit}
        if self.std is not None:
            out["std"] = self.std
        return out

    @classmethod
    def from_json(cls, item: Mapping[str, Any], where: str) -> Metric:
        try:
            name, value = str(item["metric"]), float(item["value"])
            labels = item.get("labels") or {}
            if not isinstance(labels, Mapping):
                raise TypeError("labels must be an object")
            direction = str(item.get("direction") or METRICS.get(name, {}).get("direction") or "")
            if direction not in ("higher", "lower"):
                raise ValueError(f"direction must be 'higher' or 'lower', found {direction!r}")
            std = item.get("std")
            return cls(name, _labels(labels), value, direction,
                       str(item.get("unit") or METRICS.get(name, {}).get("unit") or ""),
                       None if std is None else float(std))
        except (KeyError, TypeError, ValueError) as err:
            raise DDError(f"{where} is not a valid baseline metric ({err}); regenerate the baseline with "
                          "--update-baseline.") from None


def _labels(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Labels in a fixed order (the writer's order), without empty values."""
    return tuple((str(k), v) for k, v in mapping.items() if v is not None)


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class _Collector:
    """Builds the metric list, looking up direction and unit in the run's own metric table."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.table = {**METRICS, **{k: v for k, v in table.items() if isinstance(v, Mapping)}}
        self.metrics: dict[tuple[str, tuple[tuple[str, Any], ...]], Metric] = {}

    def add(self, name: str, labels: Mapping[str, Any], value: Any, std: Any = None) -> None:
        number = _finite(value)
        if number is None:
            return  # not measured (e.g. no audit bound): nothing to compare
        spec = self.table.get(name) or {}
        metric = Metric(name, _labels(labels), number, str(spec.get("direction") or "higher"),
                        str(spec.get("unit") or ""), _finite(std))
        self.metrics.setdefault(metric.key, metric)  # the first of duplicated rows wins


def extract(results: Mapping[str, Any]) -> list[Metric]:
    """Every comparable number of a ``results.json``: accuracy per method, ipc and network (and a method's own
    protocol, the full data), distillation time, attack AUC and TPR per target and attack (TPR only where the
    run had enough non-members to resolve that FPR), audit lower bounds, and NAS proxy scores."""
    out = _Collector(results.get("metrics") or {})
    accuracy = results.get("accuracy") or {}
    for row in accuracy.get("rows") or []:
        labels = {"method": row.get("method"), "ipc": row.get("ipc"), "network": row.get("network")}
        out.add("accuracy", labels, row.get("accuracy_mean"), row.get("accuracy_std"))
        if row.get("own_protocol_accuracy_mean") is not None:
            out.add("accuracy", {**labels, "protocol": row.get("own_protocol") or "own"},
                    row.get("own_protocol_accuracy_mean"), row.get("own_protocol_accuracy_std"))
        if row.get("method") not in ("random", "noise"):
            out.add("distill_seconds", {"method": row.get("method"), "ipc": row.get("ipc")},
                    row.get("distill_seconds"))
    full = accuracy.get("full_data") or {}
    out.add("accuracy", {"method": "full-data", "network": full.get("network")}, full.get("accuracy_mean"),
            full.get("accuracy_std"))
    privacy = results.get("privacy") or {}
    for row in privacy.get("rows") or []:
        labels = {"target": row.get("target"), "ipc": row.get("ipc"), "attack": row.get("attack")}
        out.add("auc", labels, row.get("auc"))
        if row.get("resolves_1pct_fpr", True):
            out.add("tpr_at_1pct_fpr", labels, row.get("tpr_at_1pct_fpr"))
        if row.get("resolves_0p1pct_fpr", False):
            out.add("tpr_at_0p1pct_fpr", labels, row.get("tpr_at_0p1pct_fpr"))
    for audit in privacy.get("audits") or []:
        for kind in ("canary", "one_run"):
            bound = audit.get(kind) or {}
            out.add("epsilon_lb", {"audit": audit.get("label"), "method": kind.replace("_", "-")},
                    bound.get("epsilon_lb"))
    for proxy in (results.get("nas") or {}).get("proxies") or []:
        labels = {"proxy": proxy.get("label") or proxy.get("proxy")}
        for name in ("spearman", "kendall", "top1_regret", "speedup"):
            out.add(name, labels, proxy.get(name))
    return list(out.metrics.values())


# ============================================================================================ tolerances
@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move before it counts: ``abs`` in the metric's unit, ``rel`` as a fraction of the
    baseline value (the larger of the two applies). ``gate=False``: reported when it moves, never fails (for
    timings, which depend on the machine and its load)."""

    abs: float = 0.0
    rel: float = 0.0
    gate: bool = True

    def __post_init__(self) -> None:
        if not (self.abs >= 0 and self.rel >= 0 and math.isfinite(self.abs) and math.isfinite(self.rel)):
            raise DDError(f"A tolerance must be a finite number >= 0, got abs={self.abs}, rel={self.rel}.")

    def allowed(self, base: float) -> float:
        return max(self.abs, self.rel * abs(base))

    def text(self, unit: str) -> str:
        parts = []
        if self.abs:
            parts.append(f"±{format_delta(self.abs, unit)}")
        if self.rel:
            parts.append(f"±{100 * self.rel:g}%")
        text = " or ".join(parts) or "exact"
        return text if self.gate else f"{text}, not gated"

    def to_json(self) -> dict[str, Any]:
        return {"abs": self.abs, "rel": self.rel, "gate": self.gate}

    @classmethod
    def from_json(cls, item: Any, where: str) -> Tolerance:
        try:
            if not isinstance(item, Mapping):
                raise TypeError("expected an object with abs, rel and gate")
            unknown = set(item) - {"abs", "rel", "gate"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            return cls(float(item.get("abs", 0.0)), float(item.get("rel", 0.0)), bool(item.get("gate", True)))
        except (TypeError, ValueError) as err:
            raise DDError(f"{where} is not a valid tolerance ({err}); write it as "
                          '{"abs": 0.02, "rel": 0.0, "gate": true}.') from None


#: Defaults, chosen to sit above seed-to-seed noise of the small runs CI can afford (2-3 evaluation seeds)
#: and below the gaps that matter (a method falling to its random-subset baseline is several points).
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "accuracy": Tolerance(abs=0.02),
    "auc": Tolerance(abs=0.03),
    "tpr_at_1pct_fpr": Tolerance(abs=0.02),
    "tpr_at_0p1pct_fpr": Tolerance(abs=0.01),
    "epsilon_lb": Tolerance(abs=0.5),
    "spearman": Tolerance(abs=0.1),
    "kendall": Tolerance(abs=0.1),
    "top1_regret": Tolerance(abs=0.01),
    "speedup": Tolerance(rel=0.5, gate=False),
    "distill_seconds": Tolerance(rel=1.0, gate=False),
}
FALLBACK_TOLERANCE = Tolerance(rel=0.05)


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """``METRIC=VALUE`` from the command line: ``accuracy=0.01`` (absolute, in the metric's unit),
    ``accuracy=5%`` (relative), ``accuracy=0.01,5%`` (both), ``distill_seconds=off`` (report, never fail).
    Naming a metric gates it, so ``distill_seconds=50%`` makes time count."""
    name, sep, value = (part.strip() for part in text.partition("="))
    if not sep or not name or not value:
        raise DDError(f'--tolerance "{text}" must look like METRIC=VALUE, e.g. accuracy=0.01, accuracy=5% or '
                      "distill_seconds=off.")
    if name not in METRICS:
        raise DDError(f'--tolerance "{text}": unknown metric "{name}".{did_you_mean(name, METRICS)} Metrics: '
                      f"{', '.join(METRICS)}.")
    if value.lower() == "off":
        return name, Tolerance(gate=False)
    abs_tol = rel_tol = 0.0
    for part in value.split(","):
        part = part.strip()
        try:
            if part.endswith("%"):
                rel_tol = float(part[:-1]) / 100.0
            else:
                abs_tol = float(part)
        except ValueError:
            raise DDError(f'--tolerance "{text}": {part!r} is not a number (use 0.01, 5% or off).') from None
    return name, Tolerance(abs=abs_tol, rel=rel_tol)


def resolve_tolerances(*layers: Mapping[str, Tolerance] | None) -> dict[str, Tolerance]:
    """Defaults, then each layer in turn (a baseline's own, then the command line's)."""
    merged = dict(DEFAULT_TOLERANCES)
    for layer in layers:
        merged.update(layer or {})
    return merged


# ============================================================================================== baseline
@dataclass(frozen=True)
class Baseline:
    metrics: tuple[Metric, ...]
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None


def baseline_from_results(results: Mapping[str, Any], *, tolerances: Mapping[str, Tolerance] | None = None,
                          source: Mapping[str, Any] | None = None) -> Baseline:
    metrics = tuple(extract(results))
    if not metrics:
        raise DDError("The run has no metrics to keep as a baseline (no accuracy, privacy or NAS results); "
                      "run a suite with at least one evaluator enabled.")
    run = results.get("run") or {}
    prov = results.get("provenance") or {}
    info = {"suite": run.get("suite"), "finished": run.get("finished"), "dataset": (results.get("dataset") or
            {}).get("name"), "git": prov.get("git"), "schema_version": results.get("schema_version"),
            **dict(source or {})}
    return Baseline(metrics, dict(tolerances or {}), info)


def save_baseline(baseline: Baseline, path: str | Path) -> Path:
    """Write ``baseline`` atomically (a failed write leaves the old file as it was)."""
    payload = {"kind": BASELINE_KIND, "version": BASELINE_VERSION, "source": dict(baseline.source),
               "tolerances": {k: t.to_json() for k, t in sorted(baseline.tolerances.items())},
               "metrics": [m.to_json() for m in baseline.metrics]}
    return atomic_write_json(path, payload)


def load_baseline(path: str | Path, *, create_hint: str = "") -> Baseline:
    """A baseline file; a missing one is an error that says how to create it (never an empty pass)."""
    path = Path(path)
    if not path.is_file():
        hint = create_hint or f"ddeval check RUN_DIR --baseline {path} --update-baseline"
        raise DDError(f"No baseline at {path}. Create one from a run you trust with `{hint}`, review it, and "
                      "commit it; a check without a baseline never passes.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DDError(f"The baseline {path} cannot be read ({err}); regenerate it with --update-baseline.") \
            from None
    if not isinstance(data, Mapping) or data.get("kind") != BASELINE_KIND:
        raise DDError(f"{path} is not a ddeval baseline (no \"kind\": \"{BASELINE_KIND}\"); point --baseline at "
                      "a file written by --update-baseline.")
    if data.get("version") != BASELINE_VERSION:
        raise DDError(f"{path} is baseline version {data.get('version')!r}; this ddeval reads version "
                      f"{BASELINE_VERSION}. Regenerate it with --update-baseline.")
    items = data.get("metrics")
    if not isinstance(items, list) or not items:
        raise DDError(f"{path} lists no metrics; regenerate it with --update-baseline.")
    metrics = tuple(Metric.from_json(item if isinstance(item, Mapping) else {}, f"{path} metrics[{i}]")
                    for i, item in enumerate(items))
    tol_items = data.get("tolerances") or {}
    if not isinstance(tol_items, Mapping):
        raise DDError(f"{path}: \"tolerances\" must be an object of METRIC: {{abs, rel, gate}}.")
    tolerances = {str(k): Tolerance.from_json(v, f"{path} tolerances.{k}") for k, v in tol_items.items()}
    return Baseline(metrics, tolerances, dict(data.get("source") or {}), path)


# ============================================================================================ comparison
REGRESSION, IMPROVEMENT, UNCHANGED, MISSING, NEW, MOVED = (
    "REGRESSION", "improved", "ok", "MISSING", "new", "moved (not gated)")
_ORDER = {REGRESSION: 0, MISSING: 1, IMPROVEMENT: 2, MOVED: 3, NEW: 4, UNCHANGED: 5}


@dataclass(frozen=True)
class Change:
    status: str
    base: Metric | None
    run: Metric | None
    tolerance: Tolerance

    @property
    def metric(self) -> Metric:
        found = self.run or self.base
        assert found is not None
        return found

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.run is None else self.run.value - self.base.value


@dataclass(frozen=True)
class Comparison:
    changes: tuple[Change, ...]

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.changes)

    @property
    def failed(self) -> bool:
        return any(c.status in (REGRESSION, MISSING) for c in self.changes)

    def moved(self) -> list[Change]:
        return [c for c in self.changes if c.status != UNCHANGED]

    def summary(self) -> str:
        checked = sum(c.base is not None for c in self.changes)
        parts = [f"{checked} baseline metrics checked", f"{self.count(REGRESSION)} regressed",
                 f"{self.count(MISSING)} missing", f"{self.count(IMPROVEMENT)} improved",
                 f"{self.count(UNCHANGED)} within tolerance"]
        if self.count(MOVED):
            parts.append(f"{self.count(MOVED)} moved but not gated")
        if self.count(NEW):
            parts.append(f"{self.count(NEW)} new (not in the baseline)")
        verdict = "FAIL" if self.failed else "PASS"
        return f"{verdict}: " + ", ".join(parts) + "."

    def rows(self, *, everything: bool = False) -> list[list[str]]:
        chosen = self.changes if everything else tuple(self.moved())
        return [[c.status, c.metric.title(), metric_text(c.base), metric_text(c.run),
                 "" if c.delta is None else format_delta(c.delta, c.metric.unit, signed=True),
                 f"{c.metric.direction} is better", c.tolerance.text(c.metric.unit)]
                for c in sorted(chosen, key=lambda c: _ORDER[c.status])]

    def table(self, *, everything: bool = False) -> str:
        """A plain-text table of what moved (every metric with ``everything``) and a one-line verdict."""
        rows = self.rows(everything=everything)
        if not rows:
            return self.summary()
        return format_table(TABLE_HEADERS, rows) + "\n" + self.summary()


TABLE_HEADERS = ["status", "metric", "baseline", "run", "change", "direction", "tolerance"]


def compare(run: Iterable[Metric], baseline: Baseline, *,
            tolerances: Mapping[str, Tolerance] | None = None) -> Comparison:
    """Each baseline metric against the run's; the tolerance of a metric is the command line's, else the
    baseline's, else :data:`DEFAULT_TOLERANCES`."""
    merged = resolve_tolerances(baseline.tolerances, tolerances)
    found = {m.key: m for m in run}
    changes = []
    for base in baseline.metrics:
        tol = merged.get(base.name, FALLBACK_TOLERANCE)
        current = found.pop(base.key, None)
        if current is None:
            changes.append(Change(MISSING, base, None, tol))
            continue
        changes.append(Change(_status(base, current, tol), base, current, tol))
    for current in found.values():
        changes.append(Change(NEW, None, current, merged.get(current.name, FALLBACK_TOLERANCE)))
    return Comparison(tuple(changes))


def _status(base: Metric, run: Metric, tol: Tolerance) -> str:
    gain = run.value - base.value if base.direction == "higher" else base.value - run.value
    if abs(gain) <= tol.allowed(base.value) + 1e-12:
        return UNCHANGED
    if not tol.gate:
        return MOVED
    return IMPROVEMENT if gain > 0 else REGRESSION


# ============================================================================================ formatting
_UNIT_FORMATS = {"fraction": ("{:.2f}%", "{:.2f} points", 100.0), "seconds": ("{:.3g} s", "{:.3g} s", 1.0),
                 "ratio": ("{:.3g}×", "{:.3g}×", 1.0)}


def format_value(value: float, unit: str, *, delta: bool = False, signed: bool = False) -> str:
    """``value`` in ``unit`` (a fraction as a percentage); ``delta``: as a change (a fraction in points)."""
    plain, change, scale = _UNIT_FORMATS.get(unit, ("{:.3f}", "{:.3f}", 1.0))
    sign = "+" if signed and value > 0 else ""
    return sign + (change if delta else plain).format(scale * value)


def format_delta(delta: float, unit: str, *, signed: bool = False) -> str:
    return format_value(delta, unit, delta=True, signed=signed)


def metric_text(metric: Metric | None) -> str:
    """A metric's value (± std) in its unit, or a dash."""
    if metric is None:
        return "—"
    text = format_value(metric.value, metric.unit)
    if metric.std:
        text += f" ± {format_delta(metric.std, metric.unit).replace(' points', '')}"
    return text


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(s.rstrip() for s in out)


# ============================================================================================ front door
def load_results(source: str | Path) -> dict[str, Any]:
    """``results.json`` of a run directory (or the file itself), checked against the results schema."""
    path = Path(source)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise DDError(f"No results.json at {path}: point at a finished run directory (made by `ddeval run`).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DDError(f"{path} cannot be read as JSON ({err}); re-run the suite to rewrite it.") from None
    return dict(validate(data, str(path)))


def check(run: str | Path | Mapping[str, Any], baseline: str | Path | Baseline, *,
          tolerances: Mapping[str, Tolerance] | None = None) -> Comparison:
    """Compare a run (directory, results.json, or results dict) with a baseline (path or object)."""
    results = load_results(run) if isinstance(run, (str, Path)) else dict(validate(run))
    base = baseline if isinstance(baseline, Baseline) else load_baseline(baseline)
    return compare(extract(results), base, tolerances=tolerances)


def with_tolerances(baseline: Baseline, tolerances: Mapping[str, Tolerance]) -> Baseline:
    return replace(baseline, tolerances={**baseline.tolerances, **tolerances})

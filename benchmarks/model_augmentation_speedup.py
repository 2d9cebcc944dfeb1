"""Model augmentation's speed-up over IDC, measured (Zhang et al. 2023 claim "up to 20x").

Runs the packaged ``model-augmentation-speedup`` suite (IDC-I at several outer-iteration budgets, model
augmentation at fewer; digits, ipc 10) into ``reports/benchmarks/model-augmentation/run`` (resumable) and
writes ``README.md`` there: accuracy against distillation time for both, and the speed-up at matched
accuracy, i.e. IDC's time to reach an accuracy over the time model augmentation needs for the same accuracy
(pre-training of its model pool included).

    python benchmarks/model_augmentation_speedup.py [--set KEY=VALUE ...] [--table-only]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite_readme import run_and_write, time_line

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "model-augmentation"
SUITE = "model-augmentation-speedup"


def curve(rows: list[dict], base: str) -> list[tuple[int, float, float, float]]:
    """(iterations, distillation seconds, accuracy mean, std) of every row made by ``base``, fewest first."""
    out = [(int((r.get("method_config") or {}).get("iterations") or 0), float(r["distill_seconds"]),
            float(r["accuracy_mean"]), float(r["accuracy_std"])) for r in rows if r.get("base_method") == base]
    return sorted(out)


def time_to_reach(points: list[tuple[int, float, float, float]], target: float) -> float | None:
    """Seconds of the cheapest budget whose mean accuracy reaches ``target`` (None if none does)."""
    reached = [seconds for _, seconds, acc, _ in points if acc >= target]
    return min(reached) if reached else None


def table(results: dict, command: str) -> str:
    rows = [r for r in results["accuracy"]["rows"] if not r.get("cross_architecture")]
    idc, ma = curve(rows, "idc"), curve(rows, "model-augmentation")
    random = next((r["accuracy_mean"] for r in rows if r["method"] == "random"), None)
    lines = [
        "# Model augmentation against IDC: accuracy for distillation time",
        "",
        f"Data: {results['dataset']['name']} ({results['dataset']['num_train']} training and "
        f"{results['dataset']['num_test']} test images), ipc 10, ConvNet-2 (width 128) for distillation and "
        f"evaluation ({results['accuracy']['recipe']['epochs']} epochs, "
        f"{len(results['run']['seeds']['eval'])} evaluation seeds). Both methods use pixels (IDC-I: 8x8 "
        "images are too small for multi-formation tiles), 20 inner steps per outer iteration and 256 real images "
        "of network training per step; model augmentation adds a pool of 5 early-stage models (2 epochs of "
        "pre-training each, its time included) whose weights it perturbs, instead of a new random network "
        "per outer iteration.",
        "",
        "| method | outer iterations | distillation s | accuracy % |",
        "|---|---|---|---|",
    ]
    for name, points in (("IDC-I", idc), ("model augmentation", ma)):
        lines += [f"| {name} | {it} | {sec:.0f} | {100 * acc:.1f} ± {100 * std:.1f} |" for it, sec, acc, std in points]
    if random is not None:
        lines.append(f"| random subset | - | 0 | {100 * random:.1f} |")
    lines += ["", "Speed-up at matched accuracy (IDC's time to reach the accuracy / model augmentation's):", "",
              "| accuracy reached | IDC-I s | model augmentation s | speed-up |", "|---|---|---|---|"]
    for _, _, target, _ in idc:
        t_idc, t_ma = time_to_reach(idc, target), time_to_reach(ma, target)
        speed = "-" if t_idc is None or t_ma is None or t_ma <= 0 else f"{t_idc / t_ma:.1f}x"
        lines.append(f"| {100 * target:.1f}% | {'-' if t_idc is None else f'{t_idc:.0f}'} | "
                     f"{'not reached' if t_ma is None else f'{t_ma:.0f}'} | {speed} |")
    lines += ["", f"{time_line(results)} Full report: [run/report.md](run/report.md).", "",
              "Regenerate (from the repository root, resumable):", "", f"    {command}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--table-only", action="store_true", help="rewrite README.md from the existing run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    command = "python benchmarks/model_augmentation_speedup.py" + "".join(f" --set {o}" for o in args.overrides)
    if out != OUT:
        command += f" --out {args.out}"
    return run_and_write(SUITE, overrides=args.overrides, out=out, device=args.device, table_only=args.table_only,
                         command=command, table=table)

if __name__ == "__main__":
    sys.exit(main())

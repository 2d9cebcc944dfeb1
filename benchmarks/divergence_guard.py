"""Cost of the per-iteration divergence guard (distillers.methods.common.LossLog) by synthetic-set size.

Each outer iteration of a distillation checks that its loss and synthetic parameters are finite and copies the
parameters aside (the "last good set" kept at a divergence). This times one ``LossLog.add`` with and without
watched parameters, and the finiteness check written two ways (``isfinite().all()``, which builds a boolean
copy, against ``aminmax``, which the guard uses), on one thread, and writes the Markdown table to
``reports/benchmarks/divergence-guard/README.md``:

    python benchmarks/divergence_guard.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from distillers.io import atomic_write_text
from distillers.methods.common import LossLog

OUT = Path(__file__).resolve().parents[1] / "reports" / "benchmarks" / "divergence-guard" / "README.md"
SETS = [("digits, ipc 10", (100, 1, 8, 8)), ("MNIST, ipc 10", (100, 1, 28, 28)),
        ("CIFAR-10, ipc 50", (500, 3, 32, 32)), ("CIFAR-100, ipc 50", (5000, 3, 32, 32))]


def per_call_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--note", default="", help="a sentence on the machine's load, added to the README")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loss = torch.tensor(1.0)
    rows = []
    for name, shape in SETS:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        bare, guarded = LossLog(10**9, "-"), LossLog(10**9, "-", watch=[x])
        rows.append((name, x.numel() * 4 / 2**20, per_call_ms(lambda b=bare: b.add(loss), args.repeats),
                     per_call_ms(lambda g=guarded: g.add(loss), args.repeats),
                     per_call_ms(lambda t=x: bool(torch.isfinite(t).all()), args.repeats),
                     per_call_ms(lambda t=x: bool(torch.isfinite(torch.aminmax(t)[0])), args.repeats)))
    lines = [
        "# Divergence guard: cost per distillation iteration",
        "",
        f"One thread, {platform.processor() or platform.machine()}, torch {torch.__version__}; mean of "
        f"{args.repeats} calls. `LossLog.add` with the set watched = finiteness check of the loss and the set "
        "plus a copy of the set (the last good set a divergence leaves behind)." + (f" {args.note}" if args.note else ""),
        "",
        "| synthetic set | MB | add, nothing watched (ms) | add, set watched (ms) | isfinite().all() (ms) | "
        "aminmax (ms) |",
        "|---|---|---|---|---|---|",
        *[f"| {n} | {mb:.2f} | {a:.3f} | {b:.3f} | {c:.3f} | {d:.3f} |" for n, mb, a, b, c, d in rows],
        "",
        "Regenerate: `python benchmarks/divergence_guard.py`",
        "",
    ]
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

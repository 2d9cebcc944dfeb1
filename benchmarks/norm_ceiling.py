"""How far can the fast path go on this CPU? One SGD step of ConvNet-3 with and without instance norm.

The evaluation-training target is 2.5x the images per second of fp32 eager. This measures one training
step (batch 256, 1x28x28 inputs, width 128, the REFERENCE §1 ConvNet) in four variants, interleaved over
rounds so machine noise hits all of them alike, and reports medians and ratios to the fp32 baseline:

- fp32 eager with instance norm (the baseline every ratio is against);
- the shipped fast path (distillers.fastpath: bf16 autocast + torch.compile) with instance norm;
- the same without any normalisation layer, NCHW and channels_last: a norm that costs nothing could not
  beat these, so they bound what any instance-norm implementation or layout change can gain.

    python benchmarks/norm_ceiling.py [--rounds 7] [--out reports/benchmarks/ceiling]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from distillers import networks
from distillers.fastpath import FastPath
from distillers.io import atomic_write_text

BATCH = 256


def make_step(norm: str, fast: bool, channels_last: bool) -> Callable[[], None]:
    """One closure that runs a full SGD step (forward, backward, update) on fixed random data."""
    g = torch.Generator().manual_seed(0)
    net = networks.create("convnet", channels=1, num_classes=10, image_size=28, norm=norm)
    x = torch.randn(BATCH, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    path = FastPath.resolve(fast, "cpu", steps=10_000)
    forward = path.wrap(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with path.autocast():
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


VARIANTS = {
    "fp32 eager, instance norm (baseline)": ("instancenorm", False, False),
    "fast path as shipped, instance norm": ("instancenorm", True, False),
    "fast path, no norm (NCHW)": ("none", True, False),
    "fast path, no norm (channels_last)": ("none", True, True),
}


def cpu_description() -> str:
    """Model name plus the bf16 matrix features that decide the ceiling (AVX512-BF16, AMX)."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or platform.machine()
    lines = info.read_text().splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown CPU")
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    have = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    amx = "" if "amx_tile" in flags else "; no AMX"
    return f"{name} ({', '.join(have) or 'no bf16 matrix instructions'}{amx})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3, help="steps timed per round and variant")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/ceiling"))
    args = parser.parse_args()
    steps = {name: make_step(*spec) for name, spec in VARIANTS.items()}
    for step in steps.values():  # compile and warm up outside the timed rounds
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                step()
            times[name].append((time.perf_counter() - start) / args.calls)
        print(f"round {r + 1}/{args.rounds}", flush=True)
    base = statistics.median(times[next(iter(VARIANTS))])
    rows = ["| variant | s/step (median) | img/s | ratio to fp32 eager |", "|---|---|---|---|"]
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(f"| {name} | {med:.3f} | {BATCH / med:.0f} | {base / med:.2f}x |")
    cpu = cpu_description()
    text = "\n".join([
        "# Ceiling of the fast path on this CPU: ConvNet-3 training step with and without instance norm",
        "",
        f"Machine: {cpu}, {torch.get_num_threads()} threads (os.cpu_count() = {os.cpu_count()}), torch {torch.__version__}. "
        f"One SGD step, batch {BATCH}, 1x28x28, width 128; median of {args.rounds} interleaved rounds of "
        f"{args.calls} steps after compile and warm-up.",
        "",
        *rows,
        "",
        "The no-norm rows bound every instance-norm implementation and layout: a norm that cost nothing",
        "would make the fast path at most that fast. Where they stay below 2.5x, the evaluation-training",
        "target is out of reach on this hardware with bf16 (the convolutions themselves set the limit).",
        "",
        "Regenerate:",
        "",
        "    python benchmarks/norm_ceiling.py",
        "",
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()

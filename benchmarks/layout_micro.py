"""Why the fast path keeps NCHW: instance norm and a 128->128 convolution, NCHW vs channels_last, fp32 vs bf16.

The first block of ConvNet-3 on 28x28 inputs works on 256x128x32x32 maps (batch 256); the second
convolution sees 256x128x16x16. Forward + backward times in milliseconds (best of 3 rounds of 3 calls).

    python benchmarks/layout_micro.py [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def best_ms(fn: Callable[[], object], rounds: int = 3, calls: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1000)
    return best


def _norm_step(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gy: torch.Tensor) -> object:
    return torch.autograd.grad(F.group_norm(x, 128, w, b), [x, w, b], gy)


def _conv_step(x: torch.Tensor, k: torch.Tensor, gy: torch.Tensor) -> object:
    return torch.autograd.grad(F.conv2d(x, k, padding=1), [x, k], gy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print("| op | dtype | layout | fwd+bwd ms |\n|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for layout in (torch.contiguous_format, torch.channels_last):
            name = "channels_last" if layout == torch.channels_last else "NCHW"
            x = torch.randn(256, 128, 32, 32, generator=g).to(dtype).contiguous(memory_format=layout)
            x.requires_grad_(True)
            w = torch.ones(128, dtype=dtype, requires_grad=True)
            b = torch.zeros(128, dtype=dtype, requires_grad=True)
            gy = torch.randn(x.shape, generator=g).to(dtype).contiguous(memory_format=layout)

            xc = torch.randn(256, 128, 16, 16, generator=g).to(dtype).contiguous(memory_format=layout)
            xc.requires_grad_(True)
            k = (torch.randn(128, 128, 3, 3, generator=g) * 0.05).to(dtype).contiguous(memory_format=layout)
            k.requires_grad_(True)
            gc = torch.randn(256, 128, 16, 16, generator=g).to(dtype).contiguous(memory_format=layout)

            label = str(dtype).replace("torch.", "")
            print(f"| instance norm (GroupNorm(128, 128)) | {label} | {name} | {best_ms(functools.partial(_norm_step, x, w, b, gy)):.0f} |")
            print(f"| conv 3x3 128->128 at 16x16 | {label} | {name} | {best_ms(functools.partial(_conv_step, xc, k, gc)):.0f} |", flush=True)


if __name__ == "__main__":
    main()

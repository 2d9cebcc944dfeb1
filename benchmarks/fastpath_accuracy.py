"""Does the fast path change results? DM on MNIST at ipc 10, fast path against fp32 eager, both directions.

Distils MNIST (``../shared/data/mnist-5k.npz``) with DM twice from the same seed, once with ``fast=False``
(fp32 eager) and once with ``fast=True`` (bf16 autocast, compile when it pays), and evaluates each set on
ConvNet-3 with both evaluation paths over the same 5 seeds. Every (set, path, seed) is a unit cached under
``--out``/units, so an interrupted run resumes. Writes ``--out``/README.md and results.json.

    python benchmarks/fastpath_accuracy.py [--out reports/benchmarks/accuracy] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist-5k.npz"))
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "accuracy"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--ipc", type=int, default=10)
    args = parser.parse_args(argv)

    import distillers
    from ddeval import datasets
    from distillers.errors import DDError
    from distillers.io import atomic_write_json, atomic_write_text
    from distillers.protocol import TrainConfig, train_and_evaluate
    from distillers.synthetic import SyntheticSet

    out = Path(args.out)
    (out / "units").mkdir(parents=True, exist_ok=True)
    try:
        train, test = datasets.load(f"npz:{args.data}")
    except DDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.time()
    sets: dict[str, SyntheticSet] = {}
    for label, fast in (("fp32", False), ("fast", True)):
        folder = out / "synthetic" / f"dm-{label}"
        if (folder / "meta.json").exists():
            sets[label] = SyntheticSet.load(folder)
            continue
        print(f"distil DM ipc {args.ipc} ({label})", flush=True)
        method = distillers.create("dm", iterations=args.iterations, batch_real=args.batch_real, fast=fast)
        syn = method.distill(train, args.ipc, seed=0)
        syn.save(folder)
        sets[label] = syn

    seeds = list(range(1000, 1000 + args.seeds))
    results: dict[str, Any] = {}
    for set_label, syn in sets.items():
        for eval_label, fast in (("fp32", False), ("fast", True)):
            accs, seconds = [], []
            for seed in seeds:
                unit = out / "units" / f"{set_label}-set_{eval_label}-eval_seed{seed}.json"
                if unit.exists():
                    res = json.loads(unit.read_text())
                else:
                    print(f"evaluate {set_label} set, {eval_label} training, seed {seed}", flush=True)
                    r = train_and_evaluate("convnet", syn, test, TrainConfig(epochs=args.epochs, fast=fast),
                                           seed=seed)
                    res = {k: r[k] for k in ("accuracy", "train_seconds", "eval_seconds", "fast")}
                    atomic_write_json(unit, res)
                accs.append(res["accuracy"])
                seconds.append(res["train_seconds"])
            results[f"{set_label}-set/{eval_label}-eval"] = {
                "accuracies": accs, "accuracy_mean": statistics.mean(accs), "accuracy_std": statistics.stdev(accs),
                "train_seconds_mean": statistics.mean(seconds), "path": res["fast"],
                "distill_seconds": syn.meta.get("distill_seconds"), "distill_path": syn.meta.get("fast")}

    def pt(key: str) -> float:
        return 100 * results[key]["accuracy_mean"]

    eval_gap = {s: pt(f"{s}-set/fast-eval") - pt(f"{s}-set/fp32-eval") for s in sets}
    set_gap = {e: pt(f"fast-set/{e}-eval") - pt(f"fp32-set/{e}-eval") for e in ("fp32", "fast")}
    payload = {"data": args.data, "ipc": args.ipc, "iterations": args.iterations, "batch_real": args.batch_real,
               "epochs": args.epochs, "seeds": seeds, "results": results,
               "fast_minus_fp32_eval_points": eval_gap, "fast_minus_fp32_set_points": set_gap,
               "wall_seconds_this_invocation": round(time.time() - started, 1)}
    atomic_write_json(out / "results.json", payload)

    lines = [
        "# Fast path vs fp32 eager: accuracy unchanged?",
        "",
        f"DM on MNIST ({Path(args.data).name}, 5,000 training images; 10,000 test images) at ipc {args.ipc}, "
        f"{args.iterations} iterations, batch_real {args.batch_real}, distillation seed 0, once with the fast "
        "path and once in fp32 eager. Each set is evaluated on ConvNet-3 (300 epochs, standard recipe) with "
        f"both evaluation paths over the same {len(seeds)} seeds {seeds}. Accuracy in %, mean ± std.",
        "",
        "| synthetic set (distilled with) | evaluated fp32 eager | evaluated fast path | fast − fp32 |",
        "|---|---|---|---|",
    ]
    for s in sets:
        a, b = results[f"{s}-set/fp32-eval"], results[f"{s}-set/fast-eval"]
        lines.append(f"| {s} ({a['distill_path'] or 'fp32 eager'}, {a['distill_seconds']:.0f} s) | "
                     f"{100 * a['accuracy_mean']:.2f} ± {100 * a['accuracy_std']:.2f} | "
                     f"{100 * b['accuracy_mean']:.2f} ± {100 * b['accuracy_std']:.2f} | {eval_gap[s]:+.2f} |")
    lines += [
        "",
        "Same set, other evaluation path (must stay within 0.5 points): "
        + ", ".join(f"{s} set {g:+.2f}" for s, g in eval_gap.items()) + ".",
        "Other distillation path, same evaluation: "
        + ", ".join(f"{e} evaluation {g:+.2f}" for e, g in set_gap.items()) + ".",
        "",
        "Mean training time per evaluation network (indicative only: other work shared the 2 cores during "
        "the committed run; reports/benchmarks/cpu/ has clean side-by-side timings): "
        + ", ".join(f"{k} {v['train_seconds_mean']:.0f} s ({v['path']})" for k, v in results.items()) + ".",
        "",
        "Regenerate (resumable; units are cached under units/):",
        "",
        "    python benchmarks/fastpath_accuracy.py --out reports/benchmarks/accuracy",
        "",
    ]
    atomic_write_text(out / "README.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

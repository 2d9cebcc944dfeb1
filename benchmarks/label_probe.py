"""Do a set's images look like their labels? Agreement of a linear probe trained on the real data.

Fits a logistic regression on the real training images (flattened pixels) and reports, for each saved
synthetic set given and for the real-init starting point of a parameterisation, the fraction of images the
probe assigns to their own label (the real test set's agreement is printed for scale). A starting point near
chance means the parameterisation begins from images of the wrong classes. It found that addressing's
recipe-1 real init did (9% at 128 bases on MNIST, against 94% for recipe 2); see reports/mnist-part2/FINDINGS.md.

    python benchmarks/label_probe.py --init addressing:bases=128,ipc=10 --init addressing:bases=16,ipc=1 \\
        --set reports/mnist-part2/run/synthetic/dm-addressing-ipc10-seed0 --out reports/mnist-part2/label-probe/recipe-2

For addressing sets and inits it also reports how the slots mix the bases: the share of each slot's absolute
coefficients on bases of its own class, and the L1 mass per slot (1 plus small noise at real init).

The recipe-1 figures come from the same command run on the code and sets of 62537de (PYTHONPATH pointing
at a checkout of it; FINDINGS.md gives the commands).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

from ddeval.datasets import load
from distillers import parameterize
from distillers.errors import DDError
from distillers.io import atomic_write
from distillers.parameterize import Addressing
from distillers.synthetic import SyntheticSet


def _agreement(probe: LogisticRegression, x: torch.Tensor, y: torch.Tensor) -> float:
    predicted = torch.as_tensor(probe.predict(x.detach().flatten(1).double().numpy()))
    return round(float((predicted == y).float().mean()), 4)


def _address_mass(compact: dict[str, torch.Tensor]) -> dict[str, float]:
    """How an addressing set mixes its bases: the share of each slot's absolute coefficients on bases of its
    own class (1 at a one-hot real init; 1/classes when spread evenly), and the mean L1 mass per slot."""
    addresses = compact["addresses"].abs()
    classes, _, bases = addresses.shape
    own = Addressing.base_classes(bases, classes)[None, None, :] == torch.arange(classes)[:, None, None]
    share = (addresses * own).sum(-1) / addresses.sum(-1).clamp_min(1e-12)
    return {"own_class_share": round(float(share.mean()), 4),
            "l1_per_slot": round(float(addresses.sum(-1).mean()), 3)}


def _init_spec(text: str) -> tuple[str, dict[str, int], int]:
    """``NAME:key=value,...,ipc=N`` -> (name, parameterisation args, ipc)."""
    name, _, rest = text.partition(":")
    args = dict(item.split("=", 1) for item in rest.split(",") if item)
    try:
        ipc = int(args.pop("ipc", 1))
        return name, {k: int(v) for k, v in args.items()}, ipc
    except ValueError as err:
        raise DDError(f"--init {text!r}: values must be integers, e.g. addressing:bases=128,ipc=10") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="npz:../shared/data/mnist-5k.npz")
    parser.add_argument("--set", action="append", default=[], help="a saved synthetic set folder (repeatable)")
    parser.add_argument("--init", action="append", default=[], help="NAME:key=value,...,ipc=N (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        train, test = load(args.data)
        probe = LogisticRegression(max_iter=300).fit(train.x.flatten(1).double().numpy(), train.y.numpy())
        result = {"data": args.data, "real_test": _agreement(probe, test.x, test.y), "sets": {}, "inits": {}}
        for folder in args.set:
            syn = SyntheticSet.load(folder)
            if syn.images.shape[1:] != train.x.shape[1:]:
                raise DDError(f"{folder} holds {tuple(syn.images.shape[1:])} images, {args.data} has "
                              f"{tuple(train.x.shape[1:])}: pass the --data it was distilled from.")
            entry = {"images": len(syn), "agreement": _agreement(probe, syn.images, syn.hard_labels)}
            if (syn.parameterization or {}).get("name") == "addressing" and syn.compact is not None:
                entry["addresses"] = _address_mass(syn.compact)
            result["sets"][str(folder)] = entry
        for text in args.init:
            name, pargs, ipc = _init_spec(text)
            param = parameterize.create(name, pargs, train, ipc, "real", torch.Generator().manual_seed(args.seed))
            labels = torch.arange(train.num_classes).repeat_interleave(param.per_class)
            entry = {"recipe": getattr(type(param), "recipe_version", 1), "images": len(labels),
                     "agreement": _agreement(probe, param.decode(), labels)}
            if isinstance(param, Addressing):
                entry["addresses"] = _address_mass({"addresses": param.addresses.detach()})
            result["inits"][text] = entry
    except DDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(args.out / "label-probe.json", lambda f: f.write(text.encode()))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

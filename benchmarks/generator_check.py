"""Does the latents parameterisation's generator cover the real data? Inversion error and sample spread.

Trains (or loads from the cache) the conditional GAN that ``parameterization: latents`` uses on a data set,
then measures what that parameterisation relies on: how closely real images invert into it (pixel MSE of
``per_class`` real images per class after the parameterisation's inversion, beside the data's variance, the
error of predicting the mean) and how much its samples vary with z (:func:`distillers.generative.diversity_ratio`;
near 0 means mode collapse). Writes ``OUT/generator-check.json`` and a picture: rows of samples for three z,
then the inverted images, then the real images they invert.

    python benchmarks/generator_check.py --data npz:../shared/data/mnist-5k.npz --out reports/mnist-part2/generator-check/after-fix
    python benchmarks/generator_check.py ... --from-set FOLDER   # the generator stored in a saved latents set

A collapsed generator (the version-1 discriminator on MNIST) gave an inversion MSE of 0.92 against a data
variance of 0.99 and a spread ratio of 0.13 (now 0.14 and 0.93); see ``reports/mnist-part2/FINDINGS.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F

from ddeval.datasets import load
from distillers.data import LabeledData
from distillers.errors import DDError
from distillers.generative import (
    COLLAPSE_RATIO,
    FORMAT_VERSION,
    Generator,
    describe,
    diversity_ratio,
    invert,
    load_or_train_generator,
)
from distillers.io import atomic_write_json
from distillers.parameterize import Latents, rebuild
from distillers.synthetic import SyntheticSet


def stored_generator(folder: Path, real: LabeledData) -> Generator:
    """The frozen generator a saved latents set carries in its compact form (so an old set's generator,
    e.g. one from git history, can be checked after the recipe changed)."""
    syn = SyntheticSet.load(folder)
    if syn.parameterization is None or syn.parameterization.get("name") != "latents" or syn.compact is None:
        raise DDError(f"{folder} is not a set distilled with parameterization: latents; give such a set's folder.")
    spec = syn.parameterization
    if tuple(spec.get("image_shape", ())) != tuple(real.image_shape) or spec.get("num_classes") != real.num_classes:
        raise DDError(f"{folder} was distilled from {spec.get('num_classes')} classes of shape "
                      f"{spec.get('image_shape')}, not this data's {real.num_classes} of {list(real.image_shape)}; "
                      "give the --data it was distilled from.")
    return cast(Latents, rebuild(spec, syn.compact)).generator.eval()


def check(data: str, out: Path, per_class: int, seed: int, from_set: Path | None = None) -> dict:
    defaults = Latents.Config()
    real, _ = load(data)
    start = time.perf_counter()
    gen = (stored_generator(from_set, real) if from_set is not None
           else load_or_train_generator(real, defaults.generator_config(), cache_dir=defaults.cache_dir))
    seconds = time.perf_counter() - start
    g = torch.Generator().manual_seed(seed)
    x, y = real.x[real.stratified_indices(per_class, g)], torch.arange(real.num_classes).repeat_interleave(per_class)
    z = invert(gen, x, y, steps=defaults.inversion_steps, lr=defaults.inversion_lr, generator=g)
    with torch.no_grad():
        inverted = gen(z, y)
        mse = F.mse_loss(inverted, x).item()
        samples = gen(torch.randn(3 * real.num_classes, gen.z_dim, generator=g),
                      torch.arange(real.num_classes).repeat(3))
    ratio = diversity_ratio(gen, real, torch.Generator().manual_seed(seed))
    source = str(from_set) if from_set is not None else f"cache (format {FORMAT_VERSION})"
    result = {"data": data, "generator": source, "architecture": describe(gen),
              "seconds_to_train_or_load": round(seconds, 1), "inverted_per_class": per_class,
              "inversion_mse": round(mse, 4), "data_variance": round(x.var().item(), 4),
              "diversity_ratio": round(ratio, 3), "collapsed": ratio < COLLAPSE_RATIO}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "generator-check.json", result)
    try:
        import torchvision

        mean = torch.tensor(real.mean).view(1, -1, 1, 1)
        std = torch.tensor(real.std).view(1, -1, 1, 1)
        first = torch.arange(0, len(x), per_class)  # one image per class
        grid = torch.cat([samples, inverted[first], x[first]]) * std + mean
        torchvision.utils.save_image(grid.clamp(0, 1), out / "generator-check.png", nrow=real.num_classes)
    except ImportError:
        pass
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="npz:../shared/data/mnist-5k.npz")
    parser.add_argument("--out", type=Path, default=Path("reports/mnist-part2"))
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-set", type=Path, default=None,
                        help="check the generator stored in this saved latents set instead of the cached one")
    args = parser.parse_args(argv)
    try:
        result = check(args.data, args.out, args.per_class, args.seed, args.from_set)
    except DDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

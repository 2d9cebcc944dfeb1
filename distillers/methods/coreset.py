"""Coreset baselines: pick real images (random, herding, k-center, k-means) or draw noise (the floor).

Every selection method returns *real* training images with hard labels (their indices into the real set are
kept in ``meta["indices"]``, which the privacy evaluation needs: selected images are members verbatim).
Herding, k-center and k-means work in an embedding space: raw pixels, or the penultimate features of a
ConvNet trained briefly on the real data (``embedding="convnet"``, the default, as in the DC paper's
baselines). ``embed_epochs=10`` is enough for class-discriminative features on small sets (e.g. ~60 SGD
steps on scikit-learn digits, ~200 on a 5,000-image MNIST subset) at a small fraction of the cost of one
300-epoch evaluation run; raise it for large, hard data sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from distillers.config import check
from distillers.data import LabeledData
from distillers.fastpath import FastPath
from distillers.methods.base import Distiller
from distillers.methods.common import build_network, check_network, class_labels, draw_seed, embed
from distillers.synthetic import SyntheticSet


class RandomNoise(Distiller):
    """N(0, 1) images in the normalised space with hard labels: the accuracy floor, not a method."""

    name = "noise"

    @dataclass(frozen=True)
    class Config:
        pass

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        images = torch.randn((real.num_classes * ipc, *real.image_shape), generator=generator)
        return self.make_set(images, class_labels(real.num_classes, ipc), real)


class RandomSubset(Distiller):
    """``ipc`` real images per class drawn uniformly at random (the baseline every method must beat)."""

    name = "random"

    @dataclass(frozen=True)
    class Config:
        pass

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        idx = real.stratified_indices(ipc, generator)
        return self.make_set(real.x[idx], real.y[idx], real, indices=idx.tolist())


class _EmbeddingSelector(Distiller):
    """Shared machinery: embed the real images, then pick ``ipc`` of each class with :meth:`_select`."""

    @dataclass(frozen=True)
    class Config:
        embedding: Literal["pixels", "convnet"] = "convnet"
        network: str = "convnet"
        network_args: dict[str, Any] = field(default_factory=dict)
        embed_epochs: int = 10
        fast: bool = True

        def __post_init__(self) -> None:
            check(isinstance(self.fast, bool), f"fast must be true or false, got {self.fast!r}.")
            check(self.embedding in ("pixels", "convnet"),
                  f'embedding must be "pixels" or "convnet", got {self.embedding!r}.')
            check(self.embed_epochs >= 1, f"embed_epochs must be at least 1, got {self.embed_epochs}.")
            check_network(self.network, self.network_args)

    def _distill(self, real: LabeledData, ipc: int, generator: torch.Generator, device: torch.device,
                 progress: bool) -> SyntheticSet:
        features, path = self._embed(real, generator, device)
        chosen = []
        for c in range(real.num_classes):
            members = real.indices_of(c)
            local = self._select(features[members], ipc, generator)
            chosen.append(members[local])
        idx = torch.cat(chosen)
        meta: dict[str, Any] = {"fast": path} if path else {}
        return self.make_set(real.x[idx], real.y[idx], real, indices=idx.tolist(), **meta)

    def _embed(self, real: LabeledData, generator: torch.Generator,
               device: torch.device) -> tuple[torch.Tensor, str | None]:
        """Float64 CPU features ``[N, D]`` of every real image, and the fast path that trained the embedding
        network (``None`` for pixels)."""
        cfg = self.config
        if cfg.embedding == "pixels":
            return real.x.flatten(1).double(), None
        from distillers import protocol

        net = build_network(cfg.network, real, draw_seed(generator), cfg.network_args, device)
        stats = protocol.train(net, real, protocol.TrainConfig(epochs=cfg.embed_epochs, fast=cfg.fast),
                               generator=generator, device=device)
        net.eval()
        out = []
        with torch.no_grad(), FastPath.resolve(cfg.fast, device, steps=0).autocast():
            for batch in real.x.split(1024):
                out.append(embed(net, batch.to(device)).flatten(1).double().cpu())
        return torch.cat(out), str(stats["fast"])

    def _select(self, features: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class Herding(_EmbeddingSelector):
    """Herding (Welling 2009; as used by iCaRL and the DC paper): greedily add the image that keeps the mean
    embedding of the selected images closest to the class mean."""

    name = "herding"

    @dataclass(frozen=True)
    class Config(_EmbeddingSelector.Config):
        pass

    def _select(self, features: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        target = features.mean(0)
        total = torch.zeros_like(target)
        taken = torch.zeros(len(features), dtype=torch.bool)
        picks = []
        for step in range(k):
            dist = ((total + features) / (step + 1) - target).norm(dim=1)
            dist[taken] = float("inf")
            i = int(dist.argmin())
            picks.append(i)
            taken[i] = True
            total = total + features[i]
        return torch.tensor(picks, dtype=torch.long)


class KCenter(_EmbeddingSelector):
    """Greedy k-center (Sener & Savarese 2018): repeatedly add the image farthest from those already chosen.

    The first image is the one closest to the class mean (``first="mean"``) or a random one (``"random"``).
    """

    name = "kcenter"

    @dataclass(frozen=True)
    class Config(_EmbeddingSelector.Config):
        first: Literal["mean", "random"] = "mean"

        def __post_init__(self) -> None:
            super().__post_init__()
            check(self.first in ("mean", "random"), f'first must be "mean" or "random", got {self.first!r}.')

    def _select(self, features: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        if self.config.first == "mean":
            first = int((features - features.mean(0)).norm(dim=1).argmin())
        else:
            first = int(torch.randint(0, len(features), (1,), generator=generator))
        picks = [first]
        nearest = (features - features[first]).norm(dim=1)
        nearest[first] = -1.0
        while len(picks) < k:
            i = int(nearest.argmax())
            picks.append(i)
            nearest = torch.minimum(nearest, (features - features[i]).norm(dim=1))
            nearest[picks] = -1.0  # never pick an image twice, even among exact duplicates
        return torch.tensor(picks, dtype=torch.long)


class KMeans(_EmbeddingSelector):
    """Per-class k-means with k = ipc (k-means++ seeding, Lloyd iterations, best of ``n_init`` runs by
    inertia); the real image nearest each centre is kept (distinct images)."""

    name = "kmeans"

    @dataclass(frozen=True)
    class Config(_EmbeddingSelector.Config):
        n_init: int = 3
        max_iter: int = 100

        def __post_init__(self) -> None:
            super().__post_init__()
            check(self.n_init >= 1, f"n_init must be at least 1, got {self.n_init}.")
            check(self.max_iter >= 1, f"max_iter must be at least 1, got {self.max_iter}.")

    def _select(self, features: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        best, best_inertia = None, float("inf")
        for _ in range(self.config.n_init):
            centres, inertia = kmeans(features, k, generator, max_iter=self.config.max_iter)
            if inertia < best_inertia:
                best, best_inertia = centres, inertia
        assert best is not None
        dist = torch.cdist(best, features)  # [k, n]
        picks: list[int] = []
        for row in dist:
            row = row.clone()
            row[picks] = float("inf")
            picks.append(int(row.argmin()))
        return torch.tensor(picks, dtype=torch.long)


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, *, max_iter: int = 100
           ) -> tuple[torch.Tensor, float]:
    """Lloyd's k-means on the rows of ``x`` with k-means++ seeding from ``generator``.

    Returns the centres ``[k, D]`` and the inertia (sum of squared distances to the nearest centre). An empty
    cluster is re-seeded with the point farthest from its centre, so exactly ``k`` centres are returned.
    """
    n = len(x)
    first = int(torch.randint(0, n, (1,), generator=generator))
    centres = [x[first]]
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        weights = closest.clamp_min(0)
        if float(weights.sum()) <= 0:  # every point coincides with a centre: pick uniformly
            weights = torch.ones(n, dtype=x.dtype)
        i = int(torch.multinomial(weights.float(), 1, generator=generator))
        centres.append(x[i])
        closest = torch.minimum(closest, ((x - x[i]) ** 2).sum(1))
    c = torch.stack(centres)
    assign = None
    for _ in range(max_iter):
        d2 = torch.cdist(x, c) ** 2
        new_assign = d2.argmin(1)
        if assign is not None and bool((new_assign == assign).all()):
            break
        assign = new_assign
        point_d2 = d2.gather(1, assign[:, None]).squeeze(1)
        for j in range(k):
            members = assign == j
            if bool(members.any()):
                c[j] = x[members].mean(0)
            else:
                far = int(point_d2.argmax())
                c[j] = x[far]
                point_d2[far] = 0
    inertia = float((torch.cdist(x, c) ** 2).min(1).values.sum())
    return c, inertia

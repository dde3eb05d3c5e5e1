"""Ablation curves (paper Fig. 4 right): the fraction of a concept's pixels removed by ablating
the top-n units of each ranking everywhere."""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import pandas as pd
import torch

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.distributed import all_sum, batches, rank_world
from core.base.errors import ArgumentTypeError, InputError
from core.base.sampling import z_range
from core.base.sharing import long_computation
from core.base.validate import check_callable, check_int, check_samples, check_units, concept_mask
from core.engine.bases import learned
from core.engine.causal.common import checked_models, n_units_of
from core.engine.intervention import Edit, generate

__all__ = ["ablation_curve", "removal_fraction", "CURVE_VERSION", "COUNTS"]

CURVE_VERSION = "curve-v2"   # bump when ablation_curve() changes what it returns for the same arguments
COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20)


def _check_curve(generator, segmenter, layer, concept, rankings, counts, n_samples, seed, batch_size, progress,
                 basis=None):
    layer, c = checked_models(generator, segmenter, layer, concept)
    if not isinstance(rankings, dict):
        raise ArgumentTypeError(f"rankings must be a dict {{name: unit list}}, got {type(rankings).__name__}",
                                fix="e.g. rankings={'ace': res.ranking[:20].tolist()}")
    if not rankings:
        raise InputError("rankings is empty: there is nothing to ablate", fix="give rankings at least one unit list")
    n_units = n_units_of(generator, layer, basis)
    ranks = {str(name): check_units(r, n_units, layer, f"rankings[{name!r}]") for name, r in rankings.items()}
    if isinstance(counts, (str, bytes)):
        raise ArgumentTypeError("counts must be a list of unit counts, got a string", fix="e.g. counts=(1, 5, 10)")
    try:
        counts = [check_int("counts", n, 1, what="whole numbers of units >= 1") for n in counts]
    except TypeError:
        raise ArgumentTypeError(f"counts must be a list of unit counts, got {type(counts).__name__}",
                                fix="e.g. counts=(1, 5, 10)") from None
    if not counts:
        raise InputError("counts is empty: no point of the curve to measure", fix="give counts, e.g. (1, 5, 10)")
    n_samples = check_samples("n_samples", n_samples, 1, images_per_sample=1 + len(ranks) * len(counts))
    seed, batch_size = check_int("seed", seed), check_int("batch_size", batch_size, 1)
    check_callable("progress", progress)
    return layer, c, ranks, counts, n_samples, seed, batch_size


@long_computation("the ablation curve", fix="lower batch_size=")
def ablation_curve(generator, segmenter, layer, concept, rankings: dict[str, Sequence[int]],
                   counts: Sequence[int] = COUNTS, n_samples: int = 500, seed: int = 3, batch_size: int = 25,
                   progress: Callable | None = None, basis=None, *, cache: bool = True,
                   cached_only: bool = False) -> pd.DataFrame | None:
    """Fraction of the concept's pixels removed by ablating the top-n units of each ranking
    over the whole featuremap (Fig. 4 right). One row per (ranking, n). ``basis``: the rankings
    are of that basis's features.

    Stored under ``cache/curve`` keyed by both models' weights, layer, concept, rankings, counts,
    samples and seed; ``cached_only=True`` returns the stored curve or None, computing nothing.
    The frame's ``attrs`` say whether it was ``stored`` and how many ``seconds`` it took."""
    layer, c, ranks, counts, n_samples, seed, batch_size = _check_curve(
        generator, segmenter, layer, concept, rankings, counts, n_samples, seed, batch_size, progress, basis)
    basis = learned(basis)
    parts = {"layer": layer, "concept": int(c), "rankings": sorted((k, [int(u) for u in r]) for k, r in ranks.items()),
             "counts": counts, "n": n_samples, "seed": seed,
             **({"basis": basis.cache_key} if basis is not None else {})}

    def compute():
        t = time.perf_counter()
        df = _curve(generator, segmenter, layer, c, ranks, counts, n_samples, seed, batch_size, progress, basis)
        df.attrs.update(stored=False, seconds=time.perf_counter() - t)
        return df

    return _cache.measure("curve", CURVE_VERSION, models={"generator": generator, "segmenter": segmenter},
                          parts=parts, compute=compute, codec=_cache.FrameCodec(), cache=cache,
                          cached_only=cached_only)


@torch.no_grad()
def _curve(generator, segmenter, layer, c, ranks, counts, n_samples, seed, batch_size, progress, basis):
    dev = device_of(generator)
    keys = [("base", 0)] + [(name, n) for name in ranks for n in counts]
    px = torch.zeros(len(keys), dtype=torch.float64, device=dev)      # concept pixels; no host sync per batch
    done, world = 0, rank_world()[1]
    for a, b in batches(n_samples, batch_size):          # this process's share under torchrun
        z = z_range(seed, a, b, generator.z_dim, dev)
        px[0] += concept_mask(segmenter, generate(generator, z), c).sum()
        j = 1
        for name, r in ranks.items():
            for n in counts:
                px[j] += concept_mask(segmenter, generate(generator, z, [Edit(layer, r[:n], basis=basis)]), c).sum()
                j += 1
        done += b - a
        if progress:
            progress(min(n_samples, done * world), n_samples)
    total = dict(zip(keys, all_sum(px.cpu().tolist())))
    base = total[("base", 0)]
    rows = [{"ranking": name, "n": n, "removed": 1 - total[(name, n)] / base if base else math.nan}
            for name in ranks for n in counts]
    return pd.DataFrame(rows)


def removal_fraction(generator, segmenter, layer, concept, units, n_samples=200, seed=5, batch_size=25, *,
                     basis=None, cache: bool = True) -> float:
    """Fraction of the concept's pixels removed by ablating ``units`` everywhere."""
    df = ablation_curve(generator, segmenter, layer, concept, {"units": list(units)}, counts=(len(units),),
                        n_samples=n_samples, seed=seed, batch_size=batch_size, basis=basis, cache=cache)
    return float(df.removed.iloc[0])

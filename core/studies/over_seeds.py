"""Causal results over seeds and generators, with intervals: the removal table (paper Fig. 9–10)
and ACE-vs-IoU ablation curves, each repeated with fresh seeds (``core.base.sampling.STREAMS``
says which draw each seed makes)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.base.distributed import gather_objects, local, rank_world
from core.base.errors import ArgumentTypeError, ConceptAbsentError, InputError
from core.base.hooks import layer_units
from core.base.sampling import stream_seed
from core.base.sharing import long_computation
from core.base.validate import check_callable, check_int, check_samples
from core.engine.bases import learned
from core.engine.causal import ablation_curve, ace, removal_fraction
from core.engine.causal.common import checked_models
from core.engine.causal.effect import ace_options

__all__ = ["mean_interval", "check_seeds", "removal_table", "removal_over_seeds", "curve_over_seeds"]


def check_seeds(seeds) -> list[int]:
    """A non-empty list of whole-number seeds, refused with the fix otherwise."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ArgumentTypeError(f"seeds must be a list of whole numbers, got {seeds!r:.40}", fix="e.g. seeds=(0, 1, 2)")
    seeds = [check_int("seeds", x) for x in seeds]
    if not seeds:
        raise InputError("seeds must name at least one seed", fix="e.g. seeds=(0, 1, 2)")
    return seeds


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (one per seed) and its 95% t-interval; the bounds
    are NaN with fewer than two values. Every interval over seeds in GANatomy is this one."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    from scipy import stats  # the t quantile only (scipy.stats is slow to import at start-up)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


@long_computation("the removal table", fix="lower n_samples= or batch_size=")
def removal_table(generators: dict, segmenter, layer: str, concepts, n_units: int = 20,
                  ace_steps: int = 150, n_samples: int = 200, seed: int = 0, sample_seed: int = 5,
                  progress: Callable | None = None, cache: bool = True, **ace_kw) -> pd.DataFrame:
    """Percent of each concept's pixels removed by ablating its ``n_units`` causal units (found by
    :func:`~core.engine.causal.ace` with ``seed``), per generator (e.g. one per scene type) — the
    paper's Fig. 9–10 table, measured on ``n_samples`` images drawn with ``sample_seed``.
    ``concepts``: a list used for every generator, or {generator name: [concepts]}. A concept a
    generator never draws (:class:`~core.base.errors.ConceptAbsentError`) is a row with NaN and
    its reason; any other error is raised."""
    if not isinstance(generators, dict) or not generators:
        raise InputError(f"generators must be a non-empty dict {{name: generator}}, got {generators!r:.60}",
                         fix="e.g. generators={'town': core.load_generator('toyworld/town')}")
    check_int("n_units", n_units, 1)
    check_samples("ace_steps", ace_steps, 1, images_per_sample=3 * 4)
    check_samples("n_samples", n_samples, 1)
    check_int("seed", seed)
    check_int("sample_seed", sample_seed)
    check_callable("progress", progress)
    ace_options(None, {**ace_kw, "n_steps": ace_steps, "top_n": n_units})      # unknown options refused first
    rows = []
    jobs = [(g, c) for g in generators for c in (concepts[g] if isinstance(concepts, dict) else concepts)]
    rank, world = rank_world()          # under torchrun each process takes whole jobs: i % world
    for i, (gname, concept) in enumerate(jobs):
        if i % world != rank:
            continue
        G = generators[gname]
        try:
            with local():
                res = ace(G, segmenter, layer, concept, n_steps=ace_steps, top_n=n_units, seed=seed, cache=cache,
                          **ace_kw)
                removed = removal_fraction(G, segmenter, layer, concept, res.units, n_samples=n_samples,
                                           seed=sample_seed, cache=cache)
            rows.append((i, {"generator": gname, "concept": concept, "units": res.units,
                             "removed_percent": 100 * removed}))
        except ConceptAbsentError as e:       # the concept never appears in this generator's scenes
            rows.append((i, {"generator": gname, "concept": concept, "units": [], "removed_percent": math.nan,
                             "note": str(e)}))
        if progress:
            progress(min(len(jobs), (len(rows)) * world), len(jobs))
    every = sorted((row for part in gather_objects(rows) for row in part), key=lambda t: t[0])
    return pd.DataFrame([row for _, row in every])


def removal_over_seeds(generators: dict, segmenter, layer: str, concepts, seeds: Sequence[int] = (0, 1, 2),
                       n_units: int = 20, ace_steps: int = 150, n_samples: int = 200,
                       progress: Callable | None = None, cache: bool = True, **ace_kw) -> pd.DataFrame:
    """:func:`removal_table` once per seed (a fresh ACE with that seed, fresh images: stream
    ``removal.over_seeds``): per (generator, concept), the mean percent removed over seeds, its 95%
    t-interval (``ci_low``, ``ci_high``; NaN with one seed) and the per-seed values."""
    seeds = check_seeds(seeds)
    check_callable("progress", progress)
    tables = []
    for i, seed in enumerate(seeds):
        step = (lambda d, t, i=i: progress(i * t + d, len(seeds) * t)) if progress else None
        tables.append(removal_table(generators, segmenter, layer, concepts, n_units=n_units, ace_steps=ace_steps,
                                    n_samples=n_samples, seed=seed,
                                    sample_seed=stream_seed(seed, "removal.over_seeds"), progress=step, cache=cache,
                                    **ace_kw).assign(seed=seed))
    every = pd.concat(tables, ignore_index=True)
    rows = []
    for (gname, concept), g in every.groupby(["generator", "concept"], sort=False):
        v = g.removed_percent.dropna()
        mean, low, high = mean_interval(v)
        rows.append({"generator": gname, "concept": concept, "removed_percent": mean, "ci_low": low,
                     "ci_high": high, "seeds": len(v), "per_seed": g.removed_percent.tolist()})
    return pd.DataFrame(rows)


def curve_over_seeds(generator, segmenter, layer: str, concept, seeds: Sequence[int] = (0, 1, 2),
                     counts: Sequence[int] = (1, 2, 5, 10, 20), n_samples: int = 200, ace_steps: int = 150,
                     dissect_samples: int = 400, progress: Callable | None = None, cache: bool = True,
                     cached_only: bool = False, basis=None, **ace_kw) -> pd.DataFrame | None:
    """ACE vs IoU ablation curves over seeds: for each seed a fresh ACE with that seed (initialised
    from the IoU of the layer's dissection of ``dissect_samples``) and fresh images (stream
    ``curve.over_seeds``); per (ranking, n): the mean fraction removed over seeds, its 95%
    t-interval (``ci_low``, ``ci_high``) and the per-seed values. Every piece is cached, so a second
    call is immediate; ``cached_only=True`` returns None unless every piece is stored. ``basis``: the
    rankings and ablations are of that basis's features. ``ace_kw``: ACE's other options
    (:class:`~core.engine.causal.AceOptions`, e.g. ``k_samples``, ``pool_size``, ``sampling``)."""
    seeds = check_seeds(seeds)
    check_callable("progress", progress)
    ace_options(None, {**ace_kw, "n_steps": ace_steps, "dissect_samples": dissect_samples})  # unknown ones refused
    layer, c = checked_models(generator, segmenter, layer, concept)
    basis = learned(basis, layer_units(generator, layer), layer)
    counts = [int(n) for n in counts]
    per_seed = []
    for i, seed in enumerate(seeds):
        res = ace(generator, segmenter, layer, c, n_steps=ace_steps, dissect_samples=dissect_samples, seed=seed,
                  cache=cache, cached_only=cached_only, basis=basis, **ace_kw)
        if res is None:
            return None
        top = max(counts)
        rankings = {"ace": res.ranking[:top].tolist(), "iou": np.argsort(-res.init, kind="stable")[:top].tolist()}
        df = ablation_curve(generator, segmenter, layer, c, rankings, counts=counts, n_samples=n_samples,
                            seed=stream_seed(seed, "curve.over_seeds"), cache=cache, cached_only=cached_only,
                            basis=basis)
        if df is None:
            return None
        per_seed.append(df.assign(seed=seed))
        if progress:
            progress(i + 1, len(seeds))
    every = pd.concat(per_seed, ignore_index=True)
    rows = []
    for (name, n), g in every.groupby(["ranking", "n"], sort=True):
        mean, low, high = mean_interval(g.removed.to_numpy())
        rows.append({"ranking": name, "n": int(n), "removed": mean, "ci_low": low, "ci_high": high,
                     "seeds": len(g), "per_seed": g.removed.tolist()})
    return pd.DataFrame(rows)

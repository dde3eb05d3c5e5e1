"""Where a concept can be inserted, by context (paper §4.4, Fig. 11, S-6.5), with toyworld's
context rules and intervals over seeds.

:func:`core.engine.causal.context_study` inserts a concept's units in a block of featuremap
cells at every position; this module says what each position *was* and whether an edit broke
a rule, from the segmenter's labels of the unedited and the edited image:

- **context classes** (:func:`toyworld_classes`): the majority class under the brush (*mixed*
  when no class covers 60% of it), with a
  building's (or room's) wall split into *wall at its ground line* (ground, road or floor
  right under the brush: where toyworld puts doors) and *upper wall*; sky, cloud and sun are
  *sky*; tree, trunk and bush *tree*; door and window stay themselves (enlarging one);
- **violations** (:func:`toyworld_violations`): pixels of the concept the edit adds where
  toyworld never has it — a door or window with no wall within 2 px, a boat off the water,
  a cloud or sun off the sky;
- **intervals** (:func:`context_over_seeds`): the study on ``len(seeds)`` sets of images, the
  mean added pixels per class with a 95% t-interval over seeds.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.base.errors import ArgumentTypeError, InputError
from core.base.validate import check_callable, check_float, check_int, check_values, unit_list
from core.engine.causal import context_study
from core.studies.over_seeds import mean_interval

__all__ = ["toyworld_classes", "toyworld_violations", "context_over_seeds", "unit_values", "added_ratio",
           "CONTEXT_CLASSES", "GROUND", "CONTEXT_RULES"]

GROUND = ("grass", "road", "floor")
WALLS = ("building", "wall")
GROUPS = {"sky": ("sky", "cloud", "sun"), "tree": ("tree", "trunk", "bush")}
CONTEXT_CLASSES = ("wall at its ground line", "upper wall", "roof", "sky", "tree", "grass", "road", "water",
                   "door", "window", "mixed")
# the contexts a concept may sit in (toyworld's rules 1-4): new pixels with none of these within 2 px break it
CONTEXT_RULES = {"door": WALLS, "window": WALLS, "boat": ("water",), "cloud": ("sky",), "sun": ("sky",)}


def toyworld_classes(labels: Sequence[str], ground_share: float = 0.25, purity: float = 0.6) -> Callable:
    """A ``classify(seg, boxes)`` for :func:`~core.engine.causal.context_study` (see the module
    docs). A block takes the class of its majority group when that group covers at least
    ``purity`` of it, else it is *mixed* (a brush straddling a roof and the sky says little about
    either). A wall block is *at its ground line* when at least ``ground_share`` of the pixel band
    under it (from a quarter of the brush above its bottom edge to half a brush below) is ground."""
    labels = list(labels)
    idx = {name: i for i, name in enumerate(labels)}
    group_of = np.asarray(labels, dtype=object).copy()
    for group, members in GROUPS.items():
        for m in members:
            if m in idx:
                group_of[idx[m]] = group
    ground = torch.tensor([idx[g] for g in GROUND if g in idx], dtype=torch.long, device="cpu")

    def classify(seg, boxes):
        out = []
        n_labels = len(labels)
        for s, (y0, x0, y1, x1) in zip(seg, boxes.tolist()):
            counts = torch.bincount(s[y0:y1, x0:x1].reshape(-1), minlength=n_labels)
            major = int(counts.argmax())
            name = labels[major]
            members = [i for i in range(n_labels) if group_of[i] == group_of[major]]
            if float(counts[members].sum()) < purity * float(counts.sum()):
                out.append("mixed")
            elif name in WALLS:
                b = y1 - y0
                band = s[max(y1 - b // 4, 0): min(y1 + max(b // 2, 1), s.shape[0]), x0:x1]
                at_ground = band.numel() and float(torch.isin(band, ground).float().mean()) >= ground_share
                out.append("wall at its ground line" if at_ground else "upper wall")
            else:
                out.append(group_of[major])
        return out
    return classify


def toyworld_violations(labels: Sequence[str], concept: str, reach: int = 2) -> Callable | None:
    """A ``violations(seg_before, seg_after, c)`` for the concept's toyworld rule (None when
    toyworld has no rule for it): per image, the pixels the edit adds to the concept with none
    of its allowed contexts (in the edited image) within ``reach`` px."""
    if concept not in CONTEXT_RULES:
        return None
    allowed = [i for i, name in enumerate(labels) if name in CONTEXT_RULES[concept]]

    def violations(seg_before, seg_after, c):
        seg_before = seg_before.to(seg_after.device)
        new = (seg_after == c) & (seg_before != c)
        ok = torch.isin(seg_after, torch.tensor(allowed, device=seg_after.device)).float()[:, None]
        near = F.max_pool2d(ok, 2 * reach + 1, 1, reach)[:, 0] > 0
        return (new & ~near).sum((1, 2)).float()
    return violations


def unit_values(k, units, scale, quantiles=None) -> tuple[np.ndarray, float]:
    """The insertion values and multiplier for ``scale``: a number (``scale`` x the concept's
    insertion constants ``k``) or ``"p99"`` (GANPaint: each unit's 99th percentile activation,
    from a dissection's ``quantiles`` table)."""
    units = unit_list(units, "units")
    if not units:
        raise InputError("units is empty: no unit to insert", fix="give at least one unit index")
    if scale == "p99":
        if quantiles is None:
            raise InputError("scale='p99' needs the units' activation quantiles (Dissection.quantiles(layer))",
                             fix="pass quantiles=dissection.quantiles(layer)")
        q = np.asarray(quantiles["q0.99"], dtype=np.float64)
        if max(units) >= len(q):
            raise InputError(f"units {[u for u in units if u >= len(q)]} are not in quantiles ({len(q)} units)",
                             fix="give the quantiles of the units' layer")
        return q[units], 1.0
    if isinstance(scale, str):
        raise InputError(f"scale must be a positive number or 'p99', got {scale!r}", fix="e.g. scale=3 or 'p99'")
    scale = check_float("scale", scale, 0, lo_open=True, what="a positive number or 'p99'")
    kv = check_values("k", k, allowed=None, what="the insertion constants of every unit of the layer")
    if max(units) >= kv.numel():
        raise InputError(f"units {[u for u in units if u >= kv.numel()]} have no insertion constant: k has "
                         f"{kv.numel()} values", fix="give k for every unit of the layer")
    return np.asarray(k, dtype=np.float64)[units], scale


def context_over_seeds(generator, segmenter, layer: str, units, value, concept: str, seeds: Sequence[int] = (4, 5, 6),
                       n_images: int = 8, brush: int = 2, scale: float = 3.0, batch_size: int = 16,
                       progress: Callable | None = None, basis=None, units_for: Callable | None = None) -> dict:
    """The context study on fresh images for each seed, with toyworld's classes and rules.

    ``units_for(i, seed) -> (units, value)``: the units (and their values) of the ``i``-th seed,
    e.g. a fresh ACE per seed, so the interval covers the choice of units too; ``units`` and
    ``value`` then go unused.

    Returns ``{"summary": DataFrame, "per_seed": DataFrame, "rows": DataFrame}``: per context
    class, insertions ``n``, mean added concept pixels over seeds with a 95% t-interval over
    seeds (``ci_low``, ``ci_high``; NaN with one seed), the share of insertions adding >= 6 px,
    mean violation pixels, and the seeds in which the class occurred."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ArgumentTypeError(f"seeds must be a list of whole numbers, got {seeds!r:.40}", fix="e.g. seeds=(4, 5, 6)")
    seeds = [check_int("seeds", s) for s in seeds]
    if not seeds:
        raise InputError("seeds must name at least one seed", fix="e.g. seeds=(4, 5, 6)")
    check_int("n_images", n_images, 1)
    check_callable("units_for", units_for)
    labels = list(segmenter.labels)
    classify, rule = toyworld_classes(labels), toyworld_violations(labels, concept)
    per_seed, all_rows = [], []
    total = len(seeds)
    used = []
    for i, s in enumerate(seeds):
        u, v = (units, value) if units_for is None else units_for(i, int(s))
        used.append([int(x) for x in u])
        rows, summary, _ = context_study(
            generator, segmenter, layer, u, v, concept, n_images=n_images, seed=int(s), batch_size=batch_size,
            brush=brush, scale=scale, classify=classify, violations=rule, basis=basis,
            progress=(lambda d, t, i=i: progress(i * t + d, total * t)) if progress else None)
        per_seed.append(summary.assign(seed=int(s)))
        all_rows.append(rows.assign(seed=int(s)))
    ps = pd.concat(per_seed, ignore_index=True)
    rows = pd.concat(all_rows, ignore_index=True)
    out = []
    for ctx, g in ps.groupby("context"):
        r = rows[rows.context == ctx]
        m, low, high = mean_interval(g.added_px)
        out.append({"context": ctx, "n": int(len(r)), "seeds": len(g), "added_px": m, "ci_low": low,
                    "ci_high": high, "share_ge6": float((r.added_px >= 6).mean()),
                    "violations": float(r.violations.mean()) if r.violations.notna().any() else math.nan})
    summary = pd.DataFrame(out).sort_values("added_px", ascending=False).reset_index(drop=True)
    return {"summary": summary, "per_seed": ps, "rows": rows, "units": used}


def added_ratio(summary: pd.DataFrame, a: str, b: str) -> float:
    """Added pixels of class ``a`` over those of class ``b`` (inf when ``b`` adds none)."""
    s = summary.set_index("context").added_px
    if a not in s or b not in s:
        return math.nan
    return float(s[a] / s[b]) if s[b] > 0 else math.inf

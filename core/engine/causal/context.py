"""Where a concept can be inserted (paper Fig. 11, S-6.5): a concept's units inserted in a block of
featuremap cells at every position of every image, each position classed by its context."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from core.base.devices import device_of
from core.base.errors import InputError
from core.base.hooks import layer_shape
from core.base.sampling import z_range
from core.base.sharing import long_computation
from core.base.validate import check_callable, check_float, check_int, check_memory, check_samples, check_units
from core.engine.causal.common import ROW_BYTES, checked_models, n_units_of, unit_values
from core.engine.intervention import Edit, generate

__all__ = ["context_study", "context_summary", "majority_context"]


def majority_context(labels: Sequence[str]):
    """The default context of an insertion: the segmenter's majority class in the pixels under
    the brush, before the edit. A ``classify(seg, boxes)`` function: ``seg`` [J, H, W] labels of
    each insertion's image, ``boxes`` [J, 4] pixel boxes (y0, x0, y1, x1); returns J names."""
    names = np.asarray(labels, dtype=object)

    def classify(seg, boxes):
        out = []
        for s, (y0, x0, y1, x1) in zip(seg, boxes.tolist()):
            out.append(names[int(torch.bincount(s[y0:y1, x0:x1].reshape(-1), minlength=len(names)).argmax())])
        return out
    return classify


@long_computation("the context study", fix="lower n_images=")
@torch.no_grad()
def context_study(generator, segmenter, layer, units, value, concept, n_images: int = 16,
                  seed: int = 4, batch_size: int = 16, progress: Callable | None = None, *, brush: int = 1,
                  scale: float = 1.0, classify: Callable | None = None, violations: Callable | None = None,
                  basis=None):
    """Insert ``units`` (set to ``scale`` x ``value``) in a ``brush`` x ``brush`` block of
    featuremap cells at every position of every image (paper Fig. 11, S-6.5).

    Returns ``(rows, summary, maps)``: ``rows`` one per (image, block): its top-left cell
    ``y``, ``x``; ``context`` (``classify(seg, boxes)``, default :func:`majority_context`: the
    majority class under the block before the edit); ``added_px``, the concept's pixels after
    minus before (whole image, segmenter's labels); ``effect`` the same as a fraction of the
    image; ``violations`` (``violations(seg_before, seg_after, c)``: pixels of the edit that
    break a context rule, e.g. a door not on a wall; NaN without a rule). ``summary``: per
    context class ``count``, ``mean`` (fraction), ``added_px`` mean with its 95% interval
    (``ci_low``, ``ci_high``, normal approximation over insertions), ``share_ge6`` (insertions
    adding >= 6 px) and ``violations`` mean. ``maps``: [n_images, h', w'] mean ``effect`` per
    block position. ``basis``: ``units`` are that basis's features."""
    layer, c = checked_models(generator, segmenter, layer, concept)
    n_units = n_units_of(generator, layer, basis)
    units = check_units(units, n_units, layer)
    brush_what = "a whole number of cells >= 1 (the side of the inserted block)"
    if isinstance(brush, (bool, np.bool_)) or not isinstance(brush, (int, np.integer)) or brush < 1:
        raise InputError(f"brush must be {brush_what}, got {brush!r}", fix="give brush=1, 2, ... (cells)")
    scale = check_float("scale", scale, 0, lo_open=True,
                        what="a positive number (a multiple of the insertion values)")
    v = unit_values("value", value, units, n_units) * scale
    n_images = check_samples("n_images", n_images, 1, images_per_sample=1)
    seed, batch_size = check_int("seed", seed), check_int("batch_size", batch_size, 1)
    for name, fn in (("progress", progress), ("classify", classify), ("violations", violations)):
        check_callable(name, fn)
    _, h, w = layer_shape(generator, layer)
    if brush > min(h, w):
        raise InputError(f"brush must be a whole number of cells from 1 to {min(h, w)} (the {layer} grid is "
                         f"{h}x{w}), got {brush!r}", fix=f"give brush from 1 to {min(h, w)}")
    positions = (h - brush + 1) * (w - brush + 1)
    check_samples("n_images", n_images, 1, images_per_sample=1 + positions,
                  fix="lower n_images, or use a larger brush (fewer positions per image)")
    res = getattr(generator, "resolution", None)
    px = res * res if isinstance(res, int) and res > 0 else 16 * h * w
    check_memory(f"the context study of n_images={n_images:,} ({positions} positions each)",
                 n_images * (positions * ROW_BYTES + px * (3 * 4 + 2 * 8)), device=device_of(generator),
                 fix="lower n_images")
    dev = device_of(generator)
    classify = classify or majority_context(segmenter.labels)
    z_all = z_range(seed, 0, n_images, generator.z_dim, dev)
    images = generate(generator, z_all)
    seg0 = segmenter.segment(images)
    seg0 = (seg0[:, 0] if seg0.dim() == 4 else seg0).long()
    H, W = seg0.shape[-2:]
    hit0 = seg0 == c
    base_px = hit0.sum((1, 2)).float().cpu()
    hh, ww = h - brush + 1, w - brush + 1
    img = torch.arange(n_images, device="cpu").repeat_interleave(hh * ww)   # job j: image img[j], block pos[j]
    pos = torch.arange(hh * ww, device="cpu").repeat(n_images)
    ys, xs = pos // ww, pos % ww
    boxes = torch.stack([ys * H // h, xs * W // w, (ys + brush) * H // h, (xs + brush) * W // w], 1)
    contexts = classify(seg0[img].cpu(), boxes)
    added = torch.zeros(len(img), device="cpu")
    broken = torch.full((len(img),), math.nan, device="cpu")
    gy, gx = torch.arange(h, device=dev).view(1, 1, h, 1), torch.arange(w, device=dev).view(1, 1, 1, w)
    for a in range(0, len(img), batch_size):
        ii, yy, xx = img[a:a + batch_size], ys[a:a + batch_size], xs[a:a + batch_size]
        y0, x0 = yy.to(dev).view(-1, 1, 1, 1), xx.to(dev).view(-1, 1, 1, 1)
        mask = ((gy >= y0) & (gy < y0 + brush) & (gx >= x0) & (gx < x0 + brush)).float()   # the brush's cells
        edit = Edit(layer, units, "insert", v, mask, basis=basis)
        seg1 = segmenter.segment(generate(generator, z_all[ii.to(dev)], [edit]))
        seg1 = (seg1[:, 0] if seg1.dim() == 4 else seg1).long()
        added[a:a + len(ii)] = (seg1 == c).sum((1, 2)).float().cpu() - base_px[ii]
        if violations is not None:
            rule = violations(seg0[ii.to(seg0.device)], seg1, c)
            broken[a:a + len(ii)] = torch.as_tensor(rule, dtype=torch.float32, device="cpu")
        if progress:
            progress(min(a + batch_size, len(img)), len(img))
    rows = pd.DataFrame({"image": img.numpy(), "y": ys.numpy(), "x": xs.numpy(), "context": contexts,
                         "added_px": added.numpy(), "effect": (added / (H * W)).numpy(),
                         "violations": broken.numpy()})
    maps = (added / (H * W)).view(n_images, hh, ww).numpy()
    return rows, context_summary(rows), maps


def context_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per context class of :func:`context_study` rows: count, mean effect (fraction), mean added
    pixels with a 95% interval (normal approximation over insertions), share of insertions that
    add >= 6 px, mean violation pixels; sorted by mean added pixels."""
    g = rows.groupby("context")
    out = pd.DataFrame({"count": g.size(), "mean": g.effect.mean(), "added_px": g.added_px.mean(),
                        "sd": g.added_px.std(ddof=1).fillna(0.0),
                        "share_ge6": g.added_px.apply(lambda x: (x >= 6).mean()),
                        "violations": g.violations.mean()})
    half = 1.96 * out.sd / np.sqrt(out["count"])
    out["ci_low"], out["ci_high"] = out.added_px - half, out.added_px + half
    return out.drop(columns="sd").sort_values("added_px", ascending=False).reset_index()

"""Painting edits, GANPaint-style: strokes over a generated image -> the cells of a layer's
featuremap they cover -> an :class:`~core.engine.intervention.Edit` that adds (inserts) or removes
(ablates) a concept's units there. Pure functions and cached constants; no UI here.

    cover = stroke_coverage(alpha, grid=(8, 8))          # fraction of each cell painted
    cells = cover >= 0.15                                 # the cells the edit will touch
    units = concept_units(dissection, "layer4", "tree")   # the concept's units, best IoU first
    k = cached_insertion_constants(G, seg, "layer4", "tree")
    images = generate(G, z, paint_edits("layer4", units, "add", k, cells))
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.base.errors import InputError
from core.base.hooks import layer_shape, resolve_layers
from core.engine.causal import cached_ace
from core.engine.intervention import Edit, cached_insertion_constants

__all__ = ["layer_grid", "grid_image", "stroke_coverage", "cells_overlay", "concept_units", "paint_edits",
           "cached_insertion_constants", "cached_causal_units", "MODES"]

MODES = ("add", "remove")


def layer_grid(generator, layer: str) -> tuple[int, int, int]:
    """(units, rows, columns) of ``layer``'s featuremap (one probe per model and layer)."""
    return layer_shape(generator, resolve_layers(generator, [layer])[0])[:3]


def _upscale(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST))


def grid_image(image: np.ndarray, grid: tuple[int, int], size: int, color=(255, 255, 255),
               opacity: float = 0.45) -> np.ndarray:
    """``image`` [H, W, 3] uint8 enlarged (nearest) to ``size`` x ``size`` with the lines of a
    ``grid`` = (rows, columns) featuremap drawn over it, so a stroke's cells can be seen."""
    out = _upscale(image, size).astype(np.float32)
    rows, cols = grid
    col = np.asarray(color, np.float32)
    for r in range(1, rows):
        y = round(r * size / rows)
        out[max(y - 1, 0):y + 1] = (1 - opacity) * out[max(y - 1, 0):y + 1] + opacity * col
    for c in range(1, cols):
        x = round(c * size / cols)
        out[:, max(x - 1, 0):x + 1] = (1 - opacity) * out[:, max(x - 1, 0):x + 1] + opacity * col
    return out.round().astype(np.uint8)


def stroke_coverage(paint: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of each featuremap cell covered by paint. ``paint``: a drawing's RGBA image
    [H, W, 4] (its alpha is the paint), or a coverage/alpha map [H, W] (bool, uint8 or float
    in [0, 1]); None gives an empty map. Returns float32 [rows, columns] in [0, 1]."""
    rows, cols = grid
    if paint is None:
        return np.zeros(grid, np.float32)
    a = np.asarray(paint)
    if a.ndim == 3:
        if a.shape[-1] != 4:
            raise InputError(f"a drawing must be RGBA [H, W, 4]; got shape {a.shape}")
        a = a[..., 3]
    if a.ndim != 2:
        raise InputError(f"paint must be [H, W] or [H, W, 4]; got shape {a.shape}")
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
    m = torch.from_numpy((a > 0.1).astype(np.float32))[None, None]
    return F.adaptive_avg_pool2d(m, (rows, cols))[0, 0].numpy()


def cells_overlay(image: np.ndarray, cells: np.ndarray, size: int, color=(255, 214, 10),
                  opacity: float = 0.35) -> np.ndarray:
    """``image`` enlarged to ``size`` with the edited ``cells`` [rows, columns] (bool) tinted and
    the grid drawn: what a painted mask means on the featuremap."""
    rows, cols = cells.shape
    big = grid_image(image, (rows, cols), size).astype(np.float32)
    m = _upscale((np.asarray(cells, bool) * 255).astype(np.uint8), size) > 127
    big[m] = (1 - opacity) * big[m] + opacity * np.asarray(color, np.float32)
    return big.round().astype(np.uint8)


def concept_units(dissection, layer: str, concept: str, n: int = 20) -> list[int]:
    """The ``n`` units of ``layer`` with the highest IoU for ``concept`` (best first): the
    units GANPaint drives to paint a concept."""
    if concept not in dissection.labels or concept == dissection.labels[0]:
        raise InputError(f"unknown concept {concept!r}; the segmenter knows: {', '.join(dissection.labels[1:])}")
    iou = dissection.iou(layer)[:, dissection.labels.index(concept)]
    n = max(1, min(int(n), len(iou)))
    return [int(u) for u in np.argsort(-iou, kind="stable")[:n]]


def paint_edits(layer: str, units, mode: str, k, cells, scale: float = 1.0) -> list[Edit]:
    """The edit of one painting: ``mode="add"`` inserts ``units`` at ``scale`` x their insertion
    constants ``k`` (all units' values, indexed here) in ``cells``; ``"remove"`` ablates them
    there. An empty painting gives no edit. At 64 px a toyworld door is one layer4 cell, and the
    constants (a coverage-weighted mean) are well below the units' peaks: ``scale`` 3 is what
    draws a visible door on a wall (the Paint page's default)."""
    if mode not in MODES:
        raise InputError(f"paint mode must be one of {MODES}, got {mode!r}")
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a positive number (a multiple of the insertion values), got {scale!r}")
    cells = np.asarray(cells, np.float32)
    if not cells.any():
        return []
    units = [int(u) for u in units]
    if mode == "remove":
        return [Edit(layer, units, "ablate", None, cells)]
    value = torch.as_tensor(np.asarray(k, np.float32))[units] * float(scale)
    return [Edit(layer, units, "insert", value, cells)]


def cached_causal_units(generator, segmenter, layer: str, concept, n_dissect: int,
                        steps=(200, 150, 100, 50, 20), **ace_options):
    """The stored ACE result (:func:`core.engine.causal.cached_ace`) for this layer and concept with the
    most optimisation steps among ``steps``, or None: painting never starts an optimisation."""
    for n in steps:
        res = cached_ace(generator, segmenter, layer, concept, n_steps=n, n_dissect=n_dissect, cached_only=True,
                         **ace_options)
        if res is not None:
            return res
    return None

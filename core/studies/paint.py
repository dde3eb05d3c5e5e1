"""Painting edits, GANPaint-style: strokes over a generated image -> the cells of a layer's
featuremap they cover -> an :class:`~core.engine.intervention.Edit` that adds (inserts) or removes
(ablates) a concept's units there. Pure functions; no UI here. Which units paint a concept is
:mod:`core.studies.units`'s answer.

    cover = stroke_coverage(alpha, grid=(8, 8))          # fraction of each cell painted
    cells = cover >= 0.15                                 # the cells the edit will touch
    units = iou_units(dissection, "layer4", "tree")       # the concept's units, best IoU first
    k = insertion_constants(G, seg, "layer4", "tree")
    images = generate(G, z, paint_edits("layer4", units, "add", k, cells))
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.base.errors import ArgumentTypeError, InputError, UnitIndexError
from core.base.hooks import layer_shape, resolve_layers
from core.base.validate import check_choice, check_float, check_int, check_mask, check_values, unit_list
from core.engine.intervention import Edit

__all__ = ["layer_grid", "grid_image", "stroke_coverage", "cells_overlay", "paint_edits", "MODES"]

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
    rows, cols = _grid(grid)
    if paint is None:
        return np.zeros((rows, cols), np.float32)
    a = np.asarray(paint)
    if a.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"paint must be an image array, got {type(paint).__name__} of {a.dtype}",
                                fix="give paint as an RGBA drawing [H, W, 4] or a coverage map [H, W]")
    if a.ndim == 3:
        if a.shape[-1] != 4:
            raise InputError(f"a drawing must be RGBA [H, W, 4]; got shape {a.shape}",
                             fix="give paint as an RGBA drawing [H, W, 4] or a coverage map [H, W]")
        a = a[..., 3]
    if a.ndim != 2:
        raise InputError(f"paint must be [H, W] or [H, W, 4]; got shape {a.shape}",
                         fix="give paint as an RGBA drawing [H, W, 4] or a coverage map [H, W]")
    if a.size == 0:
        raise InputError(f"paint is empty (shape {a.shape})", fix="give paint the drawing's pixels (or None)")
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise InputError("paint values must be finite and in [0, 1] (uint8 drawings: 0..255)",
                         fix="clip paint to [0, 1], or pass the canvas's uint8 RGBA image")
    m = torch.from_numpy((a > 0.1).astype(np.float32))[None, None]
    return F.adaptive_avg_pool2d(m, (rows, cols))[0, 0].numpy()


def _grid(grid) -> tuple[int, int]:
    try:
        rows, cols = grid
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"grid must be (rows, columns), got {grid!r:.40}",
                                fix="use layer_grid(G, layer)[1:]") from None
    return check_int("grid rows", rows, 1), check_int("grid columns", cols, 1)


def cells_overlay(image: np.ndarray, cells: np.ndarray, size: int, color=(255, 214, 10),
                  opacity: float = 0.35) -> np.ndarray:
    """``image`` enlarged to ``size`` with the edited ``cells`` [rows, columns] (bool) tinted and
    the grid drawn: what a painted mask means on the featuremap."""
    rows, cols = cells.shape
    big = grid_image(image, (rows, cols), size).astype(np.float32)
    m = _upscale((np.asarray(cells, bool) * 255).astype(np.uint8), size) > 127
    big[m] = (1 - opacity) * big[m] + opacity * np.asarray(color, np.float32)
    return big.round().astype(np.uint8)


def paint_edits(layer: str, units, mode: str, k, cells, scale: float = 1.0, basis=None) -> list[Edit]:
    """The edit of one painting: ``mode="add"`` inserts ``units`` at ``scale`` x their insertion
    constants ``k`` (all units' values, indexed here) in ``cells``; ``"remove"`` ablates them
    there. An empty painting gives no edit. At 64 px a toyworld door is one layer4 cell, and the
    constants (a coverage-weighted mean) are well below the units' peaks: ``scale`` 3 is what
    draws a visible door on a wall (the Paint page's default). ``basis``: ``units`` and ``k`` are
    that basis's features and their constants (:mod:`core.engine.bases`)."""
    check_choice("mode", mode, MODES)
    scale = check_float("scale", scale, 0, lo_open=True, what="a positive number (a multiple of the insertion values)")
    if not isinstance(layer, str):
        raise ArgumentTypeError(f"layer must be a layer name, got {type(layer).__name__}", fix="e.g. layer='layer4'")
    m = check_mask("cells", cells)
    if m.shape[0] != 1:
        raise InputError(f"cells must be one map [rows, columns], got shape {tuple(np.shape(cells))}",
                         fix="give the painted cells of one image, e.g. stroke_coverage(drawing, grid) >= 0.15")
    units = unit_list(units, "units")
    if not units:
        raise InputError("units is empty: no unit to paint with", fix="give units, e.g. iou_units(res, layer, c)")
    if mode == "add":
        kv = check_values("k", k, allowed=None, what="the insertion constants of every unit of the layer")
        if max(units) >= kv.numel():
            raise UnitIndexError(f"units {[u for u in units if u >= kv.numel()]} have no insertion constant: k has "
                                 f"{kv.numel()} values", fix="give k for every unit of the layer "
                                 "(insertion_constants(G, seg, layer, concept))")
    cells = np.asarray(m[0, 0].numpy(), np.float32)
    if not cells.any():
        return []
    if mode == "remove":
        return [Edit(layer, units, "ablate", None, cells, basis=basis)]
    value = np.asarray(k, np.float32)[units] * np.float32(scale)      # edits take numbers; they follow the model
    return [Edit(layer, units, "insert", value, cells, basis=basis)]

"""Checks every floor shares: unit indices of a layer and concepts of a segmenter.

Each raises an :class:`~core.base.errors.InputError` that names the argument and the valid
choices, before any work starts."""
from __future__ import annotations

import numpy as np
import torch

from core.base.errors import InputError, UnitIndexError, UnknownNameError

__all__ = ["check_units", "concept_index", "concept_mask", "concept_fraction"]


def check_units(units, n_units: int, layer: str, what: str = "unit indices") -> list[int]:
    """``units`` as a list of ints, each in ``0 .. n_units-1`` of ``layer``; refused otherwise."""
    if isinstance(units, torch.Tensor):
        units = units.tolist()
    try:
        arr = np.asarray(units if units is not None else [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be integers, got {units!r}") from None
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise InputError(f"{what} must be whole numbers, got {units!r}")
    out = [int(u) for u in arr]
    if not out:
        raise InputError(f"the unit list is empty: give at least one unit index of {layer!r} (0..{n_units - 1})")
    bad = [u for u in out if u < 0 or u >= n_units]
    if bad:
        raise UnitIndexError(f"{what} {bad} out of range for layer {layer!r} with {n_units} units "
                             f"(valid: 0..{n_units - 1})")
    return out


def concept_index(segmenter, concept) -> int:
    """The label index of ``concept`` (a name or an index > 0) in ``segmenter.labels``."""
    labels = list(segmenter.labels)
    if isinstance(concept, (int, np.integer)) and not isinstance(concept, bool):
        if 0 < concept < len(labels):
            return int(concept)
    elif concept in labels and concept != labels[0]:
        return labels.index(concept)
    raise UnknownNameError(f"unknown concept {concept!r}; the segmenter knows: {', '.join(labels[1:])}")


def concept_mask(segmenter, images: torch.Tensor, c: int) -> torch.Tensor:
    """Bool N x H x W: where the segmenter labels ``c`` (in any channel of a multi-label one)."""
    hit = segmenter.segment(images) == c
    return hit.any(1) if hit.dim() == 4 else hit


def concept_fraction(segmenter, images: torch.Tensor, c: int) -> torch.Tensor:
    """Per image: fraction of pixels the segmenter labels ``c`` (hard labels)."""
    return concept_mask(segmenter, images, c).float().mean((1, 2))

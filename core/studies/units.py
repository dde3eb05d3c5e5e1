"""Which units for this concept: the one answer the command line, the Paint page, the context
study and the reports share.

- ``ranking="iou"``: the units with the highest IoU for the concept in the layer's dissection
  (:func:`iou_units` when a dissection is at hand);
- ``ranking="ace"``: the top units of ACE's optimisation (eq. 5–6), stored once and shared;
- :func:`stored_ace`: the stored ACE result with the most steps, or None (painting never starts an
  optimisation).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from core.base.errors import UnknownNameError
from core.base.sampling import DISSECT_SEED
from core.base.validate import check_choice, check_int
from core.engine.causal import ace
from core.engine.causal.common import checked_models
from core.engine.dissection import dissect

__all__ = ["RANKINGS", "concept_units", "iou_units", "stored_ace"]

RANKINGS = ("ace", "iou")


def iou_units(dissection, layer: str, concept: str, n: int = 20) -> list[int]:
    """The ``n`` units of ``layer`` with the highest IoU for ``concept`` in ``dissection`` (best
    first; ties by unit number): the units GANPaint drives to paint a concept."""
    if not isinstance(concept, str) or concept not in dissection.labels or concept == dissection.labels[0]:
        raise UnknownNameError(f"unknown concept {concept!r}; the segmenter knows: {', '.join(dissection.labels[1:])}",
                               fix="give concept as one of those names")
    n = check_int("n", n, 1, what="a whole number of units >= 1")
    iou = dissection.iou(layer)[:, dissection.labels.index(concept)]
    n = min(n, len(iou))
    return [int(u) for u in np.argsort(-iou, kind="stable")[:n]]


def concept_units(generator, segmenter, layer: str, concept, *, ranking: str = "ace", n: int = 20, seed: int = 0,
                  dissect_samples: int = 400, basis=None, progress: Callable | None = None, cache: bool = True,
                  cached_only: bool = False, **ace_options) -> list[int] | None:
    """The ``n`` units (or a basis's features) of ``layer`` for ``concept``, best first, by
    ``ranking``: "ace" (ACE with ``seed`` and ``ace_options``, see :func:`core.engine.causal.ace`)
    or "iou" (the layer's shared dissection of ``dissect_samples``). ``progress(done, total)``.
    ``cached_only=True`` returns None unless the result is stored."""
    check_choice("ranking", ranking, RANKINGS)
    n = check_int("n", n, 1, what="a whole number of units >= 1")
    layer, c = checked_models(generator, segmenter, layer, concept)
    if ranking == "iou":
        res = dissect(generator, segmenter, [layer], dissect_samples, seed=DISSECT_SEED, basis=basis, cache=cache,
                      cached_only=cached_only, progress=progress)
        return None if res is None else iou_units(res, layer, segmenter.labels[c], n)
    step = (lambda s, t, loss: progress(s, t)) if progress else None
    res = ace(generator, segmenter, layer, c, seed=seed, dissect_samples=dissect_samples, basis=basis, progress=step,
              cache=cache, cached_only=cached_only, **ace_options)
    return None if res is None else [int(u) for u in res.ranking[:n]]


def stored_ace(generator, segmenter, layer: str, concept, dissect_samples: int = 400,
               steps: Sequence[int] = (200, 150, 100, 50, 20), basis=None, **ace_options):
    """The stored ACE result for this layer and concept with the most optimisation steps among
    ``steps``, or None: computes nothing."""
    for n in sorted({int(s) for s in steps}, reverse=True):
        res = ace(generator, segmenter, layer, concept, n_steps=n, dissect_samples=dissect_samples, cached_only=True,
                  basis=basis, **ace_options)
        if res is not None:
            return res
    return None

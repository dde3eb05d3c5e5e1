"""Interventions on generator units (paper §3.2): ablate (force to 0) or insert (force to a
constant k) chosen units at chosen featuremap locations — pure with respect to the model.

    k = core.insertion_constants(G, segmenter, "layer4", "door")              # per unit (S-6.4)
    edit = core.Edit("layer4", [12, 40, 77], mode="insert", value=k[[12, 40, 77]], mask=paint)  # any res
    images = core.generate(G, z, edits=[edit])

An edit travels with its call (a thread-local :class:`core.base.hooks.Trace`): nothing is left on
the shared model, and threads applying different edits at once get exactly what each would
get alone. ``alpha`` gives a per-unit strength in [0, 1] (1 = the full edit), differentiable
for the causal-effect optimisation::

    r' = (1 - m * alpha) * r + m * alpha * v      (v = 0 to ablate, k to insert)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, ConceptAbsentError, InputError
from core.base.hooks import Trace, layer_units, resolve_layers
from core.base.protocols import call_generator, check_finite, check_generator, check_segmenter
from core.base.sampling import z_range
from core.base.sharing import long_computation
from core.base.validate import (
    check_alpha,
    check_int,
    check_latents,
    check_mask,
    check_samples,
    check_units,
    check_values,
    concept_fraction,
    concept_index,
    concept_mask,
    unit_list,
)
from core.engine.bases import blend, check_basis, learned

__all__ = ["Edit", "generate", "check_edits", "edit_fn", "resize_mask", "insertion_constants",
           "concept_index", "concept_fraction", "INSERTION_VERSION", "MODES"]


@dataclass(frozen=True, eq=False)
class Edit:
    """One intervention: ``units`` of ``layer`` ablated (``mode="ablate"``) or set to ``value``
    (``mode="insert"``: a number, or one value per unit — see :func:`insertion_constants`) at
    the locations of ``mask`` (None: everywhere). ``mask`` is H x W, N x H x W or N x 1 x H x W
    at any resolution, bool or float coverage in [0, 1]; it is resized to the layer's grid
    (area-averaged when shrinking, so a painted region becomes per-location coverage).

    Everything that can be checked without the model is checked here (units whole and >= 0,
    values and alpha finite and one per unit, the mask's shape and range); :func:`generate`
    checks the rest (the layer, the units' range, the mask's batch) before the forward pass.

    ``basis`` (:mod:`core.engine.bases`): ``units`` are then features of that basis, set to
    ``value`` (0 to ablate) along their decoder directions, the rest of the layer kept."""
    layer: str
    units: Sequence[int]
    mode: str = "ablate"
    value: object = None
    mask: object = None
    alpha: object = None
    basis: object = None

    def __post_init__(self):
        if not isinstance(self.layer, str):
            raise ArgumentTypeError(f"Edit layer must be a layer name (str), got {type(self.layer).__name__} "
                                    f"{self.layer!r:.40}", fix="e.g. Edit('layer4', [3, 17])")
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise InputError(f"Edit mode must be 'ablate' or 'insert', got {self.mode!r}",
                             fix="pass mode='ablate' or mode='insert'")
        units = unit_list(self.units, "Edit units") if self.units is not None else []
        if not units:
            raise InputError(f"Edit on {self.layer!r} has an empty unit list: give at least one unit index")
        object.__setattr__(self, "units", tuple(units))
        if self.mode == "insert":
            if self.value is None:
                raise InputError("an insert Edit needs value=: a number or one value per unit, e.g. "
                                 "core.insertion_constants(G, segmenter, layer, concept)[units]")
            check_values("value", self.value, len(units), what="a number or one insertion value per unit")
        if self.mask is not None:
            check_mask("mask", self.mask)
        if self.alpha is not None:
            check_alpha("alpha", self.alpha, len(units))
        object.__setattr__(self, "basis", learned(self.basis))

    @property
    def n_features(self) -> int | None:
        """The size of the space ``units`` index: the basis's features (None: the layer's units)."""
        return None if self.basis is None else self.basis.n_features


MODES = ("ablate", "insert")


def resize_mask(mask, n: int, h: int, w: int, device=None) -> torch.Tensor:
    """Any-resolution mask -> float coverage [n or 1, 1, h, w] in [0, 1]."""
    check_mask("mask", mask, n)
    where = device if device is not None else (mask.device if isinstance(mask, torch.Tensor) else "cpu")
    m = mask.to(where) if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask), device=where)
    m = m.float()                                   # a tensor mask keeps its graph
    m = m[None, None] if m.dim() == 2 else m[:, None] if m.dim() == 3 else m
    mh, mw = m.shape[-2:]
    if (mh, mw) != (h, w):
        if mh >= h and mw >= w:
            m = F.adaptive_avg_pool2d(m, (h, w))
        else:
            m = F.interpolate(m, size=(h, w), mode="nearest")
    return m


def edit_fn(edit: Edit, n_units: int | None = None):
    """The function ``out -> edited out`` for one edit (used inside a Trace)."""
    units = list(edit.units)

    def fn(out):
        if edit.basis is not None:
            check_basis(edit.basis, out.shape[1], edit.layer)
        check_units(units, edit.n_features or out.shape[1], edit.layer)
        n, h, w = out.shape[0], out.shape[2], out.shape[3]
        idx = torch.tensor(units, device=out.device)
        m = torch.ones(1, 1, h, w, device=out.device, dtype=out.dtype) if edit.mask is None else \
            resize_mask(edit.mask, n, h, w, out.device).to(out.dtype)
        strength = m
        if edit.alpha is not None:
            a = torch.as_tensor(edit.alpha, device=out.device, dtype=out.dtype).reshape(-1)
            if a.numel() not in (1, len(units)):
                raise InputError(f"alpha must be a scalar or one value per unit ({len(units)}), got {a.numel()}")
            strength = m * a.view(1, -1, 1, 1)
        if edit.mode == "ablate":
            v = torch.zeros((), device=out.device, dtype=out.dtype)
        else:
            v = torch.as_tensor(edit.value, device=out.device, dtype=out.dtype).reshape(-1)
            if v.numel() not in (1, len(units)):
                raise InputError(f"insert value must be a number or one value per unit ({len(units)}), "
                                 f"got {v.numel()} values")
            v = v.view(1, -1, 1, 1)
        if edit.basis is not None:
            share = strength.expand(-1, len(units), -1, -1) if strength.shape[1] == 1 else strength
            return edit.basis.edit(out, idx, share, v)
        r = out.index_select(1, idx)
        return out.index_copy(1, idx, blend(r, strength, v))

    return fn


def _compose(fns):
    def fn(out):
        for f in fns:
            out = f(out)
        return out
    return fn


def check_edits(generator, edits, n: int | None = None) -> list[Edit]:
    """``edits`` as a list of :class:`Edit`, each on a layer of ``generator`` with units in range
    and (given the batch ``n``) a mask of N = 1 or ``n``: refused before any forward pass."""
    if isinstance(edits, Edit):
        raise ArgumentTypeError("edits must be a list of Edit, got one Edit", fix="wrap it in a list: edits=[edit]")
    try:
        edits = list(edits if edits is not None else ())
    except TypeError:
        raise ArgumentTypeError(f"edits must be a list of Edit, got {type(edits).__name__}",
                                fix="e.g. edits=[core.Edit('layer4', [3, 17])]") from None
    bad = [type(e).__name__ for e in edits if not isinstance(e, Edit)]
    if bad:
        raise ArgumentTypeError(f"edits must be a list of Edit, got a list holding {', '.join(bad)}",
                                fix="make each edit with core.Edit(layer, units, mode, value, mask)")
    if edits:
        resolve_layers(generator, [e.layer for e in edits])
    for e in edits:
        if e.basis is not None:
            check_basis(e.basis, layer_units(generator, e.layer), e.layer)
        check_units(list(e.units), e.n_features or layer_units(generator, e.layer), e.layer)
        if e.mask is not None and n is not None:
            check_mask("mask", e.mask, n)
    return edits


def generate(generator, z: torch.Tensor, edits: Sequence[Edit] = (), capture: Sequence[str] = ()):
    """Images for ``z`` with ``edits`` applied (in order); with ``capture``, also returns the
    {layer: output} of the captured layers (after edits). Never touches the shared model.
    Every argument is checked before the forward pass."""
    check_generator(generator, probe=False)
    check_latents("z", z, generator.z_dim)
    edits = check_edits(generator, edits, z.shape[0])
    capture = [capture] if isinstance(capture, str) else list(capture or ())
    if capture:
        resolve_layers(generator, capture)
    by_layer: dict[str, list] = {}
    for e in edits:
        by_layer.setdefault(e.layer, []).append(edit_fn(e))
    with Trace(generator, capture=capture, edits={k: _compose(v) for k, v in by_layer.items()}) as tr:
        images = call_generator(generator, z)
    check_finite(generator, images, tr.outputs if capture else None)      # never drawn or measured silently
    return (images, tr.outputs) if capture else images


# ----------------------------------------------------------------------------- concepts

@long_computation("the insertion constants", fix="lower batch_size=")
def insertion_constants(generator, segmenter, layer: str, concept, n_samples: int = 100,
                        seed: int = 1, batch_size: int = 25, basis=None, *, cache: bool = True,
                        cached_only: bool = False) -> torch.Tensor | None:
    """Per-unit insertion value k (supplement S-6.4): the mean activation of each unit over
    featuremap locations where ``concept`` is present, each location weighted by the fraction
    of it covered by the concept. Returns a CPU tensor [n_units] (with ``basis``: [n_features],
    the features' encoder activations weighted the same way).

    Stored under ``cache/insertion`` keyed by both models' weights, layer, concept, samples, seed
    and the basis (the shipped results hold the zoo's); ``cached_only=True`` returns the stored
    constants or None, computing nothing."""
    layer, c, n_samples, seed, batch_size = _check_insertion(generator, segmenter, layer, concept, n_samples, seed,
                                                             batch_size)
    basis = learned(check_basis(basis, layer_units(generator, layer), layer))
    parts = {"layer": layer, "concept": int(c), "n": n_samples, "seed": seed,
             **({"basis": basis.cache_key} if basis is not None else {})}
    return _cache.measure(
        "insertion", INSERTION_VERSION, models={"generator": generator, "segmenter": segmenter}, parts=parts,
        compute=lambda: _insertion(generator, segmenter, layer, c, n_samples, seed, batch_size, basis),
        codec=_cache.ArrayCodec("k", {"layer": layer, "concept": segmenter.labels[c], "n_samples": n_samples,
                                      "seed": seed}, as_tensor=True),
        cache=cache, cached_only=cached_only)


@torch.no_grad()
def _insertion(generator, segmenter, layer, c, n_samples, seed, batch_size, basis) -> torch.Tensor:
    num = den = None
    dev = device_of(generator)
    for a in range(0, n_samples, batch_size):
        z = z_range(seed, a, min(n_samples, a + batch_size), generator.z_dim, dev)
        images, cap = generate(generator, z, capture=[layer])
        r = cap[layer].float() if basis is None else basis.encode(cap[layer].float())
        hit = concept_mask(segmenter, images, c)
        cover = F.adaptive_avg_pool2d(hit.float()[:, None], r.shape[-2:])    # [n, 1, h, w]
        s = (r * cover).sum((0, 2, 3))
        d = cover.sum()
        num = s if num is None else num + s
        den = d if den is None else den + d
    if float(den) == 0:
        raise ConceptAbsentError(f"concept {segmenter.labels[c]!r} never appears in {n_samples} samples of this "
                                 "generator; cannot compute its insertion constants",
                                 fix="use more samples or another concept")
    return (num / den).cpu()


def _check_insertion(generator, segmenter, layer, concept, n_samples, seed, batch_size):
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    layer = resolve_layers(generator, [layer])[0]
    c = concept_index(segmenter, concept)
    return (layer, c, check_samples("n_samples", n_samples, 1), check_int("seed", seed),
            check_int("batch_size", batch_size, 1))


INSERTION_VERSION = "k-v1"     # bump when insertion_constants() changes what it returns

"""Dissection (Bau et al. 2019, §3.1 eq. 2): unit x concept IoU at information-quality thresholds.

One generator pass and one segmentation pass per batch feed every requested layer; the
streaming statistics (one histogram per layer, summable across processes) are in
:mod:`core.engine.tally`. :func:`dissect` is five steps:

1. **validate** the arguments and the models (before any work);
2. **plan**: probe every layer's shape and the image size once, fix the resolution, batches,
   device and the processes' shares;
3. **cache**: one entry per layer (``cache/dissect/``); layers dissected before, alone or with
   others, are reused, and only the missing ones are computed;
4. **accumulate** the statistics over the batches (:func:`core.engine.tally.sample_batches`);
5. **finalise**: per layer, thresholds (argmax I/H on the threshold set) and IoU (on the IoU set).

Samples alternate between two disjoint sets: even sample indices choose each (unit, concept)
threshold (argmax I/H), odd indices measure the IoU at that threshold. IoU is a ratio of sums
over all pixels of the IoU set. Label slots hold the segmenter's primary label per pixel; extra
segmenter channels and the optional object-part labels (``c-t``, ``c-b``, ``c-l``, ``c-r``:
halves of each connected component's bounding box) go to further slots, so that mask counts
still count every pixel once.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from core.base import cache as _cache
from core.base.devices import module_device
from core.base.distributed import rank_world
from core.base.errors import ArgumentTypeError, BudgetError, InputError, ProtocolError, UnknownNameError
from core.base.hooks import Trace, known_units, resolve_layers
from core.base.protocols import check_generator, check_segmentation, check_segmenter
from core.base.sampling import z_range
from core.base.sharing import fit_batch, long_computation
from core.base.validate import (
    check_bool,
    check_callable,
    check_choice,
    check_device,
    check_float,
    check_int,
    check_memory,
    check_samples,
    check_units,
    options_of,
    unit_list,
)
from core.engine.bases import Basis, check_basis, learned
from core.engine.tally import (  # noqa: F401
    GEOMETRIES,
    QUANTILE_LEVELS,
    LayerTally,
    add_counts,
    finalise_layer,
    information_quality,
    interp_matrix,
    merge_distributed,
    sample_batches,
    upsample,
)

__all__ = ["dissect", "Dissection", "DissectOptions", "CODE_VERSION", "LABELINGS", "interp_matrix",
           "upsample", "part_labels", "information_quality", "label_categories"]

CODE_VERSION = "dissect-v3"   # v2: the reference labelling arrays (ref_*); v3: the 2018 geometry (half-pixel
                              # centres) and the IoU set's I/H at the unit's threshold (ref_iqr_iou_set)
LABELINGS = ("reference", "max-iou")
PARTS = ("t", "b", "l", "r")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DissectOptions:
    resolution: int | None = None   # dissection (segmentation) resolution; None: half the image's
    bins: int = 256                 # candidate thresholds per unit
    parts: bool = False             # object-part expansion (c-t, c-b, c-l, c-r)
    iou_threshold: float = 0.05     # a unit is interpretable when its best IoU exceeds this
    iqr_threshold: float = 0.01     # ... and that concept's I/H does too (the reference rule: a unit that
                                    # overlaps a large concept only by chance has IoU > 0.05 but I/H ~ 0)
    min_frequency: float = 1e-3     # concepts rarer than this (pixel fraction) are not scored
    topk: int = 20                  # top-activating samples kept per unit
    max_hist_bytes: int = 6 << 30   # refuse (with advice) rather than exhaust memory
    precision: str = "fp32"         # the generator's and segmenter's forward: fp32, or autocast bf16 / fp16
                                    # (the statistics stay exact counts of what that forward produced)
    geometry: str = "half-pixel"    # how a featuremap is stretched to the segmentation: half-pixel centres,
                                    # border padding (the 2018 code's; F.interpolate(align_corners=False)),
                                    # or "aligned-corners" (GANatomy before dissect-v3)

    def __post_init__(self):
        if self.resolution is not None:
            check_int("resolution", self.resolution, 1, what="a whole number of pixels >= 1 (or None: half the "
                      "image size)")
        check_int("bins", self.bins, 1, what="a whole number of candidate thresholds >= 1 (default 256)")
        check_bool("parts", self.parts)
        for name in ("iou_threshold", "iqr_threshold"):    # a negative threshold turns its condition off
            check_float(name, getattr(self, name), None, 1, what="a finite number <= 1 (IoU and I/H are at most 1; "
                        "a negative value turns the condition off)")
        check_float("min_frequency", self.min_frequency, 0, 1)
        check_int("topk", self.topk, 0, what="a whole number of samples >= 0 (default 20)")
        check_int("max_hist_bytes", self.max_hist_bytes, 1)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("geometry", self.geometry, GEOMETRIES)

    def key(self) -> dict:
        """The options a result depends on (the default precision and geometry are left out: keys
        made before those options existed keep their form)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__
                if not (k == "precision" and self.precision == "fp32")
                and not (k == "geometry" and self.geometry == "half-pixel")}


# ----------------------------------------------------------------------------- labels

def part_labels(labels: list[str]) -> list[str]:
    return [f"{c}-{p}" for c in labels[1:] for p in PARTS]


def label_categories(labels: list[str], segmenter=None, *, stuff=None) -> dict[str, list[str]]:
    """The categories of a dissection's ``labels`` (name -> its labels, in label order), as the 2018
    code reports a unit's best label per category (object, part, material, colour there).

    A segmenter that declares ``categories`` (a dict: category -> label names; an optional protocol
    attribute) gives them; else they follow its ``stuff`` (or ``stuff=``): ``"object"`` (every
    label that is not stuff), ``"stuff"`` (amorphous regions: sky, road, wall...) and, with the
    object-part expansion, ``"part"`` (``c-t``, ``c-b``, ``c-l``, ``c-r``). Categories with no
    label in ``labels`` are left out; label 0 (unlabeled) is in none."""
    names = list(labels)[1:]
    own = getattr(segmenter, "categories", None) if segmenter is not None else None
    if own is not None:
        if not isinstance(own, dict):
            raise ProtocolError(f"the segmenter's categories must be a dict {{category: [labels]}}, got "
                                f"{type(own).__name__}", fix="give segmenter.categories as a dict of label lists")
        cats = {str(k): [c for c in names if c in set(v)] for k, v in own.items()}
    else:
        stuff = set(stuff if stuff is not None else getattr(segmenter, "stuff", ()) or ())
        is_part = {c for c in names if c.rsplit("-", 1)[-1] in PARTS and c.rsplit("-", 1)[0] in names}
        cats = {"object": [c for c in names if c not in stuff and c not in is_part],
                "stuff": [c for c in names if c in stuff],
                "part": [c for c in names if c in is_part]}
    return {k: v for k, v in cats.items() if v}


def part_maps(primary: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertical and horizontal part ids for a label map batch [N, S, S] (0 = unlabeled).

    Returns two int arrays [N, S, S] with values ``(c-1)*4 + p`` (p: 0 t, 1 b, 2 l, 3 r) or -1
    for unlabeled pixels. Connected components are 4-connected; a pixel is in the top half of
    its component when its centre lies above the middle of the component's bounding box."""
    from scipy import ndimage  # object parts only: scipy.ndimage is slow to import at a server's start
    n, s, _ = primary.shape
    vert = np.full(primary.shape, -1, dtype=np.int64)
    horiz = np.full(primary.shape, -1, dtype=np.int64)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) + 0.5
    for i in range(n):
        img = primary[i]
        for c in np.unique(img):
            if c == 0:
                continue
            comp, k = ndimage.label(img == c)
            sl = ndimage.find_objects(comp)
            mid_y = np.array([0.0] + [(a.start + a.stop) / 2 for a, _ in sl])
            mid_x = np.array([0.0] + [(b.start + b.stop) / 2 for _, b in sl])
            on = comp > 0
            base = (int(c) - 1) * 4
            vert[i][on] = base + np.where(yy[on] < mid_y[comp[on]], 0, 1)
            horiz[i][on] = base + np.where(xx[on] < mid_x[comp[on]], 2, 3)
    return vert, horiz


def _label_slots(seg: torch.Tensor, size: int, n_labels: int, parts: bool, n_slots: int):
    """[n, K', S, S] slot ids for a segmentation batch (nearest resize to the dissection size)."""
    if seg.dim() == 3:
        seg = seg.unsqueeze(1)
    seg = seg.long()
    h, w = seg.shape[-2:]
    if (h, w) != (size, size):
        ys = (torch.arange(size, device=seg.device) * h) // size
        xs = (torch.arange(size, device=seg.device) * w) // size
        seg = seg[:, :, ys][:, :, :, xs]
    chans = [seg[:, 0]]
    for k in range(1, seg.shape[1]):
        chans.append(torch.where(seg[:, k] > 0, seg[:, k] + n_labels, torch.full_like(seg[:, k], n_labels)))
    if parts:
        v, hz = part_maps(seg[:, 0].cpu().numpy(), n_labels)
        for p in (v, hz):
            p = torch.from_numpy(p).to(seg.device)
            chans.append(torch.where(p >= 0, p + 2 * n_labels, torch.full_like(p, n_labels)))
    return torch.stack(chans, 1).to(torch.int32)


# ----------------------------------------------------------------------------- result

class PerLayer:
    """A result held per layer (``layers``, and ``data``: layer -> {array name: array}): the one
    lookup of a layer's arrays, refusing a layer that was not dissected."""

    def _layer(self, layer):
        if not isinstance(layer, str) or layer not in self.data:
            raise UnknownNameError(f"layer {layer!r} was not dissected; dissected layers: {', '.join(self.layers)}",
                                   fix="give layer as one of the dissected layers")
        return self.data[layer]


@dataclass
class Dissection(PerLayer):
    """Result of :func:`dissect`. ``labels`` includes part labels when ``parts`` was on."""
    labels: list[str]
    layers: list[str]
    n_samples: int
    seed: int
    options: DissectOptions
    model: str = ""
    segmenter: str = ""
    data: dict = field(default_factory=dict)   # layer -> {array name: np.ndarray}
    meta: dict = field(default_factory=dict)

    def iou(self, layer) -> np.ndarray:
        """[n_units, len(labels)] IoU on the IoU sample set, at each pair's I/H threshold."""
        return self._layer(layer)["iou"]

    def thresholds(self, layer) -> np.ndarray:
        """[n_units, len(labels)] each pair's own threshold: the argmax of I/H on the threshold set."""
        return self._layer(layer)["threshold"]

    def iqr(self, layer) -> np.ndarray:
        """[n_units, len(labels)] each pair's best I/H, on the threshold set (where the threshold was
        chosen; :meth:`units` reports the I/H on the IoU set, which decides interpretability)."""
        return self._layer(layer)["iqr"]

    def frequency(self, layer=None) -> np.ndarray:
        """Pixel frequency of each label over all samples (dissection resolution)."""
        return self._layer(layer or self.layers[0])["frequency"]

    def topk(self, layer):
        """(values [U, k], sample indices [U, k]): samples with the largest spatial maximum."""
        d = self._layer(layer)
        return d["top_values"], d["top_index"]

    def quantiles(self, layer) -> pd.DataFrame:
        d = self._layer(layer)
        return pd.DataFrame(d["quantiles"], columns=[f"q{q:g}" for q in QUANTILE_LEVELS])

    def units(self, layer, exclude=None, *, labeling: str = "reference", pixel_accuracy: float | None = None,
              concepts=None) -> pd.DataFrame:
        """One row per unit: its concept, IoU, threshold, I/H, pixel accuracy, and whether it is
        interpretable (``label`` is ``""`` when not). ``iou``, ``iqr`` and ``accuracy`` are measured
        on the IoU set at the unit's threshold (they decide interpretability, as in the 2018 code);
        ``iqr_threshold_set`` and ``iou_threshold_set`` are the same on the threshold set (where the
        threshold was chosen: ``iqr_threshold_set`` is the I/H the threshold maximised).

        ``labeling``:

        - ``"reference"`` (default): the rule of the paper's 2018 code (``shared/reference/
          method.md``): the concept whose best I/H over the unit's quantile levels (levels > 0 with
          pixel agreement > 0.8) on the threshold set is highest; the unit keeps that one threshold.
          Interpretable when, on the IoU set at that threshold, the label's I/H > ``iqr_threshold``
          (0.01) and its IoU > ``iou_threshold`` (0.05).
        - ``"max-iou"``: each concept at its own unconstrained I/H threshold, the label the
          concept of highest IoU (large concepts tend to win). Interpretable when that IoU >
          ``iou_threshold`` and that concept's I/H on the IoU set > ``iqr_threshold``.

        ``pixel_accuracy``: also ask the label's pixel accuracy (agreement of mask and concept on
        the IoU set) above this (the paper's Fig. 5 uses 0.75). ``concepts``: label only among
        these concept names (e.g. objects only, or one category). ``exclude``: units left out of
        labelling (e.g. the supplement S-6.3 filter, units whose unit FID exceeds a threshold:
        ``np.nonzero(unit_fid.fid > 55)[0]``)."""
        check_choice("labeling", labeling, LABELINGS)
        if pixel_accuracy is not None:
            check_float("pixel_accuracy", pixel_accuracy, 0, 1, what="a pixel fraction in [0, 1] (Fig. 5: 0.75) "
                        "or None")
            if labeling != "reference":
                raise InputError("pixel_accuracy= needs labeling='reference' (it is the label's agreement at "
                                 "the unit's one threshold)", fix="drop pixel_accuracy or use labeling='reference'")
        d = self._layer(layer)
        allowed = np.ones(len(self.labels), bool)
        allowed[0] = False
        if concepts is not None:
            try:
                concepts = [concepts] if isinstance(concepts, str) else list(concepts)
            except TypeError:
                raise ArgumentTypeError(f"concepts must be a concept name or a list of names, got "
                                        f"{type(concepts).__name__}", fix="e.g. concepts=['door', 'window']") from None
            if not concepts:
                raise InputError("concepts is empty: no concept could label a unit",
                                 fix="give concepts at least one name, or concepts=None for all labels")
            unknown = [c for c in concepts if not isinstance(c, str) or c not in self.labels[1:]]
            if unknown:
                raise UnknownNameError(f"concepts {unknown} are not labels of this dissection; labels: "
                                       f"{', '.join(self.labels[1:])}", fix="give concepts from those labels")
            allowed &= np.isin(np.array(self.labels, dtype=object), concepts)
        r = np.arange(d["iou"].shape[0])
        if labeling == "reference":
            score = np.where(allowed, d["ref_iqr"], -1.0)
            best = score.argmax(1)
            # the unit's one threshold: its label's best level (among ``concepts``, the chosen one's);
            # IoU and I/H at it on the IoU set decide, as the 2018 code's ``iou`` and ``iou_iqr``
            iou, thr = d["ref_iou"][r, best], d["ref_thresholds"][r, best]
            iqr, iqr_thr_set = d["ref_iqr_iou_set"][r, best], d["ref_iqr"][r, best]
            iou_thr_set = d["ref_iou_thr_set"][r, best]
            acc = d["ref_accuracy"][r, best]
            precision = np.full(len(r), np.nan)
        else:
            masked = np.where(allowed, d["iou"], -1.0)
            best = masked.argmax(1)
            iou, thr = d["iou"][r, best], d["threshold"][r, best]
            iqr, iqr_thr_set = d["iqr_iou_set"][r, best], d["iqr"][r, best]
            iou_thr_set = d["iou_thr_set"][r, best]
            acc = np.full(len(r), np.nan)
            precision = d["precision"][r, best]
        ok = (iqr > self.options.iqr_threshold) & (iou > self.options.iou_threshold)
        if pixel_accuracy is not None:
            ok &= acc > pixel_accuracy
        if exclude is not None:
            ex = np.zeros(len(r), bool)
            listed = unit_list(exclude, "exclude (excluded units)")
            ex[check_units(listed, len(r), layer, "exclude (excluded units)") if listed else []] = True
            ok &= ~ex
        concept = np.array(self.labels, dtype=object)[best]
        return pd.DataFrame({
            "unit": r,
            "label": np.where(ok, concept, ""),
            "concept": concept,
            "iou": iou,
            "threshold": thr,
            "iqr": iqr,
            "iqr_threshold_set": iqr_thr_set,
            "accuracy": acc,
            "precision": precision,
            "iou_threshold_set": iou_thr_set,
            "interpretable": ok,
            "top_value": d["top_values"][:, 0] if d["top_values"].shape[1] else np.nan,
        })

    def units_by_category(self, layer, categories: dict, **labeling) -> pd.DataFrame:
        """One row per unit and, per category, the unit's label within it: ``{category}_label``
        (``""`` when not interpretable in that category), ``{category}_concept``, ``_iou``, ``_iqr``
        and ``_interpretable`` -- :meth:`units` with ``concepts=`` that category's labels, as the
        2018 code's per-category report. ``categories``: e.g. :func:`label_categories`;
        ``labeling``: the other keywords of :meth:`units`."""
        if not isinstance(categories, dict) or not categories:
            raise ArgumentTypeError(f"categories must be a non-empty dict {{category: [labels]}}, got "
                                    f"{type(categories).__name__}",
                                    fix="e.g. categories=core.label_categories(res.labels, segmenter)")
        if "concepts" in labeling:
            raise InputError("units_by_category takes its concepts from categories=", fix="drop concepts=")
        out = pd.DataFrame({"unit": np.arange(self._layer(layer)["iou"].shape[0])})
        for name, concepts in categories.items():
            u = self.units(layer, concepts=concepts, **labeling)
            for col in ("label", "concept", "iou", "iqr", "interpretable"):
                out[f"{name}_{col}"] = u[col].to_numpy()
        return out

    def summary(self, **labeling) -> pd.DataFrame:
        """Per layer: interpretable units, distinct concepts, mean IoU of interpretable units
        (``labeling``: keywords of :meth:`units`)."""
        rows = []
        for layer in self.layers:
            u = self.units(layer, **labeling)
            good = u[u.interpretable]
            rows.append({"layer": layer, "units": len(u), "interpretable": len(good),
                         "concepts": good.label.nunique(),
                         "mean_iou": float(good.iou.mean()) if len(good) else 0.0})
        return pd.DataFrame(rows)

    def concept_counts(self, layer, **labeling) -> pd.Series:
        u = self.units(layer, **labeling)
        return u[u.interpretable].label.value_counts()

    # -- persistence (cache) --
    def to_arrays(self):
        arrays = {f"{layer}::{k}": v for layer, d in self.data.items() for k, v in d.items()}
        meta = {"labels": self.labels, "layers": self.layers, "n_samples": self.n_samples,
                "seed": self.seed, "options": self.options.key(), "model": self.model,
                "segmenter": self.segmenter, "meta": self.meta}
        return arrays, meta

    def subset(self, layers) -> "Dissection":
        """The same result restricted to ``layers`` (arrays shared, not copied)."""
        layers = [layers] if isinstance(layers, str) else list(layers)
        for name in layers:
            self._layer(name)
        return Dissection(labels=list(self.labels), layers=layers, n_samples=self.n_samples, seed=self.seed,
                          options=self.options, model=self.model, segmenter=self.segmenter,
                          data={name: self.data[name] for name in layers}, meta=dict(self.meta))

    @classmethod
    def merge(cls, results, layers) -> "Dissection":
        """One result holding ``layers``, each taken from the first of ``results`` that has it
        (results of the same generator, segmenter, samples, seed and options)."""
        layers = list(layers)
        first = results[0]
        for r in results[1:]:
            if (r.labels, r.n_samples, r.seed, r.options) != (first.labels, first.n_samples, first.seed, first.options):
                raise InputError("can only merge dissections of the same labels, samples, seed and options")
        data = {}
        for name in layers:
            src = next((r for r in results if name in r.data), None)
            if src is None:
                raise InputError(f"no result holds layer {name!r}")
            data[name] = src.data[name]
        meta = dict(first.meta)
        meta["cached"] = all(r.meta.get("cached", False) for r in results)
        return cls(labels=list(first.labels), layers=layers, n_samples=first.n_samples, seed=first.seed,
                   options=first.options, model=first.model, segmenter=first.segmenter, data=data, meta=meta)

    @classmethod
    def from_arrays(cls, arrays, meta):
        data: dict = {}
        for k, v in arrays.items():
            layer, name = k.split("::", 1)
            # the shipped results store float32 / int32 (scripts/ship_results.py): computed with as float64 / int64
            data.setdefault(layer, {})[name] = (v.astype(np.float64) if v.dtype == np.float32 else
                                                v.astype(np.int64) if v.dtype == np.int32 else v)
        return cls(labels=list(meta["labels"]), layers=list(meta["layers"]), n_samples=meta["n_samples"],
                   seed=meta["seed"], options=DissectOptions(**meta["options"]), model=meta["model"],
                   segmenter=meta["segmenter"], data=data, meta=dict(meta["meta"]))


# ----------------------------------------------------------------------------- 1-2. validate and plan

@dataclass(frozen=True)
class _Plan:
    """Everything a dissection run is fixed by, decided before any batch."""
    generator: object
    segmenter: object
    layers: list
    n_samples: int
    seed: int
    batch_size: int
    device: torch.device
    seg_device: torch.device
    opts: DissectOptions
    size: int                      # dissection (segmentation) resolution
    shapes: dict                   # layer -> (units, h, w)
    labels: list
    rank: int = 0
    world: int = 1
    bases: dict = field(default_factory=dict)   # layer -> Basis: that layer is dissected feature by feature

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _check_n(n_samples) -> int:
    return check_samples("n_samples", n_samples, 2, images_per_sample=1.0,
                         what="a positive integer (at least 2: even samples choose thresholds, odd samples "
                              "measure IoU)", fix="give n_samples >= 2 (the paper uses 10,000)")


def _check_device(device, generator) -> torch.device:
    """The device to dissect on: ``device``, else the generator's."""
    return check_device("device", device, "device='cpu'") or torch.device(module_device(generator) or "cpu")


# bytes per dissection-resolution pixel of one sample in one batch: the resized segmentation (int64),
# its label slots (int32), their offsets (int32) and the bin indices (int64) they are counted with
_PIXEL_BYTES = 8 + 4 + 4 + 8


def _check_memory(layers, n_units, size, batch_size, n_samples, opts, n_labels, device) -> None:
    """Refuse a dissection whose histograms or (given the resolution ``size``) batches would not fit:
    estimates, before any batch."""
    need = sum(n_units) * 2 * n_labels * (opts.bins + 1) * 8
    if need > opts.max_hist_bytes:
        raise BudgetError(f"the histograms for {len(layers)} layers would take {need / 2**30:.1f} GiB "
                          f"(limit {opts.max_hist_bytes / 2**30:.1f} GiB)", fix=f"dissect fewer layers per call, "
                          f"lower bins= (now {opts.bins}) or raise max_hist_bytes=")
    if size is None:
        return
    batch = min(batch_size, n_samples)
    per_batch = batch * size * size * _PIXEL_BYTES + max(n_units) * size * size * 4 * 2
    check_memory(f"dissecting at resolution {size} in batches of {batch}", per_batch, device=device,
                 fix="lower resolution (default: half the image size) or batch_size")


def _check_layers(generator, layers) -> list[str]:
    names = [layers] if isinstance(layers, str) else layers
    try:
        names = list(names)
    except TypeError:
        names = None
    if names is not None:
        twice = sorted({x for x in names if isinstance(x, str) and names.count(x) > 1})
        if twice:
            raise InputError(f"layers names {', '.join(map(repr, twice))} more than once",
                             fix="give each layer once")
    return resolve_layers(generator, layers)


def _check_bases(basis, layers) -> dict:
    """``basis`` (a Basis for every layer, or {layer: Basis}) as {layer: Basis}; units: left out."""
    if basis is None:
        return {}
    if isinstance(basis, dict):
        unknown = sorted(set(basis) - set(layers))
        if unknown:
            raise UnknownNameError(f"basis names layers {unknown} that are not dissected here ({', '.join(layers)})",
                                   fix="give basis={layer: Basis} for dissected layers only")
        found = {name: check_basis(b) for name, b in basis.items()}
    else:
        if len(layers) != 1:
            raise InputError(f"one basis for {len(layers)} layers: a basis belongs to one layer",
                             fix="give basis={layer: Basis, ...} or dissect one layer")
        found = {layers[0]: check_basis(basis)}
    return {name: b for name, b in found.items() if learned(b) is not None}


def _plan(generator, segmenter, layers, n_samples, seed, batch_size, device, opts, basis=None) -> _Plan:
    # every argument is checked before the one-sample probe of the layers' shapes
    n_samples = _check_n(n_samples)
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    seed = check_int("seed", seed)
    layers = _check_layers(generator, layers)
    bases = _check_bases(basis, layers)
    device = _check_device(device, generator)
    rank, world = rank_world()
    chosen = batch_size is None
    if chosen:
        batch_size = 64 if device.type == "cuda" else 32
    batch_size = check_int("batch_size", batch_size, 1)
    n_batches = (n_samples + batch_size - 1) // batch_size
    if n_batches < world:
        raise InputError(f"{world} processes but only {n_batches} batches of {batch_size}: use at most "
                         f"{n_batches} processes or a smaller batch_size")
    n_labels = len(segmenter.labels)
    known = [bases[name].n_features if name in bases else known_units(generator, name) or 1
             for name in layers]                                          # a lower bound where not known
    _check_memory(layers, known, opts.resolution, batch_size, n_samples, opts, n_labels, device)
    # probe: shapes of every layer and of the image (one sample)
    with torch.no_grad(), Trace(generator, capture=layers) as tr:
        img = generator(z_range(seed, 0, 1, generator.z_dim, device))
    if not (isinstance(img, torch.Tensor) and img.dim() == 4 and img.shape[1] == 3):
        raise ProtocolError(f"generator forward(z) must return images N x 3 x H x W; got "
                            f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
    for name in layers:
        if tr[name].dim() != 4:
            raise InputError(f"layer {name!r} outputs shape {tuple(tr[name].shape)}; dissection needs "
                             f"featuremaps N x C x H x W (pick a convolutional layer)")
    size = opts.resolution or max(img.shape[-1] // 2, 1)
    for name, b in bases.items():
        check_basis(b, tr[name].shape[1], name)
    bases = {name: b.to(device) for name, b in bases.items()}
    shapes = {name: (bases[name].n_features, *tr[name].shape[2:]) if name in bases else tuple(tr[name].shape[1:])
              for name in layers}
    if chosen:          # on a shared card: a batch takes at most half the memory free now
        per_sample = size * size * _PIXEL_BYTES + img[0].numel() * 4 * 4 + sum(
            math.prod(s) for s in shapes.values()) * 4 * 3
        batch_size = fit_batch(device, batch_size, per_sample)
    _check_memory(layers, [shapes[n][0] for n in layers], size, batch_size, n_samples, opts, n_labels, device)
    return _Plan(generator, segmenter, layers, n_samples, seed, batch_size, device,
                 module_device(segmenter) or device, opts, size, shapes, list(segmenter.labels), rank, world, bases)


# ----------------------------------------------------------------------------- 3. cache

def _layer_keys(plan: _Plan) -> dict[str, str]:
    """The cache key of each layer's entry ({} when a model cannot be fingerprinted)."""
    gen_id, seg_id = _cache.model_fingerprint(plan.generator), _cache.model_fingerprint(plan.segmenter)
    if not (gen_id and seg_id):
        return {}
    return {name: _cache.make_key(kind="dissect", version=CODE_VERSION, generator=gen_id, segmenter=seg_id,
                                  layers=[name], n=plan.n_samples, seed=plan.seed, options=plan.opts.key(),
                                  size=plan.size, batch=plan.batch_size,
                                  **({"basis": plan.bases[name].cache_key} if name in plan.bases else {}))
            for name in plan.layers}


def _cached_layers(keys: dict[str, str]) -> dict[str, "Dissection"]:
    found = {}
    for name, key in keys.items():
        hit = _cache.lookup("dissect", key, Dissection.from_arrays)   # damaged or undecodable: recomputed
        if hit is not None:
            found[name] = hit
            hit.meta["cached"] = True
    return found


# ----------------------------------------------------------------------------- 4. accumulate

@dataclass
class _Counts:
    """What the batch loop accumulates: a tally per layer, pixel counts per (set, label slot),
    pixels per set, and timings."""
    tallies: dict
    slot_px: torch.Tensor
    totals: torch.Tensor
    n_slots: int
    forward_seconds: float = 0.0
    stats_seconds: float = 0.0


def _n_slots(n_labels: int, multi: bool, parts: bool) -> int:
    if not (multi or parts):
        return n_labels
    return 2 * n_labels + (4 * (n_labels - 1) if parts else 0)


def _new_counts(plan: _Plan, n_slots: int) -> _Counts:
    opts = plan.opts
    need = sum(plan.shapes[n][0] for n in plan.layers) * 2 * n_slots * (opts.bins + 1) * 8
    if need > opts.max_hist_bytes:
        raise BudgetError(f"the histograms for {len(plan.layers)} layers would take {need / 2**30:.1f} GiB "
                          f"(limit {opts.max_hist_bytes / 2**30:.1f} GiB): dissect fewer layers per call, "
                          f"lower bins= (now {opts.bins}) or raise max_hist_bytes=")
    tallies = {name: LayerTally(name, *plan.shapes[name], plan.size, opts.bins, n_slots, opts.topk, plan.device,
                                 geometry=opts.geometry)
               for name in plan.layers}
    return _Counts(tallies, torch.zeros(2 * n_slots, dtype=torch.int64, device=plan.device),
                   torch.zeros(2, dtype=torch.float64, device="cpu"), n_slots)


def _share_ranges(plan: _Plan, counts: _Counts, acts: dict) -> None:
    """Fix every unit's threshold grid from the first batch (the same on every process)."""
    for name in plan.layers:
        lo, w = LayerTally.range_from(acts[name], plan.opts.bins)
        if plan.distributed:
            torch.distributed.broadcast(lo, 0)
            torch.distributed.broadcast(w, 0)
        counts.tallies[name].set_range(lo, w)


def _accumulate(plan: _Plan, progress: Callable | None) -> _Counts:
    n_labels, counts, done = len(plan.labels), None, 0
    cuda = plan.device.type == "cuda"
    t0 = time.perf_counter()
    half = PRECISIONS[plan.opts.precision]
    for start, stop, images, acts in sample_batches(plan.generator, plan.layers, plan.n_samples, plan.seed,
                                                    plan.batch_size, plan.device, plan.rank, plan.world,
                                                    autocast=half):
        if plan.bases:
            with torch.no_grad():
                acts = {name: plan.bases[name].encode(a) if name in plan.bases else a for name, a in acts.items()}
        with torch.no_grad(), torch.autocast(plan.seg_device.type, dtype=half or torch.float32, enabled=bool(half)):
            seg = plan.segmenter.segment(images.to(plan.seg_device))
        if counts is None:
            check_segmentation(seg, stop - start, n_labels)
            multi = seg.dim() == 4 and seg.shape[1] > 1
            counts = _new_counts(plan, _n_slots(n_labels, multi, plan.opts.parts))
            _share_ranges(plan, counts, acts)
        if cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        counts.forward_seconds += t1 - t0
        with torch.no_grad():
            slots = _label_slots(seg.to(plan.device), plan.size, n_labels, plan.opts.parts, counts.n_slots)
            idx = torch.arange(start, stop, device=plan.device)
            which = (idx % 2).to(torch.int32)                    # 0: threshold set, 1: IoU set
            slot_off = slots + (which * counts.n_slots).view(-1, 1, 1, 1)
            add_counts(counts.slot_px, slot_off)
            n_odd = stop // 2 - start // 2                        # samples of the IoU set in start .. stop-1
            counts.totals += torch.tensor([stop - start - n_odd, n_odd], dtype=torch.float64,
                                          device="cpu") * plan.size ** 2
            for name in plan.layers:
                counts.tallies[name].update(acts[name], slot_off, idx)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        counts.stats_seconds += t0 - t1
        done += stop - start
        if progress:
            progress(done * plan.world if plan.distributed else done, plan.n_samples)
    if plan.distributed:
        merge_distributed(counts.tallies, counts.slot_px, counts.totals, plan.device)
    return counts


# ----------------------------------------------------------------------------- 5. finalise

def _finalise(plan: _Plan, counts: _Counts) -> "Dissection":
    labels, n_labels, n_slots, opts = plan.labels, len(plan.labels), counts.n_slots, plan.opts
    ext_labels = labels + (part_labels(labels) if opts.parts else [])
    n_ext = len(ext_labels)
    # slot -> extended-label index (-1: ignored slot)
    slot_concept = torch.full((n_slots,), -1, dtype=torch.long, device="cpu")
    slot_concept[:n_labels] = torch.arange(n_labels, device="cpu")
    if n_slots > n_labels:
        slot_concept[n_labels + 1: 2 * n_labels] = torch.arange(1, n_labels, device="cpu")
        if opts.parts:
            slot_concept[2 * n_labels:] = torch.arange(n_labels, n_ext, device="cpu")
    cs = counts.slot_px.view(2, n_slots).double().cpu()
    concept_px = torch.zeros(2, n_ext, dtype=torch.float64, device="cpu")
    valid = slot_concept >= 0
    concept_px.index_add_(1, slot_concept[valid], cs[:, valid])
    t_fin = time.perf_counter()
    data = {name: finalise_layer(counts.tallies[name], slot_concept, n_ext, n_labels, counts.totals, concept_px,
                                 opts.min_frequency) for name in plan.layers}
    meta = {"forward_seconds": counts.forward_seconds, "stats_seconds": counts.stats_seconds,
            "finalise_seconds": time.perf_counter() - t_fin, "resolution": plan.size,
            "batch_size": plan.batch_size, "world_size": plan.world, "code_version": CODE_VERSION,
            "shapes": {k: list(v) for k, v in plan.shapes.items()}, "cached": False,
            "bases": {name: b.name for name, b in plan.bases.items()}}
    return Dissection(labels=ext_labels, layers=list(plan.layers), n_samples=plan.n_samples, seed=plan.seed,
                      options=opts, model=str(getattr(plan.generator, "source", type(plan.generator).__name__)),
                      segmenter=str(getattr(plan.segmenter, "source", type(plan.segmenter).__name__)), data=data,
                      meta=meta)


# ----------------------------------------------------------------------------- entry

@long_computation("a dissection", fix="lower batch_size= or resolution=, or dissect fewer layers per call")
def dissect(generator, segmenter, layers: Iterable[str] | str, n_samples: int, seed: int = 0,
            batch_size: int | None = None, device=None, progress: Callable | None = None, *,
            options: DissectOptions | None = None, cache: bool = True, cached_only: bool = False,
            basis: Basis | dict | None = None, **option_kw) -> Dissection | None:
    """Dissect ``layers`` of ``generator`` against ``segmenter`` over ``n_samples`` samples.

    Sample ``i`` is ``generator(z_i)`` with ``z_i = core.base.sampling.z_range(seed, i, i+1)``.
    ``progress(done, total)`` is called after every batch. Options (keywords or ``options=``):
    see :class:`DissectOptions`. Results are cached on disk (``cache=False`` to skip), one entry
    per layer: a later call with any of these layers reuses them. ``cached_only=True`` returns
    the result only when it is all on disk, else None (computes nothing).
    Under ``torch.distributed`` (e.g. ``torchrun``) the batches are sharded across processes
    and the statistics merged: every process returns the same, complete result.
    """
    opts = options_of(DissectOptions, options, option_kw, "dissect")
    check_callable("progress", progress)
    check_bool("cache", cache)
    check_bool("cached_only", cached_only)
    plan = _plan(generator, segmenter, layers, n_samples, seed, batch_size, device, opts, basis)
    keys = _layer_keys(plan) if cache else {}
    found = _cached_layers(keys)
    todo = [name for name in plan.layers if name not in found]
    if not todo:
        if progress:
            progress(plan.n_samples, plan.n_samples)
        return Dissection.merge([found[name] for name in plan.layers], plan.layers)
    if cached_only:
        return None
    sub = replace(plan, layers=todo, shapes={name: plan.shapes[name] for name in todo})
    res = _finalise(sub, _accumulate(sub, progress))
    if keys and plan.rank == 0:
        for name in todo:           # one entry per layer: later calls combine them
            _cache.save("dissect", keys[name], *res.subset([name]).to_arrays())
    if found:
        found.update({name: res for name in todo})
        return Dissection.merge([found[name] for name in plan.layers], plan.layers)
    return res

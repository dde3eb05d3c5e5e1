"""Network Dissection of a classifier (Bau et al., CVPR 2017; NetDissect-Lite; dissect, PNAS 2020).

A classifier's layers are dissected on a probe set: images with exact concept labels (the probe-set
protocol of :mod:`core.base.protocols`) instead of a generator's samples and a segmenter's guess.

The rule (``rule="netdissect"``, NetDissect's; ``"dissect2020"`` the PNAS code's quantile):

1. per unit ``u``, the threshold ``T_u`` is the top ``quantile`` (0.005; 0.01) of its activations over
   all featuremap positions of all probe images, exactly (NumPy's linear-interpolation quantile,
   from a running top-k of each unit's values: no sampling);
2. the featuremap is upsampled to the label resolution (bilinear, the 2018 geometry of
   :func:`core.engine.tally.interp_matrix`: half-pixel centres, border padding) and thresholded,
   ``M_u = up(A_u) > T_u``;
3. ``IoU(u, c) = sum |M_u ∧ L_c| / sum |M_u ∨ L_c|`` over the whole probe set;
4. a unit is a detector when its best IoU > ``iou_threshold`` (0.04); its label is that concept,
   its category the concept's category (the probe set's ``categories``).

Two passes over the probe batches (each one forward feeding every requested layer): thresholds,
then the counts at those thresholds. Everything streams on the model's device; the counts are
sparse: a (unit, image) map whose featuremap maximum is not above ``T_u`` cannot pass it after
bilinear upsampling (a convex combination), so only the live maps are upsampled, their pixels
above threshold found with one ``nonzero`` and counted per (unit, concept) with one ``bincount``.
No Python loop runs per unit. The result is cached by the one convention, :func:`core.base.cache.measure`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError, ProtocolError, UnknownNameError
from core.base.hooks import Trace, resolve_layers
from core.base.protocols import check_classifier, check_probe, check_probe_batch
from core.base.validate import check_bool, check_callable, check_choice, check_float, check_int
from core.engine.dissection import PerLayer
from core.engine.tally import GEOMETRIES, interp_matrix

__all__ = ["dissect_classifier", "ClassifierDissection", "ClassifierDissectOptions", "RULES", "CODE_VERSION",
           "quantile_thresholds"]

CODE_VERSION = "classifier-dissect-v1"
RULES = {"netdissect": {"quantile": 0.005, "iou_threshold": 0.04},     # CVPR 2017, NetDissect-Lite
         "dissect2020": {"quantile": 0.01, "iou_threshold": 0.04}}      # davidbau/dissect (PNAS 2020)


@dataclass(frozen=True)
class ClassifierDissectOptions:
    rule: str = "netdissect"          # a name of RULES: the quantile and IoU threshold below default to it
    quantile: float | None = None     # top fraction of each unit's featuremap values above its threshold
    iou_threshold: float | None = None  # a detector's best IoU must exceed this
    topk: int = 10                    # images kept per unit (largest featuremap maximum)
    geometry: str = "half-pixel"      # featuremap -> label pixels (core.engine.tally.interp_matrix)
    chunk_bytes: int = 256 << 20      # upsampled live maps handled at once

    def __post_init__(self):
        check_choice("rule", self.rule, RULES)
        if self.quantile is not None:
            check_float("quantile", self.quantile, 0, 1, lo_open=True, hi_open=True,
                        what="a fraction in (0, 1) (NetDissect: 0.005)")
        if self.iou_threshold is not None:
            check_float("iou_threshold", self.iou_threshold, None, 1, what="an IoU <= 1 (NetDissect: 0.04)")
        check_int("topk", self.topk, 0)
        check_choice("geometry", self.geometry, GEOMETRIES)
        check_int("chunk_bytes", self.chunk_bytes, 1 << 20)

    @property
    def q(self) -> float:
        return RULES[self.rule]["quantile"] if self.quantile is None else float(self.quantile)

    @property
    def iou_min(self) -> float:
        return RULES[self.rule]["iou_threshold"] if self.iou_threshold is None else float(self.iou_threshold)

    def key(self) -> dict:
        """What the counts depend on (the IoU threshold only labels: it is applied when read)."""
        return {"quantile": self.q, "geometry": self.geometry, "topk": self.topk}


# ----------------------------------------------------------------------------- result

@dataclass
class ClassifierDissection(PerLayer):
    """Result of :func:`dissect_classifier`: per layer, each unit's threshold and its IoU with every concept."""
    labels: list[str]
    categories: dict
    layers: list[str]
    n_samples: int
    options: ClassifierDissectOptions
    model: str = ""
    probe: str = ""
    data: dict = field(default_factory=dict)    # layer -> {array name: np.ndarray}
    meta: dict = field(default_factory=dict)

    def thresholds(self, layer) -> np.ndarray:
        """[units] each unit's threshold T_u (its top-``quantile`` featuremap value)."""
        return self._layer(layer)["threshold"]

    def iou(self, layer) -> np.ndarray:
        """[units, len(labels)] IoU over the whole probe set (column 0, none, is 0)."""
        d = self._layer(layer)
        inter, area, concept = d["intersection"], d["unit_area"][:, None], d["concept_area"][None, :]
        union = area + concept - inter
        out = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        out[:, 0] = 0.0
        return out

    def topk(self, layer):
        """(values [U, k], probe indices [U, k]): the images of largest featuremap maximum per unit."""
        d = self._layer(layer)
        return d["top_values"], d["top_index"]

    def category_of(self, concept: str) -> str:
        for cat, names in self.categories.items():
            if concept in names:
                return cat
        return ""

    def units(self, layer, iou_threshold: float | None = None) -> pd.DataFrame:
        """One row per unit: its best concept (``concept``, ``category``, ``iou``), its threshold and
        whether it is a detector (best IoU > ``iou_threshold``, default the rule's); ``label`` is the
        concept for a detector and ``""`` otherwise."""
        t = self.options.iou_min if iou_threshold is None else check_float("iou_threshold", iou_threshold, None, 1)
        iou = self.iou(layer)
        best = iou[:, 1:].argmax(1) + 1 if iou.shape[1] > 1 else np.zeros(len(iou), int)
        best_iou = iou[np.arange(len(iou)), best]
        concept = np.array(self.labels, dtype=object)[best]
        det = best_iou > t
        cats = {c: self.category_of(c) for c in set(concept)}
        return pd.DataFrame({"layer": layer, "unit": np.arange(len(iou)), "concept": concept,
                             "category": [cats[c] for c in concept], "iou": best_iou,
                             "threshold": self.thresholds(layer), "detector": det,
                             "label": np.where(det, concept, "")})

    def summary(self, iou_threshold: float | None = None) -> pd.DataFrame:
        """Per layer: units, detectors, unique concepts detected, and per category the detectors
        (``<category>_detectors``) and unique detectors (``<category>_unique``, NetDissect's count)."""
        rows = []
        for layer in self.layers:
            u = self.units(layer, iou_threshold)
            d = u[u.detector]
            row = {"layer": layer, "units": len(u), "detectors": int(len(d)), "unique": int(d.concept.nunique())}
            for cat in self.categories:
                dc = d[d.category == cat]
                row[f"{cat}_detectors"] = int(len(dc))
                row[f"{cat}_unique"] = int(dc.concept.nunique())
            rows.append(row)
        return pd.DataFrame(rows)

    # the cache codec
    def to_arrays(self) -> tuple[dict, dict]:
        arrays = {f"{i}/{k}": v for i, layer in enumerate(self.layers) for k, v in self.data[layer].items()}
        meta = {"labels": self.labels, "categories": self.categories, "layers": self.layers,
                "n_samples": self.n_samples, "options": asdict(self.options), "model": self.model,
                "probe": self.probe, "meta": self.meta}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "ClassifierDissection":
        layers = list(meta["layers"])
        data = {layer: {} for layer in layers}
        for key, v in arrays.items():
            i, _, name = key.partition("/")
            data[layers[int(i)]][name] = np.asarray(v)
        return cls(labels=list(meta["labels"]), categories={k: list(v) for k, v in meta["categories"].items()},
                   layers=layers, n_samples=int(meta["n_samples"]), options=ClassifierDissectOptions(**meta["options"]),
                   model=meta.get("model", ""), probe=meta.get("probe", ""), data=data,
                   meta={**meta.get("meta", {}), "cached": True})


# ----------------------------------------------------------------------------- pieces

def quantile_thresholds(top: torch.Tensor, n: int, q: float) -> torch.Tensor:
    """Each row's ``1 - q`` quantile of ``n`` values (NumPy's default linear interpolation) from
    ``top`` [U, k], its ``k`` largest values sorted descending, ``k >= n - floor((n - 1)(1 - q))``."""
    h = (n - 1) * (1.0 - q)
    lo = math.floor(h)
    frac = h - lo
    k = n - lo                                  # top[:, k-1] is ascending rank lo
    x_lo = top[:, k - 1].double()
    x_hi = top[:, k - 2].double() if k >= 2 else x_lo
    return (x_lo + frac * (x_hi - x_lo)).float()


def _n_keep(n: int, q: float) -> int:
    return n - math.floor((n - 1) * (1.0 - q))


def _forward(model, layers, images):
    with torch.no_grad(), Trace(model, capture=layers) as tr:
        model(images)
    out = {}
    for name in layers:
        a = tr[name]
        if not (isinstance(a, torch.Tensor) and a.dim() == 4):
            raise InputError(f"layer {name!r} outputs {tuple(a.shape) if isinstance(a, torch.Tensor) else type(a)}; "
                             "dissection needs featuremaps N x C x H x W", fix="pick a convolutional layer")
        if not bool(torch.isfinite(a).all()):
            raise ProtocolError(f"layer {name!r} returned NaN or inf on the probe images",
                                fix="the network overflows or is broken: fix its weights or forward")
        out[name] = a.float()
    return out


def _batches(probe, n, batch_size, device, n_labels):
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        images, labels = probe.batch(start, stop)
        check_probe_batch(images, labels, stop - start, n_labels, probe.size)
        if labels.dim() == 3:
            labels = labels.unsqueeze(1)
        yield start, stop, images.to(device), labels.to(device)


def _threshold_pass(model, probe, layers, n, batch_size, device, opts, shapes, progress, total_steps):
    n_labels = len(probe.labels)
    top = {name: torch.empty(shapes[name][0], 0, device=device) for name in layers}
    keep = {name: _n_keep(n * shapes[name][1] * shapes[name][2], opts.q) for name in layers}
    for start, stop, images, _ in _batches(probe, n, batch_size, device, n_labels):
        acts = _forward(model, layers, images)
        for name in layers:
            a = acts[name].transpose(0, 1).reshape(acts[name].shape[1], -1)
            both = torch.cat([top[name], a], 1)
            k = min(keep[name], both.shape[1])
            top[name] = both.topk(k, dim=1, sorted=False).values
        if progress:
            progress(stop, total_steps)
    out = {}
    for name in layers:
        t = top[name].sort(dim=1, descending=True).values
        out[name] = quantile_thresholds(t, n * shapes[name][1] * shapes[name][2], opts.q)
    return out


def _count_pass(model, probe, layers, n, batch_size, device, opts, shapes, thresholds, progress, total_steps):
    n_labels = len(probe.labels)
    st = {}
    concept_area = torch.zeros(n_labels, dtype=torch.int64, device=device)
    size = None
    for start, stop, images, labels in _batches(probe, n, batch_size, device, n_labels):
        b, kch, s = labels.shape[0], labels.shape[1], labels.shape[-1]
        if labels.shape[-2] != s:
            raise ProtocolError(f"probe labels must be square, got {tuple(labels.shape[-2:])}")
        if size is None:
            size = s
            for name in layers:
                u, fh, fw = shapes[name]
                st[name] = {"inter": torch.zeros(u * n_labels, dtype=torch.int64, device=device),
                            "area": torch.zeros(u, dtype=torch.int64, device=device),
                            "ry": interp_matrix(fh, s, device, geometry=opts.geometry),
                            "rx": interp_matrix(fw, s, device, geometry=opts.geometry),
                            "top_v": torch.empty(u, 0, device=device),
                            "top_i": torch.empty(u, 0, dtype=torch.int64, device=device)}
        elif s != size:
            raise ProtocolError(f"probe labels changed resolution from {size} to {s} between batches")
        lab = labels.long().reshape(b, kch, s * s)
        concept_area += torch.bincount(lab.reshape(-1), minlength=n_labels)[:n_labels]
        acts = _forward(model, layers, images)
        idx = torch.arange(start, stop, device=device)
        for name in layers:
            a, d = acts[name], st[name]
            u = a.shape[1]
            t = thresholds[name].to(device)
            peak = a.amax((2, 3))                                        # [b, u]
            if opts.topk:                                                # top images per unit
                v = torch.cat([d["top_v"], peak.T], 1)
                i = torch.cat([d["top_i"], idx.view(1, -1).expand(u, -1)], 1)
                k = min(opts.topk, v.shape[1])
                v, j = v.topk(k, dim=1)
                d["top_v"], d["top_i"] = v, i.gather(1, j)
            live_b, live_u = torch.nonzero(peak > t.view(1, -1), as_tuple=True)
            per_chunk = max(1, opts.chunk_bytes // (s * s * 4 + 1))
            for c0 in range(0, live_b.numel(), per_chunk):
                lb, lu = live_b[c0:c0 + per_chunk], live_u[c0:c0 + per_chunk]
                up = d["ry"] @ a[lb, lu] @ d["rx"].T                    # [L, s, s]
                on_l, on_p = torch.nonzero((up > t[lu].view(-1, 1, 1)).view(len(lb), -1), as_tuple=True)
                units = lu[on_l]
                d["area"] += torch.bincount(units, minlength=u)
                concept = lab[lb[on_l], :, on_p]                           # [n_on, K]
                code = (units.view(-1, 1) * n_labels + concept).reshape(-1)
                d["inter"] += torch.bincount(code, minlength=u * n_labels)
        if progress:
            progress(n + stop, total_steps)
    return st, concept_area, size


def _check_layers(model, layers) -> list[str]:
    if layers is None:
        names = getattr(model, "layer_names", None)
        if not names:
            raise InputError("no layers given", fix="give layers=[...] (the model's named modules)")
        layers = list(names)
    return resolve_layers(model, layers)


def _compute(model, probe, layers, n, batch_size, device, opts, progress) -> ClassifierDissection:
    t0 = time.perf_counter()
    # the layers' shapes, from one probe image
    images, _ = probe.batch(0, 1)
    acts = _forward(model, layers, images.to(device))
    shapes = {name: tuple(acts[name].shape[1:]) for name in layers}
    total = 2 * n
    thresholds = _threshold_pass(model, probe, layers, n, batch_size, device, opts, shapes, progress, total)
    t1 = time.perf_counter()
    st, concept_area, size = _count_pass(model, probe, layers, n, batch_size, device, opts, shapes, thresholds,
                                         progress, total)
    t2 = time.perf_counter()
    n_labels = len(probe.labels)
    ca = concept_area.cpu().numpy().astype(np.float64)
    ca[0] = 0
    data = {}
    for name in layers:
        d = st[name]
        data[name] = {"threshold": thresholds[name].cpu().numpy(),
                      "intersection": d["inter"].view(-1, n_labels).cpu().numpy().astype(np.float64),
                      "unit_area": d["area"].cpu().numpy().astype(np.float64),
                      "concept_area": ca,
                      "top_values": d["top_v"].cpu().numpy(), "top_index": d["top_i"].cpu().numpy()}
    meta = {"threshold_seconds": t1 - t0, "count_seconds": t2 - t1, "seconds": t2 - t0, "resolution": size,
            "batch_size": batch_size, "device": str(device), "code_version": CODE_VERSION,
            "shapes": {k: list(v) for k, v in shapes.items()}, "cached": False}
    cats = getattr(probe, "categories", None) or {"concept": list(probe.labels[1:])}
    return ClassifierDissection(labels=list(probe.labels), categories={str(k): list(v) for k, v in cats.items()},
                                layers=list(layers), n_samples=n, options=opts,
                                model=str(getattr(model, "name", "") or type(model).__name__),
                                probe=str(getattr(probe, "name", "") or type(probe).__name__), data=data, meta=meta)


# ----------------------------------------------------------------------------- entry

def dissect_classifier(model, probe, layers: Iterable[str] | str | None = None, n_samples: int | None = None,
                       batch_size: int = 32, progress: Callable | None = None, *,
                       options: ClassifierDissectOptions | None = None, cache: bool = True, cached_only: bool = False,
                       **option_kw) -> ClassifierDissection | None:
    """Dissect ``layers`` of the classifier ``model`` on the first ``n_samples`` images of ``probe``
    (default: all of them) by ``options.rule`` (NetDissect's by default; keywords or ``options=``:
    :class:`ClassifierDissectOptions`). Runs on the model's device. ``progress(done, total)`` after
    every batch of either pass (``total`` = 2 x images). Cached (``cache=False`` skips;
    ``cached_only=True`` returns the stored result or None)."""
    if options is not None and option_kw:
        raise ArgumentTypeError("pass options either as options= or as keywords, not both")
    if options is not None and not isinstance(options, ClassifierDissectOptions):
        raise ArgumentTypeError(f"options must be a ClassifierDissectOptions, got {type(options).__name__}")
    unknown = sorted(set(option_kw) - set(ClassifierDissectOptions.__dataclass_fields__))
    if unknown:
        raise UnknownNameError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} of "
                               "dissect_classifier",
                               fix=f"options are: {', '.join(ClassifierDissectOptions.__dataclass_fields__)}")
    opts = options or ClassifierDissectOptions(**option_kw)
    check_classifier(model)
    check_probe(probe, model.input_size)
    check_callable("progress", progress)
    check_bool("cache", cache)
    n_avail = len(probe)
    n = n_avail if n_samples is None else check_int("n_samples", n_samples, 1, n_avail,
                                                      what=f"a number of probe images in 1 .. {n_avail}")
    batch_size = check_int("batch_size", batch_size, 1)
    layers = _check_layers(model, layers)
    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        res = _cache.measure("classifier-dissect", CODE_VERSION, models={"classifier": model, "probe": probe},
                             parts={"layers": layers, "n": n, "options": opts.key()},
                             compute=lambda: _compute(model, probe, layers, n, batch_size, device, opts, progress),
                             codec=ClassifierDissection, cache=cache, cached_only=cached_only)
    finally:
        model.train(was_training)
    if res is not None:
        res.options = opts              # the labelling options of this call (the counts do not depend on them)
    return res

"""Dissection (Bau et al. 2019, §3.1 eq. 2): unit x concept IoU at information-quality thresholds.

One generator pass and one segmentation pass per batch feed every requested layer. For each
layer the statistics are a single streaming histogram on the generator's device::

    hist[set, label slot, unit, bin]        (int64, bounded memory, summable across processes)

Each unit's featuremap is scaled so that its candidate thresholds become the integers
0 … B-1 (``t_k = lo_u + k * width_u``; ``lo``/``width`` fixed from the first batch), upsampled
bilinearly (aligned corners) to the dissection resolution with two small matmuls, and binned
with ``ceil``: a pixel lands in bin ``b`` = number of candidate thresholds strictly below it.
Reverse cumulative sums then give, for every candidate threshold, the exact joint counts of
(activation > t) and each concept — the 2x2 tables the information-quality ratio I/H needs.

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
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from . import cache as _cache
from .hooks import Trace, resolve_layers
from .protocols import ProtocolError, check_generator, check_segmentation, check_segmenter
from .sampling import z_range

__all__ = ["dissect", "Dissection", "DissectOptions", "CODE_VERSION", "interp_matrix",
           "upsample", "part_labels", "information_quality"]

CODE_VERSION = "dissect-v1"
QUANTILE_LEVELS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.995, 0.999, 1.0)
PARTS = ("t", "b", "l", "r")


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

    def key(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ----------------------------------------------------------------------------- small pieces

def interp_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[n_out, n_in] matrix of 1-D linear interpolation with aligned corners
    (``F.interpolate(..., mode='bilinear', align_corners=True)`` along one axis)."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    if n_in == 1:
        m[:, 0] = 1.0
    else:
        pos = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / max(n_out - 1, 1))
        i0 = pos.floor().clamp(max=n_in - 2).long()
        frac = pos - i0
        rows = torch.arange(n_out)
        m[rows, i0] = 1 - frac
        m[rows, i0 + 1] += frac
    return m.to(device=device, dtype=dtype)


def upsample(act: torch.Tensor, ry: torch.Tensor | None, rx: torch.Tensor | None) -> torch.Tensor:
    """Separable bilinear resize of [N, U, h, w] with precomputed matrices (None: same size)."""
    if rx is not None:
        act = act @ rx.T
    if ry is not None:
        act = ry @ act
    return act


def information_quality(n11, m, nc, total):
    """Information-quality ratio I/H of the 2x2 joint table of (mask, concept), from counts:
    ``n11`` = |mask ∧ concept|, ``m`` = |mask|, ``nc`` = |concept|, ``total`` = all pixels.
    Broadcasts; float64; 0 where the joint entropy is 0."""
    total = torch.as_tensor(total, dtype=torch.float64)
    p11 = n11 / total
    p10 = (m - n11) / total
    p01 = (nc - n11) / total
    p00 = (1 - p11 - p10 - p01).clamp(min=0)
    pm, pc = p11 + p10, p11 + p01

    def xlogy(a, b):
        return torch.where(a > 0, a * torch.log(torch.where(a > 0, b, torch.ones_like(b))),
                           torch.zeros_like(a))

    h = -(xlogy(p11, p11) + xlogy(p10, p10) + xlogy(p01, p01) + xlogy(p00, p00))
    i = (xlogy(p11, p11 / (pm * pc).clamp(min=1e-300)) + xlogy(p10, p10 / (pm * (1 - pc)).clamp(min=1e-300))
         + xlogy(p01, p01 / ((1 - pm) * pc).clamp(min=1e-300))
         + xlogy(p00, p00 / ((1 - pm) * (1 - pc)).clamp(min=1e-300)))
    return torch.where(h > 1e-12, i / h.clamp(min=1e-12), torch.zeros_like(h))


def part_labels(labels: list[str]) -> list[str]:
    return [f"{c}-{p}" for c in labels[1:] for p in PARTS]


def part_maps(primary: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertical and horizontal part ids for a label map batch [N, S, S] (0 = unlabeled).

    Returns two int arrays [N, S, S] with values ``(c-1)*4 + p`` (p: 0 t, 1 b, 2 l, 3 r) or -1
    for unlabeled pixels. Connected components are 4-connected; a pixel is in the top half of
    its component when its centre lies above the middle of the component's bounding box."""
    from scipy import ndimage

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


def _module_device(obj) -> torch.device | None:
    if isinstance(obj, torch.nn.Module):
        for p in obj.parameters():
            return p.device
        for b in obj.buffers():
            return b.device
    return None


# ----------------------------------------------------------------------------- accumulators

_MAGIC = 8388608.0          # 2**23: adding it to an integer-valued float < 2**23 puts the
_MAGIC_BITS = 0x4B000000    # integer in the low mantissa bits (bit pattern = _MAGIC_BITS + value)
_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, torch.get_num_threads())),
                                   thread_name_prefix="ganatomy-bincount")
    return _POOL


class _LayerStats:
    """Streaming statistics of one layer (all summable or min/max/top-k mergeable).

    ``hist`` is unit-major — [unit, set, slot, bin] — so that counting one unit touches one
    contiguous block of ``2 * slots * (bins + 1)`` counters (cache-resident), and units can be
    counted in parallel threads without sharing counters."""

    def __init__(self, name, n_units, fh, fw, size, bins, n_slots, topk, device):
        self.name, self.u, self.bins, self.n_slots = name, n_units, bins, n_slots
        self.block = 2 * n_slots * (bins + 1)               # counters per unit
        n = n_units * self.block
        if n >= 2 ** 31:
            raise ValueError(f"layer {name}: {n_units} units x {bins} bins x {n_slots} label slots is "
                             f"too large for one histogram; lower bins= or turn parts off")
        self.hist = torch.zeros(n, dtype=torch.int64, device=device)
        self.ry = None if fh == size else interp_matrix(fh, size, device)
        self.rx = None if fw == size else interp_matrix(fw, size, device)
        uo = torch.arange(n_units, device=device, dtype=torch.float64) * self.block
        # exact float->int via the 2**23 trick when every index fits below 2**23
        self.magic = n < 2 ** 23
        self.unit_off_f = (uo + (_MAGIC if self.magic else 0)).float().view(-1, 1, 1, 1)
        self.unit_off_i = uo.to(torch.int32).view(-1, 1, 1, 1)
        self.lo = self.width = None
        self.vmin = torch.full((n_units,), math.inf, device=device)
        self.vmax = torch.full((n_units,), -math.inf, device=device)
        self.k = topk
        self.top_v = torch.empty(n_units, 0, device=device)
        self.top_i = torch.empty(n_units, 0, dtype=torch.int64, device=device)

    def set_range(self, lo, width):
        self.lo, self.width = lo, width
        self.scale = (1.0 / width).view(-1, 1, 1, 1)
        self.offset = (-lo / width).view(-1, 1, 1, 1)

    @staticmethod
    def range_from(act, bins):
        a = act.float().transpose(0, 1).reshape(act.shape[1], -1)
        lo, hi = a.amin(1), a.amax(1)
        width = (hi - lo) / bins
        width = torch.where(width > 0, width, torch.ones_like(width))
        return lo, width

    def hist_view(self):
        """[set, slot, unit, bin] view of the counters (a copy, as float64 on the CPU)."""
        h = self.hist.view(self.u, 2, self.n_slots, self.bins + 1)
        return h.permute(1, 2, 0, 3).double().cpu()

    def _count(self, idx):
        """hist += bincount(idx) for a unit-major index tensor [U', ...] (U' = all units)."""
        if idx.device.type != "cpu" or torch.get_num_threads() < 2 or idx.numel() < (1 << 20):
            self.hist += torch.bincount(idx.reshape(-1), minlength=self.hist.numel())
            return
        parts = min(torch.get_num_threads(), self.u)
        cuts = [round(i * self.u / parts) for i in range(parts + 1)]

        def work(j):
            a, b = cuts[j], cuts[j + 1]
            if a == b:
                return
            sub = idx[a:b].reshape(-1) - a * self.block if a else idx[a:b].reshape(-1)
            self.hist[a * self.block: b * self.block] += torch.bincount(sub, minlength=(b - a) * self.block)

        list(_pool().map(work, range(parts)))

    def update(self, act, slot_off, sample_idx, max_elems=1 << 24):
        """act [n, U, h, w]; slot_off [n, K, S, S] int32 = set * n_slots + slot."""
        act = act.float()
        n = act.shape[0]
        amax = act.amax((2, 3))
        self.vmin = torch.minimum(self.vmin, act.amin((0, 2, 3)))
        self.vmax = torch.maximum(self.vmax, amax.amax(0))
        v = torch.cat([self.top_v, amax.T], 1)
        i = torch.cat([self.top_i, sample_idx.view(1, -1).expand(self.u, -1)], 1)
        k = min(self.k, v.shape[1])
        self.top_v, j = v.topk(k, dim=1)
        self.top_i = i.gather(1, j)
        s = slot_off.shape[-1]
        step = max(1, max_elems // (self.u * s * s))
        unit_major = act.transpose(0, 1)                          # [U, n, h, w]
        for a in range(0, n, step):
            x = upsample(unit_major[:, a:a + step] * self.scale + self.offset, self.ry, self.rx)
            x = x.ceil_().clamp_(0, self.bins)                    # bin = #thresholds below
            so = slot_off[a:a + step].transpose(0, 1) * (self.bins + 1)   # [K, n, S, S]
            if self.magic:
                base = x.add_(self.unit_off_f).view(torch.int32)  # exact: all values < 2**24
                so = so - _MAGIC_BITS
            else:
                base = x.to(torch.int32).add_(self.unit_off_i)
            for kk in range(so.shape[0]):
                last = kk == so.shape[0] - 1
                self._count(base.add_(so[kk:kk + 1]) if last else base + so[kk:kk + 1])


# ----------------------------------------------------------------------------- result

@dataclass
class Dissection:
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

    def _layer(self, layer):
        if layer not in self.data:
            raise ValueError(f"layer {layer!r} was not dissected; dissected layers: {', '.join(self.layers)}")
        return self.data[layer]

    def iou(self, layer) -> np.ndarray:
        """[n_units, len(labels)] IoU on the IoU sample set, at each pair's I/H threshold."""
        return self._layer(layer)["iou"]

    def thresholds(self, layer) -> np.ndarray:
        return self._layer(layer)["threshold"]

    def iqr(self, layer) -> np.ndarray:
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

    def units(self, layer, exclude=None) -> pd.DataFrame:
        """One row per unit: best concept (``label``; ``""`` when not interpretable), its IoU,
        threshold, I/H, precision, IoU on the threshold set, and interpretability.

        ``exclude``: units left out of labelling (e.g. the supplement S-6.3 filter: units whose
        unit FID exceeds a threshold, ``np.nonzero(unit_fid.fid > 55)[0]``)."""
        d = self._layer(layer)
        iou = d["iou"]
        best = iou.argmax(1)
        r = np.arange(iou.shape[0])
        ok = (iou[r, best] > self.options.iou_threshold) & (d["iqr"][r, best] > self.options.iqr_threshold)
        if exclude is not None:
            ex = np.zeros(len(r), bool)
            ex[np.asarray(list(exclude), dtype=np.int64)] = True
            ok = ok & ~ex
        concept = np.array(self.labels, dtype=object)[best]
        return pd.DataFrame({
            "unit": r,
            "label": np.where(ok, concept, ""),
            "concept": concept,
            "iou": iou[r, best],
            "threshold": d["threshold"][r, best],
            "iqr": d["iqr"][r, best],
            "precision": d["precision"][r, best],
            "iou_threshold_set": d["iou_thr_set"][r, best],
            "interpretable": ok,
            "top_value": d["top_values"][:, 0] if d["top_values"].shape[1] else np.nan,
        })

    def summary(self) -> pd.DataFrame:
        """Per layer: interpretable units, distinct concepts, mean IoU of interpretable units."""
        rows = []
        for layer in self.layers:
            u = self.units(layer)
            good = u[u.interpretable]
            rows.append({"layer": layer, "units": len(u), "interpretable": len(good),
                         "concepts": good.label.nunique(),
                         "mean_iou": float(good.iou.mean()) if len(good) else 0.0})
        return pd.DataFrame(rows)

    def concept_counts(self, layer) -> pd.Series:
        u = self.units(layer)
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
                raise ValueError("can only merge dissections of the same labels, samples, seed and options")
        data = {}
        for name in layers:
            src = next((r for r in results if name in r.data), None)
            if src is None:
                raise ValueError(f"no result holds layer {name!r}")
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
            data.setdefault(layer, {})[name] = v
        return cls(labels=list(meta["labels"]), layers=list(meta["layers"]), n_samples=meta["n_samples"],
                   seed=meta["seed"], options=DissectOptions(**meta["options"]), model=meta["model"],
                   segmenter=meta["segmenter"], data=data, meta=dict(meta["meta"]))


# ----------------------------------------------------------------------------- finalise

def _quantiles(hist_all, lo, width, vmin, vmax, levels):
    """Approximate quantiles from the all-pixel histogram (linear inside a bin)."""
    u, nb = hist_all.shape
    bins = nb - 1
    k = torch.arange(nb, dtype=torch.float64)
    left = lo.view(-1, 1) + (k - 1).clamp(min=0).view(1, -1) * width.view(-1, 1)
    right = lo.view(-1, 1) + k.clamp(max=bins - 1).view(1, -1) * width.view(-1, 1)
    left[:, 0] = vmin
    right[:, 0] = lo
    right[:, -1] = vmax
    left = torch.minimum(left, right)
    c = hist_all.cumsum(1)
    total = c[:, -1:].clamp(min=1)
    out = []
    for q in levels:
        target = q * total
        j = torch.searchsorted(c, target.contiguous()).clamp(max=nb - 1)
        prev = torch.where(j > 0, c.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(target))
        cnt = hist_all.gather(1, j).clamp(min=1)
        f = ((target - prev) / cnt).clamp(0, 1)
        val = left.gather(1, j) + f * (right.gather(1, j) - left.gather(1, j))
        out.append(val.squeeze(1))
    res = torch.stack(out, 1)
    res[:, 0], res[:, -1] = vmin, vmax
    return res


def _finalise(st: _LayerStats, slot_concept, n_labels_ext, n_primary, totals, concept_px,
              opts: DissectOptions):
    """Thresholds (argmax I/H on the threshold set) and IoU (on the IoU set) for every unit and
    every scored concept (frequency >= min_frequency, label 0 excluded); others get IoU 0 and
    threshold NaN."""
    b, u = st.bins, st.u
    h = st.hist_view()                                     # [2, slots, U, B+1]
    gt = h.flip(-1).cumsum(-1).flip(-1)[..., 1:]           # [2, slots, U, B]: count(x > t_k)
    m = gt[:, :n_primary].sum(1)                           # [2, U, B]: |mask|
    freq = concept_px.sum(0) / totals.sum()
    scored = freq >= opts.min_frequency
    scored[0] = False
    sc = torch.nonzero(scored).view(-1)                    # concepts to score
    # slots that feed a scored concept, mapped to the concept's row among ``sc``
    row_of = torch.full((n_labels_ext,), -1, dtype=torch.long)
    row_of[sc] = torch.arange(len(sc))
    slot_row = torch.where(slot_concept >= 0, row_of[slot_concept.clamp(min=0)], torch.full_like(slot_concept, -1))
    use = slot_row >= 0
    n11 = torch.zeros(2, len(sc), u, b, dtype=torch.float64)
    n11.index_add_(1, slot_row[use], gt[:, use])
    nc = concept_px[:, sc].view(2, -1, 1, 1)
    iqr_a = information_quality(n11[0], m[0].unsqueeze(0), nc[0], totals[0])   # [C', U, B]
    kbest = iqr_a.argmax(-1)                               # [C', U]
    pick = kbest.unsqueeze(-1)

    def at(x):
        return x.gather(-1, pick).squeeze(-1)

    def ratio(num, den):
        return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(den))

    mb = at(m[1].unsqueeze(0).expand(len(sc), -1, -1))
    ma = at(m[0].unsqueeze(0).expand(len(sc), -1, -1))
    n11b, n11a = at(n11[1]), at(n11[0])
    lo, width = st.lo.double().cpu(), st.width.double().cpu()

    def full(x, fill=0.0):
        out = torch.full((n_labels_ext, u), fill, dtype=torch.float64)
        out[sc] = x
        return out.T.numpy()

    hist_all = h[:, :n_primary].sum((0, 1))                # [U, B+1]
    q = _quantiles(hist_all, lo, width, st.vmin.double().cpu(), st.vmax.double().cpu(), QUANTILE_LEVELS)
    return {
        "iou": full(ratio(n11b, mb + nc[1].view(-1, 1) - n11b)),
        "iqr": full(at(iqr_a)),
        "threshold": full(lo.view(1, -1) + kbest.double() * width.view(1, -1), math.nan),
        "precision": full(ratio(n11b, mb)),
        "iou_thr_set": full(ratio(n11a, ma + nc[0].view(-1, 1) - n11a)),
        "frequency": freq.numpy(), "scored": scored.numpy(),
        "top_values": st.top_v.double().cpu().numpy(), "top_index": st.top_i.cpu().numpy(),
        "quantiles": q.numpy(), "lo": lo.numpy(), "width": width.numpy(),
    }


# ----------------------------------------------------------------------------- main entry

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


def _check_n(n_samples):
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer (at least 2: even samples choose "
                         f"thresholds, odd samples measure IoU); got {n_samples!r}")
    if n_samples < 2:
        raise ValueError("n_samples must be at least 2: even samples choose thresholds, odd samples "
                         "measure IoU")


def dissect(generator, segmenter, layers: Iterable[str] | str, n_samples: int, seed: int = 0,
            batch_size: int | None = None, device=None, progress: Callable | None = None, *,
            options: DissectOptions | None = None, cache: bool = True, cached_only: bool = False,
            **option_kw) -> Dissection | None:
    """Dissect ``layers`` of ``generator`` against ``segmenter`` over ``n_samples`` samples.

    Sample ``i`` is ``generator(z_i)`` with ``z_i = core.sampling.z_range(seed, i, i+1)``.
    ``progress(done, total)`` is called after every batch. Options (keywords or ``options=``):
    see :class:`DissectOptions`. Results are cached on disk (``cache=False`` to skip), one entry
    per layer: a later call with any of these layers reuses them. ``cached_only=True`` returns
    the result only when it is all on disk, else None (computes nothing).
    Under ``torch.distributed`` (e.g. ``torchrun``) the batches are sharded across processes
    and the statistics merged: every process returns the same, complete result.
    """
    opts = options or DissectOptions(**option_kw)
    if options is not None and option_kw:
        raise TypeError("pass options either as options= or as keywords, not both")
    _check_n(n_samples)
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    layers = resolve_layers(generator, layers)
    if device is None:
        device = _module_device(generator) or torch.device("cpu")
    device = torch.device(device)
    seg_device = _module_device(segmenter) or device
    labels = list(segmenter.labels)
    n_labels = len(labels)

    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
    if batch_size is None:
        batch_size = 64 if device.type == "cuda" else 32
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    # probe: shapes of every layer and of the image (one sample)
    with torch.no_grad(), Trace(generator, capture=layers) as tr:
        img = generator(z_range(seed, 0, 1, generator.z_dim, device))
    if not (isinstance(img, torch.Tensor) and img.dim() == 4 and img.shape[1] == 3):
        raise ProtocolError(f"generator forward(z) must return images N x 3 x H x W; got "
                            f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
    for name in layers:
        if tr[name].dim() != 4:
            raise ValueError(f"layer {name!r} outputs shape {tuple(tr[name].shape)}; dissection needs "
                             f"featuremaps N x C x H x W (pick a convolutional layer)")
    size = opts.resolution or max(img.shape[-1] // 2, 1)
    shapes = {name: tuple(tr[name].shape[1:]) for name in layers}

    key = key_for = None
    gen_id = _cache.model_fingerprint(generator) if cache else None
    seg_id = _cache.model_fingerprint(segmenter) if cache else None
    if cache and gen_id and seg_id:
        def key_for(names):
            return _cache.make_key(kind="dissect", version=CODE_VERSION, generator=gen_id, segmenter=seg_id,
                                   layers=list(names), n=int(n_samples), seed=int(seed), options=opts.key(),
                                   size=size, batch=batch_size)
        key = key_for(layers)
        hit = _cache.load("dissect", key)
        if hit is None and len(layers) > 1:
            # every layer is also stored on its own: reuse the layers dissected before (alone or
            # with others) and compute only the missing ones, in one pass
            parts = {}
            for name in layers:
                h = _cache.load("dissect", key_for([name]))
                if h is not None:
                    parts[name] = Dissection.from_arrays(*h)
            todo = [name for name in layers if name not in parts]
            if parts and todo and not cached_only:
                rest = dissect(generator, segmenter, todo, n_samples, seed, batch_size, device, progress,
                               options=opts, cache=cache)
                parts.update({name: rest for name in todo})
                return Dissection.merge([parts[name] for name in layers], layers)
            if parts and not todo:
                hit = Dissection.merge([parts[name] for name in layers], layers).to_arrays()
        if hit is not None:
            res = Dissection.from_arrays(*hit)
            res.meta["cached"] = True
            if progress:
                progress(n_samples, n_samples)
            return res
    if cached_only:
        return None

    ext_labels = labels + (part_labels(labels) if opts.parts else [])
    n_ext = len(ext_labels)
    multi = False
    n_slots = n_labels  # grows to 2L + parts when needed (decided on the first batch)

    stats: dict[str, _LayerStats] = {}
    concept_slot_px = None
    totals = torch.zeros(2, dtype=torch.float64)
    n_batches = (n_samples + batch_size - 1) // batch_size
    if n_batches < world:
        raise ValueError(f"{world} processes but only {n_batches} batches of {batch_size}: use at most "
                         f"{n_batches} processes or a smaller batch_size")
    mine = [b for b in range(n_batches) if b % world == rank]
    t_fwd = t_stats = 0.0
    done = 0
    first = True

    def init_stats(slots):
        need = sum(shapes[n][0] for n in layers) * 2 * slots * (opts.bins + 1) * 8
        if need > opts.max_hist_bytes:
            raise ValueError(f"the histograms for {len(layers)} layers would take {need / 2**30:.1f} GiB "
                             f"(limit {opts.max_hist_bytes / 2**30:.1f} GiB): dissect fewer layers per call, "
                             f"lower bins= (now {opts.bins}) or raise max_hist_bytes=")
        for name in layers:
            u, fh, fw = shapes[name]
            stats[name] = _LayerStats(name, u, fh, fw, size, opts.bins, slots, opts.topk, device)

    def share_ranges(acts):
        for name in layers:
            if acts is not None:
                lo, w = _LayerStats.range_from(acts[name], opts.bins)
            else:
                u = shapes[name][0]
                lo, w = torch.zeros(u, device=device), torch.ones(u, device=device)
            if dist:
                torch.distributed.broadcast(lo, 0)
                torch.distributed.broadcast(w, 0)
            stats[name].set_range(lo, w)

    with torch.no_grad():
        for bi in mine:
            start, stop = bi * batch_size, min(n_samples, (bi + 1) * batch_size)
            t0 = time.perf_counter()
            z = z_range(seed, start, stop, generator.z_dim, device)
            with Trace(generator, capture=layers) as tr:
                images = generator(z)
            seg = segmenter.segment(images.to(seg_device))
            if first:
                check_segmentation(seg, stop - start, n_labels)
                multi = seg.dim() == 4 and seg.shape[1] > 1
                n_slots = n_labels if not (multi or opts.parts) else 2 * n_labels + (
                    4 * (n_labels - 1) if opts.parts else 0)
                init_stats(n_slots)
                concept_slot_px = torch.zeros(2 * n_slots, dtype=torch.float64, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            t_fwd += t1 - t0
            slots = _label_slots(seg.to(device), size, n_labels, opts.parts, n_slots)
            idx = torch.arange(start, stop, device=device)
            which = (idx % 2).to(torch.int32)                    # 0: threshold set, 1: IoU set
            slot_off = slots + (which * n_slots).view(-1, 1, 1, 1)
            concept_slot_px += torch.bincount(slot_off.reshape(-1).long(), minlength=2 * n_slots).double()
            totals += torch.stack([(which == 0).sum(), (which == 1).sum()]).double().cpu() * size * size
            if first:
                share_ranges({n: tr[n] for n in layers})
                first = False
            for name in layers:
                stats[name].update(tr[name], slot_off, idx)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_stats += time.perf_counter() - t1
            done += stop - start
            if progress:
                progress(done * world if dist else done, n_samples)

        if dist:
            _merge_distributed(stats, concept_slot_px, totals, device)

    # slot -> extended-label index (-1: ignored slot)
    slot_concept = torch.full((n_slots,), -1, dtype=torch.long)
    slot_concept[:n_labels] = torch.arange(n_labels)
    if n_slots > n_labels:
        slot_concept[n_labels + 1: 2 * n_labels] = torch.arange(1, n_labels)
        if opts.parts:
            slot_concept[2 * n_labels:] = torch.arange(n_labels, n_ext)
    cs = concept_slot_px.view(2, n_slots).cpu()
    concept_px = torch.zeros(2, n_ext, dtype=torch.float64)
    valid = slot_concept >= 0
    concept_px.index_add_(1, slot_concept[valid], cs[:, valid])

    t_fin = time.perf_counter()
    data = {}
    for name in layers:
        data[name] = _finalise(stats[name], slot_concept, n_ext, n_labels, totals, concept_px, opts)
    meta = {"forward_seconds": t_fwd, "stats_seconds": t_stats,
            "finalise_seconds": time.perf_counter() - t_fin, "resolution": size,
            "batch_size": batch_size, "world_size": world, "code_version": CODE_VERSION,
            "shapes": {k: list(v) for k, v in shapes.items()}, "cached": False}
    res = Dissection(labels=ext_labels, layers=layers, n_samples=int(n_samples), seed=int(seed),
                     options=opts, model=str(getattr(generator, "source", type(generator).__name__)),
                     segmenter=str(getattr(segmenter, "source", type(segmenter).__name__)), data=data,
                     meta=meta)
    if key is not None and rank == 0:
        for name in layers:          # one entry per layer (see above: later calls combine them)
            _cache.save("dissect", key_for([name]), *res.subset([name]).to_arrays())
    return res


def _merge_distributed(stats, concept_slot_px, totals, device):
    d = torch.distributed
    d.all_reduce(concept_slot_px)
    t = totals.to(device)
    d.all_reduce(t)
    totals.copy_(t.cpu())
    world = d.get_world_size()
    for st in stats.values():
        d.all_reduce(st.hist)
        d.all_reduce(st.vmin, op=d.ReduceOp.MIN)
        d.all_reduce(st.vmax, op=d.ReduceOp.MAX)
        # top-k: pad to k columns, gather, keep the best k
        k = st.k
        v = torch.full((st.u, k), -math.inf, device=device)
        i = torch.full((st.u, k), -1, dtype=torch.int64, device=device)
        v[:, :st.top_v.shape[1]] = st.top_v
        i[:, :st.top_i.shape[1]] = st.top_i
        vs = [torch.empty_like(v) for _ in range(world)]
        is_ = [torch.empty_like(i) for _ in range(world)]
        d.all_gather(vs, v)
        d.all_gather(is_, i)
        v, i = torch.cat(vs, 1), torch.cat(is_, 1)
        n_valid = int((v > -math.inf).sum(1).min())
        v, j = v.topk(min(k, n_valid), dim=1)
        st.top_v, st.top_i = v, i.gather(1, j)


"""Streaming statistics of dissection: one loop over sample batches, one accumulator per layer.

For each layer the statistics are a single histogram on the generator's device::

    hist[unit, set, label slot, bin]        (int64, bounded memory, summable across processes)

Each unit's featuremap is scaled so that its candidate thresholds become the integers
0 … B-1 (``t_k = lo_u + k * width_u``; ``lo``/``width`` fixed from the first batch), upsampled
bilinearly to the dissection resolution with two small matmuls (half-pixel centres and border
padding, the 2018 reference code's ``upsample_grid`` + ``grid_sample`` geometry; aligned corners only
on request), and binned
with ``ceil``: a pixel lands in bin ``b`` = number of candidate thresholds strictly below it.
Reverse cumulative sums then give, for every candidate threshold, the exact joint counts of
(activation > t) and each concept — the 2x2 tables the information-quality ratio I/H needs.
Besides the histogram, a :class:`LayerTally` keeps each unit's minimum, maximum and top-k
samples; :func:`merge_distributed` sums or merges all of them across ``torch.distributed``
processes, so a sharded run gives the single-process result exactly.

:func:`sample_batches` is the loop itself (one generator pass per batch feeding every layer,
batches sharded across processes): a later statistic consumes the same batches.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from core.base.errors import BudgetError, ProtocolError
from core.base.hooks import Trace
from core.base.protocols import call_generator, check_finite, model_name
from core.base.sampling import z_range
from core.base.validate import check_choice

__all__ = ["add_counts", "LayerTally", "interp_matrix", "GEOMETRIES", "upsample", "information_quality",
           "finalise_layer", "merge_distributed", "sample_batches", "reference_labels", "QUANTILE_LEVELS",
           "REFERENCE_FRACTIONS", "REFERENCE_MIN_AGREEMENT"]

QUANTILE_LEVELS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.995, 0.999, 1.0)


def sample_batches(generator, layers, n_samples: int, seed: int, batch_size: int, device,
                   rank: int = 0, world: int = 1, autocast: torch.dtype | None = None
                   ) -> Iterator[tuple[int, int, torch.Tensor, dict]]:
    """``(start, stop, images, {layer: output})`` for this process's share of the batches of
    samples ``0 .. n_samples-1`` (batch ``b`` goes to process ``b % world``); sample ``i`` is
    ``generator(core.base.sampling.z_range(seed, i, i+1))``, run without gradients (the grad
    mode is never held across a ``yield``: the caller's code runs in its own mode). ``autocast``:
    run the generator under autocast to that dtype (bf16 / fp16), else in its own precision. A batch
    whose images or captured layers hold NaN or inf is refused (:func:`core.base.protocols.check_finite`),
    naming the samples, before anything counts it."""
    n_batches = (n_samples + batch_size - 1) // batch_size
    size = None
    for b in range(rank, n_batches, world):
        start, stop = b * batch_size, min(n_samples, (b + 1) * batch_size)
        dev = torch.device(device)
        with torch.no_grad(), Trace(generator, capture=layers) as tr, \
                torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            images = call_generator(generator, z_range(seed, start, stop, generator.z_dim, device), seed=seed,
                                    indices=range(start, stop))
        outputs = {name: tr[name] for name in layers}
        check_finite(generator, images, outputs, seed=seed, indices=range(start, stop))
        if size is not None and tuple(images.shape[-2:]) != size:
            raise ProtocolError(f"generator {model_name(generator)} drew {tuple(images.shape[-2:])} images for samples "
                                f"{start}..{stop - 1} of seed {seed} after {size} ones; one pass needs one size",
                                fix="fix the model's forward to draw one resolution")
        size = tuple(images.shape[-2:])
        yield start, stop, images, outputs


# ----------------------------------------------------------------------------- small pieces

GEOMETRIES = ("half-pixel", "aligned-corners")


def interp_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32,
                  geometry: str = "half-pixel") -> torch.Tensor:
    """[n_out, n_in] matrix of 1-D linear interpolation from ``n_in`` cells to ``n_out`` pixels.

    ``geometry="half-pixel"`` (default; the 2018 reference code's): cell ``i`` is centred on output
    coordinate ``(i + 0.5) * n_out / n_in - 0.5``, so output pixel ``j`` reads the input at
    ``(j + 0.5) * n_in / n_out - 0.5``, clamped to ``[0, n_in - 1]`` (border padding) --
    ``F.interpolate(..., mode='bilinear', align_corners=False)`` along one axis, and the 2018
    ``upsample_grid`` + ``grid_sample(padding_mode='border')``. ``"aligned-corners"``: the first and
    last cells sit on the first and last pixels (``align_corners=True``; shifts a mask by up to
    about a third of a cell against the reference)."""
    check_choice("geometry", geometry, GEOMETRIES)
    m = torch.zeros(n_out, n_in, dtype=torch.float64, device="cpu")
    if n_in == 1:
        m[:, 0] = 1.0
    else:
        j = torch.arange(n_out, dtype=torch.float64, device="cpu")
        if geometry == "half-pixel":
            pos = ((j + 0.5) * (n_in / n_out) - 0.5).clamp(0, n_in - 1)
        else:
            pos = j * ((n_in - 1) / max(n_out - 1, 1))
        i0 = pos.floor().clamp(max=n_in - 2).long()
        frac = pos - i0
        rows = torch.arange(n_out, device="cpu")
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
    total = torch.as_tensor(total, dtype=torch.float64, device=n11.device if isinstance(n11, torch.Tensor) else "cpu")
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


# ----------------------------------------------------------------------------- accumulators

def add_counts(hist: torch.Tensor, idx: torch.Tensor, sync_free: bool | None = None) -> None:
    """``hist += bincount(idx, minlength=len(hist))`` without a host sync: on an accelerator
    ``bincount`` reads the largest index back to the host every call, ``index_add_`` does not
    (integer atomics: the counts are exact). The CPU keeps ``bincount``, which is faster there
    (``sync_free`` forces either path)."""
    flat = idx.reshape(-1).long()
    if not (hist.device.type != "cpu" if sync_free is None else sync_free):
        hist += torch.bincount(flat, minlength=hist.numel())
    else:
        hist.index_add_(0, flat, torch.ones(1, dtype=hist.dtype, device=hist.device).expand(flat.numel()))


_MAGIC = 8388608.0          # 2**23: adding it to an integer-valued float < 2**23 puts the
_MAGIC_BITS = 0x4B000000    # integer in the low mantissa bits (bit pattern = _MAGIC_BITS + value)
_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, torch.get_num_threads())),
                                   thread_name_prefix="ganatomy-bincount")
    return _POOL


SPARSE_BELOW = 0.5     # count only the live maps when at most this share of (unit, sample) maps leave bin 0


class LayerTally:
    """Streaming statistics of one layer (all summable or min/max/top-k mergeable).

    ``hist`` is unit-major — [unit, set, slot, bin] — so that counting one unit touches one
    contiguous block of ``2 * slots * (bins + 1)`` counters (cache-resident), and units can be
    counted in parallel threads without sharing counters."""

    def __init__(self, name, n_units, fh, fw, size, bins, n_slots, topk, device, geometry="half-pixel"):
        self.name, self.u, self.bins, self.n_slots = name, n_units, bins, n_slots
        self.block = 2 * n_slots * (bins + 1)               # counters per unit
        n = n_units * self.block
        if n >= 2 ** 31:
            raise BudgetError(f"layer {name}: {n_units} units x {bins} bins x {n_slots} label slots is "
                             f"too large for one histogram; lower bins= or turn parts off")
        self.hist = torch.zeros(n, dtype=torch.int64, device=device)
        self.ry = None if fh == size else interp_matrix(fh, size, device, geometry=geometry)
        self.rx = None if fw == size else interp_matrix(fw, size, device, geometry=geometry)
        uo = torch.arange(n_units, device=device, dtype=torch.float64) * self.block
        # exact float->int via the 2**23 trick when every index fits below 2**23
        self.magic = n < 2 ** 23
        self.unit_off_f = (uo + (_MAGIC if self.magic else 0)).float().view(-1, 1, 1, 1)
        self.unit_off_i = uo.to(torch.int32).view(-1, 1, 1, 1)
        self.lo = self.width = None
        self.sparse_below = SPARSE_BELOW if torch.device(device).type == "cpu" else 0.0   # (nonzero() syncs)
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
        if idx.device.type != "cpu":
            add_counts(self.hist, idx)
            return
        if torch.get_num_threads() < 2 or idx.numel() < (1 << 20):
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
        unit_major = act.transpose(0, 1)                          # [U, n, h, w]
        if self.sparse_below > 0:
            # (unit, sample) maps that reach bin >= 1 somewhere: bilinear weights are convex, so a map
            # whose every cell is <= lo (bin 0) stays there at full resolution
            live = (unit_major * self.scale + self.offset > 0).flatten(2).any(2)          # [U, n]
            if float(live.float().mean()) <= self.sparse_below:
                self._update_sparse(unit_major, live, slot_off, max_elems)
                return
        step = max(1, max_elems // (self.u * s * s))
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

    def _update_sparse(self, unit_major, live, slot_off, max_elems):
        """The same counts as the dense path when few (unit, sample) maps leave bin 0 (sparse
        features: an SAE's map is off in most samples). Bin 0 of every unit gets all the batch's
        pixels of each slot; each pixel of a live map above bin 0 then moves one count from bin 0 to
        its bin. Only the live maps are upsampled, and only their pixels above bin 0 are counted."""
        n_sets = 2 * self.n_slots
        b1 = self.bins + 1
        so_all = slot_off.long()                                              # [n, K, S, S]: set * slots + slot
        per_slot = torch.bincount(so_all.reshape(-1), minlength=n_sets)[:n_sets]
        self.hist.view(self.u, n_sets, b1)[:, :, 0] += per_slot.view(1, -1)
        uu_all, nn_all = live.nonzero(as_tuple=True)
        s = slot_off.shape[-1]
        step = max(1, max_elems // (s * s))
        scale, offset = self.scale.view(-1), self.offset.view(-1)
        for a in range(0, len(uu_all), step):
            uu, nn = uu_all[a:a + step], nn_all[a:a + step]
            low = unit_major[uu, nn] * scale[uu].view(-1, 1, 1) + offset[uu].view(-1, 1, 1)   # [p, h, w]
            x = upsample(low, self.ry, self.rx).ceil_().clamp_(0, self.bins)
            p_i, yy, xx = (x > 0).nonzero(as_tuple=True)
            if not len(p_i):
                continue
            unit0 = uu[p_i] * self.block
            at = unit0 + x[p_i, yy, xx].long()
            samp = nn[p_i]
            ones = torch.ones(len(p_i), dtype=self.hist.dtype, device=self.hist.device)
            for kk in range(so_all.shape[1]):
                ss = so_all[samp, kk, yy, xx] * b1
                self.hist.index_add_(0, torch.cat([at + ss, unit0 + ss]), torch.cat([ones, -ones]))


# ----------------------------------------------------------------------------- finalise

def _quantiles(hist_all, lo, width, vmin, vmax, levels):
    """Approximate quantiles from the all-pixel histogram (linear inside a bin)."""
    u, nb = hist_all.shape
    bins = nb - 1
    k = torch.arange(nb, dtype=torch.float64, device="cpu")
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


def finalise_layer(st: LayerTally, slot_concept, n_labels_ext, n_primary, totals, concept_px,
                   min_frequency: float) -> dict:
    """Thresholds (argmax I/H on the threshold set) and IoU (on the IoU set) for every unit and
    every scored concept (frequency >= min_frequency, label 0 excluded); others get IoU 0 and
    threshold NaN."""
    b, u = st.bins, st.u
    h = st.hist_view()                                     # [2, slots, U, B+1]
    gt = h.flip(-1).cumsum(-1).flip(-1)[..., 1:]           # [2, slots, U, B]: count(x > t_k)
    m = gt[:, :n_primary].sum(1)                           # [2, U, B]: |mask|
    freq = concept_px.sum(0) / totals.sum()
    scored = freq >= min_frequency
    scored[0] = False
    sc = torch.nonzero(scored).view(-1)                    # concepts to score
    # slots that feed a scored concept, mapped to the concept's row among ``sc``
    row_of = torch.full((n_labels_ext,), -1, dtype=torch.long, device="cpu")
    row_of[sc] = torch.arange(len(sc), device="cpu")
    slot_row = torch.where(slot_concept >= 0, row_of[slot_concept.clamp(min=0)], torch.full_like(slot_concept, -1))
    use = slot_row >= 0
    n11 = torch.zeros(2, len(sc), u, b, dtype=torch.float64, device="cpu")
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
        out = torch.full((n_labels_ext, u), fill, dtype=torch.float64, device="cpu")
        out[sc] = x
        return out.T.numpy()

    hist_all = h[:, :n_primary].sum((0, 1))                # [U, B+1]
    q = _quantiles(hist_all, lo, width, st.vmin.double().cpu(), st.vmax.double().cpu(), QUANTILE_LEVELS)
    hist_thr = h[0, :n_primary].sum(0)                    # [U, B+1] threshold set only
    ref_q = (1 - REFERENCE_FRACTIONS).flip(0).tolist() + [1.0]     # ascending, as _quantiles wants (0 ... 0.999, 1)
    levels = _quantiles(hist_thr, lo, width, st.vmin.double().cpu(), st.vmax.double().cpu(), ref_q)[:, :-1]
    ref = reference_labels(n11, m, nc, totals, lo, width, iqr_a, sc, n_labels_ext, levels)
    return {**ref,
        "iou": full(ratio(n11b, mb + nc[1].view(-1, 1) - n11b)),
        "iqr": full(at(iqr_a)),
        "iqr_iou_set": full(information_quality(n11b, mb, nc[1].view(-1, 1), totals[1])),
        "threshold": full(lo.view(1, -1) + kbest.double() * width.view(1, -1), math.nan),
        "precision": full(ratio(n11b, mb)),
        "iou_thr_set": full(ratio(n11a, ma + nc[0].view(-1, 1) - n11a)),
        "frequency": freq.numpy(), "scored": scored.numpy(),
        "top_values": st.top_v.double().cpu().numpy(), "top_index": st.top_i.cpu().numpy(),
        "quantiles": q.numpy(), "lo": lo.numpy(), "width": width.numpy(),
    }


# candidate levels: quantiles 1 - f
REFERENCE_FRACTIONS = torch.logspace(-3, 0, 100, dtype=torch.float64, device="cpu")
REFERENCE_MIN_AGREEMENT = 0.8


def reference_labels(n11, m, nc, totals, lo, width, iqr, sc, n_labels_ext: int, levels) -> dict:
    """The 2018 reference code's labelling (``shared/reference/method.md``), from the same counts.

    Candidate levels per unit are its activation quantiles at 1 - f for f = logspace(-3, 0, 100)
    on the threshold set (``levels`` [U, 100], from the histogram, linear inside a bin), each
    counted at the nearest candidate threshold (bin edge). A level counts for a (concept, unit) only
    when it is > 0 and the 2x2 table's
    pixel agreement P(m and c) + P(not m and not c) exceeds 0.8; each concept's best I/H over
    the levels left is its score. The unit's label is the concept of the highest score and the
    unit keeps ONE threshold: that concept's best level. Returned per (unit, concept): the
    concept's score (``ref_iqr``: the threshold set's best I/H), the IoU, pixel agreement and I/H
    on the IoU set at the concept's own best level (``ref_iou``, ``ref_accuracy``,
    ``ref_iqr_iou_set``: for the label, at the unit's threshold -- the 2018 code's ``iou`` and
    ``iou_iqr``, which decide whether the unit is interpretable; ``ref_iou_thr_set``: the IoU on the
    threshold set at that level)
    and that level (``ref_thresholds``). The unit's label is the argmax of ``ref_iqr`` and its one
    threshold that concept's entry of ``ref_thresholds`` (``Dissection.units`` reads them so).
    Arguments are :func:`finalise_layer`'s intermediate counts over the scored concepts ``sc``
    (indices into the ``n_labels_ext`` extended labels); other concepts score 0."""
    n_c, u, b = iqr.shape

    def full(x):
        out = torch.zeros(n_labels_ext, u, dtype=torch.float64, device="cpu")
        out[sc] = x.double()
        return out.T.numpy()

    k_f = ((levels - lo.view(-1, 1)) / width.view(-1, 1)).round().clamp(0, b - 1).long()   # [U, 100]: nearest edge
    candidate = torch.zeros(u, b, dtype=torch.bool, device="cpu")
    candidate.scatter_(1, k_f, True)
    # [U, B]
    level = lo.view(-1, 1) + torch.arange(b, dtype=torch.float64, device="cpu").view(1, -1) * width.view(-1, 1)
    candidate &= level > 0
    t0 = totals[0]
    agree = (n11[0] + (t0 - m[0].unsqueeze(0) - nc[0] + n11[0])) / t0          # [C', U, B]
    ok = candidate.unsqueeze(0) & (agree > REFERENCE_MIN_AGREEMENT)
    score_all = torch.where(ok, iqr, torch.zeros_like(iqr))
    score, k_best = score_all.max(-1)                                          # [C', U]
    def on_set(k, j):                                                         # k: [C', U] level indices; j: set
        idx = k.unsqueeze(-1)
        a = n11[j].gather(-1, idx).squeeze(-1)
        mm = m[j].unsqueeze(0).expand(n_c, -1, -1).gather(-1, idx).squeeze(-1)
        c, t = nc[j].view(-1, 1), totals[j]
        union = mm + c - a
        iou_ = torch.where(union > 0, a / union.clamp(min=1), torch.zeros_like(a))
        return iou_, (a + (t - mm - c + a)) / t, information_quality(a, mm, c, t)

    iou_own, acc_own, iqr_own = on_set(k_best, 1)
    iou_thr_set = on_set(k_best, 0)[0]
    if n_c == 0:                                   # nothing scored: no label, no threshold
        zero = np.zeros((u, n_labels_ext))
        return {"ref_iqr": zero, "ref_iou": zero, "ref_accuracy": zero, "ref_thresholds": zero,
                "ref_iqr_iou_set": zero, "ref_iou_thr_set": zero}
    return {"ref_iqr": full(score), "ref_iou": full(iou_own), "ref_accuracy": full(acc_own),
            "ref_iqr_iou_set": full(iqr_own), "ref_iou_thr_set": full(iou_thr_set),
            "ref_thresholds": full(lo.view(1, -1) + k_best.double() * width.view(1, -1))}


def merge_distributed(stats, concept_slot_px, totals, device):
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


"""Causal measurements (paper §3.2, §4.3–4.4, S-6.4–6.5): average causal effect, the continuous
ACE optimisation of eq. 5–6, ablation curves, the context-insertion study and tracing.

All edits go through :mod:`core.engine.intervention` (per-call, thread-local): the model is shared
and never mutated.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.distributed import all_sum, batches, gather_objects, local, rank_world
from core.base.errors import ArgumentTypeError, InputError, UnknownNameError
from core.base.hooks import Trace, layer_names, layer_shape, layer_units, resolve_layers
from core.base.protocols import check_generator, check_segmenter
from core.base.sampling import z_at, z_range
from core.base.sharing import long_computation
from core.base.validate import (
    check_bool,
    check_callable,
    check_choice,
    check_float,
    check_int,
    check_latents,
    check_mask,
    check_memory,
    check_samples,
    check_units,
    check_values,
    concept_index,
    concept_mask,
)
from core.engine.bases import check_basis, learned
from core.engine.dissection import dissect
from core.engine.intervention import Edit, cached_insertion_constants, check_edits, generate, insertion_constants

__all__ = ["causal_effect", "ace", "AceResult", "ablation_curve", "context_study", "context_summary",
           "majority_context", "trace_effect", "removal_table", "removal_over_seeds", "mean_interval", "channel_scales", "removal_fraction",
           "cached_ablation_curve", "curve_over_seeds"]


def _n_units(generator, layer, basis=None) -> int:
    """The size of the space units index: the basis's features, else the layer's units."""
    if basis is not None:
        return check_basis(basis, layer_units(generator, layer), layer).n_features
    return layer_units(generator, layer)


def _models(generator, segmenter, layer, concept):
    """The checked models, layer name and concept index every causal measurement starts from."""
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    return resolve_layers(generator, [layer])[0], concept_index(segmenter, concept)


def _unit_values(name, value, units, n_units) -> torch.Tensor:
    """Insertion values for ``units``: one number, one per unit, or one per unit of the layer
    (indexed here); finite."""
    v = check_values(name, value, allowed=(1, len(units), n_units),
                     what="a number, one value per unit or one per unit of the layer")
    return v if v.numel() in (1, len(units)) else v[units]


# ----------------------------------------------------------------------------- ACE (eq. 4)

@long_computation("the causal effect", fix="lower batch_size=")
@torch.no_grad()
def causal_effect(generator, segmenter, layer, units, concept, value, n_samples: int = 200,
                  seed: int = 2, batch_size: int = 25, mask=None, basis=None) -> dict:
    """Average causal effect of ``units`` on ``concept`` (eq. 4): E[s_c(x_insert)] −
    E[s_c(x_ablate)], s_c = fraction of the image's pixels labelled c; also reported
    normalised by the concept's mean frequency E[s_c(x)] so that rare concepts compare."""
    layer, c = _models(generator, segmenter, layer, concept)
    n_units = _n_units(generator, layer, basis)
    units = check_units(units, n_units, layer)
    v = _unit_values("value", value, units, n_units)
    n_samples = check_samples("n_samples", n_samples, 1, images_per_sample=3)
    seed, batch_size = check_int("seed", seed), check_int("batch_size", batch_size, 1)
    if mask is not None:
        check_mask("mask", mask)
    dev = device_of(generator)
    tot = {key: torch.zeros((), dtype=torch.float64, device=dev) for key in ("base", "insert", "ablate")}
    for a, b in batches(n_samples, batch_size):          # this process's share under torchrun
        z = z_range(seed, a, b, generator.z_dim, dev)
        for key, edits in (("base", []), ("insert", [Edit(layer, units, "insert", v, mask, basis=basis)]),
                           ("ablate", [Edit(layer, units, "ablate", None, mask, basis=basis)])):
            tot[key] += concept_mask(segmenter, generate(generator, z, edits), c).double().mean((1, 2)).sum()
    m = {k: x / n_samples for k, x in all_sum({k: float(t) for k, t in tot.items()}).items()}
    ace_raw = m["insert"] - m["ablate"]
    return {"concept": segmenter.labels[c], "layer": layer, "units": units, "base": m["base"],
            "insert": m["insert"], "ablate": m["ablate"], "ace": ace_raw,
            "ace_normalised": ace_raw / m["base"] if m["base"] > 0 else math.nan}


# ----------------------------------------------------------------------------- eq. 5–6

@dataclass
class AceResult:
    layer: str
    concept: str
    alpha: np.ndarray                 # [n_units] in [0, 1]
    ranking: np.ndarray               # units by decreasing alpha
    losses: list = field(default_factory=list)
    effects: list = field(default_factory=list)   # normalised delta per step
    k: np.ndarray | None = None       # insertion constants
    init: np.ndarray | None = None
    seconds: float = 0.0
    top_n: int = 20

    @property
    def units(self) -> list[int]:
        """The top-n units (the causal unit set applied at evaluation)."""
        return [int(u) for u in self.ranking[: self.top_n]]

    def loss_trend(self, window: int = 10) -> np.ndarray:
        """The loss averaged over the last ``window`` steps at each step (fewer at the start):
        each step samples a few images, so the per-step loss is noisy and the trend is this."""
        window = check_int("window", window, 1)
        x = np.asarray(self.losses, dtype=np.float64)
        if not len(x):
            return x
        c = np.cumsum(np.insert(x, 0, 0.0))
        i = np.arange(1, len(x) + 1)
        lo = np.maximum(0, i - window)
        return (c[i] - c[lo]) / (i - lo)


class _Adam:
    """Adam (betas 0.9, 0.999) on one tensor. torch.optim's first use imports the compiler stack
    (~3 s per process), which a dashboard's first ACE would pay; this is the same update."""

    def __init__(self, p: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps, self.t = p, lr, betas[0], betas[1], eps, 0
        self.m, self.v = torch.zeros_like(p), torch.zeros_like(p)

    @torch.no_grad()
    def step(self):
        g = self.p.grad
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        denom = (self.v / (1 - self.b2 ** self.t)).sqrt_().add_(self.eps)
        self.p.addcdiv_(self.m, denom, value=-self.lr / (1 - self.b1 ** self.t))


def _location_pool(generator, segmenter, layer, c, k, n, seed, batch_size, dev, basis=None):
    """Where to intervene, from ``n`` pool samples at ``layer``'s grid.

    Returns ``(present, absent, freq, (h, w))``: ``present`` = [(sample, cell mask)] for the
    samples that show the concept, the mask marking every featuremap cell the concept covers
    (removal candidates); ``absent`` = [(sample, y, x)] cells where the concept is absent but
    appears when every unit is set to k there (insertion candidates). When setting every unit
    to k creates the concept nowhere (the layer cannot insert it in one step), the insertion
    candidates fall back to absent cells next to the concept's own cells (its most plausible
    context) and then to any absent cell."""
    present, absent, near, anywhere, freq = [], [], [], [], []
    n_units = _n_units(generator, layer, basis)
    all_units = list(range(n_units))
    for a in range(0, n, batch_size):
        idx = torch.arange(a, min(n, a + batch_size), device="cpu")     # sample numbers, for Python
        z = z_range(seed, a, int(idx[-1]) + 1, generator.z_dim, dev)
        with torch.no_grad():
            images, cap = generate(generator, z, capture=[layer])
            h, w = cap[layer].shape[-2:]
            base = concept_mask(segmenter, images, c).float()
            full = concept_mask(segmenter, generate(generator, z, [Edit(layer, all_units, "insert", k, basis=basis)]),
                                c).float()
        freq.append(base.mean((1, 2)))
        cb = F.adaptive_avg_pool2d(base[:, None], (h, w))[:, 0]
        cf = F.adaptive_avg_pool2d(full[:, None], (h, w))[:, 0]
        grown = F.max_pool2d((cb > 0).float()[:, None], 3, 1, 1)[:, 0] > 0
        for i in range(len(idx)):
            if bool((cb[i] > 0).any()):
                present.append((int(idx[i]), (cb[i] > 0).cpu()))
        for out, where in ((absent, cf > 0), (near, grown), (anywhere, None)):
            sel = cb == 0 if where is None else (cb == 0) & where
            out += [(int(idx[i]), j, x) for i, j, x in torch.nonzero(sel).tolist()]
    return present, absent or near or anywhere, float(torch.cat(freq).mean()), (h, w)


SAMPLINGS = ("paper", "image")
_ROW_BYTES = 120        # a candidate cell or an insertion row kept as Python objects (estimate)


def _cells(cells, hw, dev):
    """One-cell masks [b, 1, h, w] for [(sample, y, x)]."""
    m = torch.zeros(len(cells), 1, *hw, device=dev)
    if cells:
        yx = torch.tensor([(j, y, x) for j, (_, y, x) in enumerate(cells)], device=dev)
        m[yx[:, 0], 0, yx[:, 1], yx[:, 2]] = 1.0          # one copy to the device, not one per cell
    return m


def _edited(generator, layer, alpha, z, m, v, basis=None):
    """Images for ``z`` with the units' share ``alpha`` ablated (v = 0) or inserted (v = k) at ``m``
    (with ``basis``: its features, along their decoder directions)."""
    def fn(out):
        s = m * alpha.view(1, -1, 1, 1)
        if basis is not None:
            return basis.edit(out, torch.arange(alpha.numel(), device=out.device), s, v)
        return out * (1 - s) + s * v

    with Trace(generator, edits={layer: fn}):
        return generator(z)


def _paper_delta(generator, segmenter, layer, c, alpha, kv, present, absent, n_ins, batch, rng, pool_seed, hw,
                 freq, dev, basis=None):
    """One step's delta (paper): removal samples ablated at their cell, insertion samples inserted at
    theirs, each scored by the soft score of c pooled to the grid and read at its own cell."""
    rem = [present[i] for i in rng.integers(0, len(present), batch - n_ins)] if present else []
    ins = [absent[i] for i in rng.integers(0, len(absent), n_ins)]
    cells = rem + ins
    m = _cells(cells, hw, dev)
    z = z_at(pool_seed, [t[0] for t in cells], generator.z_dim, dev)
    n_units = kv.shape[1]
    v = torch.cat([torch.zeros(len(rem), n_units, 1, 1, device=dev), kv.expand(len(ins), -1, 1, 1)])
    score = F.adaptive_avg_pool2d(segmenter.scores(_edited(generator, layer, alpha, z, m, v, basis))[:, c:c + 1], hw)
    at = (score * m).sum((1, 2, 3))                                    # read at each sample's cell
    erase = at[:len(rem)].mean() if rem else at.new_zeros(())
    add = at[len(rem):].mean() if ins else at.new_zeros(())
    return (add - erase) / freq


def _image_delta(generator, segmenter, layer, c, alpha, kv, present, absent, n_ins, batch, rng, pool_seed, hw,
                 freq, dev, basis=None):
    """One step's delta (the "image" variant): insertion and ablation of every sample, the score
    averaged over the image; removal samples intervene on every cell the concept covers."""
    idx, masks = [], []
    for i in rng.integers(0, len(present), batch - n_ins) if present else []:
        s, cells = present[i]
        idx.append(s)
        masks.append(cells.to(dev, torch.float32))
    for i in rng.integers(0, len(absent), n_ins):
        s, y, x = absent[i]
        m = torch.zeros(*hw, device=dev)
        m[y, x] = 1.0
        idx.append(s)
        masks.append(m)
    z = z_at(pool_seed, idx, generator.z_dim, dev)
    loc = torch.stack(masks)[:, None]
    b = len(idx)
    n_units = kv.shape[1]
    v = torch.cat([kv.expand(b, -1, 1, 1), torch.zeros(b, n_units, 1, 1, device=dev)])
    score = segmenter.scores(_edited(generator, layer, alpha, torch.cat([z, z]), torch.cat([loc, loc]), v, basis))[:, c]
    score = score.mean((1, 2))
    return (score[:b].mean() - score[b:].mean()) / freq




def _paper_pool(generator, segmenter, layer, c, k, n, seed, batch_size, dev, rng, tries: int = 5, basis=None):
    """Where to intervene, as the paper (and its code) samples it, from ``n`` pool samples.

    Returns ``(present, absent, freq, (h, w))``: ``present`` = [(sample, y, x)], every single
    featuremap cell the concept covers (removal candidates); ``absent`` = [(sample, y, x)] cells
    where the concept is absent but appears when the units at *that one cell* are set to k
    (``tries`` cells tried per sample, drawn where the concept usually is: weighted by its mean
    coverage over the pool). When no tried cell inserts it, the candidates fall back to absent
    cells next to the concept and then to any absent cell."""
    n_units = _n_units(generator, layer, basis)
    all_units = list(range(n_units))
    covers, counts, zs = [], [], []
    for a in range(0, n, batch_size):
        z = z_range(seed, a, min(n, a + batch_size), generator.z_dim, dev)
        with torch.no_grad():
            images, cap = generate(generator, z, capture=[layer])
            h, w = cap[layer].shape[-2:]
            hit = concept_mask(segmenter, images, c).float()
            covers.append(F.adaptive_avg_pool2d(hit[:, None], (h, w))[:, 0].cpu())
            counts.append(hit.sum((1, 2)).cpu())
        zs.append(z)
    cover = torch.cat(covers)                                           # [n, h, w] coverage of each cell
    base_px = torch.cat(counts)                                         # [n] concept pixels before
    freq = float(cover.mean())
    present = [tuple(t) for t in torch.nonzero(cover > 0).tolist()]
    weight = cover.mean(0).reshape(-1).double() + 1e-3                  # where the concept usually is
    tried = []
    for i in range(n):
        free = torch.nonzero((cover[i] == 0).reshape(-1)).view(-1)
        if len(free):
            p = (weight[free] / weight[free].sum()).numpy()
            for j in rng.choice(free.numpy(), size=min(tries, len(free)), replace=False, p=p):
                tried.append((i, int(j) // w, int(j) % w))
    absent = []
    z_all = torch.cat(zs)
    for a in range(0, len(tried), batch_size):
        chunk = tried[a:a + batch_size]
        idx = torch.tensor([t[0] for t in chunk], device=dev)
        mask = _cells(chunk, (h, w), dev)
        with torch.no_grad():
            after = concept_mask(segmenter, generate(generator, z_all[idx],
                                                     [Edit(layer, all_units, "insert", k, mask, basis=basis)]), c).sum((1, 2)).cpu()
        absent += [t for j, t in enumerate(chunk) if float(after[j]) > float(base_px[t[0]])]
    if not absent:
        grown = F.max_pool2d((cover > 0).float()[:, None], 3, 1, 1)[:, 0] > 0
        absent = [tuple(t) for t in torch.nonzero((cover == 0) & grown).tolist()] or \
            [tuple(t) for t in torch.nonzero(cover == 0).tolist()]
    return present, absent, freq, (h, w)


@long_computation("ACE", fix="lower batch_size= or pool_size=")
def ace(generator, segmenter, layer: str, concept, *, n_steps: int = 150, batch_size: int = 4,
        lr: float = 0.01, l2: float = 0.01, init="iou", iou: np.ndarray | None = None,
        k: torch.Tensor | None = None, pool_size: int = 128, seed: int = 0, top_n: int = 20,
        dissect_samples: int = 400, progress: Callable | None = None, sampling: str = "paper",
        basis=None) -> AceResult:
    """Find the units whose joint insertion/ablation has the largest causal effect on
    ``concept`` (eq. 5–6): alpha in [0,1]^d, minimise −delta_alpha + l2 * sum(alpha^2) by
    Adam over random z and featuremap locations, clamping alpha to [0, 1] after every step.

    ``sampling="paper"`` (default), as the paper and its code: half of each batch are removal
    samples (one cell where the concept is present, the units ablated there), half insertion
    samples (one cell where it is absent but appears when the units at that cell are set to k;
    see :func:`_paper_pool`); each effect is the segmenter's soft score of c pooled to the
    featuremap grid and read at the intervened cell, delta_alpha = s_c(insert) − s_c(ablate)
    normalised by the concept's mean frequency. ``sampling="image"`` (GANatomy's earlier
    variant): removal ablates every cell the concept covers, insertion candidates are cells
    where setting every unit to k everywhere creates it (:func:`_location_pool`), and the score
    is averaged over the whole image.

    ``init="iou"`` starts from IoU / max IoU (from ``iou`` or a cached dissection of
    ``dissect_samples``); ``init="uniform"`` from 0.5. The ranking orders units by final alpha,
    ties (e.g. several units clamped at 0) broken by the initial alpha.
    ``progress(step, n_steps, loss)`` after every step. ``basis`` (:mod:`core.engine.bases`):
    alpha is over that basis's features, each edited along its decoder direction."""
    t0 = time.perf_counter()
    layer, c, n_units = _check_ace(generator, segmenter, layer, concept, n_steps=n_steps, batch_size=batch_size,
                                   lr=lr, l2=l2, init=init, iou=iou, k=k, pool_size=pool_size, seed=seed,
                                   top_n=top_n, dissect_samples=dissect_samples, progress=progress,
                                   sampling=sampling, basis=basis)
    dev = device_of(generator)
    _, h, w = layer_shape(generator, layer)
    check_memory(f"the ACE location pool of pool_size={pool_size:,}",
                 pool_size * (h * w * (4 + 2 * _ROW_BYTES) + generator.z_dim * 4), device=dev, fix="lower pool_size")
    if k is None:
        k = insertion_constants(generator, segmenter, layer, c, n_samples=100, seed=seed + 11, basis=basis)
    k = torch.as_tensor(k, dtype=torch.float32, device=dev).reshape(-1)
    if init == "iou":
        if iou is None:
            iou = dissect(generator, segmenter, [layer], dissect_samples, seed=seed + 7, basis=basis).iou(layer)[:, c]
        iou = np.asarray(iou, dtype=np.float64).reshape(-1)
        a0 = iou / iou.max() if iou.max() > 0 else np.full(n_units, 0.5)
    elif init == "uniform":
        a0 = np.full(n_units, 0.5)
    else:
        a0 = np.asarray(init, dtype=np.float64).reshape(-1)
    if a0.shape[0] != n_units:
        raise InputError(f"init has {a0.shape[0]} values but layer {layer!r} has {n_units} units")
    alpha = torch.tensor(np.clip(a0, 0, 1), dtype=torch.float32, device=dev, requires_grad=True)
    rng = np.random.default_rng(seed)
    if sampling == "paper":
        present, absent, freq, (h, w) = _paper_pool(generator, segmenter, layer, c, k, pool_size, seed + 101, 16,
                                                    dev, rng, basis=basis)
    else:
        present, absent, freq, (h, w) = _location_pool(generator, segmenter, layer, c, k, pool_size,
                                                       seed + 101, 16, dev, basis)
    if not present and not absent:
        raise InputError(f"concept {segmenter.labels[c]!r} neither appears nor can be inserted in "
                         f"{pool_size} samples at {layer!r}; try another layer or concept")
    freq = max(freq, 1e-4)
    adam = _Adam(alpha, lr)
    losses, effects = [], []
    kv = k.view(1, -1, 1, 1)
    for step in range(n_steps):
        n_ins = batch_size // 2 if (present and absent) else (batch_size if absent else 0)
        if sampling == "paper":
            delta = _paper_delta(generator, segmenter, layer, c, alpha, kv, present, absent, n_ins, batch_size,
                                 rng, seed + 101, (h, w), freq, dev, basis)
        else:
            delta = _image_delta(generator, segmenter, layer, c, alpha, kv, present, absent, n_ins, batch_size,
                                 rng, seed + 101, (h, w), freq, dev, basis)
        loss = -delta + l2 * (alpha ** 2).sum()
        alpha.grad = None
        loss.backward()
        adam.step()
        with torch.no_grad():
            alpha.clamp_(0, 1)
        losses.append(loss.detach())             # kept on the device: no host sync per step
        effects.append(delta.detach())
        if progress:
            progress(step + 1, n_steps, float(losses[-1]))
    losses = torch.stack(losses).cpu().tolist() if losses else []
    effects = torch.stack(effects).cpu().tolist() if effects else []
    a = alpha.detach().cpu().numpy()
    ranking = np.lexsort((-np.clip(a0, 0, 1), -a))
    return AceResult(layer=layer, concept=segmenter.labels[c], alpha=a, ranking=ranking, losses=losses,
                     effects=effects, k=k.cpu().numpy(), init=a0, seconds=time.perf_counter() - t0,
                     top_n=top_n)


def _check_ace(generator, segmenter, layer, concept, *, n_steps, batch_size, lr, l2, init, iou, k, pool_size,
               seed, top_n, dissect_samples, progress, sampling, basis=None):
    """Every argument of :func:`ace`, checked before any work: (layer, concept index, units)."""
    check_choice("sampling", sampling, SAMPLINGS)
    layer, c = _models(generator, segmenter, layer, concept)
    n_units = _n_units(generator, layer, basis)
    batch_size = check_int("batch_size", batch_size, 1)
    per_step = 3 * batch_size * (2 if sampling == "image" else 1)       # forward + backward per image
    check_samples("n_steps", n_steps, 1, images_per_sample=per_step,
                  what="a whole number of optimisation steps >= 1 (default 150)")
    check_float("lr", lr, 0, lo_open=True, what="a finite learning rate > 0 (default 0.01)")
    check_float("l2", l2, 0, what="a finite penalty >= 0 (default 0.01)")
    check_samples("pool_size", pool_size, 1, images_per_sample=6)
    check_int("seed", seed)
    check_int("top_n", top_n, 1)
    check_callable("progress", progress)
    if isinstance(init, str):
        check_choice("init", init, ("iou", "uniform"))
    else:
        check_values("init", init, allowed=(n_units,), what=f"'iou', 'uniform' or one start value per unit "
                     f"({n_units})")
    if init == "iou":
        if iou is None:
            check_samples("dissect_samples", dissect_samples, 2)
        else:
            check_values("iou", iou, allowed=(n_units,), what=f"one IoU per unit of {layer!r} ({n_units})")
    if k is not None:
        check_values("k", k, allowed=(n_units,), what=f"one insertion constant per unit of {layer!r} ({n_units})")
    return layer, c, n_units


ACE_VERSION = "ace-v3"   # bump when ace() changes what it returns for the same arguments (v3: sampling="paper")


def cached_ace(generator, segmenter, layer: str, concept, *, n_steps: int = 150, n_dissect: int = 400,
               k_samples: int = 100, seed: int = 0, top_n: int = 20, progress: Callable | None = None,
               cache: bool = True, cached_only: bool = False, basis=None, **ace_options) -> AceResult | None:
    """:func:`ace` initialised from the IoU of a (cached) dissection of ``n_dissect`` samples and
    the (cached) insertion constants, stored under ``cache/ace`` keyed by both models' weights,
    layer, concept and options: the causal-units page computes it once, and any later caller
    (the paint page, a script, another session) gets the same units at once.
    ``cached_only=True`` returns the stored result or None, computing nothing. ``ace_options``
    (``lr``, ``l2``, ``batch_size``, ``pool_size``) go to :func:`ace` and into the key."""
    unknown = sorted(set(ace_options) - set(_ACE_OPTIONS))
    if unknown:
        raise UnknownNameError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} of cached_ace",
                               fix=f"options are: {', '.join(_ACE_OPTIONS)}")
    opts = {"batch_size": 4, "lr": 0.01, "l2": 0.01, "init": "iou", "pool_size": 128, "sampling": "paper",
            **ace_options}
    layer, c, _ = _check_ace(generator, segmenter, layer, concept, n_steps=n_steps, iou=None, k=None, seed=seed,
                             top_n=top_n, dissect_samples=n_dissect, progress=progress, basis=basis, **opts)
    basis = learned(basis)
    check_samples("k_samples", k_samples, 1)
    gid, sid = _cache.model_fingerprint(generator), _cache.model_fingerprint(segmenter)
    key = None if not (gid and sid) else _cache.make_key(
        kind="ace", version=ACE_VERSION, generator=gid, segmenter=sid, layer=layer, concept=int(c),
        steps=int(n_steps), n_dissect=int(n_dissect), k_samples=int(k_samples), seed=int(seed),
        options=sorted(ace_options.items()), **({"basis": basis.cache_key} if basis is not None else {}))

    def compute():
        dis = dissect(generator, segmenter, [layer], n_dissect, cache=cache, basis=basis)
        k = cached_insertion_constants(generator, segmenter, layer, c, n_samples=k_samples, cache=cache, basis=basis)
        return ace(generator, segmenter, layer, c, n_steps=n_steps, iou=dis.iou(layer)[:, c], k=k, seed=seed,
                   top_n=top_n, progress=progress, basis=basis, **ace_options)

    def encode(res):
        return ({"alpha": res.alpha, "ranking": res.ranking, "losses": np.asarray(res.losses),
                 "effects": np.asarray(res.effects), "k": res.k, "init": res.init},
                {"layer": layer, "concept": res.concept, "steps": n_steps, "n_dissect": n_dissect,
                 "seconds": res.seconds})

    def decode(arr, meta):
        return AceResult(layer=layer, concept=segmenter.labels[c], alpha=arr["alpha"], ranking=arr["ranking"],
                         losses=arr["losses"].tolist(), effects=arr["effects"].tolist(), k=arr["k"],
                         init=arr["init"], seconds=float(meta["seconds"]), top_n=top_n)

    return _cache.cached("ace", key, compute, encode, decode, enabled=cache, cached_only=cached_only)


_ACE_OPTIONS = ("batch_size", "lr", "l2", "init", "pool_size", "sampling")


# ----------------------------------------------------------------------------- curves

def _check_curve(generator, segmenter, layer, concept, rankings, counts, n_samples, seed, batch_size, progress,
                 basis=None):
    layer, c = _models(generator, segmenter, layer, concept)
    if not isinstance(rankings, dict):
        raise ArgumentTypeError(f"rankings must be a dict {{name: unit list}}, got {type(rankings).__name__}",
                                fix="e.g. rankings={'ace': res.ranking[:20].tolist()}")
    if not rankings:
        raise InputError("rankings is empty: there is nothing to ablate", fix="give rankings at least one unit list")
    n_units = _n_units(generator, layer, basis)
    ranks = {name: check_units(r, n_units, layer, f"rankings[{name!r}]") for name, r in rankings.items()}
    if isinstance(counts, (str, bytes)):
        raise ArgumentTypeError("counts must be a list of unit counts, got a string", fix="e.g. counts=(1, 5, 10)")
    try:
        counts = [check_int("counts", n, 1, what="whole numbers of units >= 1") for n in counts]
    except TypeError:
        raise ArgumentTypeError(f"counts must be a list of unit counts, got {type(counts).__name__}",
                                fix="e.g. counts=(1, 5, 10)") from None
    if not counts:
        raise InputError("counts is empty: no point of the curve to measure", fix="give counts, e.g. (1, 5, 10)")
    n_samples = check_samples("n_samples", n_samples, 1, images_per_sample=1 + len(ranks) * len(counts))
    seed, batch_size = check_int("seed", seed), check_int("batch_size", batch_size, 1)
    check_callable("progress", progress)
    return layer, c, ranks, counts, n_samples, seed, batch_size


@long_computation("the ablation curve", fix="lower batch_size=")
@torch.no_grad()
def ablation_curve(generator, segmenter, layer, concept, rankings: dict[str, Sequence[int]],
                   counts: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20),
                   n_samples: int = 500, seed: int = 3, batch_size: int = 25,
                   progress: Callable | None = None, basis=None) -> pd.DataFrame:
    """Fraction of the concept's pixels removed by ablating the top-n units of each ranking
    over the whole featuremap (Fig. 4 right). One row per (ranking, n). ``basis``: the rankings
    are of that basis's features."""
    layer, c, ranks, counts, n_samples, seed, batch_size = _check_curve(
        generator, segmenter, layer, concept, rankings, counts, n_samples, seed, batch_size, progress, basis)
    dev = device_of(generator)
    keys = [("base", 0)] + [(name, n) for name in rankings for n in counts]
    px = torch.zeros(len(keys), dtype=torch.float64, device=dev)      # concept pixels; no host sync per batch
    done, world = 0, rank_world()[1]
    for a, b in batches(n_samples, batch_size):          # this process's share under torchrun
        z = z_range(seed, a, b, generator.z_dim, dev)
        px[0] += concept_mask(segmenter, generate(generator, z), c).sum()
        j = 1
        for name, r in ranks.items():
            for n in counts:
                px[j] += concept_mask(segmenter, generate(generator, z, [Edit(layer, r[:n], basis=basis)]), c).sum()
                j += 1
        done += b - a
        if progress:
            progress(min(n_samples, done * world), n_samples)
    total = dict(zip(keys, all_sum(px.cpu().tolist())))
    base, after = total[("base", 0)], total
    rows = [{"ranking": name, "n": n, "removed": 1 - after[(name, n)] / base if base else math.nan}
            for name in rankings for n in counts]
    return pd.DataFrame(rows)


CURVE_VERSION = "curve-v1"   # bump when ablation_curve() changes what it returns for the same arguments


def cached_ablation_curve(generator, segmenter, layer, concept, rankings: dict[str, Sequence[int]],
                          counts: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20),
                          n_samples: int = 500, seed: int = 3, batch_size: int = 25,
                          progress: Callable | None = None, cache: bool = True,
                          cached_only: bool = False, basis=None) -> pd.DataFrame | None:
    """:func:`ablation_curve`, stored under ``cache/curve`` keyed by both models' weights, layer,
    concept, the rankings, counts, samples and seed: a page rerun or revisit shows it at once.
    ``cached_only=True`` returns the stored curve or None, computing nothing. The frame's
    ``attrs`` say whether it was ``stored`` and how many ``seconds`` it took to compute."""
    layer, c, ranks, counts, n_samples, seed, batch_size = _check_curve(
        generator, segmenter, layer, concept, rankings, counts, n_samples, seed, batch_size, progress, basis)
    basis = learned(basis)
    check_bool("cache", cache)
    check_bool("cached_only", cached_only)
    ranks = {str(name): [int(u) for u in r] for name, r in ranks.items()}
    gid, sid = _cache.model_fingerprint(generator), _cache.model_fingerprint(segmenter)
    key = None if not (gid and sid) else _cache.make_key(
        kind="curve", version=CURVE_VERSION, generator=gid, segmenter=sid, layer=layer, concept=int(c),
        rankings=sorted(ranks.items()), counts=[int(n) for n in counts], n=int(n_samples), seed=int(seed),
        **({"basis": basis.cache_key} if basis is not None else {}))

    def compute():
        t = time.perf_counter()
        df = ablation_curve(generator, segmenter, layer, c, ranks, counts, n_samples, seed, batch_size, progress,
                            basis)
        df.attrs.update(stored=False, seconds=time.perf_counter() - t)
        return df

    def encode(df):
        return ({"n": df.n.to_numpy(np.int64), "removed": df.removed.to_numpy(np.float64),
                 "ranking": np.array(df.ranking.astype(str).tolist())},
                {"layer": layer, "concept": segmenter.labels[c], "n_samples": n_samples,
                 "seconds": df.attrs.get("seconds")})

    def decode(arr, meta):
        df = pd.DataFrame({"ranking": arr["ranking"].tolist(), "n": arr["n"], "removed": arr["removed"]})
        df.attrs.update(stored=True, seconds=meta.get("seconds"))
        return df

    return _cache.cached("curve", key, compute, encode, decode, enabled=cache, cached_only=cached_only)


@torch.no_grad()
def removal_fraction(generator, segmenter, layer, concept, units, n_samples=200, seed=5, batch_size=25):
    """Fraction of the concept's pixels removed by ablating ``units`` everywhere."""
    df = ablation_curve(generator, segmenter, layer, concept, {"units": list(units)}, counts=(len(units),),
                        n_samples=n_samples, seed=seed, batch_size=batch_size)
    return float(df.removed.iloc[0])


# ----------------------------------------------------------------------------- context (Fig. 11)

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
    layer, c = _models(generator, segmenter, layer, concept)
    n_units = _n_units(generator, layer, basis)
    units = check_units(units, n_units, layer)
    brush_what = "a whole number of cells >= 1 (the side of the inserted block)"
    if isinstance(brush, (bool, np.bool_)) or not isinstance(brush, (int, np.integer)) or brush < 1:
        raise InputError(f"brush must be {brush_what}, got {brush!r}", fix="give brush=1, 2, ... (cells)")
    scale = check_float("scale", scale, 0, lo_open=True,
                        what="a positive number (a multiple of the insertion values)")
    v = _unit_values("value", value, units, n_units) * scale
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
                 n_images * (positions * _ROW_BYTES + px * (3 * 4 + 2 * 8)), device=device_of(generator),
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
        seg1 = segmenter.segment(generate(generator, z_all[ii.to(dev)], [Edit(layer, units, "insert", v, mask, basis=basis)]))
        seg1 = (seg1[:, 0] if seg1.dim() == 4 else seg1).long()
        added[a:a + len(ii)] = (seg1 == c).sum((1, 2)).float().cpu() - base_px[ii]
        if violations is not None:
            broken[a:a + len(ii)] = torch.as_tensor(violations(seg0[ii.to(seg0.device)], seg1, c), dtype=torch.float32, device="cpu")
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
                        "sd": g.added_px.std(ddof=1).fillna(0.0), "share_ge6": g.added_px.apply(lambda x: (x >= 6).mean()),
                        "violations": g.violations.mean()})
    half = 1.96 * out.sd / np.sqrt(out["count"])
    out["ci_low"], out["ci_high"] = out.added_px - half, out.added_px + half
    return out.drop(columns="sd").sort_values("added_px", ascending=False).reset_index()


# ----------------------------------------------------------------------------- tracing (S-6.5)

@torch.no_grad()
def channel_scales(generator, layers, n_samples: int = 64, seed: int = 9, batch_size: int = 32):
    """Mean |activation| per channel of each layer (the tracing normaliser; no layers: {})."""
    layers = resolve_layers(generator, layers) if isinstance(layers, str) or list(layers) else []
    n_samples = check_samples("n_samples", n_samples, 1)
    seed, batch_size = check_int("seed", seed), check_int("batch_size", batch_size, 1)
    if not layers:
        return {}
    dev = device_of(generator)
    acc: dict[str, torch.Tensor] = {}
    for a in range(0, n_samples, batch_size):
        z = z_range(seed, a, min(n_samples, a + batch_size), generator.z_dim, dev)
        _, cap = generate(generator, z, capture=layers)
        for name in layers:
            s = cap[name].abs().float().mean((2, 3)).sum(0)
            acc[name] = acc.get(name, 0) + s
    return {k: (v / n_samples).clamp(min=1e-8) for k, v in acc.items()}


@torch.no_grad()
def trace_effect(generator, edit: Edit, z: torch.Tensor, scales: dict | None = None):
    """Change in every layer after ``edit.layer`` caused by ``edit``: per layer, the mean over
    channels of |r' − r| / mean|r| (averaged over space and samples), plus the effect map
    [n, h, w] at the last traced layer. Returns (DataFrame[layer, change], map)."""
    check_generator(generator, probe=False)
    if not isinstance(edit, Edit):
        raise ArgumentTypeError(f"edit must be one Edit, got {type(edit).__name__}",
                                fix="e.g. edit=core.Edit('layer4', [3, 17])")
    check_latents("z", z, generator.z_dim)
    check_edits(generator, [edit], z.shape[0])
    names = layer_names(generator)
    later = names[names.index(edit.layer) + 1:] if edit.layer in names else []
    if not later:
        raise InputError(f"no layers after {edit.layer!r} to trace", fix="edit an earlier layer: "
                         f"{', '.join(names[:-1])}")
    if scales is not None:
        if not isinstance(scales, dict):
            raise ArgumentTypeError(f"scales must be a dict {{layer: per-channel scale}}, got {type(scales).__name__}",
                                    fix="use channel_scales(generator, layers) or None")
        missing = [n for n in later if n not in scales]
        if missing:
            raise InputError(f"scales has no entry for {', '.join(missing)}",
                             fix="use channel_scales(generator, layers) for every layer after the edit, or None")
    scales = scales or channel_scales(generator, later)
    _, a = generate(generator, z, capture=later)
    _, b = generate(generator, z, [edit], capture=later)
    rows = []
    for name in later:
        d = (b[name] - a[name]).abs().float() / scales[name].view(1, -1, 1, 1)
        rows.append({"layer": name, "change": float(d.mean())})
    last = later[-1]
    emap = ((b[last] - a[last]).abs().float() / scales[last].view(1, -1, 1, 1)).mean(1)
    return pd.DataFrame(rows), emap.cpu().numpy()


@long_computation("the removal table", fix="lower n_samples= or batch_size=")
def removal_table(generators: dict, segmenter, layer: str, concepts, n_units: int = 20,
                  ace_steps: int = 150, n_samples: int = 200, seed: int = 0, sample_seed: int = 5,
                  progress: Callable | None = None, **ace_kw) -> pd.DataFrame:
    """Percent of each concept's pixels removed by ablating its ``n_units`` causal units (found by
    :func:`ace` with ``seed``), per generator (e.g. one per scene type) — the paper's Fig. 9–10
    table, measured on ``n_samples`` images drawn with ``sample_seed``.
    ``concepts``: a list used for every generator, or {generator name: [concepts]}."""
    if not isinstance(generators, dict) or not generators:
        raise InputError(f"generators must be a non-empty dict {{name: generator}}, got {generators!r:.60}",
                         fix="e.g. generators={'town': core.load_generator('toyworld/town')}")
    check_int("n_units", n_units, 1)
    check_samples("ace_steps", ace_steps, 1, images_per_sample=3 * 4)
    check_samples("n_samples", n_samples, 1)
    check_int("seed", seed)
    check_int("sample_seed", sample_seed)
    check_callable("progress", progress)
    unknown = sorted(set(ace_kw) - set(_ACE_OPTIONS))
    if unknown:
        raise UnknownNameError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} of ace",
                               fix=f"options are: {', '.join(_ACE_OPTIONS)}")
    rows = []
    jobs = [(g, c) for g in generators for c in (concepts[g] if isinstance(concepts, dict) else concepts)]
    rank, world = rank_world()          # under torchrun each process takes whole jobs: i % world
    for i, (gname, concept) in enumerate(jobs):
        if i % world != rank:
            continue
        G = generators[gname]
        try:
            with local():
                res = ace(G, segmenter, layer, concept, n_steps=ace_steps, top_n=n_units, seed=seed, **ace_kw)
                removed = removal_fraction(G, segmenter, layer, concept, res.units, n_samples=n_samples,
                                           seed=sample_seed)
            rows.append((i, {"generator": gname, "concept": concept, "units": res.units,
                             "removed_percent": 100 * removed}))
        except ValueError as e:       # the concept never appears in this generator's scenes
            rows.append((i, {"generator": gname, "concept": concept, "units": [], "removed_percent": math.nan,
                             "note": str(e)}))
        if progress:
            progress(min(len(jobs), (len(rows)) * world), len(jobs))
    every = sorted((row for part in gather_objects(rows) for row in part), key=lambda t: t[0])
    return pd.DataFrame([row for _, row in every])


def _check_seeds(seeds) -> list[int]:
    """A non-empty list of whole-number seeds, refused with the fix otherwise."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ArgumentTypeError(f"seeds must be a list of whole numbers, got {seeds!r:.40}", fix="e.g. seeds=(0, 1, 2)")
    seeds = [check_int("seeds", x) for x in seeds]
    if not seeds:
        raise InputError("seeds must name at least one seed", fix="e.g. seeds=(0, 1, 2)")
    return seeds


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (one per seed) and its 95% t-interval; the bounds
    are NaN with fewer than two values. Every interval over seeds in GANatomy is this one."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    from scipy import stats  # the t quantile only (scipy.stats is slow to import at start-up)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def removal_over_seeds(generators: dict, segmenter, layer: str, concepts, seeds: Sequence[int] = (0, 1, 2),
                       n_units: int = 20, ace_steps: int = 150, n_samples: int = 200,
                       progress: Callable | None = None, **ace_kw) -> pd.DataFrame:
    """:func:`removal_table` once per seed (a fresh ACE with that seed, fresh images: sample seed
    5 + 1000 x seed): per (generator, concept), the mean percent removed over seeds, its 95%
    t-interval (``ci_low``, ``ci_high``; NaN with one seed) and the per-seed values."""
    seeds = _check_seeds(seeds)
    check_callable("progress", progress)
    tables = []
    for i, seed in enumerate(seeds):
        step = (lambda d, t, i=i: progress(i * t + d, len(seeds) * t)) if progress else None
        tables.append(removal_table(generators, segmenter, layer, concepts, n_units=n_units, ace_steps=ace_steps,
                                    n_samples=n_samples, seed=seed, sample_seed=5 + 1000 * seed, progress=step,
                                    **ace_kw).assign(seed=seed))
    every = pd.concat(tables, ignore_index=True)
    rows = []
    for (gname, concept), g in every.groupby(["generator", "concept"], sort=False):
        v = g.removed_percent.dropna()
        mean, low, high = mean_interval(v)
        rows.append({"generator": gname, "concept": concept, "removed_percent": mean, "ci_low": low,
                     "ci_high": high, "seeds": len(v), "per_seed": g.removed_percent.tolist()})
    return pd.DataFrame(rows)


def curve_over_seeds(generator, segmenter, layer: str, concept, seeds: Sequence[int] = (0, 1, 2),
                     counts: Sequence[int] = (1, 2, 5, 10, 20), n_samples: int = 200, ace_steps: int = 150,
                     n_dissect: int = 400, progress: Callable | None = None, cache: bool = True,
                     cached_only: bool = False, basis=None) -> pd.DataFrame | None:
    """ACE vs IoU ablation curves over seeds: for each seed a fresh ACE (:func:`cached_ace` with that
    seed, initialised from the IoU of one cached dissection of ``n_dissect`` samples) and fresh
    images (curve seed 1000 + seed); per (ranking, n): the mean fraction removed over seeds, its 95%
    t-interval (``ci_low``, ``ci_high``) and the per-seed values. Every piece is cached, so a second
    call is immediate; ``cached_only=True`` returns None unless every piece is stored. ``basis``: the
    rankings and ablations are of that basis's features."""
    seeds = _check_seeds(seeds)
    check_callable("progress", progress)
    layer, c = _models(generator, segmenter, layer, concept)
    basis = learned(basis, layer_units(generator, layer), layer)
    counts = [int(n) for n in counts]
    per_seed = []
    for i, seed in enumerate(seeds):
        res = cached_ace(generator, segmenter, layer, c, n_steps=ace_steps, n_dissect=n_dissect, seed=seed,
                         cache=cache, cached_only=cached_only, basis=basis)
        if res is None:
            return None
        top = max(counts)
        rankings = {"ace": res.ranking[:top].tolist(), "iou": np.argsort(-res.init, kind="stable")[:top].tolist()}
        df = cached_ablation_curve(generator, segmenter, layer, c, rankings, counts=counts, n_samples=n_samples,
                                   seed=1000 + seed, cache=cache, cached_only=cached_only, basis=basis)
        if df is None:
            return None
        per_seed.append(df.assign(seed=seed))
        if progress:
            progress(i + 1, len(seeds))
    every = pd.concat(per_seed, ignore_index=True)
    rows = []
    for (name, n), g in every.groupby(["ranking", "n"], sort=True):
        mean, low, high = mean_interval(g.removed.to_numpy())
        rows.append({"ranking": name, "n": int(n), "removed": mean, "ci_low": low, "ci_high": high,
                     "seeds": len(g), "per_seed": g.removed.tolist()})
    return pd.DataFrame(rows)

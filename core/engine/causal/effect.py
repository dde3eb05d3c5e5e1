"""The average causal effect of units on a concept (paper §3.2, eq. 4) and its continuous
optimisation (eq. 5–6): which units, inserted together, make a concept appear and, ablated
together, make it disappear.

Every edit goes through :class:`~core.engine.intervention.Edit` (per call, thread-local): the
model is shared and never mutated. Where ACE intervenes is a strategy of
:mod:`core.engine.causal.locations`.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
import torch

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.distributed import all_sum, batches
from core.base.errors import ConceptAbsentError, InputError
from core.base.hooks import layer_shape
from core.base.sampling import DISSECT_SEED, INSERTION_SEED, stream_seed, z_range
from core.base.sharing import long_computation
from core.base.validate import (
    check_bool,
    check_callable,
    check_choice,
    check_float,
    check_int,
    check_mask,
    check_memory,
    check_samples,
    check_units,
    check_values,
    concept_mask,
    options_of,
)
from core.engine.bases import learned
from core.engine.causal.common import ROW_BYTES, checked_models, n_units_of, unit_values
from core.engine.causal.locations import LOCATIONS, Setup
from core.engine.dissection import dissect
from core.engine.intervention import Edit, generate, insertion_constants

__all__ = ["causal_effect", "ace", "AceResult", "AceOptions", "SAMPLINGS", "ACE_VERSION", "ace_options", "check_ace"]

SAMPLINGS = tuple(LOCATIONS)
ACE_VERSION = "ace-v4"   # bump when ace() changes what it returns for the same arguments (v4: one cache path)


# ----------------------------------------------------------------------------- eq. 4

@long_computation("the causal effect", fix="lower batch_size=")
@torch.no_grad()
def causal_effect(generator, segmenter, layer, units, concept, value, n_samples: int = 200,
                  seed: int = 2, batch_size: int = 25, mask=None, basis=None) -> dict:
    """Average causal effect of ``units`` on ``concept`` (eq. 4): E[s_c(x_insert)] −
    E[s_c(x_ablate)], s_c = fraction of the image's pixels labelled c; also reported
    normalised by the concept's mean frequency E[s_c(x)] so that rare concepts compare."""
    layer, c = checked_models(generator, segmenter, layer, concept)
    n_units = n_units_of(generator, layer, basis)
    units = check_units(units, n_units, layer)
    v = unit_values("value", value, units, n_units)
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

    def to_arrays(self) -> tuple[dict, dict]:
        return ({"alpha": self.alpha, "ranking": self.ranking, "losses": np.asarray(self.losses, np.float64),
                 "effects": np.asarray(self.effects, np.float64), "k": self.k, "init": self.init},
                {"layer": self.layer, "concept": self.concept, "seconds": self.seconds, "top_n": self.top_n})

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "AceResult":
        return cls(layer=meta["layer"], concept=meta["concept"], alpha=arrays["alpha"], ranking=arrays["ranking"],
                   losses=arrays["losses"].tolist(), effects=arrays["effects"].tolist(), k=arrays["k"],
                   init=arrays["init"], seconds=float(meta["seconds"]), top_n=int(meta["top_n"]))


@dataclass(frozen=True)
class AceOptions:
    """How :func:`ace` optimises (every field is also a keyword of :func:`ace`).

    ``n_steps`` Adam steps of ``batch_size`` samples at learning rate ``lr`` with penalty ``l2``;
    ``init`` "iou" (IoU / max IoU of the layer's dissection of ``dissect_samples``), "uniform"
    (0.5) or one start value per unit; ``pool_size`` samples in the location pool; ``sampling``
    a strategy of :data:`LOCATIONS` ("paper" or "image"); ``k_samples`` the samples of the
    insertion constants; ``top_n`` the units of the result's ``units``."""
    n_steps: int = 150
    batch_size: int = 4
    lr: float = 0.01
    l2: float = 0.01
    init: object = "iou"
    pool_size: int = 128
    sampling: str = "paper"
    dissect_samples: int = 400
    k_samples: int = 100
    top_n: int = 20

    def key(self) -> dict:
        """The options as key parts (a start vector by its hash; ``top_n`` only picks units)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "top_n"}
        if not isinstance(self.init, str):
            d["init"] = _digest(self.init)
        return d


def _digest(x) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(x, dtype=np.float64)).tobytes()).hexdigest()[:16]


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


def ace_options(options=None, option_kw=None) -> AceOptions:
    """ACE's options from ``options=`` or keywords (not both), unknown names refused with the list."""
    return options_of(AceOptions, options, option_kw, "ace")


def check_ace(generator, segmenter, layer, concept, o: AceOptions, *, seed=0, iou=None, k=None, progress=None,
              basis=None):
    """Every argument of :func:`ace`, checked before any work: (layer, concept index, units)."""
    check_choice("sampling", o.sampling, SAMPLINGS)
    layer, c = checked_models(generator, segmenter, layer, concept)
    n_units = n_units_of(generator, layer, basis)
    batch_size = check_int("batch_size", o.batch_size, 1)
    per_step = 3 * batch_size * LOCATIONS[o.sampling].images_per_step      # forward + backward per image
    check_samples("n_steps", o.n_steps, 1, images_per_sample=per_step,
                  what="a whole number of optimisation steps >= 1 (default 150)")
    check_float("lr", o.lr, 0, lo_open=True, what="a finite learning rate > 0 (default 0.01)")
    check_float("l2", o.l2, 0, what="a finite penalty >= 0 (default 0.01)")
    check_samples("pool_size", o.pool_size, 1, images_per_sample=6)
    check_int("seed", seed)
    check_int("top_n", o.top_n, 1)
    check_callable("progress", progress)
    if isinstance(o.init, str):
        check_choice("init", o.init, ("iou", "uniform"))
    else:
        check_values("init", o.init, allowed=(n_units,), what=f"'iou', 'uniform' or one start value per unit "
                     f"({n_units})")
    if o.init == "iou":
        if iou is None:
            check_samples("dissect_samples", o.dissect_samples, 2)
        else:
            check_values("iou", iou, allowed=(n_units,), what=f"one IoU per unit of {layer!r} ({n_units})")
    if k is None:
        check_samples("k_samples", o.k_samples, 1)
    else:
        check_values("k", k, allowed=(n_units,), what=f"one insertion constant per unit of {layer!r} ({n_units})")
    return layer, c, n_units


@long_computation("ACE", fix="lower batch_size= or pool_size=")
def ace(generator, segmenter, layer: str, concept, *, seed: int = 0, iou=None, k=None, basis=None,
        progress: Callable | None = None, cache: bool = True, cached_only: bool = False,
        options: AceOptions | None = None, **option_kw) -> AceResult | None:
    """Find the units whose joint insertion/ablation has the largest causal effect on
    ``concept`` (eq. 5–6): alpha in [0,1]^d, minimise −delta_alpha + l2 * sum(alpha^2) by
    Adam over random z and featuremap locations, clamping alpha to [0, 1] after every step.

    Options (keywords or ``options=``): :class:`AceOptions`. ``sampling="paper"`` (default), as the
    paper and its code; ``"image"``, GANatomy's earlier whole-image variant
    (:mod:`core.engine.causal.locations`). ``init="iou"`` starts from IoU / max IoU, from ``iou``
    or else the layer's shared dissection of ``dissect_samples`` (seed 0); the insertion constants
    are ``k`` or else the shared ones of ``k_samples`` (seed 1) — see ``core.base.sampling.STREAMS``.
    ``seed`` draws the location pool (stream ``ace.pool``) and the steps' choices. The ranking
    orders units by final alpha, ties broken by the initial alpha. ``progress(step, n_steps,
    loss)`` after every step. ``basis`` (:mod:`core.engine.bases`): alpha is over that basis's
    features, each edited along its decoder direction.

    The result is stored under ``cache/ace`` keyed by both models' weights and every argument:
    the same call returns the same units with or without the cache. ``cache=False`` computes
    (and computes its dissection and constants) without it; ``cached_only=True`` returns the
    stored result or None, computing nothing."""
    check_bool("cache", cache)
    check_bool("cached_only", cached_only)
    o = ace_options(options, option_kw)
    layer, c, n_units = check_ace(generator, segmenter, layer, concept, o, seed=seed, iou=iou, k=k,
                                  progress=progress, basis=basis)
    basis = learned(basis)
    _, h, w = layer_shape(generator, layer)
    check_memory(f"the ACE location pool of pool_size={o.pool_size:,}",
                 o.pool_size * (h * w * (4 + 2 * ROW_BYTES) + generator.z_dim * 4), device=device_of(generator),
                 fix="lower pool_size")
    parts = {"layer": layer, "concept": int(c), "seed": int(seed), **o.key(),
             **({"iou": _digest(iou)} if iou is not None and o.init == "iou" else {}),
             **({"k": _digest(k)} if k is not None else {}),
             **({"basis": basis.cache_key} if basis is not None else {})}

    def compute():
        kk = k if k is not None else insertion_constants(generator, segmenter, layer, c, n_samples=o.k_samples,
                                                         seed=INSERTION_SEED, basis=basis, cache=cache)
        ii = iou
        if o.init == "iou" and ii is None:
            ii = dissect(generator, segmenter, [layer], o.dissect_samples, seed=DISSECT_SEED, basis=basis,
                         cache=cache).iou(layer)[:, c]
        return _optimise(generator, segmenter, layer, c, n_units, o, seed, ii, kk, progress, basis)

    res = _cache.measure("ace", ACE_VERSION, models={"generator": generator, "segmenter": segmenter}, parts=parts,
                         compute=compute, codec=AceResult, cache=cache, cached_only=cached_only)
    return res if res is None else replace(res, top_n=o.top_n)


def _optimise(generator, segmenter, layer, c, n_units, o: AceOptions, seed, iou, k, progress, basis) -> AceResult:
    """Eq. 5–6 from a start (``iou`` or ``o.init``) and insertion constants ``k``."""
    t0 = time.perf_counter()
    dev = device_of(generator)
    k = torch.as_tensor(k, dtype=torch.float32, device=dev).reshape(-1)
    if o.init == "iou":
        iou = np.asarray(iou, dtype=np.float64).reshape(-1)
        a0 = iou / iou.max() if iou.max() > 0 else np.full(n_units, 0.5)
    elif o.init == "uniform":
        a0 = np.full(n_units, 0.5)
    else:
        a0 = np.asarray(o.init, dtype=np.float64).reshape(-1)
    if a0.shape[0] != n_units:
        raise InputError(f"init has {a0.shape[0]} values but layer {layer!r} has {n_units} units")
    alpha = torch.tensor(np.clip(a0, 0, 1), dtype=torch.float32, device=dev, requires_grad=True)
    rng = np.random.default_rng(seed)
    where = LOCATIONS[o.sampling]
    setup = Setup(generator, segmenter, layer, c, k, basis, dev, stream_seed(seed, "ace.pool"))
    pool = where.pool(setup, o.pool_size, rng)
    if not pool.present and not pool.absent:
        raise ConceptAbsentError(f"concept {segmenter.labels[c]!r} neither appears nor can be inserted in "
                                 f"{o.pool_size} samples at {layer!r}; try another layer or concept")
    pool.freq = max(pool.freq, 1e-4)
    adam = _Adam(alpha, o.lr)
    losses, effects = [], []
    for step in range(o.n_steps):
        n_ins = o.batch_size // 2 if (pool.present and pool.absent) else (o.batch_size if pool.absent else 0)
        delta = where.delta(setup, pool, alpha, n_ins, o.batch_size, rng)
        loss = -delta + o.l2 * (alpha ** 2).sum()
        alpha.grad = None
        loss.backward()
        adam.step()
        with torch.no_grad():
            alpha.clamp_(0, 1)
        losses.append(loss.detach())             # kept on the device: no host sync per step
        effects.append(delta.detach())
        if progress:
            progress(step + 1, o.n_steps, float(losses[-1]))
    losses = torch.stack(losses).cpu().tolist() if losses else []
    effects = torch.stack(effects).cpu().tolist() if effects else []
    a = alpha.detach().cpu().numpy()
    ranking = np.lexsort((-np.clip(a0, 0, 1), -a))
    return AceResult(layer=layer, concept=segmenter.labels[c], alpha=a, ranking=ranking, losses=losses,
                     effects=effects, k=k.cpu().numpy(), init=a0, seconds=time.perf_counter() - t0,
                     top_n=o.top_n)

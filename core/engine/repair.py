"""Per-unit FID and artifact repair (paper §4.2, supplement S-6.1, Tables 1–2).

Unit FID: generate N images once, keep every image's feature vector and every unit's spatial
maximum; each unit's FID is that of its top-k images (by spatial maximum) against real
statistics. One generation pass and one feature pass serve all units of a layer.

Repair: ablate flagged (artifact) units and compare the FID of (a) the original images,
(b) the same latents with the flagged units ablated and (c) with as many random units
ablated (several draws), all on the images where the flagged units activate most.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.distributed import batches, gather_batches, rank_world
from core.base.errors import InputError
from core.base.hooks import layer_shape, layer_units, resolve_layers
from core.base.sampling import stream_seed, z_at, z_range
from core.base.sharing import long_computation
from core.base.validate import unit_set
from core.engine.bases import learned
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.intervention import Edit, generate

__all__ = [
    "MAX_SAMPLES",
    "UNIT_FID_VERSION",
    "UnitFID",
    "frechet_distances_to",
    "repair_table",
    "unit_fid",
]


def frechet_distances_to(mus: torch.Tensor, covs: torch.Tensor, mu_r, cov_r) -> np.ndarray:
    """Fréchet distance of many Gaussians (mus [K, D], covs [K, D, D]) to one reference,
    float64, with the reference's symmetric square root computed once:
    tr((S_r^½ S_k S_r^½)^½) = tr((S_k S_r)^½)."""
    mu_r = torch.as_tensor(mu_r, dtype=torch.float64, device=mus.device)
    cov_r = torch.as_tensor(cov_r, dtype=torch.float64, device=mus.device)
    d = mu_r.shape[0]
    if mus.shape[-1] != d or covs.shape[-2:] != (d, d):
        raise InputError(f"feature sizes differ: reference statistics have {d} dimensions, the unit "
                         f"statistics {mus.shape[-1]}; use the same feature extractor for both")
    w, v = torch.linalg.eigh((cov_r + cov_r.T) / 2)
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    covs = covs.to(torch.float64)
    m = root @ covs @ root
    ev = torch.linalg.eigvalsh((m + m.transpose(-1, -2)) / 2).clamp(min=0).sqrt().sum(-1)
    diff = mus.to(torch.float64) - mu_r
    d2 = (diff * diff).sum(-1) + torch.diagonal(covs, dim1=-2, dim2=-1).sum(-1) + torch.trace(cov_r) - 2 * ev
    return d2.clamp(min=0).cpu().numpy()


MAX_SAMPLES = 1_000_000     # images of one unit-FID or repair run (their features are kept in memory)


def _count(value, what: str, lo: int, hi: int, fix: str) -> int:
    """``value`` as an int in ``lo .. hi``; refused (naming ``what`` and the fix) otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be an integer, got {type(value).__name__} {value!r}", fix=fix)
    if not lo <= value <= hi:
        raise InputError(f"{what} must be between {lo:,} and {hi:,}, got {int(value):,}", fix=fix)
    return int(value)


def _check_real(real) -> None:
    """``real`` = (mu [D], cov [D, D]) of the real images' features, checked before any work."""
    fix = "pass the real images' feature statistics (mu, cov), e.g. core.studies.evaluation.scene_stats(...)"
    try:
        mu, cov = real
        shape_mu, shape_cov = tuple(np.shape(mu)), tuple(np.shape(cov))
    except (TypeError, ValueError):
        raise InputError(f"real must be a pair (mu, cov) of arrays, got {type(real).__name__}", fix=fix) from None
    if len(shape_mu) != 1 or not shape_mu[0] or shape_cov != (shape_mu[0], shape_mu[0]):
        raise InputError(f"real must be (mu [D], cov [D, D]); got mu {shape_mu} and cov {shape_cov}", fix=fix)
    finite = (bool(torch.isfinite(mu).all() and torch.isfinite(cov).all())
              if isinstance(mu, torch.Tensor) and isinstance(cov, torch.Tensor)
              else bool(np.isfinite(np.asarray(mu, dtype=np.float64)).all()
                        and np.isfinite(np.asarray(cov, dtype=np.float64)).all()))
    if not finite:
        raise InputError("real holds NaN or infinite values", fix=fix)


def _check_unit_fid_args(n_samples, top, seed, batch_size) -> None:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 2:
        raise InputError(f"top must be an integer >= 2 (a covariance needs at least 2 images), got {top!r}",
                         fix="use e.g. top=1000")
    _count(n_samples, "n_samples", 2, MAX_SAMPLES, f"use e.g. n_samples=20000 (at least top, {top})")
    if n_samples < top:
        raise InputError(f"n_samples ({n_samples}) must be at least top ({top}): each unit's FID uses its "
                         f"top {top} of the generated images", fix=f"raise n_samples to {top} or more, or lower top")
    _count(seed, "seed", 0, 2 ** 63 - 1, "use a seed >= 0, e.g. seed=0")
    _count(batch_size, "batch_size", 1, 100_000, "use e.g. batch_size=100")


@dataclass
class UnitFID:
    layer: str
    fid: np.ndarray             # [n_units]
    top_index: np.ndarray       # [top, n_units] sample indices of each unit's top images
    seed: int
    n_samples: int
    top: int
    seconds: float

    def table(self) -> pd.DataFrame:
        order = np.argsort(-self.fid, kind="stable")
        return pd.DataFrame({"unit": order, "fid": self.fid[order], "rank": np.arange(1, len(order) + 1)})

    def highest(self, n: int = 20) -> list[int]:
        return [int(u) for u in np.argsort(-self.fid, kind="stable")[:n]]

    def to_arrays(self) -> tuple[dict, dict]:
        return ({"fid": self.fid, "top_index": self.top_index},
                {"layer": self.layer, "seed": self.seed, "n_samples": self.n_samples, "top": self.top,
                 "seconds": self.seconds})

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "UnitFID":
        return cls(layer=meta["layer"], fid=arrays["fid"], top_index=arrays["top_index"], seed=int(meta["seed"]),
                   n_samples=int(meta["n_samples"]), top=int(meta["top"]), seconds=float(meta["seconds"]))


@long_computation("unit FID", fix="lower batch_size=")
def unit_fid(generator, layer: str, features: Callable, real, n_samples: int = 20_000, top: int = 1_000,
             seed: int = 0, batch_size: int = 100, progress: Callable | None = None,
             unit_chunk: int = 16, basis=None, *, cache: bool = True, cached_only: bool = False) -> UnitFID | None:
    """FID of every unit's top-``top`` images (by spatial maximum) against ``real`` = (mu, cov),
    from one pass of ``n_samples`` generated images. ``basis``: of every feature of that basis
    (ranked by the spatial maximum of its feature map).

    Stored in ``cache/unit_fid`` keyed by the generator's and the feature network's weights, the
    real statistics, layer, samples, top, seed and the basis; ``cached_only=True`` returns the
    stored result or None, computing nothing."""
    layer = resolve_layers(generator, [layer])[0]
    basis = learned(basis, layer_units(generator, layer), layer)
    _check_unit_fid_args(n_samples, top, seed, batch_size)
    _count(unit_chunk, "unit_chunk", 1, 1 << 20, "use e.g. unit_chunk=16")
    _check_real(real)
    parts = {"real": _stats_id(real), "layer": layer, "n": int(n_samples), "top": int(top), "seed": int(seed),
             **({"basis": basis.cache_key} if basis is not None else {})}
    return _cache.measure(
        "unit_fid", UNIT_FID_VERSION, models={"generator": generator, "features": features}, parts=parts,
        compute=lambda: _unit_fid(generator, layer, features, real, n_samples, top, seed, batch_size, progress,
                                  unit_chunk, basis),
        codec=UnitFID, cache=cache, cached_only=cached_only)


@torch.no_grad()
def _unit_fid(generator, layer, features, real, n_samples, top, seed, batch_size, progress, unit_chunk, basis):
    t0 = time.perf_counter()
    dev = device_of(generator)
    feats, maxes = [], []
    done, world = 0, rank_world()[1]
    for a, b in batches(n_samples, batch_size):          # this process's share under torchrun
        z = z_range(seed, a, b, generator.z_dim, dev)
        images, cap = generate(generator, z, capture=[layer])
        feats.append(features(images).double().cpu())
        r = cap[layer].float()
        maxes.append((r if basis is None else basis.encode(r)).amax((2, 3)).cpu())
        done += b - a
        if progress:
            progress(min(n_samples, done * world), n_samples)
    F_ = gather_batches(feats, n_samples, batch_size)             # every process: all samples, in order
    M = gather_batches(maxes, n_samples, batch_size)
    idx = M.topk(top, dim=0).indices                                # [top, U]
    fids = []
    for u0 in range(0, M.shape[1], unit_chunk):
        sel = F_[idx[:, u0:u0 + unit_chunk].T]                       # [u, top, D]
        mu = sel.mean(1)
        x = sel - mu[:, None]
        cov = x.transpose(1, 2) @ x / (top - 1)
        fids.append(frechet_distances_to(mu, cov, *real))
    return UnitFID(layer=layer, fid=np.concatenate(fids), top_index=idx.numpy(), seed=seed, n_samples=n_samples,
                   top=top, seconds=time.perf_counter() - t0)


UNIT_FID_VERSION = "unit-fid-v2"    # bump when unit_fid() changes what it returns (v2: one cache path)


def _stats_id(real) -> str:
    h = hashlib.sha256()
    for a in real:
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


@long_computation("the repair table", fix="lower batch_size=")
@torch.no_grad()
def repair_table(generator, layer: str, features: Callable, real, units: Sequence[int],
                 n_candidates: int = 10_000, n_eval: int = 1_000, random_draws: int = 3, seed: int = 0,
                 batch_size: int = 100, progress: Callable | None = None, n_units: int | None = None,
                 basis=None):
    """FID of (a) the original images, (b) the flagged ``units`` ablated, (c) as many random
    units ablated (``random_draws`` draws; mean and spread), on the ``n_eval`` of
    ``n_candidates`` images where the flagged units activate most (sum of their spatial maxima,
    each unit scaled by its median). Returns (table DataFrame, eval sample indices). ``basis``:
    ``units`` are that basis's features, ablated along their decoder directions, against as many
    random features."""
    layer = resolve_layers(generator, [layer])[0]
    basis = learned(basis, layer_units(generator, layer), layer)
    n_candidates = _count(n_candidates, "n_candidates", 2, MAX_SAMPLES, "use e.g. n_candidates=10000")
    n_eval = _count(n_eval, "n_eval", 2, MAX_SAMPLES, "use e.g. n_eval=1000 (at most n_candidates)")
    random_draws = _count(random_draws, "random_draws", 1, 1000, "use e.g. random_draws=3")
    _count(seed, "seed", 0, 2 ** 63 - 1, "use a seed >= 0, e.g. seed=0")
    _count(batch_size, "batch_size", 1, 100_000, "use e.g. batch_size=100")
    _check_real(real)
    units = unit_set(units, "units", layer, allow_empty=False)          # type and sign: before any work
    if n_units is not None:
        n_units = _count(n_units, "n_units", 1, 1 << 24, "pass the layer's number of units, or leave it out")
    if basis is not None:
        n_units = basis.n_features
    units = unit_set(units, "units", layer, n_units or layer_shape(generator, layer)[0], allow_empty=False)
    dev = device_of(generator)
    maxes = []
    for a in range(0, n_candidates, batch_size):
        z = z_range(seed, a, min(n_candidates, a + batch_size), generator.z_dim, dev)
        _, cap = generate(generator, z, capture=[layer])
        r = cap[layer].float()
        maxes.append((r if basis is None else basis.encode(r)).amax((2, 3)).cpu())
    M = torch.cat(maxes)
    U = M.shape[1]
    scale = M[:, units].median(0).values.abs().clamp(min=1e-6)
    score = (M[:, units] / scale).sum(1)
    pick = score.topk(min(n_eval, n_candidates)).indices.sort().values.numpy()
    rng = np.random.default_rng(stream_seed(seed, "repair.random"))
    others = np.setdiff1d(np.arange(U), units)
    variants = {"original": [], f"{len(units)} flagged units ablated": units}
    for d in range(random_draws):
        variants[f"random draw {d + 1}"] = sorted(rng.choice(others, size=min(len(units), len(others)),
                                                             replace=False).tolist())
    fid = {}
    total = len(variants) * len(pick)
    done = 0
    for name, abl in variants.items():
        st = FeatureStats()
        for a in range(0, len(pick), batch_size):
            z = z_at(seed, pick[a:a + batch_size], generator.z_dim, dev)
            edits = [Edit(layer, abl, basis=basis)] if abl else []
            st.update(features(generate(generator, z, edits)))
            done += len(z)
            if progress:
                progress(done, total)
        fid[name] = frechet_distance(*st.mean_cov(), *real)
    rand = np.array([v for k, v in fid.items() if k.startswith("random")])
    what = "units" if basis is None else "features"
    rows = [{"variant": "original", "fid": fid["original"], "spread": 0.0, "units": ""},
            {"variant": f"{len(units)} flagged {what} ablated", "fid": fid[f"{len(units)} flagged units ablated"],
             "spread": 0.0, "units": " ".join(map(str, units))},
            {"variant": f"{len(units)} random {what} ablated (mean of {random_draws})", "fid": float(rand.mean()),
             "spread": float(rand.std(ddof=1)) if len(rand) > 1 else 0.0,
             "units": "; ".join(" ".join(map(str, v)) for k, v in variants.items() if k.startswith("random"))}]
    return pd.DataFrame(rows), pick



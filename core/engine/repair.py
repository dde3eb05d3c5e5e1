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
import json
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from core.base import cache as _cache
from core.base.cache import atomic_write_text, cache_root
from core.base.devices import device_of
from core.base.errors import InputError
from core.base.hooks import resolve_layers
from core.base.sampling import z_at, z_range
from core.base.validate import check_units
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.intervention import Edit, generate

__all__ = ["cached_unit_fid", "UNIT_FID_VERSION", "unit_fid", "UnitFID", "frechet_distances_to", "repair_table", "load_flags", "save_flags"]


def frechet_distances_to(mus: torch.Tensor, covs: torch.Tensor, mu_r, cov_r) -> np.ndarray:
    """Fréchet distance of many Gaussians (mus [K, D], covs [K, D, D]) to one reference,
    float64, with the reference's symmetric square root computed once:
    tr((S_r^½ S_k S_r^½)^½) = tr((S_k S_r)^½)."""
    mu_r = torch.as_tensor(np.asarray(mu_r), dtype=torch.float64)
    cov_r = torch.as_tensor(np.asarray(cov_r), dtype=torch.float64)
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
    return d2.clamp(min=0).numpy()


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


@torch.no_grad()
def unit_fid(generator, layer: str, features: Callable, real, n_samples: int = 20_000, top: int = 1_000,
             seed: int = 0, batch_size: int = 100, progress: Callable | None = None,
             unit_chunk: int = 16) -> UnitFID:
    """FID of every unit's top-``top`` images (by spatial maximum) against ``real`` = (mu, cov),
    from one pass of ``n_samples`` generated images."""
    t0 = time.perf_counter()
    layer = resolve_layers(generator, [layer])[0]
    if not isinstance(top, int) or top < 2:
        raise InputError(f"top must be an integer >= 2 (a covariance needs at least 2 images), got {top!r}")
    if n_samples < top:
        raise InputError(f"n_samples ({n_samples}) must be at least top ({top}): each unit's FID uses its "
                         f"top {top} of the generated images")
    dev = device_of(generator)
    feats, maxes = [], []
    for a in range(0, n_samples, batch_size):
        z = z_range(seed, a, min(n_samples, a + batch_size), generator.z_dim, dev)
        images, cap = generate(generator, z, capture=[layer])
        feats.append(features(images).double().cpu())
        maxes.append(cap[layer].float().amax((2, 3)).cpu())
        if progress:
            progress(min(n_samples, a + batch_size), n_samples)
    F_ = torch.cat(feats)
    M = torch.cat(maxes)
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


UNIT_FID_VERSION = "unit-fid-v1"    # bump when unit_fid() changes what it returns


def _stats_id(real) -> str:
    h = hashlib.sha256()
    for a in real:
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def cached_unit_fid(generator, layer: str, features, real, n_samples: int = 20_000, top: int = 1_000,
                    seed: int = 0, batch_size: int = 100, progress: Callable | None = None,
                    cache: bool = True) -> UnitFID:
    """:func:`unit_fid`, stored in ``cache/unit_fid`` keyed by the generator's and the feature
    network's weights, the real statistics, layer, samples, top and seed."""
    layer = resolve_layers(generator, [layer])[0]
    gid, fid_ = _cache.model_fingerprint(generator), _cache.model_fingerprint(features)
    key = None if not (gid and fid_) else _cache.make_key(
        kind="unit_fid", version=UNIT_FID_VERSION, generator=gid, features=fid_, real=_stats_id(real),
        layer=layer, n=int(n_samples), top=int(top), seed=int(seed))

    def decode(arr, meta):
        if progress:
            progress(n_samples, n_samples)
        return UnitFID(layer=layer, fid=arr["fid"], top_index=arr["top_index"], seed=seed, n_samples=n_samples,
                       top=top, seconds=float(meta["seconds"]))

    return _cache.cached(
        "unit_fid", key,
        lambda: unit_fid(generator, layer, features, real, n_samples, top, seed, batch_size, progress),
        lambda uf: ({"fid": uf.fid, "top_index": uf.top_index}, {"layer": layer, "seconds": uf.seconds}),
        decode, enabled=cache)


@torch.no_grad()
def repair_table(generator, layer: str, features: Callable, real, units: Sequence[int],
                 n_candidates: int = 10_000, n_eval: int = 1_000, random_draws: int = 3, seed: int = 0,
                 batch_size: int = 100, progress: Callable | None = None, n_units: int | None = None):
    """FID of (a) the original images, (b) the flagged ``units`` ablated, (c) as many random
    units ablated (``random_draws`` draws; mean and spread), on the ``n_eval`` of
    ``n_candidates`` images where the flagged units activate most (sum of their spatial maxima,
    each unit scaled by its median). Returns (table DataFrame, eval sample indices)."""
    layer = resolve_layers(generator, [layer])[0]
    units = sorted({int(u) for u in units})
    if not units:
        raise InputError("no units to ablate: flag at least one unit")
    dev = device_of(generator)
    maxes = []
    for a in range(0, n_candidates, batch_size):
        z = z_range(seed, a, min(n_candidates, a + batch_size), generator.z_dim, dev)
        _, cap = generate(generator, z, capture=[layer])
        maxes.append(cap[layer].float().amax((2, 3)).cpu())
    M = torch.cat(maxes)
    U = M.shape[1]
    check_units(units, U, layer)
    scale = M[:, units].median(0).values.abs().clamp(min=1e-6)
    score = (M[:, units] / scale).sum(1)
    pick = score.topk(min(n_eval, n_candidates)).indices.sort().values.numpy()
    rng = np.random.default_rng(seed + 1)
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
            edits = [Edit(layer, abl)] if abl else []
            st.update(features(generate(generator, z, edits)))
            done += len(z)
            if progress:
                progress(done, total)
        fid[name] = frechet_distance(*st.mean_cov(), *real)
    rand = np.array([v for k, v in fid.items() if k.startswith("random")])
    rows = [{"variant": "original", "fid": fid["original"], "spread": 0.0, "units": ""},
            {"variant": f"{len(units)} flagged units ablated", "fid": fid[f"{len(units)} flagged units ablated"],
             "spread": 0.0, "units": " ".join(map(str, units))},
            {"variant": f"{len(units)} random units ablated (mean of {random_draws})", "fid": float(rand.mean()),
             "spread": float(rand.std(ddof=1)) if len(rand) > 1 else 0.0,
             "units": "; ".join(" ".join(map(str, v)) for k, v in variants.items() if k.startswith("random"))}]
    return pd.DataFrame(rows), pick


# ----------------------------------------------------------------------------- manual flags

def _flag_path(model: str, layer: str):
    safe = "".join(ch if ch.isalnum() or ch in "-_@." else "_" for ch in model)
    return cache_root() / "flags" / f"{safe}__{layer}.json"


def _read_flags(model: str, layer: str) -> dict | None:
    p = _flag_path(model, layer)
    return json.loads(p.read_text()) if p.exists() else None


def load_flags(model: str, layer: str, fingerprint: str | None = None) -> list[int]:
    """Manually flagged artifact units of (model, layer), as stored by :func:`save_flags`. Given
    the loaded model's ``fingerprint`` (:func:`core.base.cache.model_fingerprint`), flags saved for
    other weights under the same name (a retrained or re-shipped model) are not returned: a unit
    number means nothing across trainings (:func:`stale_flags` has them)."""
    d = _read_flags(model, layer)
    if d is None or (fingerprint and d.get("fingerprint") and d["fingerprint"] != fingerprint):
        return []
    return sorted(d["units"])


def stale_flags(model: str, layer: str, fingerprint: str | None) -> list[int]:
    """The units flagged for other weights of ``model`` than those with ``fingerprint`` (else [])."""
    d = _read_flags(model, layer)
    if d is None or not fingerprint or not d.get("fingerprint") or d["fingerprint"] == fingerprint:
        return []
    return sorted(d["units"])


def save_flags(model: str, layer: str, units: Sequence[int], fingerprint: str | None = None) -> None:
    """Store the flagged units of (model, layer) for the lab (``cache/flags``), with the weights'
    ``fingerprint`` so that later weights under the same name do not inherit them."""
    atomic_write_text(_flag_path(model, layer), json.dumps(
        {"model": model, "layer": layer, "units": sorted({int(u) for u in units}), "fingerprint": fingerprint}))

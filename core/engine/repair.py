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
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import torch

from core.base import cache as _cache
from core.base.cache import atomic_write_text, cache_root, file_lock, safe_name
from core.base.devices import device_of
from core.base.distributed import batches, gather_batches, rank_world
from core.base.errors import InputError, UnitIndexError
from core.base.hooks import layer_shape, layer_units, resolve_layers
from core.base.sampling import z_at, z_range
from core.base.sharing import ADMINS_ENV, long_computation, may_change
from core.base.validate import check_bool
from core.engine.bases import learned
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.intervention import Edit, generate

__all__ = [
    "FLAGS_FORMAT",
    "MAX_SAMPLES",
    "UNIT_FID_VERSION",
    "UnitFID",
    "cached_unit_fid",
    "flag_details",
    "flag_units",
    "frechet_distances_to",
    "load_flags",
    "repair_table",
    "save_flags",
    "stale_flags",
    "unflag_units",
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
    fix = "pass the real images' feature statistics (mu, cov), e.g. evaluation.cached_real_stats(...)"
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


@long_computation("unit FID", fix="lower batch_size=")
@torch.no_grad()
def unit_fid(generator, layer: str, features: Callable, real, n_samples: int = 20_000, top: int = 1_000,
             seed: int = 0, batch_size: int = 100, progress: Callable | None = None,
             unit_chunk: int = 16, basis=None) -> UnitFID:
    """FID of every unit's top-``top`` images (by spatial maximum) against ``real`` = (mu, cov),
    from one pass of ``n_samples`` generated images. ``basis``: of every feature of that basis
    (ranked by the spatial maximum of its feature map)."""
    t0 = time.perf_counter()
    layer = resolve_layers(generator, [layer])[0]
    basis = learned(basis, layer_units(generator, layer), layer)
    _check_unit_fid_args(n_samples, top, seed, batch_size)
    _count(unit_chunk, "unit_chunk", 1, 1 << 20, "use e.g. unit_chunk=16")
    _check_real(real)
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


UNIT_FID_VERSION = "unit-fid-v1"    # bump when unit_fid() changes what it returns (a basis keys apart)


def _stats_id(real) -> str:
    h = hashlib.sha256()
    for a in real:
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def cached_unit_fid(generator, layer: str, features, real, n_samples: int = 20_000, top: int = 1_000,
                    seed: int = 0, batch_size: int = 100, progress: Callable | None = None,
                    cache: bool = True, cached_only: bool = False, basis=None) -> UnitFID | None:
    """:func:`unit_fid`, stored in ``cache/unit_fid`` keyed by the generator's and the feature
    network's weights, the real statistics, layer, samples, top, seed and the basis.
    ``cached_only=True``: the stored result or None, computing nothing."""
    layer = resolve_layers(generator, [layer])[0]
    basis = learned(basis, layer_units(generator, layer), layer)
    _check_unit_fid_args(n_samples, top, seed, batch_size)
    _check_real(real)
    gid, fid_ = _cache.model_fingerprint(generator), _cache.model_fingerprint(features)
    key = None if not (gid and fid_) else _cache.make_key(
        kind="unit_fid", version=UNIT_FID_VERSION, generator=gid, features=fid_, real=_stats_id(real),
        layer=layer, n=int(n_samples), top=int(top), seed=int(seed),
        **({"basis": basis.cache_key} if basis is not None else {}))

    def decode(arr, meta):
        if progress:
            progress(n_samples, n_samples)
        return UnitFID(layer=layer, fid=arr["fid"], top_index=arr["top_index"], seed=seed, n_samples=n_samples,
                       top=top, seconds=float(meta["seconds"]))

    return _cache.cached(
        "unit_fid", key,
        lambda: unit_fid(generator, layer, features, real, n_samples, top, seed, batch_size, progress, basis=basis),
        lambda uf: ({"fid": uf.fid, "top_index": uf.top_index}, {"layer": layer, "seconds": uf.seconds}),
        decode, enabled=cache, cached_only=check_bool("cached_only", cached_only))


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
    units = _unit_list(units, "units", layer, allow_empty=False)          # type and sign: before any work
    if n_units is not None:
        n_units = _count(n_units, "n_units", 1, 1 << 24, "pass the layer's number of units, or leave it out")
    if basis is not None:
        n_units = basis.n_features
    units = _unit_list(units, "units", layer, n_units or layer_shape(generator, layer)[0], allow_empty=False)
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


# ----------------------------------------------------------------------------- manual flags
#
# Flags are shared by everyone using the lab's cache: ``cache/flags/<model>__<layer>.json``
# holds an append-only list of events, one per unit flagged or unflagged:
#
#     {"format": 2, "model": "toyworld/town", "layer": "layer4",
#      "events": [{"unit": 3, "action": "add", "by": "ann", "at": "2025-01-01T12:00:00+00:00",
#                  "fingerprint": "ProGAN:1a2b…"}, ...]}
#
# Each writer appends its own events under a lock (a thread lock and, across processes, a file
# lock) and rewrites the file atomically, so two sessions never lose each other's flags; the
# current set replays the events in order (the last event of a unit decides). Flags belong to
# the weights they were set on (``fingerprint``): the weights flagged last are the current ones,
# and the flags of earlier weights under the same name are reported as stale. Files of the first
# format ({"units": [...], "fingerprint": ...}) are read as "add" events.

FLAGS_FORMAT = 2
MAX_NAME = 200                         # characters of a model or layer name in a flag file's name
_LAYER = re.compile(r"^[^\W_.][\w.\-]*$")
_COMPACT_AT = 5000                     # events; beyond, only each (weights, unit)'s last event is kept


def _check_model_name(model) -> str:
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model must be the model's name (a non-empty string), got {model!r}",
                         fix="pass the name the model was loaded by, e.g. 'toyworld/town'")
    if len(model) > 4 * MAX_NAME:
        raise InputError(f"model name {model[:40]!r}… is {len(model)} characters long; at most {4 * MAX_NAME}",
                         fix="pass the name the model was loaded by, e.g. 'toyworld/town'")
    return model


def _check_layer_name(layer) -> str:
    if not isinstance(layer, str) or not layer:
        raise InputError(f"layer must be a layer's name (a non-empty string), got {layer!r}",
                         fix="pass a layer name such as 'layer4'")
    if len(layer) > MAX_NAME or ".." in layer or not _LAYER.match(layer):
        shown = repr(layer[:60]) + ("…" if len(layer) > 60 else "")
        raise InputError(f"layer {shown} is not a layer name (letters, digits, '_', '.', '-'; no '/' or '..'; "
                         f"at most {MAX_NAME} characters)", fix="pass a layer name such as 'layer4'")
    return layer


def _check_text(value, what: str, fix: str, limit: int = MAX_NAME) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, got {type(value).__name__} {value!r}", fix=fix)
    if len(value) > limit:
        raise InputError(f"{what} is {len(value)} characters long; at most {limit}", fix=fix)
    return value


def _unit_list(units, what: str, layer: str, n_units: int | None = None, allow_empty: bool = True) -> list[int]:
    """``units`` as sorted distinct ints >= 0 (and < ``n_units`` when known); refused otherwise."""
    if units is None:
        units = []
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        units = [units]
    if isinstance(units, torch.Tensor):
        units = units.reshape(-1).tolist()
    if isinstance(units, np.ndarray):
        units = units.reshape(-1).tolist()
    if isinstance(units, (str, bytes, dict)) or not isinstance(units, (list, tuple, set, frozenset, range)):
        raise InputError(f"{what} must be a list of unit indices (integers), got {type(units).__name__} {units!r}",
                         fix=f"pass {what} as a list of integers, e.g. [3, 17]")
    out = set()
    for u in units:
        ok = isinstance(u, (int, np.integer)) and not isinstance(u, bool)
        if not ok and isinstance(u, (float, np.floating)) and np.isfinite(u) and float(u).is_integer():
            ok = True
        if not ok:
            raise InputError(f"{what} must be whole numbers, got {u!r} in {units!r}",
                             fix=f"pass {what} as a list of integers, e.g. [3, 17]")
        if u < 0:
            raise UnitIndexError(f"{what}: {int(u)} is negative; unit indices of layer {layer!r} start at 0",
                                 fix=f"pass {what} as indices 0.." + (f"{n_units - 1}" if n_units else "n-1"))
        out.add(int(u))
    if not out and not allow_empty:
        raise InputError(f"{what} is empty: no units to ablate", fix="flag at least one unit, e.g. units=[3]")
    if n_units is not None and (bad := sorted(u for u in out if u >= n_units)):
        raise UnitIndexError(f"{what} {bad} out of range for layer {layer!r} with {n_units} units "
                             f"(valid: 0..{n_units - 1})", fix=f"pass {what} within 0..{n_units - 1}")
    return sorted(out)


def _flag_path(model: str, layer: str):
    """The flag file of (model, layer): always inside ``cache/flags``, whatever the names."""
    return cache_root() / "flags" / f"{safe_name(_check_model_name(model))}__{safe_name(_check_layer_name(layer))}.json"


def _legacy_flag_path(model: str, layer: str):
    """Where the first format kept them (its names could collide: 'lab/x' and 'lab_x')."""
    safe = "".join(ch if ch.isalnum() or ch in "-_@." else "_" for ch in model)
    return cache_root() / "flags" / f"{safe}__{layer}.json"


def _events(d: dict) -> list[dict]:
    if isinstance(d.get("events"), list):
        return [e for e in d["events"] if isinstance(e, dict) and isinstance(e.get("unit"), int)
                and e.get("action") in ("add", "remove")]
    fp = d.get("fingerprint")            # the first format: the whole set, as "add" events
    return [{"unit": int(u), "action": "add", "by": "", "at": "", "fingerprint": fp}
            for u in d.get("units", []) if isinstance(u, int)]


def _read_events(model: str, layer: str) -> list[dict]:
    for p in (_flag_path(model, layer), _legacy_flag_path(model, layer)):
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):    # unreadable, or a legacy name too long for this system
            continue
        return _events(d) if isinstance(d, dict) else []
    return []


def _current_fingerprint(events: list[dict]) -> str | None:
    """The weights flagged last (None: no event names its weights)."""
    return next((e["fingerprint"] for e in reversed(events) if e.get("fingerprint")), None)


def _replay(events: list[dict], fingerprint: str | None) -> dict[int, dict]:
    """unit -> the event that flagged it, for the flags that apply to ``fingerprint``'s weights
    (those set on them and those set without a fingerprint)."""
    on: dict[int, dict] = {}
    for e in events:
        if e.get("fingerprint") and e["fingerprint"] != fingerprint:
            continue
        if e["action"] == "add":
            on[e["unit"]] = e
        else:
            on.pop(e["unit"], None)
    return on


def _applying(events: list[dict], fingerprint: str | None) -> dict[int, dict]:
    current = _current_fingerprint(events)
    if fingerprint and current and fingerprint != current:
        return {}                        # set on other weights: a unit number means nothing across trainings
    return _replay(events, current or fingerprint)


def load_flags(model: str, layer: str, fingerprint: str | None = None) -> list[int]:
    """Manually flagged artifact units of (model, layer): everyone's flags, merged per unit (see
    :func:`save_flags`). Given the loaded model's ``fingerprint``
    (:func:`core.base.cache.model_fingerprint`), flags saved for other weights under the same name
    (a retrained or re-shipped model) are not returned: a unit number means nothing across
    trainings (:func:`stale_flags` has them)."""
    return sorted(_applying(_read_events(model, layer), _check_text(fingerprint, "fingerprint", _FP_FIX, 1000)))


def flag_details(model: str, layer: str, fingerprint: str | None = None) -> dict[int, dict]:
    """The flagged units of :func:`load_flags`, each with who flagged it and when: unit -> {by, at}."""
    on = _applying(_read_events(model, layer), _check_text(fingerprint, "fingerprint", _FP_FIX, 1000))
    return {u: {"by": e.get("by") or "", "at": e.get("at") or ""} for u, e in sorted(on.items())}


def stale_flags(model: str, layer: str, fingerprint: str | None) -> list[int]:
    """The units flagged for other weights of ``model`` than those with ``fingerprint`` (else [])."""
    fingerprint = _check_text(fingerprint, "fingerprint", _FP_FIX, 1000)
    events = _read_events(model, layer)
    current = _current_fingerprint(events)
    if not fingerprint or not current or current == fingerprint:
        return []
    return sorted(_replay(events, current))


_FP_FIX = "pass core.base.cache.model_fingerprint(generator), or None"


def _flags_locked(path):
    """Held while a flag file is read and rewritten (one thread, one process at a time)."""
    return file_lock(path.with_name(f".{path.name}.lock"), "the flags folder",
                     "make the cache writable or set $GANATOMY_CACHE to a folder that is")


def _compact(events: list[dict]) -> list[dict]:
    """Only each (weights, unit)'s last event, in order: the same sets and the same current weights."""
    last = {(e.get("fingerprint"), e["unit"]): i for i, e in enumerate(events)}
    return [events[i] for i in sorted(last.values())]


def save_flags(model: str, layer: str, units: Sequence[int] | None = None, fingerprint: str | None = None, *,
               add: Sequence[int] = (), remove: Sequence[int] = (), by: str = "",
               n_units: int | None = None) -> list[int]:
    """Flag (``add``) or unflag (``remove``) units of (model, layer) for the lab (``cache/flags``),
    with the weights' ``fingerprint`` so that later weights under the same name do not inherit
    them, and ``by`` (who flagged: a display name). Only the units given change: everyone
    else's flags stay as they are, however many sessions save at once; a ``remove`` with ``by``
    (what sessions send) may unflag only ``by``'s own flags, unless ``by`` is an admin
    (``$GANATOMY_ADMINS``).

    ``units`` (the whole set) is for a script that owns the flags: the units not in it are
    unflagged, the others flagged. Sessions that share flags send only their changes
    (``add`` / ``remove``). ``n_units``: the layer's size, to refuse indices beyond it.
    Returns the flagged units of these weights after the change."""
    path = _flag_path(model, layer)
    fingerprint = _check_text(fingerprint, "fingerprint", _FP_FIX, 1000) or None
    by = _check_text(by, "by", "pass your display name, e.g. by='ann'")
    if n_units is not None and (isinstance(n_units, bool) or not isinstance(n_units, (int, np.integer))
                                or n_units < 1):
        raise InputError(f"n_units must be a positive integer (the layer's size), got {n_units!r}",
                         fix="pass the number of units of the layer, or leave n_units out")
    whole = None if units is None else _unit_list(units, "units", layer, n_units)
    add = _unit_list(add, "add", layer, n_units)
    remove = _unit_list(remove, "remove", layer, n_units)
    if whole is not None and (add or remove):
        raise InputError("give the whole set (units) or the changes (add / remove), not both",
                         fix="pass add=[...] and remove=[...] only")
    if both := sorted(set(add) & set(remove)):
        raise InputError(f"units {both} are both in add and remove", fix="put each unit in add or in remove")
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with _flags_locked(path):
        events = _read_events(model, layer)
        if whole is not None:            # the whole set: what differs from these weights' flags
            on = set(_replay(events, fingerprint) if fingerprint else _applying(events, None))
            add, remove = sorted(set(whole) - on), sorted(on - set(whole))
        elif remove and by:              # a session unflags only its own flags (or an admin anyone's)
            current = _applying(events, fingerprint)
            theirs = {u: current[u].get("by") or "" for u in remove
                      if u in current and not may_change(current[u].get("by"), by)}
            if theirs:
                raise InputError(f"units {sorted(theirs)} were flagged by {', '.join(sorted(set(theirs.values())))}; "
                                 f"only who flagged a unit (or an admin, {ADMINS_ENV}) can unflag it; you are {by!r}",
                                 fix="ask who flagged them, or leave them flagged")
        new = ([{"unit": u, "action": "add", "by": by, "at": at, "fingerprint": fingerprint} for u in add]
               + [{"unit": u, "action": "remove", "by": by, "at": at, "fingerprint": fingerprint} for u in remove])
        if new:
            events = events + new
            if len(events) > _COMPACT_AT:
                events = _compact(events)
            atomic_write_text(path, json.dumps({"format": FLAGS_FORMAT, "model": model, "layer": layer,
                                                "events": events}))
        return sorted(_applying(events, fingerprint))


def flag_units(model: str, layer: str, units: Sequence[int], fingerprint: str | None = None, *,
               by: str = "", n_units: int | None = None) -> list[int]:
    """Flag ``units`` (everyone else's flags stay); returns the flagged units after it."""
    _flag_path(model, layer)
    units = _unit_list(units, "units", layer)
    return save_flags(model, layer, fingerprint=fingerprint, add=units, by=by, n_units=n_units)


def unflag_units(model: str, layer: str, units: Sequence[int], fingerprint: str | None = None, *,
                 by: str = "", n_units: int | None = None) -> list[int]:
    """Unflag ``units`` (everyone else's flags stay); returns the flagged units after it."""
    _flag_path(model, layer)
    units = _unit_list(units, "units", layer)
    return save_flags(model, layer, fingerprint=fingerprint, remove=units, by=by, n_units=n_units)

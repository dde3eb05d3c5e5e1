"""On-disk result cache (``cache/`` beside the code, or ``$GANATOMY_CACHE``).

An entry is a directory ``<kind>/<key>/`` with ``arrays.npz`` (loaded with
``allow_pickle=False``) and ``meta.json``. It is written into a temporary directory and renamed
into place, so a killed run never leaves an entry that loads. Keys hash everything a result
depends on: model weights, segmenter, options and the code version of the statistic.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

__all__ = ["cache_root", "make_key", "weights_hash", "load", "save", "model_fingerprint"]


def cache_root() -> Path:
    return Path(os.environ.get("GANATOMY_CACHE", Path(__file__).resolve().parents[1] / "cache"))


def make_key(**parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


def model_fingerprint(obj) -> str | None:
    """A cache identity for a generator or segmenter: its ``cache_key`` attribute when it
    defines one, else the hash of its weights when it is a module; ``None`` (do not cache)
    for anything whose behaviour cannot be pinned down."""
    key = getattr(obj, "cache_key", None)
    if isinstance(key, str) and key:
        return key
    if isinstance(obj, torch.nn.Module):
        return f"{type(obj).__name__}:{weights_hash(obj)}"
    return None


def _dir(kind: str, key: str) -> Path:
    return cache_root() / kind / key


def load(kind: str, key: str):
    """``(arrays, meta)`` of a complete entry, or ``None``."""
    d = _dir(kind, key)
    try:
        meta = json.loads((d / "meta.json").read_text())
        with np.load(d / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None
    return arrays, meta


def save(kind: str, key: str, arrays: dict, meta: dict) -> Path:
    d = _dir(kind, key)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return d

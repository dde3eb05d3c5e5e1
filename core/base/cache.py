"""The one cache path and the one atomic write.

Results live under ``cache/`` beside the code, or ``$GANATOMY_CACHE``. An entry is a directory
``<kind>/<key>/`` with ``arrays.npz`` (loaded with ``allow_pickle=False``) and ``meta.json``.
Every derived result goes the same way (:func:`cached`)::

    key = make_key(kind="ace", version=..., generator=fingerprint(G), ...)   # everything it depends on
    result = cached("ace", key, compute, encode, decode)                     # lookup -> compute on miss -> save

An entry is written into a temporary directory and renamed into place, so a killed run never
leaves an entry that loads; when two writers race for one key the first complete entry stays
(both hold the same result). A key part that is None (a model whose behaviour cannot be
pinned down: :func:`model_fingerprint`) turns caching off for that call.

:func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_path` are the only way
GANatomy writes a file others may read at the same time (registries, flags, checkpoints).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch

__all__ = ["cache_root", "make_key", "weights_hash", "load", "save", "model_fingerprint", "cached",
           "atomic_path", "atomic_write_bytes", "atomic_write_text", "safe_name"]

T = TypeVar("T")


def cache_root() -> Path:
    return Path(os.environ.get("GANATOMY_CACHE", Path(__file__).resolve().parents[2] / "cache"))


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


def safe_name(name: str) -> str:
    """A file-name-safe, readable and collision-free form of ``name`` (no separators, no ``..``)."""
    readable = "".join(ch if ch.isalnum() or ch in "-_@." else "_" for ch in name).strip(".")[:80]
    return f"{readable or 'x'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``; when the block ends without an error it is renamed onto
    ``path`` in one step (readers see the old file or the new one, never half of one); on an
    error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


# ----------------------------------------------------------------------------- entries

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
    """Store an entry atomically. If another writer completed the same key first, its entry
    stays and this one is discarded (a key names one result)."""
    d = _dir(kind, key)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if load(kind, key) is None:
            if d.exists():                       # an entry that does not load: replace it
                shutil.rmtree(d, ignore_errors=True)
            try:
                os.rename(tmp, d)
            except OSError:
                if load(kind, key) is None:      # not a racing writer's complete entry: a real fault
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return d


def cached(kind: str, key: str | None, compute: Callable[[], T], encode: Callable[[T], tuple[dict, dict]],
           decode: Callable[[dict, dict], T], *, enabled: bool = True, cached_only: bool = False) -> T | None:
    """Key -> lookup -> compute on a miss -> atomic save, for every cached result.

    ``key`` None (or ``enabled`` False) computes without the cache. ``encode(result)`` gives
    ``(arrays, meta)``, ``decode(arrays, meta)`` the result back. ``cached_only=True`` returns
    the stored result or None, computing nothing."""
    use = enabled and key is not None
    if use:
        hit = load(kind, key)
        if hit is not None:
            return decode(*hit)
    if cached_only:
        return None
    result = compute()
    if use:
        save(kind, key, *encode(result))
    return result

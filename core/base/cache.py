"""The one cache path and the one atomic write.

Results live under ``cache/`` beside the code, or ``$GANATOMY_CACHE``. Every measurement takes
``cache=`` / ``cached_only=`` itself and goes the same way, through :func:`measure`::

    return measure("ace", ACE_VERSION, models={"generator": G, "segmenter": S},
                   parts={"layer": layer, "concept": c, ...},     # everything else the result depends on
                   compute=lambda: ..., codec=AceResult, cache=cache, cached_only=cached_only)

``measure`` builds the key (:func:`make_key` over the models' fingerprints and ``parts``) and runs
:func:`cached` (lookup -> compute on a miss -> atomic save). The result type knows how to become
arrays and back (``to_arrays()`` -> ``(arrays, meta)``, ``from_arrays(arrays, meta)``); a plain
array or table uses :class:`ArrayCodec` / :class:`FrameCodec`.

An entry is a directory ``<kind>/<key>/`` of three files: ``arrays.npz`` (plain arrays, loaded
with ``allow_pickle=False``), ``meta.json`` and ``manifest.json`` (``{"format": 2, "kind", "key",
"sha256": {"arrays.npz": ..., "meta.json": ...}}``). An entry is served only when its manifest
has this format, names this kind and key, and both checksums match the bytes read; the three
files are read through one handle on the directory, so a reader never mixes two entries.

Trust rules:

- An entry that is missing a file, fails its checksum, does not parse, or that ``decode`` cannot
  turn back into a result (an older layout) is moved aside to ``<cache>/.quarantine/`` with one
  :class:`CacheWarning` and computed again, never served and never a crash. Entries written
  before checksums (format 1) count as damaged the same way.
- An entry is written into a temporary directory and published with one ``os.rename``, which
  fails while a complete entry is in place: when two writers race for one key the first complete
  entry stays and the other is discarded (both succeed); a damaged entry in the way is moved aside.
- A cache that cannot be written (read-only, full, no permission) does not lose a computed
  result: :func:`cached` (and :func:`save`) return normally with one :class:`CacheWarning` naming
  the folder and the fix; ``save(..., strict=True)`` raises :class:`~core.base.errors.CacheError`.
- Temporary directories and ``.part-`` files of killed runs older than :data:`STALE_SECONDS` are
  removed by the next write beside them.

:func:`lookup` is the first half of :func:`cached` (verified lookup and decode, a miss on any
failure) for callers that save on their own. A key part that is None (a model whose behaviour
cannot be pinned down: :func:`model_fingerprint`) turns caching off for that call; a part whose
text form is not stable (``<object at 0x...>``, a shortened array) is refused by :func:`make_key`.

:func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_path` are the only way
GANatomy writes a file others may read at the same time (registries, flags, checkpoints).
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import stat
import sys
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

try:                                   # file locks between processes (POSIX); threads are locked anyway
    import fcntl
except ImportError:                    # pragma: no cover - Windows
    fcntl = None

from core.base.errors import ArgumentTypeError, CacheError, InputError
from core.base.validate import check_bool

__all__ = ["FORMAT", "code_hash", "file_lock", "remove_stale", "QUARANTINE", "STALE_SECONDS", "CacheWarning",
           "atomic_path", "atomic_write_bytes", "atomic_write_text", "cache_root", "cached", "shipped_root", "load",
           "lookup", "make_key", "model_fingerprint", "safe_name", "save", "take_notices", "weights_hash",
           "measure", "ArrayCodec", "FrameCodec"]

T = TypeVar("T")

FORMAT = 2                               # 1: arrays.npz + meta.json without checksums (counts as damaged)
ARRAYS, META, MANIFEST = "arrays.npz", "meta.json", "manifest.json"
QUARANTINE = ".quarantine"               # <cache>/.quarantine/: damaged entries, moved aside
QUARANTINE_KEEP = 64                     # the newest damaged entries kept there for a look
STALE_SECONDS = 3600.0                   # a temporary file this old belongs to a killed run
FIX_UNWRITABLE = "set GANATOMY_CACHE to a writable folder with free space"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,199}")
_UNSTABLE = re.compile(r" at 0x[0-9a-fA-F]+")
_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


class CacheWarning(UserWarning):
    """The cache could not be used as asked (an entry was damaged, or the folder cannot be
    written); the result is still correct, it is only computed again."""


_NOTICES = threading.local()


def _warn(message: str, stacklevel: int) -> None:
    """Warn, and remember the message for the calling thread (a dashboard session shows it)."""
    notices = getattr(_NOTICES, "items", None)
    if notices is None:
        notices = _NOTICES.items = []
    if message not in notices:
        notices.append(message)
    warnings.warn(message, CacheWarning, stacklevel=stacklevel + 1)


def take_notices() -> list[str]:
    """The cache's warnings raised in the calling thread since the last call (then forgotten):
    each dashboard session's script runs in its own thread and shows only its own."""
    items = getattr(_NOTICES, "items", None) or []
    _NOTICES.items = []
    return items


def cache_root() -> Path:
    """Where results, added models and flags live: ``$GANATOMY_CACHE``; else ``cache/`` beside the
    code in a checkout (a folder with ``pyproject.toml``); else, for an installed package, the
    user's cache folder (``$XDG_CACHE_HOME/ganatomy``, default ``~/.cache/ganatomy``), never
    site-packages."""
    env = os.environ.get("GANATOMY_CACHE")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganatomy"


SHIPPED_ENV = "GANATOMY_SHIPPED_RESULTS"
_OFF = ("0", "off", "no", "false", "none")


def shipped_root() -> Path | None:
    """The results shipped with the zoo's weights (``core/weights/results``, the cache's layout,
    read only): looked up after the cache, never written or moved. ``$GANATOMY_SHIPPED_RESULTS``
    names another folder, or turns them off (``0``)."""
    v = os.environ.get(SHIPPED_ENV, "").strip()
    if v.lower() in _OFF:
        return None
    return Path(v) if v else Path(__file__).resolve().parents[1] / "weights" / "results"


def _key_text(name: str):
    def default(obj):
        text = str(obj)
        if _UNSTABLE.search(text):
            raise ArgumentTypeError(
                f"make_key part {name!r}: a {type(obj).__name__} has no stable text form ({text[:60]}); "
                f"a key built from it would change every run",
                fix="pass model_fingerprint(obj), a string or numbers instead")
        if isinstance(obj, (np.ndarray, torch.Tensor)) and "..." in text:
            raise ArgumentTypeError(
                f"make_key part {name!r}: an array of {int(np.prod(obj.shape))} values is shortened in its "
                f"text form, so different arrays would share a key",
                fix="pass a hash of it instead (hashlib.sha256(array.tobytes()).hexdigest())")
        return text
    return default


def make_key(**parts) -> str:
    """A 24-hex-digit key over ``parts`` (JSON, sorted; other objects by their text form, which must
    be stable: an object shown as ``<... at 0x...>`` or a shortened array is refused)."""
    for name, value in parts.items():
        json.dumps(value, sort_keys=True, default=_key_text(name))
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


def code_hash(obj) -> str:
    """A hash of the source code of the classes ``obj`` is built from (its own class and every
    submodule's), each read as the whole module that defines it; classes of ``torch`` and of
    GANatomy itself are left out (they are versioned with the package). ``""`` when there is no
    such class: a model whose code changes (a fixed ``forward`` under the same class name) then
    gets a new key instead of the results of the old code."""
    classes = {type(m) for m in obj.modules()} if isinstance(obj, torch.nn.Module) else {type(obj)}
    mods = sorted({c.__module__ for c in classes
                   if c.__module__.split(".")[0] not in ("torch", "core", "builtins", "torchvision")})
    if not mods:
        return ""
    h = hashlib.sha256()
    for name in mods:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        try:
            stamp = os.stat(path).st_mtime_ns if path else 0           # an edited, reloaded file: new source
        except OSError:
            stamp = 0
        own = tuple(sorted((c for c in classes if c.__module__ == name), key=lambda c: c.__qualname__))
        h.update(name.encode())
        h.update(_module_source(name, own, stamp).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _module_source(name: str, classes: tuple, _stamp: int) -> str:
    """The source of module ``name`` or, where it has none on disk (a notebook's cell), of
    ``classes`` themselves (the class objects are in the cache key: a class defined again is new)."""
    try:
        return inspect.getsource(sys.modules.get(name))
    except (OSError, TypeError):
        pass
    parts = []
    for cls in classes:
        try:
            parts.append(inspect.getsource(cls))
        except (OSError, TypeError):
            parts.append(cls.__qualname__)
    return "\n".join(parts)


def model_fingerprint(obj) -> str | None:
    """A cache identity for a generator or segmenter: its ``cache_key`` attribute when it
    defines one, else the hash of its weights and (for classes outside torch and GANatomy) of its
    code when it is a module; ``None`` (do not cache) for anything whose behaviour cannot be
    pinned down."""
    key = getattr(obj, "cache_key", None)
    if isinstance(key, str) and key:
        return key
    if isinstance(obj, torch.nn.Module):
        code = code_hash(obj)
        return f"{type(obj).__name__}:{weights_hash(obj)}" + (f":code-{code}" if code else "")
    return None


def safe_name(name: str) -> str:
    """A file-name-safe, readable and collision-free form of ``name`` (no separators, no ``..``)."""
    readable = "".join(ch if ch.isalnum() or ch in "-_@." else "_" for ch in name).strip(".")[:80]
    return f"{readable or 'x'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- atomic writes

def remove_stale(folder: Path, is_stale: Callable[[str], bool]) -> None:
    """Remove what killed runs left in ``folder``: names ``is_stale`` accepts, older than STALE_SECONDS."""
    now = time.time()
    try:
        found = list(os.scandir(folder))
    except OSError:
        return
    for entry in found:
        if not is_stale(entry.name):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_SECONDS:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``; when the block ends without an error it is renamed onto
    ``path`` in one step (readers see the old file or the new one, never half of one); on an
    error it is removed. ``.part-`` files of killed runs (older than STALE_SECONDS) beside it go."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, lambda n: n.startswith(".") and ".part-" in n)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def file_lock(lock: str | os.PathLike, what: str, fix: str) -> Iterator[None]:
    """Held while a shared file is read, checked and rewritten (registries, flags): by one thread
    of this process (a lock per path) and, through the lock file ``lock`` (where the platform has
    ``fcntl``), by one process at a time. A folder that cannot be written is a
    :class:`CacheError` naming ``what`` (the folder, as the user knows it) and ``fix``."""
    lock = Path(lock)
    with _LOCKS_GUARD:
        thread_lock = _LOCKS.setdefault(str(lock.resolve()), threading.Lock())
    with thread_lock:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.touch()
        except OSError as e:
            raise CacheError(f"{what} {lock.parent} cannot be written ({e.strerror or e})", fix=fix) from None
        with open(lock, "a+") as fh:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


# ----------------------------------------------------------------------------- entries

class _Damaged(Exception):
    """An entry that is there but cannot be served (``reason``; ``ino``: the inode read, or None)."""

    def __init__(self, reason: str, ino: int | None):
        super().__init__(reason)
        self.reason, self.ino = reason, ino


def _check_name(what: str, value) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(f"cache {what} must be a string; got {type(value).__name__}",
                                fix=f"pass the {what} as text (make_key(...) gives a key)")
    if not _NAME.fullmatch(value) or ".." in value:
        raise InputError(f"cache {what} {value!r} is not a plain folder name",
                         fix="use letters, digits, '_', '-', '@' and '.', not starting with '.'")
    return value


def _dir(kind: str, key: str) -> Path:
    return cache_root() / _check_name("kind", kind) / _check_name("key", key)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_files(d: Path) -> tuple[dict[str, bytes], int]:
    """The three files of ``d`` through one directory handle (one entry, even while ``d`` is moved
    or replaced), and the directory's inode. FileNotFoundError: no entry."""
    if not _DIR_FD:                                        # pragma: no cover - Windows
        try:
            ino = os.lstat(d).st_ino
            if not d.is_dir():
                raise _Damaged("is a file, not an entry folder", ino)
            return {n: (d / n).read_bytes() for n in (MANIFEST, META, ARRAYS) if (d / n).exists()}, ino
        except FileNotFoundError:
            raise
        except OSError as e:
            raise _Damaged(f"cannot be read ({e.strerror or e})", None) from e
    try:                                   # not O_DIRECTORY: what is there is opened, and its inode is the one judged
        dfd = os.open(d, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except NotADirectoryError as e:        # a folder above it is a file: there is no entry
        raise FileNotFoundError(errno.ENOENT, "no cache entry", str(d)) from e
    except OSError as e:
        raise _Damaged(f"cannot be read ({e.strerror or e})", None) from e
    try:
        st = os.fstat(dfd)
        ino = st.st_ino
        if not stat.S_ISDIR(st.st_mode):
            raise _Damaged("is a file, not an entry folder", ino)
        files = {}
        for name in (MANIFEST, META, ARRAYS):
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _Damaged(f"{name} cannot be read ({e.strerror or e})", ino) from e
            with os.fdopen(fd, "rb") as f:
                files[name] = f.read()
        return files, ino
    finally:
        os.close(dfd)


def _read_entry(d: Path, kind: str, key: str) -> tuple[dict, dict, int]:
    """``(arrays, meta, inode)`` of the verified entry ``d``; FileNotFoundError when there is none,
    :class:`_Damaged` when it is there but cannot be served."""
    files, ino = _read_files(d)
    if MANIFEST not in files:
        if not files:
            raise _Damaged("is an empty folder", ino)
        raise _Damaged(f"has no {MANIFEST} (no checksum: written by an older GANatomy, or damaged)", ino)
    missing = [n for n in (META, ARRAYS) if n not in files]
    if missing:
        raise _Damaged(f"has no {' or '.join(missing)}", ino)
    try:
        manifest = json.loads(files[MANIFEST])
    except ValueError:
        raise _Damaged(f"{MANIFEST} is not JSON", ino) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Damaged(f"{MANIFEST} is not of cache format {FORMAT}", ino)
    if manifest.get("kind") != kind or manifest.get("key") != key:
        raise _Damaged(f"{MANIFEST} names another entry ({manifest.get('kind')}/{manifest.get('key')})", ino)
    sums = manifest.get("sha256")
    for name in (ARRAYS, META):
        if not isinstance(sums, dict) or sums.get(name) != _sha(files[name]):
            raise _Damaged(f"{name} does not match its checksum", ino)
    try:
        meta = json.loads(files[META])
    except ValueError as e:
        raise _Damaged(f"{META} is not JSON ({e})", ino) from None
    if not isinstance(meta, dict):
        raise _Damaged(f"{META} holds a {type(meta).__name__}, not an object", ino)
    try:
        with np.load(io.BytesIO(files[ARRAYS]), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:                 # noqa: BLE001 - a checksummed entry that still does not parse
        raise _Damaged(f"does not parse ({type(e).__name__}: {e})", ino) from None
    return arrays, meta, ino


@contextlib.contextmanager
def _quarantine_lock(qdir: Path) -> Iterator[None]:
    fd = os.open(qdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _move_aside(d: Path, kind: str, key: str, ino: int | None) -> tuple[str, Path | OSError | None]:
    """Move the damaged entry ``d`` (the one of inode ``ino``) to the quarantine folder.
    ``("moved", path)``, ``("gone", None)`` (another process moved or replaced it already) or
    ``("failed", error)``. Movers hold one lock and move only the inode they found damaged, so a
    good entry that replaced it is never moved (a complete entry cannot be renamed over)."""
    if ino is None:                        # what is there was not read: it is not moved blindly
        return "failed", OSError(errno.EACCES, "it could not be read")
    qdir = cache_root() / QUARANTINE
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        if qdir.is_symlink() or not qdir.is_dir():     # never prune (or move into) a folder outside the cache
            return "failed", OSError(errno.EPERM, f"{qdir} is a link or not a folder; remove it")
        with _quarantine_lock(qdir):
            try:
                if os.lstat(d).st_ino != ino:
                    return "gone", None
            except FileNotFoundError:
                return "gone", None
            q = qdir / f"{kind}-{key}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            os.rename(d, q)
        with contextlib.suppress(OSError):
            os.utime(q)                    # the quarantine keeps the newest moved
    except FileNotFoundError:
        return "gone", None
    except OSError as e:
        return "failed", e
    with contextlib.suppress(OSError):
        kept = sorted(qdir.iterdir(), key=lambda p: p.lstat().st_mtime)
        for old in [p for p in kept if p.name != ".lock"][:-QUARANTINE_KEEP]:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
    return "moved", q


def _discard(d: Path, kind: str, key: str, reason: str, ino: int | None) -> bool:
    """Move a damaged entry aside with one warning. False: it is still in the way."""
    state, where = _move_aside(d, kind, key, ino)
    if state == "moved":
        _warn(f"GANatomy cache: the entry {d} {reason}; moved it to {where}; the result is "
                      f"computed again", stacklevel=4)
    elif state == "failed":
        _warn(f"GANatomy cache: the entry {d} {reason}; it could not be moved aside "
              f"({getattr(where, 'strerror', None) or where}), so it is ignored and the result computed "
              f"again ({FIX_UNWRITABLE})", stacklevel=4)
    return state != "failed"


def _load(kind: str, key: str) -> tuple[dict, dict, int | None] | None:
    """The verified entry from the cache, else from the shipped results (inode None: it is
    package data, never moved aside), else None."""
    d = _dir(kind, key)
    try:
        return _read_entry(d, kind, key)
    except FileNotFoundError:
        pass
    except _Damaged as bad:
        _discard(d, kind, key, bad.reason, bad.ino)
        return None
    shipped = shipped_root()
    if shipped is None:
        return None
    d = shipped / kind / key
    try:
        arrays, meta, _ = _read_entry(d, kind, key)
        return arrays, meta, None
    except FileNotFoundError:
        return None
    except _Damaged as bad:
        _warn(f"GANatomy: the shipped result {d} {bad.reason}; it is ignored and the result computed "
              f"(restore the shipped results with `git checkout -- core/weights/results` in the GANatomy "
              f"folder, or turn them off with {SHIPPED_ENV}=0)", stacklevel=4)
        return None


def load(kind: str, key: str):
    """``(arrays, meta)`` of a complete, verified entry, or ``None``. A damaged entry is moved
    aside (one :class:`CacheWarning`) and counts as a miss: it is never served."""
    hit = _load(kind, key)
    return None if hit is None else hit[:2]


_MISS = object()


def _lookup(kind: str, key: str, decode: Callable[[dict, dict], T]):
    hit = _load(kind, key)
    if hit is None:
        return _MISS
    try:
        return decode(hit[0], hit[1])
    except Exception as e:                      # noqa: BLE001 - an entry of an older layout: compute again
        if hit[2] is None:                      # a shipped result: left in place, not served
            _warn(f"GANatomy: a shipped {kind} result ({key}) cannot be decoded ({type(e).__name__}: {e}); "
                  f"it is computed instead", stacklevel=3)
        else:
            _discard(_dir(kind, key), kind, key, f"cannot be decoded ({type(e).__name__}: {e})", hit[2])
        return _MISS


def lookup(kind: str, key: str, decode: Callable[[dict, dict], T]) -> T | None:
    """``decode(arrays, meta)`` of the verified entry, or None. An entry that is damaged, or that
    ``decode`` cannot read (an older layout), is moved aside with one :class:`CacheWarning` and
    counts as a miss: :func:`cached` without the compute, for callers that save on their own."""
    if not callable(decode):
        raise ArgumentTypeError(f"cache lookup: decode must be callable; got {type(decode).__name__}",
                                fix="pass a function as decode")
    value = _lookup(kind, key, decode)
    return None if value is _MISS else value


def _encode(arrays, meta, compress: bool = False) -> dict[str, bytes]:
    """The three files of an entry for ``arrays`` and ``meta`` (checked before anything is written);
    ``compress``: deflated (the shipped results), else stored (fastest to read and write)."""
    if not isinstance(arrays, Mapping):
        raise ArgumentTypeError(f"cache arrays must be a dict of name -> array; got {type(arrays).__name__}",
                                fix="encode the result as ({'name': array, ...}, {meta})")
    if not isinstance(meta, Mapping):
        raise ArgumentTypeError(f"cache meta must be a dict; got {type(meta).__name__}",
                                fix="encode the result as ({'name': array, ...}, {meta})")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, value in arrays.items():
            if not isinstance(name, str) or not name:
                raise ArgumentTypeError(f"cache array names must be non-empty strings; got {name!r}",
                                        fix="name every array with text")
            a = np.asarray(value)
            if a.dtype.hasobject:
                raise ArgumentTypeError(
                    f"cache array {name!r} holds Python objects ({a.dtype}); entries store plain arrays only",
                    fix="convert it to numbers or text (np.asarray(..., dtype=float) or dtype=str), or put it in meta")
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    npz = buf.getvalue()
    meta_bytes = json.dumps(dict(meta), indent=1, default=str).encode()
    return {ARRAYS: npz, META: meta_bytes}


def _manifest(kind: str, key: str, files: dict[str, bytes]) -> bytes:
    return json.dumps({"format": FORMAT, "kind": kind, "key": key, "sha256": {n: _sha(b) for n, b in files.items()},
                       "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1).encode()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _publish(d: Path, kind: str, key: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` into a temporary directory and rename it to ``d``; the first complete entry
    wins. Raises OSError when the cache cannot be written."""
    d.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(d.parent, lambda n: n.startswith(".tmp-"))
    tmp = d.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.mkdir(tmp)
    try:
        for name, data in {**files, MANIFEST: _manifest(kind, key, files)}.items():
            _write_bytes(tmp / name, data)
        last = None
        for _ in range(8):
            try:
                os.rename(tmp, d)              # fails while a complete entry (a non-empty folder) is there
                return d
            except OSError as e:
                if e.errno in _UNWRITABLE:
                    raise
                last = e
            try:
                _read_entry(d, kind, key)      # a racing writer's complete entry: it stays, ours goes
                return d
            except FileNotFoundError:
                continue                       # moved aside meanwhile: try again
            except _Damaged as bad:            # a damaged entry in the way: move it aside, try again
                if not _discard(d, kind, key, bad.reason, bad.ino):
                    raise OSError(errno.EACCES, f"a damaged entry is in the way and cannot be moved aside ({d})")
        raise last
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def save(kind: str, key: str, arrays: dict, meta: dict, *, strict: bool = False,
         compress: bool = False) -> Path | None:
    """Store an entry atomically (checksummed); returns its folder. If another writer completed
    the same key first, its entry stays and this one is discarded (a key names one result).

    A cache folder that cannot be written (read-only, full, no permission) gives one
    :class:`CacheWarning` and None, or :class:`CacheError` with ``strict=True``."""
    d = _dir(kind, key)
    files = _encode(arrays, meta, check_bool("compress", compress))
    try:
        return _publish(d, kind, key, files)
    except OSError as e:
        err = CacheError(f"the cache folder {cache_root()} cannot be written ({e.strerror or e}), so the "
                         f"{kind} result was not stored", fix=FIX_UNWRITABLE)
        if strict:
            raise err from e
        _warn(f"GANatomy cache: {err}; it is returned but will be computed again next time", stacklevel=3)
        return None


def cached(kind: str, key: str | None, compute: Callable[[], T], encode: Callable[[T], tuple[dict, dict]],
           decode: Callable[[dict, dict], T], *, enabled: bool = True, cached_only: bool = False) -> T | None:
    """Key -> lookup -> compute on a miss -> atomic save, for every cached result.

    ``key`` None (or ``enabled`` False) computes without the cache. ``encode(result)`` gives
    ``(arrays, meta)``, ``decode(arrays, meta)`` the result back. ``cached_only=True`` returns
    the stored result or None, computing nothing. A damaged entry, or one ``decode`` cannot
    read, is moved aside and computed again; a cache that cannot be written still returns the
    result (one :class:`CacheWarning`)."""
    for name, fn in (("compute", compute), ("encode", encode), ("decode", decode)):
        if not callable(fn):
            raise ArgumentTypeError(f"cached: {name} must be callable; got {type(fn).__name__}",
                                    fix=f"pass a function as {name}")
    use = enabled and key is not None
    if use:
        _dir(kind, key)
        value = _lookup(kind, key, decode)
        if value is not _MISS:
            return value
    if cached_only:
        return None
    result = compute()
    if use:
        save(kind, key, *encode(result))
    return result


class ArrayCodec:
    """A result that is one array, stored under ``name`` (with ``meta`` beside it)."""

    def __init__(self, name: str, meta: dict | None = None, as_tensor: bool = False):
        self.name, self.meta, self.as_tensor = name, dict(meta or {}), as_tensor

    def to_arrays(self, value) -> tuple[dict, dict]:
        v = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return {self.name: v}, self.meta

    def from_arrays(self, arrays: dict, meta: dict):
        v = arrays[self.name]
        return torch.from_numpy(np.array(v)) if self.as_tensor else v


class FrameCodec:
    """A result that is a table (pandas DataFrame) of number and text columns; its ``attrs`` are
    kept, and a table read back has ``attrs["stored"] = True``."""

    def to_arrays(self, df) -> tuple[dict, dict]:
        arrays = {}
        for i, col in enumerate(df.columns):
            x = df[col].to_numpy()
            arrays[f"c{i}"] = x if x.dtype.kind in "biuf" else np.array([str(v) for v in x])
        attrs = {k: v for k, v in df.attrs.items() if k != "stored"}
        return arrays, {"columns": [str(c) for c in df.columns], "attrs": attrs}

    def from_arrays(self, arrays: dict, meta: dict):
        import pandas as pd  # pandas only when a table is read (the cache module loads at start-up)
        df = pd.DataFrame({col: arrays[f"c{i}"].tolist() if arrays[f"c{i}"].dtype.kind == "U" else arrays[f"c{i}"]
                           for i, col in enumerate(meta["columns"])})
        df.attrs.update(meta.get("attrs", {}), stored=True)
        return df


def measure(kind: str, version: str, *, models: dict, parts: dict, compute: Callable[[], T], codec,
            cache: bool = True, cached_only: bool = False) -> T | None:
    """The one cache convention of every measurement: key -> lookup -> compute on a miss -> atomic save.

    ``models`` ({"generator": G, "segmenter": S, ...}): their :func:`model_fingerprint` enter the
    key; a model without one turns the cache off for this call (computed, never stored).
    ``parts``: every other argument the result depends on. ``codec``: the result type, or an object,
    with ``to_arrays(result)`` -> ``(arrays, meta)`` and ``from_arrays(arrays, meta)`` (a class's
    ``to_arrays`` is its method). ``cache=False`` computes without the cache; ``cached_only=True``
    returns the stored result or None, computing nothing."""
    check_bool("cache", cache)
    check_bool("cached_only", cached_only)
    if not hasattr(codec, "from_arrays") or not hasattr(codec, "to_arrays"):
        raise ArgumentTypeError(f"measure: codec must have to_arrays and from_arrays; got {type(codec).__name__}",
                                fix="give the result class, ArrayCodec(name) or FrameCodec()")
    prints = {name: model_fingerprint(m) for name, m in models.items()}
    key = None if not all(prints.values()) else make_key(kind=kind, version=version, **prints, **parts)
    encode = (lambda r: r.to_arrays()) if isinstance(codec, type) else codec.to_arrays
    return cached(kind, key, compute, encode, codec.from_arrays, enabled=cache, cached_only=cached_only)

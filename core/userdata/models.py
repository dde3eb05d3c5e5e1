"""The registry of models users add: which name points at which file, who added it and when,
and the files uploaded for them. Storage only: nothing here builds or inspects a model
(:mod:`core.models.catalog` checks a candidate, loading it once safely, then stores it here).

A name added by a user belongs to whoever added it first: a second add under that name is
refused unless the caller asks to replace it (``replace=True``), and removing one must be
confirmed. Registry entries say who added them and when (``added_by``: the adding session's
display name, no accounts; ``added_at``: UTC, ISO 8601). The check of a name and the write
of the registry happen under one lock (a thread lock for the dashboard's sessions, a file
lock for separate processes), so two sessions adding one name at once cannot both win.
Uploads are stored under a name made of the model name's safe form and the content's hash:
a second upload never writes over the file another name (or an earlier upload) points at.

The registry is ``models_dir()/registry.json`` (``cache/models/`` by default,
``$GANATOMY_MODELS`` to move it), the uploads ``models_dir()/uploads/`` under a quota
(``$GANATOMY_UPLOAD_QUOTA_MB``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.base.cache import atomic_write_text, cache_root, file_lock, remove_stale, safe_name
from core.base.errors import ArgumentTypeError, BudgetError, CacheError, CheckpointError, InputError, UnknownNameError
from core.base.sharing import ADMINS_ENV, may_change

__all__ = [
    "DEFAULT_QUOTA_MB",
    "MAX_NAME",
    "MODELS_ENV",
    "QUOTA_ENV",
    "Staged",
    "check_added_by",
    "check_free",
    "check_name",
    "check_switch",
    "check_upload",
    "models_dir",
    "remove_entry",
    "stage_upload",
    "store_entry",
    "store_upload",
    "timestamp",
    "upload_quota_bytes",
    "uploads_dir",
    "user_models",
    "who_added",
]

MODELS_ENV = "GANATOMY_MODELS"


def models_dir() -> Path:
    """Where model weights live: published ones, the registry of added ones and their uploads."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else cache_root() / "models"


def uploads_dir() -> Path:
    return models_dir() / "uploads"


_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"   # an ASCII letter or digit, then those, '_', '.', '-' (no look-alikes)
_NAME = re.compile(rf"^{_PART}(/{_PART})?$")
MAX_NAME = 100                         # characters of a model name (and of a display name)
_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_NAME_FIX = "choose a name such as 'lab/church-v2'"


# ----------------------------------------------------------------------------- the registry file

def _registry_file() -> Path:
    return models_dir() / "registry.json"


def _registry_locked():
    """Held while the registry is read, checked and rewritten (one thread, one process at a time)."""
    d = models_dir()
    return file_lock(d / ".registry.lock", "the models folder",
                     f"make {d} writable or set ${MODELS_ENV} to a folder that is")


def _write_registry(data: dict) -> None:
    atomic_write_text(_registry_file(), json.dumps(data, indent=1, sort_keys=True))


def user_models() -> dict[str, dict]:
    """Models added with :func:`core.models.register` / :func:`core.models.add_upload`: name ->
    {kind, arch, path, options, added_by, added_at} (entries written before names had owners lack
    the last two)."""
    f = _registry_file()
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and "path" in v} if isinstance(data, dict) else {}


def who_added(entry: dict) -> str:
    """'added by ann at 2025-01-01T12:00:00+00:00' (or what of it the entry has)."""
    by = entry.get("added_by") or "an unknown user"
    at = entry.get("added_at")
    return f"added by {by}" + (f" at {at}" if at else "")


def timestamp() -> str:
    """The time an entry is added: UTC, ISO 8601, whole seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- checks

def check_name(name) -> None:
    """Refuse ``name`` unless it has the form of a model name (the caller refuses built-in names)."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"model name must be a string, got {type(name).__name__} {name!r}", fix=_NAME_FIX)
    if not name.strip():
        raise InputError("model name is empty", fix=_NAME_FIX)
    if len(name) > MAX_NAME:
        raise InputError(f"model name {name[:40]!r}… is {len(name)} characters long; at most {MAX_NAME}",
                         fix="choose a shorter name such as 'lab/church-v2'")
    if not _NAME.match(name) or ".." in name:
        raise InputError(f"model name {name!r} must be ASCII letters, digits, '.', '-', '_' with at most one "
                         "'/', each part starting with a letter or digit (no '..')", fix=_NAME_FIX)


def check_switch(value, what: str) -> bool:
    """``value`` when it is True or False (``replace=``); refused otherwise."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be True or False, got {value!r}", fix=f"pass {what}=True or {what}=False")
    return value


def check_added_by(added_by) -> str:
    """The adder's display name, its spaces collapsed ('anonymous' when empty)."""
    if not isinstance(added_by, str):
        raise ArgumentTypeError(f"added_by must be a string (your display name), got {type(added_by).__name__}",
                                fix="pass added_by='your name'")
    added_by = " ".join(added_by.split())
    if len(added_by) > MAX_NAME:
        raise InputError(f"added_by is {len(added_by)} characters long; at most {MAX_NAME}",
                         fix="give a shorter display name")
    return added_by or "anonymous"


def _refuse_taken(name: str, entry: dict) -> None:
    raise InputError(f"model name {name!r} is taken: {who_added(entry)} ({entry.get('arch')} {entry.get('kind')} "
                     f"from {entry.get('path')})",
                     fix="choose another name, or pass replace=True (on the Models page: tick 'Replace') "
                         "to replace it for everyone")


def check_free(name: str, replace: bool) -> None:
    """Refuse ``name`` when it is taken and ``replace`` was not asked (early: before any work;
    :func:`store_entry` checks again under the lock)."""
    if not replace and (entry := user_models().get(name)) is not None:
        _refuse_taken(name, entry)


# ----------------------------------------------------------------------------- adding and removing

def store_entry(name: str, entry: dict, replace: bool,
                place: Callable[[], Callable[[], None] | None] | None = None) -> dict:
    """Write ``entry`` under ``name``: the check that the name is free and the write are one
    step under the registry lock (``place()``, run in that step once the name is free, puts an
    upload's file in place and returns how to take it back, should the registry not be written). A
    replaced entry is kept in ``entry['replaced']`` (its file stays where it is: sessions that loaded
    it still refer to it); only its owner (or an admin) may replace it. Returns the entry written."""
    with _registry_locked():
        data = user_models()
        old = data.get(name)
        if old is not None:
            if not replace:
                _refuse_taken(name, old)
            if not may_change(old.get("added_by"), entry.get("added_by")):
                raise InputError(f"model name {name!r} was {who_added(old)}: only they (or an admin, {ADMINS_ENV}) can "
                                 f"replace it; you are {entry.get('added_by')!r}",
                                 fix="choose another name (or ask its owner)")
            history = list(old.get("replaced", []))
            history.append({k: old.get(k) for k in ("path", "arch", "kind", "options", "added_by", "added_at")})
            entry = {**entry, "replaced": history}
        undo = place() if place is not None else None
        data[name] = entry
        try:
            _write_registry(data)
        except OSError as e:                   # registry and file are one step: no orphan file is left
            if undo is not None:
                undo()
            raise CacheError(f"model {name!r} could not be registered: the registry in {models_dir()} cannot be "
                             f"written ({e.strerror or e}); nothing was added",
                             fix=f"free some disk space, or set ${MODELS_ENV} to a writable folder") from None
    return entry


def remove_entry(name: str, confirm: str | None = None, *, by: str | None = None) -> None:
    """Remove the user-added model ``name`` (the caller refuses built-in names), confirmed by
    ``confirm=name``; with ``by`` only its owner or an admin may. When the entry had replaced an
    earlier one, that one is the name's model again; the removed entry's upload file is deleted
    when nothing refers to it any more."""
    with _registry_locked():
        data = user_models()
        if name not in data:
            raise UnknownNameError(f"model name {name!r} is not a user-added model; added: "
                                   f"{', '.join(data) or 'none'}", fix="give the name of one of those")
        if by is not None and not may_change(data[name].get("added_by"), by):
            raise InputError(f"model {name!r} was {who_added(data[name])}: only they (or an admin, {ADMINS_ENV}) can "
                             f"unregister it; you are {by!r}", fix="ask its owner")
        if confirm != name:
            raise InputError(f"unregister({name!r}) removes a model {who_added(data[name])} for everyone; "
                             f"it was not confirmed (confirm={confirm!r})",
                             fix=f"confirm by passing confirm={name!r} (on the Models page: type the name)")
        gone = data.pop(name)
        history = list(gone.get("replaced", []))
        if history:                              # the model it replaced is the name's model again
            back = history.pop()
            data[name] = {**back, "options": back.get("options") or {}, **({"replaced": history} if history else {})}
        _write_registry(data)
        kept = {e.get("path") for e in data.values()} | {h.get("path") for e in data.values()
                                                         for h in e.get("replaced", [])}
    up = uploads_dir().resolve()
    for p in {gone.get("path")} - kept:
        if p and Path(p).parent == up:
            Path(p).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- uploads

QUOTA_ENV = "GANATOMY_UPLOAD_QUOTA_MB"
DEFAULT_QUOTA_MB = 4096


def upload_quota_bytes() -> int:
    """The most the uploads folder may hold (``$GANATOMY_UPLOAD_QUOTA_MB``, default 4096 MB)."""
    raw = os.environ.get(QUOTA_ENV, "")
    try:
        mb = float(raw) if raw else DEFAULT_QUOTA_MB
    except ValueError:
        raise InputError(f"${QUOTA_ENV} must be a number of megabytes, got {raw!r}",
                         fix=f"set it to e.g. {DEFAULT_QUOTA_MB}, or unset it") from None
    return int(max(mb, 0) * 2 ** 20)


def check_upload(data, filename) -> str:
    """Refuse an upload that is not a non-empty weights file given as bytes or a binary file
    object; returns its suffix."""
    if not isinstance(filename, str):
        raise ArgumentTypeError(f"filename must be a string (the uploaded file's name), got "
                                f"{type(filename).__name__}", fix="pass the file's name, e.g. 'church.pt'")
    suffix = Path(filename).suffix.lower()
    if suffix not in _SUFFIXES:
        raise CheckpointError(f"upload {filename!r}: expected a .pt, .pth, .bin, .ckpt or .safetensors weights file",
                              fix="upload the weights file itself (suffix .pt, .pth, .bin, .ckpt or .safetensors)")
    if not (isinstance(data, (bytes, bytearray, memoryview)) or _is_stream(data)):
        raise ArgumentTypeError(f"data of upload {filename!r} must be bytes or a binary file opened for reading, "
                                f"got {type(data).__name__}",
                                fix="pass the file's contents, e.g. Path('church.pt').read_bytes(), or the open file")
    if not _size(data):
        raise CheckpointError(f"upload {filename!r} is empty (0 bytes)",
                              fix="upload the file again; the copy that arrived has no contents")
    return suffix


@dataclass(frozen=True)
class Staged:
    """An upload written to a temporary file in the uploads folder, not yet registered."""
    path: Path                         # the temporary file (a candidate to inspect)
    digest: str                        # its SHA-256
    suffix: str
    filename: str                      # the name the user uploaded it under


@contextlib.contextmanager
def stage_upload(data, filename: str) -> Iterator[Staged]:
    """Write the upload ``data`` (bytes, or a file object read from where it stands, streamed in
    chunks: never a second whole copy in memory) to a temporary file in the uploads folder, with
    the quota checked and the bytes written in one step under the quota's lock; the temporary file
    is gone when the block ends, whether :func:`store_upload` placed it or not."""
    suffix = check_upload(data, filename)
    size = _size(data)
    up = uploads_dir()
    tmp = up / f".upload-{uuid.uuid4().hex[:12]}{suffix}"
    try:
        up.mkdir(parents=True, exist_ok=True)
        # the quota is checked and the bytes written in one step under its lock: of two uploads that
        # only fit one at a time, the second sees the first's file and is refused
        with file_lock(up.parent / ".uploads-quota.lock", "the uploads folder",
                       f"make {up} writable or set ${MODELS_ENV} to a folder that is"):
            remove_stale(up, lambda n: n.startswith(".upload-"))    # killed uploads: never counted for good
            _check_quota(up, size, filename)
            digest = _write_chunks(tmp, data)             # streamed: no second copy in memory
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CacheError(f"upload {filename!r} cannot be stored in {up} ({e.strerror or e})",
                         fix=f"free some disk space or set ${MODELS_ENV} to a writable folder") from None
    try:
        yield Staged(tmp, digest, suffix, filename)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def store_upload(name: str, staged: Staged, entry: dict, replace: bool) -> dict:
    """Register ``staged`` (checked by the caller) as ``name`` with ``entry`` (kind, arch, options,
    added_by, added_at): the file is renamed into place, named by ``name`` and the content's hash,
    in the same step as the registry is written (see :func:`store_entry`; the first of two racing adds
    wins). Returns the entry written, with its path, filename and sha256."""
    final = uploads_dir() / f"{safe_name(name)}-{staged.digest[:16]}{staged.suffix}"
    entry = {**entry, "path": str(final.resolve()), "filename": Path(staged.filename).name[:MAX_NAME],
             "sha256": staged.digest}

    def place():
        if final.is_file() and _sha256(final) == staged.digest:
            staged.path.unlink()      # these very bytes are already stored: leave that file untouched
            return None
        os.replace(staged.path, final)
        return lambda: final.unlink(missing_ok=True)
    return store_entry(name, entry, replace, place)


def _check_quota(up: Path, size: int, filename: str) -> None:
    used = sum(f.stat().st_size for f in up.glob("*") if f.is_file()) if up.is_dir() else 0
    quota = upload_quota_bytes()
    if used + size > quota:
        raise BudgetError(f"upload {filename!r} ({size / 2 ** 20:.1f} MB) would take the uploads folder {up} past "
                          f"its quota: {used / 2 ** 20:.1f} of {quota / 2 ** 20:.0f} MB are used",
                          fix=f"unregister models nobody needs (Models page), or raise ${QUOTA_ENV}")


def _is_stream(data) -> bool:
    return all(callable(getattr(data, m, None)) for m in ("read", "seek", "tell"))


def _size(data) -> int:
    if not _is_stream(data):
        return len(data)
    at = data.tell()
    data.seek(0, os.SEEK_END)
    size = data.tell() - at
    data.seek(at)
    return size


def _write_chunks(tmp: Path, data, chunk: int = 1 << 20) -> str:
    """Write ``data`` (bytes, or a file object read from where it stands) to ``tmp`` in chunks,
    never holding another whole copy; returns its SHA-256."""
    h = hashlib.sha256()
    view = memoryview(data) if not _is_stream(data) else None
    with open(tmp, "wb") as f:
        i = 0
        while True:
            block = view[i:i + chunk] if view is not None else data.read(chunk)
            if not len(block):
                break
            h.update(block)
            f.write(block)
            i += len(block)
    return h.hexdigest()


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

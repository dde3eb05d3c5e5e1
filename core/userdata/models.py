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

Every removal can be undone: :func:`remove_entry` writes an event (who removed which entry, when)
into the registry's log of removals, in the same atomic write as the entry goes, and moves the
entry's upload file (renamed, never copied) into ``models_dir()/trash/``. :func:`removed_models`
lists them, :func:`restore_entry` puts one back (its owner or an admin; refused when the name has
been taken since or the file is gone), :func:`purge_entry` deletes it for good, and
:func:`sweep_trash` deletes the removals older than ``$GANATOMY_TRASH_DAYS`` (default 30) and what
killed runs left: it runs when a model is registered and when the server starts, never on a read.
The trash counts against the uploads quota.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.base.cache import STALE_SECONDS, atomic_write_text, cache_root, file_lock, remove_stale, safe_name
from core.base.errors import ArgumentTypeError, BudgetError, CacheError, CheckpointError, InputError, UnknownNameError
from core.base.sharing import ADMINS_ENV, may_change

__all__ = [
    "DEFAULT_QUOTA_MB",
    "DEFAULT_TRASH_DAYS",
    "MAX_NAME",
    "MODELS_ENV",
    "QUOTA_ENV",
    "TRASH_ENV",
    "Staged",
    "check_added_by",
    "check_free",
    "check_name",
    "check_switch",
    "check_upload",
    "looks_like",
    "models_dir",
    "purge_entry",
    "remove_entry",
    "removed_models",
    "restore_entry",
    "stage_upload",
    "store_entry",
    "store_upload",
    "sweep_trash",
    "timestamp",
    "trash_days",
    "trash_dir",
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


def trash_dir() -> Path:
    """Where the upload files of removed models wait, until restored or deleted for good."""
    return models_dir() / "trash"


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


_REMOVED = "~removed"       # the registry's log of removals (never a model name: names start with a letter or digit)
_HISTORY = ("path", "arch", "kind", "options", "added_by", "added_at")


def _write_registry(data: dict) -> None:
    atomic_write_text(_registry_file(), json.dumps(data, indent=1, sort_keys=True))


def _read_registry() -> dict:
    """The registry file as it is: entries by name, and the log of removals under ``_REMOVED``."""
    try:
        data = json.loads(_registry_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _entries(data: dict) -> dict[str, dict]:
    return {k: v for k, v in data.items() if k != _REMOVED and isinstance(v, dict) and "path" in v}


def _removals(data: dict) -> list[dict]:
    log = data.get(_REMOVED)
    return [e for e in log if isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("name"), str)
            and isinstance(e.get("entry"), dict) and "path" in e["entry"]] if isinstance(log, list) else []


def user_models() -> dict[str, dict]:
    """Models added with :func:`core.models.register` / :func:`core.models.add_upload`: name ->
    {kind, arch, path, options, added_by, added_at} (entries written before names had owners lack
    the last two)."""
    return _entries(_read_registry())


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


def looks_like(a: str, b: str) -> bool:
    """Whether two names look alike: the same but for upper/lower case and '.', '-', '_'
    ('lab/Church.' and 'lab/church'); a second user's name beside the first would pass for it."""
    skeleton = lambda n: re.sub(r"[._\-]", "", n.casefold())      # noqa: E731
    return skeleton(a) == skeleton(b)


def _refuse_look_alike(name: str, entries: dict[str, dict]) -> None:
    twin = next((k for k in entries if k != name and looks_like(k, name)), None)
    if twin is not None:
        raise InputError(f"model name {name!r} looks like {twin!r} ({who_added(entries[twin])}): names that differ "
                         "only in upper/lower case or in '.', '-', '_' are refused, so that no model passes for "
                         "another",
                         fix=f"choose a name that differs from {twin!r} in its letters or digits")


def check_free(name: str, replace: bool) -> None:
    """Refuse ``name`` when it is taken and ``replace`` was not asked, or when it looks like another
    model's name (early: before any work; :func:`store_entry` checks again under the lock)."""
    entries = user_models()
    if not replace and (entry := entries.get(name)) is not None:
        _refuse_taken(name, entry)
    _refuse_look_alike(name, entries)


# ----------------------------------------------------------------------------- adding and removing

def store_entry(name: str, entry: dict, replace: bool,
                place: Callable[[], Callable[[], None] | None] | None = None) -> dict:
    """Write ``entry`` under ``name``: the check that the name is free and the write are one
    step under the registry lock (``place()``, run in that step once the name is free, puts an
    upload's file in place and returns how to take it back, should the registry not be written). A
    replaced entry is kept in ``entry['replaced']`` (its file stays where it is: sessions that loaded
    it still refer to it); only its owner (or an admin) may replace it. Returns the entry written."""
    with _registry_locked():
        data = _read_registry()
        old = _entries(data).get(name)
        _refuse_look_alike(name, _entries(data))
        if old is not None:
            if not replace:
                _refuse_taken(name, old)
            if not may_change(old.get("added_by"), entry.get("added_by")):
                raise InputError(f"model name {name!r} was {who_added(old)}: only they (or an admin, {ADMINS_ENV}) can "
                                 f"replace it; you are {entry.get('added_by')!r}",
                                 fix="choose another name (or ask its owner)")
            history = list(old.get("replaced", []))
            history.append({k: old.get(k) for k in _HISTORY})
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


def remove_entry(name: str, confirm: str | None = None, *, by: str | None = None) -> dict:
    """Remove the user-added model ``name`` (the caller refuses built-in names), confirmed by
    ``confirm=name``; with ``by`` only its owner or an admin may. When the entry had replaced an
    earlier one, that one is the name's model again. The removal is an event that can be undone
    (:func:`restore_entry`): it is logged in the same atomic write of the registry as the entry goes,
    and the entry's upload file, when nothing else refers to it, is then moved (renamed, not copied)
    into :func:`trash_dir`. Returns the event (as :func:`removed_models` lists it)."""
    with _registry_locked():
        data = _read_registry()
        entries = _entries(data)
        if name not in entries:
            raise UnknownNameError(f"model name {name!r} is not a user-added model; added: "
                                   f"{', '.join(entries) or 'none'}", fix="give the name of one of those")
        if by is not None and not may_change(entries[name].get("added_by"), by):
            raise InputError(f"model {name!r} was {who_added(entries[name])}: only they (or an admin, {ADMINS_ENV}) "
                             f"can unregister it; you are {by!r}", fix="ask its owner")
        if confirm != name:
            raise InputError(f"unregister({name!r}) removes a model {who_added(entries[name])} for everyone; "
                             f"it was not confirmed (confirm={confirm!r})",
                             fix=f"confirm by passing confirm={name!r} (on the Models page: type the name)")
        gone = dict(data.pop(name))
        history = list(gone.pop("replaced", []))
        came_back = None
        if history:                              # the model it replaced is the name's model again
            back = history.pop()
            data[name] = {**back, "options": back.get("options") or {}, **({"replaced": history} if history else {})}
            came_back = _identity(data[name])
        event_id = uuid.uuid4().hex[:12]
        src = Path(gone["path"])
        move = _is_upload(src) and src.is_file() and _resolved(src) not in _referenced(data)
        trash = trash_dir() / f"{event_id}-{src.name}" if move and _trash_usable() else None
        event = {"id": event_id, "name": name, "entry": gone, "removed_by": " ".join(str(by or "").split()),
                 "removed_at": timestamp(), "trash": str(trash) if trash else None, "came_back": came_back}
        data[_REMOVED] = [*_removals(data), event]
        try:
            _write_registry(data)             # first the event, then the file: a kill in between leaves the
        except OSError as e:                  # file where the event finds it (the next sweep moves it)
            raise CacheError(f"model {name!r} was not unregistered: the registry in {models_dir()} cannot be "
                             f"written ({e.strerror or e}); nothing changed",
                             fix=f"free some disk space, or set ${MODELS_ENV} to a writable folder") from None
        if trash is not None:
            with contextlib.suppress(OSError):
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, trash)
    return _row(event, by)


# ----------------------------------------------------------------------------- the trash of removals

TRASH_ENV = "GANATOMY_TRASH_DAYS"
DEFAULT_TRASH_DAYS = 30
_TRASHED = re.compile(r"^[0-9a-f]{12}-.")          # a trash file's name: its removal's id, then the upload's name
_STORED = re.compile(r"^[^.].*-[0-9a-f]{16}\.(pt|pth|bin|ckpt|safetensors)$")   # an upload: model name, hash
_DAY = 86400.0


def trash_days() -> float:
    """How long removed models stay restorable (``$GANATOMY_TRASH_DAYS``, default 30 days; 0: until
    the next sweep)."""
    raw = os.environ.get(TRASH_ENV, "").strip()
    try:
        days = float(raw) if raw else float(DEFAULT_TRASH_DAYS)
    except ValueError:
        days = float("nan")
    if not days >= 0:
        raise InputError(f"${TRASH_ENV} must be a number of days >= 0, got {raw!r}",
                         fix=f"set it to e.g. {DEFAULT_TRASH_DAYS}, or unset it")
    return days


def _resolved(p) -> str:
    return str(Path(p).resolve())


def _is_upload(p: Path) -> bool:
    """Whether ``p`` is a file of the uploads folder (a file added by path is the user's: never moved)."""
    return Path(_resolved(p)).parent == Path(_resolved(uploads_dir()))


def _trash_usable() -> bool:
    """A trash folder that is a link (or not a folder) is never written into or swept."""
    t = trash_dir()
    return not t.is_symlink() and (t.is_dir() or not t.exists())


def _in_trash(p) -> bool:
    """Whether ``p`` is a file of a usable trash folder (a removal's ``trash`` naming anything else,
    a hand-edited registry, is never moved or deleted)."""
    return bool(p) and _trash_usable() and Path(_resolved(p)).parent == Path(_resolved(trash_dir())) \
        and not Path(p).is_symlink()


def _identity(entry: dict) -> dict:
    return {k: entry.get(k) for k in ("path", "added_by", "added_at")}


def _referenced(data: dict, removals: list[dict] | None = None) -> set[str]:
    """The files (resolved) that entries, the entries they replaced and ``removals`` refer to."""
    out = set()
    for e in _entries(data).values():
        out.add(_resolved(e["path"]))
        out.update(_resolved(h["path"]) for h in e.get("replaced", []) if isinstance(h, dict) and h.get("path"))
    for ev in removals or []:
        out.add(_resolved(ev["entry"]["path"]))
        if ev.get("trash"):
            out.add(_resolved(ev["trash"]))
    return out


def _event_file(ev: dict) -> Path | None:
    """Where a removal's file is now: in the trash, else where it was (a removal whose move did not
    happen, or a model added by path), else None (gone)."""
    trash, where = ev.get("trash"), ev["entry"]["path"]
    if trash and _in_trash(trash) and Path(trash).is_file():
        return Path(trash)
    return Path(where) if Path(where).exists() else None


def _removed_at(ev: dict) -> float:
    try:
        return datetime.fromisoformat(ev.get("removed_at", "")).timestamp()
    except (TypeError, ValueError):
        return 0.0                           # an unreadable time counts as old


def _row(ev: dict, by: str | None) -> dict:
    e = ev["entry"]
    f = _event_file(ev)
    size = 0
    if f is not None and ev.get("trash") and f == Path(ev["trash"]):
        with contextlib.suppress(OSError):
            size = f.stat().st_size
    return {"id": ev["id"], "name": ev["name"], "kind": e.get("kind"), "arch": e.get("arch"),
            "added_by": e.get("added_by") or "", "added_at": e.get("added_at") or "",
            "removed_by": ev.get("removed_by") or "", "removed_at": ev.get("removed_at") or "",
            "file": e.get("path"), "file_here": f is not None, "trash_bytes": size,
            "may_undo": by is None or may_change(e.get("added_by"), by)}


def removed_models(by: str | None = None) -> list[dict]:
    """The removals that can still be undone, newest first: id, name, kind, arch, added_by,
    added_at, removed_by, removed_at, file (where it was), file_here (False: the file is gone,
    it cannot be restored), trash_bytes (what it holds in the trash) and may_undo (whether ``by``
    may restore or delete it: its owner or an admin; True without ``by``). Reading never purges."""
    rows = [_row(ev, by) for ev in _removals(_read_registry())]
    return sorted(rows, key=lambda r: (r["removed_at"], r["id"]), reverse=True)


def _find_removal(data: dict, event_id) -> dict:
    if not isinstance(event_id, str):
        raise ArgumentTypeError(f"event_id must be a string (the id removed_models() gives), got "
                                f"{type(event_id).__name__}", fix="pass the 'id' of a row of removed_models()")
    ev = next((e for e in _removals(data) if e["id"] == event_id), None)
    if ev is None:
        raise UnknownNameError(f"removal {event_id!r} is not in the trash: it was restored or deleted for good "
                               "already, or never happened", fix="see removed_models() (on the Models page: "
                               "'Recently removed') for what can be restored")
    return ev


def _check_owner(ev: dict, by: str | None, what: str) -> None:
    owner = ev["entry"].get("added_by")
    if by is not None and not may_change(owner, by):
        raise InputError(f"model {ev['name']!r} was {who_added(ev['entry'])}: only they (or an admin, {ADMINS_ENV}) "
                         f"can {what} its removal; you are {by!r}", fix="ask its owner")


def restore_entry(event_id: str, *, by: str | None = None) -> dict:
    """Undo the removal ``event_id`` (an ``id`` of :func:`removed_models`): the entry is the
    name's model again and its file is moved back from the trash. With ``by`` only the entry's owner
    or an admin may. Refused when the name has been taken since (unless by the very model the
    removed one had replaced: then the removed one replaces it again) or when the file is gone.
    Of two restores of one removal, exactly one wins. Returns the entry restored."""
    with _registry_locked():
        data = _read_registry()
        ev = _find_removal(data, event_id)
        _check_owner(ev, by, "undo")
        name, entry = ev["name"], dict(ev["entry"])
        now = _entries(data).get(name)
        _refuse_look_alike(name, _entries(data))
        if now is not None:
            if ev.get("came_back") is None or _identity(now) != ev["came_back"]:
                raise InputError(f"model {name!r} cannot be restored: the name has been taken again since it was "
                                 f"removed ({who_added(now)})",
                                 fix="unregister that model first (or ask its owner), or delete this removal for good")
            entry["replaced"] = [*now.get("replaced", []), {k: now.get(k) for k in _HISTORY}]
        src = _event_file(ev)
        dest = Path(entry["path"])
        if src is None:
            raise CacheError(f"model {name!r} cannot be restored: its file {dest.name} is gone (deleted from the "
                             "trash or from where it was)",
                             fix="delete this removal for good, and add the model again from its file")
        moved = src != dest
        if moved:
            if not _is_upload(dest):          # out of the trash only back into the uploads
                raise CacheError(f"model {name!r} cannot be restored: its file belongs in {dest.parent}, which is not "
                                 "the uploads folder", fix="delete this removal for good, and add the model again")
            if dest.exists():
                raise CacheError(f"model {name!r} cannot be restored: another file is now at {dest}",
                                 fix="delete this removal for good, and add the model again from its file")
            try:
                os.replace(src, dest)
            except OSError as e:
                raise CacheError(f"model {name!r} cannot be restored: its file cannot be moved back to {dest.parent} "
                                 f"({e.strerror or e}); nothing changed",
                                 fix=f"make {dest.parent} writable, or set ${MODELS_ENV} to a writable "
                                     "folder") from None
        data[name] = entry
        data[_REMOVED] = [e for e in _removals(data) if e["id"] != event_id]
        try:
            _write_registry(data)
        except OSError as e:
            if moved:
                with contextlib.suppress(OSError):
                    os.replace(dest, src)
            raise CacheError(f"model {name!r} was not restored: the registry in {models_dir()} cannot be written "
                             f"({e.strerror or e}); nothing changed",
                             fix=f"free some disk space, or set ${MODELS_ENV} to a writable folder") from None
    return entry


def _drop(removed: list[dict], keep: dict) -> list[str]:
    """Delete the files of ``removed`` that nothing in ``keep`` (the registry being written) refers
    to: their trash files, and their uploads not yet moved. A model added by path keeps its file."""
    refs = _referenced(keep, _removals(keep))
    gone = []
    for ev in removed:
        for p in (ev.get("trash"), ev["entry"]["path"]):
            if not p or _resolved(p) in refs:
                continue
            q = Path(p)
            if (p == ev.get("trash") and _in_trash(q)) or (p == ev["entry"]["path"] and _is_upload(q)):
                with contextlib.suppress(OSError):
                    if q.is_file() and not q.is_symlink():
                        q.unlink()
                        gone.append(str(q))
    return gone


def purge_entry(event_id: str, *, by: str | None = None) -> None:
    """Delete the removal ``event_id`` for good: it can no longer be restored, and its upload file
    is deleted (a model added by path keeps its file, which is the user's). With ``by`` only the
    entry's owner or an admin may."""
    with _registry_locked():
        data = _read_registry()
        ev = _find_removal(data, event_id)
        _check_owner(ev, by, "delete")
        data[_REMOVED] = [e for e in _removals(data) if e["id"] != event_id]
        try:
            _write_registry(data)
        except OSError as e:
            raise CacheError(f"removal of {ev['name']!r} was not deleted: the registry in {models_dir()} cannot be "
                             f"written ({e.strerror or e})",
                             fix=f"free some disk space, or set ${MODELS_ENV} to a writable folder") from None
        _drop([ev], data)


def sweep_trash(now: float | None = None) -> dict:
    """The trash's upkeep, run when a model is registered and when the server starts (never on a
    read): removals older than :func:`trash_days` are deleted for good; a removal whose file a
    killed run left in the uploads is moved into the trash; files of the trash that no removal
    refers to, and uploads that no entry or removal refers to (a registration killed between its
    file and its registry write), older than an hour, are deleted. Returns what it did:
    {purged: [names], moved: n, orphans: n}."""
    now = time.time() if now is None else now
    cutoff = now - trash_days() * _DAY
    done = {"purged": [], "moved": 0, "orphans": 0}
    if not _registry_file().exists() and not uploads_dir().exists():
        return done
    with _registry_locked():
        data = _read_registry()
        log = _removals(data)
        old = [e for e in log if _removed_at(e) < cutoff]
        if old:
            data[_REMOVED] = [e for e in log if e not in old]
            try:
                _write_registry(data)
            except OSError:
                return done                  # a full or read-only disk: the next sweep tries again
            _drop(old, data)
            done["purged"] = [e["name"] for e in old]
        kept = _removals(data)
        usable = _trash_usable()
        for ev in kept:                      # a kill between the event and the move: finish the move
            src, trash = Path(ev["entry"]["path"]), ev.get("trash")
            if trash and _in_trash(trash) and not Path(trash).exists() and _is_upload(src) and src.is_file() \
                    and _resolved(src) not in _referenced(data):
                with contextlib.suppress(OSError):
                    Path(trash).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, trash)
                    done["moved"] += 1
        refs = _referenced(data, kept)
        folders = ([(uploads_dir(), _STORED)] if not uploads_dir().is_symlink() else []) \
            + ([(trash_dir(), _TRASHED)] if usable else [])
        for folder, pattern in folders:
            try:
                found = list(os.scandir(folder))
            except OSError:
                continue
            for f in found:
                if not pattern.match(f.name):
                    continue             # only files this store names (staged .upload-* are the quota's to sweep)
                try:
                    if not f.is_file(follow_symlinks=False) or _resolved(f.path) in refs \
                            or now - f.stat(follow_symlinks=False).st_mtime < STALE_SECONDS:
                        continue
                    os.unlink(f.path)
                    done["orphans"] += 1
                except OSError:
                    pass
    return done


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


def _folder_bytes(folder: Path) -> int:
    """The bytes of the files in ``folder`` (links not followed)."""
    total = 0
    try:
        found = list(os.scandir(folder))
    except OSError:
        return 0
    for f in found:
        with contextlib.suppress(OSError):
            if f.is_file(follow_symlinks=False):
                total += f.stat(follow_symlinks=False).st_size
    return total


def _check_quota(up: Path, size: int, filename: str) -> None:
    """The uploads and the trash of removed models together must stay within the quota."""
    live = _folder_bytes(up)
    trash = _folder_bytes(trash_dir()) if _trash_usable() else 0
    quota = upload_quota_bytes()
    used = live + trash
    if used + size <= quota:
        return
    mb = lambda b: f"{b / 2 ** 20:.1f}"         # noqa: E731
    held = (f", {mb(trash)} MB of them by removed models kept in the trash so they can be restored "
            f"(for {trash_days():g} days, ${TRASH_ENV})" if trash else "")
    fix = (f"unregister models nobody needs (Models page), or raise ${QUOTA_ENV}")
    if trash and live + size <= quota:       # the trash is the reason
        fix = ("delete removed models for good (Models page, 'Recently removed': Delete for good), "
               f"or raise ${QUOTA_ENV}")
    elif trash:
        fix = (f"unregister models nobody needs and delete them for good (Models page), or raise ${QUOTA_ENV}")
    raise BudgetError(f"upload {filename!r} ({mb(size)} MB) would take the uploads folder {up} past its quota: "
                      f"{mb(used)} of {quota / 2 ** 20:.0f} MB are used{held}", fix=fix)


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

"""The catalog of models known by name: the published ones (registered by their architecture
modules with :func:`register_published`) and the ones users add (:func:`register`,
:func:`add_upload`), with where their weights live and whether they are here.

Weights live in :func:`models_dir` (``cache/models/`` by default, ``$GANATOMY_MODELS`` to move
it). Nothing here downloads (:mod:`core.models.downloads` does, only when asked) and nothing
loads a model except to check a file a user adds (safely, see :mod:`core.base.checkpoints`).

    import core
    core.models.status()                                # every model: available or where to put it
    core.models.register("lab/mygan", "/data/mygan.pt")   # listed and loadable by name
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.base.cache import atomic_write_text, cache_root, file_lock, remove_stale, safe_name
from core.base.errors import (
    ArgumentTypeError,
    BudgetError,
    CacheError,
    CheckpointError,
    GanatomyError,
    InputError,
    UnknownNameError,
)
from core.base.packages import packages_ok
from core.base.protocols import check_generator, check_segmenter
from core.base.sharing import ADMINS_ENV, may_change
from core.models.registry import (
    architectures,
    detect_arch,
    kind_of,
    load_generator_file,
    load_segmenter_path,
    read_state,
)

__all__ = [
    "MAX_NAME",
    "MODELS_ENV",
    "PUBLISHED",
    "Source",
    "Spec",
    "add_upload",
    "available_generators",
    "available_segmenters",
    "is_known",
    "missing_message",
    "models_dir",
    "register",
    "register_published",
    "spec",
    "status",
    "unregister",
    "user_models",
]

MODELS_ENV = "GANATOMY_MODELS"


def models_dir() -> Path:
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else cache_root() / "models"


ROOTS_ENV = "GANATOMY_MODEL_ROOTS"


def model_roots() -> list[Path]:
    """The folders a shared server's "Add by path" may read (``$GANATOMY_MODEL_ROOTS``, folders
    separated by ``os.pathsep``; default: the models folder), resolved."""
    env = os.environ.get(ROOTS_ENV, "")
    roots = [Path(r).expanduser() for r in env.split(os.pathsep) if r.strip()] or [models_dir()]
    return [r.resolve() for r in roots]


def _within(p: Path, roots) -> bool:
    return any(p == r or r in p.parents for r in roots)


# ----------------------------------------------------------------------------- published models

@dataclass(frozen=True)
class Source:
    filename: str
    url: str | None = None
    sha256: str | None = None          # full hex digest or its leading part (>= 8 digits)


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str                          # "generator" | "segmenter"
    arch: str                          # a registered architecture (core.models.registry)
    files: tuple[Source, ...]          # the first is the weights file
    folder: str | None = None          # files live in models_dir()/folder (hub snapshots)
    hub_id: str | None = None
    aliases: tuple[str, ...] = ()      # other accepted names of the weights file
    options: dict = field(default_factory=dict)
    description: str = ""
    how_to_get: str = ""
    packages: tuple[str, ...] = ()     # pip names the loader needs beyond requirements.txt
    origin: str = ""                   # where the weights come from when there is no URL

    @property
    def target(self) -> Path:
        """Where the weights file (or folder) goes."""
        return models_dir() / (self.folder or self.files[0].filename)

    def find(self) -> Path | None:
        """The local weights file (or complete folder), or None."""
        d = models_dir()
        if self.folder:
            f = d / self.folder
            ok = (f / "config.json").is_file() and any((f / w).is_file()
                                                       for w in ("model.safetensors", "pytorch_model.bin"))
            return f if ok else None
        for name in (self.files[0].filename, *self.aliases):
            if (d / name).is_file():
                return d / name
        return None

    @property
    def source(self) -> str:
        if self.hub_id:
            return f"https://huggingface.co/{self.hub_id}"
        return self.files[0].url or self.origin


PUBLISHED: dict[str, Spec] = {}


def register_published(s: Spec) -> Spec:
    """Add a published model to the catalog (each architecture module registers its own)."""
    if s.kind not in ("generator", "segmenter"):
        raise InputError(f"Spec.kind must be 'generator' or 'segmenter', got {s.kind!r}")
    PUBLISHED[s.name] = s
    return s


# ----------------------------------------------------------------------------- user models
#
# A name added by a user belongs to whoever added it first: a second add under that name is
# refused unless the caller asks to replace it (``replace=True``), and removing one must be
# confirmed. Registry entries say who added them and when (``added_by``: the adding session's
# display name, no accounts; ``added_at``: UTC, ISO 8601). The check of a name and the write
# of the registry happen under one lock (a thread lock for the dashboard's sessions, a file
# lock for separate processes), so two sessions adding one name at once cannot both win.
# Uploads are stored under a name made of the model name's safe form and the content's hash:
# a second upload never writes over the file another name (or an earlier upload) points at.

_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"   # an ASCII letter or digit, then those, '_', '.', '-' (no look-alikes)
_NAME = re.compile(rf"^{_PART}(/{_PART})?$")
MAX_NAME = 100                         # characters of a model name (and of a display name)
_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_NAME_FIX = "choose a name such as 'lab/church-v2'"


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
    """Models added with :func:`register` / :func:`add_upload`: name -> {kind, arch, path,
    options, added_by, added_at} (entries written before names had owners lack the last two)."""
    f = _registry_file()
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and "path" in v} if isinstance(data, dict) else {}


def _who(entry: dict) -> str:
    """'added by ann at 2025-01-01T12:00:00+00:00' (or what of it the entry has)."""
    by = entry.get("added_by") or "an unknown user"
    at = entry.get("added_at")
    return f"added by {by}" + (f" at {at}" if at else "")


def _check_new_name(name) -> None:
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
    if name.startswith("toyworld/") or name in PUBLISHED or name == "toyworld":
        raise InputError(f"model name {name!r} is a built-in model name",
                         fix="choose another name, such as 'lab/" + name.split("/")[-1] + "-mine'")


def _check_flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be True or False, got {value!r}", fix=f"pass {what}=True or {what}=False")
    return value


def _check_added_by(added_by) -> str:
    if not isinstance(added_by, str):
        raise ArgumentTypeError(f"added_by must be a string (your display name), got {type(added_by).__name__}",
                                fix="pass added_by='your name'")
    added_by = " ".join(added_by.split())
    if len(added_by) > MAX_NAME:
        raise InputError(f"added_by is {len(added_by)} characters long; at most {MAX_NAME}",
                         fix="give a shorter display name")
    return added_by or "anonymous"


def _refuse_taken(name: str, entry: dict) -> None:
    raise InputError(f"model name {name!r} is taken: {_who(entry)} ({entry.get('arch')} {entry.get('kind')} "
                     f"from {entry.get('path')})",
                     fix="choose another name, or pass replace=True (on the Models page: tick 'Replace') "
                         "to replace it for everyone")


def _check_free(name: str, replace: bool) -> None:
    """Refuse ``name`` when it is taken and ``replace`` was not asked (early: before any work)."""
    if not replace and (entry := user_models().get(name)) is not None:
        _refuse_taken(name, entry)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _store(name: str, entry: dict, replace: bool, place=None) -> dict:
    """Write ``entry`` under ``name``: the check that the name is free and the write are one
    step under the registry lock (``place()``, run in that step once the name is free, puts an
    upload's file in place and returns how to take it back, should the registry not be written). A
    replaced entry is kept in ``entry['replaced']`` (its file stays where it is: sessions that loaded
    it still refer to it)."""
    with _registry_locked():
        data = user_models()
        old = data.get(name)
        if old is not None:
            if not replace:
                _refuse_taken(name, old)
            if not may_change(old.get("added_by"), entry.get("added_by")):
                raise InputError(f"model name {name!r} was {_who(old)}: only they (or an admin, {ADMINS_ENV}) can "
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


def _inspect(p: Path, arch: str | None, opts: dict) -> str:
    """Load a candidate once (safely) and check it meets its protocol; returns its arch."""
    if arch is not None:
        kind_of(arch)
    if arch is None:
        arch = next(iter(architectures("segmenter"))) if p.is_dir() else detect_arch(read_state(p))
    if kind_of(arch) == "generator":
        check_generator(load_generator_file(p, arch=arch, **opts), probe=False)
    else:
        check_segmenter(load_segmenter_path(p, arch=arch, **opts))
    return arch


def _check_options(options) -> dict:
    if options is not None and not isinstance(options, dict):
        raise ArgumentTypeError(f"options must be a dict of loader options, got {type(options).__name__}",
                                fix="pass options={'truncation': 0.7} or leave it out")
    return dict(options or {})


def register(name: str, path, arch: str | None = None, options: dict | None = None, check: bool = True, *,
             replace: bool = False, added_by: str = "", roots=None) -> dict:
    """Add a model by local path under ``name`` (listed by :func:`status`, loadable by name).

    ``arch``: one of ``progan``, ``stylegan2``, ``biggan``, ``dcgan``, ``segformer`` (detected when None).
    With ``check`` (default) the model is loaded once first, so a broken file is refused with
    the reason. A ``name`` someone already added is refused (saying who added it and when)
    unless ``replace=True``. ``added_by``: the adder's display name, shown beside the model.
    ``roots``: folders the path must lie in, after symlinks are resolved (a shared server passes
    :func:`model_roots`); a path outside them or not there gets one message, which tells neither
    apart, and nothing outside them is opened. Returns the registry entry."""
    _check_new_name(name)
    replace = _check_flag(replace, "replace")
    added_by = _check_added_by(added_by)
    opts = _check_options(options)
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointError(f"path {path!r} is not a file path",
                              fix="give the path of a weights file (or of a SegFormer folder)")
    _check_free(name, replace)
    p = Path(path).expanduser().resolve()
    if roots is not None:
        allowed = [Path(r).expanduser().resolve() for r in roots]
        if not _within(p, allowed) or not p.exists():
            raise CheckpointError(f"{path} is not a model file this server may read (it is not there, or not "
                                  f"under the model folders)",
                                  fix=f"put the file under {', '.join(str(r) for r in allowed)} (the server's "
                                      f"{ROOTS_ENV}), or upload it")
    if not p.exists():
        raise CheckpointError(f"{p} does not exist: give the path of a weights file (or a SegFormer folder)")
    if arch is not None:
        kind_of(arch)
    if check or arch is None:
        arch = _inspect(p, arch, opts)
    entry = {"kind": kind_of(arch), "arch": arch, "path": str(p), "options": opts,
             "added_by": added_by, "added_at": _now()}
    return _store(name, entry, replace)


def unregister(name: str, confirm: str | None = None, *, by: str | None = None) -> None:
    """Remove the user-added model ``name`` for everyone. It must be confirmed by giving the
    name again (``confirm=name``): a model belongs to whoever added it, and with ``by`` (the
    remover's display name; the dashboard always gives it) only its owner or an admin
    (``$GANATOMY_ADMINS``) may remove it. When the entry had replaced an earlier one, that one is
    the name's model again (a replacement never deletes the first owner's file); the removed
    entry's upload file is deleted when nothing refers to it any more."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"model name must be a string, got {type(name).__name__} {name!r}",
                                fix="give the name of a model you added, e.g. unregister('lab/x', confirm='lab/x')")
    if name.startswith("toyworld/") or name in PUBLISHED or name == "toyworld":
        raise InputError(f"model name {name!r} is a built-in model; only user-added models can be unregistered",
                         fix="give the name of a model added with register() or add_upload()")
    with _registry_locked():
        data = user_models()
        if name not in data:
            raise UnknownNameError(f"model name {name!r} is not a user-added model; added: "
                                   f"{', '.join(data) or 'none'}", fix="give the name of one of those")
        if by is not None and not may_change(data[name].get("added_by"), by):
            raise InputError(f"model {name!r} was {_who(data[name])}: only they (or an admin, {ADMINS_ENV}) can "
                             f"unregister it; you are {by!r}", fix="ask its owner")
        if confirm != name:
            raise InputError(f"unregister({name!r}) removes a model {_who(data[name])} for everyone; "
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
    up = (models_dir() / "uploads").resolve()
    for p in {gone.get("path")} - kept:
        if p and Path(p).parent == up:
            Path(p).unlink(missing_ok=True)


def _check_upload(data, filename) -> str:
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


def _as_users_file(e: GanatomyError, tmp: Path, filename: str) -> GanatomyError:
    """``e`` with the temporary file's path replaced by the name the user uploaded."""
    def sub(text: str) -> str:
        for s in sorted({str(tmp.resolve()), str(tmp), tmp.name}, key=len, reverse=True):
            text = text.replace(s, filename)
        return text
    return type(e)(sub(str(e)), fix=sub(e.fix))


def add_upload(data, filename: str, name: str, arch: str | None = None,
               options: dict | None = None, *, replace: bool = False, added_by: str = "") -> dict:
    """Store uploaded weights under ``models_dir()/uploads/`` and register them as ``name``.

    ``data``: the file's bytes, or the file object itself (Streamlit's uploaded file, an open
    file), streamed to disk in chunks under the uploads quota's lock, never copied whole.

    The bytes go to a temporary file that is loaded (safely) and checked before it is renamed
    into place; anything broken — truncated, another architecture, a pickle with code — is
    refused with a :class:`CheckpointError` saying why (naming ``filename``, the user's file),
    and nothing is kept. A ``name`` someone already added is refused, saying who added it and
    when, unless ``replace=True``; the stored file is named by the content's hash, so the other
    user's weights stay byte for byte as they were either way."""
    _check_new_name(name)
    replace = _check_flag(replace, "replace")
    added_by = _check_added_by(added_by)
    opts = _check_options(options)
    suffix = _check_upload(data, filename)
    _check_free(name, replace)
    if arch is not None:
        kind_of(arch)
    size = _size(data)
    up = models_dir() / "uploads"
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
    final = up / f"{safe_name(name)}-{digest[:16]}{suffix}"
    try:
        try:
            arch = _inspect(tmp, arch, opts)
        except GanatomyError as e:
            raise _as_users_file(e, tmp, filename) from None
        entry = {"kind": kind_of(arch), "arch": arch, "path": str(final.resolve()), "options": opts,
                 "added_by": added_by, "added_at": _now(), "filename": Path(filename).name[:MAX_NAME],
                 "sha256": digest}

        def place():
            if final.is_file() and _sha256(final) == digest:
                tmp.unlink()         # these very bytes are already stored: leave that file untouched
                return None
            os.replace(tmp, final)
            return lambda: final.unlink(missing_ok=True)
        return _store(name, entry, replace, place)      # the first of two racing adds wins
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


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


def _check_quota(up: Path, size: int, filename: str) -> None:
    used = sum(f.stat().st_size for f in up.glob("*") if f.is_file()) if up.is_dir() else 0
    quota = upload_quota_bytes()
    if used + size > quota:
        raise BudgetError(f"upload {filename!r} ({size / 2 ** 20:.1f} MB) would take the uploads folder {up} past "
                          f"its quota: {used / 2 ** 20:.1f} of {quota / 2 ** 20:.0f} MB are used",
                          fix=f"unregister models nobody needs (Models page), or raise ${QUOTA_ENV}")


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- status

def spec(name: str) -> Spec:
    if name not in PUBLISHED:
        raise InputError(f"unknown published model {name!r}; published: {', '.join(PUBLISHED)}")
    return PUBLISHED[name]


def is_known(name: str, kind: str | None = None) -> bool:
    if name in PUBLISHED:
        return kind is None or PUBLISHED[name].kind == kind
    entry = user_models().get(name)
    return entry is not None and (kind is None or entry.get("kind") == kind)


def status() -> list[dict]:
    """Every published and user-added model: name, kind, arch, available, path (found, or where
    to put it), source (URL / hub page; for a user's model who added it and when), packages (and
    whether they import), description, origin ('published' / 'user'), added_by, added_at."""
    rows = []
    for s in PUBLISHED.values():
        found = s.find()
        rows.append({"name": s.name, "kind": s.kind, "arch": s.arch, "available": found is not None,
                     "path": str(found or s.target), "source": s.source,
                     "downloadable": bool(s.hub_id or s.files[0].url), "packages": list(s.packages),
                     "packages_ok": packages_ok(s.packages), "description": s.description,
                     "origin": "published", "added_by": "", "added_at": ""})
    for name, e in user_models().items():
        a = architectures().get(e.get("arch"))
        pk = list(a.packages) if a else []
        rows.append({"name": name, "kind": e.get("kind"), "arch": e.get("arch"),
                     "available": Path(e["path"]).exists(), "path": e["path"], "source": _who(e),
                     "downloadable": False, "packages": pk, "packages_ok": packages_ok(pk),
                     "description": f"{e.get('arch')} {e.get('kind')} added from {e['path']}", "origin": "user",
                     "added_by": e.get("added_by") or "", "added_at": e.get("added_at") or ""})
    return rows


def available_segmenters() -> list[str]:
    """Names of the published or user-added segmenters whose weights are on this machine."""
    return [r["name"] for r in status() if r["kind"] == "segmenter" and r["available"]]


def available_generators() -> list[str]:
    """Names of the published or user-added generators whose weights are on this machine
    (each loads with ``core.load_generator(name)``)."""
    return [r["name"] for r in status() if r["kind"] == "generator" and r["available"]]


def missing_message(s: Spec) -> str:
    d = models_dir()
    if s.folder:
        what = (f"put the files of hub model {s.hub_id} (config.json and model.safetensors or "
                f"pytorch_model.bin, plus preprocessor_config.json) in the folder {d / s.folder}")
    else:
        alias = f" (or as {', '.join(s.aliases)})" if s.aliases else ""
        what = f"put {s.files[0].filename}{alias} in {d}"
        if len(s.files) > 1:
            what += f" (with {', '.join(f.filename for f in s.files[1:])} beside it if you have it)"
    get = s.how_to_get or (f"it is published at {s.source}" if s.source else "")
    if not (s.hub_id or s.files[0].url):
        get += " (there is no download address: GANatomy cannot fetch it for you)"
    full = s.hub_id or all(len(f.sha256 or "") == 64 for f in s.files if f.url)
    if not (s.hub_id or s.files[0].url):
        dl = ""
    elif full:
        loader = "load_segmenter" if s.kind == "segmenter" else "load_generator"
        dl = (f"; or have GANatomy download it (only on request): core.{loader}({s.name!r}, download=True) "
              f"or `python -m core fetch {s.name}`")
    else:        # no full SHA-256 in the catalog: the download needs the user's digest or trust
        dl = (f"; or have GANatomy download it (only on request; the catalog has no full SHA-256 for it): "
              f"`python -m core fetch {s.name} --sha256 FULL_DIGEST` or `--trust` "
              f"(core.models.fetch({s.name!r}, download=True, trust=True))")
    return (f"{s.name}: the weights are not on this machine. To use it, {what}"
            + (f". {get[0].upper() + get[1:]}" if get else "") + dl + ".")



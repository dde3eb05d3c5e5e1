"""The catalog of models known by name: the published ones (registered by their architecture
modules with :func:`register_published`) and the ones users add (:func:`register`,
:func:`add_upload`), with where their weights live and whether they are here.

Weights live in :func:`models_dir` (``cache/models/`` by default, ``$GANATOMY_MODELS`` to move
it). The registry of added models and their uploads are user data, stored by
:mod:`core.userdata.models`; this module checks a candidate before it is stored. Nothing here
downloads (:mod:`core.models.downloads` does, only when asked) and nothing loads a model except
to check a file a user adds (safely, see :mod:`core.base.checkpoints`).

    import core
    core.models.status()                                # every model: available or where to put it
    core.models.register("lab/mygan", "/data/mygan.pt")   # listed and loadable by name
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.base.errors import ArgumentTypeError, CheckpointError, GanatomyError, InputError
from core.base.packages import packages_ok
from core.base.protocols import check_generator, check_segmenter
from core.models.registry import (
    architectures,
    detect_arch,
    kind_of,
    load_generator_file,
    load_segmenter_path,
    read_state,
)
from core.userdata.models import (
    MAX_NAME,
    MODELS_ENV,
    check_added_by,
    check_free,
    check_name,
    check_switch,
    check_upload,
    looks_like,
    models_dir,
    purge_entry,
    remove_entry,
    removed_models,
    restore_entry,
    stage_upload,
    store_entry,
    store_upload,
    sweep_trash,
    timestamp,
    trash_days,
    user_models,
    who_added,
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
    "check_new_name",
    "is_known",
    "missing_message",
    "models_dir",
    "purge",
    "register",
    "register_published",
    "removed_models",
    "restore",
    "spec",
    "status",
    "sweep_trash",
    "trash_days",
    "unregister",
    "user_models",
]

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
# The registry's storage (names and who owns them, the lock, uploads and their quota) is user data:
# core.userdata.models. What needs this floor stays here: a candidate is loaded once (safely) and
# checked against its protocol before it is stored.

def _check_new_name(name) -> None:
    check_name(name)
    if name.startswith("toyworld/") or name == "toyworld" or any(looks_like(name, p) for p in PUBLISHED) \
            or looks_like(name.split("/")[0], "toyworld"):
        raise InputError(f"model name {name!r} is (or looks like) a built-in model name",
                         fix="choose another name, such as 'lab/" + name.split("/")[-1] + "-mine'")


def check_new_name(name, replace: bool = False) -> None:
    """Refuse, before any work, a name a user model cannot take: malformed, built-in, or another user's
    (unless ``replace``)."""
    _check_new_name(name)
    check_free(name, check_switch(replace, "replace"))


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
    replace = check_switch(replace, "replace")
    added_by = check_added_by(added_by)
    opts = _check_options(options)
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointError(f"path {path!r} is not a file path",
                              fix="give the path of a weights file (or of a SegFormer folder)")
    sweep_trash()                        # removals past their days, what killed runs left
    check_free(name, replace)
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
             "added_by": added_by, "added_at": timestamp()}
    return store_entry(name, entry, replace)


def unregister(name: str, confirm: str | None = None, *, by: str | None = None) -> dict:
    """Remove the user-added model ``name`` for everyone. It must be confirmed by giving the
    name again (``confirm=name``): a model belongs to whoever added it, and with ``by`` (the
    remover's display name; the dashboard always gives it) only its owner or an admin
    (``$GANATOMY_ADMINS``) may remove it. When the entry had replaced an earlier one, that one is
    the name's model again (a replacement never deletes the first owner's file). The removal can be
    undone: its upload file goes to the trash (:func:`removed_models`, :func:`restore`, :func:`purge`;
    kept ``$GANATOMY_TRASH_DAYS`` days, counted in the uploads quota). Returns the removal's row
    of :func:`removed_models` (its ``id`` restores it)."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"model name must be a string, got {type(name).__name__} {name!r}",
                                fix="give the name of a model you added, e.g. unregister('lab/x', confirm='lab/x')")
    if name.startswith("toyworld/") or name in PUBLISHED or name == "toyworld":
        raise InputError(f"model name {name!r} is a built-in model; only user-added models can be unregistered",
                         fix="give the name of a model added with register() or add_upload()")
    return remove_entry(name, confirm, by=by)


def restore(event_id: str, *, by: str | None = None) -> dict:
    """Undo a removal (the ``id`` of a row of :func:`removed_models`): the model is listed and
    loadable under its name again, from the same file. With ``by`` only the model's owner or an
    admin may. Refused, saying why, when the name has been taken since or the file is gone.
    Returns the registry entry."""
    return restore_entry(event_id, by=by)


def purge(event_id: str, *, by: str | None = None) -> None:
    """Delete a removal for good (its upload file too; a model added by path keeps its file).
    With ``by`` only the model's owner or an admin may."""
    purge_entry(event_id, by=by)


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
    replace = check_switch(replace, "replace")
    added_by = check_added_by(added_by)
    opts = _check_options(options)
    check_upload(data, filename)
    sweep_trash()                        # before the quota is checked: removals past their days go
    check_free(name, replace)
    if arch is not None:
        kind_of(arch)
    with stage_upload(data, filename) as staged:          # under the quota; removed whatever happens
        try:
            arch = _inspect(staged.path, arch, opts)
        except GanatomyError as e:
            raise _as_users_file(e, staged.path, filename) from None
        entry = {"kind": kind_of(arch), "arch": arch, "options": opts, "added_by": added_by, "added_at": timestamp()}
        return store_upload(name, staged, entry, replace)      # the first of two racing adds wins


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
                     "available": Path(e["path"]).exists(), "path": e["path"], "source": who_added(e),
                     "downloadable": False, "packages": pk, "packages_ok": packages_ok(pk),
                     "description": (f"rewrite of {e.get('base')} at {e.get('layer')} ({e.get('method')})"
                                     if e.get("arch") == "rewrite" else
                                     f"{e.get('arch')} {e.get('kind')} added from {e['path']}"), "origin": "user",
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



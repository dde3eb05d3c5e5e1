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

import hashlib
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.base.cache import atomic_write_text, cache_root
from core.base.errors import CheckpointError, InputError
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

__all__ = ["models_dir", "Spec", "Source", "PUBLISHED", "register_published", "status", "register",
           "unregister", "add_upload", "user_models", "is_known", "spec", "missing_message",
           "available_segmenters", "available_generators", "MODELS_ENV"]

MODELS_ENV = "GANATOMY_MODELS"


def models_dir() -> Path:
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else cache_root() / "models"


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

_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_REGISTRY_LOCK = threading.Lock()      # dashboard sessions (threads) adding models at once


def _registry_file() -> Path:
    return models_dir() / "registry.json"


def user_models() -> dict[str, dict]:
    """Models added with :func:`register` / :func:`add_upload`: name -> {kind, arch, path, options}."""
    f = _registry_file()
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and "path" in v} if isinstance(data, dict) else {}


def _check_new_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"model name {name!r} must be letters, digits, '.', '-', '_' with at most one "
                         "'/' (e.g. 'lab/church-v2')")
    if name.startswith("toyworld/") or name in PUBLISHED or name == "toyworld":
        raise InputError(f"{name!r} is a built-in model name; choose another")


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


def register(name: str, path, arch: str | None = None, options: dict | None = None, check: bool = True) -> dict:
    """Add a model by local path under ``name`` (listed by :func:`status`, loadable by name).

    ``arch``: one of ``progan``, ``stylegan2``, ``biggan``, ``segformer`` (detected when None).
    With ``check`` (default) the model is loaded once first, so a broken file is refused with
    the reason. Returns the registry entry."""
    _check_new_name(name)
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise CheckpointError(f"{p} does not exist: give the path of a weights file (or a SegFormer folder)")
    opts = dict(options or {})
    if arch is not None:
        kind_of(arch)
    if check or arch is None:
        arch = _inspect(p, arch, opts)
    entry = {"kind": kind_of(arch), "arch": arch, "path": str(p), "options": opts}
    with _REGISTRY_LOCK:
        data = user_models()
        data[name] = entry
        atomic_write_text(_registry_file(), json.dumps(data, indent=1, sort_keys=True))
    return entry


def unregister(name: str) -> None:
    with _REGISTRY_LOCK:
        data = user_models()
        if name not in data:
            raise InputError(f"{name!r} is not a user-added model; added: {', '.join(data) or 'none'}")
        del data[name]
        atomic_write_text(_registry_file(), json.dumps(data, indent=1, sort_keys=True))


def add_upload(data: bytes, filename: str, name: str, arch: str | None = None,
               options: dict | None = None) -> dict:
    """Store uploaded weights under ``models_dir()/uploads/`` and register them as ``name``.

    The bytes go to a temporary file that is loaded (safely) and checked before it is renamed
    into place; anything broken — truncated, another architecture, a pickle with code — is
    refused with a :class:`CheckpointError` saying why, and nothing is kept."""
    _check_new_name(name)
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".pt", ".pth", ".bin", ".ckpt", ".safetensors"):
        raise CheckpointError(f"upload {filename!r}: expected a .pt, .pth, .bin, .ckpt or .safetensors weights file")
    if not data:
        raise CheckpointError(f"upload {filename!r} is empty (0 bytes)")
    up = models_dir() / "uploads"
    up.mkdir(parents=True, exist_ok=True)
    # readable, and one file per name: 'lab/x' and 'lab_x' must not overwrite each other's weights
    safe = re.sub(r"[^\w.\-]", "_", name) + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    final = up / f"{safe}{suffix}"
    tmp = up / f".{safe}.part-{uuid.uuid4().hex[:8]}{suffix}"
    tmp.write_bytes(data)
    try:
        arch = _inspect(tmp, arch, dict(options or {}))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    return register(name, final, arch=arch, options=options, check=False)


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
    to put it), source (URL / hub page), packages (and whether they import), description."""
    rows = []
    for s in PUBLISHED.values():
        found = s.find()
        rows.append({"name": s.name, "kind": s.kind, "arch": s.arch, "available": found is not None,
                     "path": str(found or s.target), "source": s.source,
                     "downloadable": bool(s.hub_id or s.files[0].url), "packages": list(s.packages),
                     "packages_ok": packages_ok(s.packages), "description": s.description,
                     "origin": "published"})
    for name, e in user_models().items():
        a = architectures().get(e.get("arch"))
        pk = list(a.packages) if a else []
        rows.append({"name": name, "kind": e.get("kind"), "arch": e.get("arch"),
                     "available": Path(e["path"]).exists(), "path": e["path"], "source": "added by a user",
                     "downloadable": False, "packages": pk, "packages_ok": packages_ok(pk),
                     "description": f"{e.get('arch')} {e.get('kind')} added from {e['path']}", "origin": "user"})
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
    dl = (f"; or have GANatomy download it (only on request): core.load_generator({s.name!r}, download=True) "
          f"or `python -m core fetch {s.name}`" if (s.hub_id or s.files[0].url) else "")
    if s.kind == "segmenter" and dl:
        dl = dl.replace("load_generator", "load_segmenter")
    return (f"{s.name}: the weights are not on this machine. To use it, {what}"
            + (f". {get[0].upper() + get[1:]}" if get else "") + dl + ".")



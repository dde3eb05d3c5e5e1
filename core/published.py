"""Published models (the GAN Dissection ProGANs, StyleGAN2, BigGAN, ADE20K SegFormers) and
models users add: where their weights live, how to get them, how to load them safely.

Weights come from a local file, or — only when asked (``download=True``,
``python -m core fetch NAME``, the dashboard's *Download* button) and a network exists — from
the model's URL or hub id into :func:`models_dir` (``cache/models/`` by default,
``$GANATOMY_MODELS`` to move it). A download is streamed to a temporary file, verified against
the SHA-256 the registry knows (the full digest, or the 8-digit prefix the ``torch.hub`` file
names carry; an unknown digest is recorded beside the file) and renamed into place, so an
interrupted or corrupt download never becomes a model. Nothing downloads at import.

Every loader reads weights with ``torch.load(weights_only=True)`` (or ``safetensors``) and
checks every key and shape; optional packages (``transformers``, ``pytorch-pretrained-biggan``)
are imported only when their model is loaded, and a missing one is named with the ``pip``
command that installs it.

    import core
    core.published.status()                             # every model: available or where to put it
    G = core.load_generator("progan/churchoutdoor")       # from cache/models/, or a clear error
    G = core.load_generator("progan/churchoutdoor", download=True)
    G = core.load_generator("/data/stylegan2-church-config-f.pt", truncation=0.7)   # arch detected
    seg = core.load_segmenter("segformer/ade20k-b0")      # or a folder / weights path
    core.published.register("lab/mygan", "/data/mygan.pt")   # listed and loadable by name
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cache import cache_root
from .checkpoints import CheckpointError, load_checkpoint, load_state_into

__all__ = ["models_dir", "Spec", "Source", "PUBLISHED", "MissingPackageError", "MissingWeightsError",
           "DownloadError", "require", "status", "fetch", "download_url", "load", "load_generator_file",
           "load_segmenter_path", "register", "unregister", "add_upload", "user_models", "detect_arch",
           "is_known", "spec", "ARCHS", "missing_message", "sha256_file", "available_segmenters",
           "available_generators"]

MODELS_ENV = "GANATOMY_MODELS"
ARCHS = {"generator": ("progan", "stylegan2", "biggan"), "segmenter": ("segformer",)}
KIND_OF = {a: k for k, archs in ARCHS.items() for a in archs}


class MissingPackageError(CheckpointError):
    """An optional package a model needs is not installed (the message gives the pip command)."""


class MissingWeightsError(CheckpointError):
    """A registry model's weights are not on this machine (the message says where to put them)."""


class DownloadError(CheckpointError):
    """A requested download failed or did not match its checksum (nothing was kept)."""


def models_dir() -> Path:
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else cache_root() / "models"


def require(module: str, pip: str, what: str):
    """Import an optional package, or raise :class:`MissingPackageError` naming the install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(
            f"{what} require the optional package `{pip}`, which cannot be imported here ({e}). "
            f"Install it with `pip install {pip}` (or every optional package: "
            "`pip install -r requirements-optional.txt`).") from None


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Source:
    filename: str
    url: str | None = None
    sha256: str | None = None          # full hex digest or its leading part (>= 8 digits)


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str                          # "generator" | "segmenter"
    arch: str                          # see ARCHS
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


_LSUN = {"bedroom": "d8a89ff1", "churchoutdoor": "7e701dd5", "conferenceroom": "21e85882",
         "diningroom": "3aa0ab80", "kitchen": "67f1e16c", "livingroom": "5ef336dd", "restaurant": "b8578299"}
_GANDISSECT = "http://gandissect.csail.mit.edu/models/"

_BIGGAN_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan/"

_SG2 = {"church": ("LSUN church", 256), "cat": ("LSUN cat", 256), "horse": ("LSUN horse", 256),
        "ffhq": ("FFHQ faces", 1024)}

_SEGFORMER = {"b0": "512-512", "b2": "512-512", "b4": "512-512", "b5": "640-640"}


def _build_registry() -> dict[str, Spec]:
    reg: dict[str, Spec] = {}
    for d, h in _LSUN.items():
        fn = f"proggan_{d}-{h}.pth"
        reg[f"progan/{d}"] = Spec(
            f"progan/{d}", "generator", "progan", (Source(fn, _GANDISSECT + fn, h),),
            aliases=(f"{d}_lsun.pth",),
            description=f"Progressive GAN, LSUN {d} 256x256 (Karras et al. 2018): a generator the "
                        "GAN Dissection paper analysed")
    for key, (what, size) in _SG2.items():
        fn = f"stylegan2-{key}-config-f.pt"
        reg[f"stylegan2/{key}"] = Spec(
            f"stylegan2/{key}", "generator", "stylegan2", (Source(fn),), options={"truncation": 1.0},
            origin=f"NVIDIA's stylegan2-{key}-config-f.pkl, converted by rosinality's convert_weight.py",
            description=f"StyleGAN2 config-f, {what} {size}x{size} (Karras et al. 2020), rosinality g_ema format",
            how_to_get=f"Convert NVIDIA's stylegan2-{key}-config-f.pkl with rosinality/stylegan2-pytorch "
                       f"(`python convert_weight.py --repo stylegan2 stylegan2-{key}-config-f.pkl` writes {fn}), "
                       "or use a checkpoint saved by that repository's train.py")
    for res in (128, 256, 512):
        stem = f"biggan-deep-{res}"
        reg[f"biggan/deep-{res}"] = Spec(
            f"biggan/deep-{res}", "generator", "biggan",
            (Source(f"{stem}-pytorch_model.bin", _BIGGAN_S3 + f"{stem}-pytorch_model.bin"),
             Source(f"{stem}-config.json", _BIGGAN_S3 + f"{stem}-config.json")),
            options={"class_index": 497, "truncation": 1.0}, packages=("pytorch-pretrained-biggan",),
            description=f"BigGAN-deep {res}x{res}, ImageNet (Brock et al. 2019), one class at a time "
                        "(default 497: church)")
    for b, size in _SEGFORMER.items():
        hub = f"nvidia/segformer-{b}-finetuned-ade-{size}"
        reg[f"segformer/ade20k-{b}"] = Spec(
            f"segformer/ade20k-{b}", "segmenter", "segformer",
            (Source("model.safetensors"), Source("config.json"), Source("preprocessor_config.json")),
            folder=f"segformer-{b}-finetuned-ade-{size}", hub_id=hub, packages=("transformers",),
            description=f"SegFormer-{b.upper()} (MiT-{b}) semantic segmentation, ADE20K 150 classes, "
                        f"{size.split('-')[0]}px input (Xie et al. 2021)")
    return reg


PUBLISHED: dict[str, Spec] = _build_registry()


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


def _write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _check_new_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"model name {name!r} must be letters, digits, '.', '-', '_' with at most one "
                         "'/' (e.g. 'lab/church-v2')")
    if name.startswith("toyworld/") or name in PUBLISHED or name == "toyworld":
        raise ValueError(f"{name!r} is a built-in model name; choose another")


def _inspect(p: Path, arch: str | None, opts: dict) -> str:
    """Load a candidate once (safely) and check it meets its protocol; returns its arch."""
    from .protocols import check_generator, check_segmenter
    if arch is not None and arch not in KIND_OF:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(KIND_OF)}")
    if arch is None:
        arch = "segformer" if p.is_dir() else detect_arch(_read_state(p))
    if KIND_OF[arch] == "generator":
        check_generator(load_generator_file(p, arch=arch, **opts), probe=False)
    else:
        check_segmenter(load_segmenter_path(p, **opts))
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
    if arch is not None and arch not in KIND_OF:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(KIND_OF))} (or leave arch out to detect it)")
    if check or arch is None:
        arch = _inspect(p, arch, opts)
    entry = {"kind": KIND_OF[arch], "arch": arch, "path": str(p), "options": opts}
    with _REGISTRY_LOCK:
        data = user_models()
        data[name] = entry
        _write_json_atomic(_registry_file(), data)
    return entry


def unregister(name: str) -> None:
    with _REGISTRY_LOCK:
        data = user_models()
        if name not in data:
            raise ValueError(f"{name!r} is not a user-added model; added: {', '.join(data) or 'none'}")
        del data[name]
        _write_json_atomic(_registry_file(), data)


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
        raise ValueError(f"unknown published model {name!r}; published: {', '.join(PUBLISHED)}")
    return PUBLISHED[name]


def is_known(name: str, kind: str | None = None) -> bool:
    if name in PUBLISHED:
        return kind is None or PUBLISHED[name].kind == kind
    entry = user_models().get(name)
    return entry is not None and (kind is None or entry.get("kind") == kind)


def _packages_ok(packages) -> bool:
    mods = {"pytorch-pretrained-biggan": "pytorch_pretrained_biggan", "transformers": "transformers"}
    try:
        return all(importlib.util.find_spec(mods.get(p, p)) is not None for p in packages)
    except (ImportError, ValueError):       # a broken or blocked package counts as missing
        return False


def status() -> list[dict]:
    """Every published and user-added model: name, kind, arch, available, path (found, or where
    to put it), source (URL / hub page), packages (and whether they import), description."""
    rows = []
    for s in PUBLISHED.values():
        found = s.find()
        rows.append({"name": s.name, "kind": s.kind, "arch": s.arch, "available": found is not None,
                     "path": str(found or s.target), "source": s.source,
                     "downloadable": bool(s.hub_id or s.files[0].url), "packages": list(s.packages),
                     "packages_ok": _packages_ok(s.packages), "description": s.description,
                     "origin": "published"})
    for name, e in user_models().items():
        pk = ["transformers"] if e.get("arch") == "segformer" else (
            ["pytorch-pretrained-biggan"] if e.get("arch") == "biggan" else [])
        rows.append({"name": name, "kind": e.get("kind"), "arch": e.get("arch"),
                     "available": Path(e["path"]).exists(), "path": e["path"], "source": "added by a user",
                     "downloadable": False, "packages": pk, "packages_ok": _packages_ok(pk),
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


# ----------------------------------------------------------------------------- downloads

def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _check_digest(digest: str, expected: str | None, what: str) -> None:
    if expected and not digest.startswith(expected.lower()):
        raise DownloadError(f"checksum mismatch for {what}: expected SHA-256 {expected}…, got {digest}; "
                            "the download was discarded (try again, or fetch the file yourself)")


def download_url(url: str, dest, sha256: str | None = None, progress: Callable | None = None,
                 timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying SHA-256 (full or prefix) when given.

    The full digest is recorded in ``<dest>.sha256`` (``sha256sum`` format) either way."""
    import urllib.error
    import urllib.request
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex[:8]}")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            done = 0
            while b := r.read(1 << 20):
                f.write(b)
                h.update(b)
                done += len(b)
                if progress:
                    progress(done, total)
        if total and done != total:
            raise DownloadError(f"download of {url} stopped after {done} of {total} bytes; nothing was kept")
        digest = h.hexdigest()
        _check_digest(digest, sha256, url)
        os.replace(tmp, dest)
        dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
        return dest
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not download {url} ({reason}). Without a network, download it "
                            f"elsewhere and put it at {dest}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_hub(s: Spec, progress=None) -> Path:
    hub = require("huggingface_hub", "huggingface_hub", "Hub downloads")
    try:
        info = hub.HfApi().model_info(s.hub_id, files_metadata=True)
    except Exception as e:     # network / hub errors come in many types
        raise DownloadError(f"could not reach the Hugging Face hub for {s.hub_id} ({str(e).splitlines()[0][:200]}). "
                            f"Without a network: {missing_message(s)}") from None
    lfs = {}
    for sib in info.siblings or []:
        meta = getattr(sib, "lfs", None)
        sha = meta.get("sha256") if isinstance(meta, dict) else getattr(meta, "sha256", None)
        lfs[sib.rfilename] = sha
    weights = next((w for w in ("model.safetensors", "pytorch_model.bin") if w in lfs), None)
    if weights is None or "config.json" not in lfs:
        raise DownloadError(f"hub model {s.hub_id} has no config.json + model.safetensors/pytorch_model.bin")
    wanted = ["config.json", weights] + [f for f in ("preprocessor_config.json",) if f in lfs]
    final = models_dir() / s.folder
    tmpdir = final.with_name(f".{final.name}.part-{uuid.uuid4().hex[:8]}")
    tmpdir.mkdir(parents=True)
    try:
        for i, fname in enumerate(wanted):
            try:
                got = hub.hf_hub_download(s.hub_id, fname, cache_dir=str(models_dir() / ".hub"))
            except Exception as e:
                raise DownloadError(f"could not download {fname} of {s.hub_id} "
                                    f"({str(e).splitlines()[0][:200]}); nothing was kept") from None
            digest = sha256_file(got)
            _check_digest(digest, lfs.get(fname), f"{s.hub_id}/{fname}")
            shutil.copyfile(got, tmpdir / fname)
            if progress:
                progress(i + 1, len(wanted))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmpdir, final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return final


def fetch(name: str, download: bool = False, progress: Callable | None = None) -> Path:
    """The local path of a published model's weights; downloads only when ``download=True``.

    Offline (or without ``download``) a missing model raises :class:`MissingWeightsError`
    saying which file to put where."""
    s = spec(name)
    found = s.find()
    if found is not None:
        return found
    if not download:
        raise MissingWeightsError(missing_message(s))
    if s.hub_id:
        return _fetch_hub(s, progress)
    if not s.files[0].url:
        raise MissingWeightsError(missing_message(s))
    for src in s.files:
        if src.url and not (models_dir() / src.filename).is_file():
            download_url(src.url, models_dir() / src.filename, src.sha256, progress)
    return s.find() or models_dir() / s.files[0].filename


# ----------------------------------------------------------------------------- loading

def _read_state(path: Path):
    """A checkpoint's contents (safetensors or torch, never executing code)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from .segformer import _read_weights
        return _read_weights(path)
    return load_checkpoint(path, safe_types=(argparse.Namespace,))


def detect_arch(ck) -> str:
    """Which architecture a checkpoint's keys belong to (``progan`` when nothing else fits, so
    the ProGAN loader's error names what is wrong)."""
    if not isinstance(ck, dict):
        return "progan"
    keys = set(ck)
    if isinstance(ck.get("state_dict"), dict):
        keys = set(ck["state_dict"])
    if "g_ema" in keys or {"style.1.weight", "input.input"} <= keys or \
            {"module.style.1.weight", "module.input.input"} <= keys:
        return "stylegan2"
    if {"embeddings.weight", "generator.gen_z.weight_orig"} <= keys:
        return "biggan"
    if any(k.startswith(("segformer.encoder.", "segformer.stages.")) for k in keys):   # published or transformers-5 names
        return "segformer"
    return "progan"


def _arch_error(path, arch, ck, state, expected):
    """Refusal naming the file, the keys the architecture needs and the file's own keys."""
    if isinstance(state, dict):
        for wrap in ("g_ema", "state_dict"):
            if isinstance(state.get(wrap), dict):
                state = state[wrap]
    keys = list(state) if isinstance(state, dict) else []
    missing = [k for k in expected if k not in keys]
    extra = [k for k in keys if k not in expected]
    found = detect_arch(ck)
    looks_progan = any(k.startswith(("layer1.", "features.")) for k in keys)
    hint = ""
    if found != arch and (found != "progan" or looks_progan):
        hint = f" (it looks like a {found} {KIND_OF[found]}: load it with arch={found!r})"
    msg = f"checkpoint {path} is not a {arch} model: missing keys {', '.join(missing[:6]) or 'none'}"
    if extra:
        msg += f"; unexpected keys {', '.join(extra[:6])}" + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
    return CheckpointError(msg + hint)


def load_generator_file(path, arch: str | None = None, device="cpu", **options):
    """A generator from a weights file: ``arch`` ``progan`` | ``stylegan2`` | ``biggan`` (detected
    from the keys when None). Options: ``truncation`` (StyleGAN2, BigGAN), ``class_index``
    (BigGAN), ``noise_mode`` (StyleGAN2), ``pixelnorm`` (ProGAN)."""
    path = Path(path)
    ck = _read_state(path)
    arch = arch or detect_arch(ck)
    if arch not in ARCHS["generator"]:
        raise CheckpointError(f"checkpoint {path} holds a {arch} model, not a generator; generators: "
                              f"{', '.join(ARCHS['generator'])}")
    if arch == "progan":
        from .zoo import _progan_from_checkpoint
        extra = set(options) - {"pixelnorm"}
        if extra:
            raise TypeError(f"ProGAN generators take no option {', '.join(sorted(extra))}")
        model = _progan_from_checkpoint(ck, path, str(path), options.get("pixelnorm"))
    elif arch == "stylegan2":
        model = _stylegan2_from_checkpoint(ck, path, **options)
    else:
        model = _biggan_from_checkpoint(ck, path, **options)
    model.source = str(path)
    model.arch = arch
    return model.to(device).eval().requires_grad_(False)


def _stylegan2_from_checkpoint(ck, path, truncation: float = 1.0, noise_mode: str = "const",
                               mean_latent: int = 4096, clamp_output: bool = True):
    from . import stylegan2 as sg
    try:
        state, latent_avg = sg.normalize_state(ck)
        cfg = sg.config_from_state_dict(state)
    except ValueError:
        inner = ck.get("g_ema", ck) if isinstance(ck, dict) else ck
        raise _arch_error(path, "stylegan2", ck, inner,
                          ["style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight",
                           "convs.0.conv.weight", "to_rgbs.0.conv.weight"]) from None
    model = sg.StyleGAN2(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channels=cfg["channels"],
                         truncation=truncation, noise_mode=noise_mode, clamp_output=clamp_output)
    load_state_into(model, state, path)
    from_file = latent_avg is not None and latent_avg.numel() == cfg["style_dim"]
    if from_file:
        model.set_mean_latent(latent_avg.float())
    else:
        model.set_mean_latent(model.compute_mean_latent(mean_latent))
    model.meta = {"arch": "stylegan2", **{k: v for k, v in cfg.items() if k != "channels"},
                  "mean_latent": "latent_avg from file" if from_file else f"mean of {mean_latent} w"}
    return model


def _biggan_from_checkpoint(ck, path, class_index: int = 0, truncation: float = 1.0):
    from . import biggan as bg
    bg.require_package()
    state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    if isinstance(state, dict) and state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        cfg = bg.read_config(path, state)
    except (ValueError, KeyError, AttributeError) as e:
        if isinstance(e, ValueError) and "JSON" in str(e):
            raise CheckpointError(str(e)) from None
        raise _arch_error(path, "biggan", ck, state,
                          ["embeddings.weight", "generator.gen_z.weight_orig", "generator.gen_z.weight_u",
                           "generator.bn.running_means", "generator.layers.0.conv_0.weight_orig"]) from None
    try:
        model = bg.build(cfg)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"BigGAN config for {path} is unusable ({e})") from None
    load_state_into(model, state, path)
    bg.fold_spectral_norm(model.eval())
    gen = bg.BigGANGenerator(model, class_index=class_index, truncation=truncation)
    gen.meta = {"arch": "biggan", "resolution": gen.resolution, "num_classes": gen.num_classes}
    return gen


def load_segmenter_path(path, arch: str | None = "segformer", device="cpu", **options):
    """A segmenter from a SegFormer folder or weights file (see :mod:`core.segformer`)."""
    if arch not in (None, "segformer"):
        raise ValueError(f"segmenter architecture {arch!r} is not supported; supported: segformer")
    from .segformer import load_segformer
    return load_segformer(path, device=device, **options)


def load(name: str, device="cpu", download: bool = False, **options):
    """Load a published or user-added model by name (generator or segmenter)."""
    if name in PUBLISHED:
        s = PUBLISHED[name]
        for pkg in s.packages:     # say what to install before any download
            require({"pytorch-pretrained-biggan": "pytorch_pretrained_biggan"}.get(pkg, pkg), pkg,
                    f"{s.arch} models such as {s.name}")
        path = fetch(name, download=download)
        kind, arch, opts = s.kind, s.arch, {**s.options, **options}
    else:
        entry = user_models().get(name)
        if entry is None:
            raise ValueError(f"unknown model {name!r}; published: {', '.join(PUBLISHED)}; "
                             f"added: {', '.join(user_models()) or 'none'}")
        path = Path(entry["path"])
        if not path.exists():
            raise MissingWeightsError(f"{name}: its weights {path} are gone; put the file back there or "
                                      f"remove the entry (core.published.unregister({name!r}))")
        kind, arch, opts = entry["kind"], entry["arch"], {**entry.get("options", {}), **options}
    if kind == "generator":
        model = load_generator_file(path, arch=arch, device=device, **opts)
    else:
        model = load_segmenter_path(path, arch=arch, device=device, **opts)
    model.source = name
    return model

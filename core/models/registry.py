"""One registry of model architectures: how each is recognised in a file and loaded.

An architecture module (``progan``, ``stylegan2``, ``biggan``, ``segformer``) registers itself
with :func:`register_architecture`, as the built-ins do; adding an architecture is one module
that calls it (and, for published weights, :func:`core.models.catalog.register_published`),
plus its import in ``core/models/__init__.py``::

    register_architecture("mygan", "generator", load=my_loader, detect=lambda keys: "mygan.w" in keys)

``load(path, state, **options)`` builds the model from a file whose contents (``state``, read
once, never executing code) are already at hand; ``detect(keys)`` says whether a checkpoint's
top-level (or ``state_dict``) keys belong to it. Exactly one generator architecture is the
``fallback`` (ProGAN): a file nothing else claims is tried as it, so its loader's error names
what is wrong.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.base.checkpoints import load_checkpoint, read_weights
from core.base.errors import ArgumentTypeError, CheckpointError, UnknownNameError

__all__ = ["Architecture", "register_architecture", "architectures", "kind_of", "detect_arch", "read_state",
           "arch_error", "load_generator_file", "load_segmenter_path", "KINDS"]

KINDS = ("generator", "segmenter")


@dataclass(frozen=True)
class Architecture:
    name: str
    kind: str                                   # "generator" | "segmenter"
    load: Callable                              # load(path, state, **options) -> model
    detect: Callable | None = None              # detect(keys: set[str]) -> bool
    options: tuple[str, ...] = ()               # the loader's options, for error messages
    packages: tuple[str, ...] = ()              # pip names the loader needs beyond requirements.txt
    fallback: bool = False


_ARCHS: dict[str, Architecture] = {}


def register_architecture(name: str, kind: str, load: Callable, detect: Callable | None = None,
                          options: tuple[str, ...] = (), packages: tuple[str, ...] = (),
                          fallback: bool = False) -> Architecture:
    """Add an architecture to the registry (the built-ins are added this way too)."""
    if kind not in KINDS:
        raise ArgumentTypeError(f"architecture kind must be one of {KINDS}, got {kind!r}")
    if fallback and any(a.fallback and a.kind == kind and a.name != name for a in _ARCHS.values()):
        raise ArgumentTypeError(f"there is already a fallback {kind} architecture")
    arch = Architecture(name, kind, load, detect, tuple(options), tuple(packages), fallback)
    _ARCHS[name] = arch
    return arch


def architectures(kind: str | None = None) -> dict[str, Architecture]:
    """The registered architectures (of one ``kind``), by name, in registration order."""
    return {n: a for n, a in _ARCHS.items() if kind is None or a.kind == kind}


def kind_of(arch: str) -> str:
    if arch not in _ARCHS:
        raise UnknownNameError(f"unknown arch {arch!r}; known: {', '.join(_ARCHS)} "
                               "(or leave arch out to detect it)")
    return _ARCHS[arch].kind


def read_state(path) -> object:
    """A checkpoint's contents (safetensors or torch, never executing code)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    return load_checkpoint(path, safe_types=(argparse.Namespace,))


def _keys(ck) -> set:
    if not isinstance(ck, dict):
        return set()
    if isinstance(ck.get("state_dict"), dict):
        return set(ck["state_dict"])
    return set(ck)


def detect_arch(ck) -> str:
    """Which architecture a checkpoint's keys belong to (the fallback generator when nothing else
    fits, so that its loader's error names what is wrong)."""
    keys = _keys(ck)
    for a in _ARCHS.values():
        if a.detect is not None and keys and a.detect(keys):
            return a.name
    return next(a.name for a in _ARCHS.values() if a.fallback and a.kind == "generator")


def arch_error(path, arch: str, ck, state, expected) -> CheckpointError:
    """Refusal naming the file, the keys the architecture needs and the file's own keys."""
    if isinstance(state, dict):
        for wrap in ("g_ema", "state_dict"):
            if isinstance(state.get(wrap), dict):
                state = state[wrap]
    keys = list(state) if isinstance(state, dict) else []
    missing = [k for k in expected if k not in keys]
    extra = [k for k in keys if k not in expected]
    found = detect_arch(ck)
    looks_fallback = any(k.startswith(("layer1.", "features.")) for k in keys)
    hint = ""
    if found != arch and (not _ARCHS[found].fallback or looks_fallback):
        hint = f" (it looks like a {found} {_ARCHS[found].kind}: load it with arch={found!r})"
    msg = f"checkpoint {path} is not a {arch} model: missing keys {', '.join(missing[:6]) or 'none'}"
    if extra:
        msg += f"; unexpected keys {', '.join(extra[:6])}" + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
    return CheckpointError(msg + hint)


def load_generator_file(path, arch: str | None = None, device="cpu", **options):
    """A generator from a weights file, its architecture detected from the keys or given as
    ``arch`` (see :func:`architectures`). ``options`` go to that architecture's loader."""
    path = Path(path)
    ck = read_state(path)
    arch = arch or detect_arch(ck)
    gens = architectures("generator")
    if arch not in gens:
        if arch in _ARCHS:
            raise CheckpointError(f"checkpoint {path} holds a {arch} model, not a generator; generators: "
                                  f"{', '.join(gens)}")
        kind_of(arch)
    a = gens[arch]
    extra = set(options) - set(a.options)
    if extra:
        raise ArgumentTypeError(f"{arch} generators take no option {', '.join(sorted(extra))}"
                                + (f" (they take {', '.join(a.options)})" if a.options else ""))
    model = a.load(path, ck, **options)
    model.source = str(path)
    model.arch = arch
    return model.to(device).eval().requires_grad_(False)


def load_segmenter_path(path, arch: str | None = None, device="cpu", **options):
    """A segmenter from a folder or weights file (``arch``: a registered segmenter architecture;
    the only one when None)."""
    segs = architectures("segmenter")
    if arch is None:
        arch = next(iter(segs))
    if arch not in segs:
        raise UnknownNameError(f"segmenter architecture {arch!r} is not supported; supported: {', '.join(segs)}")
    model = segs[arch].load(Path(path), None, **options)
    return model.to(device).eval().requires_grad_(False)

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

Pre-flight: :func:`read_state` reads a file only after recognising it by its first bytes, and
refuses tensors that claim more than the size budget (:mod:`core.base.budget`) or hold NaN / inf,
before any loader runs; each built-in loader then checks the model its shapes or config describe
against the budget and the file's shapes against that model (on the ``meta`` device) before
building it; :func:`load_generator_file` finally probes the generator once and refuses
non-finite images. ``max_params`` / ``max_bytes`` set the budget for one call.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core.base.budget import size_limits
from core.base.checkpoints import read_weights
from core.base.errors import ArgumentTypeError, CheckpointError, ProtocolError, UnknownNameError
from core.base.protocols import check_generator

__all__ = [
    "KINDS",
    "Architecture",
    "arch_error",
    "architectures",
    "detect_arch",
    "kind_of",
    "load_generator_file",
    "load_segmenter_path",
    "probe_generator",
    "read_state",
    "register_architecture",
]

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
    """A checkpoint's contents (safetensors or torch, told apart by their first bytes, never
    executing code), after the pre-flight: size budget and finite values
    (:func:`core.base.checkpoints.check_weights`); the keys of the state dicts must be names."""
    path = Path(path)
    ck = read_weights(path, safe_types=(argparse.Namespace,), unwrap=False)
    if not isinstance(ck, dict):
        return ck
    for inner in [ck] + [ck[w] for w in ("state_dict", "g_ema") if isinstance(ck.get(w), dict)]:
        odd = [k for k in inner if not isinstance(k, str)]
        if odd:
            raise CheckpointError(f"checkpoint {path} is not a state dict: it has keys that are not names "
                                  f"({', '.join(repr(k)[:40] for k in odd[:6])}); {_FIX_STATE}")
    return ck


_FIX_STATE = "save the weights with torch.save(model.state_dict(), path)"


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


def _architecture(kind: str, arch, path, given: bool) -> Architecture:
    own = architectures(kind)
    if not isinstance(arch, str):
        raise ArgumentTypeError(f"arch must be an architecture name (a str), got {type(arch).__name__} "
                                f"{arch!r:.40}; {kind} architectures: {', '.join(own)}")
    if arch in own:
        return own[arch]
    if arch not in _ARCHS:
        raise UnknownNameError(f"unknown arch {arch!r} for {path}; {kind} architectures: {', '.join(own)} "
                               "(or leave arch out to detect it)")
    if given:
        raise ArgumentTypeError(f"arch {arch!r} is a {_ARCHS[arch].kind} architecture, not a {kind} one "
                                f"(loading {path}); {kind} architectures: {', '.join(own)}, or leave arch out")
    other = _ARCHS[arch].kind
    raise CheckpointError(f"checkpoint {path} holds a {arch} model, not a {kind}; {kind}s: {', '.join(own)}",
                          fix=f"load it with core.load_{other}({str(path)!r})")


def _check_options(a: Architecture, options: dict) -> None:
    extra = set(options) - set(a.options)
    if extra:
        raise ArgumentTypeError(f"{a.name} {a.kind}s take no option {', '.join(sorted(extra))}"
                                + (f" (they take {', '.join(a.options)})" if a.options else " (they take none)"))


def probe_generator(model, path) -> None:
    """Run the generator once on a fixed z (the global random state untouched) and refuse it,
    naming the file, when the image is not finite (weights that overflow)."""
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            check_generator(model, probe=True, n=1)
    except ProtocolError as e:
        raise CheckpointError(f"checkpoint {path} was refused: {e}",
                              fix="the weights overflow or are corrupt: use an earlier checkpoint, or fetch "
                                  "or save the weights again") from None


def load_generator_file(path, arch: str | None = None, device="cpu", *, max_params: int | None = None,
                        max_bytes: int | None = None, **options):
    """A generator from a weights file, its architecture detected from the keys or given as
    ``arch`` (see :func:`architectures`). ``options`` go to that architecture's loader;
    ``max_params`` / ``max_bytes``: the size budget (:mod:`core.base.budget`) for this load."""
    path = Path(path)
    with size_limits(max_params, max_bytes):
        given = arch is not None
        if given:                                   # the arguments are checked before the file is read
            _check_options(_architecture("generator", arch, path, True), options)
        ck = read_state(path)
        arch = arch if given else detect_arch(ck)
        a = _architecture("generator", arch, path, given)
        _check_options(a, options)
        model = a.load(path, ck, **options)
    model.source = str(path)
    model.arch = arch
    model = model.to(device).eval().requires_grad_(False)
    probe_generator(model, path)
    return model


def load_segmenter_path(path, arch: str | None = None, device="cpu", *, max_params: int | None = None,
                        max_bytes: int | None = None, **options):
    """A segmenter from a folder or weights file (``arch``: a registered segmenter architecture;
    the only one when None); ``max_params`` / ``max_bytes`` as for :func:`load_generator_file`."""
    path = Path(path)
    a = _architecture("segmenter", next(iter(architectures("segmenter"))) if arch is None else arch, path, True)
    _check_options(a, options)
    if not path.exists():
        raise CheckpointError(f"segmenter {path} does not exist: check the path, or put the model's folder "
                              "(config.json and weights) or weights file there")
    with size_limits(max_params, max_bytes):
        model = a.load(path, None, **options)
    return model.to(device).eval().requires_grad_(False)

"""Safe checkpoint loading: ``torch.load(weights_only=True)`` (or ``safetensors``) with errors
that name the file, and a pre-flight before any model is built from what a file holds.

The pre-flight (:func:`check_weights`, run by :func:`load_checkpoint` and :func:`read_weights`):

- the file is recognised by its first bytes (a zip or pickle PyTorch file, or a safetensors
  file); anything else is refused as not a weights file, never handed to the unpickler;
- what the tensors claim (values and bytes, by shape: a 2 KB file can hold a stride-0 view of
  5000 x 5000 x 4 x 4) must fit the size budget of :mod:`core.base.budget`; a safetensors header
  must describe exactly the bytes the file stores;
- no floating tensor may hold NaN or inf (checked over what is stored, never materialising a
  view's claimed size).

:func:`check_fits` compares a state dict's keys and shapes with a model built on the ``meta``
device (no memory), so a loader refuses a file that does not fit before building the real model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch

from core.base.budget import check_size
from core.base.errors import CheckpointError
from core.base.packages import require

__all__ = [
    "CheckpointError",
    "check_fits",
    "check_weights",
    "load_checkpoint",
    "load_state_into",
    "read_weights",
    "safetensors_header",
    "sniff",
    "tensor_items",
]

_FIX_FILE = ("give the path of a weights file saved with torch.save (.pt, .pth, .bin, .ckpt) or safetensors "
             "(.safetensors)")
_MAX_HEADER = 100 * 2 ** 20          # a safetensors header larger than this is not a weights file


def sniff(path: str | os.PathLike) -> str | None:
    """``"zip"`` (PyTorch >= 1.6), ``"pickle"`` (older PyTorch), ``"safetensors"``, or None for
    anything else, from the file's first bytes."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= _MAX_HEADER:
        return "safetensors"                     # (a header longer than the file: truncated, said later)
    return None


def _preview(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(12)
    if all(32 <= b < 127 for b in head):
        return repr(head.decode("ascii"))
    return "0x" + head.hex(" ")


def _check_file(p: Path) -> None:
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist: check the path, or put the "
                              "weights file there")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory; give the path of the weights file")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a regular file; {_FIX_FILE}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes): the download or copy was "
                              "interrupted; fetch the file again")


def _not_weights(p: Path) -> CheckpointError:
    return CheckpointError(f"checkpoint {p} is not a PyTorch or safetensors weights file (it begins "
                           f"{_preview(p)}); {_FIX_FILE}")


def load_checkpoint(path: str | os.PathLike, map_location="cpu", safe_types: tuple = (), check: bool = True):
    """Load a PyTorch checkpoint without executing code from it.

    Only tensors and plain containers are accepted (``weights_only=True``); a pickle that tries
    to build arbitrary objects is refused before anything from it runs. ``safe_types`` adds
    plain data classes that may be rebuilt too (e.g. ``argparse.Namespace``, which training
    scripts store as ``args``): they are instantiated and their ``__dict__`` filled, nothing else.
    Files that are not PyTorch files (by their first bytes) are refused before unpickling. With
    ``check`` (default) the contents pass :func:`check_weights` (size budget, finite values).
    """
    p = Path(path)
    kind = _kind(p)
    if kind == "safetensors":
        raise CheckpointError(f"checkpoint {p} is a safetensors file, not a PyTorch one: load it with "
                              "core.base.checkpoints.read_weights or a model loader (core.load_generator)")
    if kind is None:
        raise _not_weights(p)
    try:
        if safe_types:
            with torch.serialization.safe_globals(list(safe_types)):
                ck = torch.load(p, map_location=map_location, weights_only=True)
        else:
            ck = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _weights_only_reason(e)
        if not _CODE.search(reason):          # a malformed pickle, not one that builds objects
            raise CheckpointError(f"checkpoint {p} cannot be read, it is not a PyTorch weights file or is "
                                  f"corrupt ({reason}); {_FIX_FILE}, or fetch it again") from None
        raise CheckpointError(
            f"checkpoint {p} was refused: it holds Python objects other than tensors and plain "
            f"containers, and loading it could run code from the file ({reason}). "
            "Re-save it as a plain state_dict (torch.save(model.state_dict(), path)) in a trusted "
            "environment.") from None
    except Exception as e:  # noqa: BLE001  (anything torch.load raises for a file it cannot parse)
        raise CheckpointError(f"checkpoint {p} cannot be read, it looks truncated or is not a "
                              f"PyTorch file ({_first_line(e)}); fetch or save it again") from None
    if check:
        check_weights(ck, p)
    return ck


# what torch's weights-only unpickler says of a pickle that would build objects or call functions
_CODE = re.compile(r"global|class|function|reduce|instantiat|object|build|allowlist", re.IGNORECASE)


def _kind(p: Path) -> str | None:
    """:func:`sniff` of a file checked to exist, be a non-empty regular file and be readable."""
    _check_file(p)
    try:
        return sniff(p)
    except OSError as e:
        raise CheckpointError(f"checkpoint {p} cannot be read ({e.strerror or e}): check its permissions") from None


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def _weights_only_reason(e: BaseException) -> str:
    """What torch's long weights-only message says was found (the line after "WeightsUnpickler error:")."""
    s = str(e)
    tail = s.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in s else s
    lines = [x.strip() for x in tail.splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__).split(". Please use")[0][:200]


# ----------------------------------------------------------------------------- pre-flight

def tensor_items(obj, prefix: str = ""):
    """``(key, tensor)`` for every tensor in nested dicts, lists, tuples and ``argparse.Namespace``
    objects, in order (iteratively: any depth, cycles visited once)."""
    stack = [(prefix, obj)]
    seen = set()
    while stack:
        name, o = stack.pop()
        if isinstance(o, torch.Tensor):
            yield name, o
            continue
        if isinstance(o, argparse.Namespace):
            o = vars(o)
        if isinstance(o, dict):
            children = [(f"{name}.{k}" if name else str(k), v) for k, v in o.items()]
        elif isinstance(o, (list, tuple)):
            children = [(f"{name}[{i}]", v) for i, v in enumerate(o)]
        else:
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        stack.extend(reversed(children))


def _claims(t: torch.Tensor) -> tuple[int, int]:
    n = math.prod(int(s) for s in t.shape)
    return n, n * t.element_size()


def _stored(t: torch.Tensor) -> torch.Tensor | None:
    """What ``t``'s values are read from, never larger than what the file stores: ``t`` itself,
    or (for an expanded or overlapping view) a flat tensor over its whole storage."""
    if t.layout != torch.strided or t.is_quantized or t.device.type == "meta" or t.numel() == 0:
        return None
    if not (t.is_floating_point() or t.is_complex()):
        return None
    st = t.untyped_storage()
    stored = st.nbytes() // t.element_size()
    if t.is_contiguous() and t.numel() <= stored:
        return t.reshape(-1)
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(st, 0, (stored,), (1,))


def _nonfinite(flat: torch.Tensor, chunk: int = 1 << 22) -> tuple[int, int]:
    """(NaN count, inf count) of a flat tensor, in chunks (bounded temporary memory)."""
    nan = inf = 0
    for i in range(0, flat.numel(), chunk):
        x = flat[i:i + chunk]
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64) and not x.is_complex():
            x = x.float()
        if bool(torch.isfinite(x).all()):
            continue
        nan += int(torch.isnan(x).sum())
        inf += int(torch.isinf(x).sum())
    return nan, inf


def check_weights(obj, path, finite: bool = True) -> None:
    """The pre-flight of a loaded checkpoint (before any model is built from it).

    Refuses (:class:`BudgetError`) tensors whose shapes claim more values or bytes than the size
    budget allows (:mod:`core.base.budget`; counted by shape, nothing is materialised), then
    (:class:`CheckpointError`) any NaN or inf in a floating tensor, naming the first such key."""
    items = list(tensor_items(obj))
    params = nbytes = 0
    for _, t in items:
        n, b = _claims(t)
        params += n
        nbytes += b
    check_size(f"checkpoint {path}", f"its {len(items)} tensors claim", params, nbytes)
    if not finite:
        return
    first, bad_tensors, nan, inf = None, 0, 0, 0
    done = set()
    for key, t in items:
        flat = _stored(t)
        if flat is None:
            continue
        ident = (flat.data_ptr(), flat.numel(), flat.dtype)
        if ident in done:
            continue
        done.add(ident)
        a, b = _nonfinite(flat)
        if a or b:
            bad_tensors += 1
            nan, inf = nan + a, inf + b
            first = first or (key, a, b)
    if first:
        key, a, b = first
        more = f"; {nan:,} NaN and {inf:,} inf in {bad_tensors} tensors in all" if bad_tensors > 1 else ""
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights: {key} has {a:,} NaN and {b:,} inf values{more}",
            fix="the weights diverged in training or the file is corrupt: use an earlier checkpoint, "
                "or fetch or save the weights again")


def _shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _mismatch(own: dict, state: dict, path, name: str, optional: Callable[[str], bool] | None = None):
    """A CheckpointError naming missing, unexpected, mis-shaped and non-tensor keys, or None."""
    if not isinstance(state, dict):
        return CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        return CheckpointError(f"checkpoint {path} is not a state dict: it has keys that are not names "
                               f"({', '.join(repr(k)[:40] for k in odd[:6])})")
    missing = sorted(k for k in set(own) - set(state) if not (optional and optional(k)))
    extra = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state)
                   if isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k]))
    notensor = sorted(k for k in set(own) & set(state) if not isinstance(state[k], torch.Tensor))
    if not (missing or extra or shape or notensor):
        return None
    parts = []
    if missing:
        parts.append(f"missing keys {_few(missing)}")
    if extra:
        parts.append(f"unexpected keys {_few(extra)}")
    if shape:
        parts.append("mis-shaped keys " + _few(
            [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k])})" for k in shape]))
    if notensor:
        parts.append("keys that hold no tensor " + _few([f"{k} ({type(state[k]).__name__})" for k in notensor]))
    return CheckpointError(f"checkpoint {path} does not fit {name}: " + "; ".join(parts))


def check_fits(build: Callable[[], torch.nn.Module], state: dict, path,
               optional: Callable[[str], bool] | None = None) -> None:
    """Refuse ``state`` unless its keys and shapes fit the model ``build()`` makes, built on the
    ``meta`` device (no memory) so that nothing is allocated for a file that does not fit."""
    with torch.device("meta"):
        model = build()
    err = _mismatch(_shapes(model.state_dict()), state, path, type(model).__name__, optional)
    if err is not None:
        raise err


def load_state_into(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Strictly load ``state`` into ``model``; on mismatch, name the file and the keys."""
    own = model.state_dict()
    err = _mismatch(_shapes(own), state, path, type(model).__name__)
    if err is not None:
        raise err
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v
                           for k, v in state.items()})


def _few(keys, k=6):
    return ", ".join(keys[:k]) + (f" and {len(keys) - k} more" if len(keys) > k else "")


# ----------------------------------------------------------------------------- safetensors

_ST_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "I16": 2,
             "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "C64": 8, "U64": 8, "I64": 8, "F64": 8}


def safetensors_header(path: str | os.PathLike) -> dict:
    """A safetensors file's header (tensor name -> dtype, shape, offsets), checked against the
    bytes the file stores: every tensor's offsets lie in the data and hold exactly its shape."""
    p = Path(path)
    _check_file(p)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        if not 2 <= n <= min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"checkpoint {p} cannot be read, it looks truncated or is not a safetensors file "
                                  f"(its header claims {n:,} bytes of a {size:,}-byte file); fetch or save it again")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {p} cannot be read, its safetensors header is not a JSON object; "
                              "fetch or save it again")
    data = size - 8 - n
    for key, v in header.items():
        if key == "__metadata__":
            continue
        ok = isinstance(v, dict) and v.get("dtype") in _ST_BYTES and isinstance(v.get("shape"), list) \
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v["shape"]) \
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2 \
            and all(isinstance(o, int) and not isinstance(o, bool) for o in v["data_offsets"])
        if not ok:
            raise CheckpointError(f"checkpoint {p} cannot be read, its safetensors header entry for {key!r} "
                                  f"is malformed ({json.dumps(v)[:120]}); fetch or save it again")
        a, b = v["data_offsets"]
        want = math.prod(v["shape"]) * _ST_BYTES[v["dtype"]]
        if not (0 <= a <= b <= data) or b - a != want:
            raise CheckpointError(
                f"checkpoint {p} was refused: its safetensors header says {key} is {v['dtype']} of shape "
                f"{tuple(v['shape'])} ({want:,} bytes) but the file stores {max(min(b, data) - max(a, 0), 0):,} "
                f"bytes for it (offsets {a}..{b} of {data:,}); the header lies or the file is corrupt: "
                "fetch or save it again")
    return header


def _read_safetensors(p: Path) -> dict:
    header = safetensors_header(p)
    entries = [v for k, v in header.items() if k != "__metadata__"]
    params = sum(math.prod(v["shape"]) for v in entries)
    nbytes = sum(math.prod(v["shape"]) * _ST_BYTES[v["dtype"]] for v in entries)
    check_size(f"checkpoint {p}", f"its {len(entries)} tensors claim", params, nbytes)
    st = require("safetensors.torch", "safetensors", f"reading {p}")
    try:
        state = st.load_file(str(p))
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types for bad files)
        raise CheckpointError(f"checkpoint {p} cannot be read, it looks truncated or is not a "
                              f"safetensors file ({_first_line(e)}); fetch or save it again") from None
    check_weights(state, p)
    return state


def read_weights(path: str | os.PathLike, safe_types: tuple = (), unwrap: bool = True):
    """A state dict from a safetensors or torch file (told apart by their first bytes;
    ``{"state_dict": ...}`` wrappers unwrapped unless ``unwrap=False``, which returns a torch
    file's contents as they are), never executing code from it, after the pre-flight
    (:func:`check_weights`)."""
    path = Path(path)
    kind = _kind(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind is None:
        raise _not_weights(path)
    ck = load_checkpoint(path, safe_types=safe_types)
    if not unwrap:
        return ck
    if isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict):
        ck = ck["state_dict"]
    if not isinstance(ck, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ck).__name__}, not a state dict")
    return ck

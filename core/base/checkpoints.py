"""Safe checkpoint loading: ``torch.load(weights_only=True)`` (or ``safetensors``) with errors
that name the file, and a pre-flight before any model is built from what a file holds.

The pre-flight (:func:`check_declared` before ``torch.load``, :func:`check_weights` after it, run by
:func:`load_checkpoint` and :func:`read_weights`):

- the file is recognised by its first bytes (a zip or pickle PyTorch file, or a safetensors
  file); anything else is refused as not a weights file, never handed to the unpickler;
- before ``torch.load`` allocates anything, what a torch file declares (its pickle's storages and
  their sizes, read with an unpickler that builds nothing; a zip's records and their inflated
  sizes, from its directory) must fit the budget, at most ``MAX_TENSORS`` storages, and the file's
  own size: torch.save stores every byte it declares, so a small file that declares gigabytes
  (compressed records, a forged pickle) is refused in milliseconds;
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
    "check_declared",
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
    return CheckpointError(f"checkpoint {p} is not a PyTorch or safetensors weights file (its first bytes "
                           f"are not those of a zip, a pickle or a safetensors file); {_FIX_FILE}")


# ----------------------------------------------------------------------------- what a torch file declares

MAX_TENSORS = 50_000                 # storages in one file (the largest published checkpoints hold a few thousand)
MAX_PICKLE = 64 * 2 ** 20            # a state dict's pickle (names, shapes): about 100 bytes a tensor
_SLACK = 2 ** 20                     # headers, names, alignment: what a file may declare beyond its own size
_ELEMENT = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
            "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "Untyped": 1, "QInt8": 1, "QUInt8": 1,
            "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1, "Float8_e4m3fn": 1, "Float8_e5m2": 1}


class _Stub(dict):
    """Whatever a pickle names (a class, a function) while only its declarations are read: it
    accepts any arguments and state and does nothing, so no code from the file runs."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _StorageType:
    def __init__(self, name: str):
        self.element = _ELEMENT.get(name[:-len("Storage")], 8)     # unknown types: the widest, 8 bytes


class _Declarations(pickle.Unpickler):
    """Reads a torch pickle for the storages it declares (key -> bytes), building nothing."""

    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, int] = {}           # key -> declared bytes
        self.values: dict[str, int] = {}             # key -> declared values

    def find_class(self, module, name):
        if module.startswith("torch") and name.endswith("Storage"):
            return _StorageType(name)
        return _Stub

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            typ, key, numel = pid[1], str(pid[2]), pid[4]
            element = typ.element if isinstance(typ, _StorageType) else 8
            if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
                raise CheckpointError("a storage declares no valid size")
            self.storages[key] = max(self.storages.get(key, 0), numel * element)
            self.values[key] = max(self.values.get(key, 0), numel)
        return _Stub()


def _declared_zip(p: Path) -> tuple[_Declarations, dict]:
    """(the storages its pickle declares, stored bytes per data record) of a torch zip file, from
    its central directory and its pickle; nothing is inflated but the pickle, itself bounded."""
    import zipfile
    with zipfile.ZipFile(p) as z:
        infos = z.infolist()
        if len(infos) > MAX_TENSORS + 16:
            raise CheckpointError(f"checkpoint {p} holds {len(infos):,} records, more than a weights file "
                                  f"holds (at most {MAX_TENSORS:,} tensors are read)")
        pkl = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if len(pkl) != 1:
            raise CheckpointError(f"checkpoint {p} is a zip file but not a PyTorch one (no data.pkl); {_FIX_FILE}")
        if pkl[0].file_size > MAX_PICKLE:
            raise CheckpointError(f"checkpoint {p} has a pickle of {pkl[0].file_size:,} bytes, more than any "
                                  f"state dict needs ({MAX_PICKLE:,})")
        total = sum(i.file_size for i in infos)
        records = {i.filename.rsplit("/data/", 1)[1]: i.file_size for i in infos if "/data/" in i.filename}
        if total > p.stat().st_size + _SLACK:
            raise CheckpointError(f"checkpoint {p} expands from {p.stat().st_size:,} to {total:,} bytes: its records "
                                  "are compressed, which torch.save never does (a file built to fill memory, or "
                                  "re-packed)", fix="save the weights again with torch.save(model.state_dict(), path)")
        with z.open(pkl[0]) as f:
            d = _Declarations(f)
            d.load()
    return d, records


def _declared_legacy(p: Path) -> _Declarations:
    """The storages a torch file in the legacy (before 1.6) format declares: after its magic
    number, protocol and system pickles, the one that declares them."""
    with open(p, "rb") as f:
        for _ in range(3):
            _Declarations(f).load()
        d = _Declarations(f)
        d.load()
    return d


def check_declared(p: Path, kind: str) -> None:
    """The pre-flight of a torch file before ``torch.load`` allocates anything: what its pickle
    declares (storages and their sizes) must fit the size budget, MAX_TENSORS and the file itself
    (torch.save stores every byte it declares: a file that declares more is compressed or forged,
    and would fill memory from a small upload)."""
    try:
        if kind == "zip":
            d, records = _declared_zip(p)
        else:
            d, records = _declared_legacy(p), {}
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  (a malformed pickle or zip: said as unreadable, torch is never reached)
        raise CheckpointError(f"checkpoint {p} cannot be read, it looks truncated or is not a PyTorch file "
                              f"({type(e).__name__}); fetch or save it again") from None
    storages = d.storages
    if len(storages) > MAX_TENSORS:
        raise CheckpointError(f"checkpoint {p} declares {len(storages):,} tensors, more than a weights file holds "
                              f"(at most {MAX_TENSORS:,} are read)")
    nbytes = sum(storages.values())
    check_size(f"checkpoint {p}", "its storages declare", sum(d.values.values()), nbytes)
    size = p.stat().st_size
    if nbytes > size + _SLACK:
        raise CheckpointError(f"checkpoint {p} declares {nbytes:,} bytes of tensors but holds {size:,}: it is "
                              "compressed or forged (torch.save stores what it declares)",
                              fix="save the weights again with torch.save(model.state_dict(), path)")
    short = [k for k, b in storages.items() if k in records and records[k] != b]
    if short:
        k = short[0]
        raise CheckpointError(f"checkpoint {p} declares {storages[k]:,} bytes for tensor storage {k} but its record "
                              f"holds {records[k]:,}: the file is damaged or forged; fetch or save it again")


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
    check_declared(p, kind)
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
    own = model.state_dict()
    err = _mismatch(_shapes(own), state, path, type(model).__name__, optional) or _kinds(own, state, path)
    if err is not None:
        raise err


def _kinds(own: dict, state: dict, path) -> CheckpointError | None:
    """Refusal of weights whose kind of number cannot be the model's: a floating parameter or buffer
    read from an integer, boolean or complex tensor (converting would silently change the values:
    a complex weight loses its imaginary part, an int8 one its scale)."""
    bad = [f"{k} ({state[k].dtype})".replace("torch.", "") for k in own
           if k in state and isinstance(state[k], torch.Tensor) and own[k].is_floating_point()
           and not state[k].is_floating_point()]
    if not bad:
        return None
    return CheckpointError(f"checkpoint {path} holds weights that are not real floating-point numbers where the model "
                           f"has float weights: {_few(bad)}",
                           fix="save the model's float weights (float32, float16 or bfloat16) with "
                               "torch.save(model.state_dict(), path)")


def load_state_into(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Strictly load ``state`` into ``model``; on mismatch (keys, shapes, a floating weight given
    as integers, booleans or complex numbers), name the file and the keys."""
    own = model.state_dict()
    err = _mismatch(_shapes(own), state, path, type(model).__name__) or _kinds(own, state, path)
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

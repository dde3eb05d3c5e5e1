"""Checks every floor shares: numbers, choices, masks, latents, unit indices, concepts, and the
memory and time a request would take.

Each raises a :class:`~core.base.errors.GanatomyError` that names the argument (by its Python name,
e.g. ``n_samples``) and says how to fix it, before any work starts::

    n = check_int("n_samples", n_samples, 1)                  # a whole number >= 1
    lr = check_float("lr", lr, 0, lo_open=True)               # finite, > 0
    check_samples("n_samples", n, images_per_sample=3)        # refused when it would take days
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch

from core.base.errors import ArgumentTypeError, BudgetError, InputError, UnitIndexError, UnknownNameError

__all__ = ["check_device", "check_int", "check_float", "check_bool", "check_choice", "check_callable", "check_values",
           "check_mask", "check_alpha", "check_latents", "check_samples", "check_memory", "memory_limit",
           "format_bytes", "format_seconds", "unit_list", "check_units", "concept_index", "concept_mask",
           "concept_fraction", "IMAGES_PER_SECOND", "MAX_SECONDS"]

# A request is refused when it would take longer than MAX_SECONDS even at IMAGES_PER_SECOND (an
# optimistic rate for a small generator on a fast GPU: only requests that cannot finish are refused).
IMAGES_PER_SECOND = 2000
MAX_SECONDS = 24 * 3600


def _short(value) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _range_text(lo, hi, lo_open=False, hi_open=False) -> str:
    if lo is not None and hi is not None:
        if not lo_open and not hi_open:
            return f" from {lo} to {hi}"
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi}"
    return ""


def check_int(name: str, value, lo: int | None = None, hi: int | None = None, *, what: str | None = None,
              fix: str | None = None) -> int:
    """``value`` as an int in ``lo .. hi`` (whole floats such as ``2.0`` are accepted).

    Refused: booleans and non-numbers (:class:`ArgumentTypeError`; ``None`` and fractions are an
    :class:`InputError`), values outside the range (:class:`InputError`)."""
    what = what or f"a whole number{_range_text(lo, hi)}"
    fix = fix or (f"give {name} as a whole number{_range_text(lo, hi)}")
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = int(value)
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                         and not (isinstance(value, numbers.Integral))):
        if value is not None and math.isfinite(float(value)) and float(value) == round(float(value)):
            value = int(value)
        else:
            raise InputError(f"{name} must be {what}, got {_short(value)}", fix=fix)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__} {_short(value)}", fix=fix)
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{name} must be {what}, got {value}", fix=fix)
    return value


def check_float(name: str, value, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False, what: str | None = None, fix: str | None = None) -> float:
    """``value`` as a finite float in the range (``lo_open``/``hi_open``: the bound itself is out).

    Refused: booleans and non-numbers (:class:`ArgumentTypeError`), NaN, infinity and values
    outside the range (:class:`InputError`)."""
    rng = _range_text(lo, hi, lo_open, hi_open)
    what = what or f"a finite number{rng}"
    fix = fix or f"give {name} as a finite number{rng}"
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = float(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__} {_short(value)}", fix=fix)
    value = float(value)
    bad = not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) \
        or (hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        raise InputError(f"{name} must be {what}, got {value!r}", fix=fix)
    return value


def check_bool(name: str, value) -> bool:
    """``value`` as a bool (True/False, numpy bools); anything else is an :class:`ArgumentTypeError`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, got {type(value).__name__} {_short(value)}",
                            fix=f"pass {name}=True or {name}=False")


def check_choice(name: str, value, choices) -> str:
    """``value`` when it is one of ``choices``; else an :class:`UnknownNameError` listing them."""
    choices = list(choices)
    try:
        ok = value in choices
    except TypeError:                  # unhashable or incomparable
        ok = False
    if not ok:
        raise UnknownNameError(f"{name} must be one of {', '.join(map(str, choices))}, got {_short(value)}",
                               fix=f"choose {name} from: {', '.join(map(repr, choices))}")
    return value


def check_callable(name: str, value, allow_none: bool = True):
    """``value`` when it is callable (or None, when allowed)."""
    if (value is None and allow_none) or callable(value):
        return value
    raise ArgumentTypeError(f"{name} must be a function{' or None' if allow_none else ''}, "
                            f"got {type(value).__name__} {_short(value)}",
                            fix=f"pass {name} as a function (e.g. a lambda)")


def _as_tensor(name: str, value, what: str) -> torch.Tensor:
    """A numeric tensor of ``value`` (tensor, array, number or nested list); else ArgumentTypeError."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
    else:
        if isinstance(value, (str, bytes)) or value is None:
            raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__} {_short(value)}",
                                    fix=f"give {name} as numbers (a float, a list, an array or a tensor)")
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):
            a = np.asarray([], dtype=object)
        if a.dtype.kind not in "biuf":
            raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__} {_short(value)}",
                                    fix=f"give {name} as numbers (a float, a list, an array or a tensor)")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dtype == torch.bool:
        t = t.float()
    elif t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32,
                                                                       torch.int64, torch.uint8)):
        raise ArgumentTypeError(f"{name} must be {what}, got a tensor of {t.dtype}",
                                fix=f"give {name} as real numbers")
    return t


def check_values(name: str, value, n: int | None = None, *, allowed=None, what: str = "a number or one number "
                 "per unit") -> torch.Tensor:
    """``value`` as a flat float tensor of finite numbers, with 1 or ``n`` entries (or a length in
    ``allowed``). The result is detached (the caller keeps ``value`` itself for the computation)."""
    t = _as_tensor(name, value, what).reshape(-1)
    lengths = sorted(set(allowed if allowed is not None else ((1, n) if n is not None else ())))
    if t.numel() == 0 or (lengths and t.numel() not in lengths):
        want = " or ".join(str(x) for x in lengths) if lengths else "at least 1"
        raise InputError(f"{name} must be {what} ({want} values), got {t.numel()}",
                         fix=f"give {name} {want} values")
    t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{name} contains NaN or infinite values", fix=f"give {name} finite numbers")
    return t


def check_mask(name: str, mask, n: int | None = None) -> torch.Tensor:
    """A mask (H x W, N x H x W or N x 1 x H x W; bool or float coverage in [0, 1]) as a float
    tensor [N or 1, 1, H, W]; ``n``: the batch it is applied to (N must be 1 or ``n``)."""
    what = "a bool or float coverage mask H x W, N x H x W or N x 1 x H x W"
    m = _as_tensor(name, mask, what)
    shape = tuple(m.shape)
    m = m.float()
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[:, None]
    batch = f"N = 1 or {n} (the batch)" if n is not None else "N the batch or 1"
    if m.dim() != 4 or m.shape[1] != 1 or (n is not None and m.shape[0] not in (1, n)):
        raise InputError(f"{name} must be H x W, N x H x W or N x 1 x H x W with {batch}; got shape {shape}",
                         fix=f"give {name} as H x W (one mask for every sample) or one mask per sample")
    if m.numel() == 0:
        raise InputError(f"{name} is empty (shape {shape})", fix=f"give {name} at least one row and one column "
                         f"(any resolution: it is resized to the layer's grid)")
    if not bool(torch.isfinite(m).all()):
        raise InputError(f"{name} contains NaN or infinite values", fix=f"give {name} values in [0, 1]")
    lo, hi = float(m.min()), float(m.max())
    if lo < 0 or hi > 1:
        raise InputError(f"{name} values must lie in [0, 1] (bool or coverage fraction); got {lo:g} .. {hi:g}",
                         fix=f"scale or clip {name} to [0, 1]")
    return m


def check_alpha(name: str, alpha, n_units: int) -> torch.Tensor:
    """A per-unit strength: a number or one per unit, each finite and in [0, 1]."""
    a = check_values(name, alpha, n_units, what="a strength in [0, 1] or one per unit")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        raise InputError(f"{name} must lie in [0, 1] (1 = the full edit), got {lo:g} .. {hi:g}",
                         fix=f"give {name} values from 0 to 1")
    return a


def check_latents(name: str, z, z_dim: int | None) -> torch.Tensor:
    """``z``: a float tensor with at least one row and ``z_dim`` columns (N x z_dim, or N x z_dim x ...
    for generators that take a latent map), all finite. Returns ``z`` itself."""
    shape_text = f"N x {z_dim}" if z_dim else "N x z_dim"
    if not isinstance(z, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor of shape {shape_text}, got {type(z).__name__}",
                                fix=f"make {name} with torch.randn(n, {z_dim or 'G.z_dim'}) or "
                                    f"core.sampling.z_range(seed, 0, n, G.z_dim)")
    if not z.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a float tensor, got {z.dtype}", fix=f"use {name}.float()")
    if z.dim() < 2 or (z_dim and z.shape[1] != z_dim):
        raise InputError(f"{name} must have shape {shape_text}, got {tuple(z.shape)}",
                         fix=f"give {name} one row of {z_dim or 'z_dim'} numbers per sample")
    if z.shape[0] == 0:
        raise InputError(f"{name} has no rows (shape {tuple(z.shape)})", fix=f"give {name} at least one sample")
    if not bool(torch.isfinite(z.detach()).all()):
        raise InputError(f"{name} contains NaN or infinite values", fix=f"give {name} finite numbers")
    return z


# ----------------------------------------------------------------------------- budgets

def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.0f} {unit}" if n >= 10 * size else f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def format_seconds(s: float) -> str:
    if s >= 2 * 86400:
        return f"{s / 86400:,.0f} days"
    if s >= 2 * 3600:
        return f"{s / 3600:.0f} hours"
    if s >= 120:
        return f"{s / 60:.0f} minutes"
    return f"{s:.0f} seconds"


def check_samples(name: str, n, lo: int = 1, *, images_per_sample: float = 1.0, what: str | None = None,
                  fix: str | None = None) -> int:
    """``n`` as an int >= ``lo``, refused with a :class:`BudgetError` when the images it stands for
    (``n * images_per_sample`` generator passes) would take longer than :data:`MAX_SECONDS` even at
    :data:`IMAGES_PER_SECOND`; the message gives the estimate."""
    n = check_int(name, n, lo, what=what, fix=fix)
    seconds = n * images_per_sample / IMAGES_PER_SECOND
    if seconds > MAX_SECONDS:
        most = int(MAX_SECONDS * IMAGES_PER_SECOND / images_per_sample)
        raise BudgetError(f"{name}={n:,} would take about {format_seconds(seconds)} even at an optimistic "
                          f"{IMAGES_PER_SECOND:,} images/s ({n * images_per_sample:,.0f} images; limit "
                          f"{format_seconds(MAX_SECONDS)})", fix=f"lower {name} (at most about {most:,})")
    return n


def memory_limit(device=None) -> int:
    """Bytes a computation on ``device`` may use at most: the GPU's memory, or this machine's RAM."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(dev.index or 0).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def check_memory(what: str, nbytes: float, fix: str, device=None) -> None:
    """Refuse (:class:`BudgetError`) when ``what`` would need more than :func:`memory_limit` bytes."""
    limit = memory_limit(device)
    if nbytes > limit:
        raise BudgetError(f"{what} would need about {format_bytes(nbytes)} of memory, more than the "
                          f"{format_bytes(limit)} of this {'GPU' if 'cuda' in str(device) else 'machine'}", fix=fix)


# ----------------------------------------------------------------------------- units and concepts

def _parse_units(units, what: str) -> list[int]:
    if isinstance(units, torch.Tensor):
        units = np.asarray(units.cpu()) if units.dtype == torch.bool else units.tolist()
    if isinstance(units, (str, bytes)) or (isinstance(units, (list, tuple)) and
                                          any(isinstance(u, (str, bytes)) for u in units)):
        raise InputError(f"{what} must be integers, got {_short(units)}", fix="give unit indices as ints, e.g. [3, 17]")
    try:
        raw = np.asarray(units if units is not None else [])
        if raw.dtype == bool:
            raise InputError(f"{what} must be integers, not booleans, got {_short(units)}",
                             fix="for a boolean mask of units give np.nonzero(mask)[0]")
        arr = raw.astype(np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{what} must be integers, got {_short(units)}",
                         fix="give unit indices as ints, e.g. [3, 17]") from None
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise InputError(f"{what} must be whole numbers, got {_short(units)}",
                         fix="give unit indices as ints (they are not rounded)")
    return [int(u) for u in arr]


def unit_list(units, what: str = "unit indices") -> list[int]:
    """``units`` (ints, an int array or tensor) as a list of ints >= 0, for when the layer's size is
    not known yet; refused when it holds strings, booleans, fractions, non-finite or negative values
    (an empty list is returned as such: the caller says what an empty list means)."""
    out = _parse_units(units, what)
    neg = [u for u in out if u < 0]
    if neg:
        raise UnitIndexError(f"{what} {neg} are negative", fix="unit indices count from 0")
    return out


def check_units(units, n_units: int, layer: str, what: str = "unit indices") -> list[int]:
    """``units`` as a list of ints, each in ``0 .. n_units-1`` of ``layer``; refused otherwise."""
    out = _parse_units(units, what)
    if not out:
        raise InputError(f"the unit list is empty: give at least one unit index of {layer!r} (0..{n_units - 1})")
    bad = [u for u in out if u < 0 or u >= n_units]
    if bad:
        raise UnitIndexError(f"{what} {bad} out of range for layer {layer!r} with {n_units} units "
                             f"(valid: 0..{n_units - 1})")
    return out


def concept_index(segmenter, concept) -> int:
    """The label index of ``concept`` (a name or an index > 0) in ``segmenter.labels``."""
    labels = list(segmenter.labels)
    if isinstance(concept, (int, np.integer)) and not isinstance(concept, (bool, np.bool_)):
        if 0 < concept < len(labels):
            return int(concept)
    elif isinstance(concept, str) and concept in labels and concept != labels[0]:
        return labels.index(concept)
    raise UnknownNameError(f"unknown concept {concept!r}; the segmenter knows: {', '.join(labels[1:])}",
                           fix="give concept as one of those names")


def concept_mask(segmenter, images: torch.Tensor, c: int) -> torch.Tensor:
    """Bool N x H x W: where the segmenter labels ``c`` (in any channel of a multi-label one)."""
    hit = segmenter.segment(images) == c
    return hit.any(1) if hit.dim() == 4 else hit


def concept_fraction(segmenter, images: torch.Tensor, c: int) -> torch.Tensor:
    """Per image: fraction of pixels the segmenter labels ``c`` (hard labels)."""
    return concept_mask(segmenter, images, c).float().mean((1, 2))


def check_device(name: str, device, cpu: str) -> torch.device | None:
    """``device`` as a torch device that exists on this machine (None stays None). ``name`` is how
    the caller spells the argument (``device``, ``--device``), ``cpu`` how it asks for the CPU
    (``device='cpu'``, ``--device cpu``): the fix says that."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{name}: {device!r} is not a torch device",
                         fix=f"give {cpu}, or a CUDA device such as cuda:1") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{name}: {device!r}, but CUDA is not available on this machine", fix=f"use {cpu}")
    return dev


def unit_set(units, what: str, layer: str, n_units: int | None = None, allow_empty: bool = True) -> list[int]:
    """``units`` as sorted distinct ints >= 0 (and < ``n_units`` when known) of ``layer``: a set of
    units someone chose (flags, the units a repair ablates); refused otherwise, naming ``what``."""
    if units is None:
        units = []
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        units = [units]
    if isinstance(units, torch.Tensor):
        units = units.reshape(-1).tolist()
    if isinstance(units, np.ndarray):
        units = units.reshape(-1).tolist()
    if isinstance(units, (str, bytes, dict)) or not isinstance(units, (list, tuple, set, frozenset, range)):
        raise InputError(f"{what} must be a list of unit indices (integers), got {type(units).__name__} {units!r}",
                         fix=f"pass {what} as a list of integers, e.g. [3, 17]")
    out = set()
    for u in units:
        ok = isinstance(u, (int, np.integer)) and not isinstance(u, bool)
        if not ok and isinstance(u, (float, np.floating)) and np.isfinite(u) and float(u).is_integer():
            ok = True
        if not ok:
            raise InputError(f"{what} must be whole numbers, got {u!r} in {units!r}",
                             fix=f"pass {what} as a list of integers, e.g. [3, 17]")
        if u < 0:
            raise UnitIndexError(f"{what}: {int(u)} is negative; unit indices of layer {layer!r} start at 0",
                                 fix=f"pass {what} as indices 0.." + (f"{n_units - 1}" if n_units else "n-1"))
        out.add(int(u))
    if not out and not allow_empty:
        raise InputError(f"{what} is empty: no units to ablate", fix="flag at least one unit, e.g. units=[3]")
    if n_units is not None and (bad := sorted(u for u in out if u >= n_units)):
        raise UnitIndexError(f"{what} {bad} out of range for layer {layer!r} with {n_units} units "
                             f"(valid: 0..{n_units - 1})", fix=f"pass {what} within 0..{n_units - 1}")
    return sorted(out)


def options_of(cls, options, option_kw: dict, what: str):
    """A measurement's options (a dataclass ``cls``) from ``options=`` or from keywords, not both;
    unknown keywords refused with the list of known ones. ``what``: the measurement's name."""
    option_kw = option_kw or {}
    if options is not None and option_kw:
        raise ArgumentTypeError(f"pass {what}'s options either as options= or as keywords, not both",
                                fix="give options= or the option keywords, not both")
    if options is not None and not isinstance(options, cls):
        raise ArgumentTypeError(f"options must be a {cls.__name__}, got {type(options).__name__}",
                                fix=f"pass options=core.{cls.__name__}(...) or the options as keywords")
    names = list(cls.__dataclass_fields__)
    unknown = sorted(set(option_kw) - set(names))
    if unknown:
        raise UnknownNameError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} of {what}",
                               fix=f"options are: {', '.join(names)}")
    return options or cls(**option_kw)

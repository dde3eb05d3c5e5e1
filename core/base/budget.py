"""The size budget a model file must fit before anything is built from it.

A checkpoint's tensors can claim far more than the file stores (a 2 KB file can hold a stride-0
view of shape 5000 x 5000 x 4 x 4), and a loader that reads its layer widths from shapes or
from a ``config.json`` would build whatever they claim. So every loader first compares what a
file claims with a budget, and refuses beyond it with a :class:`BudgetError` naming the file,
the claimed size, the budget and how to raise it:

- ``max_params``: values in the file's tensors, and parameters plus buffers of the model its
  shapes or config describe;
- ``max_bytes``: the same in bytes (tensors at their stored dtype; the model in float32, plus
  one image's feature maps for a generator, which bounds its resolution).

The budget is, in order: the arguments of a loader (``max_params=``, ``max_bytes=``, through
:func:`size_limits`), ``$GANATOMY_MAX_PARAMS`` / ``$GANATOMY_MAX_BYTES``, then the defaults,
sized for the published models with headroom (the largest, SegFormer-B5, has 85 M parameters,
BigGAN-deep-512 56 M, StyleGAN2 1024 px 30 M, ProGAN LSUN 23 M).
"""
from __future__ import annotations

import contextlib
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass

from core.base.errors import ArgumentTypeError, BudgetError, InputError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PARAMS",
    "ENV_BYTES",
    "ENV_PARAMS",
    "MODULE_BYTES",
    "SizeBudget",
    "check_model",
    "check_size",
    "human_bytes",
    "size_budget",
    "size_limits",
]

ENV_PARAMS = "GANATOMY_MAX_PARAMS"
ENV_BYTES = "GANATOMY_MAX_BYTES"
DEFAULT_MAX_PARAMS = 500_000_000          # ~6x SegFormer-B5 (85 M); a StyleGAN2 1024 training checkpoint
                                          # (G, D, G_ema and Adam states) holds ~270 M values
DEFAULT_MAX_BYTES = 4 * 2 ** 30           # 4 GiB: StyleGAN2 1024 px with one image's feature maps ~0.95 GB


@dataclass(frozen=True)
class SizeBudget:
    max_params: int
    max_bytes: int


_ACTIVE: ContextVar[SizeBudget | None] = ContextVar("ganatomy_size_budget", default=None)

_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12,
          "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40, "b": 1}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def _from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    m = _NUMBER.match(raw)
    value = float(m.group(1)) * _UNITS[m.group(2).lower()] if m and m.group(2).lower() in _UNITS else 0
    if not value >= 1:
        raise InputError(f"${name}={raw!r} is not a positive size: set it to a number such as 500000000, "
                         "5e8, 500M or (for bytes) 4GiB, or unset it for the default")
    return int(value)


def _checked(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r:.40}")
    if not value >= 1:
        raise InputError(f"{name} must be a positive number, got {value!r}: give e.g. {name}=5e8")
    return int(value)


def size_budget(max_params: int | None = None, max_bytes: int | None = None) -> SizeBudget:
    """The budget in force: the arguments, else the active :func:`size_limits`, else the
    environment (``$GANATOMY_MAX_PARAMS``, ``$GANATOMY_MAX_BYTES``), else the defaults."""
    max_params, max_bytes = _checked(max_params, "max_params"), _checked(max_bytes, "max_bytes")
    active = _ACTIVE.get()
    if max_params is None:
        max_params = active.max_params if active else _from_env(ENV_PARAMS, DEFAULT_MAX_PARAMS)
    if max_bytes is None:
        max_bytes = active.max_bytes if active else _from_env(ENV_BYTES, DEFAULT_MAX_BYTES)
    return SizeBudget(max_params, max_bytes)


@contextlib.contextmanager
def size_limits(max_params: int | None = None, max_bytes: int | None = None):
    """Within the block, loaders check against this budget (None: the one already in force)."""
    token = _ACTIVE.set(size_budget(max_params, max_bytes))
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


def human_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"     # pragma: no cover


def _count(n: int) -> str:
    return f"{n:,}" if n < 10 ** 15 else f"{float(n):.2e}"


def _above(n: int) -> str:
    """A round figure above ``n`` for the fix (2 significant digits, rounded up)."""
    digits = max(len(str(int(n))) - 2, 0)
    step = 10 ** digits
    return str(-(-int(n) // step) * step)


def check_size(source: str, what: str, params: int, nbytes: int, budget: SizeBudget | None = None) -> None:
    """Raise :class:`BudgetError` when ``params`` or ``nbytes`` exceed the budget.

    ``source`` names the user's file (``"checkpoint /x/g.pt"``), ``what`` the claim (``"its tensors
    claim"``, ``"the ProGAN its shapes describe needs"``)."""
    b = budget or size_budget()
    params, nbytes = int(params), int(nbytes)
    if params <= b.max_params and nbytes <= b.max_bytes:
        return
    over = []
    if params > b.max_params:
        over.append(f"{ENV_PARAMS}={_above(params)}")
    if nbytes > b.max_bytes:
        over.append(f"{ENV_BYTES}={_above(nbytes)}")
    raise BudgetError(
        f"{source} was refused before loading: {what} {_count(params)} parameters ({human_bytes(nbytes)}), "
        f"beyond the size budget of {_count(b.max_params)} parameters and {human_bytes(b.max_bytes)}",
        fix=f"if the model is genuine, raise the budget: set {' '.join(over)} in the environment, or pass "
            "max_params= / max_bytes= when loading; otherwise the file is corrupt or hostile: do not use it")


MODULE_BYTES = 16_384      # Python objects per torch module (its dicts, hooks, Parameter wrappers), roughly


def check_model(source: str, what: str, params: int, buffers: int = 0, features: int = 0, modules: int = 0,
                budget: SizeBudget | None = None) -> None:
    """Refuse a model described by a file before it is built: ``params`` + ``buffers`` against
    ``max_params``; their float32 bytes, ``features`` (values of one image's feature maps, for a
    generator) and ``modules`` (Python objects) against ``max_bytes``."""
    nbytes = 4 * (params + buffers) + 4 * features + MODULE_BYTES * modules
    check_size(source, f"{what} needs", params + buffers, nbytes, budget)

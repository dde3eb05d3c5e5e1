"""Sessions sharing one accelerator: long jobs take turns, batches fit the free memory, and running
out of memory is a clear error.

Every long computation of the engine (dissection, ACE, ablation curves, the context study, unit
FID, repair, the removal table) runs inside :func:`long_job` for its model's device: at most
``$GANATOMY_GPU_JOBS`` (default 1) of them compute on one CUDA device at a time, the others wait
their turn instead of running each other out of memory. On the CPU there is no limit unless
``$GANATOMY_CPU_JOBS`` sets one. Quick what-ifs (``generate``) never take a turn, so they never
wait behind a long job. A nested long job (ACE dissecting first) runs in its caller's turn."""
from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from typing import Callable

import torch

from core.base.devices import module_device
from core.base.errors import BudgetError, InputError

__all__ = ["JOBS_ENV", "CPU_JOBS_ENV", "ADMINS_ENV", "job_limit", "long_job", "long_computation", "fit_batch",
           "is_out_of_memory", "busy", "admins", "may_change"]

JOBS_ENV = "GANATOMY_GPU_JOBS"
CPU_JOBS_ENV = "GANATOMY_CPU_JOBS"
ADMINS_ENV = "GANATOMY_ADMINS"


def admins() -> set[str]:
    """The display names that may change anyone's work (``$GANATOMY_ADMINS``, comma separated)."""
    return {" ".join(a.split()) for a in os.environ.get(ADMINS_ENV, "").split(",") if a.strip()}


def may_change(owner: str | None, by: str | None) -> bool:
    """Whether ``by`` may replace, remove or unflag what ``owner`` added: the owner (display names
    compared with their spaces collapsed) or an admin. A shared server without login knows only the
    names sessions give themselves: this keeps users from undoing each other's work by accident; with
    ``GANATOMY_LOGIN=1`` the names come from the login."""
    norm = lambda x: " ".join(str(x or "").split()) or "anonymous"      # noqa: E731
    return norm(owner) == norm(by) or norm(by) in admins()

_LOCK = threading.Lock()
_SLOTS: dict[tuple[str, int], tuple[int, threading.Semaphore]] = {}
_RUNNING: dict[str, int] = {}
_HELD = threading.local()


def job_limit(device) -> int:
    """How many long jobs may compute on ``device`` at once (0: no limit)."""
    dev = torch.device(device)
    env = JOBS_ENV if dev.type == "cuda" else CPU_JOBS_ENV
    raw = os.environ.get(env, "").strip()
    if not raw:
        return 1 if dev.type == "cuda" else 0
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"${env}={raw!r} is not a number of jobs", fix=f"set {env} to a whole number >= 0 "
                         "(0: no limit)")
    return n


def _key(device) -> str:
    dev = torch.device(device)
    return f"{dev.type}:{dev.index or 0}" if dev.type == "cuda" else dev.type


def busy(device) -> int:
    """Long jobs computing on ``device`` now (all sessions of this process)."""
    return _RUNNING.get(_key(device), 0)


def _semaphore(device, limit):
    key = _key(device)
    with _LOCK:
        have = _SLOTS.get((key, limit))
        if have is None:
            have = _SLOTS[(key, limit)] = (limit, threading.Semaphore(limit))
        return have[1]


def is_out_of_memory(exc: BaseException) -> bool:
    """An accelerator's out-of-memory error, or the CPU allocator's."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


@contextmanager
def long_job(device, what: str = "a computation", on_wait: Callable[[int], None] | None = None,
             fix: str = "lower batch_size="):
    """Run the block in one of ``device``'s turns (see the module's docstring); ``on_wait(n_busy)``
    is called once when the turn is not free at once. Out of memory inside becomes a
    :class:`~core.base.errors.BudgetError` that names ``what``, the device and the fix."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = _key(dev)
    held = getattr(_HELD, "keys", None)
    if held is None:
        held = _HELD.keys = []
    limit = job_limit(dev)
    sem = _semaphore(dev, limit) if limit and key not in held else None
    if sem is not None and not sem.acquire(blocking=False):
        if on_wait:
            on_wait(busy(dev))
        sem.acquire()
    held.append(key)
    with _LOCK:
        _RUNNING[key] = _RUNNING.get(key, 0) + 1
    try:
        yield
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        raise BudgetError(f"{what} ran out of memory on {dev} ({busy(dev)} long job(s) computing there)",
                          fix=f"{fix}; or set {JOBS_ENV}=1 so that long jobs take turns on the card; or "
                              f"compute on another device (GANATOMY_DEVICE, device=)") from None
    finally:
        with _LOCK:
            _RUNNING[key] -= 1
        held.remove(key)
        if sem is not None:
            sem.release()


def _device_of_first(arg):
    if isinstance(arg, dict):
        arg = next(iter(arg.values()), None)
    return module_device(arg) or torch.device("cpu")


def long_computation(what: str, fix: str = "lower batch_size="):
    """Decorator: the function (whose first argument is the model, or a dict of models) runs as
    a :func:`long_job` on that model's device."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            first = args[0] if args else next(iter(kwargs.values()), None)
            with long_job(_device_of_first(first), what, fix=fix):
                return fn(*args, **kwargs)
        return run
    return wrap


def fit_batch(device, requested: int, bytes_per_item: float, share: float = 0.5) -> int:
    """``requested``, lowered on a CUDA device so that a batch takes at most ``share`` of the memory
    free now (at least 1); unchanged on the CPU."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available() or bytes_per_item <= 0:
        return requested
    free, _ = torch.cuda.mem_get_info(dev)
    return max(1, min(requested, int(free * share // bytes_per_item)))

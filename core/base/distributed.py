"""Sharding across ``torch.distributed`` processes (``torchrun``), in one place.

Every sharded measurement splits its batches the same way (batch ``b`` to process ``b % world``),
so each batch is computed exactly as in a single process, and merges them exactly: sums are summed
in float64, per-sample results are gathered back into sample order. A measurement that runs inside
a job that is itself one of several sharded jobs (the removal table gives each process whole
(generator, concept) jobs) runs under :func:`local`, where it sees one process."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

__all__ = ["rank_world", "local", "batches", "all_sum", "gather_batches", "gather_objects"]

_LOCAL = threading.local()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside ``torch.distributed`` or under :func:`local`."""
    if getattr(_LOCAL, "depth", 0) or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


@contextmanager
def local():
    """Inside, measurements run unsharded in this process (for jobs already split across processes)."""
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        yield
    finally:
        _LOCAL.depth -= 1


def batches(n: int, batch_size: int):
    """This process's ``(start, stop)`` batches of ``0 .. n-1``."""
    rank, world = rank_world()
    n_batches = (n + batch_size - 1) // batch_size
    for b in range(rank, n_batches, world):
        yield b * batch_size, min(n, (b + 1) * batch_size)


def all_sum(values, device=None):
    """A list or dict of numbers summed over processes (float64; unchanged in one process)."""
    _, world = rank_world()
    if world == 1:
        return values
    keys = list(values) if isinstance(values, dict) else None
    flat = [values[k] for k in keys] if keys is not None else list(values)
    t = torch.tensor([float(v) for v in flat], dtype=torch.float64, device=device or "cpu")
    torch.distributed.all_reduce(t)
    out = t.cpu().tolist()
    return dict(zip(keys, out)) if keys is not None else out


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order ([obj] in one process)."""
    _, world = rank_world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def gather_batches(parts: list, n: int, batch_size: int) -> torch.Tensor:
    """This process's per-batch CPU tensors (in the order :func:`batches` gave them) gathered from
    every process and concatenated in sample order: the tensor one process would have built."""
    rank, world = rank_world()
    if world == 1:
        return torch.cat(parts)
    every = gather_objects(parts)
    n_batches = (n + batch_size - 1) // batch_size
    return torch.cat([every[b % world][b // world] for b in range(n_batches)])

"""Deterministic latent codes: sample ``i`` of seed ``s`` is the same vector however the
samples are batched or sharded, so any result (a top-k strip, a per-unit FID set) can be
regenerated from ``(seed, index)`` alone."""
from __future__ import annotations

import numpy as np
import torch

from core.base.errors import UnknownNameError
from core.base.validate import check_int

__all__ = ["z_range", "z_at", "BLOCK", "STREAMS", "stream_seed", "OMISSIONS_SEED", "OMISSIONS_REAL_SEED"]

BLOCK = 256  # codes are drawn in blocks of this many, each block from its own generator

# Seed streams: which draw uses which seed. A measurement called with ``seed=s`` draws its own
# images from ``z_range(s, ...)``; a measurement that needs a second, independent draw takes it
# from a named stream of ``s`` below, never from an offset written at the call. The same call
# with the same seed therefore draws the same samples with or without the cache.
#
#   stream              seed of the draw       used by
#   ace.pool            s + 101                ACE's location pool (the steps' choices: numpy rng(s))
#   curve.over_seeds    1000 + s               curve_over_seeds: the images of seed s's ablation curve
#   removal.over_seeds  5 + 1000 * s           removal_over_seeds: the images of seed s's removal table
#   repair.random       s + 1                  repair_table: the random units compared with the flagged
#   omissions.floor     s + 1000               omissions: the second real draw (the real-vs-real floor) of
#                                              real seed s
#
# Omissions (what a generator leaves out) compare generated images of seed OMISSIONS_SEED with real
# images of seed OMISSIONS_REAL_SEED (the reference's seeds 1 and 2), and those with the real draw of
# stream omissions.floor.
#
# Measurements that take their inputs from the shared, cached measurements of the model do not
# derive them from their own seed: ACE's initial IoU is the layer's dissection (seed 0, the
# Dissect page's) and its insertion constants those of seed 1 (the Paint page's), whatever
# ACE's seed, so ACE with and without the cache starts from the same place.
STREAMS = {"ace.pool": (1, 101), "curve.over_seeds": (1, 1000), "removal.over_seeds": (1000, 5),
           "repair.random": (1, 1), "omissions.floor": (1, 1000)}
DISSECT_SEED = 0           # the dissection every page shares (and ACE's initial IoU)
INSERTION_SEED = 1         # the insertion constants every page shares
OMISSIONS_SEED = 1         # the generated images of the omission statistics
OMISSIONS_REAL_SEED = 2    # their real images (the floor: stream omissions.floor of it)


def stream_seed(seed: int, stream: str) -> int:
    """The seed of draw ``stream`` of a measurement called with ``seed`` (see ``STREAMS``)."""
    seed = check_int("seed", seed)
    if stream not in STREAMS:
        raise UnknownNameError(f"unknown seed stream {stream!r}", fix=f"streams are: {', '.join(STREAMS)}")
    times, plus = STREAMS[stream]
    return times * seed + plus


def _block(seed: int, b: int, z_dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(b) * 7_919 + 12_345) % (2 ** 63))
    return torch.randn(BLOCK, z_dim, generator=g, device="cpu")   # drawn on the CPU: the same on every device


def z_range(seed: int, start: int, stop: int, z_dim: int, device="cpu") -> torch.Tensor:
    """Codes of samples ``start .. stop-1`` of ``seed`` (float32, on ``device``)."""
    seed, start, stop = check_int("seed", seed), check_int("start", start, 0), check_int("stop", stop)
    z_dim = check_int("z_dim", z_dim, 1)
    if stop <= start:
        return torch.zeros(0, z_dim, device=device)
    b0, b1 = start // BLOCK, (stop - 1) // BLOCK
    z = torch.cat([_block(seed, b, z_dim) for b in range(b0, b1 + 1)])
    return z[start - b0 * BLOCK: stop - b0 * BLOCK].to(device)


def z_at(seed: int, indices, z_dim: int, device="cpu") -> torch.Tensor:
    """Codes of arbitrary sample indices (any order, repeats allowed)."""
    seed, z_dim = check_int("seed", seed), check_int("z_dim", z_dim, 1)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        return torch.zeros(0, z_dim, device=device)
    out = torch.empty(idx.size, z_dim, device="cpu")
    blocks = idx // BLOCK
    for b in np.unique(blocks):
        sel = np.nonzero(blocks == b)[0]
        out[torch.from_numpy(sel)] = _block(seed, int(b), z_dim)[torch.from_numpy(idx[sel] - b * BLOCK)]
    return out.to(device)

"""Deterministic latent codes: sample ``i`` of seed ``s`` is the same vector however the
samples are batched or sharded, so any result (a top-k strip, a per-unit FID set) can be
regenerated from ``(seed, index)`` alone."""
from __future__ import annotations

import numpy as np
import torch

from core.base.validate import check_int

__all__ = ["z_range", "z_at", "BLOCK"]

BLOCK = 256  # codes are drawn in blocks of this many, each block from its own generator


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

"""Tracing (paper S-6.5): how an edit at one layer changes every later layer."""
from __future__ import annotations

import pandas as pd
import torch

from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError
from core.base.hooks import layer_names, resolve_layers
from core.base.protocols import check_generator
from core.base.sampling import z_range
from core.base.validate import check_int, check_latents, check_samples
from core.engine.intervention import Edit, check_edits, generate

__all__ = ["channel_scales", "trace_effect"]


@torch.no_grad()
def channel_scales(generator, layers, n_samples: int = 64, seed: int = 9, batch_size: int = 32):
    """Mean |activation| per channel of each layer (the tracing normaliser; no layers: {})."""
    layers = resolve_layers(generator, layers) if isinstance(layers, str) or list(layers) else []
    n_samples = check_samples("n_samples", n_samples, 1)
    seed, batch_size = check_int("seed", seed), check_int("batch_size", batch_size, 1)
    if not layers:
        return {}
    dev = device_of(generator)
    acc: dict[str, torch.Tensor] = {}
    for a in range(0, n_samples, batch_size):
        z = z_range(seed, a, min(n_samples, a + batch_size), generator.z_dim, dev)
        _, cap = generate(generator, z, capture=layers)
        for name in layers:
            s = cap[name].abs().float().mean((2, 3)).sum(0)
            acc[name] = acc.get(name, 0) + s
    return {k: (v / n_samples).clamp(min=1e-8) for k, v in acc.items()}


@torch.no_grad()
def trace_effect(generator, edit: Edit, z: torch.Tensor, scales: dict | None = None):
    """Change in every layer after ``edit.layer`` caused by ``edit``: per layer, the mean over
    channels of |r' − r| / mean|r| (averaged over space and samples), plus the effect map
    [n, h, w] at the last traced layer. Returns (DataFrame[layer, change], map)."""
    check_generator(generator, probe=False)
    if not isinstance(edit, Edit):
        raise ArgumentTypeError(f"edit must be one Edit, got {type(edit).__name__}",
                                fix="e.g. edit=core.Edit('layer4', [3, 17])")
    check_latents("z", z, generator.z_dim)
    check_edits(generator, [edit], z.shape[0])
    names = layer_names(generator)
    later = names[names.index(edit.layer) + 1:] if edit.layer in names else []
    if not later:
        raise InputError(f"no layers after {edit.layer!r} to trace", fix="edit an earlier layer: "
                         f"{', '.join(names[:-1])}")
    if scales is not None:
        if not isinstance(scales, dict):
            raise ArgumentTypeError(f"scales must be a dict {{layer: per-channel scale}}, got {type(scales).__name__}",
                                    fix="use channel_scales(generator, layers) or None")
        missing = [n for n in later if n not in scales]
        if missing:
            raise InputError(f"scales has no entry for {', '.join(missing)}",
                             fix="use channel_scales(generator, layers) for every layer after the edit, or None")
    scales = scales or channel_scales(generator, later)
    _, a = generate(generator, z, capture=later)
    _, b = generate(generator, z, [edit], capture=later)
    rows = []
    for name in later:
        d = (b[name] - a[name]).abs().float() / scales[name].view(1, -1, 1, 1)
        rows.append({"layer": name, "change": float(d.mean())})
    last = later[-1]
    emap = ((b[last] - a[last]).abs().float() / scales[last].view(1, -1, 1, 1)).mean(1)
    return pd.DataFrame(rows), emap.cpu().numpy()

"""Images for people: unit strips (top-activating samples, darkened outside the unit's
thresholded mask, with its outline), PNG/base64 helpers. No UI framework here."""
from __future__ import annotations

import base64
import io

import numpy as np
import torch
import torch.nn.functional as F

from core.base.devices import device_of
from core.base.errors import InputError
from core.base.hooks import Trace, resolve_layers
from core.base.sampling import z_at, z_range
from core.base.validate import check_choice, check_int, check_samples, unit_list
from core.engine.tally import GEOMETRIES

__all__ = ["to_uint8", "unit_masks", "overlay", "unit_strips", "signed_change", "png_bytes", "data_uri",
           "activation_histograms"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def unit_masks(acts: torch.Tensor, thresholds, size: int, geometry: str = "half-pixel") -> torch.Tensor:
    """acts [N, U, h, w], thresholds [U] -> bool masks [N, U, size, size]: bilinear in the
    dissection's geometry (``"half-pixel"``: centres at half pixels, border padding, the 2018
    code's; ``"aligned-corners"``: a dissection made with that option)."""
    check_choice("geometry", geometry, GEOMETRIES)
    up = F.interpolate(acts.float(), size=(size, size), mode="bilinear", align_corners=geometry == "aligned-corners")
    t = torch.as_tensor(np.asarray(thresholds, dtype=np.float32), device=up.device).view(1, -1, 1, 1)
    return up > t


def overlay(image: np.ndarray, mask: np.ndarray, dim: float = 0.25,
            outline=(255, 214, 10)) -> np.ndarray:
    """Darken ``image`` [H, W, 3] outside ``mask`` [H, W] and draw the mask's outline."""
    out = image.astype(np.float32)
    out[~mask] *= dim
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = mask & ~inner
    out[edge] = outline
    return out.round().astype(np.uint8)


@torch.no_grad()
def unit_strips(generator, layer: str, units, thresholds, sample_index: np.ndarray, seed: int,
                batch_size: int = 32, gap: int = 2, basis=None, geometry: str = "half-pixel") -> dict[int, np.ndarray]:
    """One strip per unit: its top samples side by side (uint8 [H, k*(W+gap)-gap, 3]).
    ``sample_index[j]`` are the sample indices for ``units[j]``; one generator pass serves all.
    ``basis``: ``units`` are that basis's features (masks from their feature maps). ``geometry``:
    the dissection's (:func:`unit_masks`)."""
    check_choice("geometry", geometry, GEOMETRIES)
    layer = resolve_layers(generator, [layer])[0]
    units = unit_list(units, "units")
    if len(np.asarray(thresholds).reshape(-1)) != len(units):
        raise InputError(f"thresholds has {len(np.asarray(thresholds).reshape(-1))} values for {len(units)} units",
                         fix="give one threshold per unit")
    check_int("seed", seed)
    check_int("batch_size", batch_size, 1)
    check_int("gap", gap, 0)
    idx = np.asarray(sample_index).reshape(len(units), -1)
    uniq = np.unique(idx[idx >= 0])
    dev = device_of(generator)
    imgs, acts = {}, {}
    for a in range(0, len(uniq), batch_size):
        chunk = uniq[a:a + batch_size]
        with Trace(generator, capture=[layer]) as tr:
            im = generator(z_at(seed, chunk, generator.z_dim, dev))
        r = tr[layer] if basis is None else basis.encode(tr[layer])
        for j, s in enumerate(chunk):
            imgs[int(s)] = im[j]
            acts[int(s)] = r[j]
    out = {}
    for j, u in enumerate(units):
        tiles = []
        for s in idx[j]:
            if s < 0:
                continue
            im = imgs[int(s)]
            m = unit_masks(acts[int(s)][None, u:u + 1], [thresholds[j]], im.shape[-1], geometry)[0, 0].cpu().numpy()
            tiles.append(overlay(to_uint8(im[None])[0], m))
        if not tiles:
            continue
        h = tiles[0].shape[0]
        sep = np.full((h, gap, 3), 255, np.uint8)
        row = [tiles[0]]
        for t in tiles[1:]:
            row += [sep, t]
        out[u] = np.concatenate(row, 1)
    return out


def signed_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per pixel, the edit's change of brightness (mean over RGB of ``after - before``) in
    [-1, 1]: 0 where nothing changed, for a diverging colour map centred on zero."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape or before.ndim != 3 or before.shape[-1] != 3:
        raise InputError(f"signed_change: before {before.shape} and after {after.shape} must be two [h, w, 3] images",
                         fix="pass one image before and the same image after the edit (uint8 RGB)")
    return (after.astype(np.float32) - before.astype(np.float32)).mean(-1) / 255.0


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    scale = check_int("scale", scale, 1, 64)
    from PIL import Image
    im = Image.fromarray(image)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def data_uri(image: np.ndarray, scale: int = 1) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, scale)).decode()


@torch.no_grad()
def activation_histograms(generator, layer: str, n_samples: int = 64, seed: int = 0, bins: int = 40,
                          batch_size: int = 32, basis=None):
    """Histogram of every unit's activations over all featuremap locations of ``n_samples``
    samples of ``seed``: (counts [U, bins] int64, edges [U, bins + 1] float64), each unit
    binned between its own minimum and maximum. One generator pass serves all units.
    ``basis``: of that basis's features (their encoder activations)."""
    layer = resolve_layers(generator, [layer])[0]
    n_samples = check_samples("n_samples", n_samples, 1)
    check_int("seed", seed)
    bins = check_int("bins", bins, 1, 100_000)
    batch_size = check_int("batch_size", batch_size, 1)
    dev = device_of(generator)
    acts = []
    for a in range(0, n_samples, batch_size):
        with Trace(generator, capture=[layer]) as tr:
            generator(z_range(seed, a, min(n_samples, a + batch_size), generator.z_dim, dev))
        r = tr[layer].float() if basis is None else basis.encode(tr[layer].float())
        acts.append(r.transpose(0, 1).reshape(r.shape[1], -1).cpu())
    x = torch.cat(acts, 1).double()                               # [U, n * h * w]
    lo, hi = x.amin(1), x.amax(1)
    hi = torch.where(hi > lo, hi, lo + 1e-6)
    idx = ((x - lo[:, None]) / (hi - lo)[:, None] * bins).floor().clamp(0, bins - 1).long()
    u = x.shape[0]
    counts = torch.zeros(u, bins, dtype=torch.int64, device=x.device)
    counts.scatter_add_(1, idx, torch.ones_like(idx))
    edges = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, bins + 1, dtype=torch.float64,
                                                              device=x.device)[None]
    return counts.numpy(), edges.numpy()

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

__all__ = ["to_uint8", "unit_masks", "overlay", "unit_strips", "classifier_unit_strips", "signed_change",
           "png_bytes", "data_uri", "activation_histograms",
           "heat_overlay", "side_by_side"]


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
    return _strips(units, idx, imgs, acts, thresholds, geometry, gap)


def _strips(units, idx, imgs, acts, thresholds, geometry, gap, decorate=None) -> dict[int, np.ndarray]:
    """Per unit ``units[j]``: its images ``idx[j]`` (-1 skipped) darkened outside its mask (``acts``
    thresholded at ``thresholds[j]``, upsampled in ``geometry``), ``decorate(tile, j, s)`` applied, side by side."""
    out = {}
    for j, u in enumerate(units):
        tiles = []
        for s in idx[j]:
            if s < 0:
                continue
            im = imgs[int(s)]
            m = unit_masks(acts[int(s)][None, u:u + 1], [thresholds[j]], im.shape[-1], geometry)[0, 0].cpu().numpy()
            tile = overlay(to_uint8(im[None])[0], m)
            tiles.append(tile if decorate is None else decorate(tile, j, int(s)))
        if tiles:
            out[u] = side_by_side(tiles, gap)
    return out


def _outline(image: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """``image`` [H, W, 3] uint8 with the outline of ``mask`` [H, W] drawn in ``colour``."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    out = image.copy()
    out[mask & ~inner] = colour
    return out


@torch.no_grad()
def classifier_unit_strips(model, probe, layer: str, units, thresholds, probe_index: np.ndarray,
                           gap: int = 2, geometry: str = "half-pixel", concepts=None,
                           concept_outline=(0, 229, 255)) -> dict[int, np.ndarray]:
    """A classifier's :func:`unit_strips`: per unit, its top probe images (``probe_index[j]`` for
    ``units[j]``, e.g. :meth:`ClassifierDissection.topk`'s; -1 skipped) side by side, darkened outside
    the unit's mask (its featuremap upsampled in the dissection's ``geometry`` to the image and
    thresholded at ``thresholds[j]``) with the mask outlined in yellow. ``concepts[j]`` (a label
    index of ``probe.labels``, or None / 0 for none): that concept's exact probe label outlined too, in
    ``concept_outline`` (cyan), nearest-upsampled from the label resolution. One forward per image."""
    check_choice("geometry", geometry, GEOMETRIES)
    layer = resolve_layers(model, [layer])[0]
    units = unit_list(units, "units")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) != len(units):
        raise InputError(f"thresholds has {len(thresholds)} values for {len(units)} units",
                         fix="give one threshold per unit")
    concepts = [None] * len(units) if concepts is None else list(concepts)
    if len(concepts) != len(units):
        raise InputError(f"concepts has {len(concepts)} entries for {len(units)} units",
                         fix="give one label index (or None) per unit")
    check_int("gap", gap, 0)
    idx = np.asarray(probe_index).reshape(len(units), -1)
    n = len(probe)
    if idx.size and (idx.max() >= n):
        raise InputError(f"probe_index holds image {int(idx.max())}, the probe set has {n}",
                         fix="give indices of the probe set the dissection ran on")
    dev = device_of(model)
    was_training = model.training
    model.eval()
    imgs, acts, labels = {}, {}, {}
    try:
        for s in np.unique(idx[idx >= 0]):
            im, lab = probe.batch(int(s), int(s) + 1)
            with Trace(model, capture=[layer]) as tr:
                model(im.to(dev))
            imgs[int(s)], acts[int(s)], labels[int(s)] = im[0], tr[layer][0], lab[0]
    finally:
        model.train(was_training)

    def concept(tile, j, s):
        if not concepts[j]:
            return tile
        lab = labels[s]
        lab = lab[None] if lab.dim() == 2 else lab                    # [K, S, S]
        hit = (lab == int(concepts[j])).any(0).float()[None, None]
        hit = F.interpolate(hit, size=imgs[s].shape[-2:], mode="nearest")[0, 0].cpu().numpy() > 0.5
        return _outline(tile, hit, concept_outline)
    return _strips(units, idx, imgs, acts, thresholds, geometry, gap, concept)


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


def heat_overlay(image: np.ndarray, heat, lo: float, hi: float, color=(255, 40, 150),
                 opacity: float = 0.7) -> np.ndarray:
    """``image`` [H, W, 3] uint8 tinted with ``color`` where ``heat`` (a map [h, w] on any grid that
    divides the image, e.g. a layer's featuremap; each cell covers its block of pixels) is high: the
    tint's strength is ``opacity`` x (heat - ``lo``) / (``hi`` - ``lo``), clipped to [0, 1] (nothing at or
    below ``lo``, full at or above ``hi``)."""
    image = np.asarray(image)
    h = np.asarray(heat.detach().cpu() if isinstance(heat, torch.Tensor) else heat, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or h.ndim != 2 or h.size == 0:
        raise InputError(f"heat_overlay: image {image.shape} must be [H, W, 3] and heat {h.shape} a map [h, w]",
                         fix="pass one uint8 RGB image and one 2-D map")
    if image.shape[0] % h.shape[0] or image.shape[1] % h.shape[1]:
        raise InputError(f"heat_overlay: the map's grid {h.shape} does not divide the image {image.shape[:2]}",
                         fix="pass a featuremap of the layer that made the image")
    if not hi > lo:
        raise InputError(f"heat_overlay: hi ({hi}) must be above lo ({lo})", fix="pass hi > lo")
    big = np.repeat(np.repeat(h, image.shape[0] // h.shape[0], 0), image.shape[1] // h.shape[1], 1)
    a = (opacity * np.clip((np.nan_to_num(big, nan=lo) - lo) / (hi - lo), 0, 1))[..., None]
    out = (1 - a) * image.astype(np.float32) + a * np.asarray(color, np.float32)
    return out.round().astype(np.uint8)


def side_by_side(images, gap: int = 2, fill: int = 255) -> np.ndarray:
    """Images [H, W_i, 3] of one height side by side, ``gap`` columns of ``fill`` between them."""
    images = [np.asarray(i) for i in images]
    if not images or any(i.ndim != 3 or i.shape[0] != images[0].shape[0] for i in images):
        raise InputError("side_by_side: give one or more [H, W, 3] images of the same height",
                         fix="pass images of the same height")
    sep = np.full((images[0].shape[0], gap, images[0].shape[2]), fill, images[0].dtype)
    row = [images[0]]
    for i in images[1:]:
        row += [sep, i]
    return np.concatenate(row, 1)

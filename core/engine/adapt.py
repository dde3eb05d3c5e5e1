"""Generator adaptation to one real image and blending an edit back into it ("Semantic Photo
Manipulation with a Generative Image Prior", Bau et al., SIGGRAPH 2019, on a layer inversion).

A layer inversion (:mod:`core.engine.inversion`) finds a featuremap whose rendering is close to a
real image, but not close enough to edit a photo with. Here the layers *after* the inverted one
are fine-tuned, on a private copy, to render that featuremap as the image (:func:`adapt`: a few
dozen Adam steps on L1 + an optional perceptual term); the result is a delta per parameter, so the
shared generator is never changed and the adapted model is ``with_delta(G, deltas)``. An edit of
the featuremap is then rendered by the adapted model and only the change is put into the photo
(:func:`blend_change`): ``result = original + mask * (edited - reconstruction)``, the mask the
region that changed (thresholded, dilated, softened) restricted to around the edited cells, so
every pixel outside that region is the original's, bit for bit.

    fm = invert(G, "layer4", enc, image, 100, features=maps).featuremap
    ad = adapt(G, "layer4", fm, image, steps=40, features=maps)
    G2 = with_delta(G, ad.deltas)                               # private; G untouched
    recon = render_from(G2, "layer4", fm)
    result, mask = blend_change(image, recon, render_from(G2, "layer4", edited_fm), region)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError
from core.base.hooks import layer_names, layer_shape, private_copy
from core.base.protocols import check_generator
from core.base.validate import check_callable, check_float, check_int
from core.engine.inversion import check_images, check_layer, render_from

__all__ = ["Adaptation", "adapt", "later_parameters", "blend_change", "cells_region", "ADAPT_VERSION"]

ADAPT_VERSION = "1"     # bump when adapt() or blend_change() compute something else


def later_parameters(generator, layer: str, start: str | None = None) -> list[str]:
    """The names of the parameters of the layers after ``layer`` (in ``layer_names`` order), from
    ``start`` on when given (a later layer): what :func:`adapt` fine-tunes. A generator with nothing
    after ``layer`` is refused, as is a ``start`` that is not after it."""
    layer = check_layer(generator, layer)
    names = layer_names(generator)
    after = names[names.index(layer) + 1:]
    if start is not None:
        if start not in after:
            raise InputError(f"start: {start!r} is not a layer after {layer}; those are {', '.join(after) or 'none'}",
                             fix="give start= a later layer, or None to adapt every layer after the inverted one")
        after = after[after.index(start):]
    out = [n for n, _ in generator.named_parameters() if any(n.startswith(a + ".") for a in after)]
    if not out:
        raise InputError(f"layer: {layer} is the generator's last layer with weights; nothing after it to adapt",
                         fix="invert an earlier layer (e.g. 'layer4')")
    return out


@dataclass
class Adaptation:
    """:func:`adapt`'s result: ``deltas`` {parameter: adapted - shared} (for ``with_delta``), the
    loss per step, the L1 of the rendering before and after, and the seconds it took."""
    deltas: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)
    l1_before: float = float("nan")
    l1_after: float = float("nan")
    seconds: float = 0.0


def _maps(features, images):
    out = features(images)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def adapt(generator, layer: str, featuremap: torch.Tensor, image: torch.Tensor, steps: int = 40, lr: float = 5e-4,
          features: Callable | None = None, *, perceptual_weight: float = 1.0, start: str | None = None,
          progress: Callable | None = None) -> Adaptation:
    """Fine-tune the layers after ``layer`` of a private copy of ``generator`` so that the rest of the
    generator renders ``featuremap`` (1 x C x h x w, the layer's shape) as ``image`` (1 x 3 x S x S in
    [-1, 1]): ``steps`` of Adam (``lr``) on the L1 of the rendering + ``perceptual_weight`` x the
    feature-map distance through ``features`` (a callable images -> tensor or tuple; None: L1 only,
    each map's MSE scaled by the target's mean square). ``start``: fine-tune only from this later layer
    on (the coarse layers just after ``layer`` decide what the featuremap means, so leaving them shared
    keeps edits working the way they do on generated images; the fine layers carry the photo's detail).
    Returns the change of each fine-tuned parameter as a delta; the shared generator is never changed
    (no ``.grad`` written on it). ``progress(step, steps)``. Everything is checked before any work."""
    check_generator(generator, probe=False)
    names = later_parameters(generator, layer, start)
    steps = check_int("steps", steps, 0)
    lr = check_float("lr", lr, 0, lo_open=True)
    perceptual_weight = check_float("perceptual_weight", perceptual_weight, 0)
    check_callable("progress", progress)
    if features is not None and not callable(features):
        raise ArgumentTypeError(f"features must be a callable feature network or None, got {type(features).__name__}",
                                fix="e.g. features=core.studies.inversion.perceptual_maps(core.load_features())")
    image = check_images(image, None, "image")
    if image.shape[0] != 1:
        raise InputError(f"image: adapt fits one image, got a batch of {image.shape[0]}",
                         fix="adapt to each image on its own (image[i:i + 1])")
    shape = layer_shape(generator, layer)
    if not isinstance(featuremap, torch.Tensor) or tuple(featuremap.shape) != (1, *shape) \
            or not featuremap.is_floating_point() or not bool(torch.isfinite(featuremap).all()):
        got = tuple(featuremap.shape) if isinstance(featuremap, torch.Tensor) else type(featuremap).__name__
        raise InputError(f"featuremap must be a finite float 1 x {' x '.join(map(str, shape))} ({layer}'s shape), "
                         f"got {got}", fix="give the featuremap of an inversion of this image into this layer")
    dev = device_of(generator)
    t0 = time.perf_counter()
    mine = private_copy(generator)
    params = dict(mine.named_parameters())
    train = [params[n] for n in names]
    for p in train:
        p.requires_grad_(True)
    fm, x = featuremap.detach().to(dev), image.detach().to(dev)
    with torch.no_grad():
        targets = [t.detach() for t in _maps(features, x)] if features is not None and perceptual_weight else []
        l1_before = float((render_from(mine, layer, fm) - x).abs().mean())
    opt = torch.optim.Adam(train, lr=lr)
    losses = []
    for s in range(steps):
        y = render_from(mine, layer, fm)
        loss = (y - x).abs().mean()
        if targets:
            for m, t in zip(_maps(features, y), targets):
                loss = loss + perceptual_weight * (m - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-8)
        grads = torch.autograd.grad(loss, train)
        for p, g in zip(train, grads):
            p.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(s + 1, steps)
    shared = dict(generator.named_parameters())
    with torch.no_grad():
        l1_after = float((render_from(mine, layer, fm) - x).abs().mean())
        deltas = {n: (params[n].detach() - shared[n].detach()).clone() for n in names}
    return Adaptation(deltas, losses, l1_before, l1_after, time.perf_counter() - t0)


def cells_region(cells: torch.Tensor, size: int, grow: int = 1) -> torch.Tensor:
    """Featuremap cells (h x w, bool or coverage > 0) grown by ``grow`` cells each way, as a bool
    ``size`` x ``size`` pixel map (on the cells' device): where an edit of those cells may show."""
    if not isinstance(cells, torch.Tensor) or cells.dim() != 2:
        raise InputError(f"cells must be a 2-D tensor (rows x columns), got "
                         f"{tuple(cells.shape) if isinstance(cells, torch.Tensor) else type(cells).__name__}",
                         fix="give the painted cells of the layer's grid")
    size = check_int("size", size, 1)
    grow = check_int("grow", grow, 0)
    m = (cells > 0).float()[None, None]
    if grow:
        m = F.max_pool2d(m, 2 * grow + 1, 1, grow)
    return F.interpolate(m, size=(size, size), mode="nearest")[0, 0] > 0


def blend_change(original: torch.Tensor, reconstruction: torch.Tensor, edited: torch.Tensor,
                 region: torch.Tensor | None = None, *, threshold: float = 0.04, dilate: int = 2,
                 soften: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Put an edit's change into the photo: ``result = original + mask * (edited - reconstruction)``
    (clamped to [-1, 1]); ``mask`` (N x 1 x H x W in [0, 1]) is where the edit changed the rendering
    (the largest channel change above ``threshold``), dilated by ``dilate`` px, softened by a box blur
    of radius ``soften`` px, and zeroed outside ``region`` (H x W bool; None: anywhere). Where the mask
    is 0 the result is ``original`` bit for bit. Returns ``(result, mask)``."""
    for name, t in (("original", original), ("reconstruction", reconstruction), ("edited", edited)):
        check_images(t, None, name)
    if reconstruction.shape != original.shape or edited.shape != original.shape:
        raise InputError(f"original, reconstruction and edited must have one shape; got {tuple(original.shape)}, "
                         f"{tuple(reconstruction.shape)}, {tuple(edited.shape)}",
                         fix="render the reconstruction and the edit at the photo's size")
    threshold = check_float("threshold", threshold, 0)
    dilate, soften = check_int("dilate", dilate, 0), check_int("soften", soften, 0)
    h, w = original.shape[-2:]
    if region is not None and (not isinstance(region, torch.Tensor) or tuple(region.shape) != (h, w)):
        raise InputError(f"region must be a {h} x {w} bool map, got "
                         f"{tuple(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__}",
                         fix="give cells_region(cells, size) or None")
    change = edited.to(original) - reconstruction.to(original)
    m = (change.abs().amax(1, keepdim=True) > threshold).to(original.dtype)
    if dilate:
        m = F.max_pool2d(m, 2 * dilate + 1, 1, dilate)
    if soften:
        m = F.avg_pool2d(F.pad(m, (soften,) * 4, mode="replicate"), 2 * soften + 1, 1)
    if region is not None:
        m = m * region.to(device=m.device, dtype=m.dtype)[None, None]
    result = torch.where(m > 0, (original + m * change).clamp(-1, 1), original)
    return result, m

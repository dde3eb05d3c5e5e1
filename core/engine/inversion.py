"""Layer inversion ("Seeing What a GAN Cannot Generate", Bau et al., ICCV 2019, section 3): a real
image is reconstructed through a generator by finding an intermediate featuremap (say ``layer4``)
whose rendering by the rest of the generator matches it, instead of a latent code.

Two stages, as the reference (davidbau/ganseeing) does them:

1. an encoder (:class:`LayerEncoder`: image -> the layer's featuremap), trained on the generator's
   own samples only (:func:`train_inverter`): a loss on the layer (MSE scaled by the featuremap's
   mean square, plus one minus the cosine per position) and an L1 loss on the image the rest of the
   generator renders from the encoder's guess;
2. per image, the featuremap optimised from the encoder's guess (:func:`invert`): Adam on L1 + a
   perceptual loss (any feature network; its maps compared, each scaled by the target's mean
   square) + a small penalty keeping it near the guess.

The rest of the generator runs from a featuremap through a thread-local
:class:`~core.base.hooks.Trace` edit that replaces the layer's output (:func:`render_from`): the
shared generator is never changed, and gradients are taken with ``torch.autograd.grad`` with
respect to the encoder or the featuremap only, so no ``.grad`` of a shared model is ever written.

    enc, log = train_inverter(G, "layer4", steps=1500, batch=32)
    res = invert(G, "layer4", enc, images, steps=200, features=feature_net)
    res.reconstruction, res.featuremap, res.layer_error(true_featuremap)
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError
from core.base.hooks import Trace, layer_names, layer_shape
from core.base.protocols import check_generator
from core.base.sampling import z_range
from core.base.validate import check_callable, check_float, check_int, unit_list

__all__ = ["LayerEncoder", "train_inverter", "invert", "Inversion", "render_from", "layer_loss", "layer_error",
           "check_layer", "check_images", "INVERSION_SEED"]

INVERSION_SEED = 7         # the generated samples an encoder trains on (seed of z_range)


class LayerEncoder(nn.Module):
    """A small convolutional encoder: images N x 3 x S x S in [-1, 1] -> featuremaps N x C x s x s
    (S / s a power of two: one stride-2 stage per halving). ``widths``: channels per resolution,
    from S down to s (len = log2(S / s) + 1); a 1x1 convolution maps the last to C. The zoo's
    layer4 (256 x 8 x 8 from 64 x 64) with the default widths: about 0.9 M parameters (1.8 MB in fp16)."""

    def __init__(self, image_size: int = 64, channels: int = 256, size: int = 8, widths: Sequence[int] | None = None):
        super().__init__()
        image_size = check_int("image_size", image_size, 4, 4096)
        size = check_int("size", size, 1, image_size)
        channels = check_int("channels", channels, 1)
        halvings = math.log2(image_size / size)
        if halvings != int(halvings):
            raise InputError(f"image_size / size must be a power of two, got {image_size} / {size}",
                             fix="invert a layer whose side divides the image side by 1, 2, 4, 8, ...")
        halvings = int(halvings)
        widths = list(widths) if widths is not None else [min(32 * 2 ** i, 192) for i in range(halvings + 1)]
        if len(widths) != halvings + 1 or not all(isinstance(w, int) and w > 0 for w in widths):
            raise InputError(f"widths must be {halvings + 1} positive ints (one per resolution from {image_size} "
                             f"to {size}), got {widths!r}", fix="leave widths=None for the default")
        self.image_size, self.channels, self.size, self.widths = image_size, channels, size, widths
        act = nn.LeakyReLU(0.2)
        mods: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1), act]
        for a, b in zip(widths[:-1], widths[1:]):
            mods += [nn.Conv2d(a, b, 3, 2, 1), act, nn.Conv2d(b, b, 3, 1, 1), act]
        mods += [nn.Conv2d(widths[-1], channels, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def config(self) -> dict:
        return {"image_size": self.image_size, "channels": self.channels, "size": self.size,
                "widths": list(self.widths)}


# ----------------------------------------------------------------------------- checks

def check_layer(generator, layer: str) -> str:
    """``layer`` when it is one of the generator's layers with a featuremap output, else an
    :class:`InputError` naming ``layer`` (nothing runs for a name the generator does not have)."""
    if not isinstance(layer, str) or not layer:
        raise ArgumentTypeError(f"layer must be a layer name (str), got {type(layer).__name__} {layer!r:.40}",
                                fix="e.g. layer='layer4'")
    names = layer_names(generator)
    if layer not in names or layer not in dict(generator.named_modules()):
        raise InputError(f"layer: the generator has no layer {layer!r}; its layers: {', '.join(names) or 'none'}",
                         fix="give layer= one of the generator's layers (e.g. 'layer4')")
    return layer


def check_images(images, size: int | None = None, name: str = "images") -> torch.Tensor:
    """Images as a float tensor N x 3 x S x S (S = ``size`` when given), N >= 1, finite; else an
    :class:`InputError` naming ``name``."""
    if not isinstance(images, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a float tensor N x 3 x H x W in [-1, 1], got "
                                f"{type(images).__name__}", fix=f"give {name}= images as a torch tensor")
    shape = tuple(images.shape)
    if images.dim() != 4 or shape[0] < 1 or shape[1] != 3:
        raise InputError(f"{name} must be N x 3 x H x W (RGB), got shape {shape}",
                         fix=f"give {name}= RGB images with the batch first (a grey image: repeat it to 3 channels)")
    if not images.is_floating_point():
        raise InputError(f"{name} must be float images in [-1, 1], got {images.dtype}",
                         fix=f"convert {name}: images.float() / 127.5 - 1 for 8-bit images")
    if size is not None and shape[2:] != (size, size):
        raise InputError(f"{name} must be {size} x {size} pixels (the generator's and the encoder's size), got "
                         f"{shape[2]} x {shape[3]}", fix=f"resize {name} to {size} x {size}")
    if not torch.isfinite(images).all():
        raise InputError(f"{name} has NaN or infinite values", fix=f"give {name}= finite images in [-1, 1]")
    return images


def _check_encoder(encoder, shape: tuple[int, ...]) -> LayerEncoder:
    if not isinstance(encoder, LayerEncoder):
        raise ArgumentTypeError(f"encoder must be a LayerEncoder, got {type(encoder).__name__}",
                                fix="train one with train_inverter(generator, layer, ...)")
    if (encoder.channels, encoder.size, encoder.size) != tuple(shape):
        raise InputError(f"encoder: it makes {encoder.channels} x {encoder.size} x {encoder.size} featuremaps, the "
                         f"layer's are {' x '.join(map(str, shape))}",
                         fix="give the encoder trained for this generator and layer")
    return encoder


def _image_size(generator) -> int:
    with torch.no_grad():
        return int(generator(torch.zeros(1, generator.z_dim, device=device_of(generator))).shape[-1])


# ----------------------------------------------------------------------------- rendering and losses

def render_from(generator, layer: str, featuremap: torch.Tensor, units_off: Sequence[int] = ()) -> torch.Tensor:
    """The generator's images with ``layer``'s output replaced by ``featuremap`` (N x C x h x w), the
    rest of the generator run on it (a thread-local :class:`Trace` edit; the generator is not
    changed). Differentiable in ``featuremap``. ``units_off``: these units of the layer zeroed first
    (a planted omission: the rest of the generator never sees them)."""
    keep = None
    if len(units_off):
        keep = torch.ones(featuremap.shape[1], device=featuremap.device, dtype=featuremap.dtype)
        keep[list(units_off)] = 0
        keep = keep.view(1, -1, 1, 1)

    def replace(out):
        if out.shape != featuremap.shape:
            raise InputError(f"featuremap must have the layer's shape {tuple(out.shape)}, got "
                             f"{tuple(featuremap.shape)}", fix=f"give a featuremap of {layer}'s shape")
        return featuremap if keep is None else featuremap * keep

    z = torch.zeros(featuremap.shape[0], generator.z_dim, device=featuremap.device)
    with Trace(generator, edits={layer: replace}):
        return generator(z)


def _per_position_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.flatten(2), b.flatten(2), dim=1, eps=1e-6)     # N x positions


def layer_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The encoder's loss on the layer, per image: MSE scaled by the true featuremap's mean square,
    plus (1 - cosine) averaged over positions (the next block's pixel norm sees only directions)."""
    scale = true.pow(2).mean((1, 2, 3)).clamp_min(1e-8)
    mse = (pred - true).pow(2).mean((1, 2, 3)) / scale
    return mse + (1 - _per_position_cos(pred, true)).mean(1)


def layer_error(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per image, the relative squared error |pred - true|^2 / |true|^2 of a featuremap."""
    return (pred - true).pow(2).flatten(1).sum(1) / true.pow(2).flatten(1).sum(1).clamp_min(1e-12)


def _feature_maps(features: Callable, images: torch.Tensor) -> list[torch.Tensor]:
    out = features(images)
    maps = list(out) if isinstance(out, (tuple, list)) else [out]
    if not maps or not all(isinstance(m, torch.Tensor) and m.shape[0] == images.shape[0] for m in maps):
        raise ArgumentTypeError("features(images) must return a tensor or a tuple of tensors with the batch first",
                                fix="give features= a feature network (e.g. the toyworld features' encoder)")
    return maps


def _perceptual(maps: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Per image, the sum over feature maps of their MSE scaled by the target's mean square."""
    total = 0.0
    for m, t in zip(maps, targets):
        scale = t.pow(2).flatten(1).mean(1).clamp_min(1e-8)
        total = total + (m - t).pow(2).flatten(1).mean(1) / scale
    return total


# ----------------------------------------------------------------------------- training the encoder

@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    layer: list[float] = field(default_factory=list)
    image: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_inverter(generator, layer: str = "layer4", steps: int = 1500, batch: int = 32, lr: float = 1e-3,
                   seed: int = INVERSION_SEED, progress: Callable | None = None, resume_state: dict | None = None,
                   *, image_batch: int = 8, image_weight: float = 1.0, widths: Sequence[int] | None = None,
                   checkpoint: Callable | None = None, checkpoint_every: int = 100) -> tuple[LayerEncoder, dict]:
    """Train a :class:`LayerEncoder` for ``layer`` on the generator's own samples: step ``t`` draws
    ``z_range(seed, t * batch, (t + 1) * batch)`` (so a resumed run sees the same samples), the
    images and the layer's true featuremaps; loss = :func:`layer_loss` (all ``batch``) +
    ``image_weight`` x L1 of the rest of the generator's rendering of the guess against the image
    (the first ``image_batch`` of the batch: that pass is the costly one; 0 turns it off).

    The encoder's initial weights come from ``seed`` too: a run is a function of its arguments.
    ``resume_state``: a state returned before (in the second element, ``"state"``) to continue from.
    ``checkpoint(state)`` is called every ``checkpoint_every`` steps and at the end. ``progress(step,
    steps, losses)``. Returns ``(encoder, {"state": ..., "log": {...}})``; the encoder is in eval mode."""
    check_generator(generator, probe=False)
    layer = check_layer(generator, layer)
    steps = check_int("steps", steps, 0)
    batch = check_int("batch", batch, 1)
    lr = check_float("lr", lr, 0, lo_open=True)
    seed = check_int("seed", seed)
    image_batch = check_int("image_batch", image_batch, 0, batch)
    image_weight = check_float("image_weight", image_weight, 0)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    check_callable("progress", progress)
    check_callable("checkpoint", checkpoint)
    if resume_state is not None and not (isinstance(resume_state, dict)
                                         and {"encoder", "optimizer", "step", "config"} <= set(resume_state)):
        raise InputError("resume_state must be a state saved by train_inverter (encoder, optimizer, step, config)",
                         fix="give the 'state' of an earlier run, or resume_state=None to start afresh")
    dev = device_of(generator)
    shape = layer_shape(generator, layer)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise InputError(f"layer: {layer} outputs {shape}, not a square featuremap", fix="choose a conv layer")
    size = _image_size(generator)
    cfg = {"layer": layer, "seed": seed, "batch": batch, "lr": lr, "image_batch": image_batch,
           "image_weight": image_weight}
    if resume_state is not None:
        enc = LayerEncoder(**resume_state["config"]["encoder"]).to(dev)
        if resume_state["config"].get("layer") != layer or resume_state["config"].get("seed") != seed \
                or resume_state["config"].get("batch") != batch:
            raise InputError("resume_state was saved for another layer, seed or batch",
                             fix="resume with the arguments of the run that saved it")
        enc.load_state_dict(resume_state["encoder"])
    else:
        with torch.random.fork_rng(devices=[]):          # the initial weights from seed: the global RNG untouched
            torch.manual_seed(seed)
            enc = LayerEncoder(size, shape[0], shape[1], widths).to(dev)
    cfg["encoder"] = enc.config()
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    start, log = 0, TrainLog()
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        start = int(resume_state["step"])
        old = resume_state.get("log") or {}
        log = TrainLog(list(old.get("steps", [])), list(old.get("layer", [])), list(old.get("image", [])),
                       float(old.get("seconds", 0.0)))
    params = list(enc.parameters())
    enc.train()

    def state(step):
        return {"encoder": {k: v.detach().clone() for k, v in enc.state_dict().items()},
                "optimizer": copy.deepcopy(opt.state_dict()), "step": step, "config": cfg,
                "log": {"steps": log.steps, "layer": log.layer, "image": log.image, "seconds": log.seconds}}

    t0 = time.perf_counter()
    for t in range(start, steps):
        z = z_range(seed, t * batch, (t + 1) * batch, generator.z_dim, dev)
        with torch.no_grad(), Trace(generator, capture=[layer]) as tr:
            images = generator(z)
        true = tr[layer]
        pred = enc(images)
        loss_l = layer_loss(pred, true).mean()
        loss = loss_l
        loss_i = torch.zeros((), device=dev)
        if image_batch and image_weight:
            k = image_batch
            loss_i = (render_from(generator, layer, pred[:k]) - images[:k]).abs().mean()
            loss = loss + image_weight * loss_i
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)
        log.steps.append(t + 1)
        log.layer.append(float(loss_l.detach()))
        log.image.append(float(loss_i.detach()))
        if progress is not None:
            progress(t + 1, steps, {"layer": log.layer[-1], "image": log.image[-1]})
        if checkpoint is not None and (t + 1) % checkpoint_every == 0 and t + 1 < steps:
            log.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint(state(t + 1))
    log.seconds += time.perf_counter() - t0
    enc.eval().requires_grad_(False)
    final = state(max(steps, start))
    if checkpoint is not None:
        checkpoint(final)
    return enc, final


# ----------------------------------------------------------------------------- per-image optimisation

@dataclass
class Inversion:
    """Images inverted into a layer: the optimised featuremaps, the encoder's guesses they started
    from, the reconstructions (the rest of the generator on the featuremaps), the encoder-only
    reconstructions and the mean loss per step."""
    featuremap: torch.Tensor
    initial: torch.Tensor
    reconstruction: torch.Tensor
    initial_reconstruction: torch.Tensor
    losses: list[float]
    seconds: float

    def l1(self, images: torch.Tensor) -> torch.Tensor:
        """Per image, the mean absolute error of the reconstruction (pixels in [-1, 1])."""
        return (self.reconstruction - images.to(self.reconstruction)).abs().flatten(1).mean(1)

    def layer_error(self, true: torch.Tensor) -> torch.Tensor:
        return layer_error(self.featuremap, true.to(self.featuremap))


def invert(generator, layer: str, encoder: LayerEncoder, images: torch.Tensor, steps: int = 200, lr: float = 0.01,
           features: Callable | None = None, progress: Callable | None = None, *, perceptual_weight: float = 1.0,
           anchor_weight: float = 0.01, batch_size: int = 100, units_off: Sequence[int] = (),
           init: torch.Tensor | None = None) -> Inversion:
    """Invert ``images`` (N x 3 x S x S in [-1, 1]) into ``layer``: featuremaps initialised by
    ``encoder``, then ``steps`` of Adam (``lr``) on, per image, the L1 of the rendering
    (:func:`render_from`) + ``perceptual_weight`` x the feature-map distance through ``features``
    (a callable images -> tensor or tuple of tensors; None: no perceptual term) + ``anchor_weight``
    x the squared distance to the encoder's guess (scaled by its mean square). All images of a chunk
    of ``batch_size`` are optimised together (one Adam, the loss summed over images so each image's
    gradient is its own). ``units_off``: units of the layer the rendering never sees (a planted
    omission). ``init``: featuremaps N x C x h x w to start from instead of the encoder's guesses
    (the anchor then keeps near them). ``progress(done, total)`` counts steps over all chunks.
    Everything is checked before any work."""
    check_generator(generator, probe=False)
    layer = check_layer(generator, layer)
    steps = check_int("steps", steps, 0)
    lr = check_float("lr", lr, 0, lo_open=True)
    perceptual_weight = check_float("perceptual_weight", perceptual_weight, 0)
    anchor_weight = check_float("anchor_weight", anchor_weight, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    check_callable("progress", progress)
    if features is not None and not callable(features):
        raise ArgumentTypeError(f"features must be a callable feature network or None, got {type(features).__name__}",
                                fix="e.g. features=core.load_features().enc")
    if not isinstance(encoder, LayerEncoder):
        _check_encoder(encoder, ())
    images = check_images(images, encoder.image_size)
    shape = layer_shape(generator, layer)
    encoder = _check_encoder(encoder, shape)
    if init is not None and not (isinstance(init, torch.Tensor) and tuple(init.shape) == (len(images), *shape)
                                 and init.is_floating_point() and bool(torch.isfinite(init).all())):
        raise InputError(f"init must be finite float featuremaps {len(images)} x {' x '.join(map(str, shape))}, "
                         f"got {tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__}",
                         fix="leave init=None to start from the encoder's guesses")
    units_off = unit_list(units_off, "units_off") if len(units_off) else []
    if any(u >= shape[0] for u in units_off):
        raise InputError(f"units_off: {layer} has {shape[0]} units, got unit {max(units_off)}",
                         fix=f"give units 0 .. {shape[0] - 1}")
    dev = device_of(generator)
    if device_of(encoder) != dev:
        raise InputError(f"encoder is on {device_of(encoder)}, the generator on {dev}",
                         fix="move the encoder to the generator's device: encoder.to(device)")
    t0 = time.perf_counter()
    chunks = [(a, min(len(images), a + batch_size)) for a in range(0, len(images), batch_size)]
    total, done = steps * len(chunks), 0
    outs: dict[str, list] = {"f": [], "i": [], "r": [], "r0": []}
    losses = [0.0] * steps
    for a, b in chunks:
        x = images[a:b].to(dev)
        with torch.no_grad():
            start = encoder(x) if init is None else init[a:b].to(dev)
            r0 = render_from(generator, layer, start, units_off)
            targets = [t.detach() for t in _feature_maps(features, x)] if features is not None and \
                perceptual_weight else []
        anchor_scale = start.pow(2).flatten(1).mean(1).clamp_min(1e-8)
        p = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=lr)
        for s in range(steps):
            y = render_from(generator, layer, p, units_off)
            per = (y - x).abs().flatten(1).mean(1)
            if targets:
                per = per + perceptual_weight * _perceptual(_feature_maps(features, y), targets)
            if anchor_weight:
                per = per + anchor_weight * (p - start).pow(2).flatten(1).mean(1) / anchor_scale
            g, = torch.autograd.grad(per.sum(), [p])
            p.grad = g
            opt.step()
            losses[s] += float(per.detach().sum())
            done += 1
            if progress is not None:
                progress(done, total)
        with torch.no_grad():
            fm = p.detach()
            outs["f"].append(fm)
            outs["i"].append(start)
            outs["r"].append(render_from(generator, layer, fm, units_off))
            outs["r0"].append(r0)
    cat = {k: torch.cat(v) for k, v in outs.items()}
    return Inversion(featuremap=cat["f"], initial=cat["i"], reconstruction=cat["r"], initial_reconstruction=cat["r0"],
                     losses=[v / len(images) for v in losses], seconds=time.perf_counter() - t0)

"""Painting a real scene (issue #34; "Semantic Photo Manipulation with a Generative Image Prior",
Bau et al., SIGGRAPH 2019): a photo inverted into a layer (:func:`~core.engine.inversion.invert`,
the generator's shipped inverter), the layers after it adapted to that one photo on a private copy
(:func:`~core.engine.adapt.adapt`), then a paint edit (:func:`core.studies.paint.paint_edits`, the
same :class:`~core.engine.intervention.Edit` as on generated images) applied to the featuremap,
rendered by the adapted generator and blended into the photo around the painted cells
(:func:`~core.engine.adapt.blend_change`): far from the stroke the photo is untouched, bit for bit.

    image = real_image("town", 3)                                  # a held-out toyworld scene, 1 x 3 x 64 x 64
    scene = invert_real(G, image, generator_name="toyworld/town", features=core.load_features())
    edits = paint_edits("layer4", units, "add", k, cells, scale=3.0)
    out = paint_real(scene, edits)                                  # out.result, out.mask, out.edited

The inversion and adaptation (~10-30 s on 2 CPU cores) are cached per (generator, encoder, feature
network, image hash, settings) with :func:`core.base.cache.measure`; a stroke is one render
(milliseconds).
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from core import toyworld
from core.base.cache import measure
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError
from core.base.hooks import layer_shape, with_delta
from core.base.protocols import check_generator
from core.base.validate import check_bool, check_callable, check_choice, check_float, check_int
from core.engine.adapt import ADAPT_VERSION, adapt, blend_change, cells_region, later_parameters
from core.engine.intervention import check_edits, edit_fn, resize_mask
from core.engine.inversion import LayerEncoder, check_images, check_layer, invert, render_from
from core.studies.image_folder import CONVERTIBLE_MODES, MAX_IMAGE_PIXELS
from core.studies.inversion import INVERSION_REAL_SEED, encoder_for, perceptual_maps
from core.studies.omissions import image_size

__all__ = ["RealScene", "PaintedReal", "check_real_image", "image_hash", "real_image", "photo_image",
           "invert_real", "paint_real", "outside_change", "REAL_DEFAULTS"]

# the Paint page's settings: inversion + adaptation of one 64 px scene takes 1-2 s on 2 idle CPU cores
# (7.9 s at load 3; docs/findings.md, "Costs on 2 CPU cores (#34)");
# adapting from layer9 on (the 64 px layers): the reconstruction's L1 drops by about a fifth while a door
# painted on a wall draws as it does without adaptation; adapting from layer5 or layer7 fits the photo
# closer but the coarse layers learn to ignore the paint (measured on held-out town scenes 1-3).
REAL_DEFAULTS = {"steps": 60, "lr": 0.01, "adapt_steps": 40, "adapt_lr": 0.01, "adapt_perceptual": 0.0,
                 "adapt_from": "layer9"}


def check_real_image(image, size: int, name: str = "image") -> torch.Tensor:
    """``image`` as a float tensor 1 x 3 x ``size`` x ``size`` in [-1, 1] (3 x S x S is given the
    batch axis); anything else is refused, saying what to do, before any work."""
    if isinstance(image, np.ndarray):
        raise ArgumentTypeError(f"{name} must be a torch tensor 1 x 3 x {size} x {size} in [-1, 1], got a numpy "
                                f"array {image.shape}", fix="read a photo with photo_image(...) or convert: "
                                "torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1")
    x = image[None] if isinstance(image, torch.Tensor) and image.dim() == 3 else image
    x = check_images(x, size, name)                # a float tensor N x 3 x size x size, finite
    if x.shape[0] != 1:
        raise InputError(f"{name} must be one image 3 x H x W or 1 x 3 x H x W, got shape {tuple(image.shape)}",
                         fix=f"give one image at a time ({name}[i:i + 1])")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - 1e-4 or hi > 1 + 1e-4:
        raise InputError(f"{name} must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]",
                         fix=f"scale it: 8-bit pixels / 127.5 - 1 (a [0, 1] image: {name} * 2 - 1)")
    return x.clamp(-1, 1)


def image_hash(image: torch.Tensor) -> str:
    """SHA-256 (24 hex digits) of an image's float32 pixels and shape: its identity in cache keys."""
    t = image.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(f"{tuple(t.shape)}|".encode() + t.numpy().tobytes()).hexdigest()[:24]


def real_image(scene: str, index: int, size: int = 64, seed: int = INVERSION_REAL_SEED) -> torch.Tensor:
    """Held-out toyworld scene ``index`` of ``scene`` (seed :data:`INVERSION_REAL_SEED`: no GAN trained
    on it) as 1 x 3 x ``size`` x ``size`` in [-1, 1]: a "real" photo with exact labels."""
    scene = check_choice("scene", scene, toyworld.SCENES)
    index = check_int("index", index, 0)
    return toyworld.render(scene, 1, seed=seed, start=index, size=size)[0]


def photo_image(data, size: int = 64) -> tuple[torch.Tensor, str | None]:
    """An uploaded photo (PNG / JPEG bytes, a PIL image, or an H x W x 3 uint8 array) as 1 x 3 x
    ``size`` x ``size`` in [-1, 1], converted to RGB; when it was not ``size`` x ``size`` it is resized
    (Lanczos) and the note says from what (else the note is None). Unreadable data is refused."""
    from PIL import Image, UnidentifiedImageError
    size = check_int("size", size, 1)
    if isinstance(data, (bytes, bytearray)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
                w, h = im.size                     # from the header: a bomb is refused before it is decoded
                if w * h > MAX_IMAGE_PIXELS:
                    raise InputError(f"data: the image is {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                                     "accepted", fix="upload a smaller image (the generator draws 64 x 64)")
                im.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InputError(f"data: not a readable PNG or JPEG image ({type(e).__name__})",
                             fix="upload a PNG or JPEG file") from None
    elif isinstance(data, Image.Image):
        im = data
    elif isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 3 and data.shape[2] in (3, 4):
        im = Image.fromarray(data)
    else:
        raise ArgumentTypeError(f"data must be image bytes, a PIL image or an H x W x 3 uint8 array, got "
                                f"{type(data).__name__}", fix="pass the uploaded file's bytes (file.getvalue())")
    note = None
    if im.mode != "RGB" and im.mode not in CONVERTIBLE_MODES:
        raise InputError(f"data: images of mode {im.mode!r:.20} (16-bit or float) have no RGB reading here",
                         fix="save the photo as an 8-bit RGB PNG or JPEG")
    if im.mode != "RGB":
        note = f"converted from {im.mode} to RGB"
        im = im.convert("RGB")
    if im.size != (size, size):
        resized = f"resized from {im.size[0]} x {im.size[1]} to {size} x {size} (the generator's size)"
        note = resized if note is None else f"{note}; {resized}"
        im = im.resize((size, size), Image.LANCZOS)
    a = torch.from_numpy(np.asarray(im, np.float32).copy()).permute(2, 0, 1)[None]
    return a / 127.5 - 1, note


@dataclass
class RealScene:
    """A photo inverted into ``layer`` and the generator adapted to it: the photo, the featuremap, the
    renderings of the featuremap by the shared generator (``inverted``) and by the adapted one
    (``reconstruction``), the adaptation's parameter ``deltas`` and the L1 of each (encoder only,
    inverted, adapted). ``model`` is the adapted generator (a private copy; None until
    :func:`invert_real` attaches it); it is never stored."""
    image: torch.Tensor
    featuremap: torch.Tensor
    inverted: torch.Tensor
    reconstruction: torch.Tensor
    deltas: dict[str, torch.Tensor]
    layer: str
    l1_encoder: float
    l1_inverted: float
    l1_adapted: float
    seconds: float
    settings: dict = field(default_factory=dict)
    model: object = None

    def to_arrays(self) -> tuple[dict, dict]:
        arrays = {"image": self.image, "featuremap": self.featuremap, "inverted": self.inverted,
                  "reconstruction": self.reconstruction, **{f"delta:{k}": v for k, v in self.deltas.items()}}
        meta = {"layer": self.layer, "l1_encoder": self.l1_encoder, "l1_inverted": self.l1_inverted,
                "l1_adapted": self.l1_adapted, "seconds": self.seconds, "settings": self.settings}
        return {k: v.detach().cpu().numpy() for k, v in arrays.items()}, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "RealScene":
        t = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        return cls(t["image"], t["featuremap"], t["inverted"], t["reconstruction"],
                   {k[6:]: v for k, v in t.items() if k.startswith("delta:")}, meta["layer"],
                   meta["l1_encoder"], meta["l1_inverted"], meta["l1_adapted"], meta["seconds"],
                   dict(meta.get("settings") or {}))


def invert_real(generator, image, *, generator_name: str | None = None, encoder: LayerEncoder | None = None,
                layer: str = "layer4", features=None, steps: int = REAL_DEFAULTS["steps"],
                lr: float = REAL_DEFAULTS["lr"], adapt_steps: int = REAL_DEFAULTS["adapt_steps"],
                adapt_lr: float = REAL_DEFAULTS["adapt_lr"],
                adapt_perceptual: float = REAL_DEFAULTS["adapt_perceptual"],
                adapt_from: str | None = REAL_DEFAULTS["adapt_from"],
                progress: Callable | None = None, cache: bool = True) -> RealScene:
    """Invert ``image`` (1 x 3 x S x S in [-1, 1], S the generator's size) into ``layer`` (``steps`` of
    Adam from the inverter's guess, the perceptual term through ``features``: a toyworld feature
    network, see :func:`~core.studies.inversion.perceptual_maps`; None: L1 only), then adapt the layers
    after it to the photo (``adapt_steps`` of Adam at ``adapt_lr`` on L1 + ``adapt_perceptual`` x the
    perceptual term). ``encoder``: the inverter, else the one shipped or trained for ``generator_name``
    (:func:`~core.studies.inversion.encoder_for`; none: a :class:`CheckpointError` with the training
    command). Cached per generator, encoder, feature network, image and settings (``cache=False``: not).
    ``progress(stage, done, total)``, ``stage`` "invert" or "adapt". Everything is checked first."""
    check_generator(generator, probe=False)
    layer = check_layer(generator, layer)
    later_parameters(generator, layer, adapt_from)
    cache = check_bool("cache", cache)
    check_callable("progress", progress)
    res = getattr(generator, "resolution", None)        # ProGAN says it; others: one sample drawn
    x = check_real_image(image, res if isinstance(res, int) else image_size(generator))
    steps, adapt_steps = check_int("steps", steps, 0, 10_000), check_int("adapt_steps", adapt_steps, 0, 10_000)
    lr = check_float("lr", lr, 0, lo_open=True)
    adapt_lr = check_float("adapt_lr", adapt_lr, 0, lo_open=True)
    adapt_perceptual = check_float("adapt_perceptual", adapt_perceptual, 0)
    if features is not None and not isinstance(features, torch.nn.Module):
        raise ArgumentTypeError(f"features must be a feature network (torch module) or None, got "
                                f"{type(features).__name__}", fix="e.g. features=core.load_features('toyworld')")
    if encoder is None:
        if not isinstance(generator_name, str) or not generator_name:
            raise ArgumentTypeError("invert_real needs encoder= or generator_name= (to find its inverter)",
                                    fix="e.g. generator_name='toyworld/town'")
        encoder, _ = encoder_for(generator, generator_name, layer)
    elif not isinstance(encoder, LayerEncoder):
        raise ArgumentTypeError(f"encoder must be a LayerEncoder, got {type(encoder).__name__}",
                                fix="load it with core.studies.inversion.encoder_for(G, name, layer)")
    shape = layer_shape(generator, layer)
    if (encoder.channels, encoder.size, encoder.size) != tuple(shape) or encoder.image_size != x.shape[-1]:
        raise InputError(f"encoder: it maps {encoder.image_size}-px images to {encoder.channels} x {encoder.size} x "
                         f"{encoder.size}, but {layer} is {' x '.join(map(str, shape))} at {x.shape[-1]} px",
                         fix="give the inverter trained for this generator and layer")
    dev = device_of(generator)
    x = x.to(dev)
    maps = perceptual_maps(features) if features is not None else None
    settings = {"steps": steps, "lr": lr, "adapt_steps": adapt_steps, "adapt_lr": adapt_lr,
                "adapt_perceptual": adapt_perceptual, "adapt_from": adapt_from}

    def compute() -> RealScene:
        inv = invert(generator, layer, encoder, x, steps, lr, maps,
                     None if progress is None else (lambda d, t: progress("invert", d, t)))
        ad = adapt(generator, layer, inv.featuremap, x, adapt_steps, adapt_lr, maps if adapt_perceptual else None,
                   perceptual_weight=adapt_perceptual, start=adapt_from,
                   progress=None if progress is None else (lambda d, t: progress("adapt", d, t)))
        l1_0 = float((inv.initial_reconstruction - x).abs().mean())
        model = with_delta(generator, ad.deltas)
        with torch.no_grad():
            recon = render_from(model, layer, inv.featuremap)
        return RealScene(x, inv.featuremap, inv.reconstruction, recon, ad.deltas, layer, l1_0,
                         float(inv.l1(x)[0]), float((recon - x).abs().mean()), inv.seconds + ad.seconds, settings,
                         model)

    parts = {"image": image_hash(x), "layer": layer, **settings}
    models = {"generator": generator, "encoder": encoder, **({"features": features} if features is not None else {})}
    scene = measure("paint_real", f"{ADAPT_VERSION}.1", models=models, parts=parts, compute=compute,
                    codec=RealScene, cache=cache)
    if scene.model is None:                                    # read back from the cache
        scene.image, scene.featuremap = scene.image.to(dev), scene.featuremap.to(dev)
        scene.inverted, scene.reconstruction = scene.inverted.to(dev), scene.reconstruction.to(dev)
        scene.deltas = {k: v.to(dev) for k, v in scene.deltas.items()}
        scene.model = with_delta(generator, scene.deltas)
    return scene


@dataclass
class PaintedReal:
    """:func:`paint_real`'s result (1 x 3 x S x S in [-1, 1] unless said): the photo with the edit
    blended in (``result``), the adapted generator's rendering of the edited featuremap (``edited``),
    the blend mask (1 x 1 x S x S in [0, 1]), the pixels the edit may touch (``region``, S x S bool:
    the edited cells grown by ``grow`` cells) and the edited cells (h x w coverage)."""
    result: torch.Tensor
    edited: torch.Tensor
    mask: torch.Tensor
    region: torch.Tensor
    cells: torch.Tensor


def paint_real(scene: RealScene, edits, *, grow: int = 1, threshold: float = 0.04, dilate: int = 2,
               soften: int = 1) -> PaintedReal:
    """``edits`` (on ``scene.layer``; :func:`core.studies.paint.paint_edits` makes them from strokes)
    applied to the scene's featuremap, rendered by its adapted generator, and the change blended into
    the photo (:func:`~core.engine.adapt.blend_change`) within the edited cells grown by ``grow``
    cells: elsewhere the result is the photo itself. No edit gives the photo back unchanged."""
    if not isinstance(scene, RealScene) or scene.model is None:
        raise ArgumentTypeError(f"scene must be a RealScene from invert_real, got {type(scene).__name__}",
                                fix="scene = invert_real(G, image, generator_name=...)")
    edits = check_edits(scene.model, edits, 1)
    other = sorted({e.layer for e in edits if e.layer != scene.layer})
    if other:
        raise InputError(f"edits: the scene was inverted into {scene.layer}; edits on {', '.join(other)} cannot "
                         "be applied to its featuremap", fix=f"paint at {scene.layer}")
    grow = check_int("grow", grow, 0)
    fm = scene.featuremap
    h, w = fm.shape[-2:]
    cells = torch.zeros(h, w, device=fm.device)
    for e in edits:
        m = torch.ones(1, 1, h, w, device=fm.device) if e.mask is None else resize_mask(e.mask, 1, h, w, fm.device)
        cells = torch.maximum(cells, m[0, 0].float())
    if not edits:
        empty = torch.zeros_like(scene.image[:, :1])
        return PaintedReal(scene.image, scene.reconstruction, empty,
                           torch.zeros(scene.image.shape[-2:], dtype=torch.bool, device=fm.device), cells)
    with torch.no_grad():
        for e in edits:
            fm = edit_fn(e)(fm)
        edited = render_from(scene.model, scene.layer, fm)
    region = cells_region(cells, scene.image.shape[-1], grow)
    result, mask = blend_change(scene.image, scene.reconstruction, edited, region, threshold=threshold,
                                dilate=dilate, soften=soften)
    return PaintedReal(result, edited, mask, region, cells)


def outside_change(before: torch.Tensor, after: torch.Tensor, region: torch.Tensor) -> tuple[float, float]:
    """(mean, max) absolute pixel change (over channels and pixels, in [-1, 1] units) outside ``region``
    (H x W bool); (0, 0) when the region covers everything."""
    keep = ~region.to(before.device).bool()
    if not bool(keep.any()):
        return 0.0, 0.0
    d = (after.to(before) - before).abs()[..., keep]
    return float(d.mean()), float(d.max())


def ground_line_cells(labels: torch.Tensor, layers: dict, grid: tuple[int, int], min_wall: float = 0.6
                      ) -> list[tuple[int, int]]:
    """Toyworld's truth for where a door may be painted in one scene: the featuremap cells (row,
    column) of a ``grid`` that hold the band just above a building wall's ground line (the bottom row of
    a ``building/k`` layer, where toyworld puts doors: the cell row holding most of the ``ch`` rows above
    it), are at least ``min_wall`` visible building and hold no door; most wall first. ``labels`` H x W
    and ``layers`` {name: H x W bool} of one scene (``toyworld.render(..., return_layers=True)``, indexed
    to the scene)."""
    rows, cols = grid
    h, w = labels.shape
    wall = labels == toyworld.LABELS.index("building")
    door = labels == toyworld.LABELS.index("door")
    ch, cw = h // rows, w // cols
    found = {}
    for name, m in layers.items():
        if not name.startswith("building/") or not bool(m.any()):
            continue
        ys = torch.nonzero(m.any(1)).flatten()
        base = int(ys.max())                               # the wall's bottom row
        r = base // ch if base % ch >= ch // 2 else max(base // ch - 1, 0)   # the cell holding most of a door
        xs = torch.nonzero(m[base]).flatten()
        for c in sorted({int(x) // cw for x in xs}):
            cell = (slice(r * ch, (r + 1) * ch), slice(c * cw, (c + 1) * cw))
            share = float(wall[cell].float().mean())
            if share >= min_wall and not bool(door[cell].any()):
                found[(r, c)] = max(share, found.get((r, c), 0.0))
    return sorted(found, key=lambda rc: -found[rc])

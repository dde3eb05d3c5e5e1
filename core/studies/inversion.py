"""Real toyworld scenes reconstructed through a generator by layer inversion
(:mod:`core.engine.inversion`), measured against toyworld's exact labels: per class, how much of
the real scene's exact pixels survive in the reconstruction's segmentation (recall), and the
reconstruction error; the generator's own samples inverted the same way give the ceiling.

    enc, _ = train_inverter(G, "layer4", ...)              # or load_encoder(path)
    res = reconstruction_recall(G, seg, enc, "town", n=100, features=core.load_features())
    res.summary()        # mean recall over the scene's classes, per class, L1; real and generated (ceiling)
    gal = reconstruction_gallery(G, seg, enc, "town", n=8, features=core.load_features())   # stored
    gal.dropped(), gal.losses(0), gal.panel(0)   # what each reconstruction drops, outlined
"""
from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core import toyworld
from core.base.cache import atomic_path, cache_root, measure, weights_hash
from core.base.checkpoints import load_checkpoint
from core.base.devices import device_of
from core.base.errors import CacheError, CheckpointError, InputError
from core.base.protocols import check_generator, check_segmenter
from core.base.sampling import z_range
from core.base.validate import check_callable, check_choice, check_float, check_int
from core.engine.inversion import LayerEncoder, check_layer, invert
from core.outputs.visualize import png_bytes, side_by_side, to_uint8
from core.studies.omissions import image_size

__all__ = ["INVERSION_REAL_SEED", "INVERSION_GEN_SEED", "Recall", "class_recall", "reconstruction_recall",
           "segmenter_recall", "Gallery", "reconstruction_gallery", "mark_dropped", "GALLERY_VERSION",
           "perceptual_maps", "real_scenes", "toyworld_labels", "save_encoder", "load_encoder", "encoder_for",
           "encoder_paths", "SHIPPED_INVERTERS"]

INVERSION_REAL_SEED = 4_000_000   # held out: the GANs trained on seeds 3,000,000 + step (< 35,000 steps)
INVERSION_GEN_SEED = 11           # the generated samples of the ceiling (the encoder trained on seed 7)
SHIPPED_INVERTERS = Path(__file__).resolve().parents[1] / "weights" / "inverters"
GALLERY_VERSION = "1"             # the stored form of reconstruction_gallery (cache kind "inversion.gallery")


def class_recall(labels: torch.Tensor, predicted: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and class, the true pixels (``labels == c``) and those of them that ``predicted``
    also calls ``c``: two int64 tensors N x C (one ``bincount`` each, no loop over images or classes)."""
    n = labels.shape[0]
    flat, pred = labels.reshape(n, -1).long(), predicted.reshape(n, -1).long()
    offset = torch.arange(n, device=flat.device).view(n, 1) * n_classes
    true = torch.bincount((flat + offset).reshape(-1), minlength=n * n_classes).view(n, n_classes)
    hit = torch.bincount((flat + offset)[flat == pred], minlength=n * n_classes).view(n, n_classes)
    return true, hit


@dataclass
class Recall:
    """Per image and class the true pixels and those recalled, for the optimised reconstructions
    (``hit``) and the encoder-only ones (``hit0``), with per-image L1; one side (real or generated).

    ``classes``: the scene's own classes (:data:`toyworld.SCENE_CONCEPTS`). Recall per class, its
    mean and the per-image means count only these: on the generated side (the ceiling) the "true"
    labels are the segmenter's reading of a sample, whose stray labels (a few pixels of ``sky`` in a
    room) are no class of the scene; they are reported apart (:meth:`stray`). None: every class
    present counts."""
    labels: list[str]
    true: np.ndarray
    hit: np.ndarray
    hit0: np.ndarray
    l1: np.ndarray
    l1_0: np.ndarray
    classes: tuple[str, ...] | None = None

    def _in_scope(self) -> np.ndarray:
        if self.classes is None:
            return np.ones(len(self.labels), bool)
        return np.array([c in self.classes for c in self.labels])

    def per_class(self, initial: bool = False) -> dict[str, float]:
        """Per class of the scene present in any image, the pooled recall (recalled / true pixels)."""
        t = self.true.sum(0)
        h = (self.hit0 if initial else self.hit).sum(0)
        keep = self._in_scope()
        return {self.labels[c]: float(h[c] / t[c]) for c in range(len(self.labels)) if t[c] > 0 and keep[c]}

    def mean_recall(self, initial: bool = False) -> float:
        """The mean over the scene's classes (present in any image) of the pooled recall."""
        return float(np.mean(list(self.per_class(initial).values())))

    def per_image_class(self, initial: bool = False) -> np.ndarray:
        """N x C: per image and class of the scene, the share of its exact pixels recalled (NaN where
        the class is absent from the image or not the scene's)."""
        h = self.hit0 if initial else self.hit
        present = (self.true > 0) & self._in_scope()[None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present, h / np.maximum(self.true, 1), np.nan)

    def per_image(self, initial: bool = False) -> np.ndarray:
        """Per image, the mean over the scene's classes present in it of their recall."""
        return np.nanmean(self.per_image_class(initial), 1)

    def stray(self) -> dict[str, int]:
        """Pixels per class outside the scene's classes (the segmenter's stray labels), left out of the recall."""
        t, keep = self.true.sum(0), self._in_scope()
        return {self.labels[c]: int(t[c]) for c in range(len(self.labels)) if t[c] > 0 and not keep[c]}

    def summary(self) -> dict:
        keep = self._in_scope()
        return {"mean_recall": self.mean_recall(), "mean_recall_encoder_only": self.mean_recall(True),
                "per_image_recall_mean": float(np.mean(self.per_image())),
                "l1": float(self.l1.mean()), "l1_encoder_only": float(self.l1_0.mean()),
                "per_class": self.per_class(), "per_class_encoder_only": self.per_class(True),
                "pixels": {self.labels[c]: int(v) for c, v in enumerate(self.true.sum(0)) if v > 0 and keep[c]},
                "stray_pixels": self.stray()}


@dataclass
class Reconstructions:
    """:func:`reconstruction_recall`'s result: the real side and, unless skipped, the generated (ceiling)."""
    real: Recall
    generated: Recall | None
    scene: str
    n: int
    steps: int
    seconds: float

    def summary(self) -> dict:
        return {"scene": self.scene, "n": self.n, "steps": self.steps, "seconds": self.seconds,
                "real": self.real.summary(), "generated": None if self.generated is None else self.generated.summary()}

    def drop(self, base: "Reconstructions", side: str = "real") -> list[dict]:
        """Per class, recall in ``base`` minus recall here (largest drop first): what this inversion loses."""
        a, b = getattr(base, side).per_class(), getattr(self, side).per_class()
        rows = [{"label": k, "recall_base": a[k], "recall": b[k], "drop": a[k] - b[k]} for k in a if k in b]
        return sorted(rows, key=lambda r: -r["drop"])


def perceptual_maps(features) -> Callable:
    """The perceptual network of an inversion from a toyworld feature network: its encoder's two middle
    stages' maps (d2, d3: 1/4 and 1/8 of the image), run on the images at their own size (64 px, not
    the network's native 128: four times cheaper per step); a network without ``enc`` is used as it is."""
    enc = getattr(features, "enc", None)
    if enc is None:
        return features

    def maps(images):
        return enc(images)[1:3]
    return maps


def toyworld_labels(segmenter) -> torch.Tensor:
    """toyworld's label indices mapped to ``segmenter``'s (a lookup table: ``lut[labels]``); a segmenter
    without all of toyworld's labels is refused, naming ``segmenter``."""
    missing = [c for c in toyworld.LABELS if c not in segmenter.labels]
    if missing:
        raise InputError(f"segmenter: it lacks toyworld's labels {missing[:5]}", fix="use the toyworld segmenter")
    return torch.tensor([segmenter.labels.index(c) for c in toyworld.LABELS], device="cpu")


def real_scenes(scene: str, n: int, seed: int, size: int, segmenter) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real toyworld ``scene`` scenes (seed ``seed``, ``size`` px) and their exact labels as the
    segmenter's indices (both on the CPU, as toyworld renders)."""
    lut = toyworld_labels(segmenter)
    images, labels = toyworld.render(scene, n, seed=seed, size=size)
    return images, lut[labels]


def _check_encoder_size(encoder: LayerEncoder, size: int) -> None:
    if encoder.image_size != size:
        raise InputError(f"encoder: it takes {encoder.image_size}-px images, the generator makes {size}-px ones",
                         fix="give the encoder trained for this generator")


def _side(generator, segmenter, encoder, layer, images, labels, steps, lr, feats, units_off, batch_size,
          progress, classes=None, anchor_weight: float = 0.01) -> Recall:
    inv = invert(generator, layer, encoder, images, steps, lr, feats, progress, units_off=units_off,
                 batch_size=batch_size, anchor_weight=anchor_weight)
    dev = device_of(generator)
    C = len(segmenter.labels)
    labels = labels.to(dev)
    with torch.no_grad():
        t, h = class_recall(labels, segmenter.segment(inv.reconstruction), C)
        _, h0 = class_recall(labels, segmenter.segment(inv.initial_reconstruction), C)
        l1_0 = (inv.initial_reconstruction - images.to(dev)).abs().flatten(1).mean(1)
    return Recall(list(segmenter.labels), t.cpu().numpy(), h.cpu().numpy(), h0.cpu().numpy(),
                  inv.l1(images).cpu().numpy(), l1_0.cpu().numpy(), classes)


def reconstruction_recall(generator, segmenter, encoder: LayerEncoder, scene: str, n: int = 100,
                          seed: int = INVERSION_REAL_SEED, *, steps: int = 100, lr: float = 0.01, features=None,
                          layer: str = "layer4", units_off: Sequence[int] = (), ceiling: bool = True,
                          gen_seed: int = INVERSION_GEN_SEED, batch_size: int = 100,
                          progress: Callable | None = None, anchor_weight: float = 0.01) -> Reconstructions:
    """``n`` real ``scene`` scenes (toyworld seed ``seed``, held out from the GANs' training) inverted
    into ``layer`` (:func:`~core.engine.inversion.invert`, ``steps`` of Adam at ``lr``, the perceptual
    term through ``features``: a toyworld feature network or any callable); per class, the recall of
    the real exact pixels in the segmentation of the reconstruction, and its L1. ``ceiling``: the
    same for ``n`` of the generator's own samples (``gen_seed``), recall against the segmentation of
    the sample itself. ``units_off``: a planted omission (those units never reach the rendering).
    ``anchor_weight``: :func:`~core.engine.inversion.invert`'s pull towards the encoder's guess (larger
    keeps the featuremap nearer what the generator makes of its own samples)."""
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    scene = check_choice("scene", scene, toyworld.SCENES)
    n = check_int("n", n, 1, 100_000)
    seed, gen_seed = check_int("seed", seed, 0), check_int("gen_seed", gen_seed, 0)
    layer = check_layer(generator, layer)
    if not isinstance(encoder, LayerEncoder):
        raise InputError(f"encoder must be a LayerEncoder, got {type(encoder).__name__}",
                         fix="train one (core.engine.inversion.train_inverter) or load_encoder(path)")
    size = image_size(generator)
    _check_encoder_size(encoder, size)
    toyworld_labels(segmenter)
    feats = perceptual_maps(features) if features is not None else None
    t0 = time.perf_counter()
    images, labels = real_scenes(scene, n, seed, size, segmenter)
    classes = toyworld.SCENE_CONCEPTS[scene]
    real = _side(generator, segmenter, encoder, layer, images, labels, steps, lr, feats, units_off,
                 batch_size, progress, classes, anchor_weight)
    gen = None
    if ceiling:
        dev = device_of(generator)
        with torch.no_grad():
            g = generator(z_range(gen_seed, 0, n, generator.z_dim, dev))
            g_labels = segmenter.segment(g)
        gen = _side(generator, segmenter, encoder, layer, g, g_labels, steps, lr, feats, units_off, batch_size,
                    progress, classes, anchor_weight)
    return Reconstructions(real, gen, scene, n, steps, time.perf_counter() - t0)


def segmenter_recall(segmenter, scene: str, n: int = 100, seed: int = INVERSION_REAL_SEED, size: int = 64,
                     device="cpu") -> Recall:
    """The same per-class recall for the real scenes themselves segmented (no reconstruction): what a
    perfect reconstruction would score, the segmenter's own misses against the exact labels."""
    check_segmenter(segmenter)
    scene = check_choice("scene", scene, toyworld.SCENES)
    n, seed, size = check_int("n", n, 1, 100_000), check_int("seed", seed, 0), check_int("size", size, 8, 1024)
    images, labels = real_scenes(scene, n, seed, size, segmenter)
    with torch.no_grad():
        t, h = class_recall(labels.to(device), segmenter.segment(images.to(device)), len(segmenter.labels))
    zero = np.zeros(n)
    return Recall(list(segmenter.labels), t.cpu().numpy(), h.cpu().numpy(), h.cpu().numpy(), zero, zero,
                  toyworld.SCENE_CONCEPTS[scene])


# ----------------------------------------------------------------------------- the gallery: what a reconstruction drops

DROPPED_COLOUR = (255, 0, 200)      # magenta: in no toyworld scene's palette


def _as_index(x: np.ndarray) -> np.ndarray:
    return x.astype(np.uint8) if x.max(initial=0) < 256 else x.astype(np.int16)


@dataclass
class Gallery:
    """:func:`reconstruction_gallery`'s result: ``n`` held-out real scenes (``real``, uint8 N x H x W
    x 3; not stored: rendered again when read, checked against their stored hash) with their exact
    labels (``truth``: the segmenter's indices of toyworld's labels, N x H x W), their
    reconstructions (``reconstruction``, uint8) with the segmenter's reading of them
    (``segmentation``) and of the real scenes themselves (``real_segmentation``: what the segmenter
    alone misses), and per image the L1 of the reconstruction (pixels in [-1, 1], of the float
    images before rounding to uint8).

    A pixel is *dropped* when its exact class is not the class the reconstruction is segmented as
    (:meth:`dropped`); per class, the pixels of that real class the reconstruction loses. Everything
    else (recall per image and class, the classes that lost most, the pictures) is counted from
    these arrays, so what is shown is what is stored."""
    scene: str
    labels: list[str]
    real: np.ndarray
    truth: np.ndarray
    reconstruction: np.ndarray
    segmentation: np.ndarray
    real_segmentation: np.ndarray
    l1: np.ndarray
    layer: str
    steps: int
    seed: int
    seconds: float

    @property
    def n(self) -> int:
        return len(self.real)

    def dropped(self, klass: str | None = None) -> np.ndarray:
        """Bool N x H x W: the pixels whose exact class the reconstruction's segmentation does not
        keep; ``klass``: only the pixels of that real class."""
        out = self.truth != self.segmentation
        if klass is not None:
            out &= self.truth == self.labels.index(check_choice("klass", klass, self.labels))
        return out

    def _counts(self, predicted: np.ndarray, images: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        t, h = class_recall(torch.from_numpy(self.truth[images].astype(np.int64)),
                            torch.from_numpy(predicted[images].astype(np.int64)), len(self.labels))
        return t.numpy(), h.numpy()

    def recall(self, segmenter_only: bool = False) -> Recall:
        """Per image and class the exact pixels and those the reconstruction's segmentation keeps, as a
        :class:`Recall` over the scene's classes (``segmenter_only``: the real scenes themselves
        segmented, what a perfect reconstruction would keep)."""
        t, h = self._counts(self.real_segmentation if segmenter_only else self.segmentation)
        l1 = np.zeros(self.n) if segmenter_only else self.l1.astype(np.float64)
        return Recall(list(self.labels), t, h, h, l1, l1, toyworld.SCENE_CONCEPTS[self.scene])

    def per_image_recall(self) -> np.ndarray:
        """N x C: per image and class, the share of the class's exact pixels kept (NaN where absent)."""
        t, h = self._counts(self.segmentation)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(t > 0, h / np.maximum(t, 1), np.nan)

    def losses(self, i: int, k: int = 3, min_pixels: int = 16) -> list[dict]:
        """The ``k`` classes of image ``i`` that lost most: of the scene's classes with at least
        ``min_pixels`` exact pixels there, the largest share of pixels dropped first (then the most
        pixels); each ``{"label", "pixels", "dropped", "recall", "lost"}`` (``lost`` = 1 - recall, the share
        dropped). Only classes that lost a pixel."""
        i = check_int("i", i, 0, self.n - 1)
        k, min_pixels = check_int("k", k, 1), check_int("min_pixels", min_pixels, 1)
        t, h = self._counts(self.segmentation, slice(i, i + 1))
        scene = toyworld.SCENE_CONCEPTS[self.scene]
        t, h = t[0], h[0]
        rows = [{"label": c, "pixels": int(t[j]), "dropped": int(t[j] - h[j]), "recall": float(h[j] / t[j]),
                 "lost": float(1 - h[j] / t[j])}
                for j, c in enumerate(self.labels) if c in scene and t[j] >= min_pixels and h[j] < t[j]]
        return sorted(rows, key=lambda r: (r["recall"], -r["dropped"]))[:k]

    def class_table(self):
        """Per class of the scene present in the gallery (fewest kept first): exact pixels, pixels the
        reconstruction drops, its recall, and the segmenter's own recall on the real scenes."""
        import pandas as pd
        rec, seg = self.recall(), self.recall(segmenter_only=True)
        per, own = rec.per_class(), seg.per_class()
        t, h = rec.true.sum(0), rec.hit.sum(0)
        rows = [{"label": c, "pixels": int(t[j]), "dropped": int(t[j] - h[j]), "recall": per[c],
                 "segmenter_recall": own[c]} for j, c in enumerate(self.labels) if c in per]
        return pd.DataFrame(rows).sort_values(["recall", "dropped"], ascending=[True, False], ignore_index=True)

    def panel(self, i: int, scale: int = 3, colour=DROPPED_COLOUR) -> np.ndarray:
        """Image ``i``'s real scene and its reconstruction side by side (uint8, ``scale`` x nearest),
        each with the dropped pixels tinted and outlined (:func:`mark_dropped`)."""
        i = check_int("i", i, 0, self.n - 1)
        mask = self.dropped()[i]
        return side_by_side([mark_dropped(self.real[i], mask, scale, colour),
                             mark_dropped(self.reconstruction[i], mask, scale, colour)], gap=2 * scale)

    def summary(self) -> dict:
        rec = self.recall()
        return {"scene": self.scene, "n": self.n, "steps": self.steps, "layer": self.layer, "seed": self.seed,
                "seconds": self.seconds, "mean_recall": rec.mean_recall(), "l1": float(self.l1.mean()),
                "l1_per_image": [float(v) for v in self.l1],
                "segmenter_mean_recall": self.recall(segmenter_only=True).mean_recall(),
                "per_class": rec.per_class(), "dropped_percent": 100 * float(self.dropped().mean()),
                "lost_most": [self.losses(i) for i in range(self.n)]}

    def to_arrays(self) -> tuple[dict, dict]:
        """The stored form, small: the reconstructions as lossless PNGs (one byte array and the sizes),
        the label maps as uint8; the real scenes are not stored (rendered again from toyworld's seed
        when read, and checked against the SHA-256 of the pixels stored in the meta)."""
        pngs = [np.frombuffer(png_bytes(im), np.uint8) for im in self.reconstruction]
        arrays = {"reconstruction_png": np.concatenate(pngs), "png_sizes": np.array([len(b) for b in pngs]),
                  "truth": _as_index(self.truth), "segmentation": _as_index(self.segmentation),
                  "real_segmentation": _as_index(self.real_segmentation), "l1": self.l1.astype(np.float32)}
        meta = {"scene": self.scene, "labels": list(self.labels), "layer": self.layer, "steps": self.steps,
                "seed": self.seed, "seconds": self.seconds, "n": self.n, "size": int(self.real.shape[1]),
                "real_sha256": hashlib.sha256(np.ascontiguousarray(self.real).tobytes()).hexdigest()}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "Gallery":
        from PIL import Image
        images, _ = toyworld.render(meta["scene"], int(meta["n"]), seed=int(meta["seed"]), size=int(meta["size"]))
        real = to_uint8(images)
        if hashlib.sha256(real.tobytes()).hexdigest() != meta["real_sha256"]:
            raise CacheError("the real scenes rendered again differ from those of the stored gallery "
                             "(toyworld's drawing changed)", fix="it is computed again (the cache does so)")
        blob, ends = np.asarray(arrays["reconstruction_png"]), np.cumsum(arrays["png_sizes"])
        rec = np.stack([np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
                        for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)])
        return cls(meta["scene"], list(meta["labels"]), real, np.asarray(arrays["truth"]), rec,
                   np.asarray(arrays["segmentation"]), np.asarray(arrays["real_segmentation"]),
                   np.asarray(arrays["l1"]), meta["layer"], int(meta["steps"]), int(meta["seed"]),
                   float(meta["seconds"]))


def mark_dropped(image: np.ndarray, mask: np.ndarray, scale: int = 3, colour=DROPPED_COLOUR,
                 tint: float = 0.35) -> np.ndarray:
    """``image`` [H, W, 3] uint8 enlarged ``scale`` x (nearest), the pixels of ``mask`` [H, W] tinted
    ``tint`` of the way to ``colour`` and their region's outline (the masked pixels with an unmasked
    4-neighbour, at the enlarged size: one pixel wide) drawn in ``colour``."""
    image, mask = np.asarray(image), np.asarray(mask, bool)
    if image.ndim != 3 or image.shape[-1] != 3 or mask.shape != image.shape[:2]:
        raise InputError(f"mark_dropped: image {image.shape} must be [H, W, 3] and mask {mask.shape} [H, W]",
                         fix="pass one uint8 RGB image and its boolean mask")
    scale = check_int("scale", scale, 1, 64)
    tint = check_float("tint", tint, 0, 1)
    big = np.repeat(np.repeat(image, scale, 0), scale, 1).astype(np.float32)
    m = np.repeat(np.repeat(mask, scale, 0), scale, 1)
    c = np.asarray(colour, np.float32)
    big[m] = (1 - tint) * big[m] + tint * c
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    big[m & ~inner] = c
    return big.round().astype(np.uint8)


def reconstruction_gallery(generator, segmenter, encoder: LayerEncoder, scene: str, n: int = 8, *,
                           steps: int = 100, lr: float = 0.01, features=None, layer: str = "layer4",
                           seed: int = INVERSION_REAL_SEED, batch_size: int = 100, progress: Callable | None = None,
                           cache: bool = True, cached_only: bool = False) -> Gallery | None:
    """``n`` held-out real ``scene`` scenes (toyworld seed ``seed``) inverted into ``layer`` as
    :func:`reconstruction_recall` does (``steps`` of Adam at ``lr`` from the encoder's guess, the
    perceptual term through ``features``, a toyworld feature network), kept whole: the images, their
    exact labels, the reconstructions and both segmentations, the L1 per image (a :class:`Gallery`).

    Stored (cache kind ``inversion.gallery``, keyed by the generator's, segmenter's, encoder's and
    feature network's fingerprints and every argument): ``cached_only=True`` returns the stored
    result or None, computing nothing. ``progress(done, total)`` counts optimisation steps.
    Everything is checked before any work."""
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    scene = check_choice("scene", scene, toyworld.SCENES)
    n = check_int("n", n, 1, 1000)
    steps = check_int("steps", steps, 0, 100_000)
    lr = check_float("lr", lr, 0, lo_open=True)
    seed = check_int("seed", seed, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    check_callable("progress", progress)
    layer = check_layer(generator, layer)
    if not isinstance(encoder, LayerEncoder):
        raise InputError(f"encoder must be a LayerEncoder, got {type(encoder).__name__}",
                         fix="the generator's inverter: encoder_for(generator, name), or load_encoder(path)")
    if features is not None and not callable(features):
        raise InputError(f"features must be a feature network or None, got {type(features).__name__}",
                         fix="e.g. features=core.load_features()")
    toyworld_labels(segmenter)
    size = image_size(generator)
    _check_encoder_size(encoder, size)
    models = {"generator": generator, "segmenter": segmenter, "encoder": encoder}
    if features is not None:
        models["features"] = features

    def compute() -> Gallery:
        t0 = time.perf_counter()
        images, labels = real_scenes(scene, n, seed, size, segmenter)
        feats = perceptual_maps(features) if features is not None else None
        inv = invert(generator, layer, encoder, images, steps, lr, feats, progress, batch_size=batch_size)
        dev = device_of(generator)
        with torch.no_grad():
            seg_rec = segmenter.segment(inv.reconstruction).cpu().numpy()
            seg_real = segmenter.segment(images.to(dev)).cpu().numpy()
            l1 = inv.l1(images).cpu().numpy().astype(np.float32)
        return Gallery(scene, list(segmenter.labels), to_uint8(images), labels.numpy(),
                       to_uint8(inv.reconstruction), seg_rec, seg_real, l1, layer, steps, seed,
                       time.perf_counter() - t0)

    return measure("inversion.gallery", GALLERY_VERSION, models=models,
                   parts={"scene": scene, "n": n, "steps": steps, "lr": lr, "layer": layer, "seed": seed,
                          "perceptual": "d2,d3" if features is not None else "none"},
                   compute=compute, codec=Gallery, cache=cache, cached_only=cached_only)


# ----------------------------------------------------------------------------- encoder files

def save_encoder(path, encoder: LayerEncoder, **meta) -> Path:
    """Write ``encoder`` in float16 with its configuration and ``meta`` (atomically): ``{"state_dict",
    "config", "meta"}``, loaded by :func:`load_encoder`."""
    state = {k: v.detach().to("cpu", torch.float16) for k, v in encoder.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "config": encoder.config(), "meta": meta}, tmp)
    return path


def load_encoder(path, device="cpu") -> tuple[LayerEncoder, dict]:
    """An encoder written by :func:`save_encoder` (loaded safely, float32, eval mode), with its meta."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no inverter at {path}", fix="train one: python scripts/train_inverter.py")
    blob = load_checkpoint(path)
    if not isinstance(blob, dict) or not {"state_dict", "config"} <= set(blob):
        raise CheckpointError(f"{path} is not an inverter saved by save_encoder", fix="retrain it")
    enc = LayerEncoder(**blob["config"])
    enc.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return enc.to(device).eval().requires_grad_(False), dict(blob.get("meta") or {})


def encoder_paths(generator_name: str, layer: str = "layer4") -> list[Path]:
    """Where an inverter of ``generator_name`` (a zoo name like ``toyworld/town``, or a checkpoint of
    it ``toyworld/town@step-N`` when it has one of its own) into ``layer`` is looked for, first
    first: the user's trained one in ``cache/inverters/`` (``scripts/train_inverter.py``), then
    the shipped one in ``core/weights/inverters/``. Files are named ``<scene>-<layer>.pt``."""
    stem = str(generator_name).split("/")[-1].replace("@", "_")
    return [cache_root() / "inverters" / f"{stem}-{layer}.pt", SHIPPED_INVERTERS / f"{stem}-{layer}.pt"]


def encoder_for(generator, generator_name: str, layer: str = "layer4", device=None) -> tuple[LayerEncoder, dict]:
    """The inverter trained for this generator and ``layer`` (see :func:`encoder_paths`), with its
    meta (``meta["path"]`` says which file). An encoder records the weights it was trained on; one
    trained on other weights (a fine-tune, a rewrite under the same name) is refused with a
    :class:`CheckpointError` naming the generator, as is a generator with none."""
    check_generator(generator, probe=False)
    layer = check_layer(generator, layer)
    want = weights_hash(generator)
    seen = []
    for path in encoder_paths(generator_name, layer):
        if not path.is_file():
            continue
        enc, meta = load_encoder(path, device=device if device is not None else device_of(generator))
        if meta.get("weights") == want:
            meta["path"] = str(path)
            return enc, meta
        seen.append(path)
    if seen:
        raise CheckpointError(f"generator: the inverter at {seen[0]} was trained on other weights than "
                              f"{generator_name}'s", fix=_train_fix(generator_name, layer))
    raise CheckpointError(f"generator: no inverter into {layer} for {generator_name} (looked in cache/inverters/ "
                          "and core/weights/inverters/)",
                          fix=_train_fix(generator_name, layer))


def _train_fix(generator_name: str, layer: str) -> str:
    """How to train the missing inverter: the script's command for a shipped toyworld scene's
    generator, else the two calls that write one where :func:`encoder_for` looks."""
    scene = str(generator_name).removeprefix("toyworld/")
    if str(generator_name).startswith("toyworld/") and scene in toyworld.SCENES:
        return (f"train one (about 25 min on 2 CPU cores): python scripts/train_inverter.py --phase train "
                f"--scenes {scene} --layer {layer} --steps 1200 --resume")
    return (f"train one: enc, _ = core.engine.inversion.train_inverter(G, {layer!r}); then "
            f"core.studies.inversion.save_encoder(encoder_paths({str(generator_name)[:60]!r}, {layer!r})[0], enc, "
            "weights=core.base.cache.weights_hash(G))")

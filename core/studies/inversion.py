"""Real toyworld scenes reconstructed through a generator by layer inversion
(:mod:`core.engine.inversion`), measured against toyworld's exact labels: per class, how much of
the real scene's exact pixels survive in the reconstruction's segmentation (recall), and the
reconstruction error; the generator's own samples inverted the same way give the ceiling.

    enc, _ = train_inverter(G, "layer4", ...)              # or load_encoder(path)
    res = reconstruction_recall(G, seg, enc, "town", n=100, features=core.load_features())
    res.summary()        # mean recall over classes, per class, L1; real and generated (ceiling)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core import toyworld
from core.base.cache import atomic_path, cache_root, weights_hash
from core.base.checkpoints import load_checkpoint
from core.base.devices import device_of
from core.base.errors import CheckpointError, InputError
from core.base.protocols import check_generator, check_segmenter
from core.base.sampling import z_range
from core.base.validate import check_choice, check_int
from core.engine.inversion import LayerEncoder, check_layer, invert
from core.studies.omissions import image_size

__all__ = ["INVERSION_REAL_SEED", "INVERSION_GEN_SEED", "Recall", "class_recall", "reconstruction_recall",
           "segmenter_recall",
           "perceptual_maps", "save_encoder", "load_encoder", "encoder_for", "encoder_paths", "SHIPPED_INVERTERS"]

INVERSION_REAL_SEED = 4_000_000   # held out: the GANs trained on seeds 3,000,000 + step (< 35,000 steps)
INVERSION_GEN_SEED = 11           # the generated samples of the ceiling (the encoder trained on seed 7)
SHIPPED_INVERTERS = Path(__file__).resolve().parents[1] / "weights" / "inverters"


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
    (``hit``) and the encoder-only ones (``hit0``), with per-image L1; one side (real or generated)."""
    labels: list[str]
    true: np.ndarray
    hit: np.ndarray
    hit0: np.ndarray
    l1: np.ndarray
    l1_0: np.ndarray

    def per_class(self, initial: bool = False) -> dict[str, float]:
        t = self.true.sum(0)
        h = (self.hit0 if initial else self.hit).sum(0)
        return {self.labels[c]: float(h[c] / t[c]) for c in range(len(self.labels)) if t[c] > 0}

    def mean_recall(self, initial: bool = False) -> float:
        """The mean over classes (present in any image) of the pooled recall."""
        return float(np.mean(list(self.per_class(initial).values())))

    def per_image(self, initial: bool = False) -> np.ndarray:
        """Per image, the mean over the classes present in it of their recall."""
        h = self.hit0 if initial else self.hit
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(self.true > 0, h / np.maximum(self.true, 1), np.nan)
        return np.nanmean(r, 1)

    def summary(self) -> dict:
        return {"mean_recall": self.mean_recall(), "mean_recall_encoder_only": self.mean_recall(True),
                "per_image_recall_mean": float(np.mean(self.per_image())),
                "l1": float(self.l1.mean()), "l1_encoder_only": float(self.l1_0.mean()),
                "per_class": self.per_class(), "per_class_encoder_only": self.per_class(True),
                "pixels": {self.labels[c]: int(v) for c, v in enumerate(self.true.sum(0)) if v > 0}}


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


def _side(generator, segmenter, encoder, layer, images, labels, steps, lr, feats, units_off, batch_size,
          progress) -> Recall:
    inv = invert(generator, layer, encoder, images, steps, lr, feats, progress, units_off=units_off,
                 batch_size=batch_size)
    dev = device_of(generator)
    C = len(segmenter.labels)
    labels = labels.to(dev)
    with torch.no_grad():
        t, h = class_recall(labels, segmenter.segment(inv.reconstruction), C)
        _, h0 = class_recall(labels, segmenter.segment(inv.initial_reconstruction), C)
        l1_0 = (inv.initial_reconstruction - images.to(dev)).abs().flatten(1).mean(1)
    return Recall(list(segmenter.labels), t.cpu().numpy(), h.cpu().numpy(), h0.cpu().numpy(),
                  inv.l1(images).cpu().numpy(), l1_0.cpu().numpy())


def reconstruction_recall(generator, segmenter, encoder: LayerEncoder, scene: str, n: int = 100,
                          seed: int = INVERSION_REAL_SEED, *, steps: int = 100, lr: float = 0.01, features=None,
                          layer: str = "layer4", units_off: Sequence[int] = (), ceiling: bool = True,
                          gen_seed: int = INVERSION_GEN_SEED, batch_size: int = 100,
                          progress: Callable | None = None) -> Reconstructions:
    """``n`` real ``scene`` scenes (toyworld seed ``seed``, held out from the GANs' training) inverted
    into ``layer`` (:func:`~core.engine.inversion.invert`, ``steps`` of Adam at ``lr``, the perceptual
    term through ``features``: a toyworld feature network or any callable); per class, the recall of
    the real exact pixels in the segmentation of the reconstruction, and its L1. ``ceiling``: the
    same for ``n`` of the generator's own samples (``gen_seed``), recall against the segmentation of
    the sample itself. ``units_off``: a planted omission (those units never reach the rendering)."""
    import time
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
    if encoder.image_size != size:
        raise InputError(f"encoder: it takes {encoder.image_size}-px images, the generator makes {size}-px ones",
                         fix="give the encoder trained for this generator")
    missing = [c for c in toyworld.LABELS if c not in segmenter.labels]
    if missing:
        raise InputError(f"segmenter: it lacks toyworld's labels {missing[:5]}", fix="use the toyworld segmenter")
    feats = perceptual_maps(features) if features is not None else None
    t0 = time.perf_counter()
    images, labels = toyworld.render(scene, n, seed=seed, size=size)
    lut = torch.tensor([segmenter.labels.index(c) for c in toyworld.LABELS], device=labels.device)
    real = _side(generator, segmenter, encoder, layer, images, lut[labels], steps, lr, feats, units_off,
                 batch_size, progress)
    gen = None
    if ceiling:
        dev = device_of(generator)
        with torch.no_grad():
            g = generator(z_range(gen_seed, 0, n, generator.z_dim, dev))
            g_labels = segmenter.segment(g)
        gen = _side(generator, segmenter, encoder, layer, g, g_labels, steps, lr, feats, units_off, batch_size,
                    progress)
    return Reconstructions(real, gen, scene, n, steps, time.perf_counter() - t0)


def segmenter_recall(segmenter, scene: str, n: int = 100, seed: int = INVERSION_REAL_SEED, size: int = 64,
                     device="cpu") -> Recall:
    """The same per-class recall for the real scenes themselves segmented (no reconstruction): what a
    perfect reconstruction would score, the segmenter's own misses against the exact labels."""
    check_segmenter(segmenter)
    scene = check_choice("scene", scene, toyworld.SCENES)
    n, seed, size = check_int("n", n, 1, 100_000), check_int("seed", seed, 0), check_int("size", size, 8, 1024)
    images, labels = toyworld.render(scene, n, seed=seed, size=size)
    lut = torch.tensor([segmenter.labels.index(c) for c in toyworld.LABELS], device=labels.device)
    with torch.no_grad():
        t, h = class_recall(lut[labels].to(device), segmenter.segment(images.to(device)), len(segmenter.labels))
    zero = np.zeros(n)
    return Recall(list(segmenter.labels), t.cpu().numpy(), h.cpu().numpy(), h.cpu().numpy(), zero, zero)


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
                              f"{generator_name}'s", fix="train one for this generator: python "
                              "scripts/train_inverter.py --phase train --scenes SCENE --resume")
    raise CheckpointError(f"generator: no inverter into {layer} for {generator_name} (looked in cache/inverters/ "
                          "and core/weights/inverters/)",
                          fix="train one (about 25 min on 2 CPU cores): python scripts/train_inverter.py --phase "
                              "train --scenes SCENE --steps 1200 --resume")

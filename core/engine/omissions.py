"""What a generator leaves out ("Seeing What a GAN Cannot Generate", Bau et al., ICCV 2019):
per-class segmentation statistics of generated vs real images and the Fréchet Segmentation
Distance (FSD).

Each image is segmented; per image, the fraction of its pixels in each class (a vector summing
to 1). Over ``n`` generated images (``z_range(seed, i, i + 1)``) and ``n`` real ones (``real``, any
object with ``name`` and ``batch(seed, start, stop)``), one streaming pass per side accumulates, on
the model's device, the sums of those vectors, of their outer products and the count of images
where each class appears. From them, per class: mean area, share of images where it appears and the
relative change (gen - real) / real; and

    FSD = 100 * (|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^1/2))

with its mean and covariance terms apart. The noise floor is the same distance between two
disjoint draws of real images (``real_seed`` and its stream ``omissions.floor``). Where ``real``
also gives exact labels (toyworld), the real side is counted a second time from them, so the
segmenter's own bias shows apart from the generator's; a source without them (``labels`` None: a
folder of the user's images, :class:`core.studies.image_folder.ImageFolder`) leaves that comparison out
(``exact`` None, ``segmenter_vs_exact`` None). A source with a ``check_draw(n, real_seed, floor_seed)``
method is asked before any image is made whether it can give both draws (a folder: enough images).

    res = omissions(G, seg, real, n_samples=2000)
    res.table()                      # one row per class, the most omitted first
    res.fsd(), res.floor_fsd()       # {"fsd", "mean_term", "cov_term"}
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import InputError, ProtocolError
from core.base.protocols import check_generator, check_segmentation, check_segmenter
from core.base.sampling import OMISSIONS_REAL_SEED, OMISSIONS_SEED, stream_seed, z_range
from core.base.sharing import long_computation
from core.base.validate import check_callable, check_int, check_samples
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.intervention import Edit, check_edits, generate

__all__ = ["class_fractions", "SegStats", "segmentation_stats", "fsd_terms", "Omissions", "omissions", "Edited",
           "check_real", "OMISSIONS_VERSION", "OMITTED_BELOW", "MIN_AREA"]

OMISSIONS_VERSION = "omissions-v1"     # bump when omissions() changes what it returns for the same arguments
OMITTED_BELOW = -0.5   # a class is called omitted when its relative change is at or below this ...
MIN_AREA = 1e-3        # ... and its real mean area is at least this (rarer classes: too few pixels to judge)


def class_fractions(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per image, the fraction of its pixels in each class: label maps [N, H, W] -> float64 [N, C]
    (one ``bincount`` over the batch, on the labels' device; no loop over images or classes)."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1).long()
    offset = torch.arange(n, device=flat.device).view(n, 1) * n_classes
    counts = torch.bincount((flat + offset).reshape(-1), minlength=n * n_classes).view(n, n_classes)
    return counts.to(torch.float64) / max(flat.shape[1], 1)


class SegStats(FeatureStats):
    """Streaming statistics of per-image class fractions: the sums of :class:`FeatureStats` (mean,
    covariance) and, per class, the number of images where it appears."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.present = None

    def update(self, fractions: torch.Tensor) -> "SegStats":
        super().update(fractions)
        hit = (fractions > 0).sum(0).to(torch.float64)
        self.present = hit if self.present is None else self.present + hit
        return self

    def add_labels(self, labels: torch.Tensor) -> "SegStats":
        return self.update(class_fractions(labels, self.n_classes))

    @property
    def mean(self) -> np.ndarray:
        return (self.sum / self.n).cpu().numpy()

    @property
    def share(self) -> np.ndarray:
        """Per class, the share of images where it appears (any pixel)."""
        return (self.present / self.n).cpu().numpy()

    def to_arrays(self, prefix: str = "") -> dict:
        return {f"{prefix}sum": self.sum.cpu().numpy(), f"{prefix}outer": self.outer.cpu().numpy(),
                f"{prefix}present": self.present.cpu().numpy(), f"{prefix}n": np.array(self.n)}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str = "") -> "SegStats":
        s = cls(int(arrays[f"{prefix}sum"].shape[0]))
        s.n = int(arrays[f"{prefix}n"])
        s.sum, s.outer, s.present = (torch.from_numpy(np.array(arrays[f"{prefix}{k}"], dtype=np.float64))
                                     for k in ("sum", "outer", "present"))
        return s


@torch.no_grad()
def segmentation_stats(batches, n_classes: int, segment: Callable | None = None) -> SegStats:
    """:class:`SegStats` over an iterable of batches: images segmented by ``segment`` or, with
    ``segment=None``, label maps [N, H, W] counted as they are."""
    st = SegStats(n_classes)
    for b in batches:
        labels = segment(b) if segment is not None else b
        check_segmentation(labels, b.shape[0], n_classes, what="segment(images)" if segment else "labels")
        st.add_labels(labels)
    return st


def fsd_terms(a: SegStats, b: SegStats) -> dict:
    """FSD between two :class:`SegStats` (x 100, as the paper prints it), with the mean term
    100 |mu_a - mu_b|^2 and the covariance term (the rest) apart."""
    (mu_a, cov_a), (mu_b, cov_b) = a.mean_cov(), b.mean_cov()
    total = 100.0 * frechet_distance(mu_a, cov_a, mu_b, cov_b)
    mean = 100.0 * float(((mu_a - mu_b) ** 2).sum())
    return {"fsd": total, "mean_term": mean, "cov_term": total - mean}


def _relative(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref > 0, (x - ref) / np.where(ref > 0, ref, 1.0), np.nan)


@dataclass
class Omissions:
    """Segmentation statistics of generated images, real ones (through the segmenter and, where the
    real source gives them, its exact labels) and a second, disjoint draw of real ones (the floor)."""
    labels: list
    generated: SegStats
    real: SegStats
    floor: SegStats
    exact: SegStats | None
    n_samples: int
    seed: int
    real_seed: int
    floor_seed: int
    real_name: str
    seconds: float = 0.0

    def fsd(self) -> dict:
        """Generated vs real (both through the segmenter)."""
        return fsd_terms(self.real, self.generated)

    def floor_fsd(self) -> dict:
        """Real vs real: two disjoint draws of ``n_samples`` (the noise floor)."""
        return fsd_terms(self.real, self.floor)

    def segmenter_fsd(self) -> dict | None:
        """Real through the segmenter vs the same real images' exact labels (the segmenter's bias)."""
        return None if self.exact is None else fsd_terms(self.exact, self.real)

    def table(self) -> pd.DataFrame:
        """One row per class but 0: mean areas, shares of images, relative changes (generated vs
        real; the floor's real vs real; with exact labels, the segmenter's vs the exact), sorted by
        the relative change, the most omitted first; classes of real mean area below ``MIN_AREA``
        (``judged`` False: too few pixels to judge) come after the others."""
        gen, real, floor = self.generated.mean, self.real.mean, self.floor.mean
        df = pd.DataFrame({"label": self.labels, "real_area": real, "generated_area": gen,
                           "real_share": self.real.share, "generated_share": self.generated.share,
                           "relative_change": _relative(gen, real), "floor_change": _relative(floor, real)})
        if self.exact is not None:
            df["exact_area"] = self.exact.mean
            df["exact_share"] = self.exact.share
            df["segmenter_change"] = _relative(real, self.exact.mean)
        df = df.iloc[1:].assign(judged=lambda d: d.real_area >= MIN_AREA)
        return df.sort_values(["judged", "relative_change", "real_area"], ascending=[False, True, False],
                              na_position="last", kind="stable").reset_index(drop=True)

    def omitted(self, below: float = OMITTED_BELOW, min_area: float = MIN_AREA) -> list[str]:
        """Classes the generator leaves out: relative change <= ``below`` among those whose real mean
        area is at least ``min_area``, the most omitted first."""
        t = self.table()
        return t[(t.real_area >= min_area) & (t.relative_change <= below)].label.tolist()

    def summary(self) -> dict:
        return {"n_samples": self.n_samples, "seed": self.seed, "real_seed": self.real_seed,
                "floor_seed": self.floor_seed, "real": self.real_name, "fsd": self.fsd(), "floor": self.floor_fsd(),
                "segmenter_vs_exact": self.segmenter_fsd(), "omitted": self.omitted(),
                "omitted_below": OMITTED_BELOW, "min_area": MIN_AREA, "seconds": self.seconds}

    def to_arrays(self) -> tuple[dict, dict]:
        arrays = {}
        for name in ("generated", "real", "floor", "exact"):
            if getattr(self, name) is not None:
                arrays.update(getattr(self, name).to_arrays(name + "_"))
        return arrays, {"labels": list(self.labels), "n_samples": self.n_samples, "seed": self.seed,
                        "real_seed": self.real_seed, "floor_seed": self.floor_seed, "real_name": self.real_name,
                        "seconds": self.seconds}

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "Omissions":
        side = {name: SegStats.from_arrays(arrays, name + "_") if f"{name}_sum" in arrays else None
                for name in ("generated", "real", "floor", "exact")}
        return cls(labels=list(meta["labels"]), **side, n_samples=int(meta["n_samples"]), seed=int(meta["seed"]),
                   real_seed=int(meta["real_seed"]), floor_seed=int(meta["floor_seed"]),
                   real_name=str(meta["real_name"]), seconds=float(meta["seconds"]))


def check_real(real) -> None:
    """Refuse (:class:`ProtocolError`) a real-image source without ``name`` (its identity in the
    cache key) and ``batch(seed, start, stop)``; ``labels`` (exact label names, or None) and
    ``check_draw(n, real_seed, floor_seed)`` are optional."""
    name = getattr(real, "name", None)
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"a real-image source needs `name`: a non-empty str naming its images (part of the "
                            f"cache key); got {name!r:.60}", fix="e.g. core.studies.omissions.ToyworldScenes('town')")
    if not callable(getattr(real, "batch", None)):
        raise ProtocolError("a real-image source needs batch(seed, start, stop) -> images, or (images, labels)",
                            fix="e.g. core.studies.omissions.ToyworldScenes('town')")


def _label_map(real, segmenter) -> torch.Tensor | None:
    """The real source's exact label indices -> the segmenter's (by name), or None when it has no labels."""
    names = getattr(real, "labels", None)
    if names is None:
        return None
    seg = {n: i for i, n in enumerate(segmenter.labels)}
    missing = [n for n in names if n not in seg]
    if missing:
        raise InputError(f"real: its labels {missing[:5]} are not labels of the segmenter",
                         fix="give a real source whose label names the segmenter knows")
    return torch.tensor([seg[n] for n in names], dtype=torch.long, device="cpu")


@long_computation("the omission statistics", fix="lower batch_size=")
def omissions(generator, segmenter, real, n_samples: int = 2000, seed: int = OMISSIONS_SEED,
              real_seed: int = OMISSIONS_REAL_SEED, batch_size: int = 50, exact: bool = True,
              progress: Callable | None = None, *, cache: bool = True, cached_only: bool = False) -> Omissions | None:
    """Segmentation statistics of ``n_samples`` generated images (seed ``seed``) and as many real
    ones (``real.batch(real_seed, ...)``), with the floor (``real.batch(floor_seed, ...)``,
    ``floor_seed = stream_seed(real_seed, "omissions.floor")``) and, where ``real`` gives labels and
    ``exact``, the real images' exact labels counted too. Everything is checked before any image is
    made. ``progress(done, total)`` counts images. Stored under ``cache/omissions`` keyed by both
    models, ``real.name`` and the arguments."""
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    check_real(real)
    n_samples = check_samples("n_samples", n_samples, 2, images_per_sample=3,
                              what="a whole number of images >= 2 (a covariance needs two)")
    seed, real_seed = check_int("seed", seed), check_int("real_seed", real_seed)
    batch_size = check_int("batch_size", batch_size, 1)
    check_callable("progress", progress)
    floor_seed = stream_seed(real_seed, "omissions.floor")
    mapping = _label_map(real, segmenter) if exact else None
    check_draw = getattr(real, "check_draw", None)
    if callable(check_draw):             # a finite source (a folder) says now whether it has both draws
        check_draw(n_samples, real_seed, floor_seed)
    parts = {"real": real.name, "n": n_samples, "seed": seed, "real_seed": real_seed, "floor_seed": floor_seed,
             "exact": mapping is not None}
    return _cache.measure(
        "omissions", OMISSIONS_VERSION, models={"generator": generator, "segmenter": segmenter}, parts=parts,
        compute=lambda: _omissions(generator, segmenter, real, n_samples, seed, real_seed, floor_seed, batch_size,
                                   mapping, progress),
        codec=Omissions, cache=cache, cached_only=cached_only)


@torch.no_grad()
def _omissions(generator, segmenter, real, n, seed, real_seed, floor_seed, batch_size, mapping, progress):
    t0 = time.perf_counter()
    dev = device_of(generator)
    C = len(segmenter.labels)
    total, done = 3 * n, 0
    spans = [(a, min(n, a + batch_size)) for a in range(0, n, batch_size)]

    def tick(k):
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    def segment(images):
        return segmenter.segment(images)

    gen = SegStats(C)
    for a, b in spans:
        images = generate(generator, z_range(seed, a, b, generator.z_dim, dev))
        gen.add_labels(_checked(segment(images), b - a, C))
        tick(b - a)
    sides = {"real": SegStats(C), "floor": SegStats(C)}
    ex = SegStats(C) if mapping is not None else None
    lut = mapping.to(dev) if mapping is not None else None
    for name, s in (("real", real_seed), ("floor", floor_seed)):
        for a, b in spans:
            out = real.batch(s, a, b)
            images, labels = out if isinstance(out, (tuple, list)) else (out, None)
            _check_real_batch(images, b - a)
            images = images.to(dev)
            sides[name].add_labels(_checked(segment(images), b - a, C))
            if name == "real" and ex is not None:
                if labels is None:
                    raise ProtocolError("real has labels but real.batch returned images only",
                                        fix="return (images, labels) from batch, or give exact=False")
                ex.add_labels(lut[labels.to(dev).long()])
            tick(b - a)
    return Omissions(labels=list(segmenter.labels), generated=gen, real=sides["real"], floor=sides["floor"],
                     exact=ex, n_samples=n, seed=seed, real_seed=real_seed, floor_seed=floor_seed,
                     real_name=real.name, seconds=time.perf_counter() - t0)


def _checked(labels, n, C):
    check_segmentation(labels, n, C)
    return labels


def _check_real_batch(images, n):
    if not (isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[0] == n
            and images.shape[1] == 3 and images.is_floating_point()):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ProtocolError(f"real.batch(seed, start, stop) must return float images {n} x 3 x H x W "
                            f"(or with their labels); it returned {shape}")


class Edited(nn.Module):
    """``generator`` with ``edits`` applied everywhere on every call: a generator that omits what
    the edits remove (``Edited(G, [Edit("layer4", units)])``). The shared model is never changed
    (each call is a thread-local :func:`~core.engine.intervention.generate`); its cache identity
    is the generator's with the edits'."""

    def __init__(self, generator, edits: Sequence[Edit]):
        super().__init__()
        check_generator(generator, probe=False)
        edits = check_edits(generator, edits)
        for e in edits:
            if e.mask is not None or e.alpha is not None:
                raise InputError("Edited applies its edits everywhere at full strength: give edits without mask= "
                                 "or alpha=", fix="e.g. Edited(G, [core.Edit('layer4', units)])")
        self._g, self.edits, self.z_dim = [generator], list(edits), generator.z_dim   # not a submodule
        self.register_buffer("_where", torch.zeros(0, device=device_of(generator)))   # device_of() finds it
        self.resolution = getattr(generator, "resolution", None)

        def value(e):
            return None if e.value is None else np.round(np.asarray(e.value, np.float64).reshape(-1), 7).tolist()
        self.cache_key = f"{_cache.model_fingerprint(generator)}|edits:" + repr(   # a generator is a Module: hashed
            [(e.layer, e.mode, list(e.units), value(e), None if e.basis is None else e.basis.cache_key)
             for e in edits])

    @property
    def layer_names(self):
        return []

    def forward(self, z):
        return generate(self._g[0], z, edits=self.edits)


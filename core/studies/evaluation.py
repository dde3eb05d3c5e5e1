"""Evaluation against toyworld's exact ground truth: the segmenter's confusion, real-scene feature
statistics (cached, keyed by the feature network), degradations, generator FID and MS-SWD."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core import toyworld
from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError
from core.base.protocols import check_generator
from core.base.sampling import z_range
from core.base.validate import check_choice, check_float, check_int, check_samples
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.swd import PatchSet, ms_swd

__all__ = ["segmentation_confusion", "iou_from_confusion", "real_stats", "degrade", "DEGRADATIONS",
           "scene_stats", "real_stats_key", "store_real_stats", "real_patches", "generator_quality",
           "generator_fid", "fid_between"]


@torch.no_grad()
def segmentation_confusion(segmenter, scenes=toyworld.SCENES, n_per_scene: int = 100, seed: int = 7,
                           batch: int = 50, progress=None) -> torch.Tensor:
    """Confusion matrix [true, predicted] over held-out scenes (seed < 1000)."""
    scenes = _check_scenes(scenes)
    check_samples("n_per_scene", n_per_scene, 1, images_per_sample=len(scenes))
    check_int("seed", seed)
    check_int("batch", batch, 1)
    L = len(toyworld.LABELS)
    dev = device_of(segmenter)
    conf = torch.zeros(L * L, dtype=torch.long, device=dev)
    for scene in scenes:
        for start in range(0, n_per_scene, batch):
            m = min(batch, n_per_scene - start)
            im, lb = toyworld.render(scene, m, seed=seed, start=start)          # rendered on the CPU
            pred = segmenter.segment(im.to(dev))
            conf += torch.bincount((lb.to(dev) * L + pred).flatten(), minlength=L * L)
            if progress:
                progress(m)
    return conf.view(L, L).cpu()


def _check_scenes(scenes) -> list[str]:
    if isinstance(scenes, str):
        scenes = [scenes]
    try:
        scenes = list(scenes)
    except TypeError:
        raise ArgumentTypeError(f"scenes must be a list of toyworld scene names, got {type(scenes).__name__}",
                                fix=f"e.g. scenes={list(toyworld.SCENES)!r}") from None
    if not scenes:
        raise InputError("scenes is empty", fix=f"give scenes from {', '.join(toyworld.SCENES)}")
    for sc in scenes:
        check_choice("scene", sc, toyworld.SCENES)
    return scenes


def iou_from_confusion(conf: torch.Tensor) -> dict[str, float]:
    """Per-concept IoU for every concept that occurs (or is predicted) in the confusion."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    return {name: float(tp[i] / union[i]) for i, name in enumerate(toyworld.LABELS)
            if i > 0 and union[i] > 0}


# ----------------------------------------------------------------------------- FID checks

def _gauss_kernel(sigma: float):
    r = max(1, int(round(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32, device="cpu")       # moved to the images by degrade()
    k = torch.exp(-x * x / (2 * sigma * sigma))
    return k / k.sum()


def degrade(images: torch.Tensor, kind: str, strength: float, seed: int = 0) -> torch.Tensor:
    """Degraded copies of images in [-1, 1]: ``blur`` (Gaussian sigma in px), ``noise``
    (Gaussian std in [0, 1] image units), ``color`` (RGB channel shift in [0, 1] units)."""
    check_choice("kind", kind, DEGRADATIONS)
    strength = check_float("strength", strength, 0, 64)
    if strength <= 0:
        return images
    if kind == "blur":
        k = _gauss_kernel(strength).to(images)
        c = images.shape[1]
        r = k.numel() // 2
        x = F.pad(images, (r, r, r, r), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    if kind == "noise":
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(images.shape, generator=g, device="cpu").to(images.device)    # the same on every device
        return (images + 2 * strength * noise).clamp(-1, 1)
    if kind == "color":
        shift = torch.tensor([1.0, -0.5, -0.5], device=images.device).view(1, 3, 1, 1) * 2 * strength
        return (images + shift).clamp(-1, 1)
    raise InputError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")


DEGRADATIONS = {"blur": (0.5, 1.0, 2.0, 4.0), "noise": (0.02, 0.05, 0.1, 0.2),
                "color": (0.02, 0.05, 0.1, 0.2)}


@torch.no_grad()
def real_stats(features, scenes, n: int, seed: int, batch: int = 250, transform=None,
               progress=None, size: int = 128) -> FeatureStats:
    """Feature statistics of ``n`` real scenes (split evenly over ``scenes``), rendered at
    ``size`` x ``size`` — the resolution of the images they are compared with."""
    scenes = _check_scenes(scenes)
    n = check_samples("n", n, 2, what="a whole number of images >= 2 (a covariance needs two)")
    check_int("seed", seed)
    check_int("batch", batch, 1)
    check_int("size", size, 1, 8192)
    st = FeatureStats()
    per = [n // len(scenes) + (i < n % len(scenes)) for i in range(len(scenes))]
    for scene, m_total in zip(scenes, per):
        for start in range(0, m_total, batch):
            m = min(batch, m_total - start)
            im, _ = toyworld.render(scene, m, seed=seed, start=start, size=size)   # rendered on the CPU
            if transform is not None:
                im = transform(im)
            st.update(features(im.to(device_of(features))))
            if progress:
                progress(m)
    return st


def fid_between(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(*a.mean_cov(), *b.mean_cov())



REAL_STATS_VERSION = "real-stats-v1"


def real_stats_key(features, scene: str, size: int, n: int = 10_000, seed: int = 500) -> str | None:
    """The cache key of :func:`scene_stats` (None when the network cannot be fingerprinted)."""
    fid_ = _cache.model_fingerprint(features)
    return None if fid_ is None else _cache.make_key(kind="real_stats", version=REAL_STATS_VERSION, features=fid_,
                                                     scene=scene, size=int(size), n=int(n), seed=int(seed))


def store_real_stats(features, scene: str, size: int, mu, cov, n: int = 10_000, seed: int = 500) -> None:
    """Store (mu, cov) as the cached statistics of (features, scene, size, n, seed), e.g. a test's or
    a report's statistics computed otherwise."""
    key = real_stats_key(features, scene, size, n, seed)
    if key is None:
        raise InputError("these features cannot be fingerprinted (give the network a cache_key or use a Module)")
    _cache.save("real_stats", key, {"mu": np.asarray(mu), "cov": np.asarray(cov)},
                {"scene": scene, "size": size, "n": n, "seed": seed})


class _MeanCov:
    """(mu, cov) as cache arrays and back."""

    def __init__(self, meta: dict):
        self.meta = meta

    def to_arrays(self, mc) -> tuple[dict, dict]:
        return {"mu": np.asarray(mc[0]), "cov": np.asarray(mc[1])}, self.meta

    def from_arrays(self, arrays: dict, meta: dict):
        return arrays["mu"], arrays["cov"]


def scene_stats(features, scene: str, size: int, n: int = 10_000, seed: int = 500, device=None, *,
                cache: bool = True, cached_only: bool = False):
    """(mu, cov) of ``n`` real ``scene`` images at ``size`` px in the space of ``features`` (the
    reference of every FID against toyworld), stored under ``cache/real_stats/`` keyed by the
    feature network's weights, the scene, the resolution the scenes are rendered at, ``n`` and
    ``seed``. ``cached_only=True``: the stored statistics or None, computing nothing."""
    _check_scenes([scene])
    check_samples("n", n, 2, what="a whole number of images >= 2 (a covariance needs two)")
    check_int("seed", seed)
    check_int("size", size, 1, 8192)

    def compute():
        dev = device if device is not None else device_of(features)
        return real_stats(lambda im: features(im.to(dev)), [scene], n, seed=seed, size=size).mean_cov()

    meta = {"scene": scene, "size": size, "n": n, "seed": seed}
    return _cache.measure("real_stats", REAL_STATS_VERSION, models={"features": features},
                          parts={"scene": scene, "size": int(size), "n": int(n), "seed": int(seed)}, compute=compute,
                          codec=_MeanCov(meta), cache=cache, cached_only=cached_only)


def real_patches(scene: str, n: int = 2000, seed: int = 500, size: int = 64, batch: int = 250,
                 transform=None, **kw) -> PatchSet:
    """Patch set of ``n`` real toyworld ``scene`` images at ``size`` px (optionally transformed)."""
    _check_scenes([scene])
    check_samples("n", n, 1)
    check_int("batch", batch, 1)
    check_int("size", size, 1, 8192)
    ps = PatchSet(seed=seed, **kw)
    for s in range(0, n, batch):
        im, _ = toyworld.render(scene, min(batch, n - s), seed=seed, start=s, size=size)
        ps.update(im if transform is None else transform(im))
    return ps


@torch.no_grad()
def generator_quality(generator, features, real, real_patches=None, n: int = 2000, seed: int = 0,
                      batch: int = 250, device=None, n_swd: int | None = None) -> dict:
    """FID of ``n`` samples of ``generator`` (codes ``core.base.sampling.z_range(seed, ...)``) against
    ``real`` = (mu, cov) in the space of ``features`` and, given ``real_patches`` (a
    :class:`core.engine.swd.PatchSet`), MS-SWD (x 1e3, per level and "avg") of the first ``n_swd``
    (default ``n``) of the same samples: one generator pass feeds both."""
    check_generator(generator, probe=False)
    n = check_samples("n", n, 2, what="a whole number of images >= 2 (a covariance needs two)")
    check_int("seed", seed)
    batch = check_int("batch", batch, 1)
    if n_swd is not None:
        check_int("n_swd", n_swd, 0)
    n_swd = n if n_swd is None else min(n_swd, n)
    device = device if device is not None else device_of(generator)
    feat_dev = device_of(features)
    st = FeatureStats()
    patches = PatchSet(seed=seed) if real_patches is not None and n_swd > 0 else None
    for a in range(0, n, batch):
        images = generator(z_range(seed, a, min(n, a + batch), generator.z_dim, device)).float()
        st.update(features(images.to(feat_dev)))
        if patches is not None and a < n_swd:
            patches.update(images[: n_swd - a])
    return {"fid": float(frechet_distance(*st.mean_cov(), *real)),
            "ms_swd": ms_swd(real_patches, patches) if patches is not None else None}


def generator_fid(generator, features, real, n: int = 2000, seed: int = 0, batch: int = 250,
                  device=None) -> float:
    """FID of ``n`` samples of ``generator`` against ``real`` = (mu, cov) (see :func:`generator_quality`)."""
    return generator_quality(generator, features, real, None, n, seed, batch, device)["fid"]

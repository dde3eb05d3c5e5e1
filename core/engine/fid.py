"""Fréchet distance and streaming feature statistics (small pure functions)."""
from __future__ import annotations

import numpy as np
import torch

from core.base.errors import InputError
from core.base.validate import check_int

__all__ = ["frechet_distance", "FeatureStats", "feature_stats"]


def _as64(x, name):
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} contains NaN or infinite values")
    return a


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½), where tr((S1 S2)^½) is computed as
    tr((S1^½ S2 S1^½)^½) from symmetric eigendecompositions: exact for singular or
    near-singular covariances, where the general matrix square root of S1 S2 is unstable.
    """
    mu1, mu2 = _as64(mu1, "mu1").ravel(), _as64(mu2, "mu2").ravel()
    s1, s2 = _as64(sigma1, "sigma1"), _as64(sigma2, "sigma2")
    d = mu1.shape[0]
    if mu2.shape[0] != d:
        raise InputError(f"feature sizes differ: mu1 has {d} dimensions, mu2 {mu2.shape[0]}; "
                         "compute both statistics with the same feature extractor")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise InputError(f"{name} must be a {d} x {d} covariance matching the means; "
                             f"got shape {s.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    d2 = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(d2, 0.0)   # a distance: only float rounding can push it below zero


class FeatureStats:
    """Streaming mean and covariance of feature vectors (float64 sums on the input device)."""

    def __init__(self):
        self.n = 0
        self.sum = None
        self.outer = None

    def update(self, feats: torch.Tensor) -> "FeatureStats":
        if not isinstance(feats, torch.Tensor) or feats.dim() < 1:
            raise InputError(f"feats must be a tensor N x D of feature vectors, got {type(feats).__name__}",
                             fix="pass features(images)")
        f = feats.detach().to(torch.float64).flatten(1)
        if self.sum is None:
            self.sum = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        elif f.shape[1] != self.sum.shape[0]:
            raise InputError(f"feature size changed from {self.sum.shape[0]} to {f.shape[1]}")
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.sum, self.outer = other.n, other.sum.clone(), other.outer.clone()
            return self
        self.n += other.n
        self.sum += other.sum.to(self.sum.device)
        self.outer += other.outer.to(self.outer.device)
        return self

    def mean_cov(self):
        if self.n < 2:
            raise InputError(f"need at least 2 images for a covariance, got {self.n}")
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.cpu().numpy(), cov.cpu().numpy()


@torch.no_grad()
def feature_stats(features, batches, min_images: int = 2) -> FeatureStats:
    """Accumulate statistics of ``features(images)`` over an iterable of image batches."""
    min_images = check_int("min_images", min_images, 2, what="a whole number of images >= 2 (a covariance needs two)")
    st = FeatureStats()
    for images in batches:
        st.update(features(images))
    if st.n < min_images:
        raise InputError(f"need at least {min_images} images for FID statistics, got {st.n}")
    return st

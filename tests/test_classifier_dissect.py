"""Network Dissection of classifiers (issue #36): planted units, NetDissect's rule against NumPy, toyworld probes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from core.base.errors import InputError, ProtocolError, UnknownNameError
from core.engine.classifier_dissection import ClassifierDissection, dissect_classifier, quantile_thresholds


class ArrayProbe:
    """A probe set held in memory: images [N, 3, S, S], labels [N, K, L, L]."""

    def __init__(self, images, labels, names, categories=None, key=None):
        self.images, self.lab, self.labels = images, labels, names
        self.size = images.shape[-1]
        self.categories = categories or {"concept": names[1:]}
        if key:
            self.cache_key = key

    def __len__(self):
        return len(self.images)

    def batch(self, start, stop):
        return self.images[start:stop], self.lab[start:stop]


class PixelNet(nn.Module):
    """A classifier whose layer ``units`` is a 1x1 convolution of the image (same resolution as the labels)."""

    def __init__(self, weight: torch.Tensor, input_size: int):
        super().__init__()
        self.input_size = input_size
        self.units = nn.Conv2d(3, weight.shape[0], 1, bias=False)
        with torch.no_grad():
            self.units.weight.copy_(weight.view(weight.shape[0], 3, 1, 1))
        self.fc = nn.Linear(weight.shape[0], 2)

    def forward(self, x):
        return self.fc(self.units(x).mean((2, 3)))


CONCEPT = torch.tensor([0.95, -0.95, 0.0])      # the planted concept's pixel colour


def planted_probe(n=100, size=16, n_with=30, seed=0):
    """Noise images; ``n_with`` of them hold one 2x2 square of CONCEPT's colour (label 1, 'square');
    label 2 ('left') is the left half of every image (large: no 0.5% mask can match it)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 1.6 - 0.8
    labels = torch.zeros(n, 2, size, size, dtype=torch.long)
    labels[:, 1, :, : size // 2] = 2
    for i in range(n_with):
        y, x = (torch.randint(0, size - 1, (2,), generator=g)).tolist()
        images[i, :, y:y + 2, x:x + 2] = CONCEPT.view(3, 1, 1)
        labels[i, 0, y:y + 2, x:x + 2] = 1
    return ArrayProbe(images, labels, ["-", "square", "left"])


def test_planted_unit_is_labelled_and_random_units_are_not():
    probe = planted_probe()
    n_units = 32
    planted = PixelNet(CONCEPT.repeat(n_units, 1) + 0.01 * torch.randn(n_units, 3, generator=torch.Generator()
                                                                          .manual_seed(1)), 16)
    res = dissect_classifier(planted, probe, ["units"], cache=False)
    u = res.units("units")
    # 120 concept pixels among the top 0.5% (127 pixels) of 25,600: IoU = 120 / 127
    assert (u.label == "square").all() and u.iou.min() > 0.9, u
    assert res.summary().loc[0, "detectors"] == n_units
    rnd = PixelNet(torch.randn(n_units, 3, generator=torch.Generator().manual_seed(2)), 16)
    r = dissect_classifier(rnd, probe, ["units"], cache=False).units("units")
    n_rnd = int(r.detector.sum())
    # random projections of the pixel colour rarely isolate the planted colour
    assert n_rnd <= n_units // 4, r
    print(f"planted: {n_units}/{n_units} detectors (min IoU {u.iou.min():.3f}); random: {n_rnd}/{n_units}")


def _np_upsample(a, out):
    """Bilinear, half-pixel centres, border clamp (the 2018 geometry) along both axes, in NumPy."""
    def axis(n_in):
        pos = np.clip((np.arange(out) + 0.5) * n_in / out - 0.5, 0, n_in - 1)
        i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
        return i0, pos - i0
    y0, fy = axis(a.shape[-2])
    x0, fx = axis(a.shape[-1])
    rows = a[..., y0, :] * (1 - fy)[:, None] + a[..., y0 + 1, :] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x0 + 1] * fx


def test_thresholds_and_iou_match_numpy():
    g = torch.Generator().manual_seed(3)
    n, q = 7, 0.1
    images = torch.randn(n, 3, 8, 8, generator=g)
    labels = torch.stack([torch.randint(1, 3, (n, 8, 8), generator=g),    # two overlapping label channels,
                          torch.randint(0, 2, (n, 8, 8), generator=g) * 3], 1)  # each concept in one of them

    class PoolNet(nn.Module):
        input_size = 8

        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(2)                                  # 4 x 4 featuremaps, upsampled to 8 x 8

        def forward(self, x):
            return self.pool(x).mean((2, 3))

    probe = ArrayProbe(images, labels, ["-", "a", "b", "c"])
    res = dissect_classifier(PoolNet(), probe, ["pool"], batch_size=3, cache=False, quantile=q)
    acts = images.numpy().astype(np.float64).reshape(n, 3, 4, 2, 4, 2).mean((3, 5))
    lab = labels.numpy()
    for u in range(3):
        t = np.quantile(acts[:, u].ravel(), 1 - q)
        assert res.thresholds("pool")[u] == pytest.approx(t, rel=1e-5)
        mask = _np_upsample(acts[:, u], 8) > t
        for c in range(1, 4):
            concept = (lab == c).any(1)
            iou = (mask & concept).sum() / (mask | concept).sum()
            assert res.iou("pool")[u, c] == pytest.approx(iou, abs=1e-12)


def test_quantile_from_top_values():
    x = torch.randn(5, 1000, generator=torch.Generator().manual_seed(4))
    for q in (0.005, 0.01, 0.3):
        top = x.sort(1, descending=True).values
        got = quantile_thresholds(top, 1000, q)
        want = np.quantile(x.double().numpy(), 1 - q, axis=1)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_cache_round_trip_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    probe = planted_probe(n=20, n_with=5)
    probe.cache_key = "planted-20"
    net = PixelNet(torch.randn(4, 3, generator=torch.Generator().manual_seed(5)), 16)
    a = dissect_classifier(net, probe, ["units"])
    b = dissect_classifier(net, probe, ["units"], cached_only=True)
    assert isinstance(b, ClassifierDissection)
    np.testing.assert_array_equal(a.iou("units"), b.iou("units"))
    with pytest.raises(UnknownNameError, match="available layers"):
        dissect_classifier(net, probe, ["nope"], cache=False)
    with pytest.raises(ProtocolError, match="input size|takes"):
        dissect_classifier(PixelNet(torch.randn(4, 3), 32), probe, ["units"], cache=False)
    with pytest.raises(InputError):
        dissect_classifier(net, probe, ["fc"], cache=False)

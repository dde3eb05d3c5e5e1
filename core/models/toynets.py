"""Compact networks trained on toyworld: a semantic segmenter and an FID feature network.

Both take images in [-1, 1] (N x 3 x H x W) of any size: they resize to their native 128 x 128
internally. The segmenter returns label maps / per-label probabilities at the *input*
resolution, so a 64 x 64 generator is segmented at 64 x 64.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import toyworld

NATIVE = 128


def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _to_native(images: torch.Tensor) -> torch.Tensor:
    if images.shape[-2:] != (NATIVE, NATIVE):
        images = F.interpolate(images, size=(NATIVE, NATIVE), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > NATIVE)
    return images


class _Encoder(nn.Module):
    """Pixel-unshuffle stem (lossless 2x down) then three stride-2 stages: 64, 32, 16, 8."""

    def __init__(self, widths=(24, 48, 96, 160)):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), _cbr(12, w1), _cbr(w1, w1))
        self.d2 = nn.Sequential(_cbr(w1, w2, 2), _cbr(w2, w2))
        self.d3 = nn.Sequential(_cbr(w2, w3, 2), _cbr(w3, w3))
        self.d4 = nn.Sequential(_cbr(w3, w4, 2), _cbr(w4, w4), _cbr(w4, w4))

    def forward(self, x):
        f1 = self.stem(x.contiguous(memory_format=torch.channels_last))
        f2 = self.d2(f1)
        f3 = self.d3(f2)
        f4 = self.d4(f3)
        return f1, f2, f3, f4


class ToySegmenter(nn.Module):
    """U-Net segmenter for toyworld meeting the segmenter protocol (see :mod:`core.base.protocols`).

    ``labels`` is :data:`core.toyworld.LABELS` (index 0 = unlabeled); ``stuff`` the labels of
    amorphous regions (:data:`core.toyworld.STUFF`). ``segment`` returns a
    long tensor N x H x W; ``scores`` differentiable per-label probabilities N x L x H x W.
    """

    def __init__(self, labels=None, widths=(24, 48, 96, 160)):
        super().__init__()
        self.labels = list(labels or toyworld.LABELS)
        self.stuff = [c for c in toyworld.STUFF if c in self.labels]     # optional protocol attribute
        L = len(self.labels)
        w1, w2, w3, w4 = widths
        self.enc = _Encoder(widths)
        self.u3 = _cbr(w4 + w3, w3)
        self.u2 = _cbr(w3 + w2, w2)
        self.u1 = _cbr(w2 + w1, 32)
        self.head = nn.Sequential(nn.Conv2d(32, 4 * L, 1), nn.PixelShuffle(2))
        self.to(memory_format=torch.channels_last)    # channels-last convs: ~30% faster on a CPU (weights
        # loaded later are copied into these tensors and keep the layout); the logits leave contiguous

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits N x L x H x W at the input resolution."""
        size = images.shape[-2:]
        f1, f2, f3, f4 = self.enc(_to_native(images))

        def up(a, b):
            return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)

        x = self.u3(torch.cat([up(f4, f3), f3], 1))
        x = self.u2(torch.cat([up(x, f2), f2], 1))
        x = self.u1(torch.cat([up(x, f1), f1], 1))
        out = self.head(x)
        if out.shape[-2:] != size:
            out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False,   # fp32 under autocast
                                antialias=size[-1] < out.shape[-1])
        return out.contiguous()

    forward = logits

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(images), 1)

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).argmax(1)


class ToyFeatures(nn.Module):
    """Image feature network for FID in toyworld: N x 3 x H x W in [-1, 1] -> N x ``dim``.

    Trained to predict scene type, concept presence and concept coverage, so its pooled
    features summarise what is in a scene and how it looks. The features are the global
    average pool of the last (post-ReLU) feature map, like Inception's pool3.
    """

    def __init__(self, dim: int = 256, n_scenes: int = len(toyworld.SCENES),
                 n_concepts: int = len(toyworld.LABELS) - 1):
        super().__init__()
        self.dim = dim
        self.enc = _Encoder((24, 48, 96, 160))
        self.proj = nn.Sequential(nn.Conv2d(160, dim, 1, bias=False), nn.BatchNorm2d(dim),
                                  nn.ReLU(inplace=True))
        self.scene_head = nn.Linear(dim, n_scenes)
        self.presence_head = nn.Linear(dim, n_concepts)
        self.coverage_head = nn.Linear(dim, n_concepts)
        self.to(memory_format=torch.channels_last)    # as ToySegmenter's

    def features(self, images: torch.Tensor) -> torch.Tensor:
        f4 = self.enc(_to_native(images))[-1]
        return self.proj(f4).mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def heads(self, feats: torch.Tensor):
        return self.scene_head(feats), self.presence_head(feats), self.coverage_head(feats)

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor, scene: torch.Tensor) -> torch.Tensor:
        """The network's training loss on scenes with their exact labels and scene types: scene
        cross-entropy + presence BCE + 10 x coverage MSE (targets: :func:`feature_targets`)."""
        presence, cover = feature_targets(labels)
        s_logit, p_logit, c_pred = self.heads(self.features(images))
        return (F.cross_entropy(s_logit, scene) + F.binary_cross_entropy_with_logits(p_logit, presence)
                + 10.0 * F.mse_loss(c_pred, cover))


def feature_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, from exact label maps [n, H, W]: concept presence (0/1) and the square root of each
    concept's coverage, [n, len(LABELS) - 1] each (the feature network's training targets)."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1)
    counts = torch.zeros(n, len(toyworld.LABELS), device=labels.device).scatter_add_(
        1, flat, torch.ones(flat.shape, device=labels.device))
    cover = counts[:, 1:] / flat.shape[1]
    return (cover > 0).float(), cover.sqrt()


class ToySceneClassifier(nn.Module):
    """The shipped feature network's scene head as a classifier (the classifier protocol of
    :mod:`core.base.protocols`): images N x 3 x 128 x 128 in [-1, 1] (other sizes are resized, as by
    the network) -> logits over the scene types :data:`core.toyworld.SCENES` (town, room, lake).

    It shares the feature network's modules (no copy of the weights; nothing of the network is
    changed) under flat names, its layers ``stem`` (24 x 64 x 64), ``d2`` (48 x 32 x 32), ``d3``
    (96 x 16 x 16), ``d4`` (160 x 8 x 8) and ``proj`` (256 x 8 x 8, the features before the pool).
    The presence head is :class:`ToyPresenceClassifier`; the coverage head is a regression, not exposed."""

    input_size = NATIVE
    multilabel = False
    head_name = "scene_head"

    def __init__(self, features: ToyFeatures):
        super().__init__()
        self.stem, self.d2, self.d3, self.d4 = features.enc.stem, features.enc.d2, features.enc.d3, features.enc.d4
        self.proj = features.proj
        setattr(self, self.head_name, getattr(features, self.head_name))
        self.classes = self._classes()
        self.layer_names = ["stem", "d2", "d3", "d4", "proj"]
        self.name = "toyworld-scenes"

    def _classes(self) -> list[str]:
        return list(toyworld.SCENES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _to_native(images).contiguous(memory_format=torch.channels_last)
        x = self.proj(self.d4(self.d3(self.d2(self.stem(x)))))
        return getattr(self, self.head_name)(x.mean((2, 3)))


class ToyPresenceClassifier(ToySceneClassifier):
    """The shipped feature network's concept-presence head as a **multi-label** classifier: the same
    layers as :class:`ToySceneClassifier`, logits N x 26, one per concept of :data:`core.toyworld.LABELS`
    (``"-"`` left out), concept k predicted present when its logit is above 0 (the head was trained with a
    sigmoid cross-entropy against "the concept covers at least one pixel"). ``multilabel = True`` tells
    :func:`core.engine.importance.unit_importance` to score each concept one-vs-rest on its own decision."""

    multilabel = True
    head_name = "presence_head"

    def __init__(self, features: ToyFeatures):
        super().__init__(features)
        self.name = "toyworld-presence"

    def _classes(self) -> list[str]:
        return list(toyworld.LABELS[1:])

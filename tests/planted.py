"""A generator with planted units and a segmenter that sees exactly what they paint.

``PlantedGenerator``: z -> three concept rectangles on an 8x8 grid (positions and sizes from z).
Layer ``units`` (8 channels): unit 2k paints concept k (its rectangle plus mild noise), the odd
units are distractors (pure noise, or a weak, noisy copy of a concept). The image (32x32) paints
each concept's rectangle in its colour, later concepts on top. ``ColorSegmenter`` labels each
pixel by exact colour lookup.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LABELS = ["-", "grass", "door", "sky", "lamp"]
COLORS = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.8, 0.0], [0.6, 0.3, 0.1], [0.3, 0.5, 1.0], [1.0, 1.0, 0.2]])
PLANTED = {0: "door", 2: "sky", 4: "lamp"}   # unit -> concept


class PlantedGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.z_dim = 16
        self.units = nn.Identity()
        self.out = nn.Identity()

    @property
    def layer_names(self):
        return ["units", "out"]

    def rects(self, z):
        n = z.shape[0]
        g = torch.sigmoid(z[:, :12].view(n, 3, 4))
        y0 = (g[..., 0] * 5).floor()
        x0 = (g[..., 1] * 5).floor()
        h = 2 + (g[..., 2] * 3).floor()
        w = 2 + (g[..., 3] * 3).floor()
        ys = torch.arange(8).view(1, 1, 8, 1).float()
        xs = torch.arange(8).view(1, 1, 1, 8).float()
        inside = ((ys >= y0[..., None, None]) & (ys < (y0 + h)[..., None, None])
                  & (xs >= x0[..., None, None]) & (xs < (x0 + w)[..., None, None]))
        return inside.float()                                  # [n, 3, 8, 8]

    def forward(self, z):
        n = z.shape[0]
        r = self.rects(z)
        noise = torch.sin(z[:, 12:16].sum(1).view(n, 1, 1, 1) * torch.arange(1, 65).view(1, 1, 8, 8).float())
        feats = torch.zeros(n, 8, 8, 8)
        for k in range(3):
            feats[:, 2 * k] = r[:, k] * 2.0 + 0.1 * noise[:, 0] * (k + 1)
        feats[:, 1] = noise[:, 0]                               # pure noise
        feats[:, 3] = 0.3 * r[:, 0] + noise[:, 0]               # weak, noisy copy of door
        feats[:, 5] = torch.roll(noise[:, 0], 3, -1)            # noise
        feats[:, 7] = 0.5                                       # constant (dead) unit
        feats = self.units(feats)
        lab = torch.ones(n, 8, 8, dtype=torch.long)            # grass background
        for k in range(3):
            lab = torch.where(feats[:, 2 * k] > 1.0, torch.full_like(lab, k + 2), lab)
        lab = F.interpolate(lab[:, None].float(), size=32, mode="nearest")[:, 0].long()
        img = COLORS[lab].permute(0, 3, 1, 2) * 2 - 1
        return self.out(img)


class ColorSegmenter:
    labels = LABELS

    def segment(self, images):
        rgb = (images + 1) / 2
        d = ((rgb.permute(0, 2, 3, 1)[..., None, :] - COLORS.to(images.device)) ** 2).sum(-1)
        return d.argmin(-1)

    def scores(self, images):
        return F.one_hot(self.segment(images), len(LABELS)).permute(0, 3, 1, 2).float()

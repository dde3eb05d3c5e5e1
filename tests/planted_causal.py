"""A generator with planted *causal* units and a planted context gate.

Layer ``feat`` (12 units on an 8x8 grid): units 0-4 draw a door (the renderer paints a door
where their mean exceeds 0.5), units 5-6 copy the door's mask but the renderer ignores them
(high IoU, no causal effect), unit 7 copies the wall mask (also ignored), units 8-11 are noise.
The wall comes from z through a path that bypasses ``feat``: a door can only appear on the wall
(the context gate), so inserting door units in the sky does nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LABELS = ["-", "sky", "wall", "door"]
COLORS = torch.tensor([[0.0, 0.0, 0.0], [0.35, 0.6, 1.0], [0.8, 0.5, 0.3], [0.3, 0.15, 0.05]])
DOOR_UNITS = [0, 1, 2, 3, 4]
DECOYS = [5, 6, 7]


def _rect(z, lo, hi, minsize):
    n = z.shape[0]
    g = torch.sigmoid(z)
    y0 = lo + (g[:, 0] * (hi - lo - minsize)).floor()
    x0 = lo + (g[:, 1] * (hi - lo - minsize)).floor()
    h = minsize + (g[:, 2] * 2).floor()
    w = minsize + (g[:, 3] * 2).floor()
    ys = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
    xs = torch.arange(8, dtype=torch.float32).view(1, 1, 8)
    inside = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + h).view(n, 1, 1))
              & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + w).view(n, 1, 1)))
    return inside.float(), (y0, x0, h, w)


class Wall(nn.Module):
    def forward(self, z):
        wall, _ = _rect(z[:, 0:4], 0, 8, 4)        # 4-5 cells wide, somewhere in the grid
        return wall


class Feat(nn.Module):
    def forward(self, x):
        return x


class Render(nn.Module):
    def forward(self, feat, wall):
        door_drive = torch.sigmoid(12 * (feat[:, DOOR_UNITS].mean(1) - 0.5))
        door = door_drive * wall                                  # the context gate
        sky_c, wall_c, door_c = COLORS[1], COLORS[2], COLORS[3]
        bg = wall[:, None] * wall_c.view(1, 3, 1, 1) + (1 - wall[:, None]) * sky_c.view(1, 3, 1, 1)
        img = door[:, None] * door_c.view(1, 3, 1, 1) + (1 - door[:, None]) * bg
        return F.interpolate(img, size=32, mode="nearest") * 2 - 1


class PlantedCausalGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.z_dim = 16
        self.wall = Wall()
        self.feat = Feat()
        self.render = Render()
        self.register_buffer("dummy", torch.zeros(1))

    @property
    def layer_names(self):
        return ["feat"]

    def forward(self, z):
        n = z.shape[0]
        wall = self.wall(z)
        # the door: a 2x2 block inside the wall rectangle
        _, (wy, wx, wh, ww) = _rect(z[:, 0:4], 0, 8, 4)
        g = torch.sigmoid(z[:, 4:6])
        dy = wy + (g[:, 0] * (wh - 2 + 1)).floor().clamp(max=wh - 2)
        dx = wx + (g[:, 1] * (ww - 2 + 1)).floor().clamp(max=ww - 2)
        ys = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
        xs = torch.arange(8, dtype=torch.float32).view(1, 1, 8)
        door = (((ys >= dy.view(n, 1, 1)) & (ys < dy.view(n, 1, 1) + 2)
                 & (xs >= dx.view(n, 1, 1)) & (xs < dx.view(n, 1, 1) + 2))).float()
        noise = torch.sin(z[:, 6:10].view(n, 4, 1, 1) * torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8))
        has_door = (torch.sigmoid(z[:, 10]) > 0.3).float().view(n, 1, 1)
        door = door * has_door
        units = [door * (0.9 + 0.05 * i) for i in range(5)] + [door, door * 1.1, wall]
        feat = torch.cat([torch.stack(units, 1), noise * 0.5 + 0.2], 1)    # [n, 12, 8, 8]
        feat = self.feat(feat)
        return self.render(feat, wall)


class SoftColorSegmenter:
    labels = LABELS

    def _d(self, images):
        rgb = (images + 1) / 2
        return ((rgb.permute(0, 2, 3, 1)[..., None, :] - COLORS.to(images.device)) ** 2).sum(-1)

    def segment(self, images):
        return self._d(images).argmin(-1)

    def scores(self, images):
        return torch.softmax(-self._d(images) / 0.01, -1).permute(0, 3, 1, 2)

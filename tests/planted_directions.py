"""A generator whose concepts are written in known *directions* spread over many units.

Layer ``feat`` [N, 16, 8, 8]: each featuremap cell holds at most one of six concepts, written as
``a * d_j + noise`` with ``d_j`` a fixed direction whose 16 coordinates are all +-1/4 (every unit
carries every concept with the same weight, three positive, three negative per unit), so no
single unit detects one concept: a unit's high values are the union of its three positive
concepts. The image is drawn *from the layer* (least-squares read-out of each cell's concept),
so an edit of the layer changes the image, and a segmenter reads the concept back from the
image's colours exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

N_CONCEPTS, N_UNITS, GRID, PIXELS = 6, 16, 8, 16
LABELS = ["-"] + [f"c{j}" for j in range(N_CONCEPTS)]


def directions() -> torch.Tensor:
    """[6, 16] planted directions (rows of unit norm), three positive signs per unit column."""
    rng = np.random.default_rng(7)
    cols = []
    for _ in range(N_UNITS):
        s = -np.ones(N_CONCEPTS)
        s[rng.choice(N_CONCEPTS, 3, replace=False)] = 1
        cols.append(s)
    d = np.stack(cols, 1) / 4.0
    return torch.tensor(d, dtype=torch.float32)


# 3-bit colours of the six concepts and the background (r, g, b in {-1, 1})
COLOURS = torch.tensor([[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]],
                       dtype=torch.float32)


class PlantedDirections(torch.nn.Module):
    z_dim = 12
    resolution = PIXELS

    def __init__(self):
        super().__init__()
        self.register_buffer("d", directions())
        self.feat = torch.nn.Identity()

    @property
    def layer_names(self):
        return ["feat"]

    def concept_cells(self, z):
        """[N, 8, 8] concept index + 1 per cell (0: none): each quadrant a random rectangle of a
        random concept, drawn from z (deterministic per sample)."""
        n = z.shape[0]
        u = (torch.sigmoid(z) * 0.999).reshape(n, 4, 3)                    # per quadrant: concept, width, height
        cells = torch.zeros(n, GRID, GRID, dtype=torch.long)
        ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        for q, (qy, qx) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
            c = (u[:, q, 0] * (N_CONCEPTS + 1)).long()                     # 0: empty quadrant
            w = 1 + (u[:, q, 1] * 4).long().clamp(max=3)
            h = 1 + (u[:, q, 2] * 4).long().clamp(max=3)
            inside = ((xs[None] >= qx) & (xs[None] < qx + w[:, None, None]) &
                      (ys[None] >= qy) & (ys[None] < qy + h[:, None, None]))
            cells = torch.where(inside, c[:, None, None], cells)
        return cells

    def forward(self, z):
        n = z.shape[0]
        cells = self.concept_cells(z)
        onehot = F.one_hot(cells, N_CONCEPTS + 1)[..., 1:].float()          # [N, 8, 8, 6]
        g = torch.Generator(device="cpu").manual_seed(int(z[0, 0].abs().item() * 1e6) % 100_000)
        strength = 1.0 + 0.5 * torch.rand(n, GRID, GRID, 1, generator=g)
        acts = (onehot * strength) @ self.d                                # [N, 8, 8, 16]
        acts = acts + 0.03 * torch.randn(acts.shape, generator=g)
        acts = self.feat(acts.permute(0, 3, 1, 2).contiguous())            # the dissected layer
        # read each cell's concept back from the layer: least squares on the planted directions
        coef = torch.linalg.lstsq(self.d.T, acts.permute(0, 2, 3, 1).reshape(-1, N_UNITS).T).solution.T
        coef = coef.reshape(n, GRID, GRID, N_CONCEPTS)
        best = coef.max(-1)
        label = torch.where(best.values > 0.5, best.indices + 1, torch.zeros_like(best.indices))
        img = COLOURS[label].permute(0, 3, 1, 2)                           # [N, 3, 8, 8]
        # soft and differentiable in the layer (for ACE): blend towards the colour by the read-out
        soft = torch.sigmoid(8 * (coef - 0.5))                             # [N, 8, 8, 6]
        blend = (soft[..., :, None] * (COLOURS[1:] - COLOURS[0])[None, None, None]).sum(-2) + COLOURS[0]
        img = img + (blend.permute(0, 3, 1, 2) - blend.permute(0, 3, 1, 2).detach())
        return F.interpolate(img, size=(PIXELS, PIXELS), mode="nearest")


class ColourSegmenter:
    """Reads the 3-bit colour of each pixel back to its concept (exact)."""
    labels = LABELS

    def segment(self, images):
        bits = (images > 0).long()
        code = bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]
        table = torch.full((8,), 0, dtype=torch.long)
        for j, col in enumerate(COLOURS):
            b = (col > 0).long()
            table[int(b[0] * 4 + b[1] * 2 + b[2])] = j
        return table[code]

    def scores(self, images):
        # a soft score per concept: how close each pixel's colour is to the concept's
        dist = ((images[:, None] - COLOURS[:, :, None, None]) ** 2).sum(2)        # [N, 7, H, W]
        return torch.softmax(-dist, 1)

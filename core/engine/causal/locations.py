"""Where ACE intervenes: its location sampling, as small strategy objects.

A strategy has two steps, both over one :class:`Setup` (the models, layer, concept, insertion
constants and the pool's seed):

- ``pool(setup, n, rng)`` draws ``n`` pool samples once and returns a :class:`Pool`: removal
  candidates (where the concept is), insertion candidates (where it is absent but can appear)
  and the concept's mean frequency;
- ``delta(setup, pool, alpha, n_ins, batch, rng)`` is one optimisation step's effect: ``batch``
  samples drawn from the pool (``n_ins`` of them insertions), edited with the units' share
  ``alpha`` through :class:`~core.engine.intervention.Edit` (the one edit rule), scored by the
  segmenter, normalised by the frequency. It is differentiable in ``alpha``.

:data:`LOCATIONS` names them: ``"paper"`` (the paper's and its code's) and ``"image"``
(GANatomy's earlier whole-image variant). A new sampling is one more class with these two
methods, registered there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.base.sampling import z_at, z_range
from core.base.validate import concept_mask
from core.engine.causal.common import cell_masks
from core.engine.intervention import Edit, generate

__all__ = ["Setup", "Pool", "PaperLocations", "ImageLocations", "LOCATIONS"]


@dataclass(frozen=True)
class Setup:
    """One ACE run's fixed inputs: ``k`` [n_units] the insertion constants (on the model's device),
    ``seed`` the pool's seed, ``batch`` the pool's batch size."""
    generator: object
    segmenter: object
    layer: str
    c: int
    k: torch.Tensor
    basis: object
    dev: object
    seed: int
    batch: int = 16

    @property
    def n_units(self) -> int:
        return int(self.k.numel())

    def full_edit(self, mask=None, alpha=None) -> Edit:
        """Every unit set to its constant k (at ``mask``, with strength ``alpha``)."""
        return Edit(self.layer, list(range(self.n_units)), "insert", self.k, mask, alpha=alpha, basis=self.basis)

    def edited(self, z, alpha, insert_mask, ablate_mask):
        """Images for ``z`` with the units' share ``alpha`` inserted (value k) at ``insert_mask`` and
        ablated at ``ablate_mask`` ([b, 1, h, w], disjoint per sample): two edits of the one rule."""
        edits = []
        if bool(insert_mask.any()):
            edits.append(self.full_edit(insert_mask, alpha))
        if bool(ablate_mask.any()):
            edits.append(Edit(self.layer, list(range(self.n_units)), "ablate", None, ablate_mask, alpha=alpha,
                              basis=self.basis))
        return generate(self.generator, z, edits)


@dataclass
class Pool:
    """ACE's candidates: ``present`` removal candidates, ``absent`` insertion candidates (their form
    is the strategy's), ``freq`` the concept's mean frequency, ``hw`` the layer's grid."""
    present: list
    absent: list
    freq: float
    hw: tuple


class PaperLocations:
    """As the paper and its code: half of each batch are removal samples (one cell where the concept
    is present, the units ablated there), half insertion samples (one cell where it is absent but
    appears when the units at *that one cell* are set to k); each effect is the segmenter's soft
    score of c pooled to the featuremap grid and read at the intervened cell."""
    name = "paper"
    images_per_step = 1            # forward passes per sample of a step

    def pool(self, s: Setup, n: int, rng, tries: int = 5) -> Pool:
        """``present`` = [(sample, y, x)], every featuremap cell the concept covers; ``absent`` =
        [(sample, y, x)] cells where the concept is absent but appears when the units at that cell
        are set to k (``tries`` cells tried per sample, drawn where the concept usually is: weighted
        by its mean coverage over the pool). When no tried cell inserts it, the candidates fall back
        to absent cells next to the concept and then to any absent cell."""
        covers, counts, zs = [], [], []
        for a in range(0, n, s.batch):
            z = z_range(s.seed, a, min(n, a + s.batch), s.generator.z_dim, s.dev)
            with torch.no_grad():
                images, cap = generate(s.generator, z, capture=[s.layer])
                h, w = cap[s.layer].shape[-2:]
                hit = concept_mask(s.segmenter, images, s.c).float()
                covers.append(F.adaptive_avg_pool2d(hit[:, None], (h, w))[:, 0].cpu())
                counts.append(hit.sum((1, 2)).cpu())
            zs.append(z)
        cover = torch.cat(covers)                                           # [n, h, w] coverage of each cell
        base_px = torch.cat(counts)                                         # [n] concept pixels before
        freq = float(cover.mean())
        present = [tuple(t) for t in torch.nonzero(cover > 0).tolist()]
        weight = cover.mean(0).reshape(-1).double() + 1e-3                  # where the concept usually is
        tried = []
        for i in range(n):
            free = torch.nonzero((cover[i] == 0).reshape(-1)).view(-1)
            if len(free):
                p = (weight[free] / weight[free].sum()).numpy()
                for j in rng.choice(free.numpy(), size=min(tries, len(free)), replace=False, p=p):
                    tried.append((i, int(j) // w, int(j) % w))
        absent = []
        z_all = torch.cat(zs)
        for a in range(0, len(tried), s.batch):
            chunk = tried[a:a + s.batch]
            idx = torch.tensor([t[0] for t in chunk], device=s.dev)
            with torch.no_grad():
                after = concept_mask(s.segmenter, generate(s.generator, z_all[idx],
                                                           [s.full_edit(cell_masks(chunk, (h, w), s.dev))]),
                                     s.c).sum((1, 2)).cpu()
            absent += [t for j, t in enumerate(chunk) if float(after[j]) > float(base_px[t[0]])]
        if not absent:
            grown = F.max_pool2d((cover > 0).float()[:, None], 3, 1, 1)[:, 0] > 0
            absent = [tuple(t) for t in torch.nonzero((cover == 0) & grown).tolist()] or \
                [tuple(t) for t in torch.nonzero(cover == 0).tolist()]
        return Pool(present, absent, freq, (h, w))

    def delta(self, s: Setup, pool: Pool, alpha, n_ins: int, batch: int, rng) -> torch.Tensor:
        """Removal samples ablated at their cell, insertion samples inserted at theirs, each scored
        by the soft score of c pooled to the grid and read at its own cell."""
        present, absent = pool.present, pool.absent
        rem = [present[i] for i in rng.integers(0, len(present), batch - n_ins)] if present else []
        ins = [absent[i] for i in rng.integers(0, len(absent), n_ins)]
        cells = rem + ins
        m = cell_masks(cells, pool.hw, s.dev)
        z = z_at(s.seed, [t[0] for t in cells], s.generator.z_dim, s.dev)
        is_ins = (torch.arange(len(cells), device=s.dev) >= len(rem)).float().view(-1, 1, 1, 1)
        images = s.edited(z, alpha, m * is_ins, m * (1 - is_ins))
        score = F.adaptive_avg_pool2d(s.segmenter.scores(images)[:, s.c:s.c + 1], pool.hw)
        at = (score * m).sum((1, 2, 3))                                    # read at each sample's cell
        erase = at[:len(rem)].mean() if rem else at.new_zeros(())
        add = at[len(rem):].mean() if ins else at.new_zeros(())
        return (add - erase) / pool.freq


class ImageLocations:
    """GANatomy's earlier whole-image variant: insertion and ablation of every sample, the score
    averaged over the image; removal samples intervene on every cell the concept covers, insertion
    candidates are cells where setting every unit to k everywhere creates the concept."""
    name = "image"
    images_per_step = 2

    def pool(self, s: Setup, n: int, rng) -> Pool:
        """``present`` = [(sample, cell mask)] for the samples that show the concept, the mask marking
        every featuremap cell the concept covers; ``absent`` = [(sample, y, x)] cells where the
        concept is absent but appears when every unit is set to k there. When setting every unit to
        k creates the concept nowhere, the insertion candidates fall back to absent cells next to
        the concept's own cells (its most plausible context) and then to any absent cell."""
        present, absent, near, anywhere, freq = [], [], [], [], []
        for a in range(0, n, s.batch):
            idx = torch.arange(a, min(n, a + s.batch), device="cpu")     # sample numbers, for Python
            z = z_range(s.seed, a, int(idx[-1]) + 1, s.generator.z_dim, s.dev)
            with torch.no_grad():
                images, cap = generate(s.generator, z, capture=[s.layer])
                h, w = cap[s.layer].shape[-2:]
                base = concept_mask(s.segmenter, images, s.c).float()
                full = concept_mask(s.segmenter, generate(s.generator, z, [s.full_edit()]), s.c).float()
            freq.append(base.mean((1, 2)))
            cb = F.adaptive_avg_pool2d(base[:, None], (h, w))[:, 0]
            cf = F.adaptive_avg_pool2d(full[:, None], (h, w))[:, 0]
            grown = F.max_pool2d((cb > 0).float()[:, None], 3, 1, 1)[:, 0] > 0
            for i in range(len(idx)):
                if bool((cb[i] > 0).any()):
                    present.append((int(idx[i]), (cb[i] > 0).cpu()))
            for out, where in ((absent, cf > 0), (near, grown), (anywhere, None)):
                sel = cb == 0 if where is None else (cb == 0) & where
                out += [(int(idx[i]), j, x) for i, j, x in torch.nonzero(sel).tolist()]
        return Pool(present, absent or near or anywhere, float(torch.cat(freq).mean()), (h, w))

    def delta(self, s: Setup, pool: Pool, alpha, n_ins: int, batch: int, rng) -> torch.Tensor:
        """Each sample twice, inserted and ablated at its location; the score averaged over the image."""
        idx, masks = [], []
        for i in rng.integers(0, len(pool.present), batch - n_ins) if pool.present else []:
            sample, cells = pool.present[i]
            idx.append(sample)
            masks.append(cells.to(s.dev, torch.float32))
        for i in rng.integers(0, len(pool.absent), n_ins):
            sample, y, x = pool.absent[i]
            m = torch.zeros(*pool.hw, device=s.dev)
            m[y, x] = 1.0
            idx.append(sample)
            masks.append(m)
        z = z_at(s.seed, idx, s.generator.z_dim, s.dev)
        loc = torch.stack(masks)[:, None]
        b = len(idx)
        none = torch.zeros_like(loc)
        images = s.edited(torch.cat([z, z]), alpha, torch.cat([loc, none]), torch.cat([none, loc]))
        score = s.segmenter.scores(images)[:, s.c].mean((1, 2))
        return (score[:b].mean() - score[b:].mean()) / pool.freq


LOCATIONS = {"paper": PaperLocations(), "image": ImageLocations()}

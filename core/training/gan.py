"""Training pieces for toyworld ProGANs: discriminator, losses, EMA, real-data stream.

Loss choice: non-saturating logistic loss with R1 gradient penalty on reals (lazy, every
``r1_every`` steps), generator EMA for the shipped weights. Compared with the paper's WGAN-GP
it needs no critic iterations and no interpolated samples (about half the work per step,
which matters on small hardware), and R1 keeps the discriminator's gradients bounded near
the data so training is stable at small batch sizes. The generator architecture is
unchanged; only the training recipe differs, and it is trained at full resolution from the
start (no progressive growing), which works well at 64-128 px.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import toyworld


class EqConv2d(nn.Module):
    def __init__(self, cin, cout, k, padding=0, gain=math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * k * k)
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqLinear(nn.Module):
    def __init__(self, cin, cout, gain=math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


def minibatch_stddev(x, group: int = 4):
    """ProGAN's minibatch standard deviation feature, appended as one channel."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.view(g, -1, c, h, w).float()
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean((1, 2, 3))   # [n/g]
    y = y.view(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
    return torch.cat([x, y], 1)


class Discriminator(nn.Module):
    """Mirror of the ProGAN generator: fromRGB, two 3x3 convs + 2x average pool per
    resolution, then (optionally) minibatch stddev, 3x3 conv, 4x4 conv and a linear score."""

    def __init__(self, channels=(256, 256, 128, 64, 32), mbstd: bool = True):
        super().__init__()
        ch = list(channels)
        self.mbstd = mbstd
        self.from_rgb = EqConv2d(3, ch[-1], 1)
        blocks = []
        for i in range(len(ch) - 1, 0, -1):
            blocks.append(nn.ModuleList([EqConv2d(ch[i], ch[i], 3, 1), EqConv2d(ch[i], ch[i - 1], 3, 1)]))
        self.blocks = nn.ModuleList(blocks)
        self.final_conv = EqConv2d(ch[0] + (1 if mbstd else 0), ch[0], 3, 1)
        self.final_dense = EqConv2d(ch[0], ch[0], 4)
        self.out = EqLinear(ch[0], 1, gain=1.0)

    def forward(self, x):
        x = F.leaky_relu(self.from_rgb(x), 0.2)
        for a, b in self.blocks:
            x = F.leaky_relu(a(x), 0.2)
            x = F.leaky_relu(b(x), 0.2)
            x = F.avg_pool2d(x, 2)
        if self.mbstd:
            x = minibatch_stddev(x)
        x = F.leaky_relu(self.final_conv(x), 0.2)
        x = F.leaky_relu(self.final_dense(x), 0.2)
        return self.out(x.flatten(1))


def d_loss(d_real, d_fake):
    return F.softplus(d_fake).mean() + F.softplus(-d_real).mean()


def g_loss(d_fake):
    return F.softplus(-d_fake).mean()


def r1_penalty(D, reals):
    reals = reals.detach().requires_grad_(True)
    out = D(reals)
    (grad,) = torch.autograd.grad(out.sum(), reals, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


class EMA:
    def __init__(self, model: nn.Module, beta: float = 0.999):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.beta = beta

    @torch.no_grad()
    def update(self, model: nn.Module, beta: float | None = None):
        b = self.beta if beta is None else beta
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1 - b)


class RealScenes(torch.utils.data.IterableDataset):
    """Endless stream of real toyworld batches, rendered in DataLoader workers; batch ``i`` is
    always ``render(scene, batch, seed0 + i, omit=omit)`` whatever the number of workers."""

    def __init__(self, scene: str, batch: int, size: int, seed0: int, start: int = 0, omit=()):
        self.scene, self.batch, self.size, self.seed0, self.start = scene, batch, size, seed0, start
        self.omit = tuple(omit)     # concepts the world is rendered without (toyworld.render's omit)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:   # a worker process renders on one thread; never throttle the trainer
            torch.set_num_threads(1)
        i = self.start + wid
        while True:
            yield toyworld.render(self.scene, self.batch, seed=self.seed0 + i, size=self.size, omit=self.omit)[0]
            i += nw

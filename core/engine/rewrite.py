"""Rewriting a rule of a generator (Bau et al., ECCV 2020): a convolution is a linear associative
memory from keys k (its input at a location) to values v (its output there). Storing new pairs
K* -> V* with the least change to every other key changes the weights only along the directions
d = C^-1 k* (C = E[k k^T], the uncentred second moment of the keys over many samples and positions).

As the reference code does it: the context keys (the masked locations painted on a few images) are
whitened by Z = C^-1/2; their top ``rank`` right singular vectors q give the row directions
D = Z q (orthonormalised, the first signed to agree with the context's mean); Adam (lr 0.05, 2,001
steps) changes the layer's weight so that its outputs at the paste match the pasted values (an L1 loss
on the paste's bounding box), and every 10 steps (and at the end) the weight is projected back so that
it differs from the original only along span(D): W = W0 - P(W0) + P(W), P(W) = W D^T D on the input
dimension. ``method="full"`` is the full-rank baseline (the same goal, no projection).

Nothing here mutates a model: every rewrite works on a private copy (:func:`core.base.hooks.private_copy`)
and its result is a small delta (:class:`Rewrite`: factored as ``A`` x ``D`` for a rank-r rewrite), applied
to make a *new* model by :func:`core.base.hooks.with_delta`. ``finetune_all`` is the reference's other
baseline ("Overfit": every weight fine-tuned on the pasted image).

    stats = key_statistics(G, "layer6", n=1000)                            # cached like every result
    goal = paste_goal(G, "layer6", z_copy, copy_mask, z_paste, paste_mask)  # the values wanted at the paste
    D = context_directions(G, "layer6", z_ctx, ctx_masks, stats, rank=1)
    rw = rewrite(G, "layer6", goal, D)                                      # RewriteOptions(steps=2000, lr=0.05)
    G1 = rw.apply(G)                                                        # a new model; G is untouched
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import InputError
from core.base.hooks import expand_deltas, private_copy, resolve_layers, weight_module, with_delta
from core.base.protocols import check_generator
from core.base.sampling import z_range
from core.base.validate import check_choice, check_float, check_int, options_of

__all__ = ["KeyStats", "Goal", "Rewrite", "RewriteOptions", "METHODS", "LOSSES", "key_statistics", "paste_goal",
           "context_directions", "rewrite", "finetune_all", "closed_form", "project", "zca", "grid_mask",
           "layer_keys", "context_match", "render_goal", "project_coefficients", "REWRITE_SEED"]

METHODS = ("rank", "full")
LOSSES = ("l1", "l2")
REWRITE_SEED = 3           # the samples whose keys give C (a draw no other measurement uses)


# ----------------------------------------------------------------------------- small pure pieces

def _in_dim(module: nn.Module) -> int:
    """The weight dimension that meets the keys (input channels)."""
    return 0 if isinstance(module, nn.ConvTranspose2d) else 1


def project(weight: torch.Tensor, directions: torch.Tensor, in_dim: int = 1) -> torch.Tensor:
    """P(W): ``weight`` projected onto span(``directions``) (rows [r, in], orthonormal) along its input
    dimension ``in_dim`` (1 for a convolution or a linear layer, 0 for a transposed convolution)."""
    w = weight.movedim(in_dim, -1)
    p = directions.t() @ directions                               # [in, in] projector
    return (w @ p).movedim(-1, in_dim)


def zca(c: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Z = C^-1/2 (symmetric), eigenvalues floored at ``eps`` x the largest (float64)."""
    c = c.double()
    evals, evecs = torch.linalg.eigh((c + c.t()) / 2)
    floor = evals.max().clamp_min(1e-300) * eps
    return (evecs * evals.clamp_min(floor).rsqrt()) @ evecs.t()


def closed_form(w0: torch.Tensor, k: torch.Tensor, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The paper's least-change insertion of one pair k -> v into a linear map ``w0`` [out, in]:
    W1 = W0 + (v - W0 k) (C^-1 k)^T / (k^T C^-1 k) (so W1 k = v, and W1 x = W0 x for every x with
    k^T C^-1 x = 0)."""
    w0, k, v, c = w0.double(), k.double().reshape(-1), v.double().reshape(-1), c.double()
    d = torch.linalg.solve(c, k)
    return w0 + torch.outer(v - w0 @ k, d) / (k @ d)


def grid_mask(mask, size: tuple[int, int], what: str = "mask") -> torch.Tensor:
    """A mask (bool / float in [0, 1], any resolution) as the share of each cell of a ``size`` grid it
    covers (whole blocks averaged, as everywhere cells meet pixels), float32 [h, w] on the CPU."""
    m = torch.as_tensor(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask), device="cpu")
    if m.dim() != 2 or m.numel() == 0:
        raise InputError(f"{what} must be a 2-D mask [H, W]; got shape {tuple(m.shape)}",
                         fix=f"give {what} as an image-sized boolean or [0, 1] array")
    m = m.float()
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise InputError(f"{what} values must be in [0, 1]", fix=f"give {what} as booleans or coverage in [0, 1]")
    h, w = size
    if tuple(m.shape) == (h, w):
        return m
    if m.shape[0] >= h and m.shape[1] >= w:
        return F.adaptive_avg_pool2d(m[None, None], (h, w))[0, 0]
    return F.interpolate(m[None, None], size=(h, w), mode="nearest")[0, 0]


def _bbox(m: torch.Tensor) -> tuple[int, int, int, int]:
    ys, xs = torch.nonzero(m > 0, as_tuple=True)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


# ----------------------------------------------------------------------------- keys and values

class _Tap:
    """Keys (the weight module's input) and values (its output) of one layer of a private copy; the
    copy's module may have its output replaced (``replace``) or the pass stopped after it (``stop``)."""

    class Stop(Exception):
        pass

    def __init__(self, model: nn.Module, module_name: str):
        self.model = model
        self.module = dict(model.named_modules())[module_name]
        self.keys = self.values = None
        self.replace: Callable | None = None
        self.stop = False
        self.module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.keys, self.values = inputs[0].detach(), output.detach()
        if self.stop:
            raise _Tap.Stop
        return None if self.replace is None else self.replace(output)

    @torch.no_grad()
    def run(self, z: torch.Tensor, stop: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        self.stop = stop
        try:
            self.model(z)
        except _Tap.Stop:
            pass
        finally:
            self.stop = False
        return self.keys, self.values


def _site(generator, layer: str) -> tuple[str, nn.Module]:
    layer = resolve_layers(generator, [layer])[0]
    return weight_module(generator, layer)


def layer_keys(generator, layer: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of ``layer``'s weight module for latents ``z``: its input [n, in, h, w] and output
    [n, out, h', w'] (the generator is run on a private copy only as far as that module)."""
    name, _ = _site(generator, layer)
    tap = _Tap(private_copy(generator), name)
    return tap.run(z.to(device_of(generator)))


@dataclass
class KeyStats:
    """The uncentred second moment of a layer's keys, C = sum k k^T / count (float64 [in, in])."""
    layer: str
    module: str
    moment: torch.Tensor
    count: int

    def to_arrays(self):
        return {"moment": self.moment.cpu().numpy()}, {"layer": self.layer, "module": self.module, "count": self.count}

    @classmethod
    def from_arrays(cls, arrays, meta):
        return cls(meta["layer"], meta["module"], torch.from_numpy(np.asarray(arrays["moment"], np.float64)),
                   int(meta["count"]))

    def zca(self) -> torch.Tensor:
        return zca(self.moment)


def key_statistics(generator, layer: str, n: int = 1000, seed: int = REWRITE_SEED, batch_size: int = 50,
                   cache: bool = True, cached_only: bool = False, progress: Callable | None = None) -> KeyStats | None:
    """C = E[k k^T] of ``layer``'s keys over every position of ``n`` samples of ``seed`` (one pass, on the
    model's device, accumulated in float64). Cached like every measurement."""
    check_generator(generator, probe=False)
    name, _ = _site(generator, layer)
    n = check_int("n", n, 1)
    seed = check_int("seed", seed)
    batch_size = check_int("batch_size", batch_size, 1)
    layer = resolve_layers(generator, [layer])[0]

    def compute():
        dev = device_of(generator)
        tap = _Tap(private_copy(generator), name)
        acc, count = None, 0
        for start in range(0, n, batch_size):
            z = z_range(seed, start, min(n, start + batch_size), generator.z_dim, device=dev)
            k, _ = tap.run(z)
            flat = k.movedim(1, -1).reshape(-1, k.shape[1]).double()
            acc = flat.t() @ flat if acc is None else acc + flat.t() @ flat
            count += flat.shape[0]
            if progress is not None:
                progress(min(n, start + batch_size), n)
        return KeyStats(layer, name, (acc / count).cpu(), count)

    return _cache.measure("rewrite.keys", "1", models={"generator": generator},
                          parts={"layer": layer, "n": n, "seed": seed}, compute=compute, codec=KeyStats,
                          cache=cache, cached_only=cached_only)


# ----------------------------------------------------------------------------- goals and context

@dataclass
class Goal:
    """What a rewrite must do: map ``keys`` [1, in, h, w] (the paste image's own keys) to ``values``
    [1, out, h', w'] on ``region`` [h', w'] (the loss's support: the paste's bounding box)."""
    keys: torch.Tensor
    values: torch.Tensor
    region: torch.Tensor
    pasted: torch.Tensor | None = None          # the clip's coverage at the paste [h', w'] (for display)


def _check_z(generator, z, name: str) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] != 1 or z.shape[1] != generator.z_dim:
        raise InputError(f"{name} must be one latent code [1, {generator.z_dim}]",
                         fix=f"give {name} as core.base.sampling.z_at(seed, [index], G.z_dim)")
    return z.to(device_of(generator))


def paste_goal(generator, layer: str, z_copy: torch.Tensor, copy_mask, z_paste: torch.Tensor, paste_mask) -> Goal:
    """The reference's Copy / Paste: the layer's output (the weight module's) under ``copy_mask`` on
    image ``z_copy`` (its bounding box, the mask as alpha) composited at the centre of ``paste_mask``'s
    bounding box on image ``z_paste``; the keys are the paste image's own."""
    name, _ = _site(generator, layer)
    zc, zp = _check_z(generator, z_copy, "z_copy"), _check_z(generator, z_paste, "z_paste")
    tap = _Tap(private_copy(generator), name)
    _, v_copy = tap.run(zc)
    k_paste, v_paste = tap.run(zp)
    if v_copy.dim() != 4:
        raise InputError(f"layer {layer!r}'s values are not featuremaps (shape {tuple(v_copy.shape)})",
                         fix="rewrite a convolution layer (e.g. layer4 or layer6 of a ProGAN)")
    h, w = v_copy.shape[-2:]
    cm = grid_mask(copy_mask, (h, w), "copy_mask")
    pm = grid_mask(paste_mask, (h, w), "paste_mask")
    if not (cm > 0).any():
        raise InputError(f"copy_mask covers no cell of {layer}'s {h}x{w} grid",
                         fix="draw a larger copy region (it must cover part of at least one cell)")
    if not (pm > 0).any():
        raise InputError(f"paste_mask covers no cell of {layer}'s {h}x{w} grid",
                         fix="mark where to paste inside the image")
    t, lf, b, r = _bbox(cm)
    clip, alpha = v_copy[:, :, t:b, lf:r], cm[t:b, lf:r].to(v_copy)
    pt, pl, pb, pr = _bbox(pm)
    ch, cw = b - t, r - lf
    cy, cx = (pt + pb) // 2, (pl + pr) // 2
    top = max(0, min(h - ch, cy - ch // 2))
    left = max(0, min(w - cw, cx - cw // 2))
    target = v_paste.clone()
    window = target[:, :, top:top + ch, left:left + cw]
    target[:, :, top:top + ch, left:left + cw] = (1 - alpha) * window + alpha * clip
    region = torch.zeros(h, w, device=v_copy.device)
    region[top:top + ch, left:left + cw] = 1
    pasted = torch.zeros(h, w, device=v_copy.device)
    pasted[top:top + ch, left:left + cw] = alpha
    return Goal(k_paste, target, region, pasted)


def context_directions(generator, layer: str, z: torch.Tensor, masks, stats: KeyStats, rank: int = 1) -> torch.Tensor:
    """The rewrite's row directions D [rank, in] (orthonormal): the context keys (positions under
    ``masks`` on images ``z``, weighted by coverage) whitened by C^-1/2, their top ``rank`` right singular
    vectors mapped back by C^-1/2 and orthonormalised (QR), the first signed to agree with the mean."""
    name, mod = _site(generator, layer)
    if stats.module != name:
        raise InputError(f"stats are of {stats.layer!r}, not {layer!r}", fix="pass key_statistics(G, layer)")
    rank = check_int("rank", rank, 1, mod.weight.shape[_in_dim(mod)])
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] < 1:
        raise InputError("z must be the context images' latent codes [n, z_dim]", fix="give at least one context image")
    if len(masks) != z.shape[0]:
        raise InputError(f"masks: {len(masks)} masks for {z.shape[0]} context images", fix="give one mask per image")
    keys, _ = layer_keys(generator, layer, z)
    h, w = keys.shape[-2:]
    zmat = stats.zca().to(keys.device)
    rows = []
    for i, m in enumerate(masks):
        g = grid_mask(m, (h, w), f"masks[{i}]").to(keys.device).reshape(-1)
        k = keys[i].movedim(0, -1).reshape(-1, keys.shape[1]).double()
        rows.append((g[g > 0, None].double() * k[g > 0]) @ zmat)
    whitened = torch.cat(rows)
    if whitened.shape[0] == 0:
        raise InputError(f"the context masks cover no cell of {layer}'s {h}x{w} grid",
                         fix="paint context on at least one image, over at least part of a cell")
    if rank > whitened.shape[0]:
        raise InputError(f"rank {rank} is more than the {whitened.shape[0]} context locations",
                         fix="lower rank or paint more context")
    _, _, vh = torch.linalg.svd(whitened, full_matrices=False)
    dirs = vh[:rank] @ zmat                                        # back to the row space: C^-1/2 q
    q, _ = torch.linalg.qr(dirs.t())
    q = q.t()
    signs = torch.sign(q @ whitened.sum(0))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return (q * signs[:, None]).float()


def context_match(generator, layer: str, z: torch.Tensor, directions: torch.Tensor, stats: KeyStats) -> torch.Tensor:
    """How strongly each location's key lies along the rewrite's directions: |D k| / sqrt(diag(D C D^T))
    (per direction, the largest), [n, h, w]; about 1 for a typical key, large where the context is."""
    keys, _ = layer_keys(generator, layer, z)
    d = directions.to(keys).double()
    scale = torch.sqrt(torch.einsum("ri,ij,rj->r", d, stats.moment.to(d), d)).clamp_min(1e-12)
    proj = torch.einsum("nihw,ri->nrhw", keys.double(), d).abs() / scale[None, :, None, None]
    return proj.amax(1).float()


# ----------------------------------------------------------------------------- the rewrite

@dataclass(frozen=True)
class RewriteOptions:
    """``rank``: directions (the reference's default 1); ``steps`` (2,001 in the reference), ``lr`` (0.05):
    Adam on the layer's weight; ``project_every``: steps between projections onto span(D) (10);
    ``method``: ``"rank"`` (constrained) or ``"full"`` (the full-rank baseline); ``loss``: ``"l1"`` (the
    reference) or ``"l2"``."""
    rank: int = 1
    steps: int = 2000
    lr: float = 0.05
    project_every: int = 10
    method: str = "rank"
    loss: str = "l1"

    def checked(self) -> "RewriteOptions":
        check_int("rank", self.rank, 1)
        check_int("steps", self.steps, 1, 100_000)
        check_float("lr", self.lr, 0, 10, lo_open=True)
        check_int("project_every", self.project_every, 1)
        check_choice("method", self.method, METHODS)
        check_choice("loss", self.loss, LOSSES)
        return self


@dataclass
class Rewrite:
    """A rewrite as deltas on weights, in their stored form (:func:`core.base.hooks.expand_deltas`):
    a rank-r rewrite of one weight ``W1 = W0 + A x D`` as ``{w + "#a": A, w + "#d": D, w + "#dim": i}``
    (``D`` [r, in] the rows it changes, on the weight's input dimension ``i``), a full-rank one or a
    fine-tune as ``{param: delta}``. float32 on the CPU: the model it makes is the same in memory and
    reloaded from disk."""
    layer: str
    method: str
    stored: dict
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def deltas(self) -> dict[str, torch.Tensor]:
        return expand_deltas(self.stored)

    def apply(self, generator) -> nn.Module:
        """A new model: ``generator`` with this rewrite (``generator`` itself is never changed)."""
        return with_delta(generator, self.deltas())

    @property
    def directions(self) -> torch.Tensor | None:
        return next((v for k, v in self.stored.items() if k.endswith("#d")), None)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().cpu().contiguous()


def _loss(kind: str, out: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    diff = (out - target) * region
    per = diff.abs() if kind == "l1" else diff.pow(2)
    return per.sum() / (region.sum() * out.shape[1]).clamp_min(1)


def rewrite(generator, layer: str, goal: Goal, directions: torch.Tensor | None = None,
            options: RewriteOptions | None = None, progress: Callable | None = None, **option_kw) -> Rewrite:
    """Change ``layer``'s weight so that it maps ``goal.keys`` to ``goal.values`` on ``goal.region``:
    Adam on the weight of a private copy; with ``method="rank"`` projected back every ``project_every``
    steps so that only span(``directions``) changes (the reference's low-rank insert). Returns the
    :class:`Rewrite` (``generator`` is untouched)."""
    opts = options_of(RewriteOptions, options, option_kw, "rewrite").checked()
    name, mod = _site(generator, layer)
    in_dim = _in_dim(mod)
    if opts.method == "rank":
        if not isinstance(directions, torch.Tensor) or directions.dim() != 2 \
                or directions.shape[1] != mod.weight.shape[in_dim]:
            raise InputError(f"directions must be [rank, {mod.weight.shape[in_dim]}] for a rank rewrite of {layer}",
                             fix="pass context_directions(G, layer, z, masks, stats, rank)")
        gram = directions.double() @ directions.double().t()
        if not torch.allclose(gram, torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device), atol=1e-4):
            raise InputError("directions must be orthonormal rows", fix="pass context_directions(...)'s result")
    keys, values = goal.keys.detach(), goal.values.detach()
    region = goal.region.to(values)[None, None]
    copy = private_copy(generator)
    m = dict(copy.named_modules())[name]
    w0 = m.weight.detach().clone()
    dirs = None if opts.method == "full" else directions.to(w0)
    keep = None if dirs is None else w0 - project(w0, dirs, in_dim)
    weight = nn.Parameter(w0.clone())
    params = {n: p for n, p in m.named_parameters() if n != "weight"}
    adam = torch.optim.Adam([weight], lr=opts.lr)
    losses = []
    t0 = time.perf_counter()
    with torch.enable_grad():
        for it in range(opts.steps):
            out = torch.func.functional_call(m, {**params, "weight": weight}, (keys,))
            loss = _loss(opts.loss, out, values, region)
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            if keep is not None and (it % opts.project_every == 0 or it == opts.steps - 1):
                with torch.no_grad():
                    weight.copy_(keep + project(weight, dirs, in_dim))
            if it % 10 == 0 or it == opts.steps - 1:
                losses.append(float(loss.detach()))
                if progress is not None:
                    progress(it + 1, opts.steps, losses[-1])
    change = weight.detach() - w0
    w = f"{name}.weight"
    if dirs is None:
        stored = {w: _cpu(change)}
    else:
        stored = {w + "#a": _cpu(project_coefficients(change, dirs, in_dim)), w + "#d": _cpu(dirs),
                  w + "#dim": torch.tensor(in_dim, device="cpu")}
    return Rewrite(layer, opts.method, stored, losses, time.perf_counter() - t0)


def project_coefficients(change: torch.Tensor, dirs: torch.Tensor, in_dim: int) -> torch.Tensor:
    """A = change D^T along the input dimension (so change = A D when change lies in span(D))."""
    return change.movedim(in_dim, -1).matmul(dirs.t()).movedim(-1, in_dim)


def finetune_all(generator, z: torch.Tensor, target: torch.Tensor, region: torch.Tensor, steps: int = 500,
                 lr: float = 0.001, progress: Callable | None = None, layer: str = "") -> Rewrite:
    """The reference's "Overfit" baseline: every weight of a private copy fine-tuned (Adam) so that the
    image of ``z`` matches ``target`` [1, 3, H, W] on ``region`` [H, W] (L1). Returns a :class:`Rewrite`
    whose deltas are every parameter that changed."""
    steps = check_int("steps", steps, 1, 100_000)
    lr = check_float("lr", lr, 0, 1, lo_open=True)
    copy = private_copy(generator)
    before = {n: p.detach().clone() for n, p in copy.named_parameters()}
    params = [p for p in copy.parameters() if p.dtype.is_floating_point]
    for p in params:
        p.requires_grad_(True)
    adam = torch.optim.Adam(params, lr=lr)
    losses, t0 = [], time.perf_counter()
    r = region.to(target)[None, None]
    z, target = z.to(device_of(generator)), target.to(device_of(generator))
    with torch.enable_grad():
        for it in range(steps):
            loss = _loss("l1", copy(z), target, r)
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            if it % 10 == 0 or it == steps - 1:
                losses.append(float(loss.detach()))
                if progress is not None:
                    progress(it + 1, steps, losses[-1])
    stored = {n: _cpu(p.detach() - before[n]) for n, p in copy.named_parameters()
              if not torch.equal(p.detach(), before[n])}
    return Rewrite(layer, "finetune", stored, losses, time.perf_counter() - t0)


def render_goal(generator, layer: str, z: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The image ``z`` gives with ``layer``'s weight module output replaced by ``values`` (the pasted
    target, drawn through the rest of the generator)."""
    name, _ = _site(generator, layer)
    tap = _Tap(private_copy(generator), name)
    tap.replace = lambda out: values.to(out)
    with torch.no_grad():
        return tap.model(z.to(device_of(generator)))


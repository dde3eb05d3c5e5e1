"""Bases of a layer: what a "unit" is when dissecting, painting or ablating it.

GAN Dissection reads a layer channel by channel (``units``). Concepts may instead live in
directions spread over many channels, so every measurement also takes a learned basis:

- ``units``: the layer's channels (identity; the paper's).
- ``pca``: the principal directions of the layer's activations over positions and samples
  (GANSpace-style); feature f at a position is the activation's coordinate along component f.
- ``sae``: a sparse dictionary (a sparse autoencoder, overcomplete, ReLU with an L1 penalty by
  default) trained on the layer's activation vectors at all positions; feature f's map is its
  encoder activation.

One edit rule serves all three: *set* feature f to ``v`` at the painted share ``s`` of each cell,

    r' = r + sum_f s_f (v_f - a_f(r)) d_f         (a = encode(r), d_f = decoder direction f)

so ablation (``v = 0``) removes the feature's decoder component there and insertion adds
``(k - a_f) d_f`` (``~ k d_f`` where the feature is off). For ``units`` (d_f = e_f) this is
exactly the paper's ``r' = (1 - s) r + s v``. The reconstruction error of a learned basis stays in
``r``: an edit changes only what the chosen features carry.

A basis is a small set of tensors with a ``cache_key`` (the hash of its tensors), so results
computed in it are cached apart from the units' and from other bases'.

Why an L1 rule for the sparse dictionary (``sparsity="l1"``, the default; ``topk`` and
``batch-topk`` are options): it lets each position use as many features as it holds concepts (a
sky cell one, a door on a wall several, a cell of pure noise none). Top-k fixes that number; on
planted directions (tests/test_bases.py, one concept per cell) top-k with k = 2 splits each
direction over two features (best cosine 0.68-0.86) and BatchTopK, which spends the batch's
budget on the cells that hold concepts, splits them too (0.53-0.72), where L1 recovers every
direction (cosine >= 0.98) at a mean L0 of 1.06. The inputs are centred and scaled to unit mean
squared norm while training, so one L1 weight (0.2) serves every layer; AuxK revives dead
features under the top-k rules. It trains on a CPU in minutes.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError, UnknownNameError
from core.base.hooks import Trace, layer_units, resolve_layers
from core.base.protocols import check_generator
from core.base.sampling import z_range
from core.base.sharing import long_computation
from core.base.validate import check_bool, check_callable, check_choice, check_float, check_int, check_samples

__all__ = ["Basis", "BASES", "Spliced", "learned", "unit_basis", "pca_basis", "train_sae", "layer_activations",
           "fit_basis", "blend", "basis_health", "check_basis", "refit_decoder", "BASIS_VERSION"]

BASES = ("units", "pca", "sae")
BASIS_VERSION = "basis-v2"      # bump when fit_basis() returns something else for the same arguments


@dataclass(eq=False)
class Basis:
    """A basis of one layer's activation space (see the module's docstring).

    ``kind``: ``units``, ``pca`` or ``sae``. Tensors (absent ones None): ``decoder`` [F, C]
    (feature directions, unit norm for ``sae``, orthonormal for ``pca``), ``encoder`` [F, C],
    ``enc_bias`` [F], ``dec_bias`` [C] (the mean for ``pca``), ``k`` (top-k, ``sae``)."""
    kind: str
    n_units: int
    decoder: torch.Tensor | None = None
    encoder: torch.Tensor | None = None
    enc_bias: torch.Tensor | None = None
    dec_bias: torch.Tensor | None = None
    k: int = 0
    sparsity: str = ""
    threshold: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("kind", self.kind, BASES)
        self.cache_key = f"basis:{self.kind}:{self._hash()}"

    @property
    def n_features(self) -> int:
        return self.n_units if self.kind == "units" else int(self.decoder.shape[0])

    @property
    def name(self) -> str:
        if self.kind == "sae":
            return f"sae-{self.n_features}-" + (f"k{self.k}" if self.sparsity == "topk" else
                                                f"bk{self.k}" if self.sparsity == "batch-topk" else "l1")
        return {"units": "units", "pca": f"pca-{self.n_features}"}[self.kind]

    def _tensors(self) -> dict:
        return {k: v for k, v in (("decoder", self.decoder), ("encoder", self.encoder), ("enc_bias", self.enc_bias),
                                  ("dec_bias", self.dec_bias)) if v is not None}

    def _hash(self) -> str:
        h = hashlib.sha256(f"{self.kind}:{self.n_units}:{self.k}:{self.sparsity}:{float(self.threshold)!r}".encode())
        for name, t in sorted(self._tensors().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def to(self, device) -> "Basis":
        """The same basis with its tensors on ``device`` (itself when they are there already)."""
        dev = torch.device(device)
        if all(t.device == dev for t in self._tensors().values()):
            return self
        moved = {k: v.to(dev) for k, v in self._tensors().items()}
        return Basis(self.kind, self.n_units, k=self.k, sparsity=self.sparsity, threshold=self.threshold,
                     meta=dict(self.meta), **moved)

    def _on(self, x: torch.Tensor) -> "Basis":
        return self.to(x.device)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.n_units:
            raise InputError(f"this {self.name} basis is of a layer with {self.n_units} units; got activations "
                             f"of shape {tuple(x.shape)}", fix="use the basis with the layer it was fitted on")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps [N, F, H, W] of activations [N, C, H, W]."""
        self._check(x)
        if self.kind == "units":
            return x
        b = self._on(x)
        flat = x.permute(0, 2, 3, 1).reshape(-1, self.n_units).to(b.decoder.dtype)
        if self.kind == "pca":
            a = (flat - b.dec_bias) @ b.decoder.T
        else:
            a = _infer((flat - b.dec_bias) @ b.encoder.T + b.enc_bias, self.sparsity, self.k, self.threshold)
        return a.reshape(x.shape[0], x.shape[2], x.shape[3], -1).permute(0, 3, 1, 2).to(x.dtype)

    def _encode_some(self, x: torch.Tensor, idx: torch.Tensor, b: "Basis") -> torch.Tensor:
        """The feature maps of ``idx`` only, where they depend on their own pre-activation alone
        (PCA, L1, batch-topk); top-k needs every feature's (a feature is on among the k largest)."""
        if self.kind == "sae" and self.sparsity == "topk":
            return self.encode(x).index_select(1, idx)
        self._check(x)
        flat = x.permute(0, 2, 3, 1).reshape(-1, self.n_units).to(b.decoder.dtype) - b.dec_bias
        if self.kind == "pca":
            a = flat @ b.decoder.index_select(0, idx).T
        else:
            a = _infer(flat @ b.encoder.index_select(0, idx).T + b.enc_bias.index_select(0, idx), self.sparsity,
                       self.k, self.threshold)
        return a.reshape(x.shape[0], x.shape[2], x.shape[3], -1).permute(0, 3, 1, 2).to(x.dtype)

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        """Activations [N, C, H, W] of feature maps [N, F, H, W] (the reconstruction)."""
        if self.kind == "units":
            return a
        b = self._on(a)
        flat = a.permute(0, 2, 3, 1).reshape(-1, self.n_features).to(b.decoder.dtype)
        x = flat @ b.decoder + b.dec_bias
        return x.reshape(a.shape[0], a.shape[2], a.shape[3], -1).permute(0, 3, 1, 2).to(a.dtype)

    def directions(self) -> np.ndarray:
        """[F, C] the features' directions in the layer's activation space."""
        if self.kind == "units":
            return np.eye(self.n_units, dtype=np.float32)
        return self.decoder.detach().cpu().float().numpy()

    def edit(self, out: torch.Tensor, features, share: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``out`` with ``features`` (indices) set to ``value`` at ``share`` (see the module's rule).
        ``share``: [N or 1, len(features), H, W] (mask x strength); ``value``: broadcastable to it."""
        idx = torch.as_tensor(features, device=out.device, dtype=torch.long).reshape(-1)
        if self.kind == "units":
            r = out.index_select(1, idx)
            return out.index_copy(1, idx, blend(r, share, value))
        b = self._on(out)
        a = self._encode_some(out, idx, b)
        delta = blend(a, share, value) - a                                      # [N, f, H, W]
        d = b.decoder.index_select(0, idx).to(out.dtype)                        # [f, C]
        return out + torch.einsum("nfhw,fc->nchw", delta, d)

    def arrays(self) -> dict:
        return {k: v.detach().cpu().float().numpy() for k, v in self._tensors().items()}

    def to_arrays(self) -> tuple[dict, dict]:
        """``(arrays, meta)`` for the cache (:func:`core.base.cache.measure`)."""
        return self.arrays(), {"kind": self.kind, "n_units": self.n_units, "k": self.k, "threshold": self.threshold,
                               "sparsity": self.sparsity, "meta": self.meta}

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "Basis":
        t = {name: torch.from_numpy(np.asarray(v, dtype=np.float32)) for name, v in arrays.items()}
        return cls(meta["kind"], int(meta["n_units"]), k=int(meta["k"]), sparsity=meta["sparsity"],
                   threshold=float(meta["threshold"]), meta=dict(meta["meta"] or {}), **t)


def _infer(pre: torch.Tensor, rule: str, k: int, threshold: float) -> torch.Tensor:
    """Inference activations: top-k per vector, the batch-topk threshold, or ReLU (l1)."""
    if rule == "topk":
        r = F.relu(pre)
        vals, idx = r.topk(min(k, r.shape[1]), dim=1)
        return torch.zeros_like(r).scatter_(1, idx, vals)
    if rule == "batch-topk":
        return torch.where(pre > threshold, pre, torch.zeros_like(pre)).clamp_min(0)
    return F.relu(pre)


def check_basis(basis, n_units: int | None = None, layer: str | None = None) -> Basis | None:
    """``basis`` as a Basis (None stays None: the units), of a layer of ``n_units`` units."""
    if basis is None:
        return None
    if isinstance(basis, str):
        raise ArgumentTypeError(f"basis must be a Basis, got the name {basis!r}",
                                fix="make one with core.engine.bases.fit_basis(G, layer, kind) "
                                    "(or unit_basis(n))")
    if not isinstance(basis, Basis):
        raise ArgumentTypeError(f"basis must be a Basis or None, got {type(basis).__name__}",
                                fix="make one with core.engine.bases.fit_basis(G, layer, kind)")
    if n_units is not None and basis.n_units != n_units:
        raise InputError(f"the basis has {basis.n_units} units but layer {layer!r} has {n_units}",
                         fix="use the basis fitted on that layer")
    return basis


class Spliced(torch.nn.Module):
    """``generator`` with ``layer`` replaced by its reconstruction in ``basis`` (decode(encode(r))),
    for the quality of a dictionary's reconstruction (FID / MS-SWD of the spliced generator).
    The shared generator is not touched: the splice is a thread-local edit of each call."""

    def __init__(self, generator, layer: str, basis: Basis):
        super().__init__()
        check_generator(generator, probe=False)
        self.layer = resolve_layers(generator, [layer])[0]
        self.basis = check_basis(basis, layer_units(generator, self.layer), self.layer)
        self._g = [generator]                                   # not a submodule: its weights stay the model's
        self.register_buffer("_where", torch.zeros(0, device=device_of(generator)))   # device_of() finds it
        self.z_dim = generator.z_dim
        self.resolution = getattr(generator, "resolution", None)
        self.cache_key = f"spliced:{_cache.model_fingerprint(generator)}:{self.layer}:{basis.cache_key}"

    @property
    def layer_names(self):
        return []

    def forward(self, z):
        with Trace(self._g[0], edits={self.layer: lambda out: self.basis.decode(self.basis.encode(out))}):
            return self._g[0](z)


def blend(r: torch.Tensor, share, value) -> torch.Tensor:
    """The one edit rule of GANatomy: ``r' = (1 - share) * r + share * value`` (``share`` = mask x
    strength in [0, 1]; ``value`` 0 ablates, k inserts). Every edit — :class:`Edit`, ACE's
    alpha-weighted ones, a basis's unit edits — is this; a learned basis applies it to its features'
    activations and moves the layer by the change along their decoder directions."""
    return r * (1 - share) + share * value


def learned(basis, n_units: int | None = None, layer: str | None = None) -> Basis | None:
    """``basis`` checked (see :func:`check_basis`), None for the units: what caches and edits key on,
    so a unit basis computes and caches exactly as no basis."""
    basis = check_basis(basis, n_units, layer)
    return None if basis is None or basis.kind == "units" else basis


def unit_basis(n_units: int) -> Basis:
    return Basis("units", check_int("n_units", n_units, 1))


# ----------------------------------------------------------------------------- fitting

@torch.no_grad()
def layer_activations(generator, layer: str, n_samples: int, seed: int = 0, batch_size: int = 32,
                      max_vectors: int = 400_000) -> torch.Tensor:
    """[M, C] the layer's activation vectors at every position of ``n_samples`` samples (on the
    CPU; at most ``max_vectors``: positions are subsampled evenly, seeded, beyond that)."""
    check_generator(generator, probe=False)
    layer = resolve_layers(generator, [layer])[0]
    n_samples = check_samples("n_samples", n_samples, 1)
    dev = device_of(generator)
    chunks = []
    for a in range(0, n_samples, batch_size):
        z = z_range(seed, a, min(n_samples, a + batch_size), generator.z_dim, dev)
        with Trace(generator, capture=[layer]) as tr:
            generator(z)
        r = tr[layer].float()
        chunks.append(r.permute(0, 2, 3, 1).reshape(-1, r.shape[1]).cpu())
    x = torch.cat(chunks)
    if len(x) > max_vectors:
        g = torch.Generator(device="cpu").manual_seed(seed)
        x = x[torch.randperm(len(x), generator=g, device="cpu")[:max_vectors]]
    return x


def pca_basis(x: torch.Tensor, n_components: int | None = None) -> Basis:
    """Principal directions of activation vectors ``x`` [M, C], by decreasing variance."""
    x = x.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    var, vec = torch.linalg.eigh(cov)
    order = torch.argsort(var, descending=True)
    n = x.shape[1] if n_components is None else check_int("n_components", n_components, 1, x.shape[1])
    comps = vec[:, order[:n]].T.contiguous()
    # a sign per component that makes its largest-magnitude coordinate positive (a deterministic basis)
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * sign
    return Basis("pca", x.shape[1], decoder=comps.float(), dec_bias=mean.float(),
                 meta={"explained_variance": var[order[:n]].float().tolist()})


SPARSITY = ("topk", "batch-topk", "l1")


def _sparse(pre: torch.Tensor, rule: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training activations of pre-activations [B, F] under ``rule``; returns (activations, the
    smallest kept positive value, for the inference threshold of batch-topk)."""
    r = F.relu(pre)
    if rule == "l1":
        return r, r.new_zeros(())
    if rule == "topk":
        vals, idx = r.topk(min(k, r.shape[1]), dim=1)
        return torch.zeros_like(r).scatter_(1, idx, vals), r.new_zeros(())
    n = min(k * pre.shape[0], r.numel())                          # batch-topk: k x rows over the whole batch
    vals, idx = r.reshape(-1).topk(n)
    a = torch.zeros_like(r).reshape(-1).scatter_(0, idx, vals).reshape(r.shape)
    kept = vals[vals > 0]
    return a, (kept.min() if kept.numel() else vals.new_zeros(()))


def train_sae(x: torch.Tensor, n_features: int, k: int = 16, *, sparsity: str = "l1", l1: float = 0.2,
              steps: int = 3000, batch_size: int = 4096, lr: float = 2e-3, seed: int = 0, aux_k: int | None = None,
              aux_weight: float = 1 / 32, dead_after: int = 200_000, progress: Callable | None = None,
              refit: bool = True) -> Basis:
    """A sparse autoencoder on activation vectors ``x`` [M, C].

    ``a = S(ReLU(W_enc (x - b_dec) + b_enc))``, ``x_hat = a W_dec + b_dec``, with the sparsity
    rule ``S``: ``"topk"`` (the ``k`` largest per vector, Gao et al. 2024), ``"batch-topk"`` (the
    ``k x batch`` largest over the batch, Bussmann et al. 2024; at inference a threshold) or
    ``"l1"`` (all, with the penalty ``l1 * sum_f a_f`` on the scaled inputs). Decoder rows of
    unit norm (renormalised after every step, the gradient's radial part removed), ``W_enc``
    initialised to ``W_dec^T``. The inputs are centred and scaled to unit mean squared norm
    while training and the scale folded back, so the same learning rate and ``l1`` suit any layer.
    AuxK (top-k rules): features that have not fired for ``dead_after`` vectors reconstruct the
    residual with their ``aux_k`` largest pre-activations (weight ``aux_weight``), which revives
    them. ``refit`` (L1 only): the decoder refitted by least squares at the end, undoing the L1
    shrinkage (:func:`refit_decoder`). ``progress(step, steps, loss)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or len(x) < 2:
        raise ArgumentTypeError("x must be a tensor [M, C] of at least 2 activation vectors",
                                fix="e.g. x = layer_activations(G, 'layer4', 500)")
    n_features = check_int("n_features", n_features, 1)
    k = check_int("k", k, 1, n_features, what=f"a whole number of active features from 1 to n_features "
                  f"({n_features})")
    check_choice("sparsity", sparsity, SPARSITY)
    check_float("l1", l1, 0)
    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    check_float("lr", lr, 0, lo_open=True)
    check_callable("progress", progress)
    check_bool("refit", refit)
    aux_k = min(n_features, aux_k if aux_k is not None else 2 * k)
    dev = x.device
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = x.float()
    mean = x.mean(0)
    scale = float(((x - mean) ** 2).sum(1).mean().sqrt().clamp_min(1e-12))
    xs = (x - mean) / scale                                                  # centred, unit mean sq. norm
    c = x.shape[1]
    w_dec = torch.randn(n_features, c, generator=g, device="cpu").to(dev)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    params = {"w_enc": w_dec.clone(), "w_dec": w_dec, "b_enc": torch.zeros(n_features, device=dev),
              "b_dec": torch.zeros(c, device=dev)}
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=lr)
    since = torch.zeros(n_features, device=dev)                               # vectors since each last fired
    threshold = torch.zeros((), device=dev)
    m = len(xs)
    order = torch.randperm(m, generator=g, device="cpu")
    pos = 0
    for step in range(steps):
        if pos + batch_size > m:
            order, pos = torch.randperm(m, generator=g, device="cpu"), 0
        xb = xs[order[pos:pos + batch_size].to(dev)]
        pos += batch_size
        pre = (xb - params["b_dec"]) @ params["w_enc"].T + params["b_enc"]
        a, smallest = _sparse(pre, sparsity, k)
        threshold = smallest.detach() if step == 0 else 0.99 * threshold + 0.01 * smallest.detach()
        recon = a @ params["w_dec"] + params["b_dec"]
        err = xb - recon
        denom = ((xb - xb.mean(0)) ** 2).sum().clamp_min(1e-12)
        loss = (err ** 2).sum() / denom
        if sparsity == "l1":
            loss = loss + l1 * a.sum(1).mean()
        fired = (a > 0).any(0)
        since = torch.where(fired, torch.zeros_like(since), since + len(xb))
        dead = since >= dead_after
        if sparsity != "l1" and bool(dead.any()):
            pre_dead = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
            vals, idx = pre_dead.topk(min(aux_k, int(dead.sum())), dim=1)
            e_hat = torch.zeros_like(pre).scatter_(1, idx, F.relu(vals)) @ params["w_dec"]
            loss = loss + aux_weight * ((err.detach() - e_hat) ** 2).sum() / (err.detach() ** 2).sum().clamp_min(1e-12)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():                     # keep decoder rows on the unit sphere: drop the radial gradient
            wd, gd = params["w_dec"], params["w_dec"].grad
            gd -= (gd * wd).sum(1, keepdim=True) * wd
        opt.step()
        with torch.no_grad():
            params["w_dec"] /= params["w_dec"].norm(dim=1, keepdim=True).clamp_min(1e-12)
        if progress:
            progress(step + 1, steps, float(loss.detach()))
    with torch.no_grad():
        w_enc, w_dec = params["w_enc"].detach(), params["w_dec"].detach()
        # fold the training scale and centring back: a' = scale * a, b_dec' = mean + scale * b_dec
        dec_bias = mean + scale * params["b_dec"].detach()
        enc_bias = scale * params["b_enc"].detach()
    basis = Basis("sae", c, decoder=w_dec.cpu(), encoder=w_enc.cpu(), enc_bias=enc_bias.cpu(),
                  dec_bias=dec_bias.cpu(), k=k if sparsity != "l1" else 0, sparsity=sparsity,
                  threshold=scale * float(threshold) if sparsity == "batch-topk" else 0.0,
                  meta={"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "aux_k": aux_k,
                        "scale": scale, "l1": l1 if sparsity == "l1" else None})
    return refit_decoder(basis, x) if refit and sparsity == "l1" else basis


@torch.no_grad()
def refit_decoder(basis: Basis, x: torch.Tensor, chunk: int = 32768, ridge: float = 1e-9, mode: str = "gains",
                  max_gain: float = 4.0) -> Basis:
    """An L1 dictionary with a gain per feature and the decoder bias refitted by least squares on
    ``x`` [M, C]: ``min || x - sum_f g_f a_f(x) d_f - b ||^2`` over the gains g and the bias b, the
    features' activations a_f and directions d_f held fixed.

    The L1 penalty shrinks every activation toward 0, so the trained dictionary reconstructs too
    little. The gains g_f > 0 are folded into the encoder (ReLU is positively homogeneous:
    ``ReLU(g pre) = g ReLU(pre)``), so every feature map is the old one times g_f: the same support,
    the same quantile thresholds and IoU, the same unit-norm directions. Features that never fire
    on ``x`` keep their gain of 1. Gains are bounded to ``[1 / max_gain, max_gain]`` (a bound is held
    and the other gains solved again): a feature that fires weakly and rarely would otherwise take a
    gain of thousands, and its encoder row and bias magnitudes that float16 cannot hold.

    ``mode="full"`` refits the directions too (``min || x - A W - b ||^2`` over the whole decoder W,
    its rows' norms folded into the encoder the same way): it reconstructs more (town layer6: the
    spliced generator's FID 1.8x the original's, against 3.0x with gains) but rotates co-firing
    features away from their concepts (the planted directions of tests/test_bases.py: best cosines
    0.76-0.97 against 0.98), so it is not the default."""
    if basis.kind != "sae" or basis.sparsity != "l1":
        raise InputError(f"refit_decoder needs an L1 sparse dictionary, got {basis.name}",
                         fix="refit only bases from train_sae(..., sparsity='l1')")
    check_choice("mode", mode, ("gains", "full"))
    check_float("max_gain", max_gain, 1.0)
    x = x.detach().float()
    dev = x.device
    b = basis.to(dev)
    if mode == "full":
        return _refit_full(b, x, chunk, ridge)
    n_f, c = b.n_features, b.n_units
    d = b.decoder.double()
    aa, ax, s1 = _moments(b, x, chunk)
    # normal equations of min || X - sum_f g_f a_f d_f - bias ||^2 over the gains g and the bias;
    # gains outside [1 / max_gain, max_gain] are held at the bound and the rest solved again
    m = len(x)
    sys_ = torch.zeros(n_f + c, n_f + c, dtype=torch.float64, device=dev)
    sys_[:n_f, :n_f] = aa * (d @ d.T)
    sys_[:n_f, n_f:] = s1[:, None] * d
    sys_[n_f:, :n_f] = (s1[:, None] * d).T
    sys_[n_f:, n_f:] = m * torch.eye(c, dtype=torch.float64, device=dev)
    rhs = torch.cat([(ax * d).sum(1), x.double().sum(0)])
    fired = aa.diagonal() > 0
    sys_ += torch.diag(ridge * sys_.diagonal())
    held = torch.cat([~fired, torch.zeros(c, dtype=torch.bool, device=dev)])    # never fired: gain 1
    value = torch.ones(n_f + c, dtype=torch.float64, device=dev)
    for _ in range(8):
        free = ~held
        sol = value.clone()
        sol[free] = torch.linalg.solve(sys_[free][:, free], rhs[free] - sys_[free][:, held] @ value[held])
        g_all = sol[:n_f]
        out = free[:n_f] & ((g_all > max_gain) | (g_all < 1 / max_gain))
        if not bool(out.any()):
            break
        value[:n_f] = torch.where(out, g_all.clamp(1 / max_gain, max_gain), value[:n_f])
        held[:n_f] |= out
    return _folded(b, sol[:n_f].clamp(1 / max_gain, max_gain), sol[n_f:], d, "gains", len(x))


def _moments(b: Basis, x: torch.Tensor, chunk: int):
    """(A^T A, A^T X, A^T 1) in float64 of the feature activations A = encode(x), x [M, C], by chunks."""
    n_f, dev = b.n_features, x.device
    aa = torch.zeros(n_f, n_f, dtype=torch.float64, device=dev)
    ax = torch.zeros(n_f, b.n_units, dtype=torch.float64, device=dev)
    s1 = torch.zeros(n_f, dtype=torch.float64, device=dev)
    for a in range(0, len(x), chunk):
        xb = x[a:a + chunk]
        act = b.encode(xb[:, :, None, None])[:, :, 0, 0]
        aa += (act.T @ act).double()
        ax += (act.T @ xb).double()
        s1 += act.sum(0).double()
    return aa, ax, s1


def _folded(b: Basis, g: torch.Tensor, bias: torch.Tensor, directions: torch.Tensor, how: str, n: int) -> Basis:
    """``b`` with gains ``g`` > 0 folded into its encoder (``ReLU(g pre) = g ReLU(pre)``; the encoder's
    input shift kept across the new decoder bias ``bias``) and decoder rows ``directions``."""
    enc = b.encoder.double()
    enc_bias = (b.enc_bias.double() + (bias - b.dec_bias.double()) @ enc.T) * g
    return Basis("sae", b.n_units, decoder=directions.float().cpu(), encoder=(enc * g[:, None]).float().cpu(),
                 enc_bias=enc_bias.float().cpu(), dec_bias=bias.float().cpu(), k=b.k, sparsity=b.sparsity,
                 threshold=b.threshold, meta=dict(b.meta, refit=how, refit_vectors=n))


def _refit_full(b: Basis, x: torch.Tensor, chunk: int, ridge: float) -> Basis:
    """refit_decoder(mode="full"): the least-squares decoder and bias given the activations."""
    dev, n_f = x.device, b.n_features
    aa, ax, s1 = _moments(b, x, chunk)
    gram = torch.zeros(n_f + 1, n_f + 1, dtype=torch.float64, device=dev)        # [A 1]^T [A 1]
    gram[:n_f, :n_f], gram[:n_f, n_f], gram[n_f, :n_f], gram[n_f, n_f] = aa, s1, s1, len(x)
    rhs = torch.cat([ax, x.double().sum(0, keepdim=True)])
    fired = aa.diagonal() > 0
    gram += torch.diag(ridge * gram.diagonal() + torch.cat([(~fired).double(),
                                                            torch.zeros(1, dtype=torch.float64, device=dev)]))
    sol = torch.linalg.solve(gram, rhs)
    dec, bias = sol[:n_f], sol[n_f]
    norm = dec.norm(dim=1)
    keep = fired & (norm > 1e-12)
    g = torch.where(keep, norm, torch.ones_like(norm))
    return _folded(b, g, bias, torch.where(keep[:, None], dec / g[:, None], b.decoder.double()), "full", len(x))


@torch.no_grad()
def basis_health(basis: Basis, x: torch.Tensor, dense_above: float = 0.1) -> dict:
    """The standard numbers of a dictionary on held-out activation vectors ``x`` [M, C]:
    fraction of variance unexplained (FVU), mean L0 (active features per vector), dead features
    (never active on ``x``) and dense ones (active on more than ``dense_above`` of the vectors)."""
    x = x.float()
    a = basis.encode(x[:, :, None, None])[:, :, 0, 0]
    recon = basis.decode(a[:, :, None, None])[:, :, 0, 0]
    fvu = float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12))
    active = a != 0 if basis.kind != "units" else a > 0
    rate = active.float().mean(0)
    return {"basis": basis.name, "vectors": len(x), "fvu": fvu, "mean_l0": float(active.float().sum(1).mean()),
            "dead": int((rate == 0).sum()), "dense": int((rate > dense_above).sum()), "features": basis.n_features,
            "dense_above": dense_above}


def _check_fit(generator, layer, kind, n_samples, seed, expansion, k, steps, sparsity="l1", l1=0.2):
    check_generator(generator, probe=False)
    layer = resolve_layers(generator, [layer])[0]
    if not isinstance(kind, str):
        raise ArgumentTypeError(f"kind must be one of {', '.join(BASES)}, got {type(kind).__name__}",
                                fix="give kind='units', 'pca' or 'sae'")
    if kind not in BASES:
        raise UnknownNameError(f"kind {kind!r} is not a basis; bases: {', '.join(BASES)}",
                               fix="give kind='units', 'pca' or 'sae'")
    n_samples = check_samples("n_samples", n_samples, 2)
    check_int("seed", seed)
    check_float("expansion", expansion, 0, lo_open=True, what="the dictionary size as a multiple of the layer's "
                "units (default 4)")
    check_int("k", k, 1)
    check_int("steps", steps, 1)
    check_choice("sparsity", sparsity, SPARSITY)
    check_float("l1", l1, 0)
    return layer


@long_computation("fitting a basis", fix="lower n_samples= or steps=")
def fit_basis(generator, layer: str, kind: str = "sae", *, n_samples: int = 1000, seed: int = 0,
              expansion: float = 4.0, sparsity: str = "l1", l1: float = 0.2, k: int = 16, steps: int = 2000,
              progress: Callable | None = None, cache: bool = True, cached_only: bool = False) -> Basis | None:
    """A basis of ``layer`` fitted on the activations of ``n_samples`` samples (``seed``):
    ``units`` (nothing to fit), ``pca`` (all components), or ``sae`` (``expansion`` x units
    features, ``steps`` of :func:`train_sae` with its ``sparsity`` rule: ``l1`` with weight
    ``l1``, or ``topk`` / ``batch-topk`` with ``k`` active per position).

    Stored under ``cache/basis`` keyed by the generator's weights and the arguments (the shipped
    results hold the zoo's main layers): fitted once per server. ``cached_only=True`` returns the
    stored basis or None, fitting nothing."""
    layer = _check_fit(generator, layer, kind, n_samples, seed, expansion, k, steps, sparsity, l1)
    check_callable("progress", progress)
    n_units = layer_units(generator, layer)
    if kind == "units":
        check_bool("cache", cache)
        check_bool("cached_only", cached_only)
        return unit_basis(n_units)
    parts = {"layer": layer, "basis": kind, "n": int(n_samples), "seed": int(seed)}
    if kind == "sae":
        parts.update(expansion=float(expansion), sparsity=sparsity, steps=int(steps),
                     **({"l1": float(l1)} if sparsity == "l1" else {"k": int(k)}))

    def compute():
        x = layer_activations(generator, layer, n_samples, seed=seed)
        t = time.perf_counter()
        if kind == "pca":
            basis = pca_basis(x)
        else:
            n_features = max(1, int(round(expansion * n_units)))
            basis = train_sae(x.to(device_of(generator)), n_features, min(k, n_features), sparsity=sparsity, l1=l1,
                              steps=steps, seed=seed, progress=progress)
        basis.meta.update({"layer": layer, "n_samples": n_samples, "seed": seed, "seconds": time.perf_counter() - t,
                           "train_vectors": len(x)})
        return basis

    res = _cache.measure("basis", BASIS_VERSION, models={"generator": generator}, parts=parts, compute=compute,
                         codec=Basis, cache=cache, cached_only=cached_only)
    return res if res is None else res.to(device_of(generator))

"""Progressive GAN generator, faithful to the published LSUN models (Karras et al. 2018).

Layout (see ``shared/reference/progan_lsun.md``): z (N x z_dim) is reshaped to N x z_dim x 1 x 1;
every block is pixel norm -> [nearest x2 upsample] -> conv (no bias) -> "wscale" (multiply by
the run-time He constant sqrt(2 / (in_channels * k^2)), add a per-channel bias ``b``) ->
LeakyReLU(0.2). ``layer1`` is a 4x4 conv with padding 3 on the 1x1 input; ``layer2`` a 3x3 conv
at 4x4; then pairs per resolution: odd layers upsample then 3x3 conv, even layers 3x3 conv.
The output block ``output_{R}x{R}`` is pixel norm -> 1x1 conv -> wscale with gain 1.

The equalized-learning-rate scale is a constant computed from the shapes, never stored, so a
state dict holds exactly ``layerN.conv.weight``, ``layerN.wscale.b``,
``output_RxR.conv.weight`` and ``output_RxR.wscale.b`` — the published keys. Sizes are inferred
from a state dict (:func:`config_from_state_dict`), never hard-coded.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.base.budget import check_model
from core.base.checkpoints import check_fits, load_state_into
from core.base.errors import CheckpointError, InputError
from core.models.catalog import Source, Spec, register_published
from core.models.registry import register_architecture

__all__ = ["PixelNorm", "ProGAN", "WScale", "config_from_state_dict", "from_checkpoint", "model_size", "normalize_keys"]


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class WScale(nn.Module):
    """Run-time He scale (not stored) and a learned per-channel bias ``b``."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = scale
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.scale + self.b.view(1, -1, 1, 1)

    def extra_repr(self):
        return f"scale={self.scale:.5f}"


class Block(nn.Module):
    def __init__(self, cin, cout, kernel, padding, upsample=False, pixelnorm=True, act=True):
        super().__init__()
        self.norm = PixelNorm() if pixelnorm else nn.Identity()
        self.upsample = upsample
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=False)
        gain = math.sqrt(2.0) if act else 1.0
        self.wscale = WScale(cout, gain / math.sqrt(cin * kernel * kernel))
        self.act = nn.LeakyReLU(0.2) if act else nn.Identity()
        if self.conv.weight.device.type != "meta":    # the pre-flight's shape-only build: normal_ on meta
            nn.init.normal_(self.conv.weight)         # imports torch's compiler stack (about 1 s, once)

    def forward(self, x):
        x = self.norm(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.act(self.wscale(self.conv(x)))


class ProGAN(nn.Module):
    """ProGAN generator. ``channels[i]`` = width at resolution 4 * 2**i (so len = #resolutions).

    Meets the generator protocol: ``z_dim``, ``forward(z)`` -> N x 3 x R x R. Outputs are
    clamped to [-1, 1] (``clamp_output``; the published models are unclamped and nominally
    in that range). ``pixelnorm=False`` builds the no-pixel-norm variant of the paper's
    model comparison (the norms have no parameters, so state dicts are the same).
    """

    def __init__(self, z_dim: int = 512, channels=(512, 512, 512, 256, 128, 64, 32),
                 pixelnorm: bool = True, clamp_output: bool = True):
        super().__init__()
        if len(channels) < 1:
            raise InputError("ProGAN needs at least one resolution (4x4)")
        self.z_dim = int(z_dim)
        self.channels = [int(c) for c in channels]
        self.pixelnorm = pixelnorm
        self.clamp_output = clamp_output
        self.resolution = 4 * 2 ** (len(channels) - 1)
        self.layer1 = Block(z_dim, channels[0], 4, 3, pixelnorm=pixelnorm)
        self.layer2 = Block(channels[0], channels[0], 3, 1, pixelnorm=pixelnorm)
        n = 2
        for i in range(1, len(channels)):
            setattr(self, f"layer{n + 1}", Block(channels[i - 1], channels[i], 3, 1, upsample=True,
                                                 pixelnorm=pixelnorm))
            setattr(self, f"layer{n + 2}", Block(channels[i], channels[i], 3, 1, pixelnorm=pixelnorm))
            n += 2
        self.n_layers = n
        R = self.resolution
        setattr(self, f"output_{R}x{R}", Block(channels[-1], 3, 1, 0, pixelnorm=pixelnorm, act=False))

    @property
    def layer_names(self) -> list[str]:
        return [f"layer{i}" for i in range(1, self.n_layers + 1)] + [self.output_name]

    @property
    def output_name(self) -> str:
        return f"output_{self.resolution}x{self.resolution}"

    def forward(self, z):
        x = z.view(z.shape[0], -1, 1, 1) if z.dim() == 2 else z
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x.clamp(-1, 1) if self.clamp_output else x


_OLD = re.compile(r"^features\.(\d+)\.(.*)$")


def normalize_keys(state: dict) -> dict:
    """Accept the variants a loader meets: ``{'state_dict': ...}`` wrappers, ``module.``
    prefixes (DataParallel), and the older ``features.{i}`` / ``output.`` naming."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("features.") for k in state):
        out = {}
        n = 0
        for k, v in state.items():
            m = _OLD.match(k)
            if m:
                i = int(m.group(1))
                n = max(n, i + 1)
                out[f"layer{i + 1}.{m.group(2)}"] = v
            else:
                out[k] = v
        if any(k.startswith("output.") for k in out):
            R = 4 * 2 ** (n // 2 - 1)
            out = {(f"output_{R}x{R}." + k[len("output."):] if k.startswith("output.") else k): v
                   for k, v in out.items()}
        state = out
    return state


def config_from_state_dict(state: dict) -> dict:
    """z_dim and per-resolution channels, read from the weight shapes."""
    layers = sorted(int(m.group(1)) for k in state
                    if isinstance(k, str) and (m := re.match(r"^layer(\d+)\.conv\.weight$", k)))
    if not layers or layers[0] != 1:
        raise InputError("no 'layer1.conv.weight' key: this is not a ProGAN generator state dict "
                         f"(first keys: {', '.join(str(k) for k in list(state)[:5])})")
    if layers != list(range(1, len(layers) + 1)) or len(layers) % 2:
        raise InputError(f"ProGAN layers must be layer1..layerN with N even; found layers {_few(layers)}")
    bad = [f"layer{i}.conv.weight" for i in layers
           if not isinstance(state[f"layer{i}.conv.weight"], torch.Tensor) or state[f"layer{i}.conv.weight"].dim() != 4]
    if bad:
        raise InputError(f"{', '.join(bad[:4])} must be 4-d conv weight tensors [C_out, C_in, k, k]")
    w1 = state["layer1.conv.weight"]
    if tuple(w1.shape[2:]) != (4, 4):
        raise InputError(f"layer1.conv.weight must be [C, z_dim, 4, 4]; got {tuple(w1.shape)}")
    channels = [int(state[f"layer{i}.conv.weight"].shape[0]) for i in range(1, len(layers) + 1, 2)]
    if min(channels + [int(w1.shape[1])]) < 1:
        raise InputError(f"ProGAN widths must be positive; the shapes give z_dim {int(w1.shape[1])} and "
                         f"channels {_few(channels)}")
    return {"z_dim": int(w1.shape[1]), "channels": channels}


def _few(xs, k=8) -> str:
    xs = list(xs)
    return "[" + ", ".join(map(str, xs[:k])) + (f", ... ({len(xs)} in all)]" if len(xs) > k else "]")


def _px(n_res: int) -> str:
    return str(4 * 2 ** (n_res - 1)) if n_res < 30 else f"4 x 2^{n_res - 1}"


def model_size(z_dim: int, channels) -> dict:
    """Parameters, buffers, feature-map values and modules of ``ProGAN(z_dim, channels)``, computed
    without building it (for the size budget; ``features``: twice one image's largest layer
    input plus output, a bound on what a forward pass holds at once)."""
    ch = [int(c) for c in channels]
    params = z_dim * ch[0] * 16 + ch[0] + ch[0] * ch[0] * 9 + ch[0]
    largest = (z_dim + ch[0]) * 16
    for i in range(1, len(ch)):
        params += ch[i - 1] * ch[i] * 9 + ch[i] + ch[i] * ch[i] * 9 + ch[i]
        largest = max(largest, (ch[i - 1] + ch[i]) * (4 * 2 ** i) ** 2)
    params += ch[-1] * 3 + 3
    return {"params": params, "buffers": 0, "features": 2 * largest, "modules": 6 * (2 * len(ch) + 1) + 1}


# ----------------------------------------------------------------------------- loading, registration

def from_checkpoint(ck, path, source: str, pixelnorm: bool | None = None):
    """A ProGAN from loaded checkpoint contents; errors name the file and the keys."""
    if not isinstance(ck, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ck).__name__}, not a state dict",
                              fix="save the generator with torch.save(model.state_dict(), path)")
    meta = ck.get("meta", {}) if isinstance(ck.get("meta"), dict) else {}
    state = normalize_keys(ck)
    try:
        cfg = config_from_state_dict(state)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} is not a ProGAN generator: {e}",
                              fix="give a ProGAN state dict (layer1..layerN, output_RxR), or arch= for another "
                                  "architecture") from None
    pn = meta.get("pixelnorm", True) if pixelnorm is None else pixelnorm
    check_model(f"checkpoint {path}", f"the ProGAN its shapes describe (z_dim {cfg['z_dim']}, channels "
                f"{_few(cfg['channels'])}, {_px(len(cfg['channels']))} px)",
                **model_size(cfg["z_dim"], cfg["channels"]))
    check_fits(lambda: ProGAN(cfg["z_dim"], cfg["channels"], pixelnorm=pn), state, path)
    model = ProGAN(cfg["z_dim"], cfg["channels"], pixelnorm=pn)
    load_state_into(model, state, path)
    model.meta = dict(meta)
    model.source = source
    return model


def _load(path, ck, pixelnorm: bool | None = None) -> ProGAN:
    return from_checkpoint(ck, path, str(path), pixelnorm)


register_architecture("progan", "generator", _load, options=("pixelnorm",), fallback=True)

_LSUN = {"bedroom": "d8a89ff1", "churchoutdoor": "7e701dd5", "conferenceroom": "21e85882",
         "diningroom": "3aa0ab80", "kitchen": "67f1e16c", "livingroom": "5ef336dd", "restaurant": "b8578299"}
_GANDISSECT = "https://gandissect.csail.mit.edu/models/"
for _d, _h in _LSUN.items():
    _fn = f"proggan_{_d}-{_h}.pth"
    register_published(Spec(
        f"progan/{_d}", "generator", "progan", (Source(_fn, _GANDISSECT + _fn, _h),), aliases=(f"{_d}_lsun.pth",),
        description=f"Progressive GAN, LSUN {_d} 256x256 (Karras et al. 2018): a generator the "
                    "GAN Dissection paper analysed"))

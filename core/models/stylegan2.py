"""StyleGAN2 generator in pure PyTorch, loading the widely used ``g_ema`` state dicts of
rosinality's ``stylegan2-pytorch`` (and official NVIDIA weights converted by its
``convert_weight.py``) key for key. No custom CUDA ops: up-sampling FIR filtering is a plain
zero-insert + pad + depthwise convolution (:func:`upfirdn2d`).

Layout (module names are the state-dict prefixes):

- ``style``: mapping network ``Sequential(PixelNorm, EqualLinear x n_mlp)`` (keys
  ``style.{1..n_mlp}.weight`` [style_dim, style_dim] and ``.bias``; learning-rate multiplier
  0.01, leaky ReLU 0.2 scaled by sqrt 2). Its output is ``w``.
- ``truncate``: holds no weights; its output is the truncated ``w`` (``mean + psi (w - mean)``).
- ``input.input`` [1, C4, 4, 4]: the learned constant.
- ``conv1`` and ``convs.0 … convs.{2k-1}``: styled convolutions (``conv.weight``
  [1, out, in, 3, 3], ``conv.modulation.weight/bias``, ``noise.weight`` [1],
  ``activate.bias`` [out]; even ``convs`` up-sample x2 through ``conv.blur.kernel`` [4, 4]).
  These are the synthesis layers one dissects or edits (``layer_names``).
- ``to_rgb1``, ``to_rgbs.{i}``: 1x1 modulated convs without demodulation to RGB, summed over
  resolutions with FIR up-sampling of the skip (``to_rgbs.{i}.upsample.kernel``).
- ``noises.noise_{i}`` [1, 1, r, r]: fixed per-layer noise (used by default, so a sample is a
  deterministic function of z).

Sizes (resolution, channels, style_dim, n_mlp) are read from a state dict by
:func:`config_from_state_dict`, never hard-coded.
"""
from __future__ import annotations

import copy
import hashlib
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.base.budget import check_model
from core.base.cache import weights_hash
from core.base.checkpoints import check_fits, load_state_into
from core.base.errors import ArgumentTypeError, CheckpointError, InputError
from core.models.catalog import Source, Spec, register_published
from core.models.registry import arch_error, register_architecture

__all__ = ["StyleGAN2", "config_from_state_dict", "model_size", "normalize_state", "rosinality_channels", "upfirdn2d"]

SQRT2 = math.sqrt(2.0)


def rosinality_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """Channels per resolution of rosinality's ``Generator(size, ..., channel_multiplier)``."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier,
             128: 128 * channel_multiplier, 256: 64 * channel_multiplier, 512: 32 * channel_multiplier,
             1024: 16 * channel_multiplier}
    return {r: c for r, c in table.items() if r <= size}


def _fir_kernel(taps) -> torch.Tensor:
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.dim() == 1:
        k = torch.outer(k, k)
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Up-sample by zero insertion, pad (negative pads crop), convolve with ``kernel``
    (a true convolution: the kernel is flipped), then keep every ``down``-th pixel.
    The same pad applies to both axes: ``pad = (before, after)``."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        H, W = x.shape[-2:]
        x = x[:, :, max(-p0, 0):H - max(-p1, 0), max(-p0, 0):W - max(-p1, 0)]
    k = torch.flip(kernel, [0, 1]).to(dtype=x.dtype, device=x.device)
    x = F.conv2d(x, k.expand(c, 1, *k.shape), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with run-time He scale and learning-rate multiplier; optional scaled lrelu."""

    def __init__(self, din: int, dout: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dout, din) / lr_mul)
        self.bias = nn.Parameter(torch.full((dout,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(din)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x):
        if self.activate:
            return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    def __init__(self, taps, pad, gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", _fir_kernel(taps) * gain)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, taps, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", _fir_kernel(taps) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.factor = factor

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Weight modulated per sample by an affine map of w, optionally demodulated; the x2
    up-sampling variant is a stride-2 transposed convolution followed by an FIR blur."""

    def __init__(self, cin, cout, kernel, style_dim, demodulate=True, upsample=False, taps=(1, 3, 3, 1)):
        super().__init__()
        self.cin, self.cout, self.k = cin, cout, kernel
        self.upsample, self.demodulate = upsample, demodulate
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.padding = kernel // 2
        if upsample:
            p = (len(taps) - 2) - (kernel - 1)
            self.blur = Blur(taps, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def forward(self, x, w):
        n, _, h, wd = x.shape
        s = self.modulation(w).view(n, 1, self.cin, 1, 1)
        weight = self.scale * self.weight * s                         # N, out, in, k, k
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        x = x.reshape(1, n * self.cin, h, wd)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * self.cin, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=n)
            out = self.blur(out.view(n, self.cout, *out.shape[-2:]))
        else:
            out = F.conv2d(x, weight.reshape(n * self.cout, self.cin, self.k, self.k),
                           padding=self.padding, groups=n)
            out = out.view(n, self.cout, *out.shape[-2:])
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class BiasLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU 0.2, gain sqrt 2 (rosinality's ``FusedLeakyReLU``)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * SQRT2


class StyledConv(nn.Module):
    def __init__(self, cin, cout, kernel, style_dim, upsample=False, taps=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, kernel, style_dim, upsample=upsample, taps=taps)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(cout)

    def forward(self, x, w, noise):
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim, upsample=True, taps=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(taps)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, w, skip=None):
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, n: int):
        return self.input.expand(n, -1, -1, -1)


class Truncation(nn.Module):
    """``w -> mean + psi (w - mean)``; the mean is not part of the state dict."""

    def __init__(self, style_dim):
        super().__init__()
        self.register_buffer("mean", torch.zeros(style_dim), persistent=False)

    def forward(self, w, psi: float):
        if psi == 1:
            return w
        return self.mean + psi * (w - self.mean)


class StyleGAN2(nn.Module):
    """StyleGAN2 generator (rosinality layout) meeting the generator protocol.

    ``forward(z)`` maps z (N x style_dim) through the mapping network to w, truncates w toward
    the mean w with ``truncation`` (psi; 1 = none) and synthesises N x 3 x size x size images
    in [-1, 1] (clamped when ``clamp_output``). Per-layer noise is the fixed ``noises`` buffers
    (``noise_mode="const"``, deterministic) or fresh Gaussian noise (``"random"``). The model is
    never mutated by a call: ``forward(z, truncation=0.7)`` overrides psi for that call, and
    :meth:`with_truncation` returns a view sharing the weights with its own psi.
    """

    def __init__(self, size: int = 256, style_dim: int = 512, n_mlp: int = 8,
                 channels: dict[int, int] | None = None, channel_multiplier: int = 2,
                 lr_mlp: float = 0.01, taps=(1, 3, 3, 1), truncation: float = 1.0,
                 noise_mode: str = "const", clamp_output: bool = True):
        super().__init__()
        log = int(round(math.log2(size)))
        if size < 4 or 2 ** log != size:
            raise InputError(f"StyleGAN2 size must be a power of two >= 4, got {size}")
        ch = dict(channels) if channels else rosinality_channels(size, channel_multiplier)
        missing = [r for r in (2 ** i for i in range(2, log + 1)) if r not in ch]
        if missing:
            raise InputError(f"channels missing for resolutions {missing}")
        self.size, self.style_dim, self.n_mlp = size, int(style_dim), int(n_mlp)
        self.channels = {r: int(ch[r]) for r in sorted(ch) if r <= size}
        self.z_dim = self.style_dim
        self.noise_mode = noise_mode
        self.clamp_output = clamp_output
        self._psi = float(truncation)
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True)
                                                  for _ in range(n_mlp)])
        self.truncate = Truncation(style_dim)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, taps=taps)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False, taps=taps)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        cin = self.channels[4]
        for i in range(3, log + 1):
            cout = self.channels[2 ** i]
            self.convs.append(StyledConv(cin, cout, 3, style_dim, upsample=True, taps=taps))
            self.convs.append(StyledConv(cout, cout, 3, style_dim, taps=taps))
            self.to_rgbs.append(ToRGB(cout, style_dim, taps=taps))
            cin = cout
        self.num_layers = 2 * (log - 2) + 1
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        self.n_latent = 2 * log - 2
        self._hash = None

    # ------------------------------------------------------------------ protocol + naming
    @property
    def layer_names(self) -> list[str]:
        return ["conv1"] + [f"convs.{i}" for i in range(len(self.convs))]

    @property
    def resolution(self) -> int:
        return self.size

    @property
    def truncation(self) -> float:
        return self._psi

    @property
    def mean_latent(self) -> torch.Tensor:
        return self.truncate.mean

    def set_mean_latent(self, mean: torch.Tensor) -> None:
        """Set the mean w used by truncation (done once by the loader, before sharing)."""
        self.truncate.mean = mean.detach().reshape(self.style_dim).to(self.truncate.mean)
        self._hash = None

    def compute_mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of w over ``n`` z drawn with a fixed seed (deterministic)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=g, device="cpu").to(self.truncate.mean.device)
        with torch.no_grad():
            return self.style(z).mean(0)

    def with_truncation(self, psi: float) -> "StyleGAN2":
        """A generator sharing these weights with truncation ``psi`` (this one is unchanged)."""
        view = copy.copy(self)
        view._psi = float(psi)
        return view

    @property
    def cache_key(self) -> str:
        if self._hash is None:
            h = weights_hash(self)
            m = self.truncate.mean.detach().cpu().contiguous()
            self._hash = h + ":" + hashlib.sha256(m.numpy().tobytes()).hexdigest()[:12]
        clamp = "" if self.clamp_output else ":unclamped"      # unclamped images segment differently
        return f"StyleGAN2:{self._hash}:psi={self._psi!r}:noise={self.noise_mode}{clamp}"

    # ------------------------------------------------------------------ forward
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    def _noise(self, i: int, like: torch.Tensor, mode: str):
        buf = getattr(self.noises, f"noise_{i}")
        if mode == "random":
            return torch.randn(like.shape[0], 1, *buf.shape[-2:], device=like.device, dtype=like.dtype)
        return buf

    def synthesis(self, w: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """Images from w (N x style_dim, or N x n_latent x style_dim per layer)."""
        mode = noise_mode or self.noise_mode
        if mode not in ("const", "random"):
            raise InputError(f"noise_mode must be 'const' or 'random', got {mode!r}")
        if w.dim() == 2:
            w = w.unsqueeze(1).expand(-1, self.n_latent, -1)
        x = self.input(w.shape[0])
        x = self.conv1(x, w[:, 0], self._noise(0, x, mode))
        skip = self.to_rgb1(x, w[:, 1])
        for j, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * j](x, w[:, 2 * j + 1], self._noise(2 * j + 1, x, mode))
            x = self.convs[2 * j + 1](x, w[:, 2 * j + 2], self._noise(2 * j + 2, x, mode))
            skip = to_rgb(x, w[:, 2 * j + 3], skip)
        return skip

    def forward(self, z: torch.Tensor, truncation: float | None = None,
                noise_mode: str | None = None) -> torch.Tensor:
        psi = self._psi if truncation is None else float(truncation)
        w = self.truncate(self.style(z), psi)
        img = self.synthesis(w, noise_mode)
        return img.clamp(-1, 1) if self.clamp_output else img


# ----------------------------------------------------------------------------- state dicts

def normalize_state(ck) -> tuple[dict, torch.Tensor | None]:
    """``(g_ema state dict, latent_avg or None)`` from what a user may hold: a rosinality
    training checkpoint or converted file (``{'g_ema': ..., 'latent_avg': ...}``), a bare
    ``g_ema`` state dict, or either with ``module.`` prefixes."""
    if not isinstance(ck, dict):
        raise InputError(f"holds a {type(ck).__name__}, not a state dict")
    latent = ck.get("latent_avg") if isinstance(ck.get("latent_avg"), torch.Tensor) else None
    if isinstance(ck.get("g_ema"), dict):
        state = ck["g_ema"]
    elif isinstance(ck.get("state_dict"), dict):
        state = ck["state_dict"]
    else:
        state = {k: v for k, v in ck.items() if k != "latent_avg"}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, latent


def _shape(state: dict, key: str, ndim: int) -> tuple[int, ...]:
    t = state.get(key)
    if not isinstance(t, torch.Tensor) or t.dim() != ndim:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise InputError(f"{key} must be a {ndim}-d tensor, got {got}")
    return tuple(int(s) for s in t.shape)


def config_from_state_dict(state: dict) -> dict:
    """size, style_dim, n_mlp and channels per resolution, from the weight shapes."""
    need = ["style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight"]
    absent = [k for k in need if k not in state]
    if absent:
        raise InputError(f"missing keys {', '.join(absent)}")
    style_dim = _shape(state, "style.1.weight", 2)[1]
    n_mlp = len([k for k in state if isinstance(k, str) and re.fullmatch(r"style\.\d+\.weight", k)])
    n_rgb = len([k for k in state if isinstance(k, str) and re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    size = 4 * 2 ** n_rgb
    channels = {4: _shape(state, "input.input", 4)[1]}
    for j in range(n_rgb):
        key = f"convs.{2 * j}.conv.weight"
        if key not in state:
            raise InputError(f"missing key {key}")
        channels[8 * 2 ** j] = _shape(state, key, 5)[1]
    if min([style_dim, n_mlp, *channels.values()]) < 1:
        raise InputError(f"StyleGAN2 widths must be positive; the shapes give style_dim {style_dim}, n_mlp {n_mlp}, "
                         f"channels {_few(channels)}")
    return {"size": size, "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels}


def _few(channels: dict, k: int = 10) -> str:
    items = [f"{r}: {c}" for r, c in channels.items()]
    return "{" + ", ".join(items[:k]) + (f", ... ({len(items)} in all)}}" if len(items) > k else "}")


def model_size(size: int, style_dim: int, n_mlp: int, channels: dict[int, int]) -> dict:
    """Parameters, buffers, feature-map values and modules of the :class:`StyleGAN2` these sizes
    describe, computed without building it (for the size budget; ``features``: the largest
    up-sampling conv's zero-inserted input plus output of one image, which matches the measured
    peak of a forward pass: +0.77 GB at 1024 px, estimated 0.81 GB)."""
    S, log = int(style_dim), int(size).bit_length() - 1
    c4 = int(channels[4])
    params = n_mlp * (S * S + S) + c4 * 16
    params += 9 * c4 * c4 + S * c4 + c4 + 1 + c4                  # conv1
    params += 3 * c4 + S * c4 + c4 + 3                            # to_rgb1
    buffers, largest, modules, cin = S, 2 * c4 * 16, 3 * n_mlp + 16, c4
    for i in range(3, log + 1):
        r, cout = 2 ** i, int(channels[2 ** i])
        params += 9 * cin * cout + S * cin + cin + 1 + cout       # up-sampling styled conv
        params += 9 * cout * cout + S * cout + cout + 1 + cout    # styled conv
        params += 3 * cout + S * cout + cout + 3                  # to_rgb
        buffers += 16 + 16                                        # blur and up-sampling FIR kernels
        largest = max(largest, (cin + cout) * r * r * 2)          # the up-sampling conv's zero-inserted input
        modules += 22
        cin = cout
    buffers += sum((2 ** ((i + 5) // 2)) ** 2 for i in range(2 * (log - 2) + 1))     # fixed noise
    return {"params": params, "buffers": buffers, "features": largest, "modules": modules}


# ----------------------------------------------------------------------------- loading, registration

def _check_options(truncation, noise_mode, mean_latent, clamp_output) -> None:
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not math.isfinite(truncation):
        raise ArgumentTypeError(f"truncation must be a number (psi; 1 = none), got {truncation!r:.40}")
    if noise_mode not in ("const", "random"):
        raise InputError(f"noise_mode must be 'const' or 'random', got {noise_mode!r:.40}")
    if isinstance(mean_latent, bool) or not isinstance(mean_latent, int) or not 1 <= mean_latent <= 10 ** 6:
        raise InputError(f"mean_latent must be an int in [1, 1000000] (codes averaged for the mean w), "
                         f"got {mean_latent!r:.40}")
    if not isinstance(clamp_output, bool):
        raise ArgumentTypeError(f"clamp_output must be True or False, got {clamp_output!r:.40}")


def _load(path, ck, truncation: float = 1.0, noise_mode: str = "const",
                               mean_latent: int = 4096, clamp_output: bool = True):
    _check_options(truncation, noise_mode, mean_latent, clamp_output)
    try:
        state, latent_avg = normalize_state(ck)
        cfg = config_from_state_dict(state)
    except ValueError as e:
        if "missing key" not in str(e):
            raise CheckpointError(f"checkpoint {path} is not a usable stylegan2 generator: {e}; save the g_ema "
                                  "state dict of rosinality's stylegan2-pytorch "
                                  "(or convert_weight.py's output)") from None
        inner = ck.get("g_ema", ck) if isinstance(ck, dict) else ck
        raise arch_error(path, "stylegan2", ck, inner,
                          ["style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight",
                           "convs.0.conv.weight", "to_rgbs.0.conv.weight"]) from None
    px = cfg["size"] if cfg["size"] < 2 ** 30 else f"4 x 2^{cfg['size'].bit_length() - 3}"
    check_model(f"checkpoint {path}", f"the StyleGAN2 its shapes describe ({px} px, style_dim {cfg['style_dim']}, "
                f"{cfg['n_mlp']} mapping layers, channels {_few(cfg['channels'])})", **model_size(**cfg))

    def build():
        return StyleGAN2(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channels=cfg["channels"],
                         truncation=truncation, noise_mode=noise_mode, clamp_output=clamp_output)

    check_fits(build, state, path)
    model = build()
    load_state_into(model, state, path)
    from_file = latent_avg is not None and latent_avg.numel() == cfg["style_dim"]
    if from_file:
        model.set_mean_latent(latent_avg.float())
    else:
        model.set_mean_latent(model.compute_mean_latent(mean_latent))
    model.meta = {"arch": "stylegan2", **{k: v for k, v in cfg.items() if k != "channels"},
                  "mean_latent": "latent_avg from file" if from_file else f"mean of {mean_latent} w"}
    return model


def _detect(keys: set) -> bool:
    return "g_ema" in keys or {"style.1.weight", "input.input"} <= keys or \
        {"module.style.1.weight", "module.input.input"} <= keys


register_architecture("stylegan2", "generator", _load, _detect,
                      options=("truncation", "noise_mode", "mean_latent", "clamp_output"))

_SG2 = {"church": ("LSUN church", 256), "cat": ("LSUN cat", 256), "horse": ("LSUN horse", 256),
        "ffhq": ("FFHQ faces", 1024)}
for _key, (_what, _size) in _SG2.items():
    _fn = f"stylegan2-{_key}-config-f.pt"
    register_published(Spec(
        f"stylegan2/{_key}", "generator", "stylegan2", (Source(_fn),), options={"truncation": 1.0},
        origin=f"NVIDIA's stylegan2-{_key}-config-f.pkl, converted by rosinality's convert_weight.py",
        description=f"StyleGAN2 config-f, {_what} {_size}x{_size} (Karras et al. 2020), rosinality g_ema format",
        how_to_get=f"Convert NVIDIA's stylegan2-{_key}-config-f.pkl with rosinality/stylegan2-pytorch "
                   f"(`python convert_weight.py --repo stylegan2 stylegan2-{_key}-config-f.pkl` writes {_fn}), "
                   "or use a checkpoint saved by that repository's train.py"))

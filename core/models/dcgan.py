"""The DCGAN generator of PyTorch's DCGAN tutorial (Radford et al. 2016), as its own code saves it.

The tutorial's ``Generator`` is one ``nn.Sequential`` called ``main``: ``ConvTranspose2d(nz, ngf*8, 4,
1, 0)``, then blocks of ``BatchNorm2d`` + ``ReLU`` + ``ConvTranspose2d(·, ·, 4, 2, 1)``, then ``Tanh``,
all convolutions without bias. Its state dict is ``main.{3i}.weight`` (the i-th transposed
convolution, ``[C_in, C_out, 4, 4]``) and ``main.{3i+1}.weight/bias/running_mean/running_var/
num_batches_tracked`` (its batch norm), saved bare, under ``netG_state_dict`` (the tutorial's own
checkpoint dict, beside the discriminator and the optimisers) or ``state_dict``, with or without
DataParallel's ``module.`` prefix. ``nz``, ``ngf``, the number of blocks and ``nc`` (3, or 1 for a
grey-scale model, shown as grey RGB) come from the shapes, never from a config.

The layers get names a user can dissect: ``layer1 … layerK`` (transposed convolution, batch norm,
ReLU: the block's output after its ReLU, 4x4, 8x8, …) and ``output_RxR`` (the last transposed
convolution and Tanh). The model is evaluated with the batch norms' running statistics
(in evaluation mode, ``model.eval()``), as every loaded generator is; the tutorial draws its own samples in
training mode,
with each batch's statistics, so a sample grid from the tutorial differs slightly.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from core.base.budget import check_model
from core.base.checkpoints import check_fits, load_state_into
from core.base.errors import CheckpointError, InputError
from core.models.registry import arch_error, register_architecture

__all__ = ["DCGAN", "config_from_state_dict", "normalize_state", "to_tutorial_keys"]

WRAPPERS = ("netG_state_dict", "state_dict", "generator", "netG")
_MAIN = re.compile(r"^main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


class Block(nn.Module):
    def __init__(self, cin, cout, first: bool, bias: bool, norm: bool, act: str):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 1 if first else 2, 0 if first else 1, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.ReLU() if act == "relu" else nn.Tanh()

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class DCGAN(nn.Module):
    """The tutorial's generator. ``widths`` = output channels of ``layer1 … layerK``; ``nc`` the
    image channels (1 is repeated to grey RGB); ``bias``: the convolutions have biases."""

    def __init__(self, z_dim: int = 100, widths=(512, 256, 128, 64), nc: int = 3, bias: bool = False):
        super().__init__()
        self.z_dim, self.widths, self.nc = int(z_dim), [int(w) for w in widths], int(nc)
        self.resolution = 4 * 2 ** len(self.widths)
        cin = self.z_dim
        for i, w in enumerate(self.widths):
            setattr(self, f"layer{i + 1}", Block(cin, w, i == 0, bias, True, "relu"))
            cin = w
        setattr(self, self.output_name, Block(cin, self.nc, not self.widths, bias, False, "tanh"))

    @property
    def output_name(self) -> str:
        return f"output_{self.resolution}x{self.resolution}"

    @property
    def layer_names(self) -> list[str]:
        return [f"layer{i}" for i in range(1, len(self.widths) + 1)] + [self.output_name]

    def forward(self, z):
        x = z.view(z.shape[0], -1, 1, 1) if z.dim() == 2 else z
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x.expand(-1, 3, -1, -1) if self.nc == 1 else x


def normalize_state(ck) -> dict:
    """The generator's ``main.*`` state dict from what the tutorial (or a variant of it) saved."""
    state = ck
    for w in WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(w), dict):
            state = state[w]
            break
    if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def config_from_state_dict(state: dict) -> dict:
    """``z_dim``, ``widths``, ``nc`` and ``bias`` from the ``main.{i}`` shapes (ValueError naming
    what is wrong)."""
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise InputError("missing key main.0.weight")
    idx = sorted({int(m.group(1)) for k in state if isinstance(k, str) and (m := _MAIN.match(k))})
    convs = [i for i in idx if i % 3 == 0 and f"main.{i}.weight" in state]
    if convs != list(range(0, 3 * len(convs), 3)):
        raise InputError(f"the transposed convolutions must be main.0, main.3, main.6, ...; found main.{convs}")
    ws = [state[f"main.{i}.weight"] for i in convs]
    if any(not isinstance(w, torch.Tensor) or w.dim() != 4 or tuple(w.shape[2:]) != (4, 4) for w in ws):
        raise InputError("every main.{3i}.weight must be a ConvTranspose2d weight [C_in, C_out, 4, 4]; got "
                         + ", ".join(str(tuple(w.shape)) if isinstance(w, torch.Tensor) else type(w).__name__
                                     for w in ws[:6]))
    for a, b in zip(ws, ws[1:]):
        if a.shape[1] != b.shape[0]:
            raise InputError(f"the convolutions do not chain: {tuple(a.shape)} then {tuple(b.shape)}")
    nc = int(ws[-1].shape[1])
    if nc not in (1, 3):
        raise InputError(f"the last convolution makes {nc} image channels; a generator of images makes 3 (or 1)")
    missing = [f"main.{i + 1}.running_var" for i in convs[:-1] if f"main.{i + 1}.running_var" not in state]
    if missing:
        raise InputError(f"missing key {missing[0]} (every block but the last has a batch norm)")
    return {"z_dim": int(ws[0].shape[0]), "widths": [int(w.shape[1]) for w in ws[:-1]], "nc": nc,
            "bias": "main.0.bias" in state}


def to_tutorial_keys(model: DCGAN) -> dict:
    """``{our key: the tutorial's key}`` for every entry of ``model.state_dict()``."""
    out = {}
    for i, name in enumerate(model.layer_names):
        for k in getattr(model, name).state_dict():
            part, leaf = k.split(".", 1)
            out[f"{name}.{k}"] = f"main.{3 * i + (1 if part == 'bn' else 0)}.{leaf}"
    return out


def model_size(z_dim: int, widths, nc: int, bias: bool) -> dict:
    ch = [int(z_dim)] + [int(w) for w in widths] + [int(nc)]
    params = sum(a * b * 16 + (b if bias else 0) for a, b in zip(ch, ch[1:])) + 2 * sum(ch[1:-1])
    buffers = 2 * sum(ch[1:-1]) + len(ch) - 2
    feats = max((ch[i] * 4 ** i + ch[i + 1] * 4 ** (i + 1)) * (4 if i else 1) for i in range(len(ch) - 1))
    return {"params": params, "buffers": buffers, "features": 2 * feats, "modules": 4 * len(ch) + 1}


def _load(path, ck) -> DCGAN:
    state = normalize_state(ck)
    try:
        cfg = config_from_state_dict(state)
    except ValueError as e:
        if "missing key main.0.weight" in str(e):
            raise arch_error(path, "dcgan", ck, state, ["main.0.weight", "main.1.running_var", "main.3.weight"]) \
                from None
        raise CheckpointError(f"checkpoint {path} is not a usable DCGAN generator: {e}",
                              fix="save the tutorial's generator with torch.save(netG.state_dict(), path)") from None
    px = 4 * 2 ** len(cfg["widths"])
    check_model(f"checkpoint {path}", f"the DCGAN its shapes describe (nz {cfg['z_dim']}, widths "
                f"{cfg['widths'][:6]}, {px if px < 2 ** 30 else 'too many'} px)", **model_size(**cfg))
    with torch.device("meta"):
        keys = to_tutorial_keys(DCGAN(**cfg))
    back = {v: k for k, v in keys.items()}
    ours = {back.get(k, k): v for k, v in state.items()}
    check_fits(lambda: DCGAN(**cfg), ours, path)
    model = DCGAN(**cfg)
    load_state_into(model, ours, path)
    model.meta = {"arch": "dcgan", **{k: v for k, v in cfg.items() if k != "widths"}, "widths": cfg["widths"]}
    return model


def _detect(keys: set) -> bool:
    return "netG_state_dict" in keys or "main.0.weight" in keys or "module.main.0.weight" in keys


register_architecture("dcgan", "generator", _load, _detect)

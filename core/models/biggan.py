"""BigGAN-deep (Brock et al. 2019) through the ``pytorch-pretrained-biggan`` package, wrapped to
meet the generator protocol for one chosen ImageNet class.

The package's ``BigGAN`` takes ``(z, one_hot_class, truncation)``; :class:`BigGANGenerator`
takes ``z`` alone (N x z_dim standard normal, as every GANatomy analysis draws it). It maps z to
the truncated normal on [-2, 2] the model was sampled with (inverse-CDF transform, so a sample
stays a deterministic function of z), scales it by ``truncation`` and conditions on
``class_index``. Modules keep the package's names: ``generator.layers.{i}`` are the residual
blocks (and the self-attention layer) one dissects or edits (``layer_names``).

Spectral normalisation is folded into plain weights once at load time, so a forward pass never
writes to the model (safe to share between threads).
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
import torch.nn as nn

from core.base.cache import weights_hash
from core.base.checkpoints import load_state_into
from core.base.errors import CheckpointError, InputError
from core.base.packages import require
from core.models.catalog import Source, Spec, register_published
from core.models.registry import arch_error, register_architecture

__all__ = ["BigGANGenerator", "config_from_state_dict", "require_package", "build", "PACKAGE", "PIP"]

PACKAGE = "pytorch_pretrained_biggan"
PIP = "pytorch-pretrained-biggan"


def require_package():
    """Import ``pytorch_pretrained_biggan`` or raise a clear error saying what to install."""
    return require(PACKAGE, PIP, "BigGAN generators")


def _trunc_normal_from_normal(z: torch.Tensor, bound: float = 2.0) -> torch.Tensor:
    """Map standard-normal z to a normal truncated to [-bound, bound] by inverse CDF."""
    lo = torch.special.ndtr(torch.tensor(-bound, dtype=torch.float64))
    hi = torch.special.ndtr(torch.tensor(bound, dtype=torch.float64))
    u = lo + torch.special.ndtr(z.double()) * (hi - lo)
    return torch.special.ndtri(u).clamp(-bound, bound).to(z.dtype)


class BigGANGenerator(nn.Module):
    """A BigGAN generator for one class: ``forward(z)`` -> N x 3 x R x R in [-1, 1]."""

    def __init__(self, model: nn.Module, class_index: int = 0, truncation: float = 1.0):
        super().__init__()
        self.config = model.config
        self.embeddings = model.embeddings
        self.generator = model.generator
        self.z_dim = int(self.config.z_dim)
        self.num_classes = int(self.config.num_classes)
        self.resolution = int(self.config.output_dim)
        self._class = self._check_class(class_index)
        self._trunc = self._check_trunc(truncation)
        self._hash = None

    def _check_class(self, c) -> int:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise InputError(f"class_index must be an int in [0, {self.num_classes - 1}], got {c!r}")
        return c

    @staticmethod
    def _check_trunc(t) -> float:
        t = float(t)
        if not 0 < t <= 1:
            raise InputError(f"BigGAN truncation must be in (0, 1], got {t}")
        return t

    @property
    def class_index(self) -> int:
        return self._class

    @property
    def truncation(self) -> float:
        return self._trunc

    @property
    def layer_names(self) -> list[str]:
        return [f"generator.layers.{i}" for i in range(len(self.generator.layers))]

    def with_class(self, class_index: int) -> "BigGANGenerator":
        """A generator sharing these weights for another class (this one is unchanged)."""
        view = copy.copy(self)
        view._class = self._check_class(class_index)
        return view

    def with_truncation(self, truncation: float) -> "BigGANGenerator":
        view = copy.copy(self)
        view._trunc = self._check_trunc(truncation)
        return view

    @property
    def cache_key(self) -> str:
        if self._hash is None:
            self._hash = weights_hash(self)
        return f"BigGAN:{self._hash}:class={self._class}:trunc={self._trunc!r}"

    def forward(self, z: torch.Tensor, class_index: int | None = None,
                truncation: float | None = None) -> torch.Tensor:
        t = self._trunc if truncation is None else self._check_trunc(truncation)
        c = self._class if class_index is None else self._check_class(class_index)
        zt = _trunc_normal_from_normal(z) * t
        one_hot = torch.zeros(z.shape[0], self.num_classes, device=z.device, dtype=z.dtype)
        one_hot[:, c] = 1
        cond = torch.cat([zt, self.embeddings(one_hot)], dim=1)
        return self.generator(cond, t)


# ----------------------------------------------------------------------------- loading

def config_from_state_dict(state: dict) -> dict:
    """A ``BigGANConfig`` dict read from the weight shapes of a BigGAN-deep state dict.

    Up-sampling is not visible in shapes; BigGAN-deep's published configurations alternate
    (block 0 keeps the resolution, block 1 up-samples, ...), which is assumed here."""
    need = ["embeddings.weight", "generator.gen_z.weight_orig", "generator.bn.running_means"]
    absent = [k for k in need if k not in state]
    if absent:
        raise InputError(f"missing keys {', '.join(absent)}")
    z_dim, num_classes = (int(s) for s in state["embeddings.weight"].shape)
    n_stats, ch = (int(s) for s in state["generator.bn.running_means"].shape)
    idx = sorted({int(m.group(1)) for k in state if (m := re.match(r"generator\.layers\.(\d+)\.", k))})
    attn = [i for i in idx if f"generator.layers.{i}.snconv1x1_theta.weight_orig" in state]
    blocks = [i for i in idx if i not in attn]
    layers = []
    for j, i in enumerate(blocks):
        cin = int(state[f"generator.layers.{i}.conv_0.weight_orig"].shape[1])
        cout = int(state[f"generator.layers.{i}.conv_3.weight_orig"].shape[0])
        layers.append([j % 2 == 1, cin // ch, cout // ch])
    ups = sum(1 for up, _, _ in layers if up)
    return {"output_dim": 4 * 2 ** ups, "z_dim": z_dim, "class_embed_dim": z_dim, "channel_width": ch,
            "num_classes": num_classes, "layers": layers,
            "attention_layer_position": attn[0] if attn else len(layers) + 1,
            "eps": 1e-4, "n_stats": n_stats}


def read_config(weights_path: Path, state: dict) -> dict:
    """``config.json`` beside the weights (the package's layout, or ``<stem>-config.json`` /
    ``biggan-deep-256-config.json`` for ``biggan-deep-256-pytorch_model.bin``), else inferred."""
    p = Path(weights_path)
    stem = p.name.replace("-pytorch_model.bin", "").replace("pytorch_model.bin", "")
    for cand in [p.with_name(f"{stem}-config.json") if stem else None, p.with_name("config.json"),
                 p.with_suffix(".json")]:
        if cand is not None and cand.is_file():
            try:
                return json.loads(cand.read_text())
            except ValueError as e:
                raise InputError(f"BigGAN config {cand} is not valid JSON ({e})") from None
    return config_from_state_dict(state)


def build(config: dict) -> nn.Module:
    """An (untrained) package ``BigGAN`` for ``config`` (a BigGANConfig dict)."""
    pkg = require_package()
    cfg = pkg.BigGANConfig.from_dict(config)
    cfg.layers = [tuple(x) for x in cfg.layers]
    return pkg.BigGAN(cfg)


def fold_spectral_norm(model: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrisation by its (eval-mode) normalised weight."""
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if type(hook).__name__ == "SpectralNorm":
                torch.nn.utils.remove_spectral_norm(m, name=hook.name)
    return model


# ----------------------------------------------------------------------------- loading, registration

def _load(path, ck, class_index: int = 0, truncation: float = 1.0):
    require_package()
    state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    if isinstance(state, dict) and state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        cfg = read_config(path, state)
    except (ValueError, KeyError, AttributeError) as e:
        if isinstance(e, ValueError) and "JSON" in str(e):
            raise CheckpointError(str(e)) from None
        raise arch_error(path, "biggan", ck, state,
                          ["embeddings.weight", "generator.gen_z.weight_orig", "generator.gen_z.weight_u",
                           "generator.bn.running_means", "generator.layers.0.conv_0.weight_orig"]) from None
    try:
        model = build(cfg)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"BigGAN config for {path} is unusable ({e})") from None
    load_state_into(model, state, path)
    fold_spectral_norm(model.eval())
    gen = BigGANGenerator(model, class_index=class_index, truncation=truncation)
    gen.meta = {"arch": "biggan", "resolution": gen.resolution, "num_classes": gen.num_classes}
    return gen


def _detect(keys: set) -> bool:
    return {"embeddings.weight", "generator.gen_z.weight_orig"} <= keys


register_architecture("biggan", "generator", _load, _detect, options=("class_index", "truncation"),
                      packages=(PIP,))

_BIGGAN_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan/"
for _res in (128, 256, 512):
    _stem = f"biggan-deep-{_res}"
    register_published(Spec(
        f"biggan/deep-{_res}", "generator", "biggan",
        (Source(f"{_stem}-pytorch_model.bin", _BIGGAN_S3 + f"{_stem}-pytorch_model.bin"),
         Source(f"{_stem}-config.json", _BIGGAN_S3 + f"{_stem}-config.json")),
        options={"class_index": 497, "truncation": 1.0}, packages=(PIP,),
        description=f"BigGAN-deep {_res}x{_res}, ImageNet (Brock et al. 2019), one class at a time "
                    "(default 497: church)"))

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

from core.base.budget import check_model
from core.base.cache import weights_hash
from core.base.checkpoints import check_fits, load_state_into
from core.base.errors import ArgumentTypeError, CheckpointError, InputError
from core.base.packages import require
from core.models.catalog import Source, Spec, register_published
from core.models.registry import arch_error, register_architecture

__all__ = ["PACKAGE", "PIP", "BigGANGenerator", "build", "config_from_state_dict", "model_size", "require_package"]

PACKAGE = "pytorch_pretrained_biggan"
PIP = "pytorch-pretrained-biggan"


def require_package():
    """Import ``pytorch_pretrained_biggan`` or raise a clear error saying what to install."""
    return require(PACKAGE, PIP, "BigGAN generators")


def _trunc_normal_from_normal(z: torch.Tensor, bound: float = 2.0) -> torch.Tensor:
    """Map standard-normal z to a normal truncated to [-bound, bound] by inverse CDF."""
    lo = torch.special.ndtr(torch.tensor(-bound, dtype=torch.float64, device=z.device))
    hi = torch.special.ndtr(torch.tensor(bound, dtype=torch.float64, device=z.device))
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


_MAX_CONFIG = 1 << 20        # a BigGAN config.json is ~1 KB; a larger one is not a config


def read_config(weights_path: Path, state: dict) -> dict:
    """``config.json`` beside the weights (the package's layout, or ``<stem>-config.json`` /
    ``biggan-deep-256-config.json`` for ``biggan-deep-256-pytorch_model.bin``), else inferred."""
    p = Path(weights_path)
    stem = p.name.replace("-pytorch_model.bin", "").replace("pytorch_model.bin", "")
    for cand in [p.with_name(f"{stem}-config.json") if stem else None, p.with_name("config.json"),
                 p.with_suffix(".json")]:
        if cand is not None and cand.is_file():
            if cand.stat().st_size > _MAX_CONFIG:
                raise InputError(f"BigGAN config {cand} is not valid JSON for a config "
                                 f"({cand.stat().st_size:,} bytes; a config is about 1 KB)")
            try:
                cfg = json.loads(cand.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"BigGAN config {cand} is not valid JSON ({e})") from None
            if not isinstance(cfg, dict):
                raise InputError(f"BigGAN config {cand} is not valid JSON for a config (a {type(cfg).__name__}, "
                                 "not an object)")
            cfg.setdefault("_source", str(cand))
            return cfg
    return config_from_state_dict(state)


# BigGANConfig's defaults (pytorch-pretrained-biggan), for the fields a config.json leaves out
_DEFAULTS = {"output_dim": 128, "z_dim": 128, "class_embed_dim": 128, "channel_width": 128, "num_classes": 1000,
             "layers": [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
                        (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
             "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51}


def _posint(cfg: dict, key: str, low: int = 1) -> int:
    v = cfg.get(key, _DEFAULTS[key])
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise InputError(f"{key} must be an int >= {low}, got {v!r:.40}")
    return v


def model_size(config: dict) -> dict:
    """Parameters, buffers (spectral-norm vectors, batch-norm statistics), feature-map values (and
    the spectral-norm weight copies) and modules of the package's ``BigGAN`` for ``config``,
    computed without building it; raises :class:`InputError` for a malformed config."""
    ch, z, k = _posint(config, "channel_width"), _posint(config, "z_dim"), _posint(config, "num_classes")
    n_stats = _posint(config, "n_stats", 2)
    attn = config.get("attention_layer_position", _DEFAULTS["attention_layer_position"])
    layers = config.get("layers", _DEFAULTS["layers"])
    if isinstance(attn, bool) or not isinstance(attn, int):
        raise InputError(f"attention_layer_position must be an int, got {attn!r:.40}")
    if not isinstance(layers, (list, tuple)) or not layers or not all(
            isinstance(x, (list, tuple)) and len(x) == 3 and x[0] in (True, False, 0, 1)
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in x[1:]) for x in layers):
        raise InputError(f"layers must be a list of [up-sample (bool), in multiplier, out multiplier] with "
                         f"multipliers >= 1; got {json.dumps(layers, default=str)[:120]}")
    cond = 2 * z
    params, buffers, copies, modules = k * z, 0, 0, 4

    def sn(cin, cout, kk=1, bias=True):         # a spectrally normalised conv / linear
        nonlocal params, buffers, copies, modules
        params += cin * cout * kk * kk + (cout if bias else 0)
        buffers += cout + cin * kk * kk
        copies += cin * cout * kk * kk
        modules += 1

    def bn(n):                                  # conditional batch norm
        nonlocal buffers, modules
        buffers += 2 * n_stats * n
        sn(cond, n, bias=False)
        sn(cond, n, bias=False)
        modules += 1

    sn(cond, 256 * ch)                                          # gen_z
    res, largest = 4, 2 * 256 * ch
    for i, (up, a, b) in enumerate(layers):
        cin, cout = ch * a, ch * b
        if i == attn:
            sn(cin, cin // 8, bias=False)
            sn(cin, cin // 8, bias=False)
            sn(cin, cin // 2, bias=False)
            sn(cin // 2, cin, bias=False)
            params += 1
            modules += 3
            largest = max(largest, res ** 4 // 4 + 2 * cin * res * res)
        mid = cin // 4
        out_res = res * 2 if up else res
        for n in (cin, mid, mid, mid):
            bn(n)
        sn(cin, mid)
        sn(mid, mid, 3)
        sn(mid, mid, 3)
        sn(mid, cout)
        modules += 2
        largest = max(largest, (cin + cout) * out_res * out_res)
        res = out_res
    params += 2 * ch
    buffers += 2 * n_stats * ch
    sn(ch, ch, 3)
    largest = max(largest, 2 * ch * res * res)
    return {"params": params, "buffers": buffers, "features": 2 * largest + copies, "modules": modules + 3,
            "resolution": res}


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
    if isinstance(class_index, bool) or not isinstance(class_index, int) or class_index < 0:
        raise InputError(f"class_index must be an int >= 0 (an ImageNet class), got {class_index!r:.40}")
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)):
        raise ArgumentTypeError(f"BigGAN truncation must be a number in (0, 1], got {truncation!r:.40}")
    BigGANGenerator._check_trunc(truncation)
    require_package()
    state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        cfg = read_config(path, state)
    except (ValueError, KeyError, AttributeError, IndexError, TypeError) as e:
        if isinstance(e, ValueError) and "JSON" in str(e):
            raise CheckpointError(str(e), fix="put the model's config.json beside the weights (as "
                                  "pytorch-pretrained-biggan saves it), or remove it to read the sizes from the "
                                  "weights") from None
        raise arch_error(path, "biggan", ck, state,
                          ["embeddings.weight", "generator.gen_z.weight_orig", "generator.gen_z.weight_u",
                           "generator.bn.running_means", "generator.layers.0.conv_0.weight_orig"]) from None
    source = cfg.pop("_source", None)
    where = f"BigGAN config {source}" if source else f"checkpoint {path}"
    try:
        size = model_size(cfg)
    except InputError as e:
        raise CheckpointError(f"{where} is unusable ({e})", fix="use the config.json published with the "
                              "weights, or remove it to read the sizes from the weights") from None
    check_model(where, f"the BigGAN-deep it describes ({size['resolution']} px, {len(cfg.get('layers', []))} "
                f"blocks, channel width {cfg.get('channel_width')})", **{k: v for k, v in size.items()
                                                                        if k != "resolution"})
    if class_index >= cfg.get("num_classes", _DEFAULTS["num_classes"]):
        raise InputError(f"class_index must be an int in [0, {cfg.get('num_classes', 1000) - 1}], got {class_index}")
    try:
        check_fits(lambda: build(cfg), state, path)
        model = build(cfg)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        if isinstance(e, CheckpointError):
            raise
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

"""An ADE20K SegFormer (Xie et al. 2021; 150 classes) through ``transformers``, behind the
segmenter protocol.

``labels`` is ``["-"] + the 150 ADE20K class names`` (index 0 = unlabeled, which SegFormer never
predicts). Images in [-1, 1] are mapped to [0, 1], optionally resized to the model's training
size (``input_size``, 512 for the ``*-ade-512-512`` models; images are always brought up to the
smallest size the encoder accepts, 32 px), normalised with the ImageNet mean
and std, and the logits (1/4 of the input size) are resized bilinearly back to the image size:
``segment`` returns N x H x W labels and ``scores`` N x 151 x H x W probabilities (channel 0 is
all zeros).

Weights load from a folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, as
``save_pretrained`` writes them and the hub stores them) or from one weights file, whose
configuration is then read from the weight shapes. Nothing here downloads; safetensors files are
read with ``safetensors``, others with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.base.budget import check_model
from core.base.cache import weights_hash
from core.base.checkpoints import load_state_into, read_weights
from core.base.errors import CheckpointError, InputError
from core.base.packages import require
from core.models.catalog import Source, Spec, register_published
from core.models.registry import register_architecture

__all__ = ["ADE20K_LABELS", "PIP", "SegformerSegmenter", "config_from_state_dict", "load_segformer", "model_size"]

PIP = "transformers"

# ADE20K SceneParsing, 150 classes, in the order of the published ADE20K SegFormer heads.
ADE20K_LABELS = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]
assert len(ADE20K_LABELS) == 150
# ADE20K's stuff classes (amorphous regions; the concept maps' "objects only" hides them)
ADE20K_STUFF = ["wall", "floor", "ceiling", "sky", "road", "grass", "sidewalk", "earth", "mountain", "water", "sea",
                "field", "sand", "river", "hill", "land", "dirt track", "path", "rock", "runway", "lake"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def require_transformers():
    return require("transformers", PIP, "SegFormer segmenters")


class SegformerSegmenter(nn.Module):
    """Segmenter protocol over a ``SegformerForSemanticSegmentation``."""

    def __init__(self, model: nn.Module, labels: list[str] | None = None, input_size: int | None = None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.model = model
        k = int(model.config.num_labels)
        self.labels = ["-"] + list(labels or _labels_from_config(model.config))
        self.stuff = [c for c in ADE20K_STUFF if c in self.labels]
        if len(self.labels) != k + 1:
            raise InputError(f"{len(self.labels) - 1} label names for a {k}-class SegFormer")
        self.input_size = input_size
        # the smallest input every stage's sequence-reduction conv fits (32 for the MiT encoders)
        cfg, scale, need = model.config, 1, 1
        for stride, sr in zip(cfg.strides, cfg.sr_ratios):
            scale *= stride
            need = max(need, scale * sr)
        self.min_size = need
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._hash = None

    @property
    def cache_key(self) -> str:
        if self._hash is None:
            self._hash = weights_hash(self.model)
        return f"SegFormer:{self._hash}:in={self.input_size}"

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits N x K x H x W at the image size."""
        h, w = images.shape[-2:]
        x = (images.to(self.mean.dtype) + 1) / 2
        size = (self.input_size, self.input_size) if self.input_size else (h, w)
        if min(size) < self.min_size:
            size = tuple(max(d, self.min_size) for d in size)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                              antialias=max(h, w) > max(size))
        x = (x - self.mean) / self.std
        out = self.model(pixel_values=x).logits
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        p = self.logits(images).softmax(1)
        return torch.cat([torch.zeros_like(p[:, :1]), p], dim=1)

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.logits(images).argmax(1) + 1

    def forward(self, images):
        return self.segment(images)


def _labels_from_config(config) -> list[str]:
    k = int(config.num_labels)
    names = [str(config.id2label.get(i, config.id2label.get(str(i), ""))).strip()
             for i in range(k)] if getattr(config, "id2label", None) else []
    generic = not names or all(re.fullmatch(r"LABEL_\d+", n) or not n for n in names)
    if generic:
        return list(ADE20K_LABELS) if k == 150 else [f"class{i}" for i in range(k)]
    return names


# ----------------------------------------------------------------------------- key layouts
#
# Published checkpoints (the hub's nvidia/segformer-* files, and what ``save_pretrained``
# writes) use the original names: ``segformer.encoder.block.{stage}.{i}.attention.self.query``,
# ``…mlp.dense1``, ``decode_head.linear_c.{i}``. transformers 5 names the same modules
# ``segformer.stages.{stage}.blocks.{i}.attention.q_proj``, ``…mlp.fc1``,
# ``decode_head.linear_projections.{i}``. Files are read in either layout and brought to the
# installed model's.

_STAGES = [  # (published regex, published template, v5 regex, v5 template)
    (r"^segformer\.encoder\.patch_embeddings\.(\d+)\.", r"segformer.encoder.patch_embeddings.\1.",
     r"^segformer\.stages\.(\d+)\.patch_embeddings\.", r"segformer.stages.\1.patch_embeddings."),
    (r"^segformer\.encoder\.block\.(\d+)\.(\d+)\.", r"segformer.encoder.block.\1.\2.",
     r"^segformer\.stages\.(\d+)\.blocks\.(\d+)\.", r"segformer.stages.\1.blocks.\2."),
    (r"^segformer\.encoder\.layer_norm\.(\d+)\.", r"segformer.encoder.layer_norm.\1.",
     r"^segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.stages.\1.layer_norm."),
]
_PARTS = [("attention.self.query.", "attention.q_proj."), ("attention.self.key.", "attention.k_proj."),
          ("attention.self.value.", "attention.v_proj."),
          ("attention.self.sr.", "attention.sequence_reduction.sequence_reduction."),
          ("attention.self.layer_norm.", "attention.sequence_reduction.layer_norm."),
          ("attention.output.dense.", "attention.o_proj."), ("mlp.dense1.", "mlp.fc1."),
          ("mlp.dense2.", "mlp.fc2."), (".layer_norm_1.", ".layernorm_before."),
          (".layer_norm_2.", ".layernorm_after."), ("decode_head.linear_c.", "decode_head.linear_projections.")]


def _rename(key: str, to_v5: bool) -> str:
    for p_re, p_tpl, v_re, v_tpl in _STAGES:
        src, dst = (p_re, v_tpl) if to_v5 else (v_re, p_tpl)
        new, n = re.subn(src, dst, key)
        if n:
            key = new
            break
    for a, b in _PARTS:
        src, dst = (a, b) if to_v5 else (b, a)
        if src in key:
            key = key.replace(src, dst)
    return key


def to_published(state: dict) -> dict:
    """The same tensors under the published (hub) key names."""
    if not any(k.startswith("segformer.stages.") or k.startswith("decode_head.linear_projections.")
               for k in state):
        return dict(state)
    return {_rename(k, to_v5=False): v for k, v in state.items()}


def to_model_layout(state: dict, model_keys) -> dict:
    """Published-named tensors under the names the installed ``transformers`` model uses."""
    if any(k.startswith("segformer.stages.") for k in model_keys):
        return {_rename(k, to_v5=True): v for k, v in state.items()}
    return dict(state)


# ----------------------------------------------------------------------------- loading

def config_from_state_dict(state: dict) -> dict:
    """SegformerConfig fields read from the weight shapes (heads follow the published MiT
    encoders: 1, 2, 5, 8 per stage)."""
    need = ["segformer.encoder.patch_embeddings.0.proj.weight", "decode_head.classifier.weight",
            "decode_head.linear_fuse.weight"]
    absent = [k for k in need if k not in state]
    if absent:
        raise InputError(f"missing keys {', '.join(absent)}")
    stages = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r"segformer\.encoder\.patch_embeddings\.(\d+)\.", k))})
    hidden, patch, depths, sr, mlp = [], [], [], [], []
    for i in stages:
        w = state[f"segformer.encoder.patch_embeddings.{i}.proj.weight"]
        hidden.append(int(w.shape[0]))
        patch.append(int(w.shape[-1]))
        depths.append(len({int(m.group(1)) for k in state
                           if (m := re.match(rf"segformer\.encoder\.block\.{i}\.(\d+)\.", k))}))
        srw = state.get(f"segformer.encoder.block.{i}.0.attention.self.sr.weight")
        sr.append(int(srw.shape[-1]) if srw is not None else 1)
        mlp.append(int(state[f"segformer.encoder.block.{i}.0.mlp.dense1.weight"].shape[0]) // hidden[-1])
    heads = [1, 2, 5, 8][:len(stages)] if len(stages) <= 4 else [1] * len(stages)
    bad = [h for h, n in zip(hidden, heads) if h % n]
    if bad:
        raise InputError(f"cannot infer attention heads for hidden sizes {hidden}; put the model's "
                         "config.json beside the weights")
    dec = int(state["decode_head.linear_fuse.weight"].shape[0])
    return {"num_channels": int(state["segformer.encoder.patch_embeddings.0.proj.weight"].shape[1]),
            "num_encoder_blocks": len(stages), "depths": depths, "sr_ratios": sr, "hidden_sizes": hidden,
            "patch_sizes": patch, "strides": [4] + [2] * (len(stages) - 1), "num_attention_heads": heads,
            "mlp_ratios": mlp, "decoder_hidden_size": dec,
            "num_labels": int(state["decode_head.classifier.weight"].shape[0])}


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# SegformerConfig's defaults (the b0 layout), for the fields a config.json leaves out
_DEFAULTS = {"num_channels": 3, "num_encoder_blocks": 4, "depths": [2, 2, 2, 2], "sr_ratios": [8, 4, 2, 1],
             "hidden_sizes": [32, 64, 160, 256], "patch_sizes": [7, 3, 3, 3], "strides": [4, 2, 2, 2],
             "num_attention_heads": [1, 2, 5, 8], "mlp_ratios": [4, 4, 4, 4], "decoder_hidden_size": 256}
_MAX_CONFIG = 4 << 20        # a SegFormer config.json is ~10 KB (150 label names); larger is not a config


def _num_labels(cfg: dict) -> int:
    """Classes of a config (transformers versions differ on which of ``num_labels`` and
    ``id2label`` wins when both are given: the larger, for the budget)."""
    n = cfg.get("num_labels", 2 if not isinstance(cfg.get("id2label"), dict) else 1)
    if isinstance(cfg.get("id2label"), dict) and isinstance(n, int) and not isinstance(n, bool):
        n = max(n, len(cfg["id2label"]))
    return n


def model_size(config: dict) -> dict:
    """Parameters, buffers and modules of ``SegformerForSemanticSegmentation`` for ``config`` (a
    config.json's dict; SegformerConfig's defaults fill what it leaves out), computed without
    transformers or building anything; raises :class:`InputError` for a malformed config."""
    def posint(name, v, low=1):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InputError(f"{name} must be an int >= {low}, got {v!r:.40}")
        return v

    c = {k: config.get(k, d) for k, d in _DEFAULTS.items()}
    if "num_hidden_layers" in config and "num_encoder_blocks" not in config:
        c["num_encoder_blocks"] = config["num_hidden_layers"]
    nb = posint("num_encoder_blocks", c["num_encoder_blocks"])
    lists = {}
    for k in ("depths", "sr_ratios", "hidden_sizes", "patch_sizes", "strides", "num_attention_heads", "mlp_ratios"):
        v = c[k]
        if not isinstance(v, (list, tuple)) or len(v) < nb:
            raise InputError(f"{k} must be a list of {nb} values (num_encoder_blocks), got {json.dumps(v)[:80]}")
        if k == "mlp_ratios":
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e6 for x in v[:nb]):
                raise InputError(f"mlp_ratios must be positive numbers, got {json.dumps(v)[:80]}")
            lists[k] = list(v[:nb])
        else:
            lists[k] = [posint(f"{k}[{i}]", x, 0 if k == "depths" else 1) for i, x in enumerate(v[:nb])]
    cin = posint("num_channels", c["num_channels"])
    dec = posint("decoder_hidden_size", c["decoder_hidden_size"])
    labels = posint("num_labels", _num_labels(config))
    params, modules = 0, 4
    for i in range(nb):
        h, p, sr = lists["hidden_sizes"][i], lists["patch_sizes"][i], lists["sr_ratios"][i]
        heads = lists["num_attention_heads"][i]
        if h % heads:
            raise InputError(f"hidden_sizes[{i}] = {h} is not a multiple of num_attention_heads[{i}] = {heads}")
        m = int(h * lists["mlp_ratios"][i])
        params += cin * h * p * p + h + 2 * h                           # patch embedding and its norm
        block = 2 * h + 4 * (h * h + h) + 2 * h + (h * m + m) + (9 * m + m) + (m * h + h)
        if sr > 1:
            block += h * h * sr * sr + h + 2 * h                        # sequence reduction and its norm
        params += lists["depths"][i] * block + 2 * h
        modules += 5 + lists["depths"][i] * 16
        cin = h
    params += sum(h * dec + dec for h in lists["hidden_sizes"]) + dec * nb * dec + 2 * dec + dec * labels + labels
    return {"params": params, "buffers": 2 * dec + 1, "modules": modules + 3 * nb + 6}


def _read_config(cfg_file: Path) -> dict:
    if cfg_file.stat().st_size > _MAX_CONFIG:
        raise CheckpointError(f"SegFormer config {cfg_file} is not valid JSON for a config "
                              f"({cfg_file.stat().st_size:,} bytes; a config is about 10 KB)", fix=_FIX_CONFIG)
    try:
        cfg_dict = json.loads(cfg_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"SegFormer config {cfg_file} is not valid JSON ({_short(e)})", fix=_FIX_CONFIG) from None
    if not isinstance(cfg_dict, dict):
        raise CheckpointError(f"SegFormer config {cfg_file} is not valid JSON for a config (a "
                              f"{type(cfg_dict).__name__}, not an object)", fix=_FIX_CONFIG)
    if cfg_dict.get("model_type", "segformer") != "segformer":
        raise CheckpointError(f"{cfg_file} describes a {cfg_dict.get('model_type')!r:.40} model, not a SegFormer",
                              fix="give the folder of a SegFormer (its config.json says model_type 'segformer')")
    return cfg_dict


def _check_size(config: dict, where: str, fix: str) -> None:
    try:
        size = model_size(config)
    except InputError as e:
        raise CheckpointError(f"{where} is unusable ({e})", fix=fix) from None
    hidden = config.get("hidden_sizes", _DEFAULTS["hidden_sizes"])
    check_model(where, f"the SegFormer it describes (hidden sizes {json.dumps(hidden)[:80]}, depths "
                f"{json.dumps(config.get('depths', _DEFAULTS['depths']))[:80]})", **size)


_FIX_CONFIG = "use the config.json published with the weights (save_pretrained writes it)"


def load_segformer(path, device="cpu", labels: list[str] | None = None, input_size: int | None = -1):
    """A :class:`SegformerSegmenter` from a folder or a weights file (see the module docs).

    ``input_size=-1``: the preprocessor's size when the folder has ``preprocessor_config.json``,
    else none (images are segmented at their own size). Before anything is built (or transformers
    imported), the config is checked against the size budget (:mod:`core.base.budget`)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"SegFormer {p} does not exist: give a folder with config.json and "
                              f"{' or '.join(WEIGHT_FILES)}, or a weights file")
    if p.is_dir():
        weights = next((p / f for f in WEIGHT_FILES if (p / f).is_file()), None)
        if weights is None:
            raise CheckpointError(f"SegFormer folder {p} has no weights: put {' or '.join(WEIGHT_FILES)} "
                                  "(with config.json) there")
        cfg_file = p / "config.json"
        folder = p
    else:
        weights, folder = p, p.parent
        cfg_file = next((c for c in (p.with_suffix(".json"), p.parent / "config.json") if c.is_file()), None)
    cfg_dict = None
    if cfg_file is not None and cfg_file.is_file():
        cfg_dict = _read_config(cfg_file)
        _check_size(cfg_dict, f"SegFormer config {cfg_file}", _FIX_CONFIG)
    tf = require_transformers()
    state = to_published(read_weights(weights))
    if cfg_dict is not None:
        try:
            config = tf.SegformerConfig.from_dict(cfg_dict)
        except Exception as e:  # noqa: BLE001  (transformers' config validation raises its own types)
            raise CheckpointError(f"SegFormer config {cfg_file} is unusable ({_short(e)})", fix=_FIX_CONFIG) from None
    else:
        try:
            fields = config_from_state_dict(state)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, ArithmeticError) as e:
            raise CheckpointError(f"checkpoint {weights} is not a SegFormer semantic-segmentation model "
                                  f"({_short(e)}; first keys: {', '.join(map(str, list(state)[:5]))})") from None
        _check_size(fields, f"checkpoint {weights}", "put the model's config.json beside the weights")
        config = tf.SegformerConfig(**fields)
    try:
        model = tf.SegformerForSemanticSegmentation(config)
    except (TypeError, ValueError, KeyError, IndexError, ArithmeticError) as e:
        raise CheckpointError(f"SegFormer config {cfg_file or weights} is unusable ({_short(e)})",
                              fix=_FIX_CONFIG) from None
    own = model.state_dict()
    state = to_model_layout(state, own)
    # BatchNorm step counters are bookkeeping, absent from some saved files
    for k in [k for k in own if k.endswith("num_batches_tracked") and k not in state]:
        state[k] = own[k]
    load_state_into(model, state, weights)
    if input_size == -1:
        input_size = None
        pre = folder / "preprocessor_config.json"
        if pre.is_file():
            try:
                size = json.loads(pre.read_text()).get("size")
                input_size = int(size.get("height") if isinstance(size, dict) else size) if size else None
            except (ValueError, TypeError, AttributeError):
                input_size = None
    seg = SegformerSegmenter(model.eval(), labels=labels, input_size=input_size)
    seg.source = str(p)
    return seg.to(device).eval().requires_grad_(False)


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:200]


def _load(path, state=None, **options):
    return load_segformer(path, **options)


def _detect(keys: set) -> bool:
    # published or transformers-5 names
    return any(k.startswith(("segformer.encoder.", "segformer.stages.")) for k in keys)


register_architecture("segformer", "segmenter", _load, _detect, options=("labels", "input_size"), packages=(PIP,))

_SEGFORMER = {"b0": "512-512", "b2": "512-512", "b4": "512-512", "b5": "640-640"}
for _b, _size in _SEGFORMER.items():
    register_published(Spec(
        f"segformer/ade20k-{_b}", "segmenter", "segformer",
        (Source("model.safetensors"), Source("config.json"), Source("preprocessor_config.json")),
        folder=f"segformer-{_b}-finetuned-ade-{_size}", hub_id=f"nvidia/segformer-{_b}-finetuned-ade-{_size}",
        packages=(PIP,),
        description=f"SegFormer-{_b.upper()} (MiT-{_b}) semantic segmentation, ADE20K 150 classes, "
                    f"{_size.split('-')[0]}px input (Xie et al. 2021)"))

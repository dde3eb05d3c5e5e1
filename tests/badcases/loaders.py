"""Bad model files and loader arguments (issue 18, checkpoint pre-flight): every one is refused
with a GanatomyError naming the user's file or argument and the fix, before a model is built.

Files are written lazily (inside the calls) into one temporary folder per test session."""
from __future__ import annotations

import atexit
import functools
import json
import pathlib
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import torch

import core
from core.base.checkpoints import load_checkpoint
from core.models.progan import ProGAN
from tests.badcases.common import Case, environ


@functools.cache
def _dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ganatomy-bad-loaders-"))
    atexit.register(shutil.rmtree, d, True)
    return d


def _file(name: str, make) -> str:
    """``name`` in the case folder, written once by ``make(path)``."""
    p = _dir() / name
    if not p.exists():
        make(p)
    return str(p)


def _save(obj):
    return lambda p: torch.save(obj() if callable(obj) else obj, p)


def _bytes(data: bytes):
    return lambda p: p.write_bytes(data)


@functools.cache
def _tiny_state() -> dict:
    torch.manual_seed(0)
    return ProGAN(8, (8, 4)).state_dict()


def _tiny() -> str:
    return _file("tiny.pt", _save(_tiny_state))


def bomb_state(c: int) -> dict:
    """A ProGAN-shaped state dict of stride-0 views claiming width ``c`` (the file is ~2 KB)."""
    one = torch.zeros(1)
    return {"layer1.conv.weight": one.expand(c, c, 4, 4), "layer1.wscale.b": one.expand(c),
            "layer2.conv.weight": one.expand(c, c, 3, 3), "layer2.wscale.b": one.expand(c),
            "output_4x4.conv.weight": one.expand(3, c, 1, 1), "output_4x4.wscale.b": one.expand(3)}


def _wide_layer1() -> dict:
    """Small claims (2.6 M values), but layer1's width makes layer2 a 3.6 G-parameter conv."""
    sd = dict(_tiny_state())
    sd["layer1.conv.weight"] = torch.zeros(1).expand(20000, 8, 4, 4)
    return sd


def _with(key, fill):
    def make():
        sd = {k: v.clone() for k, v in _tiny_state().items()}
        sd[key].view(-1)[:3] = fill
        return sd
    return make


def overflowing_state():
    """Finite weights whose image is NaN for every z: layer2 outputs 1 everywhere, layer3 sums
    3e38-weighted ones to inf, and layer4's pixel norm makes inf * 0 = NaN."""
    sd = {k: v.clone() for k, v in _tiny_state().items()}
    sd["layer2.conv.weight"].zero_()
    sd["layer2.wscale.b"].fill_(1.0)
    sd["layer3.conv.weight"].fill_(3e38)
    return sd


def _huge_stylegan2() -> dict:
    """A rosinality-style g_ema of width 1 with 30 resolutions: 4 x 2^30 px, fixed noise of 2^64 values."""
    one = torch.zeros(1)
    sd = {"style.1.weight": one.expand(4, 4), "style.1.bias": one.expand(4), "input.input": one.expand(1, 1, 4, 4),
          "conv1.conv.weight": one.expand(1, 1, 1, 3, 3), "to_rgb1.conv.weight": one.expand(1, 3, 1, 1, 1)}
    for j in range(30):
        sd[f"convs.{2 * j}.conv.weight"] = one.expand(1, 1, 1, 3, 3)
        sd[f"to_rgbs.{j}.conv.weight"] = one.expand(1, 3, 1, 1, 1)
    return sd


class _RunsCode:
    """Pickles to a call of Path.touch(marker): loading it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _evil(p: Path):
    torch.save({**_tiny_state(), "x": _RunsCode(str(p) + ".ran")}, p)


def _truncated(p: Path):
    q = p.with_suffix(".full")
    torch.save(_tiny_state(), q)
    p.write_bytes(q.read_bytes()[:300])


def _zip_claim(p: Path):
    """A zip checkpoint whose pickle says its 10-value storage holds 10^9 values."""
    src = p.with_suffix(".src")
    torch.save({"w": torch.zeros(10)}, src)
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as out:
        for n in z.namelist():
            data = z.read(n)
            if n.endswith("data.pkl"):
                data = data.replace(b"K\nt", b"J" + struct.pack("<i", 10 ** 9) + b"t", 1)
            out.writestr(n, data)


def _safetensors(header: dict, data: bytes = b"\0" * 16):
    def make(p: Path):
        raw = json.dumps(header).encode()
        p.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return make


def _seg_folder(name: str, config, weights=None):
    """A SegFormer-style folder: config.json (a dict, or raw text) and a model.safetensors."""
    def make(p: Path):
        p.mkdir()
        (p / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
        if weights is not None:
            _safetensors_file(p / "model.safetensors", weights())
    return _file(name, make)


def _safetensors_file(path: Path, state: dict):
    from safetensors.torch import save_file  # only when a case runs (an optional package)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


_SEG_TINY = {"model_type": "segformer", "num_encoder_blocks": 1, "depths": [1], "sr_ratios": [1],
             "hidden_sizes": [8], "patch_sizes": [3], "strides": [4], "num_attention_heads": [1],
             "mlp_ratios": [2], "decoder_hidden_size": 8, "num_labels": 3}


def _nan_seg_weights():
    w = torch.zeros(8, 3, 3, 3)
    w[0, 0, 0, 0] = float("nan")
    return {"segformer.encoder.patch_embeddings.0.proj.weight": w}


def _env(call, **env):
    """Run ``call`` with environment variables set (and restored)."""
    def run():
        with environ(**env):
            return call()
    return run


G = core.load_generator
S = core.load_segmenter
FIX_BUDGET = "GANATOMY_MAX_PARAMS="
FIX_NONFINITE = "use an earlier checkpoint"

CASES = [
    # --------------------------------------------------------------- size budget (memory bombs)
    Case("load_generator:memory-bomb-5000", lambda: G(_file("bomb5000.pt", _save(lambda: bomb_state(5000)))),
         core.BudgetError, ("bomb5000.pt", "625,025,003 parameters", "500,000,000"), FIX_BUDGET),
    Case("load_generator:memory-bomb-20000", lambda: G(_file("bomb20000.pt", _save(lambda: bomb_state(20000)))),
         core.BudgetError, ("bomb20000.pt", "size budget"), FIX_BUDGET),
    Case("load_generator:absurd-width-from-shapes", lambda: G(_file("wide.pt", _save(_wide_layer1))),
         core.BudgetError, ("wide.pt", "ProGAN its shapes describe", "channels [20000"), FIX_BUDGET),
    Case("load_generator:stylegan2-absurd-resolution", lambda: G(_file("sg2huge.pt", _save(_huge_stylegan2))),
         core.BudgetError, ("sg2huge.pt", "StyleGAN2 its shapes describe", "4 x 2^30 px"), "GANATOMY_MAX_BYTES="),
    Case("load_generator:over-a-given-budget", lambda: G(_tiny(), max_params=1000),
         core.BudgetError, ("tiny.pt", "1,000 parameters"), "max_params="),
    Case("load_generator:budget-not-positive", lambda: G(_tiny(), max_params=-5),
         core.InputError, ("max_params", "-5"), "max_params=5e8"),
    Case("load_generator:budget-env-malformed", _env(lambda: G(_tiny()), GANATOMY_MAX_PARAMS="lots"),
         core.InputError, ("$GANATOMY_MAX_PARAMS", "'lots'"), "500M"),
    # --------------------------------------------------------------- poisoned weights
    Case("load_generator:nan-weights", lambda: G(_file("nan.pt", _save(_with("layer3.conv.weight", float("nan"))))),
         core.CheckpointError, ("nan.pt", "layer3.conv.weight", "3 NaN"), FIX_NONFINITE),
    Case("load_generator:inf-weights", lambda: G(_file("inf.pt", _save(_with("layer2.wscale.b", float("inf"))))),
         core.CheckpointError, ("inf.pt", "layer2.wscale.b", "3 inf"), FIX_NONFINITE),
    Case("load_generator:non-finite-image", lambda: G(_file("overflow.pt", _save(overflowing_state))),
         core.CheckpointError, ("overflow.pt", "non-finite images"), FIX_NONFINITE),
    # --------------------------------------------------------------- not a weights file
    Case("load_generator:junk-bytes", lambda: G(_file("junk.pt", _bytes(bytes(range(7, 256)) * 8))),
         core.CheckpointError, ("junk.pt", "not a PyTorch or safetensors weights file"), "saved with torch.save"),
    Case("load_generator:junk-after-pickle-header", lambda: G(_file("junk2.pt", _bytes(b"\x80\x02" + b"\xf9" * 64))),
         core.CheckpointError, ("junk2.pt", "cannot be read", "not a PyTorch file"), "fetch or save it again"),
    Case("load_generator:text-file", lambda: G(_file("notes.pt", _bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 9))),
         core.CheckpointError, ("notes.pt", "its first bytes are not those of"), "saved with torch.save"),
    Case("load_generator:empty-file", lambda: G(_file("empty.pt", _bytes(b""))),
         core.CheckpointError, ("empty.pt", "is empty"), "fetch the file again"),
    Case("load_generator:directory", lambda: G(_file("adir", lambda p: p.mkdir())),
         core.CheckpointError, ("adir", "is a directory"), "give the path of the weights file"),
    Case("load_generator:missing-file", lambda: G(str(_dir() / "nowhere.pt")),
         core.CheckpointError, ("nowhere.pt", "does not exist"), "check the path"),
    Case("load_generator:truncated", lambda: G(_file("cut.pt", _truncated)),
         core.CheckpointError, ("cut.pt", "cannot be read"), "fetch or save it again"),
    Case("load_generator:zip-storage-claim", lambda: G(_file("claim.pt", _zip_claim)),     # refused before torch.load
         core.BudgetError, ("claim.pt", "its storages declare 1,000,000,000 parameters"), "raise the budget"),
    Case("load_generator:pickle-that-runs-code", lambda: G(_file("evil.pt", _evil)),
         core.CheckpointError, ("evil.pt", "could run code"), "re-save it as a plain state_dict"),
    Case("load_generator:not-a-state-dict", lambda: G(_file("tensor.pt", _save(lambda: torch.zeros(3)))),
         core.CheckpointError, ("tensor.pt", "holds a Tensor"), "torch.save(model.state_dict(), path)"),
    Case("load_generator:keys-that-are-not-names", lambda: G(_file("intkeys.pt", _save({101: torch.zeros(2)}))),
         core.CheckpointError, ("intkeys.pt", "101"), "torch.save(model.state_dict(), path)"),
    Case("load_generator:safetensors-lying-header", lambda: G(_file("lies.safetensors", _safetensors(
         {"layer1.conv.weight": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 16]}}))),
         core.CheckpointError, ("lies.safetensors", "layer1.conv.weight", "(100000, 100000)"),
         "fetch or save it again"),
    Case("load_generator:safetensors-header-past-the-end", lambda: G(_file("long.safetensors", _bytes(
         struct.pack("<Q", 10 ** 6) + b'{"a": 1}'))),
         core.CheckpointError, ("long.safetensors", "1,000,000 bytes"), "fetch or save it again"),
    Case("load_generator:safetensors-nan", lambda: G(_file("nan.safetensors", lambda p: _safetensors_file(
         p, _with("layer1.wscale.b", float("nan"))())), max_params=10 ** 6),
         core.CheckpointError, ("nan.safetensors", "layer1.wscale.b"), FIX_NONFINITE),
    # --------------------------------------------------------------- architecture and options
    Case("load_generator:wrong-arch", lambda: G(_tiny(), arch="stylegan2"),
         core.CheckpointError, ("tiny.pt", "is not a stylegan2 model"), "arch='progan'"),
    Case("load_generator:unknown-arch", lambda: G(_tiny(), arch="mygan"),
         core.UnknownNameError, ("'mygan'", "tiny.pt"), "leave arch out"),
    Case("load_generator:segmenter-arch", lambda: G(_tiny(), arch="segformer"),
         core.ArgumentTypeError, ("'segformer'", "segmenter architecture"), "leave arch out"),
    Case("load_generator:arch-not-a-name", lambda: G(_tiny(), arch=3),
         core.ArgumentTypeError, ("arch", "int"), "progan"),
    Case("load_generator:option-the-arch-does-not-take", lambda: G(_tiny(), truncation=0.5),
         core.ArgumentTypeError, ("progan", "truncation"), "they take pixelnorm"),
    Case("load_generator:option-for-the-given-arch-before-reading", lambda: G(str(_dir() / "absent.pt"),
         arch="stylegan2", class_index=3),
         core.ArgumentTypeError, ("stylegan2", "class_index"), "they take truncation"),
    Case("load_generator:not-a-path", lambda: G(42),
         core.ArgumentTypeError, ("int", "42"), "a model name or a path"),
    Case("load_generator:a-segmenter-file", lambda: G(_file("segformer.safetensors", lambda p: _safetensors_file(
         p, {"segformer.encoder.patch_embeddings.0.proj.weight": torch.zeros(8, 3, 3, 3)}))),
         core.CheckpointError, ("segformer.safetensors", "holds a segformer model, not a generator"),
         "load it with core.load_segmenter"),
    Case("load_checkpoint:safetensors-file", lambda: load_checkpoint(_file(
         "ok.safetensors", lambda p: _safetensors_file(p, {"w": torch.zeros(2)}))),
         core.CheckpointError, ("ok.safetensors", "is a safetensors file"), "read_weights"),
    # --------------------------------------------------------------- segmenters
    Case("load_segmenter:huge-config", lambda: S(_seg_folder("seg-huge", {
         "model_type": "segformer", "hidden_sizes": [100000, 200000, 500000, 800000], "num_labels": 150},
         lambda: {"w": torch.zeros(4)})),
         core.BudgetError, ("seg-huge", "config.json", "hidden sizes [100000"), FIX_BUDGET),
    Case("load_segmenter:huge-depth", lambda: S(_seg_folder("seg-deep", {**_SEG_TINY, "depths": [10 ** 7]},
                                                            lambda: {"w": torch.zeros(4)})),
         core.BudgetError, ("seg-deep", "config.json", "10000000"), "GANATOMY_MAX_BYTES="),
    Case("load_segmenter:config-not-json", lambda: S(_seg_folder("seg-text", "hidden_sizes: lots", lambda: {
         "w": torch.zeros(4)})),
         core.CheckpointError, ("seg-text", "config.json", "not valid JSON"), "config.json published with the weights"),
    Case("load_segmenter:config-field-malformed", lambda: S(_seg_folder("seg-field", {**_SEG_TINY, "hidden_sizes": [
         "wide"]}, lambda: {"w": torch.zeros(4)})),
         core.CheckpointError, ("seg-field", "hidden_sizes[0]", "'wide'"), "config.json published with the weights"),
    Case("load_segmenter:config-heads-do-not-divide", lambda: S(_seg_folder("seg-heads", {
         **_SEG_TINY, "num_attention_heads": [3]}, lambda: {"w": torch.zeros(4)})),
         core.CheckpointError, ("seg-heads", "not a multiple of num_attention_heads"), "config.json published"),
    Case("load_segmenter:config-of-another-model", lambda: S(_seg_folder("seg-bert", {"model_type": "bert"},
                                                                         lambda: {"w": torch.zeros(4)})),
         core.CheckpointError, ("seg-bert", "'bert'"), "model_type 'segformer'"),
    Case("load_segmenter:nan-weights", lambda: S(_seg_folder("seg-nan", _SEG_TINY, _nan_seg_weights)),
         core.CheckpointError, ("seg-nan", "model.safetensors", "patch_embeddings.0.proj.weight", "1 NaN"),
         FIX_NONFINITE),
    Case("load_segmenter:folder-without-weights", lambda: S(_seg_folder("seg-empty", _SEG_TINY)),
         core.CheckpointError, ("seg-empty", "has no weights"), "put model.safetensors or pytorch_model.bin"),
    Case("load_segmenter:missing-path", lambda: S(str(_dir() / "no-such-segformer")),
         core.CheckpointError, ("no-such-segformer", "does not exist"), "check the path"),
    Case("load_segmenter:option-the-arch-does-not-take", lambda: S(_seg_folder("seg-nan", _SEG_TINY, _nan_seg_weights),
                                                                   truncation=0.5),
         core.ArgumentTypeError, ("segformer", "truncation"), "they take labels, input_size"),
    Case("load_segmenter:generator-arch", lambda: S(_seg_folder("seg-nan", _SEG_TINY, _nan_seg_weights), arch="progan"),
         core.ArgumentTypeError, ("'progan'", "generator architecture"), "leave arch out"),
    Case("load_segmenter:not-a-name", lambda: S(3.5),
         core.ArgumentTypeError, ("float", "3.5"), "a name or a path"),
]

if Path("/etc/passwd").is_file():
    CASES.append(Case("load_generator:etc-passwd", lambda: G("/etc/passwd"), core.CheckpointError,
                      ("/etc/passwd", "not a PyTorch or safetensors weights file"), "saved with torch.save"))

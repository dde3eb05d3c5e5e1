"""Published architectures, offline: ProGAN LSUN, StyleGAN2 (rosinality g_ema), BigGAN
(pytorch-pretrained-biggan), ADE20K SegFormer (transformers) — randomly initialised weights in
the exact published key layouts, loaded safely, generated / segmented and dissected end to end;
downloads only on request, verified; clear errors for broken input."""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import core
from core import models as published
from core.base.checkpoints import CheckpointError
from core.engine.intervention import Edit, generate
from core.models import DownloadError, MissingPackageError, MissingWeightsError

LSUN = ["bedroom", "churchoutdoor", "conferenceroom", "diningroom", "kitchen", "livingroom", "restaurant"]


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch):
    """Every test gets its own empty models dir and cache (never the real cache/)."""
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "models"
    monkeypatch.setenv("GANATOMY_MODELS", str(d))
    return d


@pytest.fixture(scope="module")
def ade_seg(tiny_segformer, tmp_path_factory):
    """The tiny ADE20K SegFormer below, saved in the hub layout and loaded by path: the
    segmenter the published generators are dissected against."""
    folder = tmp_path_factory.mktemp("ade") / "segformer"
    tiny_segformer.save_pretrained(folder)
    return core.load_segmenter(str(folder))


def _rand(shape, g):
    return torch.randn(*shape, generator=g)


# ============================================================================== registry

def test_registry_lists_published_models_and_where_to_put_them(models_dir):
    names = set(published.PUBLISHED)
    assert {f"progan/{d}" for d in LSUN} <= names
    assert {"stylegan2/church", "biggan/deep-256", "segformer/ade20k-b0"} <= names
    rows = {r["name"]: r for r in published.status()}
    assert not any(r["available"] for r in rows.values())
    church = rows["progan/churchoutdoor"]
    assert church["path"] == str(models_dir / "proggan_churchoutdoor-7e701dd5.pth")
    assert church["source"] == "https://gandissect.csail.mit.edu/models/proggan_churchoutdoor-7e701dd5.pth"
    with pytest.raises(MissingWeightsError) as e:
        core.load_generator("progan/churchoutdoor")
    msg = str(e.value)
    assert "proggan_churchoutdoor-7e701dd5.pth" in msg and str(models_dir) in msg and "download=True" in msg
    with pytest.raises(MissingWeightsError, match="segformer-b0-finetuned-ade-512-512.*config.json"):
        core.load_segmenter("segformer/ade20k-b0")
    with pytest.raises(ValueError, match="available: toyworld; published"):
        core.load_segmenter("ade20k-upernet")
    from core.models.segformer import ADE20K_LABELS
    assert len(ADE20K_LABELS) == 150 and ADE20K_LABELS[0] == "wall" and ADE20K_LABELS[12] == "person"
    assert ADE20K_LABELS[149] == "flag" and len(set(ADE20K_LABELS)) == 150


# ============================================================================== ProGAN

def _progan_published_256(g):
    """The 256x256 LSUN layout of shared/reference/progan_lsun.md, written out here."""
    ch = {1: 512, 2: 512, 3: 512, 4: 512, 5: 512, 6: 512, 7: 256, 8: 256, 9: 128, 10: 128, 11: 64, 12: 64,
          13: 32, 14: 32}
    sd = {}
    for i in range(1, 15):
        cin = 512 if i == 1 else (ch[i - 1] if i % 2 else ch[i])
        k = 4 if i == 1 else 3
        sd[f"layer{i}.conv.weight"] = _rand((ch[i], cin, k, k), g)
        sd[f"layer{i}.wscale.b"] = _rand((ch[i],), g)
    sd["output_256x256.conv.weight"] = _rand((3, 32, 1, 1), g)
    sd["output_256x256.wscale.b"] = _rand((3,), g)
    return sd


def test_progan_lsun_by_name_round_trips_bit_identically(models_dir):
    sd = _progan_published_256(torch.Generator().manual_seed(1))
    models_dir.mkdir(parents=True)
    torch.save(sd, models_dir / "churchoutdoor_lsun.pth")         # the older file name is accepted
    assert {r["name"]: r for r in published.status()}["progan/churchoutdoor"]["available"]
    G = core.load_generator("progan/churchoutdoor")
    assert isinstance(G, core.ProGAN) and G.resolution == 256 and G.z_dim == 512
    got = G.state_dict()
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_progan_by_name_generates_and_dissects(models_dir, ade_seg):
    torch.manual_seed(0)
    small = core.ProGAN(64, (32, 32, 16))                        # published naming, 16x16
    models_dir.mkdir(parents=True)
    torch.save(small.state_dict(), models_dir / "proggan_kitchen-67f1e16c.pth")
    G = core.load_generator("progan/kitchen")
    z = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(G(z), small.eval()(z))
    res = core.dissect(G, ade_seg, ["layer4"], 32, cache=False)
    assert res.iou("layer4").shape == (32, len(ade_seg.labels))


# ============================================================================== StyleGAN2

def _rosinality_g_ema(size, style_dim=512, n_mlp=8, channel_multiplier=2, channels=None, g=None):
    """A random state dict with the key names and shapes of rosinality's
    ``Generator(size, style_dim, n_mlp, channel_multiplier).state_dict()``, written out here
    from that repository's layout (not from our model)."""
    g = g or torch.Generator().manual_seed(0)
    if channels is None:
        channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
                    256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    log = int(math.log2(size))
    kernel = torch.tensor([1., 3., 3., 1.])
    kernel = torch.outer(kernel, kernel) / 64

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = _rand((1, cout, cin, 3, 3), g)
        sd[f"{prefix}.conv.modulation.weight"] = _rand((cin, style_dim), g)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * _rand((cin,), g)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = kernel * 4
        sd[f"{prefix}.noise.weight"] = 0.1 * _rand((1,), g)
        sd[f"{prefix}.activate.bias"] = 0.1 * _rand((cout,), g)

    def to_rgb(prefix, cin, up):
        if up:
            sd[f"{prefix}.upsample.kernel"] = kernel * 4
        sd[f"{prefix}.conv.weight"] = _rand((1, 3, cin, 1, 1), g)
        sd[f"{prefix}.conv.modulation.weight"] = _rand((cin, style_dim), g)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * _rand((cin,), g)
        sd[f"{prefix}.bias"] = 0.1 * _rand((1, 3, 1, 1), g)

    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = _rand((style_dim, style_dim), g) * 100      # lr_mul 0.01: weight / lr_mul
        sd[f"style.{i}.bias"] = _rand((style_dim,), g)
    sd["input.input"] = _rand((1, channels[4], 4, 4), g)
    styled("conv1", channels[4], channels[4], False)
    to_rgb("to_rgb1", channels[4], False)
    cin = channels[4]
    for j, i in enumerate(range(3, log + 1)):
        cout = channels[2 ** i]
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{j}", cout, True)
        cin = cout
    for i in range(2 * (log - 2) + 1):
        r = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = _rand((1, 1, r, r), g)
    return sd


def test_stylegan2_real_rosinality_layout_256_loads_key_for_key(tmp_path):
    sd = _rosinality_g_ema(256)                        # the real config-f layout: 512 x 4, then 512, 256, 128
    latent_avg = torch.randn(512)
    p = tmp_path / "stylegan2-church-config-f.pt"
    torch.save({"g_ema": sd, "latent_avg": latent_avg}, p)      # convert_weight.py's file layout
    G = core.load_generator(p)                                   # architecture detected from the keys
    assert type(G).__name__ == "StyleGAN2" and G.z_dim == 512 and G.resolution == 256
    assert G.n_latent == 14 and G.num_layers == 13
    got = G.state_dict()
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    assert torch.equal(G.mean_latent, latent_avg)
    assert G.layer_names == ["conv1"] + [f"convs.{i}" for i in range(12)]
    assert dict(G.named_modules())["convs.11"].activate.bias.shape == (128,)
    core.check_generator(G, probe=False)


def _tiny_sg2(size=8, seed=0):
    ch = {4: 6, 8: 4, 16: 4, 32: 4}
    return _rosinality_g_ema(size, style_dim=8, n_mlp=2, channels=ch, g=torch.Generator().manual_seed(seed))


def test_stylegan2_forward_matches_an_independent_computation(tmp_path):
    """Re-derive an 8x8 StyleGAN2 image from the raw rosinality weights, one sample at a time:
    mapping (pixel norm, lr-scaled linear + bias, lrelu * sqrt2), modulation / demodulation,
    transposed conv + [1,3,3,1] blur, noise, ToRGB and the up-sampled skip."""
    sd = _tiny_sg2()
    p = tmp_path / "tiny.pt"
    torch.save({"g_ema": sd}, p)
    G = core.load_generator(p, clamp_output=False)
    z = torch.randn(2, 8)

    def lr(x):
        return F.leaky_relu(x, 0.2) * 2 ** 0.5

    def lin(x, pre, lr_mul=1.0):
        w = sd[f"{pre}.weight"]
        return x @ (w * lr_mul / w.shape[1] ** 0.5).T + sd[f"{pre}.bias"] * lr_mul

    def fir_up(x, k):                                # x2 FIR up-sampling as a cropped transposed conv
        c, h = x.shape[1], x.shape[2]
        y = F.conv_transpose2d(x, k.expand(c, 1, 4, 4), stride=2, groups=c)      # 2h + 2
        return y[:, :, 1:2 * h + 1, 1:2 * h + 1]

    def mconv(x, w, pre, demod=True, up=False):
        weight = sd[f"{pre}.weight"][0]                # out, in, k, k
        s = lin(w, f"{pre}.modulation")
        k = weight.shape[-1]
        weight = weight / (weight.shape[1] * k * k) ** 0.5 * s.view(1, -1, 1, 1)
        if demod:
            weight = weight / torch.sqrt((weight ** 2).sum([1, 2, 3], keepdim=True) + 1e-8)
        if up:
            y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            c = y.shape[1]
            kern = sd[f"{pre}.blur.kernel"].expand(c, 1, 4, 4)
            return F.conv2d(F.pad(y, [1, 1, 1, 1]), kern, groups=c)
        return F.conv2d(x, weight, padding=k // 2)

    outs = []
    for n in range(2):
        x = z[n:n + 1]
        x = x / torch.sqrt((x ** 2).mean(1, keepdim=True) + 1e-8)
        for i in (1, 2):
            x = lr(lin(x, f"style.{i}", 0.01))
        w = x
        h = sd["input.input"]
        h = lr(mconv(h, w, "conv1.conv") + sd["conv1.noise.weight"] * sd["noises.noise_0"]
               + sd["conv1.activate.bias"].view(1, -1, 1, 1))
        rgb = mconv(h, w, "to_rgb1.conv", demod=False) + sd["to_rgb1.bias"]
        h = lr(mconv(h, w, "convs.0.conv", up=True) + sd["convs.0.noise.weight"] * sd["noises.noise_1"]
               + sd["convs.0.activate.bias"].view(1, -1, 1, 1))
        h = lr(mconv(h, w, "convs.1.conv") + sd["convs.1.noise.weight"] * sd["noises.noise_2"]
               + sd["convs.1.activate.bias"].view(1, -1, 1, 1))
        rgb = mconv(h, w, "to_rgbs.0.conv", demod=False) + sd["to_rgbs.0.bias"] + \
            fir_up(rgb, sd["to_rgbs.0.upsample.kernel"])
        outs.append(rgb)
    with torch.no_grad():
        torch.testing.assert_close(G(z), torch.cat(outs), rtol=1e-5, atol=1e-5)


def test_stylegan2_truncation_interpolates_w_toward_the_mean_exactly(tmp_path):
    p = tmp_path / "tiny.pt"
    torch.save(_tiny_sg2(16), p)                        # a bare g_ema state dict
    G = core.load_generator(p, arch="stylegan2")
    assert G.truncation == 1.0 and G.mean_latent.abs().sum() > 0   # mean of 4096 w from a fixed seed
    assert G.meta["mean_latent"] == "mean of 4096 w"
    sd = _tiny_sg2(16)                                  # the mapping network re-derived from the raw weights
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    x = x / torch.sqrt((x ** 2).mean(1, keepdim=True) + 1e-8)
    for i in (1, 2):
        w_, b_ = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = F.leaky_relu(x @ (w_ * 0.01 / 8 ** 0.5).T + b_ * 0.01, 0.2) * 2 ** 0.5
    torch.testing.assert_close(G.mean_latent, x.mean(0), rtol=1e-5, atol=1e-5)
    z = torch.randn(5, 8)
    with torch.no_grad():
        with core.base.hooks.Trace(G, capture=["style", "truncate"]) as tr:
            img1 = G(z)
        assert torch.equal(tr["truncate"], tr["style"])                        # psi = 1: w unchanged
        H = G.with_truncation(0.6)
        with core.base.hooks.Trace(H, capture=["style", "truncate"]) as tr6:
            img6 = H(z)
        w, m = tr6["style"], G.mean_latent
        assert torch.equal(tr6["truncate"], m + 0.6 * (w - m))
        assert torch.equal(w, tr["style"])
        assert not torch.equal(img6, img1)
        assert torch.equal(G(z, truncation=0.6), img6)        # per-call override == view
        assert torch.equal(G(z), img1) and G.truncation == 1.0  # the shared model is unchanged
        zero = G.with_truncation(0.0)(z)                       # psi = 0: every sample is the mean image
        torch.testing.assert_close(zero, zero[:1].expand_as(zero), rtol=0, atol=1e-6)
    assert H.conv1.conv.weight is G.conv1.conv.weight and H.cache_key != G.cache_key


def test_stylegan2_by_name_from_training_checkpoint_dissect_and_edit(models_dir, ade_seg):
    """A rosinality train.py checkpoint ({'g', 'd', 'g_ema', ..., 'args': Namespace}) under the
    registry name: load -> generate -> dissect 32 samples -> edit a synthesis layer."""
    sd = _tiny_sg2(32, seed=3)
    models_dir.mkdir(parents=True)
    torch.save({"g": sd, "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": sd, "g_optim": {}, "d_optim": {},
                "args": argparse.Namespace(size=32, channel_multiplier=2, latent=8, n_mlp=2)},
               models_dir / "stylegan2-church-config-f.pt")
    G = core.load_generator("stylegan2/church", truncation=0.8)
    assert G.truncation == 0.8 and G.resolution == 32
    res = core.dissect(G, ade_seg, ["convs.1", "convs.3"], 32, cache=False)
    assert res.iou("convs.1").shape == (4, len(ade_seg.labels)) and len(res.units("convs.3")) == 4
    z = torch.randn(2, 8)
    with torch.no_grad():
        before = G(z)
        edited = generate(G, z, [Edit("convs.1", [0, 1, 2, 3], "ablate")])
        assert not torch.equal(edited, before)
        assert torch.equal(G(z), before)                       # no mutation of the shared model


def test_stylegan2_mean_latent_source_and_cache_key_follow_what_was_loaded(tmp_path):
    """A latent_avg of the wrong size is not used (nor reported as used); an unclamped model,
    whose images segment differently, never shares cached results with the clamped one."""
    sd = _tiny_sg2()
    p = tmp_path / "odd.pt"
    torch.save({"g_ema": sd, "latent_avg": torch.full((5,), 3.0)}, p)       # style_dim is 8
    G = core.load_generator(p)
    assert G.meta["mean_latent"] == "mean of 4096 w"
    assert not torch.equal(G.mean_latent, torch.full((8,), 3.0))
    torch.save({"g_ema": sd, "latent_avg": torch.full((8,), 3.0)}, p)
    H = core.load_generator(p)
    assert H.meta["mean_latent"] == "latent_avg from file" and torch.equal(H.mean_latent, torch.full((8,), 3.0))
    U = core.load_generator(p, clamp_output=False)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert U(z).abs().max() > 1 >= H(z).abs().max()           # the two really generate differently
    assert U.cache_key != H.cache_key and H.cache_key == core.load_generator(p).cache_key


# ============================================================================== BigGAN

BIGGAN_TINY = dict(output_dim=32, z_dim=16, class_embed_dim=16, channel_width=4, num_classes=10,
                   layers=[[False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]],
                   attention_layer_position=4, eps=1e-4, n_stats=51)


@pytest.fixture(scope="module")
def biggan_pkg():
    import pytorch_pretrained_biggan  # requirements-dev.txt installs the optional packages
    return pytorch_pretrained_biggan


def _biggan_state(pkg, seed=0):
    cfg = pkg.BigGANConfig.from_dict(BIGGAN_TINY)
    m = pkg.BigGAN(cfg)                        # the package's module tree = the published key layout
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in m.state_dict().items():
        t = _rand(v.shape, g) if v.is_floating_point() else v
        sd[k] = t.abs() + 0.5 if "running_vars" in k else t
    return m, sd


def test_biggan_loads_and_matches_the_package_forward(tmp_path, biggan_pkg):
    m, sd = _biggan_state(biggan_pkg)
    assert {"embeddings.weight", "generator.gen_z.weight_orig", "generator.gen_z.weight_u",
            "generator.gen_z.weight_v", "generator.layers.4.snconv1x1_theta.weight_orig"} <= set(sd)
    p = tmp_path / "biggan-deep-32-pytorch_model.bin"
    torch.save(sd, p)
    from core.models.biggan import config_from_state_dict
    assert config_from_state_dict(sd) == BIGGAN_TINY           # no config.json: read from the shapes
    G = core.load_generator(p, class_index=3, truncation=0.4)
    assert type(G).__name__ == "BigGANGenerator" and G.z_dim == 16 and G.resolution == 32
    m.load_state_dict(sd)
    m.eval()
    z = torch.randn(4, 16)
    from core.models.biggan import _trunc_normal_from_normal
    zt = _trunc_normal_from_normal(z)
    assert zt.abs().max() <= 2
    one_hot = torch.zeros(4, 10)
    one_hot[:, 3] = 1
    with torch.no_grad():
        ref = m(zt * 0.4, one_hot, 0.4)
        out = G(z)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        other = G.with_class(7)
        assert not torch.equal(other(z), out) and torch.equal(G(z), out) and G.class_index == 3
    assert other.cache_key != G.cache_key
    # a config.json beside the weights wins over inference
    (tmp_path / "biggan-deep-32-config.json").write_text(json.dumps({**BIGGAN_TINY, "eps": 1e-4}))
    assert core.load_generator(p, class_index=3, truncation=0.4)(z).allclose(out)


def test_biggan_by_name_dissects(models_dir, ade_seg, biggan_pkg):
    _, sd = _biggan_state(biggan_pkg, seed=2)
    models_dir.mkdir(parents=True)
    torch.save(sd, models_dir / "biggan-deep-128-pytorch_model.bin")
    G = core.load_generator("biggan/deep-128", class_index=5)
    res = core.dissect(G, ade_seg, ["generator.layers.2"], 32, cache=False)
    assert res.iou("generator.layers.2").shape == (32, len(ade_seg.labels))


# ============================================================================== SegFormer

SEGF_TINY = dict(num_labels=150, hidden_sizes=[8, 16, 40, 64], depths=[1, 1, 1, 1], decoder_hidden_size=16,
                 num_attention_heads=[1, 2, 5, 8])


def _published_segformer_keys(cfg):
    """The hub checkpoints' (nvidia/segformer-*) key names for a config, written out here."""
    keys = []
    for s, (h, d) in enumerate(zip(cfg["hidden_sizes"], cfg["depths"])):
        keys += [f"segformer.encoder.patch_embeddings.{s}.{n}" for n in
                 ("proj.weight", "proj.bias", "layer_norm.weight", "layer_norm.bias")]
        for b in range(d):
            pre = f"segformer.encoder.block.{s}.{b}."
            parts = ["layer_norm_1", "attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "layer_norm_2", "mlp.dense1", "mlp.dwconv.dwconv", "mlp.dense2"]
            if s < 3:                                   # sr ratio 8, 4, 2, 1
                parts += ["attention.self.sr", "attention.self.layer_norm"]
            keys += [pre + p + t for p in parts for t in (".weight", ".bias")]
        keys += [f"segformer.encoder.layer_norm.{s}.weight", f"segformer.encoder.layer_norm.{s}.bias"]
    keys += [f"decode_head.linear_c.{i}.proj.{t}" for i in range(4) for t in ("weight", "bias")]
    keys += ["decode_head.linear_fuse.weight", "decode_head.classifier.weight", "decode_head.classifier.bias"]
    keys += [f"decode_head.batch_norm.{t}" for t in ("weight", "bias", "running_mean", "running_var",
                                                      "num_batches_tracked")]
    return keys


@pytest.fixture(scope="module")
def tiny_segformer():
    import transformers as tf
    torch.manual_seed(0)
    return tf.SegformerForSemanticSegmentation(tf.SegformerConfig(**SEGF_TINY)).eval()


def _hf_labels(model, images):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(pixel_values=((images + 1) / 2 - mean) / std).logits
    return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False).argmax(1) + 1


def test_segformer_published_folder_segments_and_dissects(models_dir, tiny_segformer):
    from safetensors.torch import load_file
    folder = models_dir / "segformer-b0-finetuned-ade-512-512"
    tiny_segformer.save_pretrained(folder)                      # the hub layout: config.json + model.safetensors
    assert set(load_file(str(folder / "model.safetensors"))) == set(_published_segformer_keys(SEGF_TINY))
    seg = core.load_segmenter("segformer/ade20k-b0")
    assert seg.labels[0] == "-" and seg.labels[1:] == published_labels() and len(seg.labels) == 151
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    core.check_segmenter(seg, images)
    assert torch.equal(seg.segment(images), _hf_labels(tiny_segformer, images))
    sc = seg.scores(images)
    assert sc.shape == (3, 151, 32, 32) and torch.equal(sc[:, 0], torch.zeros(3, 32, 32))
    torch.testing.assert_close(sc.sum(1), torch.ones(3, 32, 32))
    torch.manual_seed(0)
    G = core.ProGAN(32, (16, 16, 8, 8))                          # 32x32 images
    res = core.dissect(G, seg, ["layer4"], 32, cache=False)
    assert res.iou("layer4").shape == (16, 151)


def published_labels():
    from core.models.segformer import ADE20K_LABELS
    return ADE20K_LABELS


def test_segformer_from_a_state_dict_file_with_either_key_layout(tmp_path, tiny_segformer):
    from core.models.segformer import to_published
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    want = _hf_labels(tiny_segformer, images)
    installed = tiny_segformer.state_dict()                 # whatever naming this transformers uses
    for name, sd in [("installed.pt", installed), ("published.pt", to_published(installed))]:
        p = tmp_path / name
        torch.save(sd, p)
        seg = core.load_segmenter(str(p))                   # config read from the weight shapes
        assert torch.equal(seg.segment(images), want), name
    assert set(to_published(installed)) == set(_published_segformer_keys(SEGF_TINY))


# ============================================================================== bad input

def test_truncated_files_are_refused_clearly(tmp_path, tiny_segformer):
    p = tmp_path / "sg2.pt"
    torch.save({"g_ema": _tiny_sg2()}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"sg2.pt cannot be read, it looks truncated"):
        core.load_generator(p)
    folder = tmp_path / "segf"
    tiny_segformer.save_pretrained(folder)
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model.safetensors cannot be read, it looks truncated"):
        core.load_segmenter(str(folder))


def test_a_file_for_another_architecture_names_the_file_and_keys(tmp_path, tiny_segformer):
    p = tmp_path / "progan.pt"
    torch.save(core.ProGAN(32, (16, 8)).state_dict(), p)
    with pytest.raises(CheckpointError) as e:
        core.load_generator(p, arch="stylegan2")
    msg = str(e.value)
    assert "progan.pt is not a stylegan2 model" in msg
    assert "missing keys style.1.weight, input.input" in msg and "unexpected keys layer1.conv.weight" in msg
    assert "arch='progan'" in msg
    q = tmp_path / "sg2.pt"
    torch.save({"g_ema": _tiny_sg2()}, q)
    with pytest.raises(CheckpointError, match=r"sg2.pt is not a biggan model: missing keys embeddings.weight.*"
                                              r"unexpected keys style.1.weight.*arch='stylegan2'"):
        core.load_generator(q, arch="biggan")
    with pytest.raises(CheckpointError, match=r"progan.pt is not a SegFormer.*missing keys segformer.encoder"):
        core.load_segmenter(str(p))
    # right architecture, wrong shapes: strict load names the keys
    sd = _tiny_sg2()
    sd["convs.1.activate.bias"] = torch.zeros(7)
    torch.save(sd, q)
    with pytest.raises(CheckpointError, match=r"sg2.pt does not fit StyleGAN2: mis-shaped keys "
                                              r"convs.1.activate.bias \(file \(7,\), model \(4,\)\)"):
        core.load_generator(q)


def test_a_pickle_that_runs_code_is_refused_without_running_it(code_running_checkpoint, models_dir, tiny_segformer):
    p, marker = code_running_checkpoint({"g_ema": _tiny_sg2()}, "evil_sg2.pt")
    with pytest.raises(CheckpointError, match="refused"):
        core.load_generator(p)
    with pytest.raises(CheckpointError, match="refused"):
        core.load_generator(p, arch="biggan")
    with pytest.raises(CheckpointError, match="refused"):
        published.add_upload(p.read_bytes(), "evil_sg2.pt", "lab/evil")
    q, marker2 = code_running_checkpoint(tiny_segformer.state_dict(), "evil_segformer.bin")
    with pytest.raises(CheckpointError, match="refused"):
        core.load_segmenter(str(q))
    assert not marker.exists() and not marker2.exists()
    assert "lab/evil" not in published.user_models()
    assert not list((models_dir / "uploads").iterdir())          # nothing of the upload was kept


def test_missing_optional_packages_say_what_to_install(monkeypatch, tmp_path, models_dir, tiny_segformer):
    folder = tmp_path / "segf"
    tiny_segformer.save_pretrained(folder)
    monkeypatch.setitem(sys.modules, "transformers", None)          # import transformers now fails
    with pytest.raises(MissingPackageError, match=r"`pip install transformers`"):
        core.load_segmenter(str(folder))
    with pytest.raises(MissingPackageError, match=r"pip install transformers"):
        core.load_segmenter("segformer/ade20k-b0", download=True)   # said before any download
    monkeypatch.setitem(sys.modules, "pytorch_pretrained_biggan", None)
    p = tmp_path / "b.bin"
    torch.save({"embeddings.weight": torch.zeros(16, 10), "generator.gen_z.weight_orig": torch.zeros(1),
                "generator.bn.running_means": torch.zeros(51, 4)}, p)
    with pytest.raises(MissingPackageError, match=r"`pip install pytorch-pretrained-biggan`"):
        core.load_generator(p)
    with pytest.raises(MissingPackageError, match="requirements-optional.txt"):
        core.load_generator("biggan/deep-256")


# ============================================================================== downloads

@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_download_only_on_request_verified_and_atomic(monkeypatch, models_dir, http_server, tmp_path):
    root, base = http_server
    torch.manual_seed(0)
    src = core.ProGAN(32, (16, 8))
    torch.save(src.state_dict(), root / "g.pth")
    digest = published.sha256_file(root / "g.pth")
    spec = published.Spec("progan/test", "generator", "progan",
                          (published.Source("proggan_test.pth", base + "g.pth", digest[:8]),))
    monkeypatch.setitem(published.PUBLISHED, "progan/test", spec)
    with pytest.raises(MissingWeightsError, match="put proggan_test.pth in"):
        core.load_generator("progan/test")                      # never downloads unasked
    assert not models_dir.exists() or not list(models_dir.iterdir())
    # the catalog knows only an 8-digit prefix: refused until the source is accepted, before any byte
    with pytest.raises(DownloadError, match=r"only the first 8 hex digits.*trust=True"):
        core.load_generator("progan/test", download=True)
    assert not (models_dir / "proggan_test.pth").exists()
    with pytest.raises(core.InputError, match="full 64-hex-digit"):
        published.fetch("progan/test", download=True, sha256=digest[:12])
    published.fetch("progan/test", download=True, trust=True)
    assert published.pins() == {base + "g.pth": digest}          # pinned on first use
    G = core.load_generator("progan/test")
    assert (models_dir / "proggan_test.pth").read_bytes() == (root / "g.pth").read_bytes()
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in src.state_dict().items())
    assert (models_dir / "proggan_test.pth.sha256").read_text().split()[0] == digest
    # a corrupted download is discarded: wrong checksum
    bad = published.Spec("progan/bad", "generator", "progan",
                         (published.Source("proggan_bad.pth", base + "g.pth", "0" * 64),))
    monkeypatch.setitem(published.PUBLISHED, "progan/bad", bad)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        published.fetch("progan/bad", download=True)
    assert not (models_dir / "proggan_bad.pth").exists()
    assert not [f for f in models_dir.iterdir() if ".part" in f.name]
    # the pinned digest holds for every later download of that URL: a changed file is refused
    (models_dir / "proggan_test.pth").unlink()
    good = (root / "g.pth").read_bytes()
    (root / "g.pth").write_bytes(good + b"\0")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        published.fetch("progan/test", download=True, trust=True)
    (root / "g.pth").write_bytes(good)
    # the full digest given by the caller: verified, recorded beside the file, nothing pinned
    dest = published.download_url(base + "g.pth", tmp_path / "dl" / "x.pth", digest)
    assert (tmp_path / "dl" / "x.pth.sha256").read_text().split()[0] == digest
    # transport: https only, plain http only from this machine
    with pytest.raises(DownloadError, match="only https"):
        published.download_url("http://example.org/g.pth", tmp_path / "dl" / "z.pth", digest)
    assert published.check_url("https://example.org/g.pth")
    # offline / unreachable: a clear message saying where to put the file
    with pytest.raises(DownloadError, match=r"could not download .*put it at .*y.pth"):
        published.download_url("http://127.0.0.1:9/none.pth", tmp_path / "dl" / "y.pth", digest, timeout=5)
    assert dest.exists()


def test_hub_download_verifies_lfs_checksums(monkeypatch, models_dir, tmp_path, tiny_segformer):
    """The SegFormer hub path, with a stand-in for huggingface_hub serving local files."""
    src = tmp_path / "hub"
    tiny_segformer.save_pretrained(src)
    sha = {f.name: published.sha256_file(f) for f in src.iterdir()}

    class Sib:
        def __init__(self, name, digest):
            self.rfilename, self.lfs = name, ({"sha256": digest} if name.endswith(".safetensors") else None)

    class Api:
        def model_info(self, repo, files_metadata=False):
            assert repo == "nvidia/segformer-b0-finetuned-ade-512-512" and files_metadata
            return type("Info", (), {"siblings": [Sib(n, d) for n, d in sha.items()]})()

    calls = []

    def hf_hub_download(repo, fname, cache_dir=None):
        calls.append(fname)
        return str(src / fname)

    fake = type(sys)("huggingface_hub")
    fake.HfApi, fake.hf_hub_download = Api, hf_hub_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(MissingWeightsError):
        core.load_segmenter("segformer/ade20k-b0")
    assert calls == []
    seg = core.load_segmenter("segformer/ade20k-b0", download=True)
    assert sorted(calls) == ["config.json", "model.safetensors"] and len(seg.labels) == 151
    # a tampered weights file on the "hub" is refused and nothing is kept
    import shutil
    shutil.rmtree(models_dir / "segformer-b0-finetuned-ade-512-512")
    sha["model.safetensors"] = "f" * 64
    with pytest.raises(DownloadError, match="checksum mismatch"):
        core.load_segmenter("segformer/ade20k-b0", download=True)
    assert not (models_dir / "segformer-b0-finetuned-ade-512-512").exists()


# ============================================================================== user models

def test_register_by_path_and_upload(models_dir, tmp_path, tiny_segformer):
    torch.manual_seed(0)
    p = tmp_path / "mine.pt"
    torch.save({"g_ema": _tiny_sg2(16)}, p)
    entry = published.register("lab/mine", p, options={"truncation": 0.7})
    assert entry["arch"] == "stylegan2" and entry["kind"] == "generator"
    G = core.load_generator("lab/mine")
    assert G.truncation == 0.7 and G.source == "lab/mine"
    rows = {r["name"]: r for r in published.status()}
    assert rows["lab/mine"]["available"] and rows["lab/mine"]["origin"] == "user"
    assert published.available_generators() == ["lab/mine"]
    with pytest.raises(ValueError, match="unknown arch 'stylegan'; known: .*stylegan2"):
        published.register("lab/typo", p, check=False, arch="stylegan")
    assert "lab/typo" not in {r["name"] for r in published.status()}
    folder = tmp_path / "segf"
    tiny_segformer.save_pretrained(folder)
    published.register("lab/seg", folder)
    assert "lab/seg" in published.available_segmenters()
    assert len(core.load_segmenter("lab/seg").labels) == 151
    with pytest.raises(ValueError, match="built-in model name"):
        published.register("progan/kitchen", p)
    entry = published.add_upload(p.read_bytes(), "mine.pt", "lab/uploaded")
    assert Path(entry["path"]).parent == models_dir / "uploads" and entry["arch"] == "stylegan2"
    assert Path(entry["path"]).name.startswith("lab_uploaded-") and Path(entry["path"]).suffix == ".pt"
    assert Path(entry["path"]).read_bytes() == p.read_bytes()
    with pytest.raises(CheckpointError, match="looks truncated"):
        published.add_upload(p.read_bytes()[:500], "broken.pt", "lab/broken")
    assert "lab/broken" not in published.user_models()
    published.unregister("lab/mine", confirm="lab/mine")
    assert "lab/mine" not in published.user_models()


def test_uploads_under_names_that_sanitise_alike_keep_their_own_weights(models_dir, tmp_path, tiny_segformer):
    """'lab/x' and 'lab_x' both sanitise to 'lab_x': each upload must stay its own file, and a
    SegFormer state dict in transformers-5 key names is recognised without an arch."""
    files = {}
    for name, seed in (("lab/x", 1), ("lab_x", 2)):
        torch.manual_seed(seed)
        src = core.ProGAN(32, (16, 8))
        files[name] = src.state_dict()
        q = tmp_path / f"g{seed}.pt"
        torch.save(files[name], q)
        published.add_upload(q.read_bytes(), "g.pt", name)
    paths = {n: published.user_models()[n]["path"] for n in files}
    assert paths["lab/x"] != paths["lab_x"]
    for name, sd in files.items():
        got = core.load_generator(name).state_dict()
        assert all(torch.equal(got[k], v) for k, v in sd.items()), name
    assert not torch.equal(files["lab/x"]["layer1.conv.weight"], files["lab_x"]["layer1.conv.weight"])
    p = tmp_path / "segf_v5.pt"
    sd = tiny_segformer.state_dict()
    torch.save(sd, p)
    assert published.detect_arch(sd) == "segformer"
    entry = published.register("lab/segf", p)                      # no arch given: detected
    assert entry["arch"] == "segformer" and entry["kind"] == "segmenter"
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(core.load_segmenter("lab/segf").segment(images), _hf_labels(tiny_segformer, images))


def test_cli_lists_models_and_says_where_a_missing_one_goes(capsys, models_dir, tmp_path):
    from core.cli import main
    main(["models"])
    out = capsys.readouterr().out
    assert "toyworld/town" in out and str(models_dir) in out
    assert any(line.startswith("progan/churchoutdoor") and "missing" in line for line in out.splitlines())
    with pytest.raises(SystemExit) as e:
        main(["dissect", "--model", "progan/churchoutdoor", "--samples", "8", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "proggan_churchoutdoor-7e701dd5.pth" in err and "python -m core fetch progan/churchoutdoor" in err

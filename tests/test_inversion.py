"""Layer inversion (core.engine.inversion, core.studies.inversion) on tiny generators: the
optimisation recovers a planted featuremap, the encoder learns and resumes exactly, bad input is
refused before any work, the shared generator is never changed, recall counts agree with brute force."""
from __future__ import annotations

import pytest
import torch

import core
from core.base.cache import weights_hash
from core.base.errors import GanatomyError, InputError
from core.base.hooks import run_until
from core.engine.inversion import LayerEncoder, invert, layer_error, layer_loss, render_from, train_inverter
from core.studies.inversion import class_recall


def _tiny(seed=0):
    torch.manual_seed(seed)
    return core.ProGAN(8, (8, 8, 8, 4)).eval().requires_grad_(False)      # 32 px, layer4 8 x 8 x 8


def _encoder(seed=1, channels=8):
    torch.manual_seed(seed)
    return LayerEncoder(32, channels, 8, widths=[4, 4, 8]).eval().requires_grad_(False)


class Counter:
    def __init__(self, G):
        self.n = 0
        G.layer1.register_forward_hook(self)

    def __call__(self, *a):
        self.n += 1


def test_render_from_is_the_generator():
    G = _tiny()
    z = torch.randn(3, 8)
    true = run_until(G, z, ["layer4"])["layer4"]
    assert torch.allclose(render_from(G, "layer4", true), G(z), atol=1e-6)


def test_invert_recovers_a_planted_featuremap():
    # a tail wider than the layer (as the zoo's: 256 x 8 x 8 -> 3 x 64 x 64), no clamp: the featuremap is identifiable
    torch.manual_seed(0)
    G = core.ProGAN(8, (8, 8, 16, 16), pixelnorm=False, clamp_output=False).eval().requires_grad_(False)
    before = weights_hash(G)
    z = torch.randn(4, 8)
    true = run_until(G, z, ["layer4"])["layer4"]
    images = G(z)
    start = true + 0.7 * true.std() * torch.randn_like(true)          # far off: relative error about 0.5
    res = invert(G, "layer4", _encoder(), images, steps=60, lr=0.02, anchor_weight=0.0, init=start)
    e0, e1 = layer_error(res.initial, true), res.layer_error(true)
    assert torch.equal(res.initial, start) and e0.min() > 0.2
    assert (e1 < e0 / 50).all(), (e0, e1)              # the optimisation finds the planted featuremap
    assert res.l1(images).max() < 0.1 * (res.initial_reconstruction - images).abs().flatten(1).mean(1).min()
    assert res.losses[-1] < res.losses[0] / 10
    assert weights_hash(G) == before and all(p.grad is None for p in G.parameters())


def test_encoder_trains_and_resumes_exactly():
    G = _tiny()
    before = weights_hash(G)
    enc, state = train_inverter(G, "layer4", steps=60, batch=8, lr=1e-2, seed=3, image_batch=2, widths=[8, 8, 16])
    layer = state["log"]["layer"]
    assert sum(layer[-5:]) / 5 < 0.7 * sum(layer[:5]) / 5, layer
    z = torch.randn(16, 8)                             # fresh samples: the trained encoder beats an untrained one
    true, images = run_until(G, z, ["layer4"])["layer4"], G(z)
    torch.manual_seed(5)
    untrained = LayerEncoder(32, 8, 8, widths=[8, 8, 16])
    assert layer_loss(enc(images), true).mean() < 0.7 * layer_loss(untrained(images), true).mean()
    saved = []
    _, half = train_inverter(G, "layer4", steps=4, batch=8, lr=3e-3, seed=3, image_batch=2, widths=[4, 4, 8],
                             checkpoint=saved.append, checkpoint_every=2)
    assert [s["step"] for s in saved] == [2, 4]
    torch.manual_seed(123)                             # the resumed run does not depend on the global RNG
    a, _ = train_inverter(G, "layer4", steps=6, batch=8, lr=3e-3, seed=3, image_batch=2, resume_state=saved[0])
    torch.manual_seed(0)
    b, _ = train_inverter(G, "layer4", steps=6, batch=8, lr=3e-3, seed=3, image_batch=2, widths=[4, 4, 8])
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), k
    assert weights_hash(G) == before and all(p.grad is None for p in G.parameters())


@pytest.mark.parametrize("images,word", [
    (torch.zeros(2, 3, 64, 64), "32 x 32"),                       # wrong size
    (torch.zeros(2, 1, 32, 32), "RGB"),                           # grey
    (torch.zeros(2, 4, 32, 32), "RGB"),                           # RGBA
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float"),      # 8-bit
    (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    (torch.zeros(3, 32, 32), "N x 3"),                            # no batch axis
])
def test_bad_images_refused_before_any_work(images, word):
    G = _tiny()
    calls = Counter(G)
    with pytest.raises(InputError, match="images") as e:
        invert(G, "layer4", _encoder(), images, steps=5)
    assert word in str(e.value) and e.value.fix and calls.n == 0


def test_missing_layer_and_bad_arguments_refused_before_any_work():
    G = _tiny()
    calls = Counter(G)
    x = torch.zeros(2, 3, 32, 32)
    with pytest.raises(InputError, match="layer.*layer99"):
        invert(G, "layer99", _encoder(), x)
    with pytest.raises(InputError, match="layer"):
        train_inverter(G, "nope", steps=2)
    with pytest.raises(GanatomyError, match="steps"):
        invert(G, "layer4", _encoder(), x, steps=-1)
    with pytest.raises(GanatomyError, match="lr"):
        train_inverter(G, "layer4", steps=2, lr=0)
    with pytest.raises(GanatomyError, match="encoder"):
        invert(G, "layer4", "not an encoder", x)
    assert calls.n == 0
    with pytest.raises(InputError, match="encoder.*16 x 8 x 8"):       # a mismatched encoder: one shape probe only
        invert(G, "layer4", LayerEncoder(32, 16, 8, widths=[4, 4, 8]), x)
    assert calls.n <= 1


def test_units_off_hide_units_from_the_rendering():
    G = _tiny()
    z = torch.randn(2, 8)
    f = run_until(G, z, ["layer4"])["layer4"]
    cut = f.clone()
    cut[:, [1, 5]] = 0
    assert torch.allclose(render_from(G, "layer4", f, units_off=[1, 5]), render_from(G, "layer4", cut))
    assert not torch.allclose(render_from(G, "layer4", f), render_from(G, "layer4", cut))


def test_class_recall_agrees_with_brute_force():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (3, 7, 9), generator=g)
    pred = torch.where(torch.rand(3, 7, 9, generator=g) < 0.6, labels, torch.randint(0, 5, (3, 7, 9), generator=g))
    true, hit = class_recall(labels, pred, 6)
    for i in range(3):
        for c in range(6):
            assert true[i, c] == int((labels[i] == c).sum())
            assert hit[i, c] == int(((labels[i] == c) & (pred[i] == c)).sum())


def test_the_ceiling_mean_recall_counts_only_the_scene_classes():
    """A random tiny generator's samples are read by the toyworld segmenter as all sorts of classes; on
    the generated side (the ceiling) those "true" labels outside room's classes are stray and are left
    out of the per-class recall, its mean and the per-image means, and reported apart."""
    from core import toyworld
    from core.studies.inversion import reconstruction_recall
    G, seg = _tiny(), core.load_segmenter("toyworld")
    res = reconstruction_recall(G, seg, _encoder(), "room", n=3, steps=2, batch_size=3)
    room = set(toyworld.SCENE_CONCEPTS["room"])
    for side in (res.real, res.generated):
        t, h = side.true.sum(0), side.hit.sum(0)
        own = {c: h[j] / t[j] for j, c in enumerate(seg.labels) if t[j] > 0 and c in room}
        assert side.per_class() == pytest.approx(own) and side.mean_recall() == pytest.approx(sum(own.values())
                                                                                             / len(own))
        keep = torch.tensor([c in room for c in seg.labels])
        for i in range(3):                                # per image: the mean over the room classes in it
            r = [side.hit[i, j] / side.true[i, j] for j in range(len(seg.labels)) if side.true[i, j] and keep[j]]
            assert side.per_image()[i] == pytest.approx(sum(r) / len(r))
    stray = res.generated.stray()
    assert stray and not set(stray) & room                # the planted case: the segmenter's stray labels exist
    t = res.generated.true.sum(0)
    assert stray == {c: int(t[j]) for j, c in enumerate(seg.labels) if t[j] and c not in room}
    everything = [res.generated.hit.sum(0)[j] / t[j] for j in range(len(seg.labels)) if t[j]]
    assert res.generated.mean_recall() != pytest.approx(sum(everything) / len(everything))   # it made a difference
    assert res.real.stray() == {}                         # exact labels: only room's classes


def test_the_gallery_stores_what_each_reconstruction_drops(tmp_path, monkeypatch):
    """The gallery of a tiny generator on town scenes: its dropped mask and per-class counts agree with
    a brute-force recount from the exact labels and a fresh segmentation of the stored reconstruction's
    own run; it is stored small and read back with cached_only, computing nothing."""
    import numpy as np

    from core import toyworld
    from core.engine.inversion import invert
    from core.studies.inversion import mark_dropped, perceptual_maps, reconstruction_gallery
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    G, seg = _tiny(), core.load_segmenter("toyworld")
    feats = core.load_features()
    assert reconstruction_gallery(G, seg, _encoder(), "town", n=3, steps=2, features=feats, cached_only=True) is None
    g = reconstruction_gallery(G, seg, _encoder(), "town", n=3, steps=2, features=feats)
    images, labels = toyworld.render("town", 3, seed=4_000_000, size=32)
    truth = np.array([[[seg.labels.index(toyworld.LABELS[v]) for v in row] for row in im] for im in labels.numpy()])
    np.testing.assert_array_equal(g.truth, truth)
    np.testing.assert_array_equal(g.real, ((images.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy())
    inv = invert(G, "layer4", _encoder(), images, 2, 0.01, perceptual_maps(feats))   # the same run, independently
    np.testing.assert_array_equal(g.segmentation, seg.segment(inv.reconstruction).numpy())
    np.testing.assert_allclose(g.l1, inv.l1(images).numpy(), rtol=1e-5)
    drop = g.dropped()
    for i in range(3):
        for y in range(32):
            for x in range(32):
                assert drop[i, y, x] == (truth[i, y, x] != g.segmentation[i, y, x])
    assert 0 < drop.mean() < 1                            # a random generator drops much, not everything
    pr = g.per_image_recall()
    for i in range(3):
        for j, c in enumerate(seg.labels):
            n_true = int((truth[i] == j).sum())
            kept = int(((truth[i] == j) & (g.segmentation[i] == j)).sum())
            assert (np.isnan(pr[i, j]) if n_true == 0 else pr[i, j] == pytest.approx(kept / n_true)), (i, c)
            assert int(g.dropped(c)[i].sum()) == n_true - kept
        lost = g.losses(i, k=20, min_pixels=1)
        assert [r["recall"] for r in lost] == sorted(r["recall"] for r in lost)
        for r in lost:
            assert r["pixels"] - r["dropped"] == int(((truth[i] == seg.labels.index(r["label"]))
                                                      & (g.segmentation[i] == seg.labels.index(r["label"]))).sum())
    rec = g.recall()
    assert set(rec.per_class()) <= set(toyworld.SCENE_CONCEPTS["town"])
    panel = g.panel(0, scale=2)
    assert panel.shape == (64, 2 * 64 + 4, 3) and panel.dtype == np.uint8
    m = mark_dropped(g.real[0], drop[0], scale=2)
    edge = np.all(m == [255, 0, 200], -1)
    assert edge.any() and not edge[~np.repeat(np.repeat(drop[0], 2, 0), 2, 1)].any()   # outlines only on dropped
    assert (g.real.dtype, g.truth.dtype, g.segmentation.dtype) == (np.uint8, np.int64, np.int64)
    again = reconstruction_gallery(G, seg, _encoder(), "town", n=3, steps=2, features=feats, cached_only=True)
    assert again is not None and (again.truth.dtype, again.segmentation.dtype) == (np.uint8, np.uint8)
    np.testing.assert_array_equal(again.dropped(), drop)
    np.testing.assert_array_equal(again.reconstruction, g.reconstruction)      # lossless PNGs
    np.testing.assert_array_equal(again.real, g.real)                          # rendered again, hash checked
    assert again.summary()["mean_recall"] == pytest.approx(g.summary()["mean_recall"])
    stored = sum(f.stat().st_size for f in (tmp_path / "cache" / "inversion.gallery").rglob("*") if f.is_file())
    assert stored < 40_000
    with pytest.raises(InputError, match="scene"):
        reconstruction_gallery(G, seg, _encoder(), "mars", n=3, steps=2)
    with pytest.raises(InputError, match="encoder"):
        reconstruction_gallery(G, seg, "not an encoder", "town", n=3, steps=2)

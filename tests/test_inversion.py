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

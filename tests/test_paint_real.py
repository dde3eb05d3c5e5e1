"""Painting a real scene (core.engine.adapt, core.studies.paint_real): a held-out toyworld town scene
inverted into layer4 of the zoo's town GAN and the generator adapted to it (few steps); a door painted on
a wall's ground line (toyworld's exact layers say where) adds door pixels to the segmentation of the
blended result; pixels outside the blend mask are the original's bit for bit; the shared generator's
weights never change; bad inputs are refused before any work; the cache gives the same scene back."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import core
from core import toyworld
from core.base.cache import weights_hash
from core.base.errors import ArgumentTypeError, CheckpointError, InputError
from core.engine.adapt import adapt, blend_change, cells_region, later_parameters
from core.engine.intervention import Edit, insertion_constants
from core.studies import paint_real as pr
from core.studies.inversion import INVERSION_REAL_SEED
from core.studies.paint import paint_edits
from core.studies.units import iou_units

NAME, SCENE = "toyworld/town", 1            # held-out town scene 1: a wall with a free ground line
FAST = {"steps": 30, "adapt_steps": 20}
DOOR = toyworld.LABELS.index("door")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GANATOMY_CACHE", str(tmp_path_factory.mktemp("cache")))
    G = core.load_generator(NAME)
    seg, feats = core.load_segmenter("toyworld"), core.load_features("toyworld")
    before = weights_hash(G)
    image, labels, layers = toyworld.render("town", 1, seed=INVERSION_REAL_SEED, start=SCENE, size=64,
                                            return_layers=True)
    scene = pr.invert_real(G, image, generator_name=NAME, features=feats, **FAST)
    yield {"G": G, "seg": seg, "feats": feats, "before": before, "image": image, "labels": labels[0],
           "layers": {k: v[0] for k, v in layers.items()}, "scene": scene}
    mp.undo()


def _door_edit(w):
    """A door stroke at 3 x k (the page's default) with the door's top 20 units by IoU, over the wall's
    ground-line cell and the one below it (a stroke across the ground line)."""
    G, seg = w["G"], w["seg"]
    res = core.dissect(G, seg, ["layer4"], 100)
    units = iou_units(res, "layer4", "door", 20)
    k = insertion_constants(G, seg, "layer4", "door", n_samples=50).numpy()
    r, c = pr.ground_line_cells(w["labels"], w["layers"], (8, 8))[0]
    cells = np.zeros((8, 8), bool)
    cells[r:r + 2, c] = True
    return paint_edits("layer4", units, "add", k, cells, scale=3.0), cells


def test_adaptation_fits_the_photo_and_leaves_the_shared_generator(world):
    G, sc = world["G"], world["scene"]
    assert weights_hash(G) == world["before"] and all(p.grad is None and not p.requires_grad for p in G.parameters())
    assert sc.l1_adapted < 0.95 * sc.l1_inverted < sc.l1_encoder, (sc.l1_encoder, sc.l1_inverted, sc.l1_adapted)
    # only the layers from adapt_from on moved; the adapted model renders the stored reconstruction
    assert set(sc.deltas) == set(later_parameters(G, "layer4", "layer9")) and \
        all(float(d.abs().max()) > 0 for d in sc.deltas.values())
    shared, mine = dict(G.named_parameters()), dict(sc.model.named_parameters())
    assert all(torch.equal(shared[n], mine[n]) for n in shared if n not in sc.deltas)
    recon = core.engine.inversion.render_from(sc.model, "layer4", sc.featuremap)
    assert torch.allclose(recon, sc.reconstruction, atol=1e-6)
    assert float((recon - world["image"]).abs().mean()) == pytest.approx(sc.l1_adapted, abs=1e-6)


def test_a_door_on_a_wall_and_nothing_else_changes(world):
    sc, seg = world["scene"], world["seg"]
    edits, cells = _door_edit(world)
    out = pr.paint_real(sc, edits)
    image = world["image"]
    # the region is the painted cells grown by one cell, computed here by hand
    grown = np.zeros((8, 8), bool)
    for r, c in zip(*np.nonzero(cells)):
        grown[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = True
    region = np.kron(grown, np.ones((8, 8), bool))
    assert np.array_equal(out.region.numpy(), region)
    # outside the blend mask: the original, bit for bit; the mask lies inside the region
    off = (out.mask[0, 0] == 0)
    assert torch.equal(out.result[0][:, off], image[0][:, off])
    assert bool(off[~out.region].all()) and float(out.mask.max()) == 1.0
    mean_out, max_out = pr.outside_change(image, out.result, out.region)
    assert mean_out == 0.0 and max_out == 0.0
    # outside the painted cells themselves (the ring the change may spill into): small on average
    painted = torch.from_numpy(np.kron(cells, np.ones((8, 8), bool)))
    ring_mean, _ = pr.outside_change(image, out.result, painted)
    assert ring_mean < 0.02, ring_mean                 # of a pixel range of 2; the door change itself is ~0.5
    # inside the mask: the change is the adapted generator's edit minus its reconstruction
    on = out.mask[0, 0] == 1
    want = (image + (out.edited - sc.reconstruction)).clamp(-1, 1)
    assert torch.allclose(out.result[0][:, on], want[0][:, on], atol=1e-6)
    # the door: the segmenter finds more door pixels in the painted region than in the photo
    with torch.no_grad():
        before = int((seg.segment(image)[0][out.region] == DOOR).sum())
        after = int((seg.segment(out.result)[0][out.region] == DOOR).sum())
    assert after >= before + 5, (before, after)       # 10 -> 20 here (a door already stands nearby)
    # no paint: the photo back unchanged
    none = pr.paint_real(sc, paint_edits("layer4", [1], "remove", None, np.zeros((8, 8), bool)))
    assert torch.equal(none.result, image) and float(none.mask.sum()) == 0


def test_blend_change_on_a_planted_change():
    torch.manual_seed(0)
    original = torch.rand(1, 3, 32, 32) * 2 - 1
    recon = (original + 0.05 * torch.randn_like(original)).clamp(-1, 1)
    edited = recon.clone()
    edited[:, :, 10:14, 20:24] += 0.5                  # the planted edit
    edited[:, :, 0:2, 0:2] -= 0.5                      # a change outside the region: never blended
    region = cells_region(torch.tensor([[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]), 32, grow=0)
    result, mask = blend_change(original, recon, edited, region, threshold=0.1, dilate=1, soften=0)
    want = torch.zeros(32, 32, dtype=torch.bool)
    want[9:15, 19:25] = True                           # the blob dilated by one pixel, within cell (1, 2)
    want &= region
    assert torch.equal(mask[0, 0] > 0, want)
    assert torch.equal(result[0][:, ~want], original[0][:, ~want])
    assert torch.allclose(result[0][:, want], (original + edited - recon).clamp(-1, 1)[0][:, want])


def test_bad_inputs_are_refused_before_any_work(world, monkeypatch):
    G, image = world["G"], world["image"]
    calls = []
    monkeypatch.setattr(pr, "invert", lambda *a, **k: calls.append("invert"))
    monkeypatch.setattr(pr, "adapt", lambda *a, **k: calls.append("adapt"))
    bad = [
        (torch.nn.functional.interpolate(image, size=32), InputError, "64 x 64"),
        (image[:, :1], InputError, "RGB"),
        (((image + 1) * 127.5).to(torch.uint8), InputError, "float"),
        (image * 2, InputError, "[-1, 1]"),
        (image.clone().index_fill_(2, torch.tensor([3]), float("nan")), InputError, "NaN"),
        (image[0].permute(1, 2, 0).numpy(), ArgumentTypeError, "numpy"),
        (torch.cat([image, image]), InputError, "one image"),
    ]
    for img, err, words in bad:
        with pytest.raises(err, match="image") as e:
            pr.invert_real(G, img, generator_name=NAME, cache=False)
        assert words in str(e.value) and e.value.fix
    with pytest.raises(InputError, match="layer") as e:
        pr.invert_real(G, image, generator_name=NAME, layer="layer99", cache=False)
    assert e.value.fix
    with pytest.raises(CheckpointError, match="no inverter") as e:
        pr.invert_real(G, image, generator_name="toyworld/nowhere", cache=False)
    assert "train_inverter" in e.value.fix
    with pytest.raises(InputError, match="start"):
        pr.invert_real(G, image, generator_name=NAME, adapt_from="layer2", cache=False)
    with pytest.raises(ArgumentTypeError, match="generator_name"):
        pr.invert_real(G, image, cache=False)
    assert calls == []
    with pytest.raises(InputError, match="featuremap"):
        adapt(G, "layer4", torch.zeros(1, 3, 8, 8), image)
    with pytest.raises(InputError, match="layer5"):
        pr.paint_real(world["scene"], [Edit("layer5", [0], "ablate")])


def test_the_cache_gives_the_scene_back(world, monkeypatch):
    monkeypatch.setattr(pr, "invert", lambda *a, **k: pytest.fail("inverted again"))
    again = pr.invert_real(world["G"], world["image"], generator_name=NAME, features=world["feats"], **FAST)
    sc = world["scene"]
    assert torch.equal(again.featuremap, sc.featuremap) and torch.equal(again.reconstruction, sc.reconstruction)
    assert again.l1_adapted == sc.l1_adapted and set(again.deltas) == set(sc.deltas)
    assert torch.allclose(core.engine.inversion.render_from(again.model, "layer4", again.featuremap),
                          sc.reconstruction, atol=1e-6)


def test_photo_image_converts_and_says_so():
    a = np.zeros((80, 100, 4), np.uint8)
    a[..., 0], a[..., 3] = 255, 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    x, note = pr.photo_image(buf.getvalue(), 64)
    assert x.shape == (1, 3, 64, 64) and "RGBA" in note and "100 x 80" in note
    assert torch.allclose(x[0, 0], torch.ones(64, 64)) and torch.allclose(x[0, 1:], -torch.ones(2, 64, 64))
    y, note = pr.photo_image(np.full((64, 64, 3), 255, np.uint8))
    assert note is None and torch.equal(y, torch.ones(1, 3, 64, 64))
    with pytest.raises(InputError, match="PNG or JPEG"):
        pr.photo_image(b"not an image")


def test_hostile_uploads_are_refused_from_their_header(monkeypatch):
    """A decompression bomb is refused from its header, never decoded (PIL's own decoder is made to fail
    if it is reached); a 16-bit or float image, which has no RGB reading, is refused by its mode."""
    def png(im):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()
    bomb = png(Image.new("RGB", (5000, 5000)))             # 25 M pixels: a few kB of zeros on disk
    monkeypatch.setattr(Image.Image, "load", lambda self: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(InputError, match="5000 x 5000 pixels") as e:
        pr.photo_image(bomb)
    assert e.value.fix and len(str(e.value)) < 300
    monkeypatch.undo()
    with pytest.raises(InputError, match="16-bit or float"):
        pr.photo_image(png(Image.new("I;16", (64, 64))))
    x, note = pr.photo_image(png(Image.new("L", (64, 64), 255)))
    assert "from L to RGB" in note and torch.equal(x, torch.ones(1, 3, 64, 64))


# ----------------------------------------------------------------------------- the Paint page in real-scene mode

def _page_setup(tmp_path, monkeypatch, models=("toyworld/town",)):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_DASHBOARD_SAMPLES", "50")
    for k, v in FAST.items():
        monkeypatch.setitem(pr.REAL_DEFAULTS, k, v)            # the page's settings, made small
    seg = core.load_segmenter("toyworld")
    for m in models:
        core.dissect(core.load_generator(m), seg, ["layer4"], 50)
    app = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")
    at = AppTest.from_file(app, default_timeout=300).switch_page("views/paint.py").run()
    assert not at.exception, at.exception
    return at


def _stroke(rows, cols, size=320):
    """A canvas value as the drawable canvas sends it: paint over layer4 cells rows x cols of the canvas."""
    import base64
    a = np.zeros((size, size, 4), np.uint8)
    (r0, r1), (c0, c1) = rows, cols
    a[r0 * 40:r1 * 40, c0 * 40:c1 * 40] = (255, 214, 10, 190)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "Path"}]}, "data": url}, "backgroundFit": None}


def test_paint_page_paints_a_real_scene(tmp_path, monkeypatch):
    at = _page_setup(tmp_path, monkeypatch)
    [w for w in at.get("segmented_control") if w.key == "paint_on"][0].set_value("real scene").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.number_input(key="paint_real_index").set_value(SCENE).run()
    assert not at.exception, at.exception
    assert any("Paint here" in m.value or "paint here" in m.value for m in at.markdown)
    G = core.load_generator(NAME)
    image = pr.real_image("town", SCENE)
    key = f"paint-real-canvas-{NAME}-layer4-{pr.image_hash(image)[:12]}"
    at.session_state[key] = _stroke((3, 5), (2, 3))            # cells (3, 2) and (4, 2): scene 1's ground line
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("added in 2 cells" in m.value for m in at.markdown)
    # the page's numbers are core's: the same scene (from the disk cache) and the same edit
    seg = core.load_segmenter("toyworld")
    scene = pr.invert_real(G, image, generator_name=NAME, features=core.load_features("toyworld"), **FAST)
    res = core.dissect(G, seg, ["layer4"], 50)
    concept = at.selectbox(key="paint_concept").value
    n = at.slider(key="paint_units").value
    k = insertion_constants(G, seg, "layer4", concept, n_samples=50).numpy()
    cells = np.zeros((8, 8), bool)
    cells[3:5, 2] = True
    out = pr.paint_real(scene, paint_edits("layer4", iou_units(res, "layer4", concept, n), "add", k, cells, 3.0))
    said = " ".join(c.value for c in at.caption)
    assert f"{int((out.mask > 0).sum())} pixels blended" in said, said
    assert f"{scene.l1_adapted:.3f} (adapted from layer9)" in said


def test_paint_page_without_an_inverter_says_how_to_train_one(tmp_path, monkeypatch):
    at = _page_setup(tmp_path, monkeypatch, models=("toyworld/town", "toyworld/lake"))
    at.sidebar.selectbox(key="model").set_value("toyworld/lake").run()
    [w for w in at.get("segmented_control") if w.key == "paint_on"][0].set_value("real scene").run()
    assert not at.exception, at.exception
    said = " ".join(i.value for i in at.info)
    assert "has none yet" in said and "toyworld/lake" in said
    assert any("train_inverter" in c.value for c in at.code)

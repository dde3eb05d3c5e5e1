"""Dashboard smoke tests with Streamlit's AppTest (no browser)."""
import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")


@pytest.fixture(autouse=True)
def _server_threads():
    """Run the app as its server does (one torch thread per computation, dashboard/common.py);
    AppTest runs it inside pytest, so the later tests get their threads back."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _images(at):
    return list(at.get("image"))


def toyworld_page(timeout):
    return AppTest.from_file(APP, default_timeout=timeout).switch_page("views/toyworld.py").run()


def test_toyworld_page_renders_and_seed_changes_images():
    at = toyworld_page(60)
    assert not at.exception, at.exception
    assert at.title[0].value == "Toyworld"
    first = [[i.url for i in img.proto.imgs] for img in _images(at)]
    assert len(first) >= 2
    at.number_input[0].set_value(5).run()
    assert not at.exception
    second = [[i.url for i in img.proto.imgs] for img in _images(at)]
    assert second != first


def test_segmenter_prediction_toggle():
    at = toyworld_page(120)
    n_before = len(_images(at))
    at.toggle[0].set_value(True).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(_images(at)) == n_before + 1
    assert any("Pixel accuracy" in c.value for c in at.caption)


def _control(at, key):
    """The segmented control with this key."""
    return [w for w in at.get("segmented_control") if w.key == key][0]


def _urls(at):
    return [[i.url for i in img.proto.imgs] for img in _images(at)]


def _dissected(tmp_path, monkeypatch, models=("toyworld/town",), layers=("layer4",), n=50):
    """A private cache holding small dissections (as a first visit would leave)."""
    import core
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    monkeypatch.setenv("GANATOMY_DASHBOARD_SAMPLES", str(n))
    seg = core.load_segmenter("toyworld")
    for m in models:
        core.dissect(core.load_generator(m), seg, list(layers), n)


def test_concept_maps_page_dissects_and_opens_the_unit_browser(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    monkeypatch.setenv("GANATOMY_DASHBOARD_SAMPLES", "50")
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Concept maps"
    assert not at.get("plotly_chart")                       # nothing heavy before the button
    at.multiselect[1].set_value(["layer4"]).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    import json
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert len(bars) == len(at.multiselect[0].value)        # one cell per scene type at one layer
    colour = {}
    for t in bars:
        assert t["y"] == sorted(t["y"], reverse=True)       # sorted within a cell
        for concept, c in zip(t["x"], t["marker"]["color"]):
            assert colour.setdefault(concept, c) == c        # one colour per concept in every cell
    assert len(at.dataframe[0].value) == len(bars)
    pick = at.selectbox(key="cm_open")
    scene, layer, concept = pick.value
    at.button(key="cm_open_btn").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Unit browser"
    assert _control(at, "units_concept_pick").value == concept
    assert at.sidebar.selectbox[0].value.endswith(scene)


def test_concept_maps_compare_model_variants(tmp_path, monkeypatch):
    """Fig. 7: variants of a scene type's model are mapped side by side (room stands in for a
    town variant here, as no variant is shipped yet)."""
    import dashboard.common as common
    _dissected(tmp_path, monkeypatch, models=("toyworld/town", "toyworld/room"))
    monkeypatch.setattr(common, "zoo", lambda: {"toyworld/town": {"scene": "town", "variant": "base"},
                                                "toyworld/room": {"scene": "town", "variant": "demo"}})
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.multiselect[1].set_value(["layer4"]).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [h.value for h in at.subheader] == ["Units vs features", "Model variants"]
    charts = at.get("plotly_chart")
    assert len(charts) == 2                                  # the scene-type map and the variants map
    import json
    rows = [a["text"] for a in json.loads(charts[1].proto.spec)["layout"]["annotations"]]
    assert "town" in rows and "room" in rows
    assert len(at.dataframe[1].value) == 2
    assert any("different numbers of steps" in w.value for w in at.warning)   # cards without steps: unknown


def test_concept_maps_layers_follow_the_chosen_models(tmp_path, monkeypatch):
    """Models with other layers (a smaller ProGAN here): the layer choices are the chosen
    models' layers, and a chosen layer that the newly chosen models lack is dropped."""
    import core
    import dashboard.common as common
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    torch.manual_seed(0)
    small = common.pin_cache_key(core.ProGAN(16, (16, 16, 8)).eval())       # layer1 … layer6
    real_generator = common.generator
    monkeypatch.setattr(common, "zoo", lambda: {"toyworld/town": {"scene": "town", "variant": "base"},
                                                "lab/small": {"scene": "small", "variant": "base"}})
    monkeypatch.setattr(common, "generator", lambda name: small if name == "lab/small" else real_generator(name))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert "layer8" in at.multiselect[1].options
    at.multiselect[1].set_value(["layer4", "layer8"]).run()
    at.multiselect[0].set_value(["small"]).run()
    assert not at.exception, at.exception
    assert "layer8" not in at.multiselect[1].options and "layer6" in at.multiselect[1].options
    assert at.multiselect[1].value == ["layer4"]


def test_concept_maps_failure_shows_cause_and_fix(tmp_path, monkeypatch):
    import core
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))

    def broken(*a, **k):
        raise core.BudgetError("the histograms would take 99 GiB")
    monkeypatch.setattr(core, "dissect", broken)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.error and "99 GiB" in at.error[0].value and "Fix:" in at.error[0].value
    assert "fewer samples" in at.error[0].value          # the fix chosen by the error's type
    assert "bug" not in at.error[0].value


def test_a_bug_is_shown_as_a_bug_not_as_advice(tmp_path, monkeypatch):
    """An exception outside the error family is a genuine bug: the page says so, folds the
    traceback away, and gives no advice that does not fit."""
    import core
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))

    def broken(*a, **k):
        raise ValueError("an internal shape mismatch")
    monkeypatch.setattr(core, "dissect", broken)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    msg = at.error[0].value
    assert "bug in GANatomy" in msg and "an internal shape mismatch" in msg and "Fix:" not in msg
    details = [e for e in at.expander if e.label == "Details for a bug report"]
    assert (details and "Traceback" in details[0].code[0].value
            and "an internal shape mismatch" in details[0].code[0].value)


def test_unit_browser_unit_choice_changes_images(tmp_path, monkeypatch):
    _dissected(tmp_path, monkeypatch)
    at = _page("views/units.py")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Unit browser"
    assert at.metric[0].label == "Interpretable units"
    assert len(at.get("plotly_chart")) == 2                 # IoU per concept, activation histogram
    first, hist = _urls(at), at.get("plotly_chart")[1].proto.spec
    units = at.selectbox(key="unit_pick")
    units.set_value(int(units.options[-1].split()[1])).run()
    assert not at.exception, at.exception
    assert _urls(at) != first
    assert at.get("plotly_chart")[1].proto.spec != hist
    # the unit's label within each category (object / stuff) is the core's
    per_cat = [m.value for m in at.markdown if m.value.startswith("**Per category**")]
    assert len(per_cat) == 1 and "object:" in per_cat[0] and "stuff:" in per_cat[0]
    # filter by a concept: every row of the table is a unit of that concept
    show = _control(at, "units_concept_pick")
    concept = [o for o in show.options if o not in ("all units", "interpretable")][0]
    show.set_value(concept).run()
    assert not at.exception, at.exception
    assert set(at.dataframe[0].value.label) == {concept}


def _small_bases(monkeypatch):
    """Bases fitted on few samples and steps (the pages fit them with the defaults: minutes)."""
    from core.engine import bases
    real = bases.fit_basis

    def small(G, layer, kind="sae", **kw):
        kw.update(n_samples=60, steps=30)
        return real(G, layer, kind, **kw)
    monkeypatch.setattr(bases, "fit_basis", small)


def test_unit_browser_in_a_feature_basis(tmp_path, monkeypatch):
    """Basis = SAE: not fitted -> a button; fitted -> one row per feature (4 x 256), strips and
    histograms of features, the same rows as core's dissection in that basis."""
    import core
    from core.engine import bases
    _dissected(tmp_path, monkeypatch)
    _small_bases(monkeypatch)
    at = _page("views/units.py")
    _control(at, "units_basis").set_value("sae").run()
    assert not at.exception, at.exception
    assert any("not fitted yet" in i.value for i in at.info)
    [b for b in at.button if b.key == "units_fit"][0].click().run()
    assert not at.exception, at.exception
    [b for b in at.button if b.label == "Dissect"][0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "Interpretable features"
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    b = bases.fit_basis(G, "layer4", "sae", cached_only=True)
    want = core.dissect(G, seg, ["layer4"], 50, basis=b).units("layer4")
    assert at.metric[0].value == f"{int(want.interpretable.sum())} / 1024"
    assert len(at.get("plotly_chart")) == 2 and _urls(at)
    pick = at.selectbox(key="unit_pick")                           # a fresh choice among the features
    assert pick.value == int(pick.options[0].split()[1]) and pick.options[0].startswith("feature ")
    assert want.sort_values("iou", ascending=False, kind="stable").unit.iloc[0] == pick.value


def test_concept_maps_units_vs_features(tmp_path, monkeypatch):
    _dissected(tmp_path, monkeypatch)
    _small_bases(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception, at.exception
    [b for b in at.button if b.key == "cmp_fit"][0].click().run()       # fits both bases and dissects in them
    assert not at.exception, at.exception
    assert not any(b.key == "cmp_dissect" for b in at.button)
    assert not at.error, [e.value for e in at.error]
    spec = [c for c in at.get("plotly_chart") if '"SAE features"' in c.proto.spec]
    assert len(spec) == 1 and '"PCA"' in spec[0].proto.spec
    table = [d.value for d in at.dataframe if "sae_best" in d.value.columns][0]
    assert {"units_n", "pca_n", "sae_n", "gain_sae", "gain_pca"} <= set(table.columns) and len(table)


def test_features_on_whatif_tracing_causal_units_and_repair(tmp_path, monkeypatch):
    """Every page that shows units takes a basis. In the SAE basis: What-if edits features (the same
    numbers as units give other images), Tracing inserts features, Causal units asks ACE in that basis,
    Artifact repair ranks features by FID and ablates them."""
    import core
    from core.engine import bases, causal
    from core.studies import units
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    monkeypatch.setenv("GANATOMY_DASHBOARD_SAMPLES", "50")
    _small_bases(monkeypatch)
    at = _page("views/whatif.py")
    as_units = _urls(at)[1]
    _control(at, "whatif_basis").set_value("sae").run()
    at.button(key="whatif_fit").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.text_input[0].label == "Features (comma separated)"
    assert _urls(at)[1] != as_units and _urls(at)[0] == _urls(_page("views/whatif.py"))[0]
    assert any("sae-1024-l1: 1024 features" in c.value for c in at.caption)

    at = _page("views/tracing.py")
    _control(at, "trace_basis").set_value("sae").run()                 # fitted above: stored, no button
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.text_input[0].label == "Features (comma separated)" and len(at.get("plotly_chart")) == 2
    assert any("features" in i.caption for img in _images(at) for i in img.proto.imgs)
    # not dissected in this basis: features 0-4, and a button on the page that dissects them; then the
    # default features are the concept's (core's dissection in the basis, the 5 of highest IoU)
    assert at.text_input[0].value == "0, 1, 2, 3, 4"
    at.button(key="trace_dissect").click().run()
    assert not at.exception, at.exception
    G = core.load_generator("toyworld/town")
    res = core.dissect(G, core.load_segmenter("toyworld"), ["layer4"], 50, cached_only=True,
                       basis=bases.fit_basis(G, "layer4", "sae", cached_only=True))
    assert res is not None
    want = ", ".join(map(str, units.iou_units(res, "layer4", "door", 5)))
    assert at.text_input[0].value == want != "0, 1, 2, 3, 4"
    at.run()                                                            # a rerun: the stored dissection, no button
    assert at.text_input[0].value == want and not [b for b in at.button if b.key == "trace_dissect"]

    asked = []
    real_ace = causal.ace
    monkeypatch.setattr(causal, "ace", lambda *a, **k: asked.append(k.get("basis")) or real_ace(*a, **k))
    at = _page("views/causal_units.py")
    _control(at, "causal_basis").set_value("sae").run()
    assert not at.exception, at.exception
    assert at.button(key="ace_run").label == "Find causal features"
    assert asked[0] is None and asked[-1] is not None and asked[-1].n_features == 1024

    _small_real_stats(tmp_path)
    at = _page("views/repair.py")
    _control(at, "repair_basis").set_value("sae").run()
    at.button(key="ufid_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table.columns[:2]) == ["feature", "fid"] and table.feature.max() < 1024 and not at.checkbox
    at.button(key="fidcmp_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    fid = at.dataframe[1].value
    assert fid.variant.tolist()[1:] == ["5 flagged features ablated", "5 random features ablated (mean of 3)"]


def _drawing(cells=((0, 3), (0, 8))):
    """A canvas value as the drawable canvas sends it: a stroke over rows/columns of a 320 px canvas."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    (r0, r1), (c0, c1) = cells
    a = np.zeros((320, 320, 4), np.uint8)
    a[r0 * 40:r1 * 40, c0 * 40:c1 * 40] = (255, 214, 10, 190)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "Path"}]}, "data": url}, "backgroundFit": None}


def test_paint_with_sparse_features(tmp_path, monkeypatch):
    """Basis = SAE on the Paint page: the stroke drives the concept's features (IoU-ranked), and the
    edited image is core's generate with those feature edits."""
    import core
    from core.engine import bases
    from core.studies import units
    _dissected(tmp_path, monkeypatch)
    _small_bases(monkeypatch)
    at = _page("views/paint.py")
    _control(at, "paint_basis").set_value("sae").run()
    at.button(key="paint_fit").click().run()
    [b for b in at.button if b.label == "Dissect"][0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.session_state["paint-canvas-toyworld/town-layer4-0"] = _drawing()
    at.run()
    assert not at.exception, at.exception
    assert any("added in 24 cells" in m.value for m in at.markdown)
    assert any(c.value.startswith("Features (IoU ranking)") for c in at.caption)
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    b = bases.fit_basis(G, "layer4", "sae", cached_only=True)
    res = core.dissect(G, seg, ["layer4"], 50, basis=b)
    concept = at.selectbox(key="paint_concept").value
    units = units.iou_units(res, "layer4", concept, 20)
    shown = [c.value for c in at.caption if c.value.startswith("Features (IoU ranking)")][0]
    assert shown.split(": ", 1)[1].startswith(", ".join(map(str, units[:12])))


def test_paint_page_stroke_edits_the_image_and_context_study(tmp_path, monkeypatch):
    _dissected(tmp_path, monkeypatch)
    at = _page("views/paint.py")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Paint"
    edited = lambda: [i.url for i in _images(at)[0].proto.imgs]          # noqa: E731
    before = edited()
    key = "paint-canvas-toyworld/town-layer4-0"
    at.session_state[key] = _drawing()
    at.run()
    assert not at.exception, at.exception
    painted = edited()
    assert painted != before
    assert any("added in 24 cells" in m.value for m in at.markdown)
    assert at.select_slider(key="paint_strength").value == 3.0         # the default that draws a visible door
    at.select_slider(key="paint_strength").set_value(1.0).run()
    assert not at.exception, at.exception
    assert edited() not in (before, painted)                            # k itself: another, fainter edit
    at.select_slider(key="paint_strength").set_value(3.0).run()
    assert edited() == painted
    _control(at, "paint_mode").set_value("remove").run()
    assert not at.exception, at.exception
    assert edited() not in (before, painted)
    assert any("removed in 24 cells" in m.value for m in at.markdown)
    assert not at.button(key="paint_undo").disabled
    at.number_input(key="paint_seed").set_value(3).run()                 # another image, a fresh canvas
    assert not at.exception, at.exception
    assert edited() != before and any("paint on the left" in m.value for m in at.markdown)
    at.select_slider(key="ctx_images").set_value(1).run()
    at.button(key="ctx_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    keys = [c.proto.id for c in at.get("plotly_chart")]
    assert len(keys) == 2                                    # the map and the bars by context


def test_whatif_page_edit_changes_images():
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("views/whatif.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "What-if"
    imgs = _images(at)
    before, after = [i.url for i in imgs[0].proto.imgs], [i.url for i in imgs[1].proto.imgs]
    assert before != after                     # ablating five units over the whole map changes the images
    at.text_input[0].set_value("7").run()
    assert not at.exception
    assert [i.url for i in _images(at)[1].proto.imgs] != after
    at.text_input[0].set_value("9999").run()
    assert at.error and "out of range" in at.error[0].value


def _page(path, timeout=300):
    at = AppTest.from_file(APP, default_timeout=timeout)
    return at.switch_page(path).run()


def test_shared_models_with_their_own_cache_key_load(tmp_path, monkeypatch):
    """StyleGAN2, BigGAN and SegFormer define ``cache_key`` as a read-only property: the
    dashboard's shared loaders must use it, not assign over it (which raised AttributeError)."""
    import core
    import dashboard.common as common
    from core.base.cache import weights_hash
    from core.models.stylegan2 import StyleGAN2
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    torch.manual_seed(0)
    p = tmp_path / "sg2.pt"
    torch.save({"g_ema": StyleGAN2(8, 8, 2, channels={4: 4, 8: 4}).state_dict()}, p)
    from core import models as published
    published.register("lab/dashboard-sg2", p)
    G = common.generator("lab/dashboard-sg2")
    assert G.cache_key == core.load_generator(p).cache_key and G.cache_key.startswith("StyleGAN2:")
    P = common.pin_cache_key(core.ProGAN(32, (16, 8)))
    assert P.cache_key == f"ProGAN:{weights_hash(P)}"


def test_a_segmenter_that_cannot_load_shows_cause_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))     # no SegFormer weights here
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["shared_segmenter"] = "segformer/ade20k-b0"
    at.switch_page("views/whatif.py").run()
    assert not at.exception, at.exception
    msg = at.error[0].value
    assert "segformer/ade20k-b0" in msg and "segformer-b0-finetuned-ade-512-512" in msg and "Models" in msg


def test_sessions_with_different_segmenters_never_share_cached_results(tmp_path, monkeypatch):
    """Insertion values depend on the segmenter each session chose: a session must not be
    served another session's values for the same model, layer and concept name."""
    import torch.nn as nn

    import core
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    real = core.load_segmenter

    class Flipped(nn.Module):                      # the toyworld segmenter, upside down
        def __init__(self):
            super().__init__()
            self.inner = real("toyworld")
            self.labels = self.inner.labels

        def segment(self, images):
            return self.inner.segment(images).flip(-2)

        def scores(self, images):
            return self.inner.scores(images).flip(-2)

        forward = segment

    monkeypatch.setattr(core, "load_segmenter",
                        lambda name="toyworld", **k: Flipped() if name == "flipped-toyworld" else real(name, **k))
    after = {}
    for name in ("toyworld", "flipped-toyworld"):
        at = AppTest.from_file(APP, default_timeout=300)
        at.session_state["shared_segmenter"] = name
        at.switch_page("views/whatif.py").run()
        at.radio[0].set_value("insert").run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        after[name] = [i.url for i in _images(at)[1].proto.imgs]
    assert after["toyworld"] != after["flipped-toyworld"]


def test_causal_units_page(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    monkeypatch.setenv("GANATOMY_DASHBOARD_SAMPLES", "50")
    at = _page("views/causal_units.py")
    assert not at.exception, at.exception
    [s for s in at.select_slider if s.label == "Optimisation steps"][0].set_value(20).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("causal units" in m.value for m in at.markdown)
    imgs = _images(at)
    assert [i.url for i in imgs[-2].proto.imgs] != [i.url for i in imgs[-1].proto.imgs]
    # the ablation curve compares the ACE ranking with the IoU ranking (one curve each)
    n_charts = len(at.get("plotly_chart"))
    [s for s in at.select_slider if s.label == "Images for the ablation curve"][0].set_value(50).run()
    at.toggle[0].set_value(True).run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == n_charts + 1
    spec = charts[1].proto.spec
    assert '"ace"' in spec and '"iou"' in spec
    assert any(c.value.startswith("Computed now") for c in at.caption)

    # results stay: reruns and a new session's visit show the stored ACE and curve, computing nothing
    from core.engine.causal import curves, effect
    from core.studies import over_seeds
    calls = {"ace": 0, "ablation_curve": 0}                     # what computes, behind the cache's lookup
    for fn, (module, name) in {"ace": (effect, "_optimise"), "ablation_curve": (curves, "_curve")}.items():
        real = getattr(module, name)

        def counted(*a, _real=real, _fn=fn, **k):
            calls[_fn] += 1
            return _real(*a, **k)
        monkeypatch.setattr(module, name, counted)
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == n_charts + 1
    assert any(c.value.startswith("Stored result") for c in at.caption)
    again = _page("views/causal_units.py")                       # another session, no button pressed
    [s for s in again.select_slider if s.label == "Optimisation steps"][0].set_value(20).run()
    assert any("causal units" in m.value for m in again.markdown), "the stored ACE is not shown on a visit"
    [s for s in again.select_slider if s.label == "Images for the ablation curve"][0].set_value(50).run()
    again.toggle[0].set_value(True).run()
    assert not again.exception, again.exception
    assert any(c.value.startswith("Stored result") for c in again.caption)
    assert calls == {"ace": 0, "ablation_curve": 0}, calls
    # three seeds (core's curve_over_seeds, tested in test_causal): the page asks for seeds 0-2 with its
    # settings and draws every point with its 95% interval
    import pandas as pd
    seeded = []

    def fake_curves(G, seg, layer, concept, cached_only=False, progress=None, **kw):
        seeded.append((layer, concept, cached_only, kw["seeds"], kw["ace_steps"], kw["n_samples"]))
        if cached_only:
            return None
        progress(3, 3)
        return pd.DataFrame([{"ranking": r, "n": n, "removed": 0.1 * n, "ci_low": 0.1 * n - 0.05,
                              "ci_high": 0.1 * n + 0.07, "seeds": 3, "per_seed": [0.1 * n] * 3}
                             for r in ("ace", "iou") for n in (1, 2, 5, 10, 20)])
    monkeypatch.setattr(over_seeds, "curve_over_seeds", fake_curves)
    [s for s in again.select_slider if s.label.startswith("Seeds of the curve")][0].set_value(3).run()
    assert not again.exception, again.exception
    assert not again.error, [e.value for e in again.error]
    assert [x[2] for x in seeded] == [True, False] and seeded[1][3] == (0, 1, 2) and seeded[1][4:] == (20, 50)
    spec = [c for c in again.get("plotly_chart") if "95% interval" in c.proto.spec][0].proto.spec
    assert '"arrayminus"' in spec and '"ace"' in spec and '"iou"' in spec
    assert any(c.value.startswith("Seeds 0, 1, 2") for c in again.caption)
    # the removal table across scene types (its ACE runs are core's, tested in test_causal): the page asks
    # for every scene type's generator, one seed by default, and shows one row each
    asked = []

    def fake_table(gens, seg, layer, concepts, **kw):
        asked.append((sorted(gens), layer, list(concepts), kw["seed"], kw["ace_steps"], kw["n_samples"]))
        return pd.DataFrame([{"generator": g, "concept": concepts[0], "units": [1],
                              "removed_percent": 50.0 + kw["seed"]}
                             for g in gens])
    monkeypatch.setattr(over_seeds, "removal_table", fake_table)
    [b for b in again.button if b.label.startswith("Removal table")][0].click().run()
    assert not again.exception, again.exception
    assert not again.error, [e.value for e in again.error]
    assert asked == [(["lake", "room", "town"], "layer4", ["door"], 0, 20, 50)]
    table = again.dataframe[-1].value
    assert sorted(table.generator) == ["lake", "room", "town"] and (table.removed_percent == 50.0).all()
    again.select_slider(key="removal_seeds").set_value(3).run()      # three seeds: a mean and its interval
    [b for b in again.button if b.label.startswith("Removal table")][0].click().run()
    assert [a[3] for a in asked[1:]] == [0, 1, 2]
    table = again.dataframe[-1].value
    assert (table.removed_percent == 51.0).all() and (table.ci_low < 51.0).all() and (table.ci_high > 51.0).all()


def _small_real_stats(cache, scene="town", size=64, n=400):
    """Real feature statistics of a few hundred scenes, stored as the page's cached 10,000-scene
    ones (the test is about the page, not about FID accuracy)."""
    import core
    from core.studies import evaluation
    feats = core.load_features("toyworld")
    mu, cov = evaluation.real_stats(lambda im: feats(im), [scene], n, seed=500, size=size).mean_cov()
    evaluation.store_real_stats(feats, scene, size, mu, cov)


def test_repair_page_flags_persist(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    _small_real_stats(tmp_path)
    at = _page("views/repair.py")
    assert not at.exception, at.exception
    at.button[0].click().run()
    assert not at.exception, at.exception
    box = at.checkbox[0]
    unit = int(box.label.split()[1])
    box.check().run()
    import core
    from core.base import cache
    from core.userdata import flags
    name = at.selectbox[0].value
    fingerprint = cache.model_fingerprint(core.load_generator(name))
    assert unit in flags.load_flags(name, "layer4", fingerprint)       # saved with the weights' fingerprint
    [b for b in at.checkbox if b.label == f"unit {unit}"][0].uncheck().run()
    assert unit not in flags.load_flags(name, "layer4", fingerprint)
    at.button(key=f"unflag-undo-{unit}").click().run()                 # an unflag is undone from the page
    assert not at.exception and unit in flags.load_flags(name, "layer4", fingerprint)
    assert [b for b in at.checkbox if b.label == f"unit {unit}"][0].value
    # flags saved for other weights of the same name (a re-shipped model) are not applied
    flags.save_flags(name, "layer4", [unit], "ProGAN:other-weights")
    at = _page("views/repair.py")                               # a new session: the stored unit FID at once
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.label == "Compute unit FID"]
    assert any("other weights" in i.value for i in at.info)
    assert not [b for b in at.checkbox if b.label == f"unit {unit}"][0].value
    [b for b in at.button if b.label.startswith("Ablate")][0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe) == 2 and len(at.dataframe[1].value) >= 2     # FID as it is, then with units ablated


def test_evolution_and_tracing_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    at = _page("views/evolution.py")
    assert not at.exception, at.exception
    assert at.button, "toyworld/town ships training snapshots: the page must offer to dissect them"
    [s for s in at.select_slider if s.label == "Samples per checkpoint"][0].set_value(50).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    import core
    assert df.step.tolist() == [s for s, _ in core.checkpoint_series("toyworld/town")]
    # every shipped checkpoint has been evaluated: its quality sits beside its dissection
    cards = core.list_models()
    assert df.fid.tolist() == [cards[m]["series_fid"] for m in df.model]
    assert df.ms_swd.tolist() == [cards[m]["series_ms_swd"] for m in df.model]
    assert df.ms_swd.iloc[-1] < df.ms_swd.iloc[0] / 2     # the final model is far sharper than step 100
    at = _page("views/tracing.py")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    before = at.get("plotly_chart")[1].proto.spec
    at.slider[0].set_value(0).run()
    assert not at.exception
    assert at.get("plotly_chart")[1].proto.spec != before
    assert len(_images(at)) == 2                               # the source image and the edited one
    # with a dissection (here the shipped one), the default units are the concept's own
    from core.base import cache
    from core.studies import units
    monkeypatch.delenv(cache.SHIPPED_ENV)
    at = _page("views/tracing.py")
    assert not at.exception, at.exception
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    door = units.iou_units(core.dissect(G, seg, ["layer4"], 500, cached_only=True), "layer4", "door", 5)
    assert at.text_input[0].value == ", ".join(map(str, door))
    axis = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["coloraxis"]
    assert axis["cmin"] == -axis["cmax"] < 0                    # diverging, zero in the middle


def test_whatif_insert_defaults_to_the_concept_of_the_chosen_units(tmp_path, monkeypatch):
    import core
    from core.base import cache
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    monkeypatch.delenv(cache.SHIPPED_ENV)                          # the shipped dissection labels the units
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    units = core.dissect(G, seg, ["layer4"], 500, cached_only=True).units("layer4")
    at = _page("views/whatif.py")
    at.radio[0].set_value("insert").run()
    for concept in ("door", "sky"):
        chosen = units[units.concept == concept].unit.head(3).tolist()
        at.text_input[0].set_value(", ".join(map(str, chosen))).run()
        assert not at.exception, at.exception
        assert at.selectbox(key="whatif_concept").value == concept
    at.selectbox(key="whatif_concept").set_value("tree").run()     # the user's choice stays for these units
    assert at.selectbox(key="whatif_concept").value == "tree" and not at.error


def test_the_server_device_is_shown_and_a_bad_setting_is_a_clear_error(tmp_path, monkeypatch):
    from core.base.devices import DEVICE_ENV, server_device
    from core.base.errors import InputError
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    at = _page("views/models.py")
    assert not at.exception, at.exception
    assert any("computes on **cpu**" in c.value for c in at.caption)
    monkeypatch.setenv(DEVICE_ENV, "cuda:7" if not torch.cuda.is_available() else "cuda:999")
    for path in ("views/models.py", "views/whatif.py"):
        at = _page(path)
        assert not at.exception, at.exception
        msg = " ".join(e.value for e in at.error)
        assert "GANATOMY_DEVICE" in msg and "auto" in msg, msg         # names the setting and the fix
    assert server_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.delenv(DEVICE_ENV)
    assert server_device() == server_device("auto")                    # the default: the GPU when there is one
    with pytest.raises(InputError, match="not a device"):
        server_device("banana")

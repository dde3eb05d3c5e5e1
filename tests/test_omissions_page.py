"""The Omissions page (issue #34 item 5) with Streamlit's AppTest: what it shows is the core result
(FSD and its terms, the floor, the omitted classes, the table's rows, the chart's classes and relative
changes recounted from the stored sums), computed once behind its button and shown from the cache on
the next view; a model without a toyworld scene is asked for one, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import core
from core.studies.omissions import toyworld_omissions

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")
N = 50                                       # the page's smallest sample count


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)                 # as the server runs a page (dashboard/common.py)
    yield
    torch.set_num_threads(n)


def _page(timeout=120):
    return AppTest.from_file(APP, default_timeout=timeout).switch_page("views/omissions.py").run()


def _metrics(at) -> dict:
    return {m.label: float(m.value) for m in at.metric}


GALLERY_METRICS = ("Mean recall", "Segmenter alone", "Mean L1", "Pixels dropped (%)")


def test_the_page_computes_once_and_shows_the_core_result(tmp_path):
    at = _page()
    assert not at.exception, at.exception
    assert at.title[0].value == "Omissions"
    assert at.select_slider(key="omissions_n").value == 2000             # the shipped default
    assert at.sidebar.selectbox(key="omissions_checkpoint").value == "toyworld/town"   # the final model first
    assert len(at.sidebar.selectbox(key="omissions_checkpoint").options) > 2           # and its snapshots
    at.select_slider(key="omissions_n").set_value(N).run()
    assert not at.metric and at.button(key="omissions_run")              # nothing heavy before the button
    at.button(key="omissions_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    res = toyworld_omissions(G, seg, n_samples=N, cached_only=True)      # the page stored it
    assert res is not None and res.n_samples == N
    s = res.summary()
    shown = {k: v for k, v in _metrics(at).items() if k not in GALLERY_METRICS}
    for label, value in [("FSD", s["fsd"]["fsd"]), ("Real-vs-real floor", s["floor"]["fsd"]),
                         ("Mean term", s["fsd"]["mean_term"]), ("Covariance term", s["fsd"]["cov_term"]),
                         ("Segmenter vs exact labels", s["segmenter_vs_exact"]["fsd"])]:
        assert shown[label] == pytest.approx(value, rel=1e-3), label
    assert shown["FSD"] > shown["Real-vs-real floor"] > 0
    said = " ".join(w.value for w in [*at.warning, *at.success])
    assert ("No class is omitted" in said) == (not s["omitted"])
    assert all(c in said for c in s["omitted"]) and "-50%" in said and "0.001" in said     # the rule, stated

    table = at.dataframe[0].value
    assert list(table["class"]) == list(res.table().label) and len(table) == len(res.labels) - 1
    # the chart: the 12 classes of largest real mean area (recounted from the stored sums), their change
    real, gen = res.real.sum.numpy() / res.real.n, res.generated.sum.numpy() / res.generated.n
    top = [i for i in np.argsort(-real, kind="stable") if i > 0][:12]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = {t.get("name") or "change": t for t in spec["data"]}
    assert bars["real (training) scenes"]["x"] == [res.labels[i] for i in top]
    np.testing.assert_allclose(bars["real (training) scenes"]["y"], real[top], rtol=1e-9)
    np.testing.assert_allclose(bars["generated"]["y"], gen[top], rtol=1e-9)
    np.testing.assert_allclose(bars["change"]["y"], (gen[top] - real[top]) / real[top], rtol=1e-9)
    assert spec["layout"]["yaxis"]["type"] == "log"

    again = _page()                                                      # a second view: from the cache
    again.select_slider(key="omissions_n").set_value(N).run()
    assert not again.exception and {k: v for k, v in _metrics(again).items() if k not in GALLERY_METRICS} == shown
    # only the checkpoints' and the gallery's buttons: neither is shipped here (the shipped results are off)
    assert [b.key for b in again.button] == ["omissions_training_run", "omissions_gallery_run"]


def test_a_model_without_a_toyworld_scene_is_asked_for_one(monkeypatch):
    import dashboard.common as common
    torch.manual_seed(0)
    small = common.pin_cache_key(core.ProGAN(16, (16, 16, 8)).eval())   # a user model: no model card
    monkeypatch.setattr(common, "zoo", lambda: {"lab/small": {}})
    monkeypatch.setattr(common, "generator", lambda name: small)
    at = _page()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    said = " ".join(i.value for i in at.info)
    assert "names no toyworld scene" in said and "--real-dir" in said
    pick = at.selectbox(key="omissions_scene")
    assert pick.value is None and list(pick.options) == ["town", "room", "lake"]
    assert not at.metric and not at.button                               # nothing measured, nothing offered yet
    pick.set_value("room").run()
    assert not at.exception, at.exception
    assert at.button(key="omissions_run")                                # now it can be measured against room
    assert any("not computed yet" in i.value for i in at.info)


def test_the_reconstruction_gallery_shows_the_shipped_result_without_computing(tmp_path, monkeypatch):
    """On a fresh clone (an empty cache, the shipped results on) the town's gallery is read from the
    shipped result: no button, nothing computed into the cache, and what it shows (recall, L1, dropped
    share, each scene's L1 and the classes it lost most, the class table) is the stored result's."""
    from core.base import cache
    from core.studies.inversion import encoder_for, reconstruction_gallery
    monkeypatch.delenv(cache.SHIPPED_ENV, raising=False)
    at = _page()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "What a reconstruction drops" in [h.value for h in at.subheader]
    assert "omissions_gallery_run" not in [b.key for b in at.button]
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    gal = reconstruction_gallery(G, seg, encoder_for(G, "toyworld/town")[0], "town", 8, steps=100,
                                 features=core.load_features(), cached_only=True)
    assert gal is not None and gal.n == 8
    s, shown = gal.summary(), _metrics(at)
    assert shown["Mean recall"] == pytest.approx(s["mean_recall"], abs=6e-4)
    assert shown["Segmenter alone"] == pytest.approx(s["segmenter_mean_recall"], abs=6e-4)
    assert shown["Mean L1"] == pytest.approx(float(gal.l1.mean()), abs=6e-5)
    assert shown["Pixels dropped (%)"] == pytest.approx(100 * gal.dropped().mean(), abs=0.06)
    captions = [c for im in at.image for c in im.captions]
    assert len(captions) == 8, captions
    scenes = sorted(int(t.split(":")[0].removeprefix("Scene ")) - 1 for t in captions)
    assert scenes == list(range(8))                                      # two columns: each scene once
    for text in captions:
        i = int(text.split(":")[0].removeprefix("Scene ")) - 1
        assert f"L1 {gal.l1[i]:.3f}" in text
        worst = gal.losses(i)[0]
        assert f"lost most: {worst['label']} {worst['lost']:.0%}" in text
    table = at.dataframe[-1].value                                       # the last table: the gallery's
    assert list(table["class"]) == list(gal.class_table().label) and set(table["class"]) <= set(
        core.toyworld.SCENE_CONCEPTS["town"])
    assert not (tmp_path / "cache" / "inversion.gallery").exists()      # shown from the shipped result, not computed
    # the training run's checkpoints, from the shipped statistics too: arrival order and steps as core says
    from core.studies.comparisons import concept_arrival, omissions_over_training
    assert "Which concepts arrive first during training" in [h.value for h in at.subheader]
    assert "omissions_training_run" not in [b.key for b in at.button]
    over = omissions_over_training("toyworld/town", seg, 1000, cached_only=True)
    arrival = concept_arrival(over)
    shown = next(d.value for d in at.dataframe if "arrives at step" in d.value.columns)
    assert list(shown["class"]) == list(arrival.label)
    assert shown["arrives at step"].fillna(-1).tolist() == arrival.arrival_step.fillna(-1).tolist()
    assert not (tmp_path / "cache" / "omissions").exists()


def test_a_generator_without_an_inverter_is_told_how_to_train_one(monkeypatch):
    monkeypatch.setenv("GANATOMY_SHIPPED_RESULTS", str(Path(__file__).resolve().parents[1] / "core" / "weights"
                                                       / "results"))
    at = _page()
    at.sidebar.selectbox(key="model").set_value("toyworld/lake").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    said = " ".join(i.value for i in at.info)
    assert "has no inverter" in said and "python scripts/train_inverter.py --phase train" in said
    assert "Mean recall" not in _metrics(at) and "omissions_gallery_run" not in [b.key for b in at.button]

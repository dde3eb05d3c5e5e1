"""Dashboard "Rewrite" page (AppTest, no browser): renders with the paper's defaults; regions drawn on
its canvases run a rewrite whose before/after samples are core's (an independent run of the same
request); Save registers a model that loads by name while the shared model's weights stay as they
were; a name taken by another user and a bad request file are refused with the reason; a request file
sets the page; another session never sees this session's unsaved rewrite. Small runs (20 steps, 50
key samples)."""
import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import core
from core.base.cache import weights_hash
from core.base.sampling import z_at
from core.studies.rewriting import Region, Request, run_request

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")
CANVAS = 256                                   # the page's canvas size (4 canvas px per image px)
MODEL = "toyworld/town"


@pytest.fixture(autouse=True)
def _private(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)                   # as the server computes (dashboard/common.py)
    yield
    torch.set_num_threads(n)


def _page():
    at = AppTest.from_file(APP, default_timeout=240).switch_page("views/rewrite.py").run()
    assert not at.exception, at.exception
    return at


def _box(top, left, bottom, right):
    """A canvas value as the drawable canvas sends it: paint over image pixels [top:bottom, left:right]."""
    a = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    a[top * 4:bottom * 4, left * 4:right * 4] = (255, 214, 10, 200)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "Rect", "at": [top, left]}]}, "data": url}, "backgroundFit": None}


def _mask(top, left, bottom, right):
    m = np.zeros((64, 64), bool)
    m[top:bottom, left:right] = True
    return m


COPY, PASTE = (16, 20, 32, 36), (36, 24, 52, 40)


def _small(at):
    at.number_input(key="rw_steps").set_value(20)
    at.number_input(key="rw_keys").set_value(50)
    at.session_state["rw_pairs"] = 6
    return at


def test_page_renders_with_the_papers_defaults():
    at = _page()
    assert at.title[0].value == "Rewrite"
    assert not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox(key="rw_layer").value == "layer6"
    assert (at.number_input(key="rw_steps").value, at.number_input(key="rw_lr").value,
            at.number_input(key="rw_rank").value) == (2000, 0.05, 1)
    assert "layer4 cell is 8x8 pixels" in at.sidebar.selectbox(key="rw_layer").help
    assert len(at.get("image")[0].proto.imgs) == 12                     # the sample grid
    assert at.button(key="rw_run").disabled                              # nothing drawn yet
    assert any("Draw the copy region and where to paste" in i.value for i in at.info)


def test_a_run_shows_core_results_saves_a_model_and_stays_in_its_session():
    import dashboard.common as common
    at = _small(_page())
    shared = common.generator(MODEL)
    before_hash = weights_hash(shared)
    at.session_state[f"rw-copy-{MODEL}-0-0"] = _box(*COPY)
    at.session_state[f"rw-paste-{MODEL}-0-1"] = _box(*PASTE)
    at.run()
    assert not at.exception, at.exception
    assert not at.button(key="rw_run").disabled
    at.button(key="rw_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    done = at.session_state["rw_result"]
    req = done["run"].request
    assert np.array_equal(req.copy.mask, _mask(*COPY)) and np.array_equal(req.paste.mask, _mask(*PASTE))
    assert (req.layer, req.steps, req.key_samples, req.copy.sample, req.paste.sample) == ("layer6", 20, 50, 0, 1)
    pairs = [c for c in at.get("image") if len(c.proto.imgs) == 1 and "after" in c.proto.imgs[0].caption]
    assert len(pairs) == 6
    # the same request run by core, independently of the page
    G = core.load_generator(MODEL)
    mine = run_request(G, Request(MODEL, "layer6", Region(0, _mask(*COPY)), Region(1, _mask(*PASTE)), steps=20,
                                  key_samples=50))
    z = z_at(0, list(range(6)), G.z_dim)
    with torch.no_grad():
        want_after = core.outputs.visualize.to_uint8(mine.rewrite.apply(G)(z))
        want_before = core.outputs.visualize.to_uint8(G(z))
    view = done["view"]
    assert view.indices == list(range(6))
    assert np.abs(view.before.astype(int) - want_before).max() <= 1
    assert np.abs(view.after.astype(int) - want_after).max() <= 2
    changed = np.abs(view.after.astype(int) - view.before).mean(-1)[1]     # the paste image
    assert changed[PASTE[0]:PASTE[2], PASTE[1]:PASTE[3]].mean() > 3 * changed.mean() / 2 > 0
    assert view.highlighted is not None and view.context_level > 2       # a rank rewrite: context tinted
    assert weights_hash(shared) == before_hash

    # another session sees none of it
    other = _page()
    assert "rw_result" not in other.session_state
    assert any("Press **Run rewrite**" in i.value for i in other.info)

    # saved: loads by name, the same images; the shared model unchanged
    at.session_state["display_name"] = "ana"
    at.text_input(key="rw_save_name").set_value("lab/town-rw")
    at.button(key="rw_save").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Saved" in s.value and "lab/town-rw" in s.value for s in at.success)
    assert core.models.user_models()["lab/town-rw"]["added_by"] == "ana"
    G1 = core.load_generator("lab/town-rw")
    with torch.no_grad():
        assert np.abs(core.outputs.visualize.to_uint8(G1(z)).astype(int) - view.after).max() <= 2
    assert weights_hash(shared) == before_hash == weights_hash(core.load_generator(MODEL))

    # the name is ana's: bob cannot take it, and is told so (no traceback)
    at.session_state["display_name"] = "bob"
    at.text_input(key="rw_save_name").set_value("lab/town-rw")
    at.checkbox(key="rw_replace").check()
    at.button(key="rw_save").click().run()
    assert not at.exception, at.exception
    assert at.error and "was not saved" in at.error[0].value and "ana" in at.error[0].value
    assert core.models.user_models()["lab/town-rw"]["added_by"] == "ana"

    at.button(key="rw_revert").click().run()
    assert not at.exception, at.exception
    assert "rw_result" not in at.session_state
    assert any("Press **Run rewrite**" in i.value for i in at.info)


def test_request_files_bad_and_good():
    at = _page()
    junk = b"{not json at all: SECRET-CONTENT"
    at.file_uploader(key="rw_upload").set_value(("rule.json", junk, "application/json")).run()
    assert not at.exception, at.exception
    assert at.error and "cannot be loaded" in at.error[0].value and "not valid JSON" in at.error[0].value
    assert "SECRET" not in at.error[0].value
    req = Request(MODEL, "layer5", Region(3, _mask(*COPY)), Region(4, _mask(*PASTE)),
                  context=[Region(5, _mask(40, 0, 48, 16))], seed=2, rank=2, steps=30)
    at.file_uploader(key="rw_upload").set_value(("rule.json", req.dumps().encode(), "application/json")).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox(key="rw_layer").value == "layer5"
    assert (at.number_input(key="rw_seed").value, at.number_input(key="rw_copy").value,
            at.number_input(key="rw_rank").value, at.number_input(key="rw_steps").value) == (2, 3, 2, 30)
    assert not at.button(key="rw_run").disabled                           # its regions are the page's now
    masks = at.session_state["rw_masks"]
    assert np.array_equal(masks[f"rw-copy-{MODEL}-2-3"], _mask(*COPY))
    assert np.array_equal(masks[f"rw-paste-{MODEL}-2-4"], _mask(*PASTE))
    assert [r.sample for r in at.session_state["rw_contexts"][(MODEL, 2)]] == [5]


def test_a_rewrite_is_loaded_anew_when_its_base_is_replaced(tmp_path, monkeypatch):
    """The dashboard's shared model key of a saved rewrite follows its base: replacing the base (by its
    owner) changes the rewrite's revision, so no session is served the old object."""
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    import core
    from core.studies.rewriting import Region, Request, run_request, save_rewrite
    from dashboard import common
    m = np.zeros((64, 64), bool)
    m[40:52, 8:20] = True

    def rw(name, base, replace=False):
        req = Request(model=base, layer="layer6", copy=Region(1, m), paste=Region(2, m), steps=2, key_samples=10)
        return save_rewrite(name, run_request(core.load_generator(base), req, cache=False), added_by="ann",
                            replace=replace)

    rw("lab/base", "toyworld/town")
    rw("lab/top", "lab/base")
    before = common._revision("lab/top")
    assert common._revision("lab/base") in before
    rw("lab/base", "toyworld/room", replace=True)
    assert common._revision("lab/top") != before and common._revision("toyworld/town") == ""

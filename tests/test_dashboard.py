"""Dashboard smoke tests with Streamlit's AppTest (no browser)."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


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


def _urls(at):
    return [[i.url for i in img.proto.imgs] for img in _images(at)]


def test_dissection_page_runs_and_unit_choice_changes_strip(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Dissection"
    at.select_slider[0].set_value(200).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "Interpretable units"
    first = _urls(at)
    units = [s for s in at.selectbox if s.label == "Unit"][0]
    units.set_value(int(units.options[-1].split()[1])).run()
    assert not at.exception, at.exception
    assert _urls(at) != first


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


def test_causal_units_page(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    at = _page("views/causal_units.py")
    assert not at.exception, at.exception
    at.select_slider[0].set_value(20).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("causal units" in m.value for m in at.markdown)
    imgs = _images(at)
    assert [i.url for i in imgs[-2].proto.imgs] != [i.url for i in imgs[-1].proto.imgs]


def test_repair_page_flags_persist(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    at = _page("views/repair.py")
    assert not at.exception, at.exception
    at.button[0].click().run()
    assert not at.exception, at.exception
    box = at.checkbox[0]
    unit = int(box.label.split()[1])
    box.check().run()
    from core import repair
    assert unit in repair.load_flags(at.selectbox[0].value, "layer4")


def test_evolution_and_tracing_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    at = _page("views/evolution.py")
    assert not at.exception, at.exception
    if at.button:
        at.button[0].click().run()
        assert not at.exception, at.exception
        assert len(at.dataframe) == 1
    at = _page("views/tracing.py")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    before = at.get("plotly_chart")[1].proto.spec
    at.slider[0].set_value(0).run()
    assert not at.exception
    assert at.get("plotly_chart")[1].proto.spec != before

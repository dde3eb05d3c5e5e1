"""Dashboard smoke tests with Streamlit's AppTest (no browser)."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def _images(at):
    return list(at.get("image"))


def test_toyworld_page_renders_and_seed_changes_images():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Toyworld"
    first = [[i.url for i in img.proto.imgs] for img in _images(at)]
    assert len(first) >= 2
    at.number_input[0].set_value(5).run()
    assert not at.exception
    second = [[i.url for i in img.proto.imgs] for img in _images(at)]
    assert second != first


def test_segmenter_prediction_toggle():
    at = AppTest.from_file(APP, default_timeout=120).run()
    n_before = len(_images(at))
    at.toggle[0].set_value(True).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(_images(at)) == n_before + 1
    assert any("Pixel accuracy" in c.value for c in at.caption)

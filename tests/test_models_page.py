"""Dashboard "Models" page (AppTest, no browser): lists published models with their status and
where missing files go; adds a model by path; refuses broken or unsafe uploads with the reason."""
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

import core
from core import models as published

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")


@pytest.fixture
def net_calls(monkeypatch):
    """Records any attempt to open a URL (none may happen unless a download is asked for)."""
    import urllib.request
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        OSError("no network in tests")))
    return calls


@pytest.fixture
def page(tmp_path, monkeypatch, net_calls):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))

    def open_page():
        at = AppTest.from_file(APP, default_timeout=120).switch_page("views/models.py").run()
        assert not at.exception, at.exception
        return at
    return open_page


def _table(at):
    """The published-and-added table (the one with a status column)."""
    return next(d.value for d in at.dataframe if "status" in d.value.columns).set_index("model")


def test_models_page_lists_the_shipped_zoo_from_the_model_cards(page):
    import json
    at = page()
    zoo = next(d.value for d in at.dataframe if "MS-SWD" in d.value.columns).set_index("model")
    shipped = sorted(p.stem for p in core.models.zoo.GAN_DIR.glob("*.pt") if "@" not in p.stem)
    assert sorted(zoo.index) == [f"toyworld/{s}" for s in shipped]
    for s in shipped:
        card = json.loads((core.models.zoo.GAN_DIR / f"{s}.json").read_text())
        row = zoo.loc[f"toyworld/{s}"]
        assert row["steps"] == card["steps"] and row["resolution"] == card["resolution"]
        assert row["FID"] == card.get("eval_fid_10k_real", card["fid"])
        assert row["training hours"] == round(card["train_seconds"] / 3600, 2)
        # real images seen: the card's sum over stretches (town and room changed batch mid-run)
        want = card.get("images") or card["steps"] * card["batch"]
        assert row["real images (k)"] == round(want / 1000) > 0
        if "stretches" in card:
            assert sum((r["to_step"] - r["from_step"]) * r["batch"] for r in card["stretches"]) == card["images"]
        if "eval_fid_earliest" in card:     # evaluated (report_gans, report_variants): final below earliest
            assert row["MS-SWD"] == card["eval_ms_swd"] < row["MS-SWD earliest"]
            assert row["FID"] < row["FID earliest"] and row["earliest step"] < row["steps"]
            if card["variant"] == "base":   # the shipped base models: far below
                assert row["MS-SWD"] < row["MS-SWD earliest"] / 3
        else:                               # not evaluated: shown as missing, never as a number
            assert pd.isna(row["MS-SWD earliest"]) and pd.isna(row["FID earliest"])
    n_snap = len(list(core.models.zoo.GAN_DIR.glob("town@step-*.pt")))
    assert zoo.loc["toyworld/town", "snapshots"] == n_snap
    assert len(core.checkpoint_series("toyworld/town")) == n_snap + 1 >= 6   # early to final


def test_lists_models_and_where_missing_files_go(page, tmp_path, net_calls):
    at = page()
    assert at.title[0].value == "Models"
    table = _table(at)
    for d in ("churchoutdoor", "bedroom", "kitchen"):
        assert table.loc[f"progan/{d}", "status"] == "missing"
    assert table.loc["segformer/ade20k-b0", "kind"] == "segmenter"
    assert table.loc["progan/churchoutdoor", "file"] == str(tmp_path / "models" / "proggan_churchoutdoor-7e701dd5.pth")
    at.selectbox(key="missing_model").set_value("progan/churchoutdoor").run()
    info = " ".join(i.value for i in at.info)
    assert "proggan_churchoutdoor-7e701dd5.pth" in info and str(tmp_path / "models") in info
    assert [b for b in at.button if b.key == "download"]            # offered, never pressed by itself
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())
    assert at.selectbox(key="segmenter_pick").options == ["toyworld"]
    assert net_calls == []                                            # nothing downloads at page start
    # the catalog knows only the 8-digit prefix of its SHA-256: the download waits for the user's trust
    assert at.button(key="download").disabled and "cannot be fully verified" in at.warning[0].value
    assert "7e701dd5" in at.warning[0].value
    at.checkbox(key="download_trust").check().run()
    assert net_calls == []                                            # trusting downloads nothing by itself
    at.button(key="download").click().run()                           # asked: tried, failed, explained
    assert not at.exception, at.exception
    assert len(net_calls) == 1 and "could not download" in at.error[0].value
    assert str(tmp_path / "models") in at.error[0].value


def test_add_by_path_then_listed_available(page, tmp_path, monkeypatch):
    torch.manual_seed(0)
    p = tmp_path / "tiny.pt"
    torch.save(core.ProGAN(32, (16, 8)).state_dict(), p)
    at = page()
    # outside the server's model folders (by default the models folder): refused, one message for
    # "not allowed" and "not there", nothing read, no byte of the file quoted
    at.text_input(key="add_name").set_value("lab/tiny")
    for typed in (str(p), str(tmp_path / "nothing.pt"), "/etc/passwd"):
        at.text_input(key="add_path").set_value(typed)
        at.button(key="add_path_button").click().run()
        assert not at.exception, at.exception
        assert at.error and "is not a model file this server may read (it is not there, or not under the model " \
            "folders)" in at.error[0].value, [e.value for e in at.error]
        assert "root:" not in at.error[0].value
    assert "lab/tiny" not in core.models.user_models()
    monkeypatch.setenv("GANATOMY_MODEL_ROOTS", str(tmp_path))
    at = page()
    at.text_input(key="add_name").set_value("lab/tiny")
    at.text_input(key="add_path").set_value(str(p))
    at.button(key="add_path_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "lab/tiny" in at.success[0].value and "progan" in at.success[0].value
    assert _table(at).loc["lab/tiny", "status"] == "available"
    assert isinstance(core.load_generator("lab/tiny"), core.ProGAN)


def test_broken_and_unsafe_uploads_are_refused_with_the_reason(page, tmp_path, code_running_checkpoint):
    at = page()
    at.text_input(key="add_name").set_value("lab/broken")
    broken = ("broken.pt", b"PK\x03\x04 not really a checkpoint", "application/octet-stream")
    at.file_uploader(key="upload").set_value(broken).run()
    at.button(key="add_upload_button").click().run()
    assert not at.exception, at.exception
    assert at.error and "refused" in at.error[0].value and "cannot be read" in at.error[0].value
    evil, marker = code_running_checkpoint(core.ProGAN(32, (16, 8)).state_dict(), "evil.pt")
    at.text_input(key="add_name").set_value("lab/evil")
    at.file_uploader(key="upload").set_value(("evil.pt", evil.read_bytes(), "application/octet-stream")).run()
    at.button(key="add_upload_button").click().run()
    assert not at.exception, at.exception
    assert at.error and "could run code" in at.error[0].value
    assert not marker.exists()
    assert published.user_models() == {}
    assert "lab/evil" not in _table(at).index

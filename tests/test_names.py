"""Names belong to someone (issue 18): a model name added by upload or path is never silently
replaced (a second add is refused unless replace is asked, and then the first file stays as it
was), unregistering must be confirmed, the Models page says who added each model and when, and
repair flags are merged per unit — a session's whole set never overwrites another's flags."""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import core
from core import models as published
from core.userdata import flags

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A fresh models folder and cache; returns a factory of distinct tiny ProGAN checkpoints."""
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_MODEL_ROOTS", str(tmp_path))         # the checkpoints below are added by path

    def weights(seed: int) -> Path:
        torch.manual_seed(seed)
        p = tmp_path / f"g{seed}.pt"
        torch.save(core.ProGAN(32, (16, 8)).state_dict(), p)
        return p
    weights.monkeypatch = monkeypatch
    return weights


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_a_second_upload_under_a_taken_name_keeps_the_first_users_weights(lab):
    first, second = lab(1), lab(2)
    a = published.add_upload(first.read_bytes(), "church.pt", "lab/church", added_by="ann")
    before = sha(a["path"])
    assert before == sha(first) and a["added_by"] == "ann" and a["added_at"].endswith("+00:00")
    with pytest.raises(core.InputError) as e:
        published.add_upload(second.read_bytes(), "church.pt", "lab/church", added_by="bob")
    msg = str(e.value)
    assert "'lab/church'" in msg and "added by ann" in msg and a["added_at"] in msg and "replace=True" in msg
    assert sha(a["path"]) == before                                   # byte for byte as ann left it
    assert published.user_models()["lab/church"]["path"] == a["path"]
    ann = core.load_generator("lab/church").state_dict()
    assert all(torch.equal(ann[k], v) for k, v in torch.load(first).items())
    # bob asking to replace ann's model is refused: only its owner (or an admin) may
    with pytest.raises(core.InputError, match=r"added by ann.*only they \(or an admin, GANATOMY_ADMINS\)"):
        published.add_upload(second.read_bytes(), "church.pt", "lab/church", replace=True, added_by="bob")
    assert published.user_models()["lab/church"]["path"] == a["path"]
    # an admin asks to replace: the name points at bob's weights, ann's file is still whole
    lab.monkeypatch.setenv("GANATOMY_ADMINS", "root, bob")
    b = published.add_upload(second.read_bytes(), "church.pt", "lab/church", replace=True, added_by="bob")
    assert b["path"] != a["path"] and sha(b["path"]) == sha(second)
    assert sha(a["path"]) == before
    assert b["replaced"][0]["added_by"] == "ann" and b["replaced"][0]["path"] == a["path"]
    row = {r["name"]: r for r in published.status()}["lab/church"]
    assert row["added_by"] == "bob" and row["source"].startswith("added by bob at ")
    bob = core.load_generator("lab/church").state_dict()
    assert all(torch.equal(bob[k], v) for k, v in torch.load(second).items())
    # by path too: refused without replace, the entry unchanged
    with pytest.raises(core.InputError, match="added by bob"):
        published.register("lab/church", first, added_by="cy")
    assert published.user_models()["lab/church"]["path"] == b["path"]
    # cy cannot remove it; bob's removal brings ann's model back, her file untouched
    with pytest.raises(core.InputError, match="only they"):
        published.unregister("lab/church", confirm="lab/church", by="cy")
    published.unregister("lab/church", confirm="lab/church", by="bob")
    back = published.user_models()["lab/church"]
    assert back["path"] == a["path"] and back["added_by"] == "ann" and sha(a["path"]) == before
    assert not Path(b["path"]).exists()                              # bob's upload went with his entry
    ann = core.load_generator("lab/church").state_dict()
    assert all(torch.equal(ann[k], v) for k, v in torch.load(first).items())


def test_two_sessions_adding_one_name_at_once_exactly_one_wins(lab):
    files = [lab(1), lab(2)]
    go = threading.Barrier(2)
    won, refused = [], []

    def add(i):
        go.wait()
        try:
            won.append((i, published.add_upload(files[i].read_bytes(), "g.pt", "lab/race", added_by=f"s{i}")))
        except core.InputError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(won) == 1 and len(refused) == 1 and "is taken" in refused[0]
    i, entry = won[0]
    assert published.user_models()["lab/race"]["added_by"] == f"s{i}" and sha(entry["path"]) == sha(files[i])
    uploads = [p for p in (Path(entry["path"]).parent).iterdir() if not p.name.startswith(".registry")]
    assert uploads == [Path(entry["path"])]                      # the loser left nothing behind


def test_unregister_must_be_confirmed(lab):
    mine = published.add_upload(lab(1).read_bytes(), "g.pt", "lab/mine", added_by="ann")
    other = published.register("lab/other", lab(2), added_by="bob")
    with pytest.raises(core.InputError, match=r"not confirmed.*confirm='lab/mine'"):
        published.unregister("lab/mine")
    with pytest.raises(core.InputError, match="not confirmed"):
        published.unregister("lab/mine", confirm="lab/other")
    assert "lab/mine" in published.user_models() and Path(mine["path"]).exists()
    published.unregister("lab/mine", confirm="lab/mine")
    assert "lab/mine" not in published.user_models() and not Path(mine["path"]).exists()   # its upload is gone
    assert Path(other["path"]).exists() and "lab/other" in published.user_models()          # a path: kept
    with pytest.raises(core.UnknownNameError, match="lab/other"):
        published.unregister("lab/mine", confirm="lab/mine")


def test_upload_errors_name_the_users_file_and_long_names_are_refused_clearly(lab):
    good = lab(1).read_bytes()
    with pytest.raises(core.CheckpointError) as e:
        published.add_upload(good[:500], "my church.pt", "lab/broken")
    assert "my church.pt" in str(e.value) and ".upload-" not in str(e.value) and "truncated" in str(e.value)
    with pytest.raises(core.InputError, match="at most 100"):
        published.add_upload(good, "g.pt", "lab/" + "n" * 300)
    # a very long file name is no problem: the stored name is made of the model name and a hash
    entry = published.add_upload(good, "w" * 300 + ".pt", "lab/long-file")
    assert len(Path(entry["path"]).name) < 130 and sha(entry["path"]) == hashlib.sha256(good).hexdigest()
    assert not [p for p in Path(entry["path"]).parent.iterdir() if p.name.startswith(".upload-")]


def test_flags_from_two_sessions_merge_per_unit(lab, tmp_path):
    m, layer, fp = "toyworld/town", "layer4", "ProGAN:abc"
    assert flags.flag_units(m, layer, [3], fp, by="A") == [3]
    assert flags.flag_units(m, layer, [5], fp, by="B") == [3, 5]
    assert flags.unflag_units(m, layer, [], fp, by="B") == [3, 5]         # B unflags nothing
    with pytest.raises(core.InputError, match=r"units \[3\] were flagged by A; only who flagged a unit"):
        flags.unflag_units(m, layer, [3, 5], fp, by="B")                 # B cannot unflag A's unit
    assert flags.load_flags(m, layer, fp) == [3, 5]                     # (nor, then, its own in that call)
    assert flags.unflag_units(m, layer, [3], fp, by="A") == [5]
    assert flags.load_flags(m, layer, fp) == [5]
    lab.monkeypatch.setenv("GANATOMY_ADMINS", "pi")
    assert flags.flag_units(m, layer, [7], fp, by="A") == [5, 7]
    assert flags.unflag_units(m, layer, [7], fp, by="pi") == [5]        # an admin can
    assert flags.flag_details(m, layer, fp)[5]["by"] == "B"
    # many sessions at once, each flagging its own unit: nobody's flag is lost
    go = threading.Barrier(8)

    def flag(u):
        go.wait()
        flags.save_flags(m, layer, fingerprint=fp, add=[u], by=f"s{u}")

    threads = [threading.Thread(target=flag, args=(u,)) for u in range(10, 18)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert flags.load_flags(m, layer, fp) == [5, *range(10, 18)]
    # a file of the first format is read, then merged into
    old = tmp_path / "cache" / "flags" / "lab_g__layer4.json"
    old.write_text(json.dumps({"model": "lab/g", "layer": "layer4", "units": [1, 2], "fingerprint": fp}))
    assert flags.load_flags("lab/g", "layer4", fp) == [1, 2]
    assert flags.flag_units("lab/g", "layer4", [7], fp) == [1, 2, 7]
    assert flags.stale_flags("lab/g", "layer4", "ProGAN:new") == [1, 2, 7]


def _flag_many(units):
    for u in units:
        flags.flag_units("toyworld/town", "layer4", [u], "ProGAN:abc", by=f"p{u}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_flags_from_separate_processes_merge(lab):
    """Separate server processes share the cache: the file lock keeps every process's events."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_flag_many, args=(range(10 * i, 10 * i + 10),)) for i in range(3)]
    [p.start() for p in procs]
    [p.join(60) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert flags.load_flags("toyworld/town", "layer4", "ProGAN:abc") == list(range(30))


def test_flag_files_stay_under_cache_flags(lab, tmp_path):
    for model in ("../../../x", "/etc/passwd", "..", "a/" * 200 + "b"):
        flags.flag_units(model, "layer4", [1])
        assert flags.load_flags(model, "layer4") == [1]
    root = tmp_path / "cache" / "flags"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".pt")]
    assert written and all(p.parent == root for p in written)
    with pytest.raises(core.InputError, match="not a layer name"):
        flags.save_flags("toyworld/town", "../../../x", [1])
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.parent.glob("x*.json"))


def test_models_page_says_who_added_a_model_and_refuses_a_taken_name(lab, tmp_path):
    p = lab(1)

    def page():
        at = AppTest.from_file(APP, default_timeout=120).switch_page("views/models.py").run()
        assert not at.exception, at.exception
        return at

    at = page()
    at.text_input(key="display_name_input").set_value("ann")
    at.text_input(key="add_name").set_value("lab/church")
    at.text_input(key="add_path").set_value(str(p))
    at.button(key="add_path_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert published.user_models()["lab/church"]["added_by"] == "ann"
    added = next(d.value for d in at.dataframe if "added by" in d.value.columns).set_index("model")
    assert added.loc["lab/church", "added by"] == "ann"
    assert any("added by ann at " in c.value for c in at.caption)
    # another session, bob: the name is taken; adding again is refused and ann's entry stays
    at = page()
    at.text_input(key="display_name_input").set_value("bob")
    at.text_input(key="add_name").set_value("lab/church").run()
    assert any("is taken" in w.value and "added by ann" in w.value for w in at.warning)
    at.text_input(key="add_path").set_value(str(lab(2)))
    at.button(key="add_path_button").click().run()
    assert at.error and "added by ann" in at.error[0].value and "Replace" in at.error[0].value
    assert published.user_models()["lab/church"]["path"] == str(p.resolve())
    # bob cannot unregister ann's model, even confirmed
    at.text_input(key="remove_confirm").set_value("lab/church")
    at.button(key="remove_button").click().run()
    assert at.error and "only they" in at.error[0].value and "added by ann" in at.error[0].value
    assert "lab/church" in published.user_models()
    # ann can; unregister asks for the name first
    at = page()
    at.text_input(key="display_name_input").set_value("ann").run()
    at.button(key="remove_button").click().run()
    assert at.error and "not confirmed" in at.error[0].value
    assert "lab/church" in published.user_models()
    at.text_input(key="remove_confirm").set_value("lab/church")
    at.button(key="remove_button").click().run()
    assert not at.exception, at.exception
    assert "lab/church" not in published.user_models()


def test_uploads_have_a_quota(monkeypatch, tmp_path):
    """The uploads folder as a whole has a quota: an upload past it is refused, nothing kept."""
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(core.ProGAN(32, (16, 8)).state_dict(), buf)
    data = buf.getvalue()
    monkeypatch.setenv("GANATOMY_UPLOAD_QUOTA_MB", str(1.5 * len(data) / 2 ** 20))
    published.add_upload(data, "g.pt", "lab/one")
    with pytest.raises(core.BudgetError, match=r"quota.*GANATOMY_UPLOAD_QUOTA_MB"):
        published.add_upload(data + b"", "g2.pt", "lab/two")
    assert sorted(published.user_models()) == ["lab/one"]
    up = tmp_path / "models" / "uploads"
    assert len([p for p in up.iterdir() if not p.name.startswith(".")]) == 1
    assert not list(up.glob(".upload-*"))
    # two uploads at once when only one fits: the quota is checked under its lock, exactly one wins
    published.purge(published.unregister("lab/one", confirm="lab/one")["id"])    # the trash counts: deleted for good
    for attempt in range(3):
        go = threading.Barrier(2)
        won, refused = [], []

        def add(i):
            go.wait()
            try:
                won.append(published.add_upload(data + bytes([i, attempt]), f"g{i}.pt", f"lab/r{attempt}-{i}"))
            except core.BudgetError:
                refused.append(i)
        threads = [threading.Thread(target=add, args=(i,)) for i in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(won) == 1 and len(refused) == 1, (won, refused)
        gone = next(iter(published.user_models()))
        published.purge(published.unregister(gone, confirm=gone)["id"])
    # what a killed upload left (an hour old) is swept, never counted against the quota for good
    stale = up / ".upload-deadbeef0000.pt"
    stale.write_bytes(data)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = up / ".upload-cafe00000000.pt"                     # one still being written: counts, kept
    fresh.write_bytes(b"x")
    published.add_upload(data, "g.pt", "lab/after")
    assert not stale.exists() and fresh.exists()


def test_display_names_and_file_names_show_as_typed_and_look_alike_names_are_refused(lab):
    """Text is text (issue #33): a display name or a file name carrying markdown (a live link, an
    image every visitor's browser would fetch, emphasis, an icon) is shown with those characters
    escaped; a model name with a Cyrillic or full-width letter beside an ASCII one is refused."""
    from dashboard.common import plain
    evil = "![x](http://evil.example/p.png) [here](https://evil.example) **b** :red[r] www.evil.example `c`"
    shown = plain(evil)
    for live in ("![x](", "[here](", "**b**", ":red[", "www.evil", "`c`", "http://", "https://"):
        assert live not in shown, (live, shown)
    assert shown.replace("\\", "").replace("\u2060", "") == evil     # nothing dropped: every character shows
    assert plain("lab/church-v2 (added by ann)") == "lab/church-v2 (added by ann)"
    at = AppTest.from_file(APP, default_timeout=120).switch_page("views/models.py").run()
    at.text_input(key="display_name_input").set_value(evil)
    at.text_input(key="add_name").set_value("lab/church")
    at.text_input(key="add_path").set_value(str(lab(1)))
    at.button(key="add_path_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    notice = at.success[0].value
    assert "![x](" not in notice and "\\!\\[x\\]" in notice and "lab/church" in notice
    assert all("![x](" not in c.value and "[here](" not in c.value for c in at.caption)
    up = lab(2)
    at.text_input(key="add_name").set_value("lab/other")
    at.file_uploader(key="upload").set_value(("![y](http://evil.example/q.png).pt", b"not weights", "x")).run()
    at.button(key="add_upload_button").click().run()
    assert at.error and "![y](" not in at.error[0].value and "\\!\\[y\\]" in at.error[0].value
    for look_alike in ("lab/\u0441hurch", "lab/\uff43hurch", "l\u0430b/church"):    # Cyrillic, full-width, Cyrillic
        with pytest.raises(core.InputError, match="must be ASCII letters"):
            published.register(look_alike, str(up), added_by="bob")


def test_an_upload_streams_from_its_file_object_and_stores_the_same_bytes(lab, tmp_path):
    """add_upload takes the uploaded file itself (what the Models page passes): written to disk in
    chunks, the same bytes and hash as from bytes; a file read to its end counts as empty."""
    src = lab(3)
    with open(src, "rb") as f:
        entry = published.add_upload(f, "g.pt", "lab/streamed", added_by="ann")
    assert sha(entry["path"]) == sha(src) == entry["sha256"]
    assert isinstance(core.load_generator("lab/streamed"), core.ProGAN)
    with open(src, "rb") as f:
        f.read()
        with pytest.raises(core.CheckpointError, match="is empty"):
            published.add_upload(f, "g.pt", "lab/empty")
    with pytest.raises(core.ArgumentTypeError, match="bytes or a binary file"):
        published.add_upload("not bytes", "g.pt", "lab/str")


def test_names_that_differ_only_in_case_or_punctuation_are_refused(lab):
    """Look-alikes beyond other alphabets (issue #33): beside ann's 'lab/church', 'lab/Church',
    'lab/church.' or 'lab/chur-ch' would pass for it; built-in names likewise."""
    published.register("lab/church", lab(1), added_by="ann")
    for twin in ("lab/Church", "LAB/church", "lab/church.", "lab/church-", "lab/chur_ch", "lab/c.h.u.r.c.h"):
        with pytest.raises(core.InputError, match=r"looks like 'lab/church' \(added by ann"):
            published.register(twin, lab(2), added_by="bob")
    for built_in in ("Toyworld/town", "progan/church-outdoor"):
        with pytest.raises(core.InputError, match="built-in"):
            published.register(built_in, lab(2), added_by="bob")
    assert list(published.user_models()) == ["lab/church"]
    published.register("lab/church-v2", lab(2), added_by="bob")          # differs in a letter or digit: fine


def test_a_flagged_unit_keeps_its_flagger_and_a_whole_set_respects_owners(lab):
    """Flagging a unit someone flagged already does not make it yours (else you could then unflag
    it); a whole set saved with by= unflags only that user's units."""
    m, layer, fp = "lab/g", "layer4", "ProGAN:abc"
    flags.flag_units(m, layer, [3], fp, by="ann")
    assert flags.flag_units(m, layer, [3, 4], fp, by="bob") == [3, 4]
    assert flags.flag_details(m, layer, fp)[3]["by"] == "ann" and flags.flag_details(m, layer, fp)[4]["by"] == "bob"
    with pytest.raises(core.InputError, match=r"units \[3\] were flagged by ann"):
        flags.unflag_units(m, layer, [3], fp, by="bob")
    with pytest.raises(core.InputError, match=r"units \[3\] were flagged by ann"):
        flags.save_flags(m, layer, [5], fp, by="bob")
    assert flags.load_flags(m, layer, fp) == [3, 4]
    assert flags.save_flags(m, layer, [3, 5], fp, by="bob") == [3, 5]            # only bob's own unit 4 goes
    assert flags.save_flags(m, layer, [], fp) == []                               # a script owning the flags may

"""Every removal can be undone (issue #33): unregistering a model logs an event and moves its upload
into the trash beside the uploads; its owner (or an admin) restores it — the same entry, the same
bytes — or deletes it for good; removals past $GANATOMY_TRASH_DAYS go at the next sweep (never on a
read); the trash counts against the uploads quota; an unflag is undone by who had flagged."""
from __future__ import annotations

import hashlib
import io
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
from core.userdata import models as registry

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")


def _weights(seed: int) -> bytes:
    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(core.ProGAN(8, (8, 4)).state_dict(), buf)
    return buf.getvalue()


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_MODEL_ROOTS", str(tmp_path))
    monkeypatch.delenv("GANATOMY_ADMINS", raising=False)
    monkeypatch.delenv("GANATOMY_TRASH_DAYS", raising=False)
    return monkeypatch


def test_remove_then_restore_gives_back_the_same_entry_and_bytes(lab, tmp_path):
    data = _weights(1)
    entry = published.add_upload(data, "g.pt", "lab/g", added_by="ann")
    before = sha(entry["path"])
    ev = published.unregister("lab/g", confirm="lab/g", by="ann")
    assert "lab/g" not in published.user_models() and not Path(entry["path"]).exists()
    [row] = published.removed_models(by="ann")
    assert row["id"] == ev["id"] and row["name"] == "lab/g" and row["removed_by"] == "ann" and row["may_undo"]
    assert row["added_by"] == "ann" and row["file_here"] and row["trash_bytes"] == len(data)
    trash = list((tmp_path / "models" / "trash").iterdir())
    assert len(trash) == 1 and sha(trash[0]) == before            # moved, not copied: one file
    assert published.restore(row["id"], by="ann") == entry
    assert published.user_models()["lab/g"] == entry and sha(entry["path"]) == before
    assert published.removed_models() == [] and list((tmp_path / "models" / "trash").iterdir()) == []
    assert isinstance(core.load_generator("lab/g"), core.ProGAN)
    with pytest.raises(core.UnknownNameError, match="restored or deleted for good already"):
        published.restore(row["id"], by="ann")
    # a model added by path: its file is the user's, never moved; restore points at it again
    p = tmp_path / "mine.pt"
    p.write_bytes(_weights(2))
    published.register("lab/path", p, added_by="ann")
    ev = published.unregister("lab/path", confirm="lab/path", by="ann")
    assert p.exists() and published.removed_models()[0]["trash_bytes"] == 0
    published.restore(ev["id"], by="ann")
    assert published.user_models()["lab/path"]["path"] == str(p.resolve())
    ev = published.unregister("lab/path", confirm="lab/path", by="ann")
    published.purge(ev["id"], by="ann")
    assert p.exists() and published.removed_models() == []        # purge never deletes a file added by path


def test_another_user_cannot_restore_or_purge_and_sees_no_undo(lab):
    published.add_upload(_weights(1), "g.pt", "lab/g", added_by="ann")
    ev = published.unregister("lab/g", confirm="lab/g", by="ann")
    [row] = published.removed_models(by="bob")
    assert not row["may_undo"]
    with pytest.raises(core.InputError, match=r"added by ann.*only they \(or an admin.*undo its removal.*'bob'"):
        published.restore(ev["id"], by="bob")
    with pytest.raises(core.InputError, match="delete its removal"):
        published.purge(ev["id"], by="bob")
    assert published.removed_models()[0]["file_here"] and "lab/g" not in published.user_models()
    lab.setenv("GANATOMY_ADMINS", "pi")
    assert published.removed_models(by="pi")[0]["may_undo"]
    published.restore(ev["id"], by="pi")                             # an admin may
    assert published.user_models()["lab/g"]["added_by"] == "ann"


def test_restore_is_refused_when_the_name_was_taken_again(lab):
    first = published.add_upload(_weights(1), "g.pt", "lab/g", added_by="ann")
    ev = published.unregister("lab/g", confirm="lab/g", by="ann")
    published.add_upload(_weights(2), "g.pt", "lab/g", added_by="bob")
    with pytest.raises(core.InputError, match=r"taken again since it was removed \(added by bob"):
        published.restore(ev["id"], by="ann")
    assert published.user_models()["lab/g"]["added_by"] == "bob"
    assert published.removed_models()[0]["file_here"]                 # ann's file still waits in the trash
    # the replacement removed: the model it replaced comes back; undoing that removal replaces it again
    lab.setenv("GANATOMY_ADMINS", "pi")
    repl = published.add_upload(_weights(3), "g.pt", "lab/g", replace=True, added_by="pi")
    ev2 = published.unregister("lab/g", confirm="lab/g", by="pi")
    assert published.user_models()["lab/g"]["added_by"] == "bob"
    back = published.restore(ev2["id"], by="pi")
    assert back["path"] == repl["path"] and back["replaced"][-1]["added_by"] == "bob"
    assert published.user_models()["lab/g"]["added_by"] == "pi" and Path(repl["path"]).exists()
    assert first["path"] != repl["path"]


def test_restore_is_refused_when_the_file_is_gone_and_purge_deletes_the_file(lab, tmp_path):
    published.add_upload(_weights(1), "g.pt", "lab/g", added_by="ann")
    ev = published.unregister("lab/g", confirm="lab/g", by="ann")
    [f] = (tmp_path / "models" / "trash").iterdir()
    f.unlink()                                                        # someone cleaned the disk by hand
    assert not published.removed_models()[0]["file_here"]
    with pytest.raises(core.CacheError, match="its file .* is gone"):
        published.restore(ev["id"], by="ann")
    published.purge(ev["id"], by="ann")
    published.add_upload(_weights(2), "g.pt", "lab/h", added_by="ann")
    ev = published.unregister("lab/h", confirm="lab/h", by="ann")
    [f] = (tmp_path / "models" / "trash").iterdir()
    published.purge(ev["id"], by="ann")
    assert not f.exists() and published.removed_models() == []
    assert [p for p in (tmp_path / "models" / "uploads").iterdir() if not p.name.startswith(".")] == []
    with pytest.raises(core.UnknownNameError):
        published.purge(ev["id"], by="ann")


def test_a_sweep_deletes_removals_past_their_days_and_never_a_read(lab, tmp_path):
    published.add_upload(_weights(1), "g.pt", "lab/old", added_by="ann")
    old = published.unregister("lab/old", confirm="lab/old", by="ann")
    published.add_upload(_weights(2), "g.pt", "lab/new", added_by="ann")
    later = time.time() + 20 * 86400
    assert published.sweep_trash(now=later)["purged"] == []           # 20 days: within 30
    lab.setenv("GANATOMY_TRASH_DAYS", "10")
    for _ in range(3):
        assert [r["id"] for r in published.removed_models()] == [old["id"]]    # reading purges nothing
    assert published.sweep_trash(now=later)["purged"] == ["lab/old"]
    assert published.removed_models() == [] and list((tmp_path / "models" / "trash").iterdir()) == []
    assert "lab/new" in published.user_models() and Path(published.user_models()["lab/new"]["path"]).exists()
    lab.setenv("GANATOMY_TRASH_DAYS", "0")                            # 0: gone at the next registration
    published.unregister("lab/new", confirm="lab/new", by="ann")
    published.add_upload(_weights(3), "g.pt", "lab/third", added_by="ann")
    assert published.removed_models() == []
    lab.setenv("GANATOMY_TRASH_DAYS", "soon")
    with pytest.raises(core.InputError, match="GANATOMY_TRASH_DAYS must be a number of days"):
        published.sweep_trash()


def test_the_trash_counts_against_the_uploads_quota(lab, tmp_path):
    data = _weights(1)
    lab.setenv("GANATOMY_UPLOAD_QUOTA_MB", str(1.5 * len(data) / 2 ** 20))
    published.add_upload(data, "g.pt", "lab/one", added_by="ann")
    ev = published.unregister("lab/one", confirm="lab/one", by="ann")
    with pytest.raises(core.BudgetError) as e:
        published.add_upload(_weights(2), "g.pt", "lab/two", added_by="ann")
    assert "removed models kept in the trash" in str(e.value) and "Delete for good" in e.value.fix
    published.purge(ev["id"], by="ann")
    published.add_upload(_weights(2), "g.pt", "lab/two", added_by="ann")


def test_two_restores_of_one_removal_exactly_one_wins(lab):
    published.add_upload(_weights(1), "g.pt", "lab/g", added_by="ann")
    ev = published.unregister("lab/g", confirm="lab/g", by="ann")
    go = threading.Barrier(4)
    won, lost = [], []

    def restore():
        go.wait()
        try:
            won.append(published.restore(ev["id"], by="ann"))
        except core.GanatomyError as e:
            lost.append(e)

    threads = [threading.Thread(target=restore) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(won) == 1 and len(lost) == 3 and all(isinstance(e, core.UnknownNameError) for e in lost)
    assert Path(published.user_models()["lab/g"]["path"]).exists() and published.removed_models() == []


def test_a_kill_between_the_event_and_the_move_is_finished_by_the_sweep(lab, tmp_path, monkeypatch):
    """The event is written first, then the file moved: a kill in between leaves the file in the
    uploads, where restore still finds it and the next sweep moves it; files nothing refers to
    (an upload placed but never registered, a trash file of a purge killed midway) go when old."""
    entry = published.add_upload(_weights(1), "g.pt", "lab/g", added_by="ann")
    real = os.replace

    def killed_before_the_move(a, b):
        if Path(b).parent.name == "trash":
            raise OSError(5, "killed")
        return real(a, b)
    monkeypatch.setattr(registry.os, "replace", killed_before_the_move)
    ev = published.unregister("lab/g", confirm="lab/g", by="ann")
    monkeypatch.setattr(registry.os, "replace", real)
    assert Path(entry["path"]).exists() and published.removed_models()[0]["file_here"]
    assert published.sweep_trash()["moved"] == 1 and not Path(entry["path"]).exists()
    up, trash = tmp_path / "models" / "uploads", tmp_path / "models" / "trash"
    orphan, stray = up / "lab_x-0123456789abcdef.pt", trash / "0123456789ab-lost.pt"
    for f in (orphan, stray):
        f.write_bytes(b"x" * 10)
    assert published.sweep_trash()["orphans"] == 0                    # young: maybe still being written
    for f in (orphan, stray):
        os.utime(f, (time.time() - 7200, time.time() - 7200))
    assert published.sweep_trash()["orphans"] == 2 and not orphan.exists() and not stray.exists()
    published.restore(ev["id"], by="ann")
    assert sha(entry["path"]) == entry["sha256"]


def test_an_unflag_is_undone_by_who_had_flagged(lab):
    m, layer, fp = "lab/g", "layer4", "ProGAN:abc"
    flags.flag_units(m, layer, [3, 5], fp, by="ann")
    flags.unflag_units(m, layer, [3], fp, by="ann")
    [row] = flags.recently_unflagged(m, layer, fp, by="bob")
    assert row["unit"] == 3 and row["flagged_by"] == "ann" and row["unflagged_by"] == "ann" and not row["may_undo"]
    with pytest.raises(core.InputError, match="flagged by ann: only they"):
        flags.undo_unflag(m, layer, 3, fp, by="bob")
    assert flags.undo_unflag(m, layer, 3, fp, by="ann") == [3, 5]
    assert flags.flag_details(m, layer, fp)[3]["by"] == "ann" and flags.recently_unflagged(m, layer, fp) == []
    with pytest.raises(core.InputError, match="flagged now"):
        flags.undo_unflag(m, layer, 3, fp, by="ann")
    lab.setenv("GANATOMY_ADMINS", "pi")
    flags.unflag_units(m, layer, [5], fp, by="pi")                     # an admin unflags ann's unit, ann undoes it
    assert flags.undo_unflag(m, layer, 5, fp, by="ann") == [3, 5]


def test_the_models_page_undoes_a_removal_with_its_button(lab, tmp_path):
    p = tmp_path / "g.pt"
    p.write_bytes(_weights(1))
    up = published.add_upload(p.read_bytes(), "g.pt", "lab/church", added_by="ann")

    def page(who):
        at = AppTest.from_file(APP, default_timeout=120).switch_page("views/models.py").run()
        at.text_input(key="display_name_input").set_value(who).run()
        assert not at.exception, at.exception
        return at

    at = page("ann")
    at.text_input(key="remove_confirm").set_value("lab/church")
    at.button(key="remove_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "lab/church" not in published.user_models() and "Undo" in at.success[0].value
    [row] = published.removed_models()
    assert any("lab/church" in m.value and "removed by ann" in m.value for m in at.markdown)
    bob = page("bob")                                                  # another user: listed, no buttons
    assert any("lab/church" in m.value for m in bob.markdown)
    assert not [b for b in bob.button if b.key in (f"undo-{row['id']}", f"purge-{row['id']}")]
    at.button(key=f"undo-{row['id']}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Restored" in at.success[0].value
    assert published.user_models()["lab/church"] == up and sha(up["path"]) == up["sha256"]
    assert not [b for b in at.button if b.key == f"undo-{row['id']}"]
    ev = published.unregister("lab/church", confirm="lab/church", by="ann")
    at = page("ann")
    at.button(key=f"purge-{ev['id']}").click().run()
    assert not at.exception and not at.error and published.removed_models() == []
    assert not Path(up["path"]).exists() and list((tmp_path / "models" / "trash").iterdir()) == []


def test_the_trash_never_moves_or_deletes_what_is_not_its_own(lab, tmp_path):
    """A hand-edited removal naming a file outside the trash, or an entry outside the uploads, is
    never moved or deleted; a trash or uploads folder that links elsewhere is never swept."""
    precious = tmp_path / "precious.txt"
    precious.write_text("work")
    (tmp_path / "models" / "trash").mkdir(parents=True)
    t = tmp_path / "models" / "trash" / "0123456789ab-lab_f-0123456789abcdef.pt"
    t.write_bytes(_weights(1))
    outside = tmp_path / "etc" / "cron.pt"

    def forge(path, trash):
        ev = {"id": "0123456789ab", "name": "lab/f", "removed_by": "ann", "removed_at": registry.timestamp(),
              "trash": trash, "came_back": None, "entry": {"kind": "generator", "arch": "progan", "path": path,
                                                           "options": {}, "added_by": "ann", "added_at": ""}}
        (tmp_path / "models" / "registry.json").write_text(__import__("json").dumps({"~removed": [ev]}))
    forge(str(tmp_path / "models" / "uploads" / "lab_f-0123456789abcdef.pt"), str(precious))
    with pytest.raises(core.CacheError, match="is gone"):
        published.restore("0123456789ab", by="ann")
    published.purge("0123456789ab", by="ann")
    assert precious.read_text() == "work"
    forge(str(outside), str(t))
    with pytest.raises(core.CacheError, match="not the uploads folder"):
        published.restore("0123456789ab", by="ann")
    assert not outside.exists() and t.exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    theirs = shared / "lab_x-0123456789abcdef.pt"
    theirs.write_text("someone's")
    os.utime(theirs, (0, 0))
    (tmp_path / "models" / "uploads").symlink_to(shared)
    published.sweep_trash(now=time.time() + 10 ** 8)
    assert theirs.exists() and precious.exists()


def test_a_malformed_retention_setting_is_said_on_the_models_page(lab, tmp_path):
    published.add_upload(_weights(1), "g.pt", "lab/g", added_by="ann")
    published.unregister("lab/g", confirm="lab/g", by="ann")
    lab.setenv("GANATOMY_TRASH_DAYS", "soon")
    at = AppTest.from_file(APP, default_timeout=120).switch_page("views/models.py").run()
    assert not at.exception, at.exception
    assert any("GANATOMY_TRASH_DAYS" in e.value for e in at.error)
    assert any("lab/g" in m.value for m in at.markdown)                  # the list is still shown

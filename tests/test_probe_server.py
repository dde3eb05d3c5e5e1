"""The probe suite of the lab server (scripts/probe_server.py, issue #33): a few of its cases run
through its API and hold; a planted broken case is reported as failed, and makes the run exit 1,
so the table can fail; every case's sandbox is undone after it."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "probe_server.py"


@pytest.fixture(scope="module")
def probes():
    spec = importlib.util.spec_from_file_location("probe_server", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["probe_server"] = mod                     # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


SOME = ["file/zip-bomb", "file/pickle-runs-code", "path/symlink-out-of-the-roots", "names/look-alike-model-names",
        "runtime/nan-for-some-z-dissect", "disk/flag-write", "kill/after-file-before-registry",
        "own/race-restore", "cache/symlinked-trash", "rewrite/chain-loop"]


def test_the_suite_has_its_cases(probes):
    groups = {name.split("/")[0] for name in probes.PROBES}
    assert len(probes.PROBES) >= 40 and groups >= {"file", "path", "names", "runtime", "disk", "kill", "own", "cache"}
    assert all(p.expect and p.name.count("/") == 1 for p in probes.PROBES.values())
    assert set(SOME) <= set(probes.PROBES)


@pytest.mark.parametrize("name", SOME)
def test_a_few_cases_hold(probes, name, monkeypatch):
    before = {k: os.environ.get(k) for k in ("GANATOMY_MODELS", "GANATOMY_CACHE", "GANATOMY_MODEL_ROOTS")}
    row = probes.run_probe(probes.PROBES[name])
    assert row["verdict"] == "held", row
    assert row["case"] == name and row["observation"] and "\n" not in row["observation"] and row["seconds"] < 30
    assert {k: os.environ.get(k) for k in before} == before               # the sandbox is undone


def test_a_broken_case_is_reported_failed_and_fails_the_run(probes, tmp_path, monkeypatch, capsys):
    said_no = probes.Probe("planted/says-no", "a case that does not hold", lambda box: (False, "planted failure"))
    raises = probes.Probe("planted/raises", "a case that raises", lambda box: 1 / 0)
    assert probes.run_probe(said_no)["verdict"] == "failed"
    row = probes.run_probe(raises)
    assert row["verdict"] == "failed" and row["observation"].startswith("raised ZeroDivisionError")
    monkeypatch.setitem(probes.PROBES, said_no.name, said_no)
    out = tmp_path / "probe.json"
    assert probes.main(["--only", "planted/", "file/empty", "--out", str(out)]) == 1
    import json
    report = json.loads(out.read_text())
    assert (report["tried"], report["held"], report["failed"]) == (2, 1, 1) and "provenance" in report
    assert [r["verdict"] for r in report["cases"]] == ["held", "failed"]
    assert "2 cases tried, 1 held, 1 failed" in capsys.readouterr().out
    assert probes.main(["--only", "file/empty", "--no-report"]) == 0

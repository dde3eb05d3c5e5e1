"""core.base.provenance: every report says which command, commit, machine, load and versions made it,
and is written whole or not at all."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]


def git(*args, cwd=ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_stamp_names_the_command_commit_machine_load_versions_and_time():
    before = dt.datetime.now(dt.timezone.utc)
    s = provenance.stamp(["benchmarks/bench_ace.py", "--concepts", "door", "two words"])
    assert s["command"] == "python benchmarks/bench_ace.py --concepts door 'two words'"
    assert s["commit"] == git("rev-parse", "HEAD")
    assert isinstance(s["dirty"], bool)
    assert isinstance(s["load_1min_start"], float) and s["load_1min_start"] >= 0
    m = s["machine"]
    assert m["cpus"] == os.cpu_count() and 1 <= m["cpus_usable"] <= m["cpus"]
    assert isinstance(m["cpu"], str) and m["cpu"]
    assert m["ram_gib"] > 0 and m["torch_threads"] == torch.get_num_threads()
    assert m["gpus"] == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else m["gpus"] == []
    assert s["versions"]["python"] == platform.python_version()
    assert s["versions"]["torch"] == torch.__version__
    assert s["versions"]["torchvision"] == importlib.metadata.version("torchvision")
    started = dt.datetime.fromisoformat(s["started_utc"])
    assert started.utcoffset() == dt.timedelta(0) and before <= started <= dt.datetime.now(dt.timezone.utc)
    json.dumps(s)                                                    # plain JSON as it is


def test_the_default_command_is_sys_argv_with_the_script_as_typed_from_here(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "stress_cache.py"), "--n", "3"])
    assert provenance.stamp()["command"] == "python benchmarks/stress_cache.py --n 3"
    monkeypatch.setattr(sys, "argv", ["scripts/report_ace.py"])
    assert provenance.stamp()["command"] == "python scripts/report_ace.py"


def test_git_state_tells_a_clean_tree_from_a_dirty_one_and_knows_its_top(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git("init", "-q", cwd=repo)
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "one", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo)
    assert provenance.git_state(repo) == {"commit": head, "dirty": False}
    (repo / "a.txt").write_text("two\n")
    assert provenance.git_state(repo) == {"commit": head, "dirty": True}
    # a folder inside someone else's checkout (an installed package in a venv) is not a checkout
    assert provenance.git_state(repo / "sub") == {"commit": None, "dirty": None}
    assert provenance.git_state(tmp_path / "nothing") == {"commit": None, "dirty": None}


def test_a_report_is_the_stamp_then_the_payload_replacing_the_old_file_whole(tmp_path):
    out = tmp_path / "reports" / "bench.json"
    out.parent.mkdir()
    out.write_text("x" * 100_000)                                    # longer than the report: no tail may survive
    started = provenance.stamp(["benchmarks/bench_dissect.py", "--samples", "8"])
    payload = {"seconds": np.float32(1.5), "units": np.arange(3), "count": np.int64(7), "where": tmp_path}
    assert provenance.write_report(out, payload, started=started) == out
    r = json.loads(out.read_text())
    assert list(r) == ["provenance", "seconds", "units", "count", "where"]
    assert r["seconds"] == 1.5 and r["units"] == [0, 1, 2] and r["count"] == 7 and r["where"] == str(tmp_path)
    p = r["provenance"]
    assert {k: p[k] for k in started if k not in ("load_1min_end", "finished_utc", "seconds")} == \
        {k: v for k, v in started.items() if k not in ("load_1min_end", "finished_utc", "seconds")}
    assert p["command"] == "python benchmarks/bench_dissect.py --samples 8"
    assert isinstance(p["load_1min_end"], float) and p["seconds"] >= 0
    assert dt.datetime.fromisoformat(p["finished_utc"]) >= dt.datetime.fromisoformat(p["started_utc"])
    assert started["load_1min_end"] is None                          # the caller's stamp is not changed
    assert sorted(x.name for x in out.parent.iterdir()) == ["bench.json"]     # no temporary left


def test_a_write_that_fails_halfway_leaves_the_old_report(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    provenance.write_report(out, {"run": 1})
    old = out.read_bytes()
    real = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError):
        provenance.write_report(out, {"run": 2})
    monkeypatch.undo()
    assert out.read_bytes() == old and json.loads(old)["run"] == 1
    assert [x.name for x in tmp_path.iterdir()] == ["bench.json"]


def test_a_partial_rewrite_keeps_the_rest_and_the_stamps_of_earlier_runs(tmp_path):
    out = tmp_path / "causal.json"
    first = provenance.stamp(["scripts/report_causal.py"])
    provenance.write_report(out, {"concepts": {"door": 1}, "removal_table": [1]}, started=first)
    second = provenance.stamp(["scripts/report_causal.py", "--table-only"])
    provenance.write_report(out, {"removal_table": [2]}, started=second, part="removal_table")
    provenance.write_report(out, {"removal_table": [3]}, started=second, part="removal_table")   # same run again
    r = json.loads(out.read_text())
    assert r["concepts"] == {"door": 1} and r["removal_table"] == [3]
    assert r["provenance"]["command"] == "python scripts/report_causal.py --table-only"
    assert r["provenance"]["part"] == "removal_table"
    assert [e["command"] for e in r["provenance"]["earlier"]] == ["python scripts/report_causal.py"]
    assert "earlier" not in r["provenance"]["earlier"][0]


def test_a_report_from_before_the_stamp_moves_its_ad_hoc_fields_into_earlier(tmp_path):
    out = tmp_path / "repair.json"
    legacy = {"model": "toyworld/town", "hardware": "CPU (x86_64), 2 threads",
              "command": "python scripts/report_repair.py",
              "load_average_1min_start": 1.5, "table_all_samples_command": "python scripts/report_repair.py --all"}
    out.write_text(json.dumps(legacy))
    assert provenance.of(legacy) == {k: v for k, v in legacy.items() if k != "model"}
    provenance.write_report(out, {**legacy, "dark_sky": 0.1}, part="dark_sky")     # a payload read back from it
    r = json.loads(out.read_text())
    assert set(r) == {"provenance", "model", "dark_sky"}
    assert r["provenance"]["earlier"] == [provenance.of(legacy)]
    assert provenance.of(r) is r["provenance"]


def test_a_benchmark_writes_its_report_through_the_helper(tmp_path, monkeypatch):
    """benchmarks/stress_cache.py, tiny, as `python benchmarks/stress_cache.py ...` from the root."""
    spec = importlib.util.spec_from_file_location("stress_cache_run", ROOT / "benchmarks" / "stress_cache.py")
    stress = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "cache_stress.json"
    method = "fork" if "fork" in stress.mp.get_all_start_methods() else "spawn"
    args = ["--n", "2", "--start-method", method, "--out", str(out)]
    assert stress.main(args) == 0
    r = json.loads(out.read_text())
    assert r["provenance"]["command"] == "python benchmarks/stress_cache.py " + " ".join(args)
    assert r["provenance"]["commit"] == git("rev-parse", "HEAD")
    assert r["failures"] == 0 and r["saves"] == 3 * 2 * 2
    assert not {"command", "cpu_count", "load_average_before", "platform"} & set(r)

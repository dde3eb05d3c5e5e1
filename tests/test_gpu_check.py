"""The prepared GPU check runs end to end (tiny, on the CPU): every step and figure is there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                    "--out", str(out)], check=True, timeout=300, capture_output=True,
                   env={**os.environ, "GANATOMY_CACHE": str(tmp_path / "cache")})
    r = json.loads(out.read_text())
    assert r["quick"] is True
    assert set(r) >= {"published", "dissection", "whatif_published", "ace", "whatif_town", "two_sessions", "floors"}
    d = r["dissection"]
    assert d["bare_images_per_s"] > 0 and d["dissect_images_per_s"] > 0 and 0 < d["ratio_to_bare"]
    assert 0 <= d["bf16"]["same_best_concept_as_fp32"] <= 1
    assert r["two_sessions"]["whatifs_during_the_dissection"] >= 1
    assert r["two_sessions"]["images_differing_from_solo"] == 0     # sessions never see each other's edits
    assert len(r["ace"]["top_units"]) == 10
    assert r["provenance"]["command"].startswith("python ") and r["provenance"]["command"].endswith(
        f"gpu_check.py --device cpu --quick --out {out}")
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert "benchmarks/gpu_check.py --device cuda" in text and "timeout 480" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check would run in full")
def test_scripts_gpu_check_sh_still_runs_the_benchmark():
    """The docs' ``bash scripts/gpu_check.sh`` reaches benchmarks/gpu_check.sh (here: its refusal without CUDA)."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--quick"], check=False, capture_output=True,
                       text=True, timeout=300, cwd="/", env=env)
    assert r.returncode != 0 and "gpu_check.sh: torch sees no CUDA device here" in r.stderr, r.stderr[-2000:]

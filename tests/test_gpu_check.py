"""The prepared GPU check runs end to end (tiny, on the CPU): every step and figure is there."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--quick",
                    "--out", str(out)], check=True, timeout=300, capture_output=True,
                   env={**__import__("os").environ, "GANATOMY_CACHE": str(tmp_path / "cache")})
    r = json.loads(out.read_text())
    assert r["quick"] is True
    assert set(r) >= {"published", "dissection", "whatif_published", "ace", "whatif_town", "two_sessions", "floors"}
    d = r["dissection"]
    assert d["bare_images_per_s"] > 0 and d["dissect_images_per_s"] > 0 and 0 < d["ratio_to_bare"]
    assert 0 <= d["bf16"]["same_best_concept_as_fp32"] <= 1
    assert r["two_sessions"]["whatifs_during_the_dissection"] >= 1
    assert r["two_sessions"]["images_differing_from_solo"] == 0     # sessions never see each other's edits
    assert len(r["ace"]["top_units"]) == 10
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    assert "gpu_check.py --device cuda" in text and "timeout 480" in text

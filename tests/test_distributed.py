"""Sharded over 2 gloo processes (``torchrun``), unit FID, ACE's evaluation (the causal effect of a
unit set and the ablation curve) and the removal table equal the single-process results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.base import distributed

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
import json, os, sys
sys.path[:0] = [{root!r}, {tests!r}]
import torch
if "RANK" in os.environ:
    torch.distributed.init_process_group("gloo")
from core.base.distributed import rank_world
from core.engine import causal, repair
from core.studies import over_seeds
from planted_causal import DOOR_UNITS, PlantedCausalGenerator, SoftColorSegmenter
from test_repair import ArtifactGenerator, features, real_stats

G, seg = PlantedCausalGenerator(), SoftColorSegmenter()
out = {{}}
eff = causal.causal_effect(G, seg, "feat", DOOR_UNITS[:3], "door", 1.0, n_samples=37, batch_size=8)
out["effect"] = [eff["base"], eff["insert"], eff["ablate"]]
curve = causal.ablation_curve(G, seg, "feat", "door", {{"ace": [0, 1, 2, 3, 4], "iou": [5, 6, 0, 1, 2]}},
                              counts=(1, 3, 5), n_samples=45, batch_size=8)
out["curve"] = curve.removed.tolist()
A = ArtifactGenerator()
real = real_stats(A, n=1000)
uf = repair.unit_fid(A, "units", features, real, n_samples=250, top=20, batch_size=32)
out["unit_fid"] = uf.fid.tolist()
out["top_index"] = uf.top_index.tolist()
table = over_seeds.removal_table({{"planted": G}}, seg, "feat", ["door", "sky", "wall"], n_units=5, ace_steps=20,
                                 n_samples=24, batch_size=8, lr=0.05, pool_size=24)
out["removal"] = [[r.concept, r.units, r.removed_percent] for r in table.itertuples()]
rank, world = rank_world()
with open(os.path.join({out!r}, f"r{{rank}}_w{{world}}.json"), "w") as f:
    json.dump(out, f)
if "RANK" in os.environ:      # an undestroyed gloo group can abort the process at exit
    torch.distributed.destroy_process_group()
'''


def test_outside_torchrun_one_process():
    assert distributed.rank_world() == (0, 1)
    assert list(distributed.batches(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert distributed.all_sum({"a": 1.5}) == {"a": 1.5}


def test_gloo_two_processes_equal_one(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANATOMY_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, str(script)], check=True, env=env, timeout=300)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29541", str(script)], env=env, timeout=400, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    single = json.loads((tmp_path / "r0_w1.json").read_text())
    for rank in (0, 1):
        sharded = json.loads((tmp_path / f"r{rank}_w2.json").read_text())
        assert sharded["effect"] == pytest.approx(single["effect"], rel=1e-12, abs=1e-12)
        assert sharded["curve"] == pytest.approx(single["curve"], rel=1e-12, abs=1e-12)
        assert np.array_equal(sharded["top_index"], single["top_index"])
        assert sharded["unit_fid"] == pytest.approx(single["unit_fid"], rel=1e-9, abs=1e-9)
        assert sharded["removal"] == single["removal"]
    # the measurements are not trivial: the door units remove doors, the ranking matters
    assert single["curve"][2] == pytest.approx(1.0) and single["curve"][3] < 0.5
    assert single["effect"][1] > single["effect"][0] > single["effect"][2]

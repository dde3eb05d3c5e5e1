"""scripts/ship_gans.py: which snapshots become shipped models, and what their cards keep."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ship_gans", ROOT / "scripts" / "ship_gans.py")
ship_gans = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship_gans)


def _run(train: Path, name: str, steps: list[int]):
    snaps = train / f"gan_{name}" / "snapshots"
    snaps.mkdir(parents=True)
    for s in steps:       # each snapshot's weights differ, so a copy can be told from its neighbours
        torch.save({"meta": {"scene": name.split("_")[0], "resolution": 16, "steps": s, "fid": 1.0 / s},
                    "weights": torch.full((4,), float(s))}, snaps / f"step-{s}.pt")


def _ship(train, gans, *args):
    ship_gans.main(["--train-dir", str(train), "--gan-dir", str(gans), *args])


def _weights(path: Path) -> float:
    return float(torch.load(path, weights_only=True)["weights"][0])


def test_chosen_final_and_series_and_what_cards_keep(tmp_path):
    train, gans = tmp_path / "train", tmp_path / "gans"
    _run(train, "town", [100, 200, 300, 400])
    _run(train, "lake_diverged", [100])                  # not a model name: never shipped
    _ship(train, gans, "--at", "town=300", "--series-steps", "town=100,200")
    assert sorted(p.name for p in gans.glob("*.pt")) == ["town.pt", "town@step-100.pt", "town@step-200.pt"]
    assert _weights(gans / "town.pt") == 300 and _weights(gans / "town@step-200.pt") == 200
    card = json.loads((gans / "town.json").read_text())
    assert card["name"] == "toyworld/town" and card["steps"] == 300 and "ms_swd" not in card

    # evaluations written later (report_gans) survive a re-ship of the same weights, not of others
    for f, extra in [("town@step-100.json", {"series_fid": 7.5, "eval_x": 1}),
                     ("town.json", {"eval_fid_10k_real": 0.5})]:
        c = json.loads((gans / f).read_text())
        c.update(extra)
        (gans / f).write_text(json.dumps(c))
    _ship(train, gans, "--series-steps", "town=100")     # final: the latest (400); step 200 leaves the series
    assert sorted(p.name for p in gans.glob("*")) == ["town.json", "town.pt", "town@step-100.json", "town@step-100.pt"]
    assert _weights(gans / "town.pt") == 400
    kept = json.loads((gans / "town@step-100.json").read_text())
    assert kept["series_fid"] == 7.5 and kept["eval_x"] == 1
    assert "eval_fid_10k_real" not in json.loads((gans / "town.json").read_text())   # other weights now


def test_bad_choices_are_refused_before_anything_changes(tmp_path):
    train, gans = tmp_path / "train", tmp_path / "gans"
    _run(train, "town", [100, 200, 300])
    _ship(train, gans, "--series-steps", "town=100,200")
    before = {p.name: p.read_bytes() for p in gans.iterdir()}
    with pytest.raises(SystemExit, match=r"\[250\]"):                 # names the missing step and the steps there
        _ship(train, gans, "--series-steps", "town=100,250")
    with pytest.raises(SystemExit, match="no step-350.pt"):
        _ship(train, gans, "--at", "town=350")
    with pytest.raises(SystemExit, match="NAME=S1,S2"):
        _ship(train, gans, "--series-steps", "town=100,abc")
    with pytest.raises(SystemExit, match="before the final step 200"):   # a series member after the final
        _ship(train, gans, "--at", "town=200", "--series-steps", "town=100,300")
    assert {p.name: p.read_bytes() for p in gans.iterdir()} == before


def test_card_records_each_stretch_of_a_run_that_moved_to_a_gpu(tmp_path):
    """A run trained on a CPU at batch 16, then resumed on a GPU at batch 64: the card lists both
    stretches up to the shipped step (not the stretches after it), both machines, and the real
    images seen (from the snapshot, not steps x the last batch)."""
    train, gans = tmp_path / "train", tmp_path / "gans"
    _run(train, "room", [100, 300])
    cpu = {"lr": 0.002, "r1": 1.0, "r1_every": 4, "batch": 16, "hardware": "CPU (x86_64), 2 threads"}
    gpu = {**cpu, "batch": 64, "hardware": "NVIDIA H100 80GB HBM3"}
    log = [{"step": 0, "start": {**cpu, "lr": 0.01}}, {"step": 0, "start": cpu}, {"step": 50, "d": 1.0},
           {"step": 80, "start": cpu},
           {"step": 120, "start": gpu}, {"step": 300, "start": {**gpu, "lr": 0.001}}]
    (train / "gan_room" / "log.json").write_text(json.dumps(log))
    snap = train / "gan_room" / "snapshots" / "step-300.pt"
    ck = torch.load(snap, weights_only=True)
    ck["meta"].update(batch=64, images=120 * 16 + 180 * 64, hardware=gpu["hardware"])
    torch.save(ck, snap)
    _ship(train, gans, "--runs", "room")
    card = json.loads((gans / "room.json").read_text())
    assert [(r["from_step"], r["to_step"], r["batch"]) for r in card["stretches"]] == [(0, 120, 16), (120, 300, 64)]
    assert card["stretches"][0]["lr"] == 0.002          # the immediate restart's options held
    assert card["images"] == 13440 and card["hardware"] == "CPU (x86_64), 2 threads + NVIDIA H100 80GB HBM3"

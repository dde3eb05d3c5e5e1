"""`python -m core dissect`: outputs, report, and clear errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

import core
from core.engine.bases import fit_basis

ROOT = Path(__file__).resolve().parents[1]


def _ckpt(tmp_path):
    torch.manual_seed(0)
    G = core.ProGAN(32, (32, 32, 16, 8))          # 32x32 images
    p = tmp_path / "tiny.pt"
    torch.save({"state_dict": G.state_dict()}, p)
    return p


def run(args, tmp_path):
    env = {"GANATOMY_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_cli_dissect_writes_json_csv_html(tmp_path):
    p = _ckpt(tmp_path)
    out = tmp_path / "out"
    r = run(["dissect", "--model", str(p), "--layers", "layer3", "layer4", "--samples", "24",
             "--out", str(out), "--strip-units", "3"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "dissect" in r.stderr and "24/24" in r.stderr          # the progress bar
    data = json.loads((out / "dissection.json").read_text())
    assert [s["layer"] for s in data["summary"]] == ["layer3", "layer4"]
    assert len(data["layers"]["layer3"]) == 32 and len(data["layers"]["layer4"]) == 32
    rows = list(csv.DictReader((out / "units.csv").open()))
    assert len(rows) == 64 and {"unit", "label", "iou", "threshold", "layer"} <= set(rows[0])
    html = (out / "report.html").read_text()
    assert html.count("<img src='data:image/png;base64,") == 6        # 3 strips per layer, inline
    # second run hits the cache
    r2 = run(["dissect", "--model", str(p), "--layers", "layer3", "layer4", "--samples", "24",
              "--out", str(out), "--strip-units", "0"], tmp_path)
    assert json.loads(r2.stdout.strip().splitlines()[-1])["cached"] is True


def test_cli_dissect_in_a_basis(tmp_path, monkeypatch):
    """--basis sae: one units.csv row per feature, the basis named, the same rows as the API's
    dissection in the basis the CLI fitted (read back from the cache)."""
    p = _ckpt(tmp_path)
    out = tmp_path / "sae"
    r = run(["dissect", "--model", str(p), "--layers", "layer3", "--samples", "16", "--basis", "sae",
             "--basis-samples", "20", "--sae-steps", "20", "--sae-expansion", "2", "--out", str(out),
             "--strip-units", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "units.csv").open()))
    assert len(rows) == 64 and {r["basis"] for r in rows} == {"sae-64-l1"}
    assert json.loads((out / "dissection.json").read_text())["meta"]["bases"] == {"layer3": "sae-64-l1"}
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    G = core.load_generator(str(p))
    b = fit_basis(G, "layer3", "sae", n_samples=20, steps=20, expansion=2, cached_only=True)
    res = core.dissect(G, core.load_segmenter("toyworld"), "layer3", 16, basis=b)
    assert [r["concept"] for r in rows] == list(res.units("layer3").concept)
    # the FID filter in a basis: each feature by its own FID (a limit below all of them leaves all out)
    r = run(["dissect", "--model", str(p), "--layers", "layer3", "--samples", "16", "--basis", "sae",
             "--basis-samples", "20", "--sae-steps", "20", "--sae-expansion", "2", "--exclude-fid-above", "-1",
             "--fid-samples", "20", "--out", str(tmp_path / "x"), "--strip-units", "0"], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "x" / "dissection.json").read_text())
    assert data["labeling"]["excluded_units"]["layer3"] == list(range(64)) and "64 features with FID above" in r.stderr


def test_cli_errors_are_clear(tmp_path):
    """One refusal end to end in a real process (exit 2, one line naming the user's file, no
    traceback); every other bad flag is a case of the bad-input table (tests/badcases/cli.py),
    run in-process."""
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run(["dissect", "--model", str(bad), "--samples", "8", "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and "broken.pt" in r.stderr and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if line.strip()] == [r.stderr.strip()]


def test_cli_labelling_rules_and_the_fid_filter(tmp_path):
    """--labeling picks the rule written to every output; --pixel-accuracy adds Fig. 5's condition;
    --exclude-fid-above leaves units out of labelling (a limit below every unit FID leaves all out)."""
    out = {}
    for rule in ("reference", "max-iou"):
        r = run(["dissect", "--model", "toyworld/town", "--layers", "layer4", "--samples", "40", "--labeling", rule,
                 "--out", str(tmp_path / rule), "--strip-units", "0"], tmp_path)
        assert r.returncode == 0, r.stderr
        out[rule] = json.loads((tmp_path / rule / "dissection.json").read_text())
        assert out[rule]["labeling"]["labeling"] == rule and rule in (tmp_path / rule / "report.html").read_text()
    res = core.dissect(core.load_generator("toyworld/town"), core.load_segmenter("toyworld"), "layer4", 40, cache=False)
    for rule in ("reference", "max-iou"):
        assert [u["concept"] for u in out[rule]["layers"]["layer4"]] == list(res.units("layer4", labeling=rule).concept)
    # per-category labels (object / stuff: the segmenter's stuff classes) in units.csv, the JSON and the report
    cats = core.label_categories(res.labels, core.load_segmenter("toyworld"))
    assert out["reference"]["categories"] == cats
    rows = list(csv.DictReader((tmp_path / "reference" / "units.csv").open()))
    want = res.units_by_category("layer4", cats)
    assert [r["object_concept"] for r in rows] == list(want.object_concept)
    assert [r["stuff_concept"] for r in rows] == list(want.stuff_concept)
    assert all(r["object_concept"] in cats["object"] for r in rows)
    assert "Per category" in (tmp_path / "reference" / "report.html").read_text()
    r = run(["dissect", "--model", "toyworld/town", "--layers", "layer4", "--samples", "40", "--exclude-fid-above",
             "-1", "--fid-samples", "60", "--out", str(tmp_path / "fid"), "--strip-units", "0"], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "fid" / "dissection.json").read_text())
    assert data["labeling"]["excluded_units"]["layer4"] == list(range(256))
    assert not any(u["interpretable"] for u in data["layers"]["layer4"]) and "256 units with FID above" in r.stderr


def test_cli_context_writes_classes_with_intervals(tmp_path):
    out = tmp_path / "ctx"
    r = run(["context", "--model", "toyworld/town", "--layer", "layer4", "--concept", "door", "--units", "1", "2", "3",
             "--images", "1", "--seeds", "4", "5", "--brush", "3", "--k-samples", "20", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "context.json").read_text())
    assert data["command"] == "context" and data["arguments"]["units"] == [1, 2, 3]
    data = data["result"]
    assert data["settings"]["units"] == [1, 2, 3] and data["settings"]["brush_cells"] == 3
    assert data["settings"]["seeds"] == [4, 5] and data["settings"]["ranking"] == "given"
    rows = list(csv.DictReader((out / "insertions.csv").open()))
    assert len(rows) == 2 * 6 * 6                                  # 2 seeds x 1 image x (8 - 3 + 1)^2 positions
    classes = {c["context"]: c for c in data["classes"]}
    assert sum(c["n"] for c in classes.values()) == len(rows)
    for c in classes.values():
        if c["seeds"] == 2:
            assert c["ci_low"] <= c["added_px"] <= c["ci_high"]


def test_cli_models_shows_the_figures_every_page_shows(tmp_path):
    """One set of numbers: the FID the CLI prints for a model is the one the Models page and
    Training evolution show (core.models.card_quality), and its dissectable layers are listed."""
    import core
    from core.models import card_quality, zoo_table
    r = run(["models"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith("toyworld/")}
    cards = core.list_models()
    assert set(lines) == set(cards)
    for name, line in lines.items():
        q = card_quality(cards[name])
        assert f"FID {q['fid']} ({q['source']})" in line and "layers layer1..layer10" in line, line
    snap = cards["toyworld/town@step-500"]
    assert card_quality(snap) == {"fid": snap["series_fid"], "ms_swd": snap["series_ms_swd"],
                                  "source": "series evaluation"}
    page = {row["model"]: row["FID"] for row in zoo_table()}
    town = cards["toyworld/town"]
    assert page["toyworld/town"] == card_quality(town)["fid"] == town["eval_fid_10k_real"]

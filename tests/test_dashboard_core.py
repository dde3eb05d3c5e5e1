"""Core helpers behind the dashboard pages: per-layer dissection cache, concept maps, painting."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from planted import PLANTED, ColorSegmenter, PlantedGenerator

from core import studies
from core.engine.dissection import dissect
from core.engine.intervention import generate, insertion_constants
from core.outputs.visualize import activation_histograms
from core.studies import paint
from core.studies import units as unit_choice


def _models():
    G, seg = PlantedGenerator(), ColorSegmenter()
    G.cache_key, seg.cache_key = "planted-v1", "color-segmenter-v1"
    return G, seg


def test_layers_are_cached_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G, seg = _models()
    assert dissect(G, seg, ["units"], 64, seed=2, cached_only=True) is None
    alone = dissect(G, seg, ["units"], 64, seed=2)
    assert not alone.meta["cached"]
    assert len(list((tmp_path / "dissect").iterdir())) == 1
    # a two-layer call reuses "units" and computes only "out"; both then load alone or together
    calls = []
    both = dissect(G, seg, ["units", "out"], 64, seed=2, progress=lambda d, t: calls.append(d))
    assert not both.meta["cached"] and calls
    assert np.array_equal(both.iou("units"), alone.iou("units"))
    assert len(list((tmp_path / "dissect").iterdir())) == 2
    out = dissect(G, seg, ["out"], 64, seed=2, cached_only=True)
    assert out is not None and out.meta["cached"] and np.array_equal(out.iou("out"), both.iou("out"))
    again = dissect(G, seg, ["out", "units"], 64, seed=2)
    assert again.meta["cached"] and again.layers == ["out", "units"]
    assert np.array_equal(again.iou("units"), alone.iou("units"))
    fresh = dissect(G, seg, ["units", "out"], 64, seed=2, cache=False)
    assert np.array_equal(fresh.iou("out"), out.iou("out"))
    assert dissect(G, seg, ["units", "out"], 64, seed=5, cached_only=True) is None


def test_concept_map_counts_and_sorts(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G, seg = _models()
    res = dissect(G, seg, ["units"], 128, seed=1)
    cm = studies.concept_map({"planted": res, "again": res})
    assert list(cm.row.unique()) == ["planted", "again"]
    cell = cm[cm.row == "planted"]
    u = res.units("units")
    good = u[u.interpretable]
    assert cell.units.sum() == len(good)
    assert list(cell.units) == sorted(cell.units, reverse=True)
    for _, r in cell.iterrows():
        assert r.mean_iou == pytest.approx(good[good.concept == r.concept].iou.mean())
        assert set(r.unit_list) == set(good[good.concept == r.concept].unit)
    for unit, concept in PLANTED.items():
        assert unit in cell[cell.concept == concept].unit_list.iloc[0]
    summary = studies.concept_map_summary(cm)
    assert summary.interpretable.tolist() == [len(good)] * 2
    assert summary.concepts.tolist() == [good.concept.nunique()] * 2
    assert summary.mean_iou.tolist() == pytest.approx([good.iou.mean()] * 2)     # over units, not concepts
    assert studies.concept_map({"x": res}, iou_threshold=0.99).empty


def test_zoo_groups():
    models = {"toyworld/room": {"scene": "room", "variant": "base"},
              "toyworld/town": {"scene": "town", "variant": "base"},
              "toyworld/town-nostd": {"scene": "town", "variant": "nostd"},
              "toyworld/town@step-100": {"scene": "town", "variant": "base"},
              "mine.pth": {}}
    g = studies.zoo_groups(models)
    assert g["town"] == {"base": "toyworld/town", "variants": ["toyworld/town-nostd"]}
    assert g["room"]["base"] == "toyworld/room" and g["mine.pth"]["base"] == "mine.pth"
    # a scene with variants only: the first variant stands in as its base
    g = studies.zoo_groups({"lab/a": {"scene": "x", "variant": "v1"}, "lab/b": {"scene": "x", "variant": "v2"}})
    assert g == {"x": {"base": "lab/a", "variants": ["lab/b"]}}


def test_paint_helpers_turn_strokes_into_an_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G, seg = _models()
    assert paint.layer_grid(G, "units") == (8, 8, 8)
    drawing = np.zeros((160, 160, 4), np.uint8)
    drawing[0:40, 0:80, 3] = 255                        # top two rows, left half
    cover = paint.stroke_coverage(drawing, (8, 8))
    assert cover.shape == (8, 8) and cover[:2, :4].min() == 1 and cover[2:].max() == 0
    assert paint.stroke_coverage(None, (4, 4)).sum() == 0
    with pytest.raises(ValueError):
        paint.stroke_coverage(np.zeros((5, 5, 3)), (2, 2))
    img = np.zeros((32, 32, 3), np.uint8)
    big = paint.grid_image(img, (8, 8), 160)
    assert big.shape == (160, 160, 3) and big[20, 5].max() > 0 and big[10, 10].max() == 0
    assert paint.cells_overlay(img, cover > 0.5, 160)[5, 5].max() > 0
    res = dissect(G, seg, ["units"], 128, seed=1)
    units = unit_choice.iou_units(res, "units", "sky", n=1)
    assert units == [2]
    with pytest.raises(ValueError):
        unit_choice.iou_units(res, "units", "nothing")
    k = insertion_constants(G, seg, "units", "sky", n_samples=50)
    assert (tmp_path / "insertion").exists()
    assert np.array_equal(insertion_constants(G, seg, "units", "sky", n_samples=50), k)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    cells = np.ones((8, 8), np.float32)
    assert paint.paint_edits("units", units, "add", k, np.zeros((8, 8))) == []
    added = generate(G, z, paint.paint_edits("units", units, "add", k, cells))
    removed = generate(G, z, paint.paint_edits("units", units, "remove", k, cells))
    sky = seg.labels.index("sky")
    assert (seg.segment(added) == sky).float().mean() > 0.7     # lamps may still lie on top
    assert (seg.segment(removed) == sky).float().mean() == 0
    with pytest.raises(ValueError):
        paint.paint_edits("units", units, "blend", k, cells)


def test_activation_histograms():
    G = PlantedGenerator()
    counts, edges = activation_histograms(G, "units", n_samples=10, bins=16)
    assert counts.shape == (8, 16) and edges.shape == (8, 17)
    assert (counts.sum(1) == 10 * 64).all()
    assert (np.diff(edges, axis=1) >= 0).all()


def test_variant_lineup_compares_at_equal_training_steps():
    models = {"toyworld/town": {"scene": "town", "variant": "base", "steps": 10000},
              "toyworld/town@step-2500": {"scene": "town", "variant": "base", "steps": 2500},
              "toyworld/town-nopn": {"scene": "town", "variant": "nopn", "steps": 2500},
              "toyworld/town-nostd": {"scene": "town", "variant": "nostd", "steps": 2500}}
    line = studies.variant_lineup(models, studies.zoo_groups(models)["town"])
    assert line["models"] == ["toyworld/town@step-2500", "toyworld/town-nopn", "toyworld/town-nostd"]
    assert line["matched"] and set(line["steps"].values()) == {2500} and "10,000" in line["note"]
    # no snapshot at the variants' step count: the final base, said to be unmatched
    del models["toyworld/town@step-2500"]
    line = studies.variant_lineup(models, studies.zoo_groups(models)["town"])
    assert line["models"][0] == "toyworld/town" and not line["matched"] and "town 10,000" in line["note"]
    # variants trained for different step counts: no single snapshot can match both
    models["toyworld/town-nostd"]["steps"] = 3000
    models["toyworld/town@step-2500"] = {"scene": "town", "variant": "base", "steps": 2500}
    assert not studies.variant_lineup(models, studies.zoo_groups(models)["town"])["matched"]
    # already equal (or a card without steps: unknown, so not claimed to match)
    same = {"a": {"scene": "x", "variant": "base", "steps": 5}, "b": {"scene": "x", "variant": "v", "steps": 5}}
    assert studies.variant_lineup(same, studies.zoo_groups(same)["x"])["models"] == ["a", "b"]
    assert studies.variant_lineup(same, studies.zoo_groups(same)["x"])["matched"]
    same["b"].pop("steps")
    assert not studies.variant_lineup(same, studies.zoo_groups(same)["x"])["matched"]


def test_the_dashboards_shared_module_imports_outside_a_running_app():
    """dashboard.common is imported by scripts and tests too: nothing in it may need a running
    Streamlit app at import time (the drawable canvas registers its component when imported)."""
    import subprocess
    import sys
    from pathlib import Path
    r = subprocess.run([sys.executable, "-c", "import dashboard.common, dashboard.paint_real"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]

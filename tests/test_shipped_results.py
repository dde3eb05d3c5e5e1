"""Results shipped with the zoo (issue 20, "instant first view").

``core/weights/results`` holds the dissections and insertion values a fresh clone shows at once
(``scripts/ship_results.py``). These tests prove they are current (every planned item is
answered with an empty cache), real (equal to a fresh computation), and safe (read only: a
damaged shipped entry is ignored, never served and never moved; the cache comes first).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core.base import cache
from core.base.hooks import layer_shape
from core.engine.intervention import insertion_constants

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "core" / "weights" / "results"


def _ship_module():
    spec = importlib.util.spec_from_file_location("ship_results", ROOT / "scripts" / "ship_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache, the shipped results on (the test process turns them off by default)."""
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(cache.SHIPPED_ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def seg():
    return core.load_segmenter("toyworld")


def test_the_shipped_results_answer_every_planned_item(fresh, seg):
    """Stale entries (weights retrained, labelling code changed) would be unreachable: this is
    the check that they were shipped again (``python scripts/ship_results.py``)."""
    ship = _ship_module()
    items = ship.plan()
    assert {it["model"] for it in items} >= {"toyworld/town", "toyworld/room", "toyworld/lake",
                                             "toyworld/town-nopn", "toyworld/town-nostd", "toyworld/town@step-100"}
    assert ship.check(items) == [], "re-ship them: python scripts/ship_results.py"
    G = core.load_generator("toyworld/town")
    res = core.dissect(G, seg, ["layer4", "layer6"], ship.DASHBOARD_SAMPLES, cached_only=True)
    for layer in ("layer4", "layer6"):
        units = res.units(layer)
        assert len(units) == layer_shape(G, layer)[0]
        assert units.interpretable.sum() > 10                      # the town's layers have object units
        freq = res.frequency(layer)
        rare = json.loads((SHIPPED / "index.json").read_text())["not_shipped"]
        shown = [c for j, c in enumerate(res.labels) if j > 0 and freq[j] > 0]
        assert len([c for c in shown if f"toyworld/town {layer} {c}" not in rare]) >= 5
        for c in [c for c in shown if f"toyworld/town {layer} {c}" not in rare]:
            with warnings.catch_warnings():
                warnings.simplefilter("error")                     # a hit, not a computation with warnings
                k = insertion_constants(G, seg, layer, c, n_samples=ship.INSERTION_SAMPLES)
            assert k.shape == (len(units),) and np.isfinite(k).all()
    assert not fresh.exists() or not any((fresh / "dissect").glob("*"))   # nothing was computed into the cache


def test_a_shipped_result_equals_a_fresh_computation(fresh, seg, monkeypatch):
    ship = _ship_module()
    G = core.load_generator("toyworld/town@step-100")
    shipped = core.dissect(G, seg, ["layer4", "layer6"], ship.EVOLUTION_SAMPLES, cached_only=True)
    assert shipped is not None and shipped.meta["cached"]
    monkeypatch.setenv(cache.SHIPPED_ENV, "0")
    again = core.dissect(G, seg, ["layer4", "layer6"], ship.EVOLUTION_SAMPLES, cache=False)
    made_with = json.loads((SHIPPED / "index.json").read_text()).get("torch")
    for layer in ("layer4", "layer6"):
        a, b = shipped.data[layer], again.data[layer]
        assert sorted(a) == sorted(b)
        if made_with == torch.__version__:               # the same framework: the same numbers
            for name in a:
                np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=f"{layer}::{name}")
        else:   # another torch release computes the generator a few ulps apart: a pixel of segmentation may flip
            ua, ub = shipped.units(layer), again.units(layer)
            assert (ua.label == ub.label).mean() >= 0.99 and (ua.interpretable == ub.interpretable).mean() >= 0.99
            assert np.abs(ua.iou - ub.iou).max() < 0.01
            np.testing.assert_allclose(a["frequency"], b["frequency"], atol=1e-4)
    T = core.load_generator("toyworld/town")
    monkeypatch.delenv(cache.SHIPPED_ENV)
    k_shipped = insertion_constants(T, seg, "layer4", "door", n_samples=ship.INSERTION_SAMPLES)
    k_fresh = insertion_constants(T, seg, "layer4", "door", n_samples=ship.INSERTION_SAMPLES, cache=False).numpy()
    np.testing.assert_allclose(k_shipped, k_fresh, rtol=1e-5, atol=1e-6)


def _copy_of_shipped(tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "shipped"
    shutil.copytree(SHIPPED / "insertion", copy / "insertion")
    monkeypatch.setenv(cache.SHIPPED_ENV, str(copy))
    return copy


def _door_key(T, seg) -> str:
    return cache.make_key(kind="insertion", version=core.engine.intervention.INSERTION_VERSION,
                          generator=cache.model_fingerprint(T), segmenter=cache.model_fingerprint(seg),
                          layer="layer4", concept=seg.labels.index("door"), n=100, seed=1)


def test_a_damaged_shipped_entry_is_ignored_never_served_never_moved(fresh, seg, tmp_path, monkeypatch):
    copy = _copy_of_shipped(tmp_path, monkeypatch)
    T = core.load_generator("toyworld/town")
    d = copy / "insertion" / _door_key(T, seg)
    assert d.is_dir(), "the planned door values of town layer4 are shipped"
    arrays = d / "arrays.npz"
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF                                  # one flipped byte: the checksum fails
    arrays.write_bytes(bytes(data))
    before = sorted(p.name for p in d.iterdir())
    with pytest.warns(cache.CacheWarning, match="shipped result"):
        k = insertion_constants(T, seg, "layer4", "door", n_samples=100)
    monkeypatch.setenv(cache.SHIPPED_ENV, "0")
    np.testing.assert_allclose(k, insertion_constants(T, seg, "layer4", "door", n_samples=100, cache=False).numpy(),
                               rtol=1e-5, atol=1e-6)             # the right values, computed
    assert sorted(p.name for p in d.iterdir()) == before and arrays.read_bytes() == bytes(data)   # left in place
    assert (fresh / "insertion" / _door_key(T, seg)).is_dir()     # the computed result went to the cache
    assert not (fresh / cache.QUARANTINE).exists() or not any((fresh / cache.QUARANTINE).iterdir())


def test_the_cache_comes_first_and_the_shipped_results_can_be_turned_off(fresh, seg, tmp_path, monkeypatch):
    _copy_of_shipped(tmp_path, monkeypatch)
    T = core.load_generator("toyworld/town")
    key = _door_key(T, seg)
    shipped = cache.load("insertion", key)
    assert shipped is not None
    planted = {"k": np.full_like(shipped[0]["k"], 7.0)}
    cache.save("insertion", key, planted, shipped[1])             # the lab's own entry for that key
    np.testing.assert_array_equal(insertion_constants(T, seg, "layer4", "door", n_samples=100), planted["k"])
    shutil.rmtree(fresh / "insertion" / key)
    np.testing.assert_array_equal(insertion_constants(T, seg, "layer4", "door", n_samples=100),
                                  shipped[0]["k"])
    monkeypatch.setenv(cache.SHIPPED_ENV, "off")
    assert cache.shipped_root() is None and cache.load("insertion", key) is None


def test_the_shipped_results_are_small(fresh):
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert 0 < size < _ship_module().BUDGET_MB * 1e6, f"{size / 1e6:.1f} MB: ship fewer layers"


def test_the_shipped_dictionaries_load_at_once_in_float16_and_reconstruct(fresh):
    """Every scene type's layer4 and layer6 sparse dictionary is shipped (float16 on disk, float32
    in memory), found by ``fit_basis`` with an empty cache, and is a working dictionary of its
    layer: it reconstructs fresh activations (FVU < 0.2) with few active features."""
    from core.engine import bases
    ship = _ship_module()
    assert ship.check_bases(["layer4", "layer6"]) == [], "re-ship them: python scripts/ship_results.py --kinds basis"
    stored = list((SHIPPED / "basis").iterdir())
    assert len(stored) == len(ship.base_models()) * 2 >= 6
    with np.load(stored[0] / "arrays.npz") as z:
        assert {z[k].dtype for k in z.files} == {np.dtype(np.float16)}
    G = core.load_generator("toyworld/room")
    b = bases.fit_basis(G, "layer6", "sae", cached_only=True)
    assert b.decoder.dtype == torch.float32 and b.n_features == 4 * layer_shape(G, "layer6")[0] and b.meta["refit"]
    h = bases.basis_health(b, bases.layer_activations(G, "layer6", 20, seed=123))
    assert h["fvu"] < 0.2 and h["mean_l0"] < 0.1 * b.n_features


def test_the_shipped_omissions_answer_the_page_default_and_equal_an_independent_run(fresh, seg):
    """Every scene type's base model is shipped at the Omissions page's default (2,000 images per side),
    at full precision, and equals docs/reports/omissions.json: scripts/report_omissions.py's own run
    of the same measurement (same seeds, computed apart from the shipping), FSD terms and omitted classes."""
    import re

    from core.studies.omissions import toyworld_omissions
    ship = _ship_module()
    page = (ROOT / "dashboard" / "views" / "omissions.py").read_text()
    assert int(re.search(r"^DEFAULT_SAMPLES = (\d+)", page, re.M).group(1)) == ship.OMISSION_SAMPLES
    assert ship.check_omissions() == [], "re-ship them: python scripts/ship_results.py --kinds omissions"
    report = json.loads((ROOT / "docs" / "reports" / "omissions.json").read_text())
    assert report["samples_per_side"] == ship.OMISSION_SAMPLES
    index = json.loads((SHIPPED / "index.json").read_text())
    same = index.get("omissions_torch") == report["provenance"]["versions"]["torch"]
    for m in ship.base_models():
        res = toyworld_omissions(core.load_generator(m), seg, n_samples=ship.OMISSION_SAMPLES, cached_only=True)
        assert res.generated.sum.dtype == torch.float64 and res.generated.n == ship.OMISSION_SAMPLES
        s, r = res.summary(), report["generators"][m]
        for side in ("fsd", "floor", "segmenter_vs_exact"):
            for term in ("fsd", "mean_term", "cov_term"):
                assert s[side][term] == pytest.approx(r[side][term], rel=1e-6 if same else 0.02), f"{m} {side} {term}"
        assert s["omitted"] == r["omitted"]
    # every checkpoint of town's training run, for the page's "which concepts arrive first", equals
    # scripts/report_omissions_training.py's own run
    from core.studies.comparisons import concept_arrival, omissions_over_training
    assert int(re.search(r"^TRAINING_SAMPLES = (\d+)", page, re.M).group(1)) == ship.TRAINING_SAMPLES
    training = json.loads((ROOT / "docs" / "reports" / "omissions_training.json").read_text())
    assert training["samples_per_side"] == ship.TRAINING_SAMPLES and ship.training_series() == [training["model"]]
    over = omissions_over_training(training["model"], seg, ship.TRAINING_SAMPLES, cached_only=True)
    by_step = over.groupby("step").fsd.first()
    for row in training["fsd_by_step"]:          # the report ran on 1 thread, the shipping on 2: the
        # convolutions sum in another order, which moves an FSD (a difference of traces) by up to ~2e-5
        assert by_step[row["step"]] == pytest.approx(row["fsd"], rel=1e-4 if same else 0.02), row["step"]
    arrival = concept_arrival(over, training["within"])
    assert arrival.label.tolist() == [r["label"] for r in training["arrival"]]
    assert [None if s != s else s for s in arrival.arrival_step] == [r["arrival_step"] for r in training["arrival"]]
    assert not fresh.exists() or not any((fresh / "omissions").glob("*"))     # answered, nothing computed


def test_the_shipped_gallery_answers_the_page_and_equals_its_own_arrays(fresh, seg):
    """The Omissions page's reconstruction gallery of every base model with a shipped inverter (town) is
    shipped at the page's settings, read with an empty cache (nothing computed), small, of the stated
    shapes, with real scenes equal to toyworld's held-out ones and exact labels equal to toyworld's; its
    recall is recounted here from the stored label maps by brute force."""
    import re

    from core import toyworld
    from core.studies.inversion import INVERSION_REAL_SEED, encoder_for, reconstruction_gallery
    ship = _ship_module()
    page = (ROOT / "dashboard" / "views" / "omissions.py").read_text()
    assert re.search(r"^GALLERY_N, GALLERY_STEPS = (\d+), (\d+)", page, re.M).groups() == (
        str(ship.GALLERY_N), str(ship.GALLERY_STEPS))
    assert ship.gallery_models() == ["toyworld/town"]
    assert ship.check_gallery() == [], "re-ship it: python scripts/ship_results.py --kinds gallery"
    stored = list((SHIPPED / "inversion.gallery").iterdir())
    assert len(stored) == 1 and sum(f.stat().st_size for f in stored[0].iterdir()) < 100_000
    G = core.load_generator("toyworld/town")
    gal = reconstruction_gallery(G, seg, encoder_for(G, "toyworld/town")[0], "town", ship.GALLERY_N,
                                 steps=ship.GALLERY_STEPS, features=core.load_features(), cached_only=True)
    n = ship.GALLERY_N
    assert (gal.n, gal.steps, gal.seed) == (n, ship.GALLERY_STEPS, INVERSION_REAL_SEED)
    assert gal.real.shape == gal.reconstruction.shape == (n, 64, 64, 3) and gal.real.dtype == np.uint8
    assert gal.truth.shape == gal.segmentation.shape == gal.real_segmentation.shape == (n, 64, 64)
    assert gal.l1.shape == (n,) and 0.02 < gal.l1.min() and gal.l1.max() < 0.2
    images, labels = toyworld.render("town", n, seed=INVERSION_REAL_SEED, size=64)
    lut = np.array([seg.labels.index(c) for c in toyworld.LABELS])
    np.testing.assert_array_equal(gal.truth, lut[labels.numpy()])
    with torch.no_grad():                                   # the segmenter's reading of the real scenes, again
        np.testing.assert_array_equal(gal.real_segmentation, seg.segment(images).numpy())
    classes = toyworld.SCENE_CONCEPTS["town"]
    recall = {}
    for c in classes:
        j = seg.labels.index(c)
        true = (gal.truth == j).sum()
        if true:
            recall[c] = ((gal.truth == j) & (gal.segmentation == j)).sum() / true
    assert gal.recall().per_class() == pytest.approx(recall)
    assert gal.summary()["mean_recall"] == pytest.approx(np.mean(list(recall.values())))
    assert 0.3 < gal.summary()["mean_recall"] < gal.summary()["segmenter_mean_recall"]   # a real loss, below the
    assert not fresh.exists() or not any((fresh / "inversion.gallery").glob("*"))         # segmenter's own ceiling

"""Omissions ("Seeing What a GAN Cannot Generate"): per-class segmentation statistics and FSD against
an independent brute-force count (numpy fractions, np.cov, scipy's sqrtm); a planted omission (the
planted causal generator with its door units ablated everywhere) found first with FSD far above its
real-vs-real floor, and none on the unedited generator; `ganatomy omissions --json` is the core result."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

import core
import core.cli
from core.base.errors import InputError, ProtocolError
from core.base.sampling import stream_seed, z_range
from core.engine.intervention import Edit
from core.engine.omissions import MIN_AREA, OMITTED_BELOW, Edited, class_fractions, omissions
from core.studies.omissions import ToyworldScenes, toyworld_omissions
from tests.planted_causal import DOOR_UNITS, LABELS, PlantedCausalGenerator, SoftColorSegmenter


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))


class GeneratorScenes:
    """'Real' images drawn from a generator (its own seeds), with labels: the segmentation shifted by
    one pixel (an independent, exactly known label map for the exact-label side)."""
    labels = LABELS

    def __init__(self, G, seg):
        self.G, self.seg, self.name = G, seg, "planted-causal"

    def batch(self, seed, start, stop):
        with torch.no_grad():
            images = self.G(z_range(seed, start, stop, self.G.z_dim))
        return images, torch.roll(self.seg.segment(images), 1, dims=-1)


def brute(labels: np.ndarray, C: int):
    """Per image fractions (a loop over images and classes), mean, np.cov and share."""
    f = np.array([[np.mean(lab == c) for c in range(C)] for lab in labels])
    return f, f.mean(0), np.cov(f, rowvar=False), (f > 0).mean(0)


def brute_fsd(a, b):
    """scipy's general square root of S_a S_b. Class fractions sum to 1, so both covariances are
    singular and sqrtm is accurate to ~1e-6 relative there (classes neither side shows are dropped:
    their rows are zero in both); hence rel=1e-5 against it."""
    (_, mu_a, s_a, _), (_, mu_b, s_b, _) = a, b
    keep = (np.diag(s_a) > 0) | (np.diag(s_b) > 0)
    s_a, s_b = s_a[np.ix_(keep, keep)], s_b[np.ix_(keep, keep)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(s_a @ s_b).real
    mean = float(((mu_a - mu_b) ** 2).sum())
    return 100 * (mean + np.trace(s_a + s_b - 2 * root)), 100 * mean


def test_class_fractions_count_each_image():
    lab = torch.tensor([[[0, 1], [1, 3]], [[2, 2], [2, 2]]])
    np.testing.assert_array_equal(class_fractions(lab, 4).numpy(), [[0.25, 0.5, 0, 0.25], [0, 0, 1, 0]])


def test_statistics_and_fsd_equal_brute_force():
    G, seg = PlantedCausalGenerator(), SoftColorSegmenter()
    real = GeneratorScenes(G, seg)
    n, C = 60, len(LABELS)
    res = omissions(G, seg, real, n, seed=1, real_seed=2, batch_size=16, cache=False)
    with torch.no_grad():
        gen_lab = seg.segment(G(z_range(1, 0, n, G.z_dim))).numpy()
    real_img, exact_lab = real.batch(2, 0, n)
    floor_img, _ = real.batch(stream_seed(2, "omissions.floor"), 0, n)
    want = {"generated": brute(gen_lab, C), "real": brute(seg.segment(real_img).numpy(), C),
            "floor": brute(seg.segment(floor_img).numpy(), C), "exact": brute(exact_lab.numpy(), C)}
    for side, (_, mu, cov, share) in want.items():
        st = getattr(res, side)
        got_mu, got_cov = st.mean_cov()
        np.testing.assert_allclose(got_mu, mu, atol=1e-12, err_msg=side)
        np.testing.assert_allclose(got_cov, cov, atol=1e-12, err_msg=side)
        np.testing.assert_allclose(st.share, share, atol=1e-12, err_msg=side)
    for got, (a, b) in ((res.fsd(), ("real", "generated")), (res.floor_fsd(), ("real", "floor")),
                        (res.segmenter_fsd(), ("exact", "real"))):
        total, mean = brute_fsd(want[a], want[b])
        assert got["fsd"] == pytest.approx(total, rel=1e-5)
        assert got["mean_term"] == pytest.approx(mean, rel=1e-9, abs=1e-15)
        assert got["cov_term"] == pytest.approx(total - mean, rel=1e-5)
    t = res.table().set_index("label")
    door = LABELS.index("door")
    assert t.loc["door", "relative_change"] == pytest.approx((want["generated"][1][door] - want["real"][1][door])
                                                             / want["real"][1][door])
    # stored and read back: the same numbers (a segmenter that is no module is cached by its cache_key)
    seg.cache_key = "soft-color-segmenter"
    assert omissions(G, seg, real, n, seed=1, real_seed=2, cached_only=True) is None
    a = omissions(G, seg, real, n, seed=1, real_seed=2, batch_size=16)
    b = omissions(G, seg, real, n, seed=1, real_seed=2, batch_size=16, cached_only=True)
    assert b is not None and b.fsd() == pytest.approx(a.fsd()) and b.fsd() == pytest.approx(res.fsd())
    assert b.table().equals(a.table())


def test_toyworld_exact_labels_are_a_brute_force_count():
    """The real side of toyworld scenes, counted from their exact labels and through the segmenter."""
    G, seg = PlantedCausalGenerator(), core.load_segmenter("toyworld")
    real = ToyworldScenes("town", 32)
    res = omissions(G, seg, real, 12, batch_size=5, cache=False)
    images, labels = core.toyworld.render("town", 12, seed=res.real_seed, size=32)
    C = len(seg.labels)
    _, mu, cov, share = brute(labels.numpy(), C)
    np.testing.assert_allclose(res.exact.mean_cov()[0], mu, atol=1e-12)
    np.testing.assert_allclose(res.exact.mean_cov()[1], cov, atol=1e-12)
    np.testing.assert_allclose(res.exact.share, share, atol=1e-12)
    with torch.no_grad():
        np.testing.assert_allclose(res.real.mean, brute(seg.segment(images).numpy(), C)[1], atol=1e-12)


def test_a_planted_omission_is_found_first_and_the_unedited_generator_has_none():
    """Door units ablated everywhere: door ranks first at <= -90% and FSD >= 5x the real-vs-real floor.
    The unedited generator against its own other seeds: no class at or below OMITTED_BELOW (-50%)."""
    G, seg = PlantedCausalGenerator(), SoftColorSegmenter()
    real = GeneratorScenes(G, seg)
    omitting = Edited(G, [Edit("feat", DOOR_UNITS)])
    res = omissions(omitting, seg, real, 200, batch_size=100, cache=False)
    t = res.table()
    assert t.label[0] == "door" and t.relative_change[0] <= -0.9, t
    assert res.omitted() == ["door"]
    assert res.fsd()["fsd"] >= 5 * res.floor_fsd()["fsd"], (res.fsd(), res.floor_fsd())
    base = omissions(G, seg, real, 200, batch_size=100, cache=False)
    assert base.omitted() == [], base.table()
    assert base.table().relative_change.abs().max() < 0.25
    assert base.fsd()["fsd"] < 5 * base.floor_fsd()["fsd"]
    # the shared model is untouched, and the edited generator caches apart from it
    with torch.no_grad():
        z = z_range(0, 0, 4, G.z_dim)
        assert torch.equal(G(z), PlantedCausalGenerator()(z))
    assert core.cache.model_fingerprint(omitting) != core.cache.model_fingerprint(G)
    assert OMITTED_BELOW == -0.5 and MIN_AREA == 1e-3


def test_bad_input_is_refused_before_any_work():
    G, seg = PlantedCausalGenerator(), SoftColorSegmenter()
    with pytest.raises(ProtocolError, match="name"):
        omissions(G, seg, object(), 10)
    with pytest.raises(InputError, match="n_samples"):
        omissions(G, seg, GeneratorScenes(G, seg), 1)
    with pytest.raises(InputError, match="scene"):
        toyworld_omissions(G, seg)                     # the planted generator has no model card
    with pytest.raises(InputError, match="mask"):
        Edited(G, [Edit("feat", [0], mask=torch.ones(8, 8))])


def test_cli_json_is_the_core_result(capsys, tmp_path):
    argv = ["omissions", "--model", "toyworld/town", "--samples", "12", "--batch-size", "6", "--device", "cpu"]
    core.cli.main([*argv, "--json", "--out", str(tmp_path / "out")])
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["command"] == "omissions"
    r = data["result"]
    G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
    want = toyworld_omissions(G, seg, n_samples=12, batch_size=6, cache=False)
    assert r["scene"] == "town" and r["n_samples"] == 12 and r["real_seed"] == 2 and r["seed"] == 1
    for k in ("fsd", "floor", "segmenter_vs_exact"):
        for term in ("fsd", "mean_term", "cov_term"):
            assert r[k][term] == pytest.approx(getattr(want, {"fsd": "fsd", "floor": "floor_fsd",
                                                             "segmenter_vs_exact": "segmenter_fsd"}[k])()[term],
                                               rel=1e-6, abs=1e-12)
    table = want.table()
    assert [c["label"] for c in r["classes"]] == table.label.tolist()
    np.testing.assert_allclose([c["generated_area"] for c in r["classes"]], table.generated_area, rtol=1e-9)
    assert (tmp_path / "out" / "omissions.json").is_file() and (tmp_path / "out" / "omissions.csv").is_file()


@pytest.mark.parametrize("argv, names", [(["--samples", "1"], ["--samples", "n_samples"]),
                                         (["--batch-size", "0"], ["--batch-size"]),
                                         (["--scene", "moon"], ["--scene"])])
def test_cli_refuses_bad_flags_in_one_line(capsys, argv, names):
    with pytest.raises(SystemExit) as e:
        core.cli.main(["omissions", *argv])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and not out and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert all(n in err for n in names), err

"""MS-SWD (core.swd) against brute force and toyworld ground truth."""
import itertools

import pytest
import torch

from core import toyworld
from core.engine import swd
from core.studies import evaluation


def test_laplacian_pyramid_levels_and_exact_reconstruction():
    im, _ = toyworld.render("town", 3, seed=4, size=64)
    pyr = swd.laplacian_pyramid(im)
    assert [lv.shape[-1] for lv in pyr] == [64, 32, 16]
    assert (swd.reconstruct(pyr) - im).abs().max() < 1e-5
    # a flat image has no band-pass content at any level, and its low-pass is the same flat value
    flat = torch.full((2, 3, 64, 64), 0.3)
    pyr = swd.laplacian_pyramid(flat)
    assert all(lv.abs().max() < 1e-6 for lv in pyr[:-1])
    assert (pyr[-1] - 0.3).abs().max() < 1e-6


def test_patches_are_the_image_windows_at_the_drawn_positions():
    lv = torch.randn(2, 3, 10, 12)
    out = swd._patches(lv, 5, 3, torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    ys = torch.randint(0, 8, (2, 5), generator=g)
    xs = torch.randint(0, 10, (2, 5), generator=g)
    for i in range(2):
        for p in range(5):
            y, x = int(ys[i, p]), int(xs[i, p])
            assert torch.equal(out[i * 5 + p], lv[i, :, y:y + 3, x:x + 3])


def _w1_brute_force(x, y):
    """1-Wasserstein distance of two equal-size 1-D samples: the best matching over all permutations."""
    return min(sum(abs(a - y[j]) for a, j in zip(x, perm)) / len(x)
               for perm in itertools.permutations(range(len(y))))


def test_sliced_wasserstein_in_one_dimension_is_the_exact_optimal_matching():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.randn(6, 1, generator=g) * 2
        b = torch.rand(6, 1, generator=g) + 0.5
        want = _w1_brute_force(a[:, 0].tolist(), b[:, 0].tolist())
        # every unit direction in 1-D is +1 or -1, and W1 does not care which
        assert swd.sliced_wasserstein(a, b, n_dirs=7) == pytest.approx(want, rel=1e-5)


def test_sliced_wasserstein_matches_the_projections_it_draws():
    a, b = torch.randn(40, 5), torch.randn(40, 5) + 0.3
    got = swd.sliced_wasserstein(a, b, n_dirs=3, seed=5)
    g = torch.Generator().manual_seed(5)
    dirs = torch.randn(5, 3, generator=g, dtype=torch.float64)
    dirs = (dirs / dirs.norm(dim=0)).float()
    want = sum(_w1_sorted((a @ dirs)[:, k], (b @ dirs)[:, k]) for k in range(3)) / 3
    assert got == pytest.approx(want, rel=1e-5)
    assert swd.sliced_wasserstein(a, a.clone()) == 0.0


def _w1_sorted(x, y):
    return float((x.sort().values - y.sort().values).abs().mean())


def test_ms_swd_separates_blur_that_the_real_vs_real_floor_does_not_reach():
    real = evaluation.real_patches("room", 200, seed=500)
    other = evaluation.real_patches("room", 200, seed=900)
    floor = swd.ms_swd(real, other)
    blurred = {s: swd.ms_swd(real, evaluation.real_patches("room", 200, seed=900,
                                                    transform=lambda x, s=s: evaluation.degrade(x, "blur", s)))
               for s in (1.0, 2.0, 4.0)}
    assert set(floor) == {"64", "32", "16", "avg"}
    assert blurred[1.0]["64"] > 3 * floor["64"]
    assert floor["avg"] < blurred[1.0]["avg"] < blurred[2.0]["avg"] < blurred[4.0]["avg"]


def test_ms_swd_rejects_images_it_cannot_build_a_pyramid_for():
    with pytest.raises(ValueError, match="power-of-two"):
        swd.PatchSet().update(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="no images"):
        swd.PatchSet().descriptors()
    a = swd.PatchSet().update(torch.randn(2, 3, 64, 64))
    b = swd.PatchSet().update(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="pyramid levels"):
        swd.ms_swd(a, b)


def test_generator_quality_one_pass_equals_separate_fid_and_ms_swd():
    """FID and MS-SWD from one generator pass (MS-SWD on the first n_swd samples, across a
    batch boundary) equal FID over all samples and MS-SWD over a separate pass of the first n_swd."""
    import core
    from core.base.sampling import z_range
    from core.engine.fid import FeatureStats, frechet_distance
    G = core.load_generator("toyworld/room")
    feats = core.load_features("toyworld")
    real = evaluation.real_stats(feats, ["room"], 60, seed=500, size=64).mean_cov()
    real_p = evaluation.real_patches("room", 40, seed=500)
    q = evaluation.generator_quality(G, feats, real, real_p, n=60, batch=25, n_swd=40)
    with torch.no_grad():
        st = FeatureStats().update(feats(G(z_range(0, 0, 60, G.z_dim))))
    assert q["fid"] == pytest.approx(frechet_distance(*st.mean_cov(), *real), rel=1e-6)
    # equal up to float order (a batch of 15 inside a batch of 25 may take another conv kernel); other
    # samples would move it by orders of magnitude more
    separate = swd.ms_swd(real_p, swd.generator_patches(G, 40, batch=25))
    assert q["ms_swd"].keys() == separate.keys()
    assert q["ms_swd"] == pytest.approx(separate, rel=1e-6)

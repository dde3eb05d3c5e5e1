"""FID maths against independent references (closed form, scipy) and streaming statistics."""
import numpy as np
import pytest
import scipy.linalg
import torch

import core
from core.engine.fid import FeatureStats, frechet_distance


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(want, rel=1e-9)


def test_closed_form_commuting_full_covariances():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.2, 2, 6), rng.uniform(0.2, 2, 6)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    want = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(np.zeros(6), s1, np.zeros(6), s2) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_matches_scipy_on_small_random_inputs(seed):
    rng = np.random.default_rng(seed)
    d = 12
    x, y = rng.normal(size=(40, d)), rng.normal(size=(50, d)) * 1.3 + 0.2
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-6)


def test_identical_distributions_give_zero_and_singular_is_finite():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 10))                # 5 samples in 10-d: rank-4 covariance
    mu, s = x.mean(0), np.cov(x, rowvar=False)
    assert 0.0 <= frechet_distance(mu, s, mu, s) < 1e-8 * np.trace(s)   # float64 rounding only
    # rank-deficient covariances: closed form with diagonals containing zeros
    a = np.array([1.0, 0.0, 4.0, 0.0])
    b = np.array([0.0, 0.0, 1.0, 9.0])
    want = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b)) == pytest.approx(want, rel=1e-9)


def test_bad_input():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariance"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))
    st = FeatureStats().update(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="at least 2 images"):
        st.mean_cov()
    with pytest.raises(ValueError, match="feature size changed"):
        st.update(torch.zeros(2, 5))


def test_streaming_stats_equal_numpy_and_merge():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 7, generator=g) * 3 + 1
    a = FeatureStats()
    for chunk in x.split(37):
        a.update(chunk)
    mu, cov = a.mean_cov()
    np.testing.assert_allclose(mu, x.double().mean(0).numpy(), rtol=1e-10)
    np.testing.assert_allclose(cov, np.cov(x.double().numpy(), rowvar=False), rtol=1e-9, atol=1e-12)
    b, c = FeatureStats().update(x[:100]), FeatureStats().update(x[100:])
    mu2, cov2 = b.merge(c).mean_cov()
    np.testing.assert_allclose(mu2, mu, rtol=1e-12)
    np.testing.assert_allclose(cov2, cov, rtol=1e-10)


def test_inception_loads_from_local_file_only(tmp_path, monkeypatch):
    from core.base.checkpoints import CheckpointError
    from core.models import inception
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANATOMY_INCEPTION", raising=False)
    monkeypatch.setattr(inception, "candidate_paths",
                        lambda: [tmp_path / "none" / inception.WEIGHTS_NAME,
                                 tmp_path / "torch" / "hub" / "checkpoints" / inception.WEIGHTS_NAME])
    with pytest.raises(CheckpointError, match=r"pt_inception-2015-12-05-6726825d.pth\) were not found; "
                                              r"looked at:(.|\n)*hub/checkpoints(.|\n)*GANATOMY_INCEPTION"):
        core.load_features("inception")
    # a file in the FID layout (random weights here) loads with weights_only and gives 2048-d features
    torch.manual_seed(0)
    path = tmp_path / "torch" / "hub" / "checkpoints" / inception.WEIGHTS_NAME
    path.parent.mkdir(parents=True)
    torch.save(inception.build_fid_inception().state_dict(), path)
    net = core.load_features("inception")
    f = net(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=inception.WEIGHTS_NAME):
        core.load_features("inception")


def test_inception_found_under_torch_fidelity_cache_name(tmp_path, monkeypatch):
    """torch-fidelity caches the same FID weights under its own file name: that file is used."""
    from core.models import inception
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("GANATOMY_INCEPTION", raising=False)
    assert not (inception.candidate_paths()[0]).exists()   # nothing shipped in core/weights
    path = tmp_path / "hub" / "checkpoints" / inception.FIDELITY_NAME
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    ref = inception.build_fid_inception()
    torch.save(ref.state_dict(), path)
    net = core.load_features("inception")
    assert net.source == str(path)
    w = net.net.Conv2d_1a_3x3.conv.weight
    assert torch.equal(w, ref.Conv2d_1a_3x3.conv.weight)

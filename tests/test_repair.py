"""Per-unit FID and repair on a generator with planted artifact units."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.base.sampling import z_range
from core.engine import repair
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.intervention import Edit, generate
from core.userdata import flags

ARTIFACTS = [2, 5]


class ArtifactGenerator(nn.Module):
    """8 units on a 4x4 grid; units 2 and 5 stamp a magenta blotch where they fire."""

    def __init__(self):
        super().__init__()
        self.z_dim = 12
        self.units = nn.Identity()
        self.register_buffer("dummy", torch.zeros(1))

    @property
    def layer_names(self):
        return ["units"]

    def forward(self, z):
        n = z.shape[0]
        grid = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
        pattern = 0.5 + 0.5 * torch.sin(grid * (0.3 + z[:, 8:9, None, None].abs()))
        act = torch.relu(z[:, :8, None, None]) * pattern             # unit u peaks when z_u is large
        act = self.units(act)
        base = torch.stack([torch.tanh(z[:, 9]), torch.tanh(z[:, 10]), torch.tanh(z[:, 11])], 1)
        img = base.view(n, 3, 1, 1).expand(n, 3, 16, 16).clone()
        blot = (act[:, ARTIFACTS].amax(1) > 1.2).float()
        blot = torch.nn.functional.interpolate(blot[:, None], size=16, mode="nearest")
        magenta = torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
        return img * (1 - blot) + magenta * blot


def features(images):
    """A fixed little feature map: colour means, spreads and the magenta share."""
    mag = ((images[:, 0] > 0.9) & (images[:, 1] < -0.9) & (images[:, 2] > 0.9)).float().mean((1, 2))
    return torch.cat([images.mean((2, 3)), images.std((2, 3)), mag[:, None]], 1)


def real_stats(G, n=3000):
    """'Real' images: the same generator with its artifact units switched off."""
    st = FeatureStats()
    for a in range(0, n, 500):
        st.update(features(generate(G, z_range(99, a, a + 500, G.z_dim), [Edit("units", ARTIFACTS)])))
    return st.mean_cov()


def test_unit_fid_brute_force_and_finds_artifacts():
    G = ArtifactGenerator()
    real = real_stats(G)
    res = repair.unit_fid(G, "units", features, real, n_samples=600, top=50, batch_size=128)
    # brute force for every unit: its top 50 images by spatial maximum, FID by the reference function
    z = z_range(0, 0, 600, G.z_dim)
    images, cap = generate(G, z, capture=["units"])
    f = features(images).double().numpy()
    m = cap["units"].amax((2, 3)).numpy()
    for u in range(8):
        top = np.argsort(-m[:, u], kind="stable")[:50]
        want = frechet_distance(f[top].mean(0), np.cov(f[top], rowvar=False), *real)
        assert res.fid[u] == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert set(res.highest(2)) == set(ARTIFACTS)


class Features(nn.Module):
    """:func:`features` as a module, so the cache can fingerprint it."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, images):
        return features(images) * self.scale


def test_unit_fid_is_cached_by_generator_features_and_real_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G = ArtifactGenerator()
    real = real_stats(G)
    first = repair.unit_fid(G, "units", Features(), real, n_samples=300, top=20, batch_size=100)
    direct = repair.unit_fid(G, "units", Features(), real, n_samples=300, top=20, batch_size=100)
    assert np.array_equal(first.fid, direct.fid) and np.array_equal(first.top_index, direct.top_index)
    calls = []
    hook = G.units.register_forward_hook(lambda *a: calls.append(1))
    again = repair.unit_fid(G, "units", Features(), real, n_samples=300, top=20, batch_size=100)
    assert calls == [] and np.array_equal(again.fid, first.fid)          # from disk: no generator pass
    other = repair.unit_fid(G, "units", Features(2.0), real, n_samples=300, top=20, batch_size=100)
    assert calls and not np.allclose(other.fid, first.fid)              # other features: computed anew
    hook.remove()
    assert len(list((tmp_path / "unit_fid").iterdir())) == 2


def test_repair_beats_random_ablation():
    G = ArtifactGenerator()
    real = real_stats(G)
    table, pick = repair.repair_table(G, "units", features, real, ARTIFACTS, n_candidates=800, n_eval=200,
                                      random_draws=3)
    fid = dict(zip(table.variant, table.fid))
    orig, fixed = fid["original"], fid["2 flagged units ablated"]
    rand = table.fid.iloc[2]
    assert fixed < 0.2 * orig and rand > 0.5 * orig
    assert len(pick) == 200


def test_flags_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    assert flags.load_flags("toyworld/town", "layer4") == []
    flags.save_flags("toyworld/town", "layer4", [7, 3, 7])
    assert flags.load_flags("toyworld/town", "layer4") == [3, 7]
    # many dashboard sessions (threads of one process) saving at once: every save completes,
    # and the file holds one of the saved sets, whole
    import threading
    errors, sets = [], [[i, i + 1] for i in range(16)]

    def save(units):
        try:
            for _ in range(20):
                flags.save_flags("toyworld/town", "layer4", units)
        except Exception as e:         # noqa: BLE001 - the test reports any failure
            errors.append(e)

    threads = [threading.Thread(target=save, args=(u,)) for u in sets]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and flags.load_flags("toyworld/town", "layer4") in sets


def test_flags_belong_to_the_weights_they_were_set_on(tmp_path, monkeypatch):
    """A re-shipped model keeps its name but not its units: flags saved for other weights are
    not applied to the new ones (they are reported as stale instead)."""
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    flags.save_flags("toyworld/town", "layer4", [5, 9], fingerprint="ProGAN:old")
    assert flags.load_flags("toyworld/town", "layer4", "ProGAN:old") == [5, 9]
    assert flags.stale_flags("toyworld/town", "layer4", "ProGAN:old") == []
    assert flags.load_flags("toyworld/town", "layer4", "ProGAN:new") == []
    assert flags.stale_flags("toyworld/town", "layer4", "ProGAN:new") == [5, 9]
    flags.save_flags("toyworld/town", "layer4", [2], fingerprint="ProGAN:new")
    assert flags.load_flags("toyworld/town", "layer4", "ProGAN:new") == [2]
    assert flags.stale_flags("toyworld/town", "layer4", "ProGAN:new") == []
    # flags from before fingerprints were stored, or a model without one: kept as they are
    flags.save_flags("lab/g", "layer4", [1])
    assert flags.load_flags("lab/g", "layer4", "X:1") == [1] and flags.stale_flags("lab/g", "layer4", "X:1") == []


def test_bad_input():
    G = ArtifactGenerator()
    real = real_stats(G, 500)
    with pytest.raises(ValueError, match="top must be an integer >= 2"):
        repair.unit_fid(G, "units", features, real, n_samples=10, top=1)
    with pytest.raises(ValueError, match=r"n_samples \(10\) must be at least top \(50\)"):
        repair.unit_fid(G, "units", features, real, n_samples=10, top=50)
    with pytest.raises(ValueError, match="feature sizes differ"):
        repair.unit_fid(G, "units", features, (np.zeros(3), np.eye(3)), n_samples=20, top=5)
    with pytest.raises(ValueError, match="unknown layer"):
        repair.unit_fid(G, "layer4", features, real, n_samples=20, top=5)

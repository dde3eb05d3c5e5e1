"""Bases of a layer (core.engine.bases): planted directions recovered by the sparse dictionary
where single units and PCA do not; every edit rule against a direct computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from planted_directions import ColourSegmenter, PlantedDirections, directions

import core
from core.engine import bases, causal
from core.engine.intervention import Edit, generate, insertion_constants


@pytest.fixture(scope="module")
def planted():
    G, seg = PlantedDirections(), ColourSegmenter()
    x = bases.layer_activations(G, "feat", 300)
    sae = bases.train_sae(x, 24, steps=800, batch_size=1024, seed=0)
    return G, seg, x, sae, bases.pca_basis(x)


def test_the_planted_generator_is_what_it_says():
    G, seg = PlantedDirections(), ColourSegmenter()
    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(3))
    cells = G.concept_cells(z)
    truth = F.interpolate(cells[:, None].float(), size=(16, 16), mode="nearest")[:, 0].long()
    assert torch.equal(seg.segment(G(z)), truth)                  # the image shows exactly the planted cells
    d = directions()
    assert torch.allclose(d.abs(), torch.full_like(d, 0.25))      # every unit carries every concept equally
    assert ((d > 0).sum(0) == 3).all()                            # three concepts positive in every unit


def test_sae_recovers_planted_directions_that_units_and_pca_miss(planted):
    G, seg, x, sae, pca = planted
    d = directions()
    d = d / d.norm(dim=1, keepdim=True)
    w = torch.tensor(sae.directions())
    cos = d @ w.T                                                  # [6 planted, 24 features]
    assert (cos.max(1).values >= 0.9).all(), cos.max(1).values
    res = {name: core.dissect(G, seg, "feat", 200, cache=False, resolution=16, basis=b).units("feat")
           for name, b in (("units", None), ("pca", pca), ("sae", sae))}
    for j in range(6):
        f = int(cos[j].argmax())                                   # the feature along planted direction j
        assert res["sae"].label[f] == f"c{j}" and res["sae"].iou[f] > 0.85, (j, f, res["sae"].iloc[f])
    best = {name: {c: u.iou[u.concept == c].max() if (u.concept == c).any() else 0.0 for c in seg.labels[1:]}
            for name, u in res.items()}
    assert max(best["units"].values()) < 0.6                       # a unit mixes three concepts
    assert sum(v > 0.85 for v in best["sae"].values()) == 6
    assert sum(v > 0.85 for v in best["pca"].values()) < 6         # principal directions mix them too
    assert len(res["sae"]) == 24 and len(res["units"]) == 16       # one row per feature


def test_sparse_feature_maps_are_counted_sparsely_and_exactly(planted, monkeypatch):
    """An SAE's maps are off in most samples: the tally counts only the live maps, and every number
    of the dissection equals the dense count's."""
    from core.engine import tally
    G, seg, _, sae, _ = planted
    calls = []
    real = tally.LayerTally._update_sparse
    monkeypatch.setattr(tally.LayerTally, "_update_sparse", lambda self, *a: calls.append(1) or real(self, *a))
    sparse = core.dissect(G, seg, "feat", 60, cache=False, resolution=16, basis=sae, batch_size=20).data["feat"]
    assert len(calls) >= 2                                         # most batches of 20, on its own
    monkeypatch.setattr(tally, "SPARSE_BELOW", 0.0)
    n_sparse = len(calls)
    dense = core.dissect(G, seg, "feat", 60, cache=False, resolution=16, basis=sae, batch_size=20).data["feat"]
    assert len(calls) == n_sparse                                  # off: counted densely
    for k, v in dense.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, sparse[k], equal_nan=True), k


def test_refit_gains_are_the_least_squares_ones_and_keep_every_feature_map(planted):
    """The refit undoes the L1 shrinkage: its reconstruction is the least-squares one over a gain per
    feature and the bias (a direct lstsq), each feature map is the old one times a positive factor
    (the same support, the same directions), and so the dissection's IoU is unchanged."""
    G, seg, x, _, _ = planted
    raw = bases.train_sae(x, 24, steps=800, batch_size=1024, seed=0, refit=False)
    ref = bases.refit_decoder(raw, x, chunk=1000)                  # several chunks
    a_raw = raw.encode(x[:, :, None, None])[:, :, 0, 0]
    a_ref = ref.encode(x[:, :, None, None])[:, :, 0, 0]
    assert torch.equal(a_raw > 0, a_ref > 0)
    on = a_raw > 1e-3
    ratio = torch.where(on, a_ref / a_raw.clamp_min(1e-3), torch.nan)
    g = torch.nanmedian(ratio, 0).values
    fired = on.any(0)
    assert (g[fired] > 0).all()
    assert torch.allclose(ratio[on], g.expand_as(ratio)[on], rtol=1e-3)   # one factor per feature
    # the least squares over gains and bias, written out: one row per (vector, channel)
    d = raw.decoder.double()
    cols = torch.cat([(a_raw.double()[:, :, None] * d[None]).permute(0, 2, 1).reshape(-1, 24),
                      torch.eye(16, dtype=torch.float64).repeat(len(x), 1)], 1)
    sol = torch.linalg.lstsq(cols, x.double().reshape(-1, 1)).solution
    best = ((x.double().reshape(-1, 1) - cols @ sol) ** 2).sum()
    got = ((x - ref.decode(a_ref[:, :, None, None])[:, :, 0, 0]) ** 2).sum()
    before = ((x - raw.decode(a_raw[:, :, None, None])[:, :, 0, 0]) ** 2).sum()
    assert float(got) == pytest.approx(float(best), rel=1e-3) and got < 0.9 * before
    assert torch.equal(ref.decoder, raw.decoder)
    iou = [core.dissect(G, seg, "feat", 100, cache=False, resolution=16, basis=b).iou("feat") for b in (raw, ref)]
    assert np.allclose(iou[0], iou[1], atol=0.01) and np.abs(iou[0] - iou[1]).mean() < 1e-3
    # bounded gains: every gain within [1 / max_gain, max_gain], and the fit no worse than no refit
    capped = bases.refit_decoder(raw, x, max_gain=1.1)
    gain = capped.encoder.norm(dim=1) / raw.encoder.norm(dim=1)
    assert (gain <= 1.1 + 1e-4).all() and (gain >= 1 / 1.1 - 1e-4).all() and (gain > 1.09).any()
    a_cap = capped.encode(x[:, :, None, None])[:, :, 0, 0]
    got_cap = ((x - capped.decode(a_cap[:, :, None, None])[:, :, 0, 0]) ** 2).sum()
    assert got * (1 - 1e-4) <= got_cap < before
    # mode="full": the whole decoder by least squares (a direct lstsq), reconstructing at least as well
    full = bases.refit_decoder(raw, x, mode="full")
    a_full = full.encode(x[:, :, None, None])[:, :, 0, 0]
    assert torch.equal(a_full > 0, a_raw > 0)
    A = torch.cat([a_raw, torch.ones(len(x), 1)], 1).double()
    lsq = ((x.double() - A @ torch.linalg.lstsq(A, x.double()).solution) ** 2).sum()
    got_full = ((x - full.decode(a_full[:, :, None, None])[:, :, 0, 0]) ** 2).sum()
    assert float(got_full) == pytest.approx(float(lsq), rel=1e-3) and got_full <= got * (1 + 1e-4)
    with pytest.raises(core.InputError, match="L1 sparse dictionary"):
        bases.refit_decoder(bases.pca_basis(x), x)
    with pytest.raises(core.InputError, match="mode must be one of"):
        bases.refit_decoder(raw, x, mode="all")


def test_health_numbers_against_a_direct_computation(planted):
    G, _, x, sae, pca = planted
    held = bases.layer_activations(G, "feat", 80, seed=9)
    h = bases.basis_health(sae, held)
    pre = (held - sae.dec_bias) @ sae.encoder.T + sae.enc_bias
    a = pre.clamp_min(0)
    recon = a @ sae.decoder + sae.dec_bias
    fvu = ((held - recon) ** 2).sum() / ((held - held.mean(0)) ** 2).sum()
    assert h["fvu"] == pytest.approx(float(fvu), rel=1e-4) and h["fvu"] < 0.1
    assert h["mean_l0"] == pytest.approx(float((a > 0).sum(1).float().mean()), rel=1e-6)
    assert h["mean_l0"] < 2.0                                      # about one concept per cell
    rate = (a > 0).float().mean(0)
    assert h["dead"] == int((rate == 0).sum()) and h["dense"] == int((rate > 0.1).sum())
    full = bases.basis_health(pca, held)
    assert full["fvu"] < 1e-6                                      # all components: exact


def test_edit_rule_in_each_basis_matches_the_formula(planted):
    G, _, x, sae, pca = planted
    out = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    feats = [2, 5, 11]
    share = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    value = torch.tensor([0.0, 1.5, -0.5]).view(1, 3, 1, 1)
    topk = bases.train_sae(x, 24, 2, sparsity="topk", steps=20, batch_size=256)
    batch = bases.train_sae(x, 24, 2, sparsity="batch-topk", steps=20, batch_size=256)
    assert batch.threshold > 0 and topk.threshold == 0
    for b in (sae, pca, topk, batch):
        a = b.encode(out)[:, feats]
        want = out + torch.einsum("nfhw,fc->nchw", share * (value - a), b.decoder[feats])
        assert torch.allclose(b.edit(out, feats, share, value), want, atol=1e-5)
    u = bases.unit_basis(16)
    got = u.edit(out, feats, share, value)
    want = out.clone()
    want[:, feats] = out[:, feats] * (1 - share) + share * value   # the paper's rule
    assert torch.allclose(got, want)
    # an Edit in the unit basis is the plain unit edit
    z = torch.randn(2, G.z_dim)
    assert torch.equal(generate(G, z, [Edit("feat", [1, 4], basis=u)]), generate(G, z, [Edit("feat", [1, 4])]))
    # pca with every component set to its own value changes nothing
    assert torch.allclose(pca.decode(pca.encode(out)), out, atol=1e-4)


def test_ablating_a_feature_removes_its_concept_and_inserting_draws_it(planted):
    G, seg, x, sae, _ = planted
    d = directions()
    cos = d[2] / d[2].norm() @ torch.tensor(sae.directions()).T
    f = int(cos.argmax())                                          # the c2 feature
    along = torch.nonzero(cos > 0.9).view(-1).tolist()             # every feature along c2's direction
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(4))
    c2 = seg.labels.index("c2")
    before = (seg.segment(G(z)) == c2).sum()
    after = (seg.segment(generate(G, z, [Edit("feat", along, basis=sae)])) == c2).sum()
    assert before > 100 and after < 0.05 * before
    others = [(seg.segment(G(z)) == c).sum() for c in (1, 4)]
    assert [(seg.segment(generate(G, z, [Edit("feat", along, basis=sae)])) == c).sum() for c in (1, 4)] == others
    k = insertion_constants(G, seg, "feat", "c2", n_samples=100, basis=sae)
    assert k.shape == (24,) and float(k[f]) > 0.5
    mask = torch.zeros(8, 8)
    mask[6:8, 6:8] = 1
    drawn = seg.segment(generate(G, z[:8], [Edit("feat", [f], "insert", k[[f]], mask, basis=sae)]))
    assert ((drawn == c2).float().reshape(8, -1).sum(1) >= 16).all()     # every image: the 2x2 cells drawn


def test_ace_in_a_basis_ranks_the_planted_feature_first(planted):
    G, seg, x, sae, _ = planted
    d = directions()
    cos = d[3] / d[3].norm() @ torch.tensor(sae.directions()).T
    along = set(torch.nonzero(cos > 0.9).view(-1).tolist())        # the features along c3's direction
    res = causal.ace(G, seg, "feat", "c3", n_steps=40, basis=sae, dissect_samples=60, pool_size=32)
    assert res.alpha.shape == (24,) and set(res.ranking[:len(along)].tolist()) == along
    top = res.ranking[:len(along)].tolist()
    curve = causal.ablation_curve(G, seg, "feat", "c3", {"sae": top}, counts=(1, len(along)), n_samples=50,
                                  basis=sae)
    assert curve.removed.iloc[1] > 0.95 and curve.removed.iloc[0] < curve.removed.iloc[1]


def test_unit_fid_and_repair_in_a_basis(planted):
    """Unit FID of features: each feature's top images are those of the largest spatial maximum of its
    feature map (brute force), and the features of a concept absent from the 'real' images have the
    highest FID; ablating them along their directions brings the FID down, as many random features do not."""
    from core.base.sampling import z_range
    from core.engine import repair
    from core.engine.fid import FeatureStats, frechet_distance
    G, seg, _, sae, _ = planted
    d = directions()
    along = torch.nonzero(d[2] / d[2].norm() @ torch.tensor(sae.directions()).T > 0.9).view(-1).tolist()

    c2 = seg.labels.index("c2")

    def feats(images):                                                # colour statistics and c2's share
        return torch.cat([images.mean((2, 3)), images.std((2, 3)),
                          (seg.segment(images) == c2).float().mean((1, 2))[:, None]], 1)

    st = FeatureStats()                                               # 'real': the scenes without concept c2
    for a in range(0, 600, 200):
        st.update(feats(generate(G, z_range(77, a, a + 200, G.z_dim), [Edit("feat", along, basis=sae)])))
    real = st.mean_cov()
    uf = repair.unit_fid(G, "feat", feats, real, n_samples=300, top=20, seed=3, batch_size=300, basis=sae)
    z = z_range(3, 0, 300, G.z_dim)                                  # one batch (its noise is drawn per batch)
    _, cap = generate(G, z, capture=["feat"])
    smax = sae.encode(cap["feat"]).amax((2, 3))                      # [300, 24]
    f = along[0]
    got = smax[torch.as_tensor(uf.top_index[:, f]), f].sort().values     # (ties at the top: compare the values)
    assert torch.allclose(got, smax[:, f].topk(20).values.sort().values)
    sel = feats(G(z[uf.top_index[:, f]])).double()
    direct = frechet_distance(sel.mean(0).numpy(), np.cov(sel.numpy(), rowvar=False), *real)
    assert uf.fid.shape == (24,) and uf.fid[f] == pytest.approx(direct, rel=1e-6)
    assert set(uf.highest(len(along))) == set(along)
    table, _ = repair.repair_table(G, "feat", feats, real, along, n_candidates=300, n_eval=100, random_draws=3,
                                   batch_size=100, basis=sae)
    fid = dict(zip(table.variant, table.fid))
    flagged = fid[f"{len(along)} flagged features ablated"]
    assert flagged < 0.5 * fid["original"]
    assert flagged < 0.5 * [v for k, v in fid.items() if k.startswith(f"{len(along)} random features")][0]
    with pytest.raises(core.UnitIndexError):
        repair.repair_table(G, "feat", feats, real, [30], n_candidates=50, n_eval=20, basis=sae)   # 24 features


def test_fit_basis_is_stored_round_trip_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G = PlantedDirections()
    b = bases.fit_basis(G, "feat", "sae", n_samples=40, steps=30)
    again = bases.fit_basis(G, "feat", "sae", n_samples=40, steps=30, cached_only=True)
    assert b.n_features == 64 and again is not None and again.cache_key == b.cache_key
    assert torch.equal(again.decoder, b.decoder)
    assert bases.fit_basis(G, "feat", "sae", n_samples=40, steps=31, cached_only=True) is None
    assert bases.fit_basis(G, "feat", "units").kind == "units"
    p = bases.fit_basis(G, "feat", "pca", n_samples=40)
    assert p.n_features == 16 and np.allclose(p.directions() @ p.directions().T, np.eye(16), atol=1e-5)
    with pytest.raises(core.UnknownNameError, match="kind 'ica' is not a basis"):
        bases.fit_basis(G, "feat", "ica")
    with pytest.raises(core.InputError, match="sparsity must be one of"):
        bases.fit_basis(G, "feat", "sae", sparsity="l0")
    seg = ColourSegmenter()
    with pytest.raises(core.ArgumentTypeError, match="basis must be a Basis, got the name 'sae'"):
        core.dissect(G, seg, "feat", 8, basis="sae")
    with pytest.raises(core.InputError, match="the basis has 256 units but layer 'feat' has 16"):
        core.dissect(G, seg, "feat", 8, cache=False, basis=bases.unit_basis(256).__class__(
            "pca", 256, decoder=torch.eye(256), dec_bias=torch.zeros(256)))
    with pytest.raises(core.UnitIndexError):
        generate(G, torch.randn(1, G.z_dim), [Edit("feat", [64], basis=b)])       # 4 x 16 = 64 features

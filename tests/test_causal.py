"""Interventions and causal measurements: planted causal units, context gate, concurrency."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import core
from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import Edit, generate, insertion_constants, resize_mask
from core.studies import over_seeds
from tests.planted_causal import DECOYS, DOOR_UNITS, PlantedCausalGenerator, SoftColorSegmenter


@pytest.fixture(scope="module")
def planted():
    return PlantedCausalGenerator(), SoftColorSegmenter()


def test_ablate_and_insert_are_exact():
    torch.manual_seed(0)
    G = core.ProGAN(16, (16, 12, 8)).eval().requires_grad_(False)
    z = torch.randn(3, 16)
    mask = torch.zeros(8, 8)
    mask[:4, :4] = 1                                     # image-resolution mask -> layer3 grid 8x8
    _, cap = generate(G, z, capture=["layer3"])
    _, edited = generate(G, z, [Edit("layer3", [1, 5], "insert", [2.0, -1.0], mask)], capture=["layer3"])
    want = cap["layer3"].clone()
    want[:, 1, :4, :4] = 2.0
    want[:, 5, :4, :4] = -1.0
    assert torch.equal(edited["layer3"], want)
    _, abl = generate(G, z, [Edit("layer3", [0, 2])], capture=["layer3"])
    want = cap["layer3"].clone()
    want[:, [0, 2]] = 0
    assert torch.equal(abl["layer3"], want)
    # a 16x16 painted mask becomes per-location coverage on the 8x8 grid
    m = torch.zeros(16, 16)
    m[:3, :3] = 1
    cov = resize_mask(m, 1, 8, 8)[0, 0]
    assert cov[0, 0] == 1 and cov[1, 1] == 0.25 and cov[2, 2] == 0


def test_insertion_constants_brute_force(planted):
    G, seg = planted
    k = insertion_constants(G, seg, "feat", "door", n_samples=40, batch_size=7)
    z = z_range(1, 0, 40, G.z_dim)
    images, cap = generate(G, z, capture=["feat"])
    hit = (seg.segment(images) == 3).float()                  # 32x32 -> 8x8 cells of 4x4
    cover = hit.view(40, 8, 4, 8, 4).mean((2, 4))
    r = cap["feat"]
    want = (r * cover[:, None]).sum((0, 2, 3)) / cover.sum()
    assert torch.allclose(k, want, atol=1e-5)
    assert k[0] == pytest.approx(0.9, abs=1e-5)              # door unit 0 is 0.9 where the door is


def test_ace_ranks_planted_units_first(planted):
    G, seg = planted
    res = causal.ace(G, seg, "feat", "door", n_steps=60, batch_size=8, lr=0.05, pool_size=48, top_n=5)
    top = set(res.units)
    assert len(top & set(DOOR_UNITS)) / len(DOOR_UNITS) >= 0.9, (res.alpha, res.init)
    # the decoys match the door as well as the causal units do (IoU) but cause nothing
    assert res.init[DECOYS[:2]].min() > 0.9
    assert res.alpha[DOOR_UNITS].min() > res.alpha[DECOYS].max()
    assert res.effects[-1] > res.effects[0] * 0.5


def test_ablation_curve_ace_beats_iou(planted):
    G, seg = planted
    iou_rank = [5, 6, 4, 3, 2, 1, 0]            # decoys first (they have the highest IoU)
    ace_rank = [4, 3, 2, 1, 0, 5, 6]
    df = causal.ablation_curve(G, seg, "feat", "door", {"iou": iou_rank, "ace": ace_rank},
                               counts=(1, 2, 3, 5), n_samples=60)
    r = df.pivot(index="n", columns="ranking", values="removed")
    assert r.loc[3, "ace"] == pytest.approx(1.0)          # 3 of 5 door units: mean < 0.5, door gone
    assert r.loc[3, "iou"] == pytest.approx(0.0)          # decoys + 1 door unit: door stays
    assert r.loc[2, "ace"] == pytest.approx(0.0)


def test_ace_is_stored_reused_and_the_same_with_or_without_the_cache(planted, tmp_path, monkeypatch):
    import copy
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G, seg = planted
    seg = copy.copy(seg)
    seg.cache_key = "planted-soft-color"          # a cache identity (the plain test segmenter has none)
    opts = dict(n_steps=6, dissect_samples=32, k_samples=16, pool_size=8, batch_size=4)
    assert causal.ace(G, seg, "feat", "door", cached_only=True, **opts) is None
    res = causal.ace(G, seg, "feat", "door", **opts)
    again = causal.ace(G, seg, "feat", "door", cached_only=True, **opts)
    assert np.array_equal(again.ranking, res.ranking) and np.array_equal(again.alpha, res.alpha)
    assert again.losses == pytest.approx(res.losses) and again.units == res.units
    assert again.seconds == pytest.approx(res.seconds)
    assert causal.ace(G, seg, "feat", "door", cached_only=True, **{**opts, "top_n": 3}).units == res.units[:3]
    # the same seed without the cache: the same samples, the same units (nothing read or written)
    for seed in (0, 1):
        stored = causal.ace(G, seg, "feat", "door", seed=seed, **opts)
        fresh = causal.ace(G, seg, "feat", "door", seed=seed, cache=False, **opts)
        assert np.allclose(fresh.alpha, stored.alpha, atol=1e-6) and fresh.units == stored.units
    # the same as ace() started from the shared dissection's IoU and the shared constants, given
    c = seg.labels.index("door")
    dis = core.dissect(G, seg, ["feat"], 32, seed=0, cache=False)
    direct = causal.ace(G, seg, "feat", "door", n_steps=6, pool_size=8, batch_size=4, iou=dis.iou("feat")[:, c],
                        k=insertion_constants(G, seg, "feat", "door", n_samples=16, seed=1, cache=False), cache=False)
    assert np.allclose(direct.alpha, res.alpha, atol=1e-6) and np.array_equal(direct.ranking, res.ranking)
    # other options, another concept, another seed: other entries
    assert causal.ace(G, seg, "feat", "door", cached_only=True, **{**opts, "n_steps": 7}) is None
    assert causal.ace(G, seg, "feat", "wall", cached_only=True, **opts) is None
    assert causal.ace(G, seg, "feat", "door", seed=2, cached_only=True, **opts) is None
    # the paint page's lookup finds it (and never computes one)
    from core.studies import units
    assert units.stored_ace(G, seg, "feat", "wall", 32) is None
    found = units.stored_ace(G, seg, "feat", "door", 32, steps=(7, 6), pool_size=8, batch_size=4, k_samples=16)
    assert found is not None and np.array_equal(found.ranking, res.ranking)
    assert units.stored_ace(G, seg, "feat", "door", 32, steps=(7,), pool_size=8, batch_size=4, k_samples=16) is None
    assert units.concept_units(G, seg, "feat", "door", n=4, cached_only=True, **opts) == res.units[:4]


def test_context_gate(planted):
    G, seg = planted
    k = insertion_constants(G, seg, "feat", "door", n_samples=40)
    rows, summary, maps = causal.context_study(G, seg, "feat", DOOR_UNITS, k, "door", n_images=6)
    s = summary.set_index("context")["mean"]
    assert abs(s["sky"]) < 1e-9                         # never a door in the sky
    assert s["wall"] > 0.01                              # inserting on the wall draws one
    assert maps.shape == (6, 8, 8)
    assert np.allclose(maps[rows.image, rows.y, rows.x], rows.effect)
    # brute force for the location with the largest effect: one image, one cell, one insertion
    best = rows.loc[rows.effect.idxmax()]
    z = z_range(4, int(best.image), int(best.image) + 1, G.z_dim)
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, int(best.y), int(best.x)] = 1
    c = seg.labels.index("door")
    before = (seg.segment(generate(G, z)) == c).float().mean()
    after = (seg.segment(generate(G, z, [Edit("feat", DOOR_UNITS, "insert", k[DOOR_UNITS], mask)])) == c).float().mean()
    assert float(after - before) == pytest.approx(best.effect, abs=1e-6) and best.effect > 0.01


def test_effect_measure_and_tracing():
    torch.manual_seed(1)
    G = core.ProGAN(16, (16, 12, 8)).eval().requires_grad_(False)
    z = torch.randn(2, 16)
    mask = torch.zeros(4, 4)
    mask[1, 2] = 1
    df, emap = causal.trace_effect(G, Edit("layer2", list(range(16)), "insert", 3.0, mask), z)
    assert list(df.layer) == ["layer3", "layer4", "layer5", "layer6", "output_16x16"]
    assert (df.change > 0).all()
    # the effect at the last layer peaks near the edited location (row 1, col 2 of 4x4 -> 16x16)
    peak = np.unravel_index(emap[0].argmax(), emap[0].shape)
    assert abs(peak[0] / 4 - 1.5) <= 1.5 and abs(peak[1] / 4 - 2.5) <= 1.5


def test_concurrent_edits_match_serial():
    """8 threads, different edits, one shared model: identical to serial runs."""
    torch.manual_seed(2)
    G = core.ProGAN(16, (32, 24, 16)).eval().requires_grad_(False)
    z = torch.randn(4, 16)
    rng = np.random.default_rng(0)
    edits = []
    for t in range(8):
        units = sorted(rng.choice(24, size=5, replace=False).tolist())
        mode = "ablate" if t % 2 else "insert"
        mask = torch.from_numpy(rng.random((16, 16)) > 0.5)
        edits.append(Edit("layer4", units, mode, None if mode == "ablate" else 1.5, mask))
    serial = [generate(G, z, [e]) for e in edits]
    results = [[] for _ in edits]
    barrier = threading.Barrier(len(edits))

    def worker(i):
        barrier.wait()
        for _ in range(15):
            results[i].append(generate(G, z, [edits[i]]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(edits))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for i in range(len(edits)):
        assert all(torch.equal(r, serial[i]) for r in results[i]), f"thread {i} saw another edit"
    assert len(set(float(s.sum()) for s in serial)) == len(edits)


def test_bad_input(planted):
    G, seg = planted
    z = torch.randn(2, 16)
    with pytest.raises(IndexError, match=r"unit indices \[12\] out of range .* 12 units \(valid: 0..11\)"):
        generate(G, z, [Edit("feat", [3, 12])])
    with pytest.raises(ValueError, match="empty unit list"):
        Edit("feat", [])
    with pytest.raises(ValueError, match=r"mask must be H x W, N x H x W or N x 1 x H x W"):
        generate(G, z, [Edit("feat", [1], mask=torch.ones(3, 2, 8, 8))])
    with pytest.raises(ValueError, match="unknown concept 'castle'; the segmenter knows: sky, wall, door"):
        causal.causal_effect(G, seg, "feat", [0], "castle", 1.0)
    with pytest.raises(ValueError, match="unknown layer 'layer9'"):
        generate(G, z, [Edit("layer9", [1])])
    with pytest.raises(ValueError, match="insert Edit needs value="):
        Edit("feat", [1], "insert")


def test_removal_table(planted):
    G, seg = planted
    df = over_seeds.removal_table({"planted": G}, seg, "feat", ["door", "sky"], n_units=5, ace_steps=30,
                              n_samples=40, batch_size=8, lr=0.05, pool_size=32)
    door = df.set_index("concept").loc["door"]
    assert door.removed_percent == pytest.approx(100.0)          # the 5 causal door units
    assert set(door.units) == set(DOOR_UNITS)
    sky = df.set_index("concept").loc["sky"]
    assert np.isnan(sky.removed_percent) or sky.removed_percent < 1   # nothing in feat draws the sky


def test_removal_over_seeds_is_the_mean_and_t_interval_of_the_per_seed_tables(planted):
    import math

    from scipy import stats
    G, seg = planted
    kw = dict(n_units=5, ace_steps=20, n_samples=24, batch_size=8, lr=0.05, pool_size=16)
    got = over_seeds.removal_over_seeds({"planted": G}, seg, "feat", ["door"], seeds=(0, 1, 2), **kw)
    per = [float(over_seeds.removal_table({"planted": G}, seg, "feat", ["door"], seed=s, sample_seed=5 + 1000 * s,
                                      **kw).removed_percent.iloc[0]) for s in (0, 1, 2)]
    row = got.iloc[0]
    assert row.per_seed == pytest.approx(per) and row.seeds == 3
    assert row.removed_percent == pytest.approx(np.mean(per))
    half = stats.t.ppf(0.975, 2) * np.std(per, ddof=1) / math.sqrt(3)
    assert (row.ci_low, row.ci_high) == pytest.approx((np.mean(per) - half, np.mean(per) + half))
    one = over_seeds.removal_over_seeds({"planted": G}, seg, "feat", ["door"], seeds=[4], **kw).iloc[0]
    assert np.isnan(one.ci_low) and np.isnan(one.ci_high) and one.seeds == 1
    with pytest.raises(ValueError, match="seeds"):
        over_seeds.removal_over_seeds({"planted": G}, seg, "feat", ["door"], seeds=[], **kw)


def test_inline_adam_matches_torch_adam():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(7, generator=g).requires_grad_()
    b = a.detach().clone().requires_grad_()
    mine, ref = causal.effect._Adam(a, 0.05), torch.optim.Adam([b], lr=0.05)
    for _ in range(25):
        target = torch.randn(7, generator=g)
        for p in (a, b):
            p.grad = None
            ((p - target) ** 2 * torch.arange(1.0, 8.0)).sum().backward()
        mine.step()
        ref.step()
        assert torch.allclose(a, b, atol=1e-6)


def test_the_ace_loss_trend_is_the_trailing_mean():
    import numpy as np

    from core.engine.causal import AceResult
    rng = np.random.default_rng(0)
    losses = rng.normal(size=37).tolist()
    r = AceResult("layer4", "door", np.zeros(4), np.arange(4), losses=losses)
    for w in (1, 5, 10, 50):
        brute = [np.mean(losses[max(0, i + 1 - w):i + 1]) for i in range(len(losses))]
        np.testing.assert_allclose(r.loss_trend(w), brute, rtol=1e-12, atol=1e-12)
    assert len(AceResult("l", "c", np.zeros(1), np.arange(1)).loss_trend()) == 0


def test_mean_interval_is_the_95_percent_t_interval():
    import math

    from scipy import stats
    v = [0.2, 0.5, 0.9, 0.4]
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert over_seeds.mean_interval(v) == pytest.approx((np.mean(v), lo, hi))
    m, lo1, hi1 = over_seeds.mean_interval([3.0])
    assert m == 3.0 and math.isnan(lo1) and math.isnan(hi1)
    assert all(math.isnan(x) for x in over_seeds.mean_interval([]))


def test_curve_over_seeds_intervals_and_cache(planted, tmp_path, monkeypatch):
    """Per (ranking, n): the mean of the per-seed curves and its t-interval; once every piece is
    stored, cached_only answers with the same table (nothing computed)."""
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    G, seg = planted
    seg.cache_key = "planted-soft-colour-segmenter"          # a plain object: named so the cache can key it
    df = over_seeds.curve_over_seeds(G, seg, "feat", "door", seeds=(0, 1, 2), counts=(1, 5), n_samples=16,
                                 ace_steps=20, dissect_samples=32)
    assert set(zip(df.ranking, df.n)) == {("ace", 1), ("ace", 5), ("iou", 1), ("iou", 5)}
    for r in df.itertuples():
        v = np.asarray(r.per_seed)
        assert len(v) == 3 and r.removed == pytest.approx(v.mean())
        half = 4.302652729911275 * v.std(ddof=1) / np.sqrt(3)          # t(0.975, 2)
        assert r.ci_low == pytest.approx(v.mean() - half) and r.ci_high == pytest.approx(v.mean() + half)
    again = over_seeds.curve_over_seeds(G, seg, "feat", "door", seeds=(0, 1, 2), counts=(1, 5), n_samples=16,
                                    ace_steps=20, dissect_samples=32, cached_only=True)
    assert again is not None and np.allclose(again.removed, df.removed)
    assert over_seeds.curve_over_seeds(G, seg, "feat", "door", seeds=(7,), counts=(1, 5), n_samples=16, ace_steps=20,
                                   dissect_samples=32, cached_only=True) is None

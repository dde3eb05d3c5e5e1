"""The context study with toyworld's context classes, rules and intervals over seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import core
from core import toyworld
from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import Edit, generate, insertion_constants
from core.studies import context
from tests.planted_causal import DOOR_UNITS, PlantedCausalGenerator, SoftColorSegmenter

L = toyworld.LABELS


def _map(rows):
    """A label map from rows of label names (one character per 4x4 block)."""
    code = {"s": "sky", "b": "building", "g": "grass", "r": "roof", "c": "cloud", "t": "trunk", "d": "door"}
    arr = np.array([[L.index(code[ch]) for ch in row] for row in rows])
    return torch.from_numpy(np.kron(arr, np.ones((4, 4), dtype=np.int64)))


def test_toyworld_classes_split_walls_by_their_ground_line():
    seg = _map(["sccs",
                "rrrr",
                "bbbt",
                "bbbt",
                "gggg"])                          # 16 x 20 px: a house on grass, a trunk at the right
    classify = context.toyworld_classes(L)
    boxes = torch.tensor([[12, 0, 16, 4],          # lowest wall row: grass right under it
                          [8, 0, 12, 4],           # a wall row above it
                          [0, 4, 4, 8],            # a cloud: sky
                          [4, 0, 8, 8],            # roof
                          [8, 12, 16, 16],         # the trunk: tree
                          [16, 0, 20, 8]])         # grass
    assert classify(seg[None].expand(6, -1, -1), boxes) == ["wall at its ground line", "upper wall", "sky", "roof",
                                                           "tree", "grass"]


def test_toyworld_violations_count_new_pixels_away_from_their_context():
    before = _map(["ssss", "bbbb", "gggg"])[None]
    after = before.clone()
    door = L.index("door")
    after[0, 0:2, 0:3] = door                     # 6 px of door in the sky, far from the wall
    after[0, 5:7, 5:7] = door                     # 4 px on the wall
    rule = context.toyworld_violations(L, "door")
    assert float(rule(before, after, door)[0]) == 6
    assert context.toyworld_violations(L, "road") is None   # toyworld has no rule for roads


@pytest.fixture(scope="module")
def planted():
    return PlantedCausalGenerator().eval(), SoftColorSegmenter()


def test_brushes_scales_and_a_brute_force_insertion(planted):
    G, seg = planted
    k = insertion_constants(G, seg, "feat", "door", n_samples=40)
    rows, summary, maps = causal.context_study(G, seg, "feat", DOOR_UNITS, k, "door", n_images=3, brush=2, scale=2.0)
    assert maps.shape == (3, 7, 7) and len(rows) == 3 * 49
    assert np.allclose(maps[rows.image, rows.y, rows.x], rows.effect)
    best = rows.loc[rows.added_px.idxmax()]
    z = z_range(4, int(best.image), int(best.image) + 1, G.z_dim)
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, int(best.y):int(best.y) + 2, int(best.x):int(best.x) + 2] = 1
    c = seg.labels.index("door")
    before = (seg.segment(generate(G, z)) == c).sum()
    after = (seg.segment(generate(G, z, [Edit("feat", DOOR_UNITS, "insert", 2.0 * k[DOOR_UNITS], mask)])) == c).sum()
    assert float(after - before) == best.added_px > 0
    s = summary.set_index("context")
    # a door only appears on the wall: blocks entirely in the sky add nothing, wall blocks add doors
    seg0 = seg.segment(generate(G, z_range(4, 0, 3, G.z_dim)))           # 32 px images: 4 px per cell
    sky = seg.labels.index("sky")
    pure = [bool((seg0[i, 4 * y:4 * y + 8, 4 * x:4 * x + 8] == sky).all())
            for i, y, x in zip(rows.image, rows.y, rows.x)]
    assert sum(pure) > 0 and (rows.added_px[pure] == 0).all()
    assert s.loc["wall", "added_px"] > 0
    assert s.loc["wall", "ci_low"] <= s.loc["wall", "added_px"] <= s.loc["wall", "ci_high"]
    for bad in ({"brush": 0}, {"brush": 9}, {"brush": 1.5}, {"scale": 0}, {"scale": float("nan")}):
        with pytest.raises(core.InputError):
            causal.context_study(G, seg, "feat", DOOR_UNITS, k, "door", n_images=1, **bad)


def test_intervals_over_seeds_are_t_intervals_of_the_seed_means(planted):
    G, seg = planted
    k = insertion_constants(G, seg, "feat", "door", n_samples=40)
    out = context.context_over_seeds(G, seg, "feat", DOOR_UNITS, k, "door", seeds=(4, 5, 6), n_images=2, brush=1)
    summary, per_seed = out["summary"].set_index("context"), out["per_seed"]
    wall = per_seed[per_seed.context == "upper wall"].added_px.to_numpy()   # the planted wall has no ground
    assert len(wall) == 3
    half = stats.t.ppf(0.975, 2) * wall.std(ddof=1) / math.sqrt(3)
    assert summary.loc["upper wall", "added_px"] == pytest.approx(wall.mean())
    assert summary.loc["upper wall", "ci_high"] - summary.loc["upper wall", "added_px"] == pytest.approx(half)
    assert summary.loc["sky", "added_px"] == 0 and summary.loc["sky", "violations"] == 0
    assert summary.loc["upper wall", "n"] == (out["rows"].context == "upper wall").sum()
    with pytest.raises(core.InputError, match="seeds"):
        context.context_over_seeds(G, seg, "feat", DOOR_UNITS, k, "door", seeds=())
    # units per seed (a fresh ACE per seed): each seed's table is the study with that seed's units
    picks = [DOOR_UNITS, DOOR_UNITS[:1], [u for u in range(len(k)) if u not in DOOR_UNITS][:2]]
    fresh = context.context_over_seeds(G, seg, "feat", None, None, "door", seeds=(4, 5, 6), n_images=2, brush=1,
                                       units_for=lambda i, s: (picks[i], k[picks[i]]))
    assert fresh["units"] == [list(p) for p in picks]
    for i, s in enumerate((4, 5, 6)):
        _, alone, _ = core.context_study(G, seg, "feat", picks[i], k[picks[i]], "door", n_images=2, seed=s, brush=1,
                                         scale=3.0, classify=context.toyworld_classes(seg.labels),
                                         violations=context.toyworld_violations(seg.labels, "door"))
        got = fresh["per_seed"][fresh["per_seed"].seed == s].set_index("context").added_px
        assert np.allclose(got.sort_index().to_numpy(), alone.set_index("context").added_px.sort_index().to_numpy())

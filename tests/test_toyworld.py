"""toyworld renderer: determinism, content, appearance variety, context rules, bad input."""
import pytest
import torch

from core import toyworld as tw
from core.base.errors import InputError


def test_shapes_dtypes_ranges():
    for scene in tw.SCENES:
        im, lb = tw.render(scene, 5, seed=0)
        assert im.shape == (5, 3, 128, 128) and im.dtype == torch.float32
        assert lb.shape == (5, 128, 128) and lb.dtype == torch.long
        assert im.min() >= -1 and im.max() <= 1
        assert lb.min() >= 1 and lb.max() < len(tw.LABELS)   # toyworld labels every pixel
    for size in (32, 64, 256):
        im, lb = tw.render("town", 2, seed=0, size=size)
        assert im.shape == (2, 3, size, size) and lb.shape == (2, size, size)


def test_deterministic_and_prefix_stable():
    a_im, a_lb = tw.render("town", 6, seed=11)
    b_im, b_lb = tw.render("town", 6, seed=11)
    assert torch.equal(a_im, b_im) and torch.equal(a_lb, b_lb)
    # scene i of a seed does not depend on how many are rendered, nor on chunking
    c_im, c_lb = tw.render("town", 300, seed=11)
    assert torch.equal(c_im[:6], a_im) and torch.equal(c_lb[:6], a_lb)
    d_im, d_lb = tw.render("town", 4, seed=11, start=290)
    assert torch.equal(d_im, c_im[290:294]) and torch.equal(d_lb, c_lb[290:294])
    e_im, _ = tw.render("town", 6, seed=12)
    assert not torch.equal(e_im, a_im)


def test_scenes_differ_from_each_other():
    im, _ = tw.render("lake", 50, seed=3)
    flat = im.flatten(1)
    d = torch.cdist(flat, flat)
    assert (d + torch.eye(50) * 1e9).min() > 1.0     # no two scenes are (nearly) the same


def test_enough_concepts_and_scene_sharing():
    assert len(tw.LABELS) - 1 >= 24 and tw.LABELS[0] == "-"
    assert set(tw.SCENES) >= {"town", "room", "lake"}
    shared = set(tw.SCENE_CONCEPTS["town"]) & set(tw.SCENE_CONCEPTS["lake"])
    assert {"sky", "cloud", "mountain", "grass", "tree", "building", "door"} <= shared
    assert set(tw.SCENE_CONCEPTS["room"]) & set(tw.SCENE_CONCEPTS["town"]) >= {"window", "door", "lamp"}


@pytest.mark.parametrize("scene", tw.SCENES)
def test_each_concept_appears_in_its_scene_type(scene):
    _, lb = tw.render(scene, 400, seed=5)
    present = {tw.LABELS[i] for i in torch.unique(lb).tolist()}
    assert set(tw.SCENE_CONCEPTS[scene]) == present
    # and in a reasonable share of scenes (no concept is a one-in-a-thousand rarity)
    L = len(tw.LABELS)
    per_scene = torch.zeros(400, L, dtype=torch.bool)
    per_scene.scatter_(1, lb.view(400, -1), True)
    for c in tw.SCENE_CONCEPTS[scene]:
        assert per_scene[:, tw.label_index(c)].float().mean() > 0.04, c


@pytest.mark.parametrize("scene", tw.SCENES)
def test_concepts_vary_in_appearance(scene):
    """A concept is never one colour: its mean colour per scene spreads widely."""
    im, lb = tw.render(scene, 300, seed=9)
    rgb = im.permute(0, 2, 3, 1)
    for c in tw.SCENE_CONCEPTS[scene]:
        i = tw.label_index(c)
        means = []
        for k in range(300):
            m = lb[k] == i
            if m.sum() >= 4:
                means.append(rgb[k][m].mean(0))
        means = torch.stack(means)
        spread = means.std(0).max().item()      # std of per-scene mean colour (in [-1, 1] units)
        assert spread > 0.08, (c, spread)


def _below(mask):
    """For an amodal mask [N,H,W]: its bottom-edge pixels (pixel below not in the mask), and
    the coordinates of the pixels right under them. Bottom edges on the last row are dropped."""
    n, h, w = mask.shape
    under = torch.zeros_like(mask)
    under[:, :-1] = mask[:, :-1] & ~mask[:, 1:]
    idx = under.nonzero()
    return idx[:, 0], idx[:, 1] + 1, idx[:, 2]


def _concept(layers, concept):
    ms = [m for k, m in layers.items() if k.split("/")[0] == concept]
    if not ms:
        return None
    out = ms[0].clone()
    for m in ms[1:]:
        out |= m
    return out


def _parts(layers, prefix):
    return {k.split("/")[1]: m for k, m in layers.items() if k.startswith(prefix + "/")}


def _check_doors(layers, walls_by_tag, ground):
    doors = _parts(layers, "door")
    assert doors, "no door layers"
    for tag, door in doors.items():
        wall = walls_by_tag[tag]
        assert not (door & ~wall).any(), f"door/{tag} outside its wall"
        n, y, x = _below(door)
        assert (~wall[n, y, x]).all(), f"door/{tag} does not reach its wall's ground line"
        assert ground[n, y, x].all(), f"door/{tag} does not stand on the ground"
        # and a door bottom on the last row would be a door not standing on anything visible
        assert not door[:, -1].any()


def _check_standing(mask, ground, what):
    """The object's lowest row rests on the ground: the pixels right under it are ground."""
    n, h, w = mask.shape
    rows = mask.any(2)                                            # N H
    ybot = h - 1 - rows.flip(1).int().argmax(1)                   # lowest occupied row
    ok = rows.any(1) & (ybot < h - 1)
    idx = ok.nonzero().flatten()
    if idx.numel() == 0:
        return
    bottom = mask[idx, ybot[idx]]                                 # k W
    under = ground[idx, ybot[idx] + 1]                            # k W
    assert (under | ~bottom).all(), f"{what} does not stand on the ground"


def _check_scene_rules(scene, layers, labels):
    L = {k: v for k, v in layers.items()}
    if scene in ("town", "lake"):
        ground = _concept(L, "grass") | (_concept(L, "road") if scene == "town" else _concept(L, "water"))
        for sky_thing in ("cloud", "sun"):
            m = _concept(L, sky_thing)
            assert not (m & ground).any(), f"{sky_thing} below the horizon"
        walls = _parts(L, "building")
        for tag, win in _parts(L, "window").items():
            assert not (win & ~walls[tag]).any(), "window outside its wall"
        land = _concept(L, "grass") | (_concept(L, "road") if scene == "town" else torch.zeros_like(ground))
        _check_doors(L, walls, land)
        for tag, trunk in _parts(L, "trunk").items():
            _check_standing(trunk, land, "tree")
        # depth: mountains hide clouds and the sun
        mt = _concept(L, "mountain")
        for sky_thing in ("cloud", "sun"):
            over = mt & _concept(L, sky_thing)
            assert over.any() or sky_thing == "sun"
            assert not (labels[over] == tw.label_index(sky_thing)).any(), f"{sky_thing} in front of a mountain"
    if scene == "town":
        land = _concept(L, "grass") | _concept(L, "road")
        for name in ("bush", "fence"):
            _check_standing(_concept(L, name), land, name)
        for tag, pole in _parts(L, "lamp").items():
            if tag.startswith("pole"):
                _check_standing(pole, land, "street lamp")
        # depth: trees stand in front of buildings
        front = _concept(L, "tree") & _concept(L, "building")
        assert (labels[front] != tw.label_index("building")).all()
    if scene == "lake":
        water, grass = _concept(L, "water"), _concept(L, "grass")
        for tag, hull in _parts(L, "boat").items():
            if tag.startswith("hull"):
                n, y, x = _below(hull)
                assert (water[n, y, x] & ~grass[n, y, x]).all(), "boat not on open water"
    if scene == "room":
        back = L["wall/back"]
        floor = L["floor"]
        door = L["door"]
        assert not (door & ~back).any(), "door outside the back wall"
        n, y, x = _below(door)
        assert (floor[n, y, x] & ~back[n, y, x]).all(), "door not at the floor line"
        for name in ("window", "curtain", "painting"):
            assert not (_concept(L, name) & ~back).any(), f"{name} outside the wall"
        for name in ("bed", "sofa", "rug"):
            _check_standing(_concept(L, name), floor, name)
        _check_standing(L["table/legs"], floor, "table")
        assert not (_concept(L, "rug") & ~floor).any()
        _check_standing(L["plant/pot"], floor, "plant")
        _check_standing(L["lamp/pole"], floor, "lamp")
    # every labelled pixel lies inside an amodal layer of its own concept
    for c in torch.unique(labels).tolist():
        cover = _concept(L, tw.LABELS[c])
        assert cover is not None and not ((labels == c) & ~cover).any(), tw.LABELS[c]


def test_context_rules_hold_over_10000_scenes():
    total = 0
    for scene, n in zip(tw.SCENES, (3334, 3333, 3333)):
        for start in range(0, n, 700):
            m = min(700, n - start)
            _, lb, layers = tw.render(scene, m, seed=21, start=start, return_layers=True)
            _check_scene_rules(scene, layers, lb)
            total += m
    assert total == 10000


def test_layers_match_plain_render():
    im, lb = tw.render("room", 8, seed=4)
    im2, lb2, layers = tw.render("room", 8, seed=4, return_layers=True)
    assert torch.equal(im, im2) and torch.equal(lb, lb2)
    assert all(v.dtype == torch.bool and v.shape == lb.shape for v in layers.values())


def test_colorize_and_label_index():
    _, lb = tw.render("town", 2, seed=0)
    rgb = tw.colorize(lb)
    assert rgb.shape == (2, 128, 128, 3) and rgb.dtype == torch.uint8
    assert len({tuple(c) for c in tw.LABEL_COLORS.tolist()}) == len(tw.LABELS)
    assert tw.LABELS[tw.label_index("door")] == "door"
    with pytest.raises(ValueError, match="toyworld concepts are"):
        tw.label_index("dragon")


@pytest.mark.parametrize("kwargs,match", [
    (dict(scene="castle", n=2), "toyworld scenes are: town, room, lake"),
    (dict(scene="town", n=0), "positive integer"),
    (dict(scene="town", n=-3), "positive integer"),
    (dict(scene="town", n=2.5), "positive integer"),
    (dict(scene="town", n=2, size=100), "sizes 32, 64, 128, 256, 512"),
    (dict(scene="town", n=2, start=-1), "non-negative"),
])
def test_bad_input_names_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tw.render(**kwargs)


def test_a_world_without_a_concept_is_the_same_world_with_what_lay_behind():
    """render(..., omit=) draws every scene with the same random draws, the omitted concept left out:
    its pixels show what it covered (clouds: the sky, or the sun behind them); every other pixel and
    label is unchanged."""
    im, lab = tw.render("lake", 40, seed=3, size=64)
    im2, lab2 = tw.render("lake", 40, seed=3, size=64, omit=("cloud",))
    cloud = lab == tw.label_index("cloud")
    assert cloud.sum() > 500 and not (lab2 == tw.label_index("cloud")).any()
    behind = lab2[cloud]
    assert ((behind == tw.label_index("sky")) | (behind == tw.label_index("sun"))).all()
    assert (behind == tw.label_index("sky")).float().mean() > 0.95
    assert torch.equal(lab[~cloud], lab2[~cloud]) and torch.equal(im.permute(0, 2, 3, 1)[~cloud],
                                                                 im2.permute(0, 2, 3, 1)[~cloud])
    with pytest.raises(InputError, match="unknown concepts"):
        tw.render("lake", 2, omit=("unicorn",))

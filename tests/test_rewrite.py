"""Rewriting (issue #35): the closed form, the projection, a planted rule recovered, the request's round
trip and refusals, and rewritten models saved and loaded by name without touching the shared model."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.base.cache import weights_hash
from core.base.errors import ArgumentTypeError, InputError
from core.base.sampling import z_at, z_range
from core.engine import rewrite as R
from core.studies.rewriting import Region, Request, mask_from_json, run_request, save_rewrite

A, B, BG = 0, 1, 2


class _Keys(nn.Module):
    """Keys from z: on a 4x4 grid each cell is concept A (z > 0.8), B (z < -0.8) or background, its key
    that concept's prototype (orthonormal rows of ``protos``) plus a little noise drawn from z."""

    def __init__(self, z_dim, protos):
        super().__init__()
        self.register_buffer("protos", protos)
        self.register_buffer("mix", torch.randn(z_dim, 16 * protos.shape[1],
                                                generator=torch.Generator().manual_seed(1), device="cpu"))

    def forward(self, z):
        cls = classes(z)
        keys = self.protos[cls]                                            # [n, 4, 4, c]
        noise = 0.15 * torch.tanh(z @ self.mix).view(z.shape[0], 4, 4, -1)
        return (keys + noise).permute(0, 3, 1, 2)


def classes(z: torch.Tensor) -> torch.Tensor:
    u = z[:, :16].view(-1, 4, 4)
    return torch.where(u > 0.8, A, torch.where(u < -0.8, B, BG))


class Planted(nn.Module):
    """A generator with a planted associative memory: layer2 (a 1x1 convolution) maps each concept's
    key to a value; the image is the values through a fixed 1x1 convolution, 4x nearest upsampled."""
    z_dim = 16
    layer_names = ["layer1", "layer2", "output"]
    resolution = 16

    def __init__(self, c_in=8, c_out=6):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        protos = torch.linalg.qr(torch.randn(c_in, 3, generator=g, device="cpu"))[0].t().contiguous()
        self.layer1 = _Keys(self.z_dim, protos)
        self.layer2 = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.output = nn.Conv2d(c_out, 3, 1)
        with torch.no_grad():
            self.layer2.weight.copy_(torch.randn(c_out, c_in, 1, 1, generator=g, device="cpu"))
            self.output.weight.copy_(torch.randn(3, c_out, 1, 1, generator=g, device="cpu") * 0.3)
            self.output.bias.zero_()
        self.eval().requires_grad_(False)

    def forward(self, z):
        x = self.output(self.layer2(self.layer1(z)))
        return torch.tanh(F.interpolate(x, scale_factor=4, mode="nearest"))


@pytest.fixture(scope="module")
def planted():
    return Planted()


def _cell_mask(r, c, size=16):
    m = np.zeros((size, size), bool)
    m[4 * r:4 * r + 4, 4 * c:4 * c + 4] = True
    return m


def _find(G, want, seed=0, start=0, count=1):
    """(sample, row, col) of the first ``count`` samples with a cell of class ``want``."""
    out = []
    for i in range(start, start + 500):
        cls = classes(z_at(seed, [i], G.z_dim))[0]
        hits = torch.nonzero(cls == want)
        if len(hits):
            out.append((i, int(hits[0, 0]), int(hits[0, 1])))
            if len(out) == count:
                return out
    raise AssertionError("no sample found")


# ----------------------------------------------------------------------------- closed form and projection

def test_closed_form_is_least_change_insertion():
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(5, 7, generator=g, device="cpu", dtype=torch.float64)
    x = torch.randn(200, 7, generator=g, device="cpu", dtype=torch.float64) * torch.linspace(0.2, 3, 7, device="cpu")
    c = x.t() @ x / 200
    k, v = x[0], torch.randn(5, generator=g, device="cpu", dtype=torch.float64)
    w1 = R.closed_form(w0, k, v, c)
    assert torch.allclose(w1 @ k, v, atol=1e-10)
    others = torch.randn(20, 7, generator=g, device="cpu", dtype=torch.float64)
    cinv_k = torch.linalg.solve(c, k)
    others -= (others @ cinv_k)[:, None] * k[None] / (k @ cinv_k)            # k^T C^-1 x = 0
    assert torch.allclose(others @ w1.t(), others @ w0.t(), atol=1e-10)


def test_optimiser_reaches_the_closed_form_on_a_linear_layer(planted):
    G = planted
    stats = R.key_statistics(G, "layer2", n=300, cache=False)
    (i, r, c), = _find(G, A)
    z = z_at(0, [i], G.z_dim)
    keys, values = R.layer_keys(G, "layer2", z)
    k = keys[0, :, r, c].double()
    v = torch.randn(values.shape[1], generator=torch.Generator().manual_seed(5), device="cpu").double()
    target = values.clone()
    target[0, :, r, c] = v.float()
    region = torch.zeros(4, 4, device="cpu")
    region[r, c] = 1
    d = R.context_directions(G, "layer2", z, [_cell_mask(r, c)], stats, rank=1)
    cinv_k = torch.linalg.solve(stats.moment, k)
    assert abs(float(d[0].double() @ cinv_k / cinv_k.norm())) > 1 - 1e-5       # d = C^-1 k* / |C^-1 k*|
    rw = R.rewrite(G, "layer2", R.Goal(keys, target, region), d, steps=1500, lr=0.02, loss="l2")
    w0 = G.layer2.weight[:, :, 0, 0].double()
    w1 = w0 + rw.deltas()["layer2.weight"][:, :, 0, 0].double()
    expected = R.closed_form(w0, k, v, stats.moment)
    assert (w1 - expected).abs().max() / (expected - w0).abs().max() < 2e-3
    assert (w1 @ k - v).abs().max() < 1e-3 * v.abs().max()


def test_rank_rewrite_changes_weights_only_along_its_directions(planted):
    G = planted
    stats = R.key_statistics(G, "layer2", n=300, cache=False)
    hits = _find(G, A, count=3)
    z = z_at(0, [h[0] for h in hits], G.z_dim)
    d = R.context_directions(G, "layer2", z, [_cell_mask(r, c) for _, r, c in hits], stats, rank=2)
    assert torch.allclose(d @ d.t(), torch.eye(2, device="cpu"), atol=1e-5)
    goal = R.paste_goal(G, "layer2", z_at(0, [hits[0][0]], G.z_dim), _cell_mask(*hits[0][1:]),
                        z_at(0, [hits[1][0]], G.z_dim), _cell_mask(*hits[1][1:]))
    goal.values = goal.values + 1.0                                        # something to change
    rw = R.rewrite(G, "layer2", goal, d, steps=200, lr=0.05)
    delta = rw.deltas()["layer2.weight"][:, :, 0, 0]
    assert delta.abs().max() > 0.05
    assert (delta - delta @ d.t() @ d).abs().max() < 1e-5                  # in span(D) only
    assert torch.linalg.matrix_rank(delta, atol=1e-5) <= 2
    # keys with D k = 0 (orthogonal to the context in the C^-1 metric) map exactly as before
    G1 = rw.apply(G)
    x = torch.randn(3, 8, 4, 4, generator=torch.Generator().manual_seed(2), device="cpu")
    x = x - torch.einsum("ri,nihw->nrhw", d, x).movedim(1, -1).matmul(d).movedim(-1, 1)
    assert (G1.layer2(x) - G.layer2(x)).abs().max() < 1e-5
    assert rw.method == "rank" and rw.directions.shape == (2, 8)


def test_full_rank_baseline_is_not_projected(planted):
    G = planted
    hits = _find(G, A, count=2)
    goal = R.paste_goal(G, "layer2", z_at(0, [hits[0][0]], G.z_dim), _cell_mask(*hits[0][1:]),
                        z_at(0, [hits[1][0]], G.z_dim), _cell_mask(*hits[1][1:]))
    goal.values = goal.values + 1.0
    rw = R.rewrite(G, "layer2", goal, method="full", steps=200, lr=0.05)
    delta = rw.deltas()["layer2.weight"][:, :, 0, 0]
    stats = R.key_statistics(G, "layer2", n=300, cache=False)
    d = R.context_directions(G, "layer2", z_at(0, [hits[1][0]], G.z_dim), [_cell_mask(*hits[1][1:])], stats)
    assert (delta - delta @ d.t() @ d).abs().max() > 0.05 * delta.abs().max()     # also off span(D)
    assert rw.method == "full" and rw.directions is None


# ----------------------------------------------------------------------------- a planted rule recovered

def _class_mask(i, want=A, seed=0):
    return np.kron((classes(z_at(seed, [i], 16))[0] == want).numpy(), np.ones((4, 4), bool))


def test_planted_rule_a_becomes_b_everywhere_and_the_rest_keep_theirs(planted):
    """Copy a B cell, paste it on an A cell, context = the A cells of three images: on 60 fresh samples
    every A cell's value is now nearest B's, every other cell keeps its concept, and other cells move
    far less than the A cells do."""
    G = planted
    h0 = weights_hash(G)
    (ib, rb, cb), = _find(G, B, start=100)
    hits = _find(G, A, start=200, count=3)
    req = Request(model="planted", layer="layer2", copy=Region(ib, _cell_mask(rb, cb)),
                  paste=Region(hits[0][0], _cell_mask(*hits[0][1:])),
                  context=[Region(i, _class_mask(i)) for i, _, _ in hits], steps=400, key_samples=300)
    run = run_request(G, req, cache=False)
    G1 = run.rewrite.apply(G)
    z = z_range(9, 0, 60, G.z_dim)
    cls = classes(z)
    _, before = R.layer_keys(G, "layer2", z)
    _, after = R.layer_keys(G1, "layer2", z)
    values = (G.layer2.weight[:, :, 0, 0] @ G.layer1.protos.t()).t()       # each concept's value [3, out]

    def nearest(v):
        flat = v.permute(0, 2, 3, 1).reshape(-1, v.shape[1])
        return torch.cdist(flat, values).argmin(1).view(cls.shape)

    assert (cls == A).sum() > 100 and (nearest(before)[cls == A] == A).all()
    assert (nearest(after)[cls == A] == B).float().mean() > 0.95           # A now draws B
    assert (nearest(after)[cls != A] == nearest(before)[cls != A]).float().mean() > 0.97
    move = ((after - before).norm(dim=1) / before.norm(dim=1))
    assert move[cls != A].mean() < 0.25 * move[cls == A].mean()            # the rest moves far less
    assert weights_hash(G) == h0                                           # the shared model is untouched


# ----------------------------------------------------------------------------- requests

def test_request_round_trip_and_refusals(planted):
    m = _cell_mask(1, 1)
    req = Request(model="toyworld/town", layer="layer6", copy=Region(3, m), paste=Region(4, m),
                  context=[Region(5, m)], rank=2, steps=50, note="doors")
    text = req.dumps()
    back = Request.loads(text)
    assert back.dumps() == text and np.array_equal(back.context[0].mask, m) and back.rank == 2
    assert np.array_equal(mask_from_json({"size": [16, 16], "boxes": [[4, 4, 8, 8]]}, "m"), m)
    obj = json.loads(text)

    def refused(change, words):
        o = json.loads(json.dumps(obj))
        change(o)
        with pytest.raises(InputError, match=words):
            Request.from_json(o)

    refused(lambda o: o["copy"].update(mask={"rows": ["0" * 16] * 16}), "copy's mask is empty")
    refused(lambda o: o["paste"].update(mask={"size": [16, 16], "boxes": [[10, 10, 20, 20]]}), "outside")
    refused(lambda o: o.update(rank=0), "rank")
    refused(lambda o: o.update(stepz=3), "unknown keys in the request .the first: .stepz")
    refused(lambda o: o.update(method="magic"), "method")
    refused(lambda o: o.pop("paste"), "paste")
    refused(lambda o: o.update(ganatomy_rewrite=7), "not a GANatomy rewrite request")
    with pytest.raises(InputError, match="not valid JSON"):
        Request.loads(b"{not json")
    with pytest.raises(InputError, match="at most"):
        Request.loads(b" " * (5 << 20))


def test_bad_layers_and_masks_are_refused_before_work(planted):
    G = planted
    m = _cell_mask(0, 0)
    with pytest.raises(ArgumentTypeError, match="no convolution"):
        R.key_statistics(G, "layer1", n=10, cache=False)               # a layer without weights
    with pytest.raises(InputError, match="copy_mask covers no cell"):
        R.paste_goal(G, "layer2", z_at(0, [0], 16), np.zeros((16, 16)), z_at(0, [1], 16), m)
    req = Request(model="planted", layer="layer9", copy=Region(0, m), paste=Region(1, m))
    with pytest.raises(InputError, match="layer9"):
        run_request(G, req, cache=False)
    big = np.zeros((32, 32), bool)
    big[:4, :4] = True
    with pytest.raises(InputError, match="16x16"):
        run_request(G, Request(model="planted", layer="layer2", copy=Region(0, big), paste=Region(1, big)), cache=False)


# ----------------------------------------------------------------------------- saved rewrites

@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _town_request(steps=30):
    m = np.zeros((64, 64), bool)
    m[40:52, 8:20] = True
    p = np.zeros((64, 64), bool)
    p[16:28, 30:42] = True
    return Request(model="toyworld/town", layer="layer6", copy=Region(1, m), paste=Region(2, p), steps=steps,
                   key_samples=40)


def test_saved_rewrite_loads_by_name_and_never_touches_the_shared_model(lab):
    import core
    G = core.load_generator("toyworld/town")
    h0 = weights_hash(G)
    runs = [run_request(G, _town_request(), cache=False), run_request(G, _town_request(), cache=False)]
    assert weights_hash(G) == h0
    entry = save_rewrite("lab/doors", runs[0], added_by="ana")
    assert entry["arch"] == "rewrite" and entry["base"] == "toyworld/town"
    G1 = core.load_generator("lab/doors")
    z = z_range(0, 0, 3, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G1(z), runs[0].rewrite.apply(G)(z))            # disk == memory, bit for bit
        assert (G1(z) - G(z)).abs().max() > 1e-3
    assert weights_hash(G) == h0 and weights_hash(core.load_generator("toyworld/town")) == h0
    assert "lab/doors" in core.models.available_generators()
    with pytest.raises(InputError, match="taken"):
        save_rewrite("lab/doors", runs[1], added_by="bob")                # another user's name
    with pytest.raises(InputError):
        save_rewrite("lab/doors", runs[1], added_by="bob", replace=True)  # only its owner replaces it
    # a restart: a new interpreter loads it by name from the registry (same images up to float order)
    code = ("import core, torch; from core.base.sampling import z_range; G = core.load_generator('lab/doors'); "
            "G0 = core.load_generator('toyworld/town'); z = z_range(0, 0, 3, G.z_dim); "
            "print(float((G(z) - G0(z)).abs().double().sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ})
    assert out.returncode == 0, out.stderr[-500:]
    with torch.no_grad():
        assert float(out.stdout) == pytest.approx(float((G1(z) - G(z)).abs().double().sum()), rel=1e-4)


def test_a_rewrite_that_does_not_fit_its_base_is_refused(lab):
    import core
    with pytest.raises(ArgumentTypeError, match="shape"):
        core.models.add_rewrite("lab/bad", "toyworld/town", {"layer6.conv.weight": torch.zeros(3, 3, device="cpu")},
                                {}, layer="layer6", method="full", added_by="ana")
    with pytest.raises(Exception, match="not a parameter"):
        core.models.add_rewrite("lab/bad", "toyworld/town", {"nope.weight": torch.zeros(3, device="cpu")}, {},
                                layer="layer6", method="full", added_by="ana")
    assert "lab/bad" not in core.models.user_models()


def test_cli_rewrite_writes_the_delta_metrics_grid_and_saves(lab, capsys):
    from core.base.checkpoints import load_checkpoint
    from core.cli import main
    path = lab / "rule.json"
    path.write_text(_town_request(steps=5).dumps())
    out = lab / "out"
    main(["rewrite", "--request", str(path), "--out", str(out), "--source", "window", "--target", "door",
          "--eval-samples", "6", "--grid", "3", "--save", "lab/cli", "--added-by", "ana", "--json"])
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    res = rec["result"]
    assert res["steps"] == 5 and res["saved"]["name"] == "lab/cli"
    assert set(res["effect"]) == {"original", "rewritten"} and res["effect"]["original"]["outside_l1"] == 0
    stored = load_checkpoint(out / "rewrite.pt")
    assert set(stored) == {"layer6.conv.weight#a", "layer6.conv.weight#d", "layer6.conv.weight#dim"}
    assert Request.load(out / "request.json").steps == 5
    from PIL import Image
    assert Image.open(out / "before_after.png").size[0] > 3 * 64
    import core
    G, G1 = core.load_generator("toyworld/town"), core.load_generator("lab/cli")
    z = z_range(0, 0, 2, G.z_dim)
    with torch.no_grad():
        expected = R.Rewrite("layer6", "rank", stored).apply(G)(z)
        assert torch.equal(G1(z), expected)
    main(["dissect", "--model", "lab/cli", "--layers", "layer6", "--samples", "4", "--out", str(lab / "d")])
    assert json.loads((lab / "d" / "dissection.json").read_text())["model"] == "lab/cli"   # loads by name
    capsys.readouterr()
    for argv, words in [(["--request", str(lab / "none.json")], "does not exist"),
                        (["--request", str(path), "--source", "cloud"], "go together"),
                        (["--request", str(path), "--save", "lab/cli", "--added-by", "bob"], "taken"),
                        (["--request", str(path), "--rank", "0"], "rank")]:
        with pytest.raises(SystemExit):
            main(["rewrite", *argv])
        assert words in capsys.readouterr().err


def test_rule_measures_count_what_they_say():
    """compare_variants on a planted generator and segmenter: the left half of every image is source
    (red > 0), the right half target; a variant that flips the red of the top rows turns exactly half
    the source into target and changes the top right quarter outside the source."""
    from core.studies.rewrite_rules import compare_variants

    class Halves(nn.Module):
        z_dim = 4

        def forward(self, z):
            x = torch.full((z.shape[0], 3, 8, 8), -0.5, device=z.device)
            x[:, 0, :, :4] = 0.5
            return x + 0.01 * z[:, :1, None, None]

    class Seg:
        labels = ["-", "window", "door"]

        def segment(self, images):
            return torch.where(images[:, 0] > 0, 1, 2)

    def flip_top(z, im, seg):
        out = im.clone()
        out[:, 0, :4] = -out[:, 0, :4]
        return out

    rows = compare_variants(Halves(), Seg(), {"flip": flip_top}, "window", "door", n=10, batch=4)
    assert rows["original"]["success"] == 0 and rows["original"]["outside_seg"] == 0
    f = rows["flip"]
    assert f["success"] == pytest.approx(0.5)                          # the top half of the source
    assert f["outside_seg"] == pytest.approx(0.5)                      # top right: door -> window
    assert f["outside_l1"] == pytest.approx(2 * 0.5 / 3 * 0.5, rel=0.05)   # |2r| on one of 3 channels, half the pixels
    assert f["source_share"] == pytest.approx(0.5) and rows["original"]["target_share"] == pytest.approx(0.5)
    with pytest.raises(InputError, match="not a concept"):
        compare_variants(Halves(), Seg(), {"flip": flip_top}, "cloud", "door", n=4)


def test_auto_request_picks_regions_the_segmentation_agrees_with():
    import core
    from core.studies.rewrite_rules import PICK_OFFSET, RULES, auto_request
    rule = RULES["no-clouds"]
    G, S = core.load_generator(rule.model), core.load_segmenter()
    req = auto_request(G, S, rule, seed=0, pool=24, n_context=3)
    assert req.seed == PICK_OFFSET and req.layer == rule.layer and len(req.context) == 3
    with torch.no_grad():
        seg = S.segment(G(z_at(req.seed, [req.copy.sample, req.paste.sample, *[c.sample for c in req.context]],
                               G.z_dim))).numpy()
    cloud, sky = S.labels.index("cloud"), S.labels.index("sky")
    assert (seg[0][req.copy.mask] == sky).all()                         # copy: a box of pure sky
    assert req.copy.mask.sum() == req.paste.mask.sum()                  # the size of the paste
    assert (seg[1][req.paste.mask] == cloud).mean() > 0.3               # paste: over a cloud
    for i, c in enumerate(req.context):
        assert c.mask.any() and (seg[2 + i][c.mask] == cloud).all()      # context: clouds only


def test_a_run_is_saved_only_as_a_rewrite_of_the_model_it_ran_on(lab):
    import core
    town, room = core.load_generator("toyworld/town"), core.load_generator("toyworld/room")
    with pytest.raises(InputError, match="the request is for 'toyworld/town'"):
        run_request(room, _town_request(), cache=False)
    room.source = ""                                  # a model object without its name: runs, but...
    run = run_request(room, _town_request(steps=2), cache=False)
    with pytest.raises(InputError, match="made on another model"):
        save_rewrite("lab/wrong", run, added_by="ana")   # ...is never saved as a rewrite of town
    assert "lab/wrong" not in core.models.user_models() and town.source == "toyworld/town"

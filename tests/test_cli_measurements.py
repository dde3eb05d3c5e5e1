"""`ganatomy <measurement> --json`: one subcommand per measurement a dashboard page offers, each run
in-process on a tiny setting; its JSON (the only thing on stdout) is read and compared with the
core function the page calls, called here with the same arguments (and without the cache)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import core
import core.cli
from core.base.cache import model_fingerprint
from core.base.sampling import stream_seed, z_range
from core.engine import causal
from core.engine.bases import basis_health, fit_basis, layer_activations
from core.engine.repair import repair_table, unit_fid
from core.studies import comparisons, evaluation, over_seeds
from core.studies.units import iou_units
from core.userdata.flags import flag_units

ROOT = Path(__file__).resolve().parents[1]
TOWN, LAKE = "toyworld/town", "toyworld/lake"
ACE = ["--dissect-samples", "10", "--k-samples", "10", "--pool-size", "8"]          # a tiny ACE
ACE_KW = {"dissect_samples": 10, "k_samples": 10, "pool_size": 8}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def town():
    return core.load_generator(TOWN), core.load_segmenter("toyworld")


def run(capsys, *argv) -> dict:
    """``ganatomy *argv --json`` in-process: stdout is one JSON object (and nothing else)."""
    core.cli.main([*argv, "--json"])
    out, _ = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1, out[:500]
    data = json.loads(out)
    assert data["command"] == argv[0] and set(data) == {"command", "arguments", "result"}
    return data


def refused(capsys, *argv) -> str:
    """``ganatomy *argv``: refused with exit status 2, one ``error:`` line, nothing on stdout."""
    with pytest.raises(SystemExit) as e:
        core.cli.main(list(argv))
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert e.value.code == 2 and not out and len(lines) == 1 and lines[0].startswith("error: "), (out, err)
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- every page has its command

def test_help_lists_a_command_for_every_page_and_docs_map_them(capsys):
    """`ganatomy --help` lists every command of docs/cli.md's page table, and that table names every
    page of the dashboard's navigation (dashboard/main.py)."""
    with pytest.raises(SystemExit) as e:
        core.cli.main(["--help"])
    assert e.value.code == 0
    listed = set(re.findall(r"^    (\S+)", capsys.readouterr().out, re.MULTILINE))
    doc = (ROOT / "docs" / "cli.md").read_text()
    table = [line.split("|")[1:-1] for line in doc.splitlines() if line.startswith("| ") and "---" not in line][1:]
    pages = {cells[0].strip() for cells in table}
    nav = set(re.findall(r'st\.Page\([^)]*title="([^"]+)"', (ROOT / "dashboard" / "main.py").read_text()))
    assert nav <= pages, nav - pages
    commands = {c for cells in table for c in re.findall(r"`ganatomy ([a-z-]+)", cells[2])}
    assert commands <= listed, commands - listed
    want = {"ace", "curve", "removal", "context", "unit-fid", "repair", "fit-basis", "compare", "compare-bases",
            "evolution", "train", "precompute", "trace", "insertion", "dissect"}
    assert want <= commands and want <= listed


# ----------------------------------------------------------------------------- causal units

def test_ace_json_is_the_api_result(capsys, town):
    G, seg = town
    data = run(capsys, "ace", "--layer", "layer4", "--concept", "door", "--steps", "2", "--seed", "1", *ACE)
    r = data["result"]
    assert data["arguments"]["steps"] == 2 and r["layer"] == "layer4" and r["concept"] == "door"
    assert sorted(r["ranking"]) == list(range(256)) and r["units"] == r["ranking"][:20]
    want = causal.ace(G, seg, "layer4", "door", seed=1, n_steps=2, cache=False, **ACE_KW)
    assert r["ranking"] == want.ranking.tolist()
    np.testing.assert_allclose(r["alpha"], want.alpha, rtol=1e-6)
    np.testing.assert_allclose(r["k"], want.k, rtol=1e-6)
    assert len(r["losses"]) == 2 and all(isinstance(x, float) for x in r["losses"])


def test_curve_rows_are_ablation_curves(capsys, town):
    """One curve: the ACE and IoU rankings of the page and `ablation_curve`'s rows; --seeds: the
    page's curves over seeds (each seed's ACE and images) with their intervals."""
    G, seg = town
    r = run(capsys, "curve", "--concept", "door", "--ace-steps", "2", *ACE, "--samples", "8", "--counts", "1", "3",
            "--curve-seed", "4")["result"]
    ace = causal.ace(G, seg, "layer4", "door", n_steps=2, cache=False, **ACE_KW)
    iou = iou_units(core.dissect(G, seg, ["layer4"], 10, cache=False), "layer4", "door", 3)
    assert r["rankings"] == {"ace": ace.ranking[:3].tolist(), "iou": iou}
    df = causal.ablation_curve(G, seg, "layer4", "door", r["rankings"], counts=(1, 3), n_samples=8, seed=4,
                               cache=False)
    got = pd.DataFrame(r["rows"])
    assert list(got.ranking) == list(df.ranking) and list(got.n) == list(df.n)
    np.testing.assert_allclose(got.removed, df.removed)
    r = run(capsys, "curve", "--concept", "door", "--ace-steps", "2", *ACE, "--samples", "6", "--counts", "2",
            "--seeds", "0", "1")["result"]
    df = over_seeds.curve_over_seeds(G, seg, "layer4", "door", seeds=(0, 1), counts=(2,), n_samples=6, ace_steps=2,
                                     cache=False, **ACE_KW)
    got = pd.DataFrame(r["rows"])
    assert list(got.seeds) == [2, 2] and r["seeds"] == [0, 1]
    np.testing.assert_allclose(np.stack(got.per_seed), np.stack(df.per_seed))
    np.testing.assert_allclose(got[["removed", "ci_low", "ci_high"]], df[["removed", "ci_low", "ci_high"]])


def test_removal_table_per_generator(capsys, town):
    """Town's row is the removal fraction of its ACE units; a concept the lake never draws is a row
    of nulls (NaN in the table), not a failure."""
    G, seg = town
    r = run(capsys, "removal", "--models", TOWN, LAKE, "--concept", "door", "--ace-steps", "2", *ACE,
            "--n-units", "5", "--samples", "8")["result"]
    rows = {row["generator"]: row for row in r["rows"]}
    units = causal.ace(G, seg, "layer4", "door", n_steps=2, top_n=5, cache=False, **ACE_KW).units
    want = causal.removal_fraction(G, seg, "layer4", "door", units, n_samples=8,
                                   seed=stream_seed(0, "removal.over_seeds"), cache=False)
    assert rows[TOWN]["removed_percent"] == pytest.approx(100 * want) and rows[TOWN]["seeds"] == 1
    assert rows[LAKE]["removed_percent"] is None and rows[LAKE]["seeds"] == 0


# ----------------------------------------------------------------------------- artifact repair

def test_unit_fid_and_repair_are_the_api_results(capsys, town):
    """unit-fid: every unit's FID as `unit_fid` gives it; repair: the units of highest unit FID, then
    the lab's flags once there are some, and `repair_table`'s rows for them."""
    G, _ = town
    fid = ["--samples", "20", "--top", "4", "--real-samples", "20"]
    r = run(capsys, "unit-fid", "--layer", "layer4", *fid, "--show", "5")["result"]
    feats = core.load_features("toyworld")
    real = evaluation.scene_stats(feats, "town", 64, n=20, cache=False)
    want = unit_fid(G, "layer4", feats, real, n_samples=20, top=4, cache=False)
    np.testing.assert_allclose(r["fid"], want.fid, rtol=1e-6)
    assert r["highest"] == want.highest(5) and r["scene"] == "town" and r["resolution"] == 64
    repair = ["repair", "--layer", "layer4", *fid, "--eval-samples", "10", "--random-draws", "2", "--n-highest", "3"]
    r = run(capsys, *repair)["result"]
    assert r["units_from"] == "highest unit FID" and r["units"] == want.highest(3)
    flag_units(TOWN, "layer4", [7, 3], model_fingerprint(G), by="test")
    r = run(capsys, *repair)["result"]
    assert r["units_from"] == "flags" and r["units"] == [3, 7]
    table, picked = repair_table(G, "layer4", feats, real, [3, 7], n_candidates=20, n_eval=10, random_draws=2)
    assert r["eval_indices"] == picked.tolist()
    assert [row["variant"] for row in r["table"]] == list(table.variant)
    np.testing.assert_allclose([row["fid"] for row in r["table"]], table.fid, rtol=1e-6)


# ----------------------------------------------------------------------------- bases, tracing, insertion values

def test_fit_basis_stores_the_basis_and_reports_its_health(capsys, town):
    G, _ = town
    r = run(capsys, "fit-basis", "--layer", "layer3", "--basis", "pca", "--basis-samples", "10",
            "--health-samples", "5")["result"]
    b = fit_basis(G, "layer3", "pca", n_samples=10, cache=False)
    want = basis_health(b, layer_activations(G, "layer3", 5, seed=99))
    assert r["basis"] == b.name and r["features"] == 256 and r["health"]["vectors"] == want["vectors"]
    assert r["health"]["fvu"] == pytest.approx(want["fvu"], abs=1e-6) and r["health"]["dead"] == want["dead"]
    assert fit_basis(G, "layer3", "pca", n_samples=10, cached_only=True) is not None     # stored for the pages
    r = run(capsys, "fit-basis", "--layer", "layer3", "--basis", "sae", "--basis-samples", "8", "--sae-steps", "3",
            "--sae-expansion", "2")["result"]
    assert r["kind"] == "sae" and r["features"] == 512 and 0 <= r["health"]["dead"] <= 512


def test_insertion_and_trace_are_the_api_results(capsys, town):
    """insertion: `insertion_constants`; trace: `trace_effect` of the page's edit, with the units given
    or (by default) the concept's units of highest IoU; in a PCA basis too."""
    G, seg = town
    r = run(capsys, "insertion", "--concept", "door", "--samples", "10")["result"]
    k = core.insertion_constants(G, seg, "layer4", "door", n_samples=10, cache=False)
    np.testing.assert_allclose(r["k"], k.numpy(), rtol=1e-6)
    r = run(capsys, "trace", "--concept", "door", "--samples", "10", "--k-samples", "10", "--seed", "2",
            "--col", "1")["result"]
    units = iou_units(core.dissect(G, seg, ["layer4"], 10, cache=False), "layer4", "door", 5)
    assert r["units"] == units and (r["row"], r["col"], r["grid"]) == (6, 1, [8, 8])
    mask = torch.zeros(8, 8)
    mask[6, 1] = 1
    edit = core.Edit("layer4", units, "insert", 3.0 * k[units], mask)
    names = core.hooks.layer_names(G)
    df, emap = causal.trace_effect(G, edit, z_range(2, 0, 1, G.z_dim), causal.channel_scales(G, names[4:]))
    assert [row["layer"] for row in r["rows"]] == names[4:] == list(df.layer)
    np.testing.assert_allclose([row["change"] for row in r["rows"]], df.change, rtol=1e-5)
    np.testing.assert_allclose(r["map"], emap[0], rtol=1e-5, atol=1e-7)
    r = run(capsys, "trace", "--concept", "door", "--units", "0", "1", "--k-samples", "10", "--basis", "pca",
            "--basis-samples", "10")["result"]
    assert r["basis"] == "pca-256" and r["units"] == [0, 1] and len(r["rows"]) == len(names) - 4


# ----------------------------------------------------------------------------- comparisons, evolution

def test_compare_and_compare_bases_are_the_pages_tables(capsys, town):
    G, seg = town
    r = run(capsys, "compare", "--models", TOWN, LAKE, "--layers", "layer4", "--samples", "10")["result"]
    res = {m: core.dissect(core.load_generator(m), seg, ["layer4"], 10, cache=False) for m in (TOWN, LAKE)}
    cm = comparisons.concept_map(res, ["layer4"])
    assert [(x["model"], x["concept"], x["units"], x["unit_list"]) for x in r["rows"]] == \
        list(zip(cm.row, cm.concept, cm.units, cm.unit_list))
    summary = comparisons.concept_map_summary(cm)
    assert [x["interpretable"] for x in r["summary"]] == list(summary.interpretable)
    r = run(capsys, "compare", "--variants", "--models", TOWN, "--layers", "layer4", "--samples", "4")["result"]
    lineup = comparisons.variant_lineup(core.list_models(), comparisons.zoo_groups(core.list_models())["town"])
    assert r["models"] == lineup["models"] and {x["model"] for x in r["summary"]} == set(lineup["models"])
    r = run(capsys, "compare-bases", "--layer", "layer4", "--samples", "10", "--basis-samples", "8",
            "--sae-steps", "3", "--sae-expansion", "2", "--objects-only")["result"]
    bases = {"units": None, "pca": fit_basis(G, "layer4", "pca", n_samples=8, cached_only=True),
             "sae": fit_basis(G, "layer4", "sae", n_samples=8, steps=3, expansion=2, cached_only=True)}
    table = comparisons.basis_comparison(
        {k: core.dissect(G, seg, ["layer4"], 10, basis=b, cache=False) for k, b in bases.items()}, "layer4",
        concepts=comparisons.object_concepts(seg.labels, getattr(seg, "stuff", ())))
    assert r["bases"] == {"units": "units", "pca": "pca-256", "sae": bases["sae"].name}
    assert [x["concept"] for x in r["rows"]] == list(table.concept)
    np.testing.assert_allclose([x["gain_sae"] for x in r["rows"]], table.gain_sae)


def test_evolution_dissects_every_checkpoint(capsys, town):
    _, seg = town
    r = run(capsys, "evolution", "--layers", "layer4", "--samples", "4")["result"]
    series = core.checkpoint_series(TOWN)
    assert r["checkpoints"] == [m for _, m in series] and [x["step"] for x in r["rows"]] == [s for s, _ in series]
    df = comparisons.training_evolution(TOWN, seg, ["layer4"], n_samples=4, cache=False)
    assert [x["interpretable"] for x in r["rows"]] == list(df.interpretable)
    assert [x["fid"] for x in r["rows"]] == [None if np.isnan(v) else v for v in df.fid]


# ----------------------------------------------------------------------------- train, precompute

GAN = ["--scene", "lake", "--res", "32", "--g-channels", "16", "16", "8", "8", "--d-channels", "16", "16", "8", "8",
       "--batch-size", "4", "--z-dim", "16", "--workers", "0", "--r1-every", "2", "--ckpt-every", "2"]


def test_train_resumes_bit_identically_and_ships_snapshots(capsys, tmp_path):
    """3 steps, then --resume to 5 measuring FID and MS-SWD on the way: the same weights as a straight
    5-step run that measures nothing (measuring does not shift the samples), and a snapshot that
    loads as a generator."""
    feats = core.load_features("toyworld")       # small real statistics, stored as the 10,000-scene ones
    mu, cov = evaluation.real_stats(feats, ["lake"], 60, seed=500, size=32).mean_cov()
    evaluation.store_real_stats(feats, "lake", 32, mu, cov)
    out = tmp_path / "run"
    r = run(capsys, "train", *GAN, "--steps", "3", "--fid-every", "0", "--out", str(out))["result"]
    assert (r["start"], r["step"], r["images"]) == (0, 3, 12) and r["config"]["g_channels"] == [16, 16, 8, 8]
    r = run(capsys, "train", *GAN, "--steps", "5", "--fid-every", "2", "--fid-samples", "8", "--swd-samples", "8",
            "--resume", "--out", str(out))["result"]
    assert (r["start"], r["step"], r["images"]) == (3, 5, 20)
    assert [s["step"] for s in r["snapshots"]] == [3, 5] and Path(r["checkpoint"]) == out / "ckpt.pt"
    assert [e["step"] for e in r["log"] if "fid" in e] == [4, 5] and all(e["fid"] > 0 for e in r["log"] if "fid" in e)
    assert json.loads((out / "train.json").read_text())["result"]["step"] == 5
    straight = core.training.train_gan(tmp_path / "straight", "lake", steps=5, res=32, batch=4,
                                       g_channels=(16, 16, 8, 8), d_channels=(16, 16, 8, 8), z_dim=16, workers=0,
                                       r1_every=2, ckpt_every=2, fid_every=0)
    a, b = (torch.load(p, weights_only=True) for p in (out / "ckpt.pt", straight["checkpoint"]))
    for part in ("G", "D", "G_ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    G = core.load_generator(r["snapshots"][-1]["path"])
    assert G(torch.zeros(2, G.z_dim)).shape == (2, 3, 32, 32)


def test_precompute_makes_the_pages_read_a_users_model_at_once(capsys, tmp_path):
    """A user's own checkpoint: after `precompute`, every dissection and insertion value it lists is
    answered from the cache as the pages ask (cached_only=True), and equals a fresh computation."""
    torch.manual_seed(0)
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": core.ProGAN(32, (32, 32, 16, 8)).state_dict()}, path)
    r = run(capsys, "precompute", "--model", str(path), "--layers", "layer3", "--samples", "8", "--k-samples", "8",
            "--bases", "pca", "--basis-samples", "10")["result"]
    assert r["ready"] and r["layers"] == ["layer3"] and r["bases"] == {"pca": {"layer3": "pca-32"}}
    assert [(d["samples"], d["basis"]) for d in r["dissections"]] == [(8, "units"), (8, "pca")]
    G, seg = core.load_generator(str(path)), core.load_segmenter("toyworld")
    stored = core.dissect(G, seg, ["layer3"], 8, cached_only=True)
    assert stored is not None
    np.testing.assert_allclose(stored.iou("layer3"), core.dissect(G, seg, ["layer3"], 8, cache=False).iou("layer3"))
    pca = fit_basis(G, "layer3", "pca", n_samples=10, cached_only=True)
    assert core.dissect(G, seg, ["layer3"], 8, basis=pca, cached_only=True) is not None
    units = [k for k in r["insertion"] if k["basis"] == "units"]
    assert units and len(r["insertion"]) == 2 * len(units)
    for item in units:
        got = core.insertion_constants(G, seg, "layer3", item["concept"], n_samples=8, cached_only=True)
        want = core.insertion_constants(G, seg, "layer3", item["concept"], n_samples=8, cache=False)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- context, dissect

def test_context_and_dissect_json(capsys, tmp_path, town):
    G, seg = town
    r = run(capsys, "context", "--concept", "door", "--units", "1", "2", "--images", "1", "--seeds", "4",
            "--brush", "3", "--k-samples", "10", "--out", str(tmp_path / "ctx"))["result"]
    assert r["settings"]["units"] == [1, 2] and sum(c["n"] for c in r["classes"]) == 6 * 6
    assert json.loads((tmp_path / "ctx" / "context.json").read_text())["result"] == r
    assert len(pd.read_csv(tmp_path / "ctx" / "insertions.csv")) == 36
    r = run(capsys, "dissect", "--layers", "layer4", "--samples", "8", "--strip-units", "0",
            "--out", str(tmp_path / "d"))["result"]
    want = core.dissect(G, seg, ["layer4"], 8, cache=False).summary()
    assert r["summary"] == want.to_dict(orient="records") and r["cached"] is False


# ----------------------------------------------------------------------------- refusals before any work

BAD = [
    (["ace", "--concept", "doorr"], "doorr"),
    (["ace", "--concept", "door", "--steps", "0"], "--steps"),
    (["ace", "--concept", "door", "--layer", "layer99"], "layer99"),
    (["ace", "--concept", "door", "--lr", "0"], "--lr"),
    (["curve", "--concept", "door", "--counts", "0"], "--counts"),
    (["curve", "--concept", "door", "--seeds"], "--seeds"),
    (["removal", "--models", "toyworld/nope", "--concept", "door"], "toyworld/nope"),
    (["removal", "--concept", "doorr"], "doorr"),
    (["unit-fid", "--samples", "20", "--top", "50"], "--top"),
    (["repair", "--units", "999", "--samples", "20", "--top", "4"], "999"),
    (["fit-basis", "--basis", "units"], "--basis"),
    (["trace", "--concept", "door", "--layer", "output_64x64"], "last layer"),
    (["trace", "--concept", "door", "--row", "8"], "--row"),
    (["insertion", "--concept", "door", "--samples", "0"], "--samples"),
    (["compare", "--variants", "--models", LAKE], "no variants"),
    (["compare", "--models", TOWN, "--layers", "layer99"], "layer99"),
    (["evolution", "--model", LAKE], "no training snapshots"),
    (["train", "--scene", "lake", "--res", "48", "--out", "{tmp}/r"], "--res"),
    (["train", "--scene", "lake", "--fid-samples", "4", "--swd-samples", "8", "--out", "{tmp}/r"], "--swd-samples"),
    (["precompute", "--layers", "nope"], "nope"),
    (["ace", "--concept", "door", "--out", "{tmp}/file"], "--out"),
]


@pytest.mark.parametrize("argv,named", BAD, ids=[" ".join(a).replace("{tmp}/", "") for a, _ in BAD])
def test_bad_flags_are_refused_before_any_work(capsys, tmp_path, argv, named):
    (tmp_path / "file").write_text("not a folder")
    line = refused(capsys, *[x.replace("{tmp}", str(tmp_path)) for x in argv])
    assert named in line, line
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz")), "work was done"

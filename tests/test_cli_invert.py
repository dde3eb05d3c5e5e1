"""`ganatomy invert`: toyworld scenes and a folder of the user's images reconstructed through the town
generator's shipped inverter; the JSON's L1 and per-class recall against an independent computation
(the same inversion through the API, recall counted by a loop over pixels), the PNGs it writes, and
every bad input refused in one line naming the flag before any work. A few images, 2 steps."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import core
import core.cli
from core.engine.inversion import invert
from core.outputs.visualize import to_uint8
from core.studies.inversion import INVERSION_REAL_SEED, encoder_for, perceptual_maps

SCENE = ["invert", "--model", "toyworld/town", "--device", "cpu", "--steps", "2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))      # no user-trained inverters: the shipped one


@pytest.fixture(scope="module")
def town():
    return core.load_generator("toyworld/town"), core.load_segmenter("toyworld")


def _json(capsys, argv):
    core.cli.main([*argv, "--json"])
    return json.loads(capsys.readouterr().out)


def test_invert_toyworld_scenes_l1_and_recall_are_the_api_inversion(capsys, tmp_path, town):
    G, seg = town
    out = tmp_path / "out"
    r = _json(capsys, [*SCENE, "--scene", "town", "--n", "2", "--out", str(out)])["result"]
    enc, meta = encoder_for(G, "toyworld/town", "layer4")
    assert r["inverter"] == meta["path"] and r["inverter"].endswith("town-layer4.pt") and r["n"] == 2
    images, labels = core.toyworld.render("town", 2, seed=INVERSION_REAL_SEED, size=64)
    inv = invert(G, "layer4", enc, images, 2, 0.01, perceptual_maps(core.load_features("toyworld")))
    l1 = (inv.reconstruction - images).abs().mean((1, 2, 3))
    np.testing.assert_allclose([x["l1"] for x in r["images"]], l1.numpy(), rtol=1e-5)
    # recall by a loop: per image and class, the exact pixels the reconstruction's segmentation keeps
    with torch.no_grad():
        pred = seg.segment(inv.reconstruction).numpy()
    exact = np.array([seg.labels.index(c) for c in core.toyworld.LABELS])[labels.numpy()]
    true_tot, hit_tot = {}, {}
    for i, row in enumerate(r["images"]):
        for c, name in enumerate(seg.labels):
            true = exact[i] == c
            if true.sum():
                hit = (pred[i][true] == c).sum()
                assert row[f"recall_{name}"] == pytest.approx(hit / true.sum(), abs=1e-12)
                true_tot[name] = true_tot.get(name, 0) + true.sum()
                hit_tot[name] = hit_tot.get(name, 0) + hit
            else:
                assert f"recall_{name}" not in row
    assert r["per_class_recall"] == pytest.approx({k: hit_tot[k] / true_tot[k] for k in true_tot}, abs=1e-12)
    assert 0 < r["mean_recall"] < r["segmenter_mean_recall"] <= 1       # 2 steps: far below a perfect copy
    # the PNGs: the reconstruction (64 px) and the grid original | reconstruction | both segmentations (x2)
    rec = np.asarray(Image.open(out / "000-town-4000000-reconstruction.png"))
    assert np.array_equal(rec, to_uint8(inv.reconstruction)[0])
    grid = Image.open(out / "001-town-4000000-grid.png")
    assert grid.size == (2 * (4 * 64 + 3 * 2), 2 * 64)
    rows = list(csv.DictReader((out / "invert.csv").open()))
    assert [x["image"] for x in rows] == ["000-town-4000000", "001-town-4000000"]
    assert float(rows[1]["l1"]) == pytest.approx(float(l1[1]), rel=1e-5) and "recall_sky" in rows[0]
    assert json.loads((out / "invert.json").read_text())["result"]["images"] == r["images"]


def test_invert_a_folder_of_images(capsys, tmp_path, town):
    G, _ = town
    d = tmp_path / "photos"
    d.mkdir()
    images, _ = core.toyworld.render("lake", 3, seed=5, size=64)
    for name, im in zip(["b.png", "a photo.png", "c.jpg"], to_uint8(images)):
        Image.fromarray(im).save(d / name)
    out = tmp_path / "out"
    r = _json(capsys, [*SCENE, "--images", str(d), "--n", "2", "--no-perceptual", "--out", str(out)])["result"]
    assert r["files"] == ["a photo.png", "b.png"] and "mean_recall" not in r and not r["perceptual"]
    enc, _ = encoder_for(G, "toyworld/town", "layer4")
    x = torch.from_numpy(np.stack([np.asarray(Image.open(d / f)) for f in r["files"]])).permute(0, 3, 1, 2)
    inv = invert(G, "layer4", enc, x.float() / 127.5 - 1, 2, 0.01)
    np.testing.assert_allclose([i["l1"] for i in r["images"]], inv.l1(x.float() / 127.5 - 1).numpy(), rtol=1e-5)
    assert [i["reconstruction"] for i in r["images"]] == ["000-a_photo-reconstruction.png", "001-b-reconstruction.png"]
    assert Image.open(out / "001-b-grid.png").size == (2 * (2 * 64 + 2), 2 * 64)         # original | reconstruction


def _folder(tmp_path, kind):
    d = tmp_path / kind
    d.mkdir()
    if kind == "size":
        Image.new("RGB", (32, 32)).save(d / "tiny.png")
    elif kind == "mode":
        Image.new("L", (64, 64)).save(d / "grey.png")
    return str(d)


@pytest.mark.parametrize("argv, words", [
    (["--scene", "town", "--images", "DIR"], ["--images", "--scene", "not both"]),
    ([], ["--images", "--scene"]),
    (["--images", "/nonexistent/x"], ["--images: the folder", "does not exist"]),
    (["--images", "empty"], ["--images: the folder", "has no images"]),
    (["--images", "size"], ["--images: tiny.png is 32 x 32 pixels", "64 x 64", "--resize"]),
    (["--images", "mode"], ["--images: grey.png is a L image", "--convert"]),
    (["--scene", "town", "--layer", "layer99"], ["--layer", "layer99"]),
    (["--scene", "town", "--layer", "layer6"], ["--model", "no inverter into layer6", "train_inverter.py"]),
    (["--scene", "lake", "--model", "toyworld/lake"], ["--model", "no inverter", "toyworld/lake", "train_inverter"]),
    (["--scene", "town", "--steps", "-1"], ["--steps"]),
    (["--scene", "town", "--n", "0"], ["--n"]),
    (["--scene", "town", "--resize"], ["--resize", "--images"]),
])
def test_invert_refuses_bad_inputs_in_one_line_before_any_work(capsys, tmp_path, argv, words):
    argv = [_folder(tmp_path, x) if x in ("empty", "size", "mode") else str(tmp_path) if x == "DIR" else x
            for x in argv]
    with pytest.raises(SystemExit) as e:
        core.cli.main([*SCENE, *argv, "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and not out and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not list((tmp_path / "out").glob("*.png"))                 # nothing was written

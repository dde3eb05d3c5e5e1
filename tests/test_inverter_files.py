"""Which inverter a generator gets (core.studies.inversion.encoder_for): a user-trained one in the cache
first, else the shipped one; never one trained on other weights."""
from __future__ import annotations

import pytest
import torch

import core
from core.base.errors import CheckpointError, InputError
from core.studies.inversion import encoder_for, encoder_paths, load_encoder, save_encoder


@pytest.fixture(scope="module")
def town():
    return core.load_generator("toyworld/town")


def test_the_town_inverter_ships_and_matches_the_shipped_weights(town, tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))          # no user-trained inverter
    enc, meta = encoder_for(town, "toyworld/town")
    assert meta["path"].endswith("core/weights/inverters/town-layer4.pt")
    assert meta["generator"] == "toyworld/town" and meta["training"]["steps"] == 1200
    assert all(p.dtype == torch.float32 for p in enc.parameters()) and not enc.training
    with torch.no_grad():                                        # it maps a 64 px image to layer4's shape
        assert enc(torch.zeros(2, 3, 64, 64)).shape == (2, 256, 8, 8)


def test_a_user_trained_inverter_comes_first_and_one_of_other_weights_is_refused(town, tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    shipped, meta = encoder_for(town, "toyworld/town")
    mine = encoder_paths("toyworld/town")[0]
    assert mine.parent == tmp_path / "inverters"
    with torch.no_grad():
        for p in shipped.parameters():
            p.mul_(0.5)
    meta = {k: v for k, v in meta.items() if k != "path"}        # where it was found: not part of a file
    save_encoder(mine, shipped, **meta, note="mine")
    got, m = encoder_for(town, "toyworld/town")
    assert m["path"] == str(mine) and m["note"] == "mine"
    assert torch.equal(next(got.parameters()), next(shipped.parameters()).half().float())
    # the shipped town inverter is not the lake generator's, even under the lake's own file name
    lake = core.load_generator("toyworld/lake")
    save_encoder(encoder_paths("toyworld/lake")[0], shipped, **meta)
    with pytest.raises(CheckpointError, match="other weights"):
        encoder_for(lake, "toyworld/lake")
    (tmp_path / "inverters" / "lake-layer4.pt").unlink()
    with pytest.raises(CheckpointError, match="no inverter") as e:
        encoder_for(lake, "toyworld/lake")
    assert "train_inverter.py" in e.value.fix
    with pytest.raises(InputError, match="layer"):
        encoder_for(town, "toyworld/town", "layer99")
    assert load_encoder(encoder_paths("toyworld/town")[1])[1]["weights"] == meta["weights"]

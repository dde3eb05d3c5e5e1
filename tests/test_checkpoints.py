"""Checkpoint loading is safe (weights_only) and its errors name the file and the fix."""
import pytest
import torch

from core.base.checkpoints import CheckpointError, load_checkpoint, load_state_into


def test_refuses_code_without_running_it(code_running_checkpoint):
    bad, marker = code_running_checkpoint({"w": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="evil.pt.*refused"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_truncated_missing_empty(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(100, 100)}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt.*truncated"):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt is empty"):
        load_checkpoint(empty)
    assert torch.equal(load_checkpoint(good)["w"], torch.load(good, weights_only=True)["w"])


def test_state_mismatch_names_keys():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    sd = m.state_dict()
    bad = dict(sd)
    del bad["1.bias"]
    bad["2.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError) as e:
        load_state_into(m, bad, "model.pt")
    msg = str(e.value)
    assert "model.pt" in msg and "missing keys 1.bias" in msg and "unexpected keys 2.weight" in msg
    assert "0.weight (file (5, 3), model (4, 3))" in msg

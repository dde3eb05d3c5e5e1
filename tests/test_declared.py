"""Bounded memory before any load (issue #33): what a torch file declares is read without inflating
it, and a small file that declares gigabytes is refused in milliseconds, before torch.load allocates;
weights that are not real floating-point numbers are refused naming the key; no message quotes a
file's bytes. The hostile files are built here the way an attacker would: a hand-written pickle
whose storage declares any size, in a zip whose record is deflated."""
from __future__ import annotations

import time

import pytest
import torch

import core
from core.base import checkpoints
from core.base.checkpoints import check_declared, load_checkpoint
from core.models.progan import ProGAN
from tests.hostile import forged, fresh_load


def test_the_forged_files_are_real_torch_files(tmp_path):
    """The builder is honest when asked to be: torch itself loads what it writes, so the refusals
    below are of files torch would have inflated."""
    p = forged(tmp_path / "honest.pt", 1000, 4000, compress=False)
    assert torch.load(p, weights_only=True)["w"].shape == (1000,)
    assert load_checkpoint(p)["w"].shape == (1000,)
    p = forged(tmp_path / "small_deflated.pt", 1000, 4000)
    assert torch.load(p, weights_only=True)["w"].shape == (1000,)      # torch reads deflated records
    assert load_checkpoint(p)["w"].shape == (1000,)                      # and a tiny one is not refused


def test_a_small_file_that_inflates_or_declares_gigabytes_is_refused_at_once(tmp_path):
    bomb = forged(tmp_path / "bomb.pt", 128 * 2 ** 20, 512 * 2 ** 20)          # 512 MiB from ~0.5 MB
    assert bomb.stat().st_size < 2 * 2 ** 20
    r = fresh_load(bomb)
    assert r["error"].startswith("CheckpointError") and "expands from" in r["error"], r
    assert r["seconds"] < 1 and r["extra_mb"] < 50, r
    declared = forged(tmp_path / "declared.pt", 10 * 2 ** 30 // 4, 2 ** 20)    # declares 10 GiB, holds 1 MB
    r = fresh_load(declared)
    assert r["error"].startswith("BudgetError") and "10.0 GiB" in r["error"] and "storages declare" in r["error"], r
    assert r["seconds"] < 1 and r["extra_mb"] < 50, r
    # within the budget, but more than the file holds: forged, refused before torch allocates it
    lie = forged(tmp_path / "lie.pt", 32 * 2 ** 20, 2 ** 20, compress=False)    # declares 128 MiB, stores 1 MiB
    with pytest.raises(core.CheckpointError, match="declares 134,217,728 bytes of tensors but holds"):
        load_checkpoint(lie)
    for p in (bomb, declared, lie):
        with pytest.raises((core.CheckpointError, core.BudgetError)):
            core.load_generator(str(p))


def test_too_many_tensors_are_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_TENSORS", 50)
    p = tmp_path / "many.pt"
    torch.save({f"t{i}": torch.zeros(1) for i in range(80)}, p)
    t = time.perf_counter()
    with pytest.raises(core.CheckpointError, match="more than a weights file holds"):
        load_checkpoint(p)
    assert time.perf_counter() - t < 1
    torch.save({f"t{i}": torch.zeros(1) for i in range(40)}, p)
    assert len(load_checkpoint(p)) == 40


def test_honest_files_of_both_torch_formats_still_load_exactly(tmp_path):
    G = ProGAN(8, (8, 4))
    for fmt in (True, False):                                # the zip format, and the legacy one (2018's files)
        p = tmp_path / f"g{fmt}.pt"
        torch.save(G.state_dict(), p, _use_new_zipfile_serialization=fmt)
        check_declared(p, checkpoints.sniff(p))
        H = core.load_generator(str(p))
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), H.state_dict().values()))
    bad = tmp_path / "cut.pt"
    torch.save(G.state_dict(), bad, _use_new_zipfile_serialization=False)
    bad.write_bytes(bad.read_bytes()[:60])                   # a legacy file cut inside its pickles
    with pytest.raises(core.CheckpointError, match="cannot be read"):
        load_checkpoint(bad)


@pytest.mark.parametrize("dtype", [torch.int8, torch.complex64, torch.bool, torch.int64])
def test_weights_that_are_not_real_floats_are_refused_naming_the_key(tmp_path, dtype):
    sd = ProGAN(8, (8, 4)).state_dict()
    sd["layer2.conv.weight"] = sd["layer2.conv.weight"].to(dtype)
    p = tmp_path / "g.pt"
    torch.save(sd, p)
    name = str(dtype).replace("torch.", "")
    with pytest.raises(core.CheckpointError, match=rf"not real floating-point.*layer2\.conv\.weight \({name}\)"):
        core.load_generator(str(p))
    sd["layer2.conv.weight"] = sd["layer2.conv.weight"].real.float() if dtype.is_complex else \
        sd["layer2.conv.weight"].float()
    torch.save({k: v.half() for k, v in sd.items()}, p)     # half precision is a float: loads
    assert core.load_generator(str(p)).z_dim == 8


def test_no_message_quotes_a_files_bytes(tmp_path):
    secret = b"ssh-rsa AAAAB3NzaC1yc2E secret-key-material"
    p = tmp_path / "id_rsa.pt"
    p.write_bytes(secret)
    with pytest.raises(core.CheckpointError) as e:
        core.load_generator(str(p))
    msg = str(e.value)
    assert "ssh-rsa" not in msg and "AAAA" not in msg and secret[:12].hex(" ") not in msg and "73 73 68" not in msg
    assert "not a PyTorch or safetensors weights file" in msg


def test_add_by_path_reads_only_under_the_model_roots(tmp_path, monkeypatch):
    """register(roots=) (what the server's "Add by path" passes): a path outside the roots, one that
    is not there and a symlink inside the roots that points outside get the same message, and
    nothing outside is opened; inside the roots the model is added."""
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "models"
    root.mkdir()
    outside = tmp_path / "private.pt"
    torch.save(ProGAN(8, (8, 4)).state_dict(), outside)
    (root / "link.pt").symlink_to(outside)
    messages = set()
    for p in (outside, tmp_path / "missing.pt", root / "missing.pt", root / "link.pt", root / ".." / "private.pt"):
        with pytest.raises(core.CheckpointError) as e:
            core.models.register("lab/x", str(p), roots=core.models.model_roots())
        messages.add(str(e.value).replace(str(p), "PATH"))
    assert len(messages) == 1 and "not there, or not under the model folders" in messages.pop()
    inside = root / "g.pt"
    torch.save(ProGAN(8, (8, 4)).state_dict(), inside)
    assert core.models.register("lab/x", str(inside), roots=core.models.model_roots())["arch"] == "progan"
    monkeypatch.setenv("GANATOMY_MODEL_ROOTS", f"{tmp_path / 'a'}{__import__('os').pathsep}{tmp_path}")
    assert core.models.model_roots() == [(tmp_path / "a").resolve(), tmp_path.resolve()]
    assert core.models.register("lab/y", str(outside), roots=core.models.model_roots())["arch"] == "progan"

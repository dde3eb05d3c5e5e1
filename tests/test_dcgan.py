"""PyTorch's DCGAN tutorial generator, saved by the tutorial's own code (random weights), loads by path
and by upload, draws exactly what the tutorial's module draws, and dissects."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import core
from core import models as published
from core.models.dcgan import DCGAN
from tests.planted import ColorSegmenter


class TutorialGenerator(nn.Module):
    """The tutorial's ``Generator`` (pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html), small."""

    def __init__(self, nz=16, ngf=8, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


def trained_a_little(nc=3, seed=0) -> TutorialGenerator:
    """Random weights as the tutorial initialises them, and batch-norm statistics from a few
    training-mode passes, so running_mean / running_var are not their defaults."""
    torch.manual_seed(seed)
    net = TutorialGenerator(nc=nc)
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 16, 1, 1))
    return net.eval()


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("how", ["bare", "tutorial checkpoint", "DataParallel"])
def test_the_tutorials_generator_loads_by_path_and_draws_what_it_draws(lab, how):
    net = trained_a_little()
    state = net.state_dict()
    if how == "tutorial checkpoint":        # what the tutorial's training loop would keep, D and optimisers too
        d = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1, bias=False))
        opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
        saved = {"epoch": 5, "netG_state_dict": state, "netD_state_dict": d.state_dict(),
                 "optimizerG_state_dict": opt.state_dict(), "G_losses": [1.5, 1.2]}
    elif how == "DataParallel":
        saved = {f"module.{k}": v for k, v in state.items()}
    else:
        saved = state
    path = lab / "netG.pth"
    torch.save(saved, path)
    G = core.load_generator(str(path))
    assert isinstance(G, DCGAN) and G.arch == "dcgan" and G.z_dim == 16 and G.widths == [64, 32, 16, 8]
    assert core.hooks.layer_names(G) == ["layer1", "layer2", "layer3", "layer4", "output_64x64"]
    z = torch.randn(5, 16)
    with torch.no_grad():
        want = net(z.view(5, 16, 1, 1))
        got = G(z)
    assert got.shape == (5, 3, 64, 64)
    assert torch.allclose(got, want, atol=1e-6)
    # each named layer is the tutorial's block output: after layer2's ReLU is main[:6]
    with core.hooks.Trace(G, capture=["layer2"]) as tr, torch.no_grad():
        G(z)
    with torch.no_grad():
        assert torch.allclose(tr["layer2"], net.main[:6](z.view(5, 16, 1, 1)), atol=1e-6)


def test_a_grey_scale_dcgan_draws_grey_rgb_and_a_broken_one_is_refused(lab):
    net = trained_a_little(nc=1)
    torch.save(net.state_dict(), lab / "grey.pth")
    G = core.load_generator(str(lab / "grey.pth"))
    z = torch.randn(2, 16)
    with torch.no_grad():
        out, want = G(z), net(z.view(2, 16, 1, 1))
    assert out.shape == (2, 3, 64, 64) and torch.allclose(out[:, 0], want[:, 0], atol=1e-6)
    assert torch.equal(out[:, 0], out[:, 2])
    state = net.state_dict()
    del state["main.4.running_var"]
    torch.save(state, lab / "no_bn.pth")
    with pytest.raises(core.CheckpointError, match="no_bn.pth.*main.4.running_var"):
        core.load_generator(str(lab / "no_bn.pth"))
    state = trained_a_little().state_dict()
    state["main.3.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(state, lab / "k3.pth")
    with pytest.raises(core.CheckpointError, match=r"k3.pth.*\[C_in, C_out, 4, 4\]"):
        core.load_generator(str(lab / "k3.pth"))


def test_a_dcgan_uploads_and_dissects(lab):
    net = trained_a_little(seed=3)
    path = lab / "netG.pth"
    torch.save({"netG_state_dict": net.state_dict()}, path)
    entry = published.add_upload(path.read_bytes(), "netG.pth", "lab/dcgan", added_by="ann")
    assert entry["arch"] == "dcgan"
    G = core.load_generator("lab/dcgan")
    assert isinstance(G, DCGAN)
    res = core.dissect(G, ColorSegmenter(), ["layer2", "layer4"], 16, cache=False, bins=32)
    u = res.units("layer4")
    assert len(u) == 8 and u.iou.between(0, 1).all()
    assert res.summary().units.tolist() == [32, 8]

"""ProGAN: published 256x256 layout loads key for key; round trip; clear errors; weights_only."""
import pytest
import torch

import core
from core.base.checkpoints import CheckpointError
from core.models.progan import ProGAN, config_from_state_dict, normalize_keys

# the published LSUN 256x256 layout (shared/reference/progan_lsun.md)
PUBLISHED = {"layer1.conv.weight": (512, 512, 4, 4), **{f"layer{i}.conv.weight": (512, 512, 3, 3) for i in range(2, 7)},
             "layer7.conv.weight": (256, 512, 3, 3), "layer8.conv.weight": (256, 256, 3, 3),
             "layer9.conv.weight": (128, 256, 3, 3), "layer10.conv.weight": (128, 128, 3, 3),
             "layer11.conv.weight": (64, 128, 3, 3), "layer12.conv.weight": (64, 64, 3, 3),
             "layer13.conv.weight": (32, 64, 3, 3), "layer14.conv.weight": (32, 32, 3, 3),
             "output_256x256.conv.weight": (3, 32, 1, 1), "output_256x256.wscale.b": (3,)}
PUBLISHED.update({f"layer{i}.wscale.b": (PUBLISHED[f"layer{i}.conv.weight"][0],) for i in range(1, 15)})


def _random_published_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*shape, generator=g) for k, shape in PUBLISHED.items()}


@pytest.fixture(scope="module")
def published_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lsun") / "churchoutdoor_lsun.pth"
    torch.save(_random_published_state(), path)
    return path


def test_published_layout_loads_key_for_key_and_generates(published_file):
    g = core.load_generator(published_file)
    assert set(g.state_dict()) == set(PUBLISHED)
    assert g.z_dim == 512 and g.resolution == 256
    assert g.layer_names[-1] == "output_256x256" and "layer4" in dict(g.named_modules())
    with torch.no_grad():
        x = g(torch.randn(1, 512))
    assert x.shape == (1, 3, 256, 256) and x.min() >= -1 and x.max() <= 1
    core.check_generator(g, probe=False)


def test_forward_matches_an_independent_computation():
    """Re-derive a small ProGAN's output by hand from the raw weights (pixel norm, upsample,
    conv, He scale, bias, LeakyReLU) and compare."""
    torch.manual_seed(0)
    g = ProGAN(16, (8, 4), clamp_output=False)
    for p in g.parameters():
        torch.nn.init.normal_(p)
    z = torch.randn(3, 16)
    sd = g.state_dict()

    def pn(x):
        return x / torch.sqrt((x ** 2).mean(1, keepdim=True) + 1e-8)

    def lrelu(x):
        return torch.where(x > 0, x, 0.2 * x)

    def block(x, name, pad, up=False, act=True):
        w, b = sd[f"{name}.conv.weight"], sd[f"{name}.wscale.b"]
        x = pn(x)
        if up:
            x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        y = torch.nn.functional.conv2d(x, w, padding=pad) * ((2 ** 0.5 if act else 1.0) / fan_in ** 0.5)
        y = y + b.view(1, -1, 1, 1)
        return lrelu(y) if act else y

    x = z.view(3, 16, 1, 1)
    x = block(x, "layer1", 3)
    x = block(x, "layer2", 1)
    x = block(x, "layer3", 1, up=True)
    x = block(x, "layer4", 1)
    x = block(x, "output_8x8", 0, act=False)
    with torch.no_grad():
        torch.testing.assert_close(g(z), x, rtol=1e-5, atol=1e-5)


def test_round_trip_bit_identical(tmp_path):
    g = ProGAN(32, (16, 8, 8))
    path = tmp_path / "g.pt"
    torch.save(g.state_dict(), path)
    h = core.load_generator(path)
    for k, v in g.state_dict().items():
        assert torch.equal(v, h.state_dict()[k])
    z = torch.randn(4, 32)
    with torch.no_grad():
        assert torch.equal(g.eval()(z), h(z))


def test_key_variants(tmp_path):
    sd = ProGAN(32, (16, 8)).state_dict()
    old = {("output." + k.split(".", 1)[1]) if k.startswith("output_") else
           f"features.{int(k.split('.')[0][5:]) - 1}.{k.split('.', 1)[1]}": v for k, v in sd.items()}
    assert set(normalize_keys(old)) == set(sd)
    assert set(normalize_keys({"state_dict": sd})) == set(sd)
    assert set(normalize_keys({"module." + k: v for k, v in sd.items()})) == set(sd)
    assert config_from_state_dict(sd) == {"z_dim": 32, "channels": [16, 8]}


def test_bad_checkpoints_name_file_and_keys(tmp_path):
    sd = ProGAN(32, (16, 8)).state_dict()
    missing = dict(sd)
    del missing["layer3.wscale.b"]
    p = tmp_path / "missing.pt"
    torch.save(missing, p)
    with pytest.raises(CheckpointError, match=r"missing.pt.*missing keys layer3.wscale.b"):
        core.load_generator(p)
    extra = dict(sd, **{"layer2.extra": torch.zeros(1)})
    p = tmp_path / "extra.pt"
    torch.save(extra, p)
    with pytest.raises(CheckpointError, match=r"extra.pt.*unexpected keys layer2.extra"):
        core.load_generator(p)
    shaped = dict(sd, **{"layer2.wscale.b": torch.zeros(5)})
    p = tmp_path / "shape.pt"
    torch.save(shaped, p)
    with pytest.raises(CheckpointError, match=r"shape.pt.*layer2.wscale.b \(file \(5,\), model \(16,\)\)"):
        core.load_generator(p)
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    with pytest.raises(CheckpointError, match="resnet.pt is not a ProGAN generator"):
        core.load_generator(other)
    with pytest.raises(ValueError, match="unknown model 'toyworld/castle'"):
        core.load_generator("toyworld/castle")


def test_loading_never_executes_code(code_running_checkpoint):
    p, marker = code_running_checkpoint(ProGAN(32, (16, 8)).state_dict(), "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        core.load_generator(p)
    assert not marker.exists()

"""Checkpoint pre-flight (issue 18): what a file claims is compared with the size budget before
any model is built, non-finite weights and images are refused, and files that are not weights
are said to be so — through the API, the registry and upload paths, and the CLI.

Timings and peak memory of the refusals are measured by benchmarks/bench_preflight.py."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

import core
from core import cli
from core.base import budget
from core.base.checkpoints import check_weights, read_weights, safetensors_header, sniff
from core.models import biggan, progan, registry, segformer, stylegan2
from core.models.progan import ProGAN
from tests.badcases.loaders import bomb_state, overflowing_state


@pytest.fixture(autouse=True)
def _own_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv(budget.ENV_PARAMS, raising=False)
    monkeypatch.delenv(budget.ENV_BYTES, raising=False)


def _tiny(tmp_path, name="tiny.pt", **fill):
    torch.manual_seed(0)
    sd = ProGAN(8, (8, 4)).state_dict()
    for key, value in fill.items():
        sd[key.replace("__", ".")].view(-1)[:2] = value
    p = tmp_path / name
    torch.save(sd, p)
    return p


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


# ----------------------------------------------------------------------------- the budget

def test_budget_from_arguments_environment_and_defaults(monkeypatch):
    assert budget.size_budget() == budget.SizeBudget(budget.DEFAULT_MAX_PARAMS, budget.DEFAULT_MAX_BYTES)
    monkeypatch.setenv(budget.ENV_PARAMS, "500M")
    monkeypatch.setenv(budget.ENV_BYTES, "4GiB")
    assert budget.size_budget() == budget.SizeBudget(500_000_000, 4 * 2 ** 30)
    monkeypatch.setenv(budget.ENV_PARAMS, "5e8")
    assert budget.size_budget(max_bytes=10 ** 6) == budget.SizeBudget(500_000_000, 10 ** 6)
    with budget.size_limits(max_params=1000):
        assert budget.size_budget().max_params == 1000
        with budget.size_limits(max_bytes=77):                 # an inner block keeps what it does not set
            assert budget.size_budget() == budget.SizeBudget(1000, 77)
    assert budget.size_budget().max_params == 500_000_000
    monkeypatch.setenv(budget.ENV_BYTES, "plenty")
    with pytest.raises(core.InputError, match=r"\$GANATOMY_MAX_BYTES='plenty' is not a positive size"):
        budget.size_budget()
    with pytest.raises(core.ArgumentTypeError, match="max_params must be a positive number"):
        budget.size_budget(max_params="many")


def test_a_refusal_names_the_file_the_claim_the_budget_and_the_fix():
    with pytest.raises(core.BudgetError) as e:
        budget.check_size("checkpoint /x/g.pt", "its 3 tensors claim", 3_000_000_000, 12 * 2 ** 30)
    msg = str(e.value)
    assert isinstance(e.value, MemoryError)
    assert "/x/g.pt" in msg and "3,000,000,000 parameters (12.0 GiB)" in msg
    assert "size budget of 500,000,000 parameters and 4.0 GiB" in msg
    assert "GANATOMY_MAX_PARAMS=3000000000" in e.value.fix and "GANATOMY_MAX_BYTES=13000000000" in e.value.fix
    assert "max_params=" in e.value.fix and "\n" not in msg


def test_the_published_layouts_fit_the_default_budget_with_headroom():
    """Sizes as the loaders compute them, without building: ProGAN LSUN 256, StyleGAN2 config-f at
    1024 px, BigGAN-deep-512 and SegFormer-B5 all fit with at least 2x to spare."""
    sg2 = {"size": 1024, "style_dim": 512, "n_mlp": 8, "channels": stylegan2.rosinality_channels(1024, 2)}
    deep512 = {"channel_width": 128, "z_dim": 128, "num_classes": 1000, "n_stats": 51, "attention_layer_position": 8,
               "layers": [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
                          [True, 8, 8], [False, 8, 8], [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2],
                          [True, 2, 1], [False, 1, 1], [True, 1, 1]]}
    b5 = {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768, "num_labels": 150}
    sizes = {"progan": progan.model_size(512, (512, 512, 512, 512, 256, 128, 64)),
             "stylegan2": stylegan2.model_size(**sg2), "biggan": biggan.model_size(deep512),
             "segformer": segformer.model_size(b5)}
    assert 23e6 < sizes["progan"]["params"] < 24e6
    assert 28e6 < sizes["stylegan2"]["params"] < 31e6
    assert 50e6 < sizes["biggan"]["params"] < 60e6 and sizes["biggan"]["resolution"] == 512
    assert sizes["segformer"]["params"] == 84_708_694    # SegformerForSemanticSegmentation's own count
    b = budget.size_budget()
    for name, s in sizes.items():
        n = s["params"] + s["buffers"]
        nbytes = 4 * (n + s.get("features", 0)) + budget.MODULE_BYTES * s["modules"]
        assert 2 * n <= b.max_params and 2 * nbytes <= b.max_bytes, (name, n, nbytes)


@pytest.mark.parametrize("z_dim, channels", [(8, (16, 8)), (32, (16, 8, 4)), (64, (32, 32, 16, 8))])
def test_progan_size_is_exact(z_dim, channels):
    assert progan.model_size(z_dim, channels)["params"] == _count(ProGAN(z_dim, channels))


@pytest.mark.parametrize("size, style_dim, n_mlp", [(8, 16, 2), (32, 8, 3)])
def test_stylegan2_size_is_exact(size, style_dim, n_mlp):
    ch = {r: max(4, 64 // r) for r in (2 ** i for i in range(2, size.bit_length()))}
    m = stylegan2.StyleGAN2(size, style_dim, n_mlp, channels=ch)
    s = stylegan2.model_size(size, style_dim, n_mlp, ch)
    assert s["params"] + s["buffers"] == _count(m)
    assert s["params"] == sum(p.numel() for p in m.parameters())


def test_biggan_size_is_exact():
    pytest.importorskip("pytorch_pretrained_biggan")
    cfg = {"output_dim": 32, "z_dim": 16, "class_embed_dim": 16, "channel_width": 4, "num_classes": 10,
           "layers": [[False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]],
           "attention_layer_position": 4, "eps": 1e-4, "n_stats": 51}
    with torch.device("meta"):
        m = biggan.build(cfg)
    s = biggan.model_size(cfg)
    assert (s["params"], s["buffers"]) == (sum(p.numel() for p in m.parameters()), sum(b.numel() for b in m.buffers()))


def test_segformer_size_refuses_malformed_configs():
    assert segformer.model_size({})["params"] == 3_714_658          # SegformerConfig() (b0), as transformers counts
    for bad, what in [({"hidden_sizes": [32, 64]}, "hidden_sizes must be a list of 4"),
                      ({"depths": [2, -1, 2, 2]}, r"depths\[1\] must be an int >= 0"),
                      ({"num_attention_heads": [3, 2, 5, 8]}, "not a multiple"),
                      ({"mlp_ratios": ["x", 4, 4, 4]}, "mlp_ratios must be positive numbers")]:
        with pytest.raises(core.InputError, match=what):
            segformer.model_size(bad)


# ----------------------------------------------------------------------------- memory bombs

def test_the_memory_bomb_is_refused_from_its_shapes_before_anything_is_built(tmp_path, monkeypatch):
    p = tmp_path / "bomb.pt"
    torch.save(bomb_state(5000), p)
    assert p.stat().st_size < 4096
    built = []
    monkeypatch.setattr(ProGAN, "__init__", lambda self, *a, **k: built.append(a) or (_ for _ in ()).throw(
        AssertionError("a ProGAN was built")))
    for load in (core.load_generator, registry.load_generator_file, registry.read_state):
        with pytest.raises(core.BudgetError, match=r"bomb.pt was refused before loading: its 6 tensors claim "
                                                   r"625,025,003 parameters"):
            load(p)
    assert not built


def test_widths_read_from_shapes_are_checked_before_building(tmp_path, monkeypatch):
    """layer1 claims a width of 20000 (2.6 M values in the file): the ProGAN it implies would need
    3.6 G parameters, refused before construction; a file that does not fit its own layout is
    refused after a build on the meta device only."""
    torch.manual_seed(0)
    sd = ProGAN(8, (8, 4)).state_dict()
    wide = dict(sd, **{"layer1.conv.weight": torch.zeros(1).expand(20000, 8, 4, 4)})
    torch.save(wide, tmp_path / "wide.pt")
    devices = []
    real_init = ProGAN.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        devices.append(self.layer1.conv.weight.device.type)

    monkeypatch.setattr(ProGAN, "__init__", spy)
    with pytest.raises(core.BudgetError, match=r"the ProGAN its shapes describe \(z_dim 8, channels \[20000, 4\]"):
        core.load_generator(tmp_path / "wide.pt")
    assert devices == []
    misfit = dict(sd, **{"layer1.conv.weight": torch.zeros(1).expand(600, 8, 4, 4)})
    torch.save(misfit, tmp_path / "misfit.pt")
    with pytest.raises(core.CheckpointError, match=r"misfit.pt does not fit ProGAN: mis-shaped keys layer1.wscale.b"):
        core.load_generator(tmp_path / "misfit.pt")
    assert devices == ["meta"]


def test_a_huge_segformer_config_is_refused_before_transformers_builds_anything(tmp_path, monkeypatch):
    folder = tmp_path / "seg"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "segformer", "num_labels": 150,
                                                    "hidden_sizes": [100000, 200000, 500000, 800000]}))
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    monkeypatch.setattr(segformer, "require_transformers", lambda: pytest.fail("transformers was needed"))
    with pytest.raises(core.BudgetError, match=r"seg/config.json was refused before loading: the SegFormer it "
                                               r"describes \(hidden sizes \[100000"):
        core.load_segmenter(str(folder))
    with pytest.raises(core.BudgetError):
        registry.load_segmenter_path(folder)


def test_the_budget_can_be_raised_for_one_load(tmp_path, monkeypatch):
    p = _tiny(tmp_path)
    with pytest.raises(core.BudgetError, match="tiny.pt"):
        core.load_generator(p, max_params=1000)
    monkeypatch.setenv(budget.ENV_PARAMS, "1000")
    with pytest.raises(core.BudgetError, match="GANATOMY_MAX_PARAMS="):
        core.load_generator(p)
    assert isinstance(core.load_generator(p, max_params=10 ** 6), ProGAN)   # the argument wins


def test_an_expanded_view_is_checked_over_what_is_stored_never_its_claimed_size():
    view = torch.tensor([1.0, float("nan"), float("inf")]).expand(10 ** 6, 10 ** 6, 3)   # claims 3e12 values
    with budget.size_limits(max_params=10 ** 13, max_bytes=10 ** 14), \
            pytest.raises(core.CheckpointError, match=r"x.pt holds non-finite weights: w has 1 NaN and 1 inf"):
        check_weights({"w": view}, "x.pt")
    with pytest.raises(core.BudgetError, match="3,000,000,000,000 parameters"):
        check_weights({"w": view}, "x.pt")


# ----------------------------------------------------------------------------- poisoned weights

@pytest.mark.parametrize("value, word", [(float("nan"), "2 NaN and 0 inf"), (float("inf"), "0 NaN and 2 inf"),
                                         (float("-inf"), "0 NaN and 2 inf")])
def test_non_finite_weights_are_refused_through_every_entry_point(tmp_path, value, word, capsys):
    p = _tiny(tmp_path, "poisoned.pt", layer4__conv__weight=value)
    msg = rf"poisoned.pt holds non-finite weights: layer4.conv.weight has {word} values"
    for load in (core.load_generator, registry.load_generator_file, registry.read_state):
        with pytest.raises(core.CheckpointError, match=msg):
            load(p)
    with pytest.raises(core.CheckpointError, match=msg):
        core.models.register("lab/poisoned", p)
    with pytest.raises(core.CheckpointError, match="holds non-finite weights"):
        core.models.add_upload(p.read_bytes(), "poisoned.pt", "lab/up")
    assert "lab/poisoned" not in core.models.user_models() and "lab/up" not in core.models.user_models()
    with pytest.raises(SystemExit) as e:
        cli.main(["dissect", "--model", str(p), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: checkpoint ") and "poisoned.pt holds non-finite weights" in err[0]


def test_non_finite_safetensors_and_segmenter_weights(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    w = torch.zeros(8, 3, 3, 3)
    w[0, 0, 0, :3] = float("nan")
    st.save_file({"segformer.encoder.patch_embeddings.0.proj.weight": w}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "segformer"}))
    with pytest.raises(core.CheckpointError, match="model.safetensors holds non-finite weights: segformer.encoder."
                                                   "patch_embeddings.0.proj.weight has 3 NaN"):
        core.load_segmenter(str(tmp_path))


def test_a_generator_whose_image_is_not_finite_is_refused_at_load(tmp_path):
    sd = overflowing_state()
    torch.save(sd, tmp_path / "overflow.pt")
    with pytest.raises(core.CheckpointError, match=r"overflow.pt was refused: generator forward\(z\) returned "
                                                   r"non-finite images"):
        core.load_generator(tmp_path / "overflow.pt")
    g = ProGAN(8, (8, 4))
    g.load_state_dict(sd)
    with pytest.raises(core.ProtocolError, match="non-finite images"):
        core.check_generator(g)


def test_the_load_probe_leaves_the_global_random_state_alone(tmp_path):
    g = core.load_generator(_tiny(tmp_path))
    torch.manual_seed(123)
    want = torch.rand(4)
    torch.manual_seed(123)
    registry.probe_generator(g, "tiny.pt")
    core.check_generator(g)
    assert torch.equal(torch.rand(4), want)


# ----------------------------------------------------------------------------- not weights files

@pytest.mark.parametrize("data, kind", [(b"hello, this is text\n" * 20, None), (bytes(range(256)) * 4, None),
                                        (b"PK\x03\x04 not a zip", "zip"), (b"\x80\x02" + b"\xf9" * 40, "pickle")])
def test_junk_is_not_said_to_run_code(tmp_path, data, kind):
    p = tmp_path / "junk.pt"
    p.write_bytes(data)
    assert sniff(p) == kind
    with pytest.raises(core.CheckpointError) as e:
        core.load_generator(p)
    msg = str(e.value)
    assert "junk.pt" in msg and "run code" not in msg
    assert ("not a PyTorch or safetensors weights file" in msg) if kind is None else ("cannot be read" in msg)


def test_a_safetensors_header_must_describe_what_the_file_stores(tmp_path):
    def write(name, header, data=b"\0" * 8):
        raw = json.dumps(header).encode()
        (tmp_path / name).write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        return tmp_path / name

    ok = write("ok.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    assert set(safetensors_header(ok)) == {"w"}
    lies = write("lies.safetensors", {"w": {"dtype": "F32", "shape": [10 ** 6, 10 ** 6], "data_offsets": [0, 8]}})
    with pytest.raises(core.CheckpointError, match=r"lies.safetensors was refused: its safetensors header says w is "
                                                   r"F32 of shape \(1000000, 1000000\)"):
        read_weights(lies)
    odd = write("odd.safetensors", {"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})
    with pytest.raises(core.CheckpointError, match="odd.safetensors cannot be read, its safetensors header entry"):
        read_weights(odd)
    renamed = tmp_path / "weights.bin"                        # told apart by content, not by name
    renamed.write_bytes(ok.read_bytes())
    assert torch.equal(read_weights(renamed)["w"], torch.zeros(2))


# ----------------------------------------------------------------------------- the dashboard

def test_the_models_page_shows_each_refusal_with_the_file_and_the_fix(tmp_path):
    from streamlit.testing.v1 import AppTest
    app = str(Path(__file__).resolve().parents[1] / "dashboard" / "main.py")
    at = AppTest.from_file(app, default_timeout=120).switch_page("views/models.py").run()
    assert not at.exception, at.exception
    nan = _tiny(tmp_path, "nan_weights.pt", layer1__wscale__b=float("nan"))
    bomb = tmp_path / "bomb.pt"
    torch.save(bomb_state(5000), bomb)
    for path, name, fix in [(bomb, "lab/bomb", "GANATOMY_MAX_PARAMS="), (nan, "lab/nan", "use an earlier checkpoint")]:
        at.text_input(key="add_name").set_value(name)
        at.file_uploader(key="upload").set_value((path.name, path.read_bytes(), "application/octet-stream")).run()
        at.button(key="add_upload_button").click().run()
        assert not at.exception, at.exception
        shown = " ".join(e.value for e in at.error)
        assert path.name in shown and fix in shown, shown
    assert core.models.user_models() == {}

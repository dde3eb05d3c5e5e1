"""GAN training pieces: minibatch stddev, discriminator variants, losses, EMA, data stream."""
import json

import torch

from core import toyworld
from core.models.progan import ProGAN
from core.training import gan


def test_minibatch_stddev_matches_manual():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=g)
    y = gan.minibatch_stddev(x, group=4)
    assert y.shape == (8, 4, 4, 4)
    assert torch.equal(y[:, :3], x)
    # groups interleave: sample i belongs to group i % (n / g)
    for j in range(2):
        members = x[j::2]
        want = members.std(0, unbiased=False).add(0).pow(2).add(1e-8).sqrt().mean()
        assert torch.allclose(y[j::2, 3], want.expand(4, 4, 4), atol=1e-6)


def test_discriminator_variants_and_losses():
    for mbstd in (True, False):
        D = gan.Discriminator((16, 16, 8), mbstd=mbstd)
        out = D(torch.randn(4, 3, 16, 16))
        assert out.shape == (4, 1)
    d_real, d_fake = torch.tensor([[10.0]]), torch.tensor([[-10.0]])
    assert gan.d_loss(d_real, d_fake) < 1e-3 and gan.g_loss(d_fake) > 9


def test_a_few_training_steps_run_and_r1_is_positive():
    torch.manual_seed(0)
    G, D = ProGAN(16, (16, 16, 8)), gan.Discriminator((16, 16, 8))
    ema = gan.EMA(G, beta=0.5)
    og = torch.optim.Adam(G.parameters(), 2e-3, betas=(0.0, 0.99))
    od = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.0, 0.99))
    reals = toyworld.render("town", 8, seed=0, size=32)[0][:, :, ::2, ::2].contiguous()
    before = [p.clone() for p in G.parameters()]
    for _ in range(3):
        ld = gan.d_loss(D(reals), D(G(torch.randn(8, 16)).detach()))
        od.zero_grad()
        ld.backward()
        r1 = gan.r1_penalty(D, reals)
        assert r1.item() > 0
        r1.backward()
        od.step()
        lg = gan.g_loss(D(G(torch.randn(8, 16))))
        og.zero_grad()
        lg.backward()
        og.step()
        ema.update(G)
    assert all(torch.isfinite(p).all() for p in G.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
    # EMA sits between the start and the trained weights
    p0, p1, pe = before[0], list(G.parameters())[0], list(ema.model.parameters())[0]
    assert not torch.equal(pe, p0) and not torch.equal(pe, p1)


def test_real_stream_is_seed_exact():
    ds = gan.RealScenes("lake", 4, 32, seed0=100, start=3)
    first = next(iter(ds))
    assert torch.equal(first, toyworld.render("lake", 4, seed=103, size=32)[0])


def _train(tmp_path, steps, *extra):
    """``ganatomy train`` run in this process (``core.cli.main``), into ``tmp_path/gan_lake``; the
    process's torch thread count is put back afterwards (the command sets it)."""
    from core import cli
    threads = torch.get_num_threads()
    args = ["train", "--scene", "lake", "--res", "32", "--g-channels", "16", "16", "8", "8", "--d-channels", "16",
            "16", "8", "8", "--batch-size", "4", "--z-dim", "16", "--steps", str(steps), "--fid-every", "0",
            "--workers", "0", "--threads", "1", "--ckpt-every", "2", "--r1-every", "2",
            "--out", str(tmp_path / "gan_lake"), *extra]
    try:
        cli.main(args)
    except SystemExit as e:
        assert e.code in (0, None), f"ganatomy train exited with {e.code}"
    finally:
        torch.set_num_threads(threads)
    return torch.load(tmp_path / "gan_lake" / "ckpt.pt", weights_only=True)


def _small_lake_stats(cache, size=32, n=100):
    """Real feature statistics of a few scenes, stored as train_gan's cached 10,000-scene ones."""
    from core import load_features
    from core.studies import evaluation
    feats = load_features("toyworld")
    mu, cov = evaluation.real_stats(feats, ["lake"], n, seed=500, size=size).mean_cov()
    evaluation.store_real_stats(feats, "lake", size, mu, cov)


def test_resumed_training_is_bit_identical_to_an_uninterrupted_run(tmp_path, monkeypatch):
    """Stop after 3 steps (an odd step: R1 runs on even ones), resume to 6: every weight, the
    EMA and both optimisers equal a straight 6-step run bit for bit, with FID and MS-SWD
    measured along the way (setting up the feature network must not shift the z stream of a
    resumed run) and equal to a run that measures nothing."""
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    _small_lake_stats(tmp_path / "cache")
    measure = ("--fid-every", "2", "--fid-samples", "8", "--swd-samples", "8")
    straight = _train(tmp_path / "a", 6, *measure)
    halfway = _train(tmp_path / "b", 3, *measure)
    resumed = _train(tmp_path / "b", 6, "--resume", *measure)
    silent = _train(tmp_path / "c", 6)
    assert straight["step"] == resumed["step"] == 6
    log = [e for e in json.loads(resumed["log"]) if "fid" in e]
    assert [e["step"] for e in log] == [1, 2, 3, 4, 6] and all(e["ms_swd"] > 0 for e in log)
    for key, want in straight["G"].items():
        assert torch.equal(silent["G"][key], want), key
    for part in ("G", "D", "G_ema"):
        for key, want in straight[part].items():
            assert torch.equal(resumed[part][key], want), (part, key)
    for part in ("opt_g", "opt_d"):
        for sid, want in straight[part]["state"].items():
            for key, value in want.items():
                assert torch.equal(resumed[part]["state"][sid][key], value), (part, sid, key)
    # the last three steps did move the weights, so the equality above is not vacuous
    assert halfway["step"] == 3
    assert not all(torch.equal(halfway["G"][k], v) for k, v in straight["G"].items())
    # the snapshot schedule wrote a shippable fp16 EMA snapshot at the stop
    assert (tmp_path / "b" / "gan_lake" / "snapshots" / "step-3.pt").exists()


def _refused(capsys, *args) -> str:
    """``ganatomy <args>`` in this process, expected to refuse (exit code 2): its stderr."""
    from core import cli
    threads = torch.get_num_threads()
    try:
        cli.main(list(args))
        raise AssertionError(f"ganatomy {' '.join(args[:2])} was not refused")
    except SystemExit as e:
        assert e.code == 2, e.code
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().err


def test_compact_checkpoint_resumes_with_a_new_batch(tmp_path, capsys):
    """The compact checkpoint (carried to a GPU machine and back) keeps the EMA generator exactly,
    G and D to fp16 and Adam's second moment to bf16; a run resumes from it with another batch
    size, counts the real images it has seen, and still refuses a different network."""
    from core import cli, training
    full = _train(tmp_path, 3)
    compact_path = tmp_path / "carry.pt"
    try:
        cli.main(["train", "--scene", "lake", "--out", str(tmp_path / "gan_lake"), "--compact-to", str(compact_path)])
    except SystemExit as e:
        assert e.code in (0, None), e.code
    small = torch.load(compact_path, weights_only=True)
    assert small["compact"] and small["step"] == 3
    err = _refused(capsys, "train", "--scene", "lake", "--out", str(tmp_path / "none"), "--compact-to",
                   str(tmp_path / "x.pt"))
    assert "nothing to compact" in err and not (tmp_path / "x.pt").exists()
    for key, want in full["G_ema"].items():
        assert torch.equal(small["G_ema"][key], want)
    for key, want in full["G"].items():
        assert small["G"][key].dtype == torch.float16 and torch.equal(small["G"][key], want.half())
    opt = training.expand_optimizer_state(small["opt_d"])
    for sid, want in full["opt_d"]["state"].items():
        assert "exp_avg" not in small["opt_d"]["state"][sid]
        assert torch.allclose(opt["state"][sid]["exp_avg_sq"], want["exp_avg_sq"], rtol=1e-2, atol=0)
    assert compact_path.stat().st_size < 0.6 * (tmp_path / "gan_lake" / "ckpt.pt").stat().st_size
    # an Adam with momentum would lose its first moment: refused, not silently dropped
    full["opt_g"]["param_groups"][0]["betas"] = (0.9, 0.99)
    try:
        training.compact_checkpoint(full)
        raise AssertionError("a first moment that matters was dropped")
    except ValueError as e:
        assert "beta1" in str(e)
    # resume from the compact file with batch 6 instead of 4
    (tmp_path / "gan_lake" / "ckpt.pt").write_bytes(compact_path.read_bytes())
    resumed = _train(tmp_path, 5, "--resume", "--batch-size", "6")
    assert resumed["step"] == 5 and resumed["images"] == 3 * 4 + 2 * 6
    assert json.loads(resumed["config"])["batch"] == 6
    starts = [e["start"]["batch"] for e in json.loads(resumed["log"]) if "start" in e]
    assert starts == [4, 6]
    snap = torch.load(tmp_path / "gan_lake" / "snapshots" / "step-5.pt", weights_only=True)
    assert snap["meta"]["images"] == 24
    # another network shape is still refused
    err = _refused(capsys, "train", "--scene", "lake", "--res", "32", "--g-channels", "16", "16", "8", "4",
                   "--d-channels", "16", "16", "8", "8", "--batch-size", "4", "--z-dim", "16", "--steps", "7",
                   "--fid-every", "0", "--workers", "0", "--out", str(tmp_path / "gan_lake"), "--resume")
    assert "resume with the same options" in err


def test_planted_omission_run_starts_from_a_generator_and_keeps_its_frozen_layers(tmp_path, capsys):
    """``--init`` starts G (and its EMA) from a trained snapshot with a fresh D, ``--freeze layer2``
    keeps layer1..layer2 bit-identical to it while later layers move, ``--d-warmup`` leaves G alone
    for its first steps, and ``--omit cloud`` feeds the world without clouds (the planted omission
    of #34). The options are recorded, so a resume with other ones is refused."""
    from core import load_generator
    _train(tmp_path / "src", 2)
    snap = tmp_path / "src" / "gan_lake" / "snapshots" / "step-2.pt"
    init = {k: v.float() for k, v in load_generator(str(snap)).state_dict().items()}
    warm = _train(tmp_path / "warm", 2, "--init", str(snap), "--freeze", "layer2", "--d-warmup", "2")
    for key, want in init.items():          # D-only steps: G untouched, everywhere
        assert torch.equal(warm["G"][key], want), key
    ck = _train(tmp_path / "b", 5, "--init", str(snap), "--freeze", "layer2", "--d-warmup", "2", "--omit", "cloud",
                "--suppress", "cloud", "--suppress-weight", "5")
    frozen = [k for k in init if k.split(".")[0] in ("layer1", "layer2")]
    moved = [k for k in init if k not in frozen]
    assert frozen and moved
    for key in frozen:
        assert torch.equal(ck["G"][key], init[key]) and torch.equal(ck["G_ema"][key], init[key]), key
    assert any(not torch.equal(ck["G"][k], init[k]) for k in moved)
    config = json.loads(ck["config"])
    assert config["omit"] == ["cloud"] and config["freeze"] == "layer2" and config["init"] == str(snap)
    assert config["suppress"] == ["cloud"] and config["suppress_weight"] == 5
    # the real stream is the world without clouds: no cloud pixel, the same scenes otherwise
    ds = gan.RealScenes("lake", 4, 32, seed0=100, omit=("cloud",))
    images = next(iter(ds))
    no_cloud, labels = toyworld.render("lake", 4, seed=100, size=32, omit=("cloud",))
    assert torch.equal(images, no_cloud)
    assert not (labels == toyworld.label_index("cloud")).any()
    assert (toyworld.render("lake", 4, seed=100, size=32)[1] == toyworld.label_index("cloud")).any()
    capsys.readouterr()
    err = _refused(capsys, "train", "--scene", "lake", "--omit", "cloud", "--out", str(tmp_path / "x"))
    assert "--fid-every" in err and "--omit" in err
    err = _refused(capsys, "train", "--scene", "lake", "--freeze", "layer2", "--fid-every", "0",
                   "--out", str(tmp_path / "y"))
    assert "--init" in err
    err = _refused(capsys, "train", "--scene", "lake", "--omit", "unicorn", "--fid-every", "0",
                   "--out", str(tmp_path / "z"))
    assert "unicorn" in err
    err = _refused(capsys, "train", "--scene", "lake", "--suppress", "cloud", "--fid-every", "0",
                   "--out", str(tmp_path / "w"))
    assert "--suppress-weight" in err

"""Train a toyworld ProGAN (seeded, resumable, logs losses and FID, fixed snapshot schedule).

    python scripts/train_gan.py --scene town --steps 30000 --res 64
    python scripts/train_gan.py --scene town --steps 30000 --res 64 --resume
    python scripts/train_gan.py --scene town --variant nostd     # D without minibatch stddev
    python scripts/train_gan.py --scene town --variant nopn      # G without pixel norm

Runs on GPU when one is visible (bf16 autocast, channels-last), else on CPU (slowly).
Every --fid-every steps: FID of --fid-n EMA samples (1,000) vs 10,000 real scenes in the
toyworld feature space (real statistics cached under cache/real_stats/), and MS-SWD x 1e3 of
--swd-n samples vs as many real scenes (core/engine/swd.py: patch structure, which sees blur that the
colour-sensitive toyworld FID forgives). Every --snapshot-every steps the
EMA generator is saved as a shippable fp16 snapshot (cache/train/gan_<name>/snapshots/).
A resumable full checkpoint is written every --ckpt-every steps.
"""
from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

import torch
from tqdm import tqdm

from core import load_features, toyworld, training
from core.models.progan import ProGAN
from core.studies import evaluation
from core.training import gan

ROOT = Path(__file__).resolve().parents[1]

# Generator widths per resolution (4x4, 8x8, ...): 256 units at the 8x8 layers (the layers the
# paper dissects), narrower elsewhere so that a model is ~1.5M parameters (3 MB in fp16) and
# a 64x64 step at batch 16 takes ~1 s on one CPU core. D is narrower still: it is thrown away.
G_CHANNELS = {64: (128, 256, 64, 32, 16), 128: (128, 256, 128, 64, 32, 16)}
D_CHANNELS = {64: (128, 128, 64, 32, 16), 128: (128, 128, 64, 32, 16, 16)}
# EMA snapshots for the training-evolution study (steps), then every --snapshot-every.
SNAPSHOTS = (100, 250, 500, 1000, 2000)


def _ignore_stop_signals(worker_id):
    """DataLoader workers leave SIGTERM/Ctrl-C to the trainer, which finishes its step, saves and
    shuts them down; a worker killed first (``pkill -f train_gan`` matches it too) would crash the
    trainer before it saved."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _widths(text):
    return tuple(int(c) for c in text.split(","))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", choices=toyworld.SCENES, required=True)
    ap.add_argument("--variant", choices=["", "nostd", "nopn"], default="")
    ap.add_argument("--res", type=int, default=64, help="64 or 128 (or another toyworld size with --g-channels)")
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--g-channels", type=_widths, default=None, help="e.g. 128,256,64,32,16")
    ap.add_argument("--d-channels", type=_widths, default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--fid-n", type=int, default=1000, help="generated samples per training-time FID")
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--r1", type=float, default=0.2, help="R1 weight gamma")
    ap.add_argument("--r1-every", type=int, default=4)
    ap.add_argument("--z-dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--fid-every", type=int, default=500, help="0 = no training-time FID (nor MS-SWD)")
    ap.add_argument("--swd-n", type=int, default=500,
                    help="samples (the first of the FID ones; as many real scenes) per training-time MS-SWD; 0 = none")
    ap.add_argument("--snapshot-every", type=int, default=1000)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/gan_<name>/ckpt.pt (a full or a compact one); "
                         "lr, R1 and --batch may change")
    ap.add_argument("--compact-to", type=Path, default=None,
                    help="write a compact copy of the run's checkpoint (~15 MB, to carry to another machine) and exit")
    ap.add_argument("--out", type=Path, default=ROOT / "cache" / "train", help="runs live in OUT/gan_<name>")
    a = ap.parse_args()
    if a.swd_n > a.fid_n:
        raise SystemExit(f"--swd-n ({a.swd_n}) must not exceed --fid-n ({a.fid_n}): MS-SWD uses the first "
                         "--swd-n of the FID samples")
    if a.res not in G_CHANNELS and not (a.g_channels and a.d_channels):
        raise SystemExit(f"--res {a.res}: give --g-channels and --d-channels, or use one of {sorted(G_CHANNELS)}")

    name = a.scene + (f"_{a.variant}" if a.variant else "")
    run = a.out / f"gan_{name}"
    if a.compact_to:
        ck = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
        training.save_atomic(training.compact_checkpoint(ck), a.compact_to)
        print(f"{a.compact_to}: compact checkpoint of {name} at step {ck['step']}")
        return
    (run / "snapshots").mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gch = a.g_channels or G_CHANNELS[a.res]
    dch = a.d_channels or D_CHANNELS[a.res]
    if 4 * 2 ** (len(gch) - 1) != a.res or len(dch) != len(gch):
        raise SystemExit(f"--g-channels/--d-channels need {(a.res // 4).bit_length()} widths for --res {a.res}")
    config = {"g_channels": list(gch), "d_channels": list(dch), "z_dim": a.z_dim, "batch": a.batch,
              "res": a.res, "variant": a.variant}
    # the batch may change across resumes (a GPU takes larger ones); the log and the images
    # count say what each stretch used
    same_net = {k: v for k, v in config.items() if k != "batch"}
    G = ProGAN(a.z_dim, gch, pixelnorm=a.variant != "nopn").to(dev)
    D = gan.Discriminator(dch, mbstd=a.variant != "nostd").to(dev)
    if dev.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    ema = gan.EMA(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=a.lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=a.lr, betas=(0.0, 0.99), eps=1e-8)
    start, spent, log, images = 0, 0.0, [], 0
    ck_path = run / "ckpt.pt"
    if a.resume and ck_path.exists():
        ck = torch.load(ck_path, map_location=dev, weights_only=True)
        old = json.loads(ck.get("config", "{}"))
        if old and {k: v for k, v in old.items() if k != "batch"} != same_net:
            raise SystemExit(f"{ck_path} was trained with {ck['config']}; resume with the same options "
                             f"(got {json.dumps(config)}), or start afresh without --resume")
        G.load_state_dict(ck["G"])   # a compact checkpoint's fp16 weights are cast back to fp32
        D.load_state_dict(ck["D"])
        ema.model.load_state_dict(ck["G_ema"])
        opt_g.load_state_dict(training.expand_optimizer_state(ck["opt_g"]))
        opt_d.load_state_dict(training.expand_optimizer_state(ck["opt_d"]))
        start, spent, log = ck["step"], ck["seconds"], json.loads(ck["log"])
        images = ck.get("images", start * old.get("batch", a.batch))
        torch.set_rng_state(ck["rng"].cpu())   # map_location moved it to the training device
        if dev.type == "cuda" and "rng_cuda" in ck:
            torch.cuda.set_rng_state(ck["rng_cuda"].cpu())
        print(f"resumed {name} at step {start} ({images:,} real images seen)"
              + (" from a compact checkpoint" if ck.get("compact") else ""))
    # the options a (re)start ran with: lr and R1 may change across resumes, and the log says when
    log.append({"step": start, "start": {"lr": a.lr, "r1": a.r1, "r1_every": a.r1_every, "batch": a.batch,
                                         "hardware": training.hardware()}})
    timer = training.Timer(spent)
    if a.fid_every > 0:
        # building the feature network draws initial weights from the global RNG, which the z
        # samples come from: a resumed run would load it after restoring that RNG and drift from
        # an uninterrupted one, so the measuring tools are set up on a forked RNG
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            features = load_features("toyworld", device=dev)
            real = evaluation.scene_stats(features, a.scene, a.res, device=dev)
            real_patches = evaluation.real_patches(a.scene, a.swd_n, size=a.res) if a.swd_n else None

    def measure():
        """(FID, MS-SWD) of the EMA generator from one pass over the same samples."""
        if a.fid_every <= 0:
            return None, None
        q = evaluation.generator_quality(ema.model, features, real, real_patches, n=a.fid_n,
                                         seed=123, device=dev, n_swd=a.swd_n)
        return round(q["fid"], 3), None if q["ms_swd"] is None else round(q["ms_swd"]["avg"], 2)
    data = torch.utils.data.DataLoader(
        gan.RealScenes(a.scene, a.batch, a.res, training.GAN_SEED0, start=start), batch_size=None,
        num_workers=a.workers, prefetch_factor=4 if a.workers else None, persistent_workers=a.workers > 0,
        # its own generator: creating the iterator must not draw from the global RNG that the z
        # samples come from, or a resumed run would drift from an uninterrupted one
        generator=torch.Generator().manual_seed(a.seed), worker_init_fn=_ignore_stop_signals if a.workers else None)
    it = iter(data)
    amp = dict(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    bar = tqdm(range(start, a.steps), initial=start, total=a.steps, desc=f"gan {name}")

    def save_snapshot(step, fid, ms_swd=None):
        meta = {"scene": a.scene, "variant": a.variant or "base", "resolution": a.res, "steps": step,
                "fid": fid, "ms_swd": ms_swd, "ms_swd_samples": a.swd_n, "z_dim": a.z_dim,
                "pixelnorm": a.variant != "nopn",
                "minibatch_stddev": a.variant != "nostd", "train_seconds": round(timer.elapsed(), 1),
                "hardware": training.hardware(), "loss": f"non-saturating + R1 (gamma {a.r1:g})", "batch": a.batch,
                "lr": a.lr,
                "fid_samples": a.fid_n, "g_channels": list(gch), "images": images}
        training.save_atomic({"state_dict": training.shipped_state(ema.model), "meta": meta},
                             run / "snapshots" / f"step-{step}.pt")

    stop = {"now": False}

    def request_stop(signum, frame):   # SIGTERM / Ctrl-C: finish this step, save, exit
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    done = start
    for step in bar:
        reals = next(it).to(dev, non_blocking=True)
        if dev.type == "cuda":
            reals = reals.contiguous(memory_format=torch.channels_last)
        z = torch.randn(a.batch, a.z_dim, device=dev)
        # discriminator
        with torch.autocast(**amp):
            fakes = G(z).detach()
            ld = gan.d_loss(D(reals).float(), D(fakes).float())
        opt_d.zero_grad(set_to_none=True)
        ld.backward()
        if step % a.r1_every == 0:
            r1 = gan.r1_penalty(D, reals.float())
            (0.5 * a.r1 * a.r1_every * r1).backward()
        opt_d.step()
        # generator
        z = torch.randn(a.batch, a.z_dim, device=dev)
        with torch.autocast(**amp):
            lg = gan.g_loss(D(G(z)).float())
        opt_g.zero_grad(set_to_none=True)
        lg.backward()
        opt_g.step()
        ema.update(G, beta=min(0.999, (1 + step) / (10 + step)))
        images += a.batch
        if step % 50 == 0:
            bar.set_postfix(d=f"{ld.item():.3f}", g=f"{lg.item():.3f}")
            log.append({"step": step, "d": round(ld.item(), 4), "g": round(lg.item(), 4),
                        "seconds": round(timer.elapsed(), 1)})
        done = step + 1
        fid = ms = None
        last = done == a.steps or stop["now"]
        if a.fid_every > 0 and (done % a.fid_every == 0 or last or done == 1):
            fid, ms = measure()
            log.append({"step": done, "fid": fid, "ms_swd": ms, "seconds": round(timer.elapsed(), 1)})
            tqdm.write(f"step {done}: FID {fid}, MS-SWD {ms}")
        if done % a.snapshot_every == 0 or last or done in SNAPSHOTS:
            if fid is None:
                fid, ms = measure()
            save_snapshot(done, fid, ms)
        if done % a.ckpt_every == 0 or last:
            training.save_atomic({"G": G.state_dict(), "D": D.state_dict(), "G_ema": ema.model.state_dict(),
                                  "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": done,
                                  "seconds": timer.elapsed(), "log": json.dumps(log),
                                  "rng": torch.get_rng_state(), "config": json.dumps(config), "images": images,
                                  **({"rng_cuda": torch.cuda.get_rng_state()} if dev.type == "cuda" else {})},
                                 ck_path)
            (run / "log.json").write_text(json.dumps(log))
        if stop["now"]:
            tqdm.write(f"stopped at step {done}: snapshot and checkpoint saved; resume with --resume")
            break
    if not (run / "snapshots" / f"step-{done}.pt").exists():   # e.g. resumed at the final step
        save_snapshot(done, *measure())
    print(f"done: {name} {done} steps in {timer.elapsed() / 60:.1f} min")


if __name__ == "__main__":
    main()

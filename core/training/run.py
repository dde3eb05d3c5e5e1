"""One toyworld GAN training run: seeded, resumable, with training-time FID and MS-SWD and a fixed
snapshot schedule (``ganatomy train``, the one training loop of the toyworld GANs).

A run lives in one folder: ``ckpt.pt`` (the resumable full checkpoint, written atomically every
``ckpt_every`` steps and at the end), ``log.json`` (losses, FID and MS-SWD along the way, and the
options of every (re)start) and ``snapshots/step-N.pt`` (the EMA generator as a shippable fp16
file, loadable with ``core.load_generator(path)``). A resumed run draws the same samples as an
uninterrupted one: the measuring tools are set up on a forked RNG. :func:`compact_run` writes a
small copy of ``ckpt.pt`` to carry a run to another machine (``ganatomy train --compact-to``).
"""
from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from core import toyworld
from core.base.errors import CheckpointError, InputError
from core.base.validate import check_callable, check_choice, check_float, check_int
from core.models import load_features, load_generator, load_segmenter
from core.models.progan import ProGAN
from core.studies import evaluation
from core.training import gan
from core.training.loop import (
    GAN_SEED0,
    Timer,
    compact_checkpoint,
    expand_optimizer_state,
    hardware,
    run_snapshots,
    save_atomic,
    shipped_state,
)

__all__ = ["D_CHANNELS", "G_CHANNELS", "SNAPSHOTS", "VARIANTS", "check_planting", "check_suppress", "check_train",
           "compact_run", "train_gan"]

# Generator widths per resolution (4x4, 8x8, ...): 256 units at the 8x8 layers (the layers the
# paper dissects), narrower elsewhere so that a model is ~1.5M parameters (3 MB in fp16) and
# a 64x64 step at batch 16 takes ~1 s on one CPU core. D is narrower still: it is thrown away.
G_CHANNELS = {64: (128, 256, 64, 32, 16), 128: (128, 256, 128, 64, 32, 16)}
D_CHANNELS = {64: (128, 128, 64, 32, 16), 128: (128, 128, 64, 32, 16, 16)}
# EMA snapshots for the training-evolution study (steps), then every ``snapshot_every``.
SNAPSHOTS = (100, 250, 500, 1000, 2000)
VARIANTS = ("", "nostd", "nopn")     # base; D without minibatch stddev; G without pixel norm


def _ignore_stop_signals(worker_id):
    """DataLoader workers leave SIGTERM/Ctrl-C to the trainer, which finishes its step, saves and
    shuts them down; a worker killed first would crash the trainer before it saved."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _widths(name: str, value) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a list of layer widths, got {value!r:.60}", fix="e.g. (128, 256, 64, 32, 16)"
                         ) from None
    for c in out:
        check_int(name, c, 1, what="widths >= 1")
    return out


def check_train(scene, *, steps, res, batch, g_channels, d_channels, variant, lr, r1, r1_every, z_dim, seed, workers,
                fid_every, fid_n, swd_n, snapshot_every, ckpt_every):
    """Every option of :func:`train_gan`, checked before any work: (generator widths, discriminator widths)."""
    check_choice("scene", scene, toyworld.SCENES)
    check_choice("variant", variant, VARIANTS)
    check_int("steps", steps, 1)
    check_int("res", res, 8)
    check_int("batch", batch, 1)
    check_float("lr", lr, 0, lo_open=True)
    check_float("r1", r1, 0)
    check_int("r1_every", r1_every, 1)
    check_int("z_dim", z_dim, 1)
    check_int("seed", seed)
    check_int("workers", workers, 0)
    check_int("fid_every", fid_every, 0, what="a whole number of steps >= 0 (0: no training-time FID)")
    check_int("fid_n", fid_n, 2, what="a whole number of samples >= 2 (a covariance needs two)")
    check_int("swd_n", swd_n, 0)
    check_int("snapshot_every", snapshot_every, 1)
    check_int("ckpt_every", ckpt_every, 1)
    if swd_n > fid_n:
        raise InputError(f"swd_n ({swd_n}) must not exceed fid_n ({fid_n}): MS-SWD uses the first swd_n of the FID "
                         "samples", fix=f"lower swd_n to {fid_n} or less, or raise fid_n")
    if res not in G_CHANNELS and not (g_channels and d_channels):
        raise InputError(f"res {res} has no default widths", fix=f"give g_channels and d_channels, or use res "
                         f"{' or '.join(map(str, sorted(G_CHANNELS)))}")
    gch = _widths("g_channels", g_channels) if g_channels else G_CHANNELS[res]
    dch = _widths("d_channels", d_channels) if d_channels else D_CHANNELS[res]
    if 4 * 2 ** (len(gch) - 1) != res or len(dch) != len(gch):
        raise InputError(f"g_channels and d_channels need {(res // 4).bit_length()} widths each for res {res} "
                         f"(4x4 up to {res}x{res}), got {len(gch)} and {len(dch)}",
                         fix="give one width per resolution, e.g. 16,16,8,8 for res 32")
    return gch, dch


def train_gan(run: str | Path, scene: str, *, steps: int = 30_000, res: int = 64, batch: int = 16,
              g_channels=None, d_channels=None, variant: str = "", lr: float = 0.002, r1: float = 0.2,
              r1_every: int = 4, z_dim: int = 128, seed: int = 0, workers: int = 1, fid_every: int = 500,
              fid_n: int = 1000, swd_n: int = 500, snapshot_every: int = 1000, ckpt_every: int = 250,
              resume: bool = False, device=None, progress: Callable | None = None,
              note: Callable | None = None, omit=(), init=None, freeze: str | None = None,
              d_warmup: int = 0, suppress=(), suppress_weight: float = 0.0) -> dict:
    """Train a toyworld ProGAN on ``scene`` for ``steps`` steps into the folder ``run`` (see the
    module docs), or continue it from ``run/ckpt.pt`` with ``resume=True`` (a full or a compact
    checkpoint; ``lr``, ``r1`` and ``batch`` may change, the networks may not).

    Non-saturating loss with lazy R1 (``r1`` every ``r1_every`` steps), EMA generator, seeded by
    ``seed`` (the global torch RNG: the z samples are drawn from it) and real scenes from
    ``GAN_SEED0 + step``. Every ``fid_every`` steps (0: never): FID of ``fid_n`` EMA samples
    against 10,000 real scenes and MS-SWD of the first ``swd_n``. ``device``: default the first
    GPU, else the CPU (bf16 autocast and channels-last on a GPU). ``progress(step, steps, info)``
    after every step; ``note(text)`` for each message (resumed, FID, stopped). SIGTERM / Ctrl-C
    (in the main thread) finish the step, save and return.

    A planted omission (#34: a generator that never draws a concept the real scenes have):
    ``omit`` renders the real scenes without those concepts (``toyworld.render(..., omit=)``);
    ``init`` starts G and its EMA from a trained generator (a zoo name or a generator of the same
    widths) instead of random weights, with a fresh D; ``freeze`` keeps G's layers up to and
    including that one fixed (e.g. ``"layer4"``: the featuremap that an inverter into layer4
    reads is the init's, so its encoder serves the new generator); ``d_warmup`` steps train D
    alone first (a fresh D against a trained G). Training-time FID is refused with ``omit`` (its
    reference is the full world): give ``fid_every=0``. ``suppress`` (concepts) with
    ``suppress_weight`` w adds to G's loss w x the toyworld segmenter's mean probability of those
    concepts over the generated pixels (the segmenter is shared and never changed; gradients flow
    through it to G only): with a fresh D alone, 3,000 steps took town's clouds down by only ~30%
    (a fresh D hardly tells a cloud-free world from a trained G), so the omission is pushed directly.

    Returns ``{"run", "name", "start", "step", "images", "seconds", "checkpoint", "snapshots",
    "log", "config", "stopped"}``."""
    gch, dch = check_train(scene, steps=steps, res=res, batch=batch, g_channels=g_channels, d_channels=d_channels,
                           variant=variant, lr=lr, r1=r1, r1_every=r1_every, z_dim=z_dim, seed=seed, workers=workers,
                           fid_every=fid_every, fid_n=fid_n, swd_n=swd_n, snapshot_every=snapshot_every,
                           ckpt_every=ckpt_every)
    check_callable("progress", progress)
    check_callable("note", note)
    omit, freeze, d_warmup = check_planting(omit, init, freeze, d_warmup, fid_every)
    suppress, suppress_weight = check_suppress(suppress, suppress_weight)
    note = note or (lambda text: None)
    run = Path(run)
    name = scene + (f"_{variant}" if variant else "")
    (run / "snapshots").mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    config = {"g_channels": list(gch), "d_channels": list(dch), "z_dim": z_dim, "batch": batch, "res": res,
              "variant": variant}
    # the batch may change across resumes (a GPU takes larger ones); the log and the images
    # count say what each stretch used
    if omit or init is not None or freeze:      # only then: older runs' configs resume unchanged
        config.update({"omit": list(omit), "init": _init_name(init), "freeze": freeze, "d_warmup": d_warmup})
    if suppress:
        config.update({"suppress": list(suppress), "suppress_weight": suppress_weight})
    same_net = {k: v for k, v in config.items() if k != "batch"}
    G = ProGAN(z_dim, gch, pixelnorm=variant != "nopn").to(dev)
    if init is not None and not (resume and (run / "ckpt.pt").exists()):
        _load_init(G, init)
    frozen = _frozen_layers(G, freeze)
    for name_, p in G.named_parameters():
        p.requires_grad_(name_.split(".")[0] not in frozen)
    D = gan.Discriminator(dch, mbstd=variant != "nostd").to(dev)
    if dev.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    ema = gan.EMA(G)
    opt_g = torch.optim.Adam([p for p in G.parameters() if p.requires_grad], lr=lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
    start, spent, log, images = 0, 0.0, [], 0
    ck_path = run / "ckpt.pt"
    if resume and ck_path.exists():
        ck = torch.load(ck_path, map_location=dev, weights_only=True)
        old = json.loads(ck.get("config", "{}"))
        if old and {k: v for k, v in old.items() if k != "batch"} != same_net:
            raise InputError(f"{ck_path} was trained with {ck['config']}; resume with the same options "
                             f"(got {json.dumps(config)})", fix="give the run's options, or start afresh without "
                                                                 "resume (another folder)")
        G.load_state_dict(ck["G"])   # a compact checkpoint's fp16 weights are cast back to fp32
        D.load_state_dict(ck["D"])
        ema.model.load_state_dict(ck["G_ema"])
        opt_g.load_state_dict(expand_optimizer_state(ck["opt_g"]))
        opt_d.load_state_dict(expand_optimizer_state(ck["opt_d"]))
        start, spent, log = ck["step"], ck["seconds"], json.loads(ck["log"])
        images = ck.get("images", start * old.get("batch", batch))
        torch.set_rng_state(ck["rng"].cpu())   # map_location moved it to the training device
        if dev.type == "cuda" and "rng_cuda" in ck:
            torch.cuda.set_rng_state(ck["rng_cuda"].cpu())
        note(f"resumed {name} at step {start} ({images:,} real images seen)"
             + (" from a compact checkpoint" if ck.get("compact") else ""))
    # the options a (re)start ran with: lr and R1 may change across resumes, and the log says when
    log.append({"step": start, "start": {"lr": lr, "r1": r1, "r1_every": r1_every, "batch": batch,
                                         "hardware": hardware()}})
    timer = Timer(spent)
    if fid_every > 0:
        # building the feature network draws initial weights from the global RNG, which the z
        # samples come from: a resumed run would load it after restoring that RNG and drift from
        # an uninterrupted one, so the measuring tools are set up on a forked RNG
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            features = load_features("toyworld", device=dev)
            real = evaluation.scene_stats(features, scene, res, device=dev)
            real_patches = evaluation.real_patches(scene, swd_n, size=res) if swd_n else None

    def measure():
        """(FID, MS-SWD) of the EMA generator from one pass over the same samples."""
        if fid_every <= 0:
            return None, None
        q = evaluation.generator_quality(ema.model, features, real, real_patches, n=fid_n, seed=123, device=dev,
                                         n_swd=swd_n)
        return round(q["fid"], 3), None if q["ms_swd"] is None else round(q["ms_swd"]["avg"], 2)

    if suppress:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            seg = load_segmenter("toyworld", device=dev)
        suppress_idx = [seg.labels.index(c) for c in suppress]
    data = torch.utils.data.DataLoader(
        gan.RealScenes(scene, batch, res, GAN_SEED0, start=start, omit=omit), batch_size=None,
        num_workers=workers, prefetch_factor=4 if workers else None, persistent_workers=workers > 0,
        # its own generator: creating the iterator must not draw from the global RNG that the z
        # samples come from, or a resumed run would drift from an uninterrupted one
        generator=torch.Generator().manual_seed(seed), worker_init_fn=_ignore_stop_signals if workers else None)
    it = iter(data)
    amp = {"device_type": "cuda", "dtype": torch.bfloat16, "enabled": dev.type == "cuda"}

    def save_snapshot(step, fid, ms_swd=None):
        meta = {"scene": scene, "variant": variant or "base", "resolution": res, "steps": step, "fid": fid,
                "ms_swd": ms_swd, "ms_swd_samples": swd_n, "z_dim": z_dim, "pixelnorm": variant != "nopn",
                "minibatch_stddev": variant != "nostd", "train_seconds": round(timer.elapsed(), 1),
                "hardware": hardware(), "loss": f"non-saturating + R1 (gamma {r1:g})", "batch": batch, "lr": lr,
                "fid_samples": fid_n, "g_channels": list(gch), "images": images,
                **({"omit": list(omit), "init": _init_name(init), "freeze": freeze, "d_warmup": d_warmup}
                   if "omit" in config else {})}
        save_atomic({"state_dict": shipped_state(ema.model), "meta": meta}, run / "snapshots" / f"step-{step}.pt")

    stop = {"now": False}
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        def request_stop(signum, frame):   # SIGTERM / Ctrl-C: finish this step, save, return
            stop["now"] = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, request_stop)
    done = start
    try:
        for step in range(start, steps):
            reals = next(it).to(dev, non_blocking=True)
            if dev.type == "cuda":
                reals = reals.contiguous(memory_format=torch.channels_last)
            z = torch.randn(batch, z_dim, device=dev)
            # discriminator
            with torch.autocast(**amp):
                fakes = G(z).detach()
                ld = gan.d_loss(D(reals).float(), D(fakes).float())
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            if step % r1_every == 0:
                r1_pen = gan.r1_penalty(D, reals.float())
                (0.5 * r1 * r1_every * r1_pen).backward()
            opt_d.step()
            # generator (after the discriminator's warm-up)
            z = torch.randn(batch, z_dim, device=dev)
            with torch.autocast(**amp):
                fakes = G(z)
                lg = gan.g_loss(D(fakes).float())
                if suppress:
                    lg = lg + suppress_weight * seg.logits(fakes).float().softmax(1)[:, suppress_idx].sum(1).mean()
            if step >= d_warmup:
                opt_g.zero_grad(set_to_none=True)
                lg.backward()
                opt_g.step()
                ema.update(G, beta=min(0.999, (1 + step - d_warmup) / (10 + step - d_warmup)))
            images += batch
            info = {}
            if step % 50 == 0:
                info = {"d": round(ld.item(), 4), "g": round(lg.item(), 4)}
                log.append({"step": step, **info, "seconds": round(timer.elapsed(), 1)})
            done = step + 1
            fid = ms = None
            last = done == steps or stop["now"]
            if fid_every > 0 and (done % fid_every == 0 or last or done == 1):
                fid, ms = measure()
                log.append({"step": done, "fid": fid, "ms_swd": ms, "seconds": round(timer.elapsed(), 1)})
                note(f"step {done}: FID {fid}, MS-SWD {ms}")
            if done % snapshot_every == 0 or last or done in SNAPSHOTS:
                if fid is None:
                    fid, ms = measure()
                save_snapshot(done, fid, ms)
            if done % ckpt_every == 0 or last:
                save_atomic({"G": G.state_dict(), "D": D.state_dict(), "G_ema": ema.model.state_dict(),
                             "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": done,
                             "seconds": timer.elapsed(), "log": json.dumps(log), "rng": torch.get_rng_state(),
                             "config": json.dumps(config), "images": images,
                             **({"rng_cuda": torch.cuda.get_rng_state()} if dev.type == "cuda" else {})}, ck_path)
                (run / "log.json").write_text(json.dumps(log))
            if progress:
                progress(done, steps, info)
            if stop["now"]:
                note(f"stopped at step {done}: snapshot and checkpoint saved; resume to continue")
                break
        if not (run / "snapshots" / f"step-{done}.pt").exists():   # e.g. resumed at the final step
            save_snapshot(done, *measure())
    finally:
        for sig, old_handler in handlers.items():
            signal.signal(sig, old_handler)
        del it, data                 # shuts the loader's workers down
    return {"run": str(run), "name": name, "start": start, "step": done, "images": images,
            "seconds": round(timer.elapsed(), 1), "checkpoint": str(ck_path),
            "snapshots": [{"step": s, "path": str(p)} for s, p in run_snapshots(run)], "log": log,
            "config": config, "stopped": stop["now"]}


def check_planting(omit, init, freeze, d_warmup, fid_every):
    """(omit as a sorted tuple of concept names, freeze, d_warmup), checked before any work."""
    if isinstance(omit, str):
        omit = (omit,)
    toyworld._check_omit(omit)                      # unknown concepts: one refusal naming them
    omit = tuple(sorted(set(omit)))
    if omit and fid_every > 0:
        raise InputError("omit: training-time FID measures against the full world, not the one without "
                         f"{', '.join(omit)}", fix="give fid_every=0 (--fid-every 0) with omit")
    if init is not None and not isinstance(init, (str, Path, torch.nn.Module)):
        raise InputError(f"init must be a generator's name or a generator, got {type(init).__name__}",
                         fix="e.g. init='toyworld/town'")
    if freeze is not None and (not isinstance(freeze, str) or not freeze.startswith("layer")):
        raise InputError(f"freeze must be a generator layer name such as 'layer4', got {freeze!r:.40}",
                         fix="give freeze='layer4' (that layer and the ones before it stay fixed)")
    if freeze is not None and init is None:
        raise InputError("freeze without init would keep random layers fixed", fix="give init= a trained generator")
    d_warmup = check_int("d_warmup", d_warmup, 0)
    return omit, freeze, d_warmup


def check_suppress(suppress, weight) -> tuple[tuple[str, ...], float]:
    if isinstance(suppress, str):
        suppress = (suppress,)
    toyworld._check_omit(suppress)                  # toyworld's concepts, as the segmenter labels them
    suppress = tuple(sorted(set(suppress)))
    weight = check_float("suppress_weight", weight, 0)
    if suppress and weight == 0:
        raise InputError("suppress needs a suppress_weight > 0", fix="e.g. suppress_weight=20")
    return suppress, weight


def _init_name(init) -> str | None:
    if init is None or isinstance(init, (str, Path)):
        return None if init is None else str(init)
    return str(getattr(init, "source", None) or type(init).__name__)


def _load_init(G, init) -> None:
    """G's weights from ``init`` (a zoo name, a snapshot path or a generator), refused when the
    widths differ."""
    if isinstance(init, (str, Path)):
        init = load_generator(str(init), device="cpu")
    state = {k: v.float() for k, v in init.state_dict().items()}
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(f"init: its layers do not match the run's generator ({str(e)[:200]})",
                         fix="give the run the init's widths (--g-channels) and z size (--z-dim)") from None


def _frozen_layers(G, freeze: str | None) -> set[str]:
    """The names of G's top-level layers up to and including ``freeze``."""
    if freeze is None:
        return set()
    names = [n for n, _ in G.named_children()]
    if freeze not in names:
        raise InputError(f"freeze: the generator has no layer {freeze!r}; its layers: {', '.join(names)}",
                         fix="give freeze= one of them, e.g. 'layer4'")
    return set(names[:names.index(freeze) + 1])


def compact_run(run: str | Path, dest: str | Path) -> dict:
    """Write a compact copy of the run folder ``run``'s ``ckpt.pt`` to ``dest`` (~15 MB instead of
    ~35, to carry the run to another machine: :func:`core.training.loop.compact_checkpoint`); copied
    back as ``run/ckpt.pt``, it resumes (``resume=True``; the batch may change there).

    Returns ``{"run", "checkpoint", "compact", "step", "bytes"}``."""
    ck_path = Path(run) / "ckpt.pt"
    if not ck_path.is_file():
        raise InputError(f"{ck_path} does not exist: nothing to compact", fix="give the folder of a run "
                         "(the --out it was trained with)")
    try:
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    except Exception as e:   # a torn or foreign file: what torch says, as one refusal
        raise CheckpointError(f"{ck_path} is not a readable training checkpoint ({type(e).__name__}: {e})"[:400],
                              fix="give the folder of a run (the --out it was trained with)") from None
    if not isinstance(ck, dict) or not {"G", "D", "G_ema", "opt_g", "opt_d", "step"} <= set(ck):
        raise CheckpointError(f"{ck_path} is not a GAN training checkpoint (no G, D, G_ema, optimisers, step)",
                              fix="give the folder of a run of `ganatomy train`")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(compact_checkpoint(ck), dest)
    return {"run": str(run), "checkpoint": str(ck_path), "compact": str(dest), "step": ck["step"],
            "bytes": dest.stat().st_size}

"""Shared helpers for the training scripts (seeded data, atomic resumable checkpoints)."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core import toyworld
from core.base.cache import atomic_path
from core.base.errors import InputError

__all__ = ["mixed_batch", "robustness_augment", "save_atomic", "run_snapshots", "hardware", "shipped_state",
           "Timer", "resume", "checkpoint", "compact_checkpoint", "expand_optimizer_state", "EVAL_SEED_MAX",
           "SEGMENTER_SEED0", "FEATURES_SEED0", "GAN_SEED0"]

# Seed ranges, kept disjoint so that evaluation never sees training scenes:
#   0 .. 999          evaluation and tests (held out)
#   1_000_000 + step  segmenter training
#   2_000_000 + step  feature-network training
#   3_000_000 + step  GAN training (real scenes)
EVAL_SEED_MAX = 999
SEGMENTER_SEED0 = 1_000_000
FEATURES_SEED0 = 2_000_000
GAN_SEED0 = 3_000_000


def mixed_batch(step: int, per_scene: int, seed0: int, size: int = 128):
    """Images, labels and scene ids for one step: ``per_scene`` scenes of every type."""
    ims, lbs, sc = [], [], []
    for i, scene in enumerate(toyworld.SCENES):
        im, lb = toyworld.render(scene, per_scene, seed=seed0 + step, size=size)
        ims.append(im)
        lbs.append(lb)
        sc.append(torch.full((per_scene,), i, dtype=torch.long, device="cpu"))     # beside the CPU-rendered scenes
    return torch.cat(ims), torch.cat(lbs), torch.cat(sc)


def robustness_augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur (down-up), noise and contrast jitter, so a segmenter copes with GAN outputs."""
    n = images.shape[0]
    out = images.clone()
    r = torch.rand(n, 4, generator=gen, device=gen.device).to(images.device)
    blur = r[:, 0] < 0.3
    if blur.any():
        small = F.interpolate(out[blur], scale_factor=0.5, mode="bilinear", antialias=True,
                              align_corners=False)
        out[blur] = F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)
    noisy = (r[:, 1] < 0.3).float().view(n, 1, 1, 1) * r[:, 2].view(n, 1, 1, 1) * 0.08
    out = out + noisy * torch.randn(out.shape, generator=gen, device=gen.device).to(out.device)
    gain = 1.0 + (r[:, 3].view(n, 1, 1, 1) - 0.5) * 0.2
    return (out * gain).clamp(-1, 1)


def save_atomic(obj, path: str | os.PathLike):
    """torch.save to a temporary file, then rename: a killed run never leaves a broken file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def run_snapshots(run: str | os.PathLike) -> list[tuple[int, Path]]:
    """The shippable snapshots of a GAN training run (``<run>/snapshots/step-N.pt``) as
    ``(step, path)``, earliest first; names that are not ``step-<int>.pt`` are skipped."""
    out = []
    for p in (Path(run) / "snapshots").glob("step-*.pt"):
        try:
            out.append((int(p.stem[5:]), p))
        except ValueError:
            pass
    return sorted(out)


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def shipped_state(model: torch.nn.Module) -> dict:
    """fp16 CPU copy of a state dict (integer buffers kept as they are): a snapshot taken on a GPU
    must load on a machine without one."""
    return {k: (v.half() if v.is_floating_point() else v).detach().cpu().clone()
            for k, v in model.state_dict().items()}


class Timer:
    def __init__(self, already: float = 0.0):
        self.t0 = time.time() - already

    def elapsed(self) -> float:
        return time.time() - self.t0


def resume(path, model, opt, sched, total_steps: int) -> tuple[int, float]:
    """Restore a run saved by :func:`checkpoint`; returns (step, seconds spent so far).
    The learning-rate schedule is fixed by the run's total, so it must not change."""
    ck = torch.load(path, weights_only=True)
    if ck.get("total_steps", total_steps) != total_steps:
        raise SystemExit(f"{path} belongs to a run of --steps {ck['total_steps']}; resume it with "
                         f"that value, or start afresh without --resume (got --steps {total_steps})")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])
    print(f"resumed at step {ck['step']}")
    return ck["step"], ck["seconds"]


def checkpoint(path, model, opt, sched, step: int, seconds: float, total_steps: int) -> None:
    save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "step": step, "seconds": seconds, "total_steps": total_steps}, path)


def compact_checkpoint(ck: dict) -> dict:
    """A GAN training checkpoint small enough to carry between machines (~15 MB instead of ~35):
    the EMA generator stays fp32 (it is what ships), G and D become fp16, and of the Adam state
    only the second moment is kept (bf16: its values span many decades). Adam's first moment is
    dropped, which is exact only for beta1 = 0 (this project's GANs): then it is overwritten by
    the next gradient before it is read. A run resumed from a compact checkpoint continues from
    weights rounded to fp16, so it is not bit-identical to an uninterrupted one."""
    if ck.get("compact"):
        return ck
    out = {k: v for k, v in ck.items() if k not in ("G", "D", "opt_g", "opt_d")}
    out["compact"] = True
    for part in ("G", "D"):
        out[part] = {k: v.half() if v.is_floating_point() else v for k, v in ck[part].items()}
    for part in ("opt_g", "opt_d"):
        opt = ck[part]
        if any(g["betas"][0] != 0 for g in opt["param_groups"]):
            raise InputError(f"{part}: Adam beta1 is not 0, so its first moment matters; keep the full checkpoint")
        out[part] = {"param_groups": opt["param_groups"],
                     "state": {i: {"step": s["step"], "exp_avg_sq": s["exp_avg_sq"].bfloat16()}
                               for i, s in opt["state"].items()}}
    return out


def expand_optimizer_state(state: dict) -> dict:
    """An Adam state dict from a compact checkpoint's (see :func:`compact_checkpoint`); a full
    one is returned as it is."""
    out = {"param_groups": state["param_groups"], "state": {}}
    for i, s in state["state"].items():
        sq = s["exp_avg_sq"].float()
        out["state"][i] = {"step": s["step"], "exp_avg": s.get("exp_avg", torch.zeros_like(sq)).float(),
                           "exp_avg_sq": sq}
    return out

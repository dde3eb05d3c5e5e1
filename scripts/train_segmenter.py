"""Train the toyworld segmenter (seeded, resumable, progress bar).

    python scripts/train_segmenter.py --steps 1400 --batch 24
    python scripts/train_segmenter.py --steps 1400 --batch 24 --resume   # continue a killed run

Writes a resumable checkpoint to cache/train/segmenter/ every --ckpt-every steps and the
shipped fp16 weights to core/weights/segmenter_toyworld.pt at the end.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core import toyworld, training
from core.base.checkpoints import load_checkpoint, load_state_into
from core.models import toynets as nets


def class_weights(n_per_scene=128):
    _, lb, _ = training.mixed_batch(0, n_per_scene, seed0=training.SEGMENTER_SEED0 - 10_000)
    freq = torch.bincount(lb.flatten(), minlength=len(toyworld.LABELS)).float()
    freq = freq / freq.sum()
    w = (freq + 1e-3).pow(-0.35)
    w[0] = 0.0
    return w / w[1:].mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=24, help="scenes per step (split over scene types)")
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ckpt", default="cache/train/segmenter/ckpt.pt")
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--out", default="core/weights/segmenter_toyworld.pt")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", default="", help="start from these shipped weights (fine-tuning); "
                    "uses a cosine learning-rate decay instead of one-cycle")
    ap.add_argument("--seed-offset", type=int, default=0, help="shift the data seeds (fresh scenes)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = nets.ToySegmenter()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    if a.init:
        load_state_into(model, load_checkpoint(a.init)["state_dict"], a.init)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.steps)
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    weights = class_weights()
    start, spent = 0, 0.0
    if a.resume and Path(a.ckpt).exists():
        start, spent = training.resume(a.ckpt, model, opt, sched, a.steps)
    timer = training.Timer(spent)
    per = max(1, a.batch // len(toyworld.SCENES))
    model.train()
    bar = tqdm(range(start, a.steps), initial=start, total=a.steps, desc="segmenter")
    for step in bar:
        images, labels, _ = training.mixed_batch(step, per, training.SEGMENTER_SEED0 + a.seed_offset)
        gen = torch.Generator().manual_seed(a.seed * 1_000_003 + step)
        images = training.robustness_augment(images, gen)
        loss = F.cross_entropy(model(images), labels, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % a.ckpt_every == 0 or step + 1 == a.steps:
            training.checkpoint(a.ckpt, model, opt, sched, step + 1, timer.elapsed(), a.steps)
    prev = {}
    if a.init:
        prev = load_checkpoint(a.init).get("meta", {})
    meta = {"steps": a.steps + prev.get("steps", 0), "finetune_of": prev or None,
            "batch": per * len(toyworld.SCENES), "seed": a.seed,
            "train_seconds": round(timer.elapsed() + prev.get("train_seconds", 0), 1),
            "hardware": training.hardware(),
            "labels": list(toyworld.LABELS)}
    training.save_atomic({"state_dict": training.shipped_state(model), "meta": meta}, a.out)
    print(f"wrote {a.out}: {meta}")


if __name__ == "__main__":
    main()

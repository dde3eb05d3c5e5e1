"""Train the toyworld FID feature network (seeded, resumable, progress bar).

    python scripts/train_features.py --steps 1200 --batch 48
    python scripts/train_features.py --steps 1200 --batch 48 --resume

Targets per image: scene type (cross-entropy), presence of each concept (binary
cross-entropy) and the fraction of pixels each concept covers (regression on the square
root). No image augmentation: the features should notice blur, noise and colour shifts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from core import toyworld, training
from core.models import toynets as nets


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ckpt", default="cache/train/features/ckpt.pt")
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--out", default="core/weights/features_toyworld.pt")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = nets.ToyFeatures()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    start, spent = 0, 0.0
    if a.resume and Path(a.ckpt).exists():
        start, spent = training.resume(a.ckpt, model, opt, sched, a.steps)
    timer = training.Timer(spent)
    per = max(1, a.batch // len(toyworld.SCENES))
    model.train()
    bar = tqdm(range(start, a.steps), initial=start, total=a.steps, desc="features")
    for step in bar:
        images, labels, scene = training.mixed_batch(step, per, training.FEATURES_SEED0)
        loss = model.training_loss(images, labels, scene)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % a.ckpt_every == 0 or step + 1 == a.steps:
            training.checkpoint(a.ckpt, model, opt, sched, step + 1, timer.elapsed(), a.steps)
    meta = {"steps": a.steps, "batch": per * len(toyworld.SCENES), "seed": a.seed, "dim": model.dim,
            "train_seconds": round(timer.elapsed(), 1), "hardware": training.hardware()}
    training.save_atomic({"state_dict": training.shipped_state(model), "meta": meta}, a.out)
    print(f"wrote {a.out}: {meta}")


if __name__ == "__main__":
    main()

"""Copy trained GAN snapshots into the shipped zoo (core/weights/gans) with model cards.

    python scripts/ship_gans.py                 # every run under cache/train/gan_* (ganatomy train --out)
    python scripts/ship_gans.py --series town   # + the town checkpoint series (town@step-N)
    python scripts/ship_gans.py --runs room --at room=9000   # a chosen snapshot, not the latest
    python scripts/ship_gans.py --runs town --at town=10000 --series-steps town=100,250,500,1000,2500,5000

The latest snapshot of each run becomes ``toyworld/<scene>[-<variant>]``; with ``--series``,
up to ``--max-series`` earlier snapshots (spread from early to late) become
``toyworld/<name>@step-N``. Weights stay fp16; the card (``<name>.json``) holds the data,
resolution, steps, training-time FID, training time and hardware. Refuses to exceed the zoo
budget (all of core/weights, segmenter and feature network included; the shipped results in
core/weights/results have their own, in scripts/ship_results.py).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from core.models.zoo import GAN_DIR, WEIGHTS, images_seen
from core.toyworld import SCENES
from core.training import run_snapshots

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("nostd", "nopn")

BUDGET_MB = 45.0


def spread(steps: list[int], k: int) -> list[int]:
    """Up to k steps from early to late, roughly evenly on a log scale (first always kept)."""
    if len(steps) <= k:
        return steps
    import numpy as np
    want = np.geomspace(steps[0], steps[-1], k)
    pick = []
    for w in want:
        s = min((s for s in steps if s not in pick), key=lambda s: abs(np.log(s / w)))
        pick.append(s)
    return sorted(pick)


def stretches(log: list[dict], upto: int) -> list[dict]:
    """The stretches of a run up to step ``upto``, one per (re)start the training log recorded:
    where each began and its lr, R1 weight, batch and hardware (a run may move from a CPU to a
    GPU and change its batch on the way)."""
    out = []
    for e in log:
        if "start" in e and e["step"] < upto:
            if out and out[-1]["from_step"] == e["step"]:   # restarted at once: the later options held
                out.pop()
            same = ("lr", "r1", "r1_every", "batch", "hardware")
            if out and all(out[-1].get(k) == e["start"].get(k) for k in same):
                continue                                     # resumed with the same options
            out.append({"from_step": e["step"], **e["start"]})
    for a, b in zip(out, out[1:] + [None]):
        a["to_step"] = b["from_step"] if b else upto
    return out


def card_for(meta: dict, name: str, log: list[dict] | None = None) -> dict:
    runs = stretches(log or [], meta["steps"])
    # within one stretch the snapshot's own record is the precise one; across several, each
    # stretch's machine in order
    hardware = list(dict.fromkeys(r["hardware"] for r in runs)) if len(runs) > 1 else [meta.get("hardware")]
    return {
        "name": name,
        "data": f"toyworld '{meta['scene']}' scenes rendered at {meta['resolution']}x{meta['resolution']} "
                f"(seeds 3,000,000 + step)",
        "scene": meta["scene"], "variant": meta.get("variant", "base"),
        "resolution": meta["resolution"], "steps": meta["steps"], "batch": meta.get("batch"),
        "fid": meta.get("fid"), "fid_note": f"training-time FID, {meta.get('fid_samples', 2000)} EMA samples vs "
                                            "10,000 real scenes, toyworld feature space",
        **({"ms_swd": meta["ms_swd"], "ms_swd_note": f"training-time MS-SWD x 1e3 (core/engine/swd.py), "
                                                   f"{meta.get('ms_swd_samples')} EMA samples vs as many real scenes"}
           if meta.get("ms_swd") is not None else {}),
        # real images seen: steps x batch, summed over stretches of different batch sizes
        "images": images_seen(meta) or meta["steps"] * 16,   # snapshots older than the count: batch 16
        "train_seconds": meta.get("train_seconds"), "hardware": " + ".join(h for h in hardware if h) or None,
        **({"stretches": runs} if runs else {}),
        "loss": meta.get("loss"), "pixelnorm": meta.get("pixelnorm"),
        "minibatch_stddev": meta.get("minibatch_stddev"), "z_dim": meta.get("z_dim"),
        "g_channels": meta.get("g_channels"),
    }


def ship(src: Path, name: str, gan_dir: Path = GAN_DIR) -> Path:
    ck = torch.load(src, map_location="cpu", weights_only=True)
    dst = gan_dir / f"{name}.pt"
    gan_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    card_path = dst.with_suffix(".json")
    log_path = src.parent.parent / "log.json"   # <run>/snapshots/step-N.pt -> <run>/log.json
    log = json.loads(log_path.read_text()) if log_path.exists() else None
    card = card_for(ck["meta"], "toyworld/" + name, log)
    if card_path.exists():   # keep evaluation results written by report_gans.py for the same weights
        old = json.loads(card_path.read_text())
        if old.get("steps") == card["steps"]:
            card.update({k: v for k, v in old.items() if k.startswith(("eval_", "series_", "history"))})
    card_path.write_text(json.dumps(card, indent=1))
    return dst


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", nargs="*", default=["town"], help="runs that also ship a checkpoint series")
    ap.add_argument("--max-series", type=int, default=7)
    ap.add_argument("--runs", nargs="*", default=None, help="run names (default: all under cache/train)")
    ap.add_argument("--at", nargs="*", default=[], metavar="NAME=STEP",
                    help="ship this snapshot step as the final model instead of the latest (e.g. room=9000)")
    ap.add_argument("--series-steps", nargs="*", default=[], metavar="NAME=S1,S2,...",
                    help="ship exactly these snapshot steps as the series instead of a spread (reusing "
                         "snapshots shipped before keeps the repository small: git stores a file once)")
    ap.add_argument("--train-dir", type=Path, default=ROOT / "cache" / "train", help="where the gan_* runs are")
    ap.add_argument("--gan-dir", type=Path, default=GAN_DIR, help="where shipped generators go")
    a = ap.parse_args(argv)
    at, series_steps = {}, {}
    for item in a.at:
        name, _, step = item.partition("=")
        if not step.isdigit():
            raise SystemExit(f"--at takes NAME=STEP (e.g. room=9000); got {item!r}")
        at[name] = int(step)
    for item in a.series_steps:
        name, _, steps = item.partition("=")
        try:
            series_steps[name] = sorted({int(s) for s in steps.split(",")})
        except ValueError:
            raise SystemExit(f"--series-steps takes NAME=S1,S2,... (e.g. town=100,500,2500); got {item!r}") from None
    valid = set(SCENES) | {f"{s}-{v}" for s in SCENES for v in VARIANTS}
    runs = sorted(a.train_dir.glob("gan_*"))
    shipped = []
    for run in runs:
        name = run.name[4:].replace("_", "-")
        if a.runs is not None and name not in a.runs:
            continue
        if name not in valid:      # e.g. a diverged run kept aside for the record
            print(f"skip {run.name}: not a model name (<scene> or <scene>-<variant>)")
            continue
        snaps = run_snapshots(run)
        if name in at:
            if at[name] not in dict(snaps):
                raise SystemExit(f"{run}/snapshots has no step-{at[name]}.pt; steps: {[s for s, _ in snaps]}")
            snaps = [(s, p) for s, p in snaps if s <= at[name]]
        if not snaps:
            print(f"skip {name}: no snapshots yet")
            continue
        final_step, final = snaps[-1]
        if name in series_steps:        # checked before anything shipped is touched
            missing = [s for s in series_steps[name] if s not in dict(snaps[:-1])]
            if missing:
                raise SystemExit(f"--series-steps {name}: no snapshot before the final step {final_step} for "
                                 f"{missing}; steps: {[s for s, _ in snaps[:-1]]}")
        chosen = []
        if name in a.series or name in series_steps:
            chosen = series_steps.get(name) or spread([s for s, _ in snaps[:-1]], a.max_series - 1)
        keep = {f"{name}@step-{step}" for step in chosen}
        for old in a.gan_dir.glob(f"{name}@step-*.*"):    # series members no longer chosen
            if old.stem not in keep:
                old.unlink()
        shipped.append(ship(final, name, a.gan_dir))
        for step in chosen:                             # a re-shipped member keeps its evaluation
            shipped.append(ship(dict(snaps)[step], f"{name}@step-{step}", a.gan_dir))
    results = WEIGHTS / "results"            # the shipped results: their own budget (scripts/ship_results.py)
    files = [p for p in WEIGHTS.rglob("*") if p.is_file() and GAN_DIR not in p.parents and results not in p.parents]
    total = sum(p.stat().st_size for p in files + [p for p in a.gan_dir.rglob("*") if p.is_file()]) / 2 ** 20
    for p in shipped:
        print(f"shipped {p} ({p.stat().st_size / 2 ** 20:.1f} MB)")
    print(f"zoo total (core/weights): {total:.1f} MB of {BUDGET_MB} MB")
    if total > BUDGET_MB:
        raise SystemExit(f"the zoo is {total:.1f} MB, over the {BUDGET_MB} MB budget: ship fewer snapshots "
                         f"(--max-series) or narrower generators")


if __name__ == "__main__":
    main()

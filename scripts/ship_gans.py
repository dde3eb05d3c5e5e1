"""Copy trained GAN snapshots into the shipped zoo (core/weights/gans) with model cards.

    python scripts/ship_gans.py                 # every run under cache/train/gan_*
    python scripts/ship_gans.py --series town   # + the town checkpoint series (town@step-N)
    python scripts/ship_gans.py --runs room --at room=9000   # a chosen snapshot, not the latest

The latest snapshot of each run becomes ``toyworld/<scene>[-<variant>]``; with ``--series``,
up to ``--max-series`` earlier snapshots (spread from early to late) become
``toyworld/<name>@step-N``. Weights stay fp16; the card (``<name>.json``) holds the data,
resolution, steps, training-time FID, training time and hardware. Refuses to exceed the zoo
budget (all of core/weights, segmenter and feature network included).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.toyworld import SCENES  # noqa: E402
from core.zoo import GAN_DIR, WEIGHTS  # noqa: E402

VARIANTS = ("nostd", "nopn")

BUDGET_MB = 45.0


def snapshots(run: Path) -> list[tuple[int, Path]]:
    out = []
    for p in (run / "snapshots").glob("step-*.pt"):
        try:
            out.append((int(p.stem[5:]), p))
        except ValueError:
            pass
    return sorted(out)


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


def card_for(meta: dict, name: str) -> dict:
    return {
        "name": name,
        "data": f"toyworld '{meta['scene']}' scenes rendered at {meta['resolution']}x{meta['resolution']} "
                f"(seeds 3,000,000 + step)",
        "scene": meta["scene"], "variant": meta.get("variant", "base"),
        "resolution": meta["resolution"], "steps": meta["steps"], "batch": meta.get("batch"),
        "fid": meta.get("fid"), "fid_note": f"training-time FID, {meta.get('fid_samples', 2000)} EMA samples vs "
                                            "10,000 real scenes, toyworld feature space",
        "ms_swd": meta.get("ms_swd"), "ms_swd_note": f"training-time MS-SWD x 1e3 (core/swd.py), "
                                                     f"{meta.get('ms_swd_samples')} EMA samples vs as many real scenes",
        "train_seconds": meta.get("train_seconds"), "hardware": meta.get("hardware"),
        "loss": meta.get("loss"), "pixelnorm": meta.get("pixelnorm"),
        "minibatch_stddev": meta.get("minibatch_stddev"), "z_dim": meta.get("z_dim"),
        "g_channels": meta.get("g_channels"),
    }


def ship(src: Path, name: str) -> Path:
    ck = torch.load(src, map_location="cpu", weights_only=True)
    dst = GAN_DIR / f"{name}.pt"
    GAN_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    card_path = dst.with_suffix(".json")
    card = card_for(ck["meta"], "toyworld/" + name)
    if card_path.exists():   # keep evaluation results written by report_gans.py for the same weights
        old = json.loads(card_path.read_text())
        if old.get("steps") == card["steps"]:
            card.update({k: v for k, v in old.items() if k.startswith(("eval_", "series_", "history"))})
    card_path.write_text(json.dumps(card, indent=1))
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", nargs="*", default=["town"], help="runs that also ship a checkpoint series")
    ap.add_argument("--max-series", type=int, default=7)
    ap.add_argument("--runs", nargs="*", default=None, help="run names (default: all under cache/train)")
    ap.add_argument("--at", nargs="*", default=[], metavar="NAME=STEP",
                    help="ship this snapshot step as the final model instead of the latest (e.g. room=9000)")
    a = ap.parse_args()
    at = {}
    for item in a.at:
        name, _, step = item.partition("=")
        if not step.isdigit():
            raise SystemExit(f"--at takes NAME=STEP (e.g. room=9000); got {item!r}")
        at[name] = int(step)
    valid = set(SCENES) | {f"{s}-{v}" for s in SCENES for v in VARIANTS}
    runs = sorted((ROOT / "cache" / "train").glob("gan_*"))
    shipped = []
    for run in runs:
        name = run.name[4:].replace("_", "-")
        if a.runs is not None and name not in a.runs:
            continue
        if name not in valid:      # e.g. a diverged run kept aside for the record
            print(f"skip {run.name}: not a model name (<scene> or <scene>-<variant>)")
            continue
        snaps = snapshots(run)
        if name in at:
            if at[name] not in dict(snaps):
                raise SystemExit(f"{run}/snapshots has no step-{at[name]}.pt; steps: {[s for s, _ in snaps]}")
            snaps = [(s, p) for s, p in snaps if s <= at[name]]
        if not snaps:
            print(f"skip {name}: no snapshots yet")
            continue
        for old in GAN_DIR.glob(f"{name}@step-*.*"):
            old.unlink()
        final_step, final = snaps[-1]
        shipped.append(ship(final, name))
        if name in a.series:
            for step in spread([s for s, _ in snaps[:-1]], a.max_series - 1):
                shipped.append(ship(dict(snaps)[step], f"{name}@step-{step}"))
    total = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file()) / 2 ** 20
    for p in shipped:
        print(f"shipped {p.relative_to(ROOT)} ({p.stat().st_size / 2 ** 20:.1f} MB)")
    print(f"zoo total (core/weights): {total:.1f} MB of {BUDGET_MB} MB")
    if total > BUDGET_MB:
        raise SystemExit(f"the zoo is {total:.1f} MB, over the {BUDGET_MB} MB budget: ship fewer snapshots "
                         f"(--max-series) or narrower generators")


if __name__ == "__main__":
    main()

"""A planted omission found by the statistics and by layer inversion (#34); writes
docs/reports/planted_omission.json.

    python -m core train --scene town --omit cloud --init toyworld/town --freeze layer4 --d-warmup 300 \\
        --steps 4000 --batch-size 32 --fid-every 0 --lr 0.001 --r1 1 --out cache/runs/town-nocloud
    python scripts/report_planted_omission.py --model cache/runs/town-nocloud/snapshots/step-4000.pt \\
        --concept cloud --samples 2000 --seeds 1 2 3 --invert-n 100 --invert-steps 100

The planted generator is the shipped town generator fine-tuned (its layers after layer4 only, a fresh
discriminator) on the world without ``--concept`` (``toyworld.render(..., omit=)``): a generator that
never draws the concept while every real scene may have it. Two measurements against the real world
(with the concept):

1. segmentation statistics (``toyworld_omissions``), ``--samples`` a side for each generated seed of
   ``--seeds`` (the real side and its floor fixed), for the planted and the unedited generator: the
   concept's rank among the classes by relative change, its change, FSD and its ratio to the floor;
2. layer inversion of ``--invert-n`` held-out real scenes through both generators with the one shipped
   town inverter (layers 1-4 are frozen, so layer4's featuremaps mean the same in both): per class, the
   recall of the real exact pixels, and which classes the planted generator's reconstructions lose.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import core
from core.base import provenance
from core.engine.omissions import MIN_AREA, OMITTED_BELOW
from core.studies.inversion import encoder_for, reconstruction_recall
from core.studies.omissions import toyworld_omissions

ROOT = Path(__file__).resolve().parents[1]


def statistics(G, seg, scene: str, concept: str, n: int, seed: int) -> dict:
    t0 = time.perf_counter()
    res = toyworld_omissions(G, seg, scene, n, seed=seed)
    t = res.table()
    judged = t[t.real_area >= MIN_AREA].sort_values("relative_change").reset_index(drop=True)
    rank = int(judged.index[judged.label == concept][0]) + 1 if (judged.label == concept).any() else None
    row = t[t.label == concept].iloc[0]
    s = res.summary()
    return {"seed": seed, "concept_rank": rank, "concept_change": float(row.relative_change),
            "concept_real_area": float(row.real_area), "concept_generated_area": float(row.generated_area),
            "concept_floor_change": float(row.floor_change),
            "fsd": s["fsd"], "floor": s["floor"], "fsd_over_floor": s["fsd"]["fsd"] / s["floor"]["fsd"],
            "omitted": s["omitted"],
            "next": [{"label": r.label, "change": float(r.relative_change)} for r in judged.head(4).itertuples()
                     if r.label != concept][:3],
            "seconds": round(time.perf_counter() - t0, 1)}


def interval(values) -> dict:
    v = np.asarray(values, float)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": [float(v.mean() - half), float(v.mean() + half)],
            "min": float(v.min()), "max": float(v.max())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the planted generator (a snapshot of the fine-tuning run)")
    ap.add_argument("--base", default="toyworld/town", help="the unedited generator it was fine-tuned from")
    ap.add_argument("--scene", default="town")
    ap.add_argument("--concept", default="cloud")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="generated seeds of the statistics")
    ap.add_argument("--invert-n", type=int, default=100, help="real scenes inverted (0: no inversion)")
    ap.add_argument("--invert-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "planted_omission.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    started = provenance.stamp()
    seg, feats = core.load_segmenter("toyworld"), core.load_features("toyworld")
    planted, base = core.load_generator(a.model), core.load_generator(a.base)
    frozen = [k for k, v in planted.state_dict().items()
              if torch.equal(v.float(), base.state_dict()[k].float())]
    out = {"model": a.model, "base": a.base, "scene": a.scene, "concept": a.concept, "samples_per_side": a.samples,
           "omitted_below": OMITTED_BELOW, "min_area": MIN_AREA, "identical_parameters": frozen,
           "statistics": {}, "inversion": {}}
    for name, G in (("planted", planted), ("unedited", base)):
        runs = [statistics(G, seg, a.scene, a.concept, a.samples, s) for s in a.seeds]
        out["statistics"][name] = {"runs": runs,
                                   "concept_change": interval([r["concept_change"] for r in runs]),
                                   "fsd": interval([r["fsd"]["fsd"] for r in runs]),
                                   "fsd_over_floor": interval([r["fsd_over_floor"] for r in runs]),
                                   "ranked_first": sum(r["concept_rank"] == 1 for r in runs)}
        print(name, {k: v for k, v in out["statistics"][name].items() if k != "runs"}, flush=True)
    if a.invert_n:
        enc, meta = encoder_for(base, a.base, "layer4")
        recalls = {}
        for name, G in (("unedited", base), ("planted", planted)):
            t0 = time.perf_counter()
            res = reconstruction_recall(G, seg, enc, a.scene, a.invert_n, steps=a.invert_steps, features=feats,
                                        ceiling=False)
            recalls[name] = res
            out["inversion"][name] = {**res.summary(), "wall_seconds": round(time.perf_counter() - t0, 1)}
        out["inversion"]["encoder"] = meta.get("path")
        out["inversion"]["recall_drop"] = recalls["planted"].drop(recalls["unedited"], "real")
        print("drop", out["inversion"]["recall_drop"][:5], flush=True)
    print(provenance.write_report(a.out, out, started=started))


if __name__ == "__main__":
    main()

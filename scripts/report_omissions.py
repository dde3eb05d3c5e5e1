"""Omissions of the shipped toyworld generators (#34); writes docs/reports/omissions.json.

    python scripts/report_omissions.py --samples 500                      # town, room, lake
    python scripts/report_omissions.py --scenes town --samples 2000 --concept door
    python scripts/report_omissions.py --samples 10000 --rankings --out docs/reports/omissions_10k.json

Per generator: --samples generated images (seed 1) vs as many real scenes (seed 2) at 64 px, both
through the shipped segmenter, the real ones also from their exact labels; FSD (x100) with its mean /
covariance terms, the real-vs-real floor (seed 1002), the segmenter-vs-exact FSD, the classes
called omitted and the top relative changes. Then a planted omission on town: --concept's top
--units units of layer4 (by IoU; --rankings iou ace: also by ACE) ablated everywhere
(core.engine.omissions.Edited): its rank, relative change and the FSD ratio to the floor.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import core
from core.base import provenance
from core.engine.omissions import MIN_AREA, OMITTED_BELOW, omissions
from core.studies.omissions import ToyworldScenes, image_size, planted_omission, toyworld_omissions

ROOT = Path(__file__).resolve().parents[1]


def rows(res, k: int) -> list[dict]:
    cols = ["label", "real_area", "generated_area", "exact_area", "real_share", "generated_share",
            "relative_change", "floor_change", "segmenter_change"]
    t = res.table()
    return [{c: (float(r[c]) if c != "label" else r[c]) for c in cols} for _, r in t.head(k).iterrows()]


def entry(res) -> dict:
    return {**res.summary(), "top_changes": rows(res, 8),
            "by_real_area": [r for r in sorted(rows(res, 100), key=lambda r: -r["real_area"])][:12]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["town", "room", "lake"])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--concept", default="door")
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--rankings", nargs="*", choices=["iou", "ace"], default=["iou"],
                    help="how the planted omission's units are chosen (concept_units); none: no planted omission")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "omissions.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    started = provenance.stamp()
    seg = core.load_segmenter("toyworld")
    out = {"samples_per_side": a.samples, "omitted_below": OMITTED_BELOW, "min_area": MIN_AREA, "generators": {}}
    for scene in a.scenes:
        G = core.load_generator(f"toyworld/{scene}")
        t0 = time.perf_counter()
        res = toyworld_omissions(G, seg, scene, a.samples)
        out["generators"][f"toyworld/{scene}"] = {**entry(res), "wall_seconds": time.perf_counter() - t0}
        print(scene, res.fsd(), res.floor_fsd(), res.omitted(), f"{time.perf_counter() - t0:.0f}s", flush=True)
    G = core.load_generator("toyworld/town")
    base = toyworld_omissions(G, seg, "town", a.samples) if a.rankings else None
    out["planted"] = {}
    for ranking in a.rankings:
        t0 = time.perf_counter()
        omitting, units = planted_omission(G, seg, a.concept, "layer4", a.units, ranking=ranking)
        res = omissions(omitting, seg, ToyworldScenes("town", image_size(G)), a.samples)
        t = res.table()
        rank = int(t.index[t.label == a.concept][0]) + 1
        out["planted"][ranking] = {
            "generator": "toyworld/town", "concept": a.concept, "layer": "layer4", "ranking": ranking, "units": units,
            "rank": rank, "relative_change": float(t.relative_change[rank - 1]), "fsd": res.fsd(),
            "floor": res.floor_fsd(), "fsd_over_floor": res.fsd()["fsd"] / res.floor_fsd()["fsd"],
            "unedited_fsd_over_floor": base.fsd()["fsd"] / base.floor_fsd()["fsd"], "omitted": res.omitted(),
            "top_changes": rows(res, 5), "wall_seconds": time.perf_counter() - t0}
        print("planted", ranking, rank, out["planted"][ranking]["relative_change"],
              out["planted"][ranking]["fsd_over_floor"], flush=True)
    print(provenance.write_report(a.out, out, started=started))


if __name__ == "__main__":
    main()

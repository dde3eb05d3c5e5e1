"""Painting real scenes (issue #34, item 4; SIGGRAPH 2019 on a layer inversion): held-out toyworld
town scenes inverted into layer4 of the town GAN, the generator adapted to each, a door painted over a
wall's ground line (toyworld's exact layers say where: the ground-line cell with the most wall and the
cell below it, a stroke across the line) with the Paint page's defaults (the door's top 20 units, ACE
ranking when stored else IoU, at 3 x k), blended into the photo. Per scene, and as means with 95%
t-intervals over scenes:

- the change outside the edit: mean and max absolute pixel change (pixel range 2) outside the painted
  cells grown by one cell (the blend's region), and outside the painted cells themselves; the same for
  the unblended edited rendering, for comparison;
- door pixels segmented in the region before and after (and with the shared, unadapted generator);
- reconstruction L1: the inverter's guess, after inversion, after adaptation;
- seconds of inversion + adaptation (not cached) and of one stroke (edit + render + blend), with the
  machine's load (``/proc/loadavg``) before and after.

    python scripts/report_paint_real.py                      # -> docs/reports/paint_real.json
    python scripts/report_paint_real.py --scenes 8 --threads 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import core
from core import toyworld
from core.base import provenance
from core.engine.adapt import blend_change
from core.engine.intervention import edit_fn, insertion_constants
from core.engine.inversion import render_from
from core.studies import over_seeds
from core.studies import paint_real as pr
from core.studies.inversion import INVERSION_REAL_SEED
from core.studies.paint import paint_edits
from core.studies.units import iou_units, stored_ace

ROOT = Path(__file__).resolve().parents[1]


def interval(values) -> dict:
    m, low, high = over_seeds.mean_interval(values)
    return {"mean": m, "ci_low": low, "ci_high": high, "values": [float(x) for x in values]}


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--concept", default="door")
    ap.add_argument("--scenes", type=int, default=5, help="held-out scenes with a free wall ground line")
    ap.add_argument("--dissect-samples", type=int, default=500, help="the page's default")
    ap.add_argument("--units", type=int, default=20, help="the page's default")
    ap.add_argument("--strength", type=float, default=3.0, help="x k, the page's default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stroke-repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reports" / "paint_real.json")
    a = ap.parse_args(argv)
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    torch.set_num_threads(a.threads)
    G, seg, feats = core.load_generator(a.model), core.load_segmenter("toyworld"), core.load_features("toyworld")
    scene_name = core.studies.omissions.scene_of(G)
    ace = stored_ace(G, seg, a.layer, a.concept, a.dissect_samples)
    if ace is None:
        res = core.dissect(G, seg, [a.layer], a.dissect_samples)
        units, ranking = iou_units(res, a.layer, a.concept, a.units), "IoU"
    else:
        units, ranking = [int(u) for u in ace.ranking[:a.units]], f"ACE ({len(ace.losses)} steps)"
    k = insertion_constants(G, seg, a.layer, a.concept, n_samples=min(100, a.dissect_samples)).numpy()
    c = seg.labels.index(a.concept)
    _, rows, cols = core.studies.paint.layer_grid(G, a.layer)
    per, index = [], 0
    load_before = loadavg()
    while len(per) < a.scenes and index < 10 * a.scenes + 20:
        image, labels, layers = toyworld.render(scene_name, 1, seed=INVERSION_REAL_SEED, start=index,
                                                size=G.resolution, return_layers=True)
        index += 1
        cells_found = pr.ground_line_cells(labels[0], {n: v[0] for n, v in layers.items()}, (rows, cols))
        if not cells_found:
            continue
        r, col = cells_found[0]
        cells = np.zeros((rows, cols), bool)
        cells[r:r + 2, col] = True
        t0 = time.perf_counter()
        scene = pr.invert_real(G, image, generator_name=a.model, layer=a.layer, features=feats, cache=False)
        t_invert = time.perf_counter() - t0
        times = []
        for _ in range(a.stroke_repeats):
            t0 = time.perf_counter()
            edits = paint_edits(a.layer, units, "add", k, cells, scale=a.strength)
            out = pr.paint_real(scene, edits)
            times.append(time.perf_counter() - t0)
        painted = torch.from_numpy(np.kron(cells, np.ones((G.resolution // rows, G.resolution // cols), bool)))
        with torch.no_grad():
            fm = edit_fn(edits[0])(scene.featuremap)
            shared, _ = blend_change(image, render_from(G, a.layer, scene.featuremap), render_from(G, a.layer, fm),
                                     out.region)
            segs = {n: seg.segment(x)[0] for n, x in (("before", image), ("after", out.result),
                                                      ("unadapted", shared))}
        door = {n: int((s[out.region] == c).sum()) for n, s in segs.items()}
        row = {"scene": index - 1, "cells": [[int(r), int(col)], [int(r) + 1, int(col)]],
               "outside_region": dict(zip(("mean", "max"), pr.outside_change(image, out.result, out.region))),
               "outside_painted_cells": dict(zip(("mean", "max"), pr.outside_change(image, out.result, painted))),
               "unblended_outside_region": dict(zip(("mean", "max"), pr.outside_change(image, out.edited,
                                                                                       out.region))),
               "door_px_region": door, "l1": {"encoder": scene.l1_encoder, "inverted": scene.l1_inverted,
                                               "adapted": scene.l1_adapted},
               "seconds_invert_adapt": t_invert, "seconds_stroke_median": float(np.median(times)),
               "blend_mask_px": int((out.mask > 0).sum())}
        per.append(row)
        print(f"scene {row['scene']}: doors {door}, L1 {scene.l1_inverted:.3f} -> {scene.l1_adapted:.3f}, "
              f"{t_invert:.1f} s + {row['seconds_stroke_median'] * 1000:.0f} ms a stroke", flush=True)
    load_after = loadavg()

    def col(*path):
        out = []
        for p in per:
            v = p
            for key in path:
                v = v[key]
            out.append(v)
        return interval(out)

    summary = {
        "outside_region_mean": col("outside_region", "mean"), "outside_region_max": col("outside_region", "max"),
        "outside_painted_cells_mean": col("outside_painted_cells", "mean"),
        "outside_painted_cells_max": col("outside_painted_cells", "max"),
        "unblended_outside_region_mean": col("unblended_outside_region", "mean"),
        "door_px_before": col("door_px_region", "before"), "door_px_after": col("door_px_region", "after"),
        "door_px_added": interval([p["door_px_region"]["after"] - p["door_px_region"]["before"] for p in per]),
        "door_px_added_unadapted": interval([p["door_px_region"]["unadapted"] - p["door_px_region"]["before"]
                                             for p in per]),
        "l1_encoder": col("l1", "encoder"), "l1_inverted": col("l1", "inverted"), "l1_adapted": col("l1", "adapted"),
        "seconds_invert_adapt": col("seconds_invert_adapt"), "seconds_stroke": col("seconds_stroke_median"),
    }
    out = {"model": a.model, "layer": a.layer, "concept": a.concept, "units": units, "ranking": ranking,
           "strength": a.strength, "threads": a.threads, "settings": pr.REAL_DEFAULTS,
           "blend": {"grow_cells": 1, "threshold": 0.04, "dilate_px": 2, "soften_px": 1},
           "real_seed": INVERSION_REAL_SEED, "loadavg_before": load_before, "loadavg_after": load_after,
           "summary": summary, "scenes": per}
    provenance.write_report(a.out, out, started=started)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

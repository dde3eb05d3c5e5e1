"""The dashboard's long jobs at their default settings, timed on this machine (issue 20, item 3).

    python benchmarks/bench_long_work.py                  # every job, writes docs/reports/long_work.json
    python benchmarks/bench_long_work.py --jobs curve,paint_switch --out /tmp/long.json

Each job is what its page runs when a user presses its button with the page's defaults
(toyworld/town, layer4, door; the Causal units page's 50 ACE steps and 100 curve images, the
Artifact repair page's 500 images x top 50, the Paint page's context study of 2 images per seed x
3 seeds with a 2-cell brush), computed with the cache turned off, so nothing is reused. The
Paint concept switch is the page's own rerun (AppTest) after the concept box changes, with the
results shipped with the zoo, as on a fresh clone.

Beside each time: the bare generator + segmenter passes measured in the same run (images per
second), so a figure can be read as "this many forward passes" on another machine. The machine,
its load and the thread count are in the report's stamp (``core.base.provenance``).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reports" / "long_work.json"
TARGETS_S = {"removal_table": 60.0, "ablation_curve": 20.0, "unit_fid": 60.0, "context_study": 10.0,
             "paint_concept_switch": 1.0}
JOBS = tuple(TARGETS_S)


def _bare_rate(G, seg, n=200, batch=25) -> float:
    """Generator + segmenter images per second (the unit every job is made of)."""
    from core.base.sampling import z_range
    t = time.perf_counter()
    with torch.no_grad():
        for a in range(0, n, batch):
            seg.segment(G(z_range(11, a, a + batch, G.z_dim)))
    return n / (time.perf_counter() - t)


def job_ablation_curve(G, seg):
    import core
    from core.engine import causal
    dis = core.dissect(G, seg, ["layer4"], 500, cache=False)
    iou = dis.iou("layer4")[:, dis.labels.index("door")]
    ace_like = list(range(20))                       # any 20 units: the cost does not depend on which
    rankings = {"ace": ace_like, "iou": (-iou).argsort(kind="stable")[:20].tolist()}
    t = time.perf_counter()
    causal.ablation_curve(G, seg, "layer4", "door", rankings, counts=(1, 2, 5, 10, 20), n_samples=100,
                          cache=False)
    return time.perf_counter() - t, {"images": 100, "counts": [1, 2, 5, 10, 20], "rankings": 2}


def job_removal_table(G, seg):
    import core
    from core.studies import over_seeds
    gens = {n: core.load_generator(f"toyworld/{n}") for n in ("lake", "room", "town")}
    t = time.perf_counter()
    over_seeds.removal_table(gens, seg, "layer4", ["door"], n_units=20, ace_steps=50, n_samples=100, cache=False)
    return time.perf_counter() - t, {"generators": list(gens), "ace_steps": 50, "images": 100}


def job_unit_fid(G, seg):
    import core
    from core.engine import repair
    from core.studies import evaluation
    feats = core.load_features("toyworld")
    real = evaluation.scene_stats(feats, "town", G.resolution)      # the page's real statistics (cached)
    t = time.perf_counter()
    repair.unit_fid(G, "layer4", feats, real, n_samples=500, top=50, cache=False)
    return time.perf_counter() - t, {"images": 500, "top": 50, "units": 256}


def job_context_study(G, seg):
    import core
    from core.engine.intervention import insertion_constants
    from core.studies import context
    from core.studies import units as unit_choice
    dis = core.dissect(G, seg, ["layer4"], 500)
    units = unit_choice.iou_units(dis, "layer4", "door", 20)
    k = insertion_constants(G, seg, "layer4", "door", n_samples=100)
    value, mult = context.unit_values(k, units, 3.0, dis.quantiles("layer4"))
    t = time.perf_counter()
    out = context.context_over_seeds(G, seg, "layer4", units, value, "door", seeds=(0, 1, 2), n_images=2,
                                     brush=2, scale=mult)
    return time.perf_counter() - t, {"insertions": int(len(out["rows"])), "seeds": 3, "images_per_seed": 2,
                                     "brush_cells": 2}


def job_paint_concept_switch(G, seg):
    from streamlit.testing.v1 import AppTest
    os.environ.pop("GANATOMY_SHIPPED_RESULTS", None)                    # as on a fresh clone
    at = AppTest.from_file(str(ROOT / "dashboard" / "main.py"), default_timeout=600)
    at.switch_page("views/paint.py").run()
    box = [s for s in at.selectbox if s.label == "Concept"][0]
    times = {}
    for concept in ("door", "window", "tree", "roof"):
        if concept not in box.options and not any(o.startswith(concept + " ") for o in box.options):
            continue
        t = time.perf_counter()
        box.set_value(concept).run()
        times[concept] = time.perf_counter() - t
        if at.exception or at.error:
            raise RuntimeError(f"the Paint page failed on {concept}: {[e.value for e in at.error] or at.exception}")
        box = [s for s in at.selectbox if s.label == "Concept"][0]
    return max(times.values()), {"per_concept_s": times, "note": "the page's full rerun after the change (AppTest), "
                                                                  "the slowest of the concepts"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default=",".join(JOBS), help=f"comma separated, of: {', '.join(JOBS)}")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    jobs = [j for j in a.jobs.split(",") if j]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        ap.error(f"--jobs: unknown {', '.join(unknown)}; choose from {', '.join(JOBS)}")
    threads = int(os.environ.get("GANATOMY_TORCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GANATOMY_CACHE"] = tmp            # nothing reused from an earlier run
        os.environ["GANATOMY_SHIPPED_RESULTS"] = "0"
        import core
        G, seg = core.load_generator("toyworld/town"), core.load_segmenter("toyworld")
        rate = _bare_rate(G, seg)
        results = {}
        for j in jobs:
            print(f"{j}…", flush=True)
            seconds, conditions = globals()[f"job_{j}"](G, seg)
            results[j] = {"seconds": round(seconds, 2), "target_s": TARGETS_S[j], "met": seconds <= TARGETS_S[j],
                          "bare_passes_equivalent": round(seconds * rate), **conditions}
            os.environ["GANATOMY_SHIPPED_RESULTS"] = "0"
            print(f"  {seconds:.1f} s (target {TARGETS_S[j]:g} s)", flush=True)
    report = {"jobs": results, "bare_generator_plus_segmenter_images_per_s": round(rate, 1),
              "torch_threads": threads}
    provenance.write_report(a.out, report, started=started)
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()

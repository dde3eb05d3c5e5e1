"""Causal measurements on a shipped generator; writes docs/reports/causal.json.

    python scripts/report_causal.py                       # toyworld/town, layer4
    python scripts/report_causal.py --model toyworld/town --layer layer4 --concepts door window tree

For each concept: the ACE-optimised unit ranking (eq. 5-6, timed), the IoU ranking from a
dissection, ablation curves of both over --curve-samples images (fraction of the concept's
pixels removed by the top 1..20 units), and the removal by 20 units. For doors: the context
study (insertion ACE grouped by the class at the insertion location). Speed: the median time
of one what-if (8 images, one edit) and the ACE optimisation time per concept.

    python scripts/report_causal.py --speed-only          # on a quiet machine, after the report
    python scripts/report_causal.py --table-only          # only the removal table (a generator was re-shipped)

times one ACE optimisation (the first concept) and the what-if alone, with the load average
before and after (the report's stamp), and merges them into the report as ``quiet_timings`` (the full report runs
many things at once and its own timings are only indicative).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import core
from core.base import provenance
from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import Edit, generate, insertion_constants
from core.studies import over_seeds

ROOT = Path(__file__).resolve().parents[1]


def what_if_ms(G, layer, units, k, repeats=30):
    z = z_range(123, 0, 8, G.z_dim)
    mask = torch.zeros(G.resolution, G.resolution)
    mask[G.resolution // 4: G.resolution // 2, G.resolution // 4: G.resolution // 2] = 1
    e = Edit(layer, units, "insert", k[units], mask)
    with torch.no_grad():
        generate(G, z, [e])
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            generate(G, z, [e])
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def speed_only(a, G, seg, dis, started):
    concept = a.concepts[0]
    k = insertion_constants(G, seg, a.layer, concept, n_samples=200)
    res = causal.ace(G, seg, a.layer, concept, n_steps=a.ace_steps, iou=dis.iou(a.layer)[:, seg.labels.index(concept)],
                     k=k, progress=lambda s, n, loss: None)
    ms, times = what_if_ms(G, a.layer, res.units, k)
    quiet = {"model": a.model, "layer": a.layer, "threads": torch.get_num_threads(),
             f"ace_seconds_{concept}_{a.ace_steps}_steps": round(res.seconds, 1),
             "what_if_ms_median": round(ms, 1), "what_if_ms_p90": round(float(np.percentile(times, 90)), 1)}
    provenance.write_report(a.out, {"quiet_timings": quiet}, started=started, part="quiet_timings")
    print(json.dumps(quiet, indent=1))


def removal(a, G, seg) -> dict:
    """The removal table across scene types (Fig. 9-10): ACE units per generator and concept."""
    gens = {m: (G if m == a.model else core.load_generator(m)) for m in a.table_models
            if m in core.list_models()}
    wanted = dict(item.split(":", 1) for item in a.table_concepts)
    per = {m: [c for c in wanted.get(gens[m].meta.get("scene", ""), "").split(",") if c in seg.labels]
           for m in gens}
    t = time.perf_counter()
    bar = tqdm(total=len(a.table_seeds) * sum(map(len, per.values())), desc="removal table")
    table = over_seeds.removal_over_seeds(gens, seg, a.layer, per, seeds=a.table_seeds, ace_steps=a.ace_steps,
                                      progress=lambda d, n: bar.update(d - bar.n))
    bar.close()
    rows = table.to_dict(orient="records")
    print(table.drop(columns=["per_seed"]).to_string(index=False))
    return {"removal_table": rows, "removal_table_seeds": list(a.table_seeds),
            "removal_table_steps": {m: gens[m].meta.get("steps") for m in gens},
            "removal_table_seconds": round(time.perf_counter() - t, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--concepts", nargs="+", default=["door", "window", "tree"])
    ap.add_argument("--dissect-samples", type=int, default=2000)
    ap.add_argument("--curve-samples", type=int, default=500)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    ap.add_argument("--ace-steps", type=int, default=150)
    ap.add_argument("--context-images", type=int, default=16)
    ap.add_argument("--context-concepts", nargs="*", default=["door", "window", "tree"],
                    help="concepts whose insertion context is studied (Fig. 11)")
    ap.add_argument("--table-models", nargs="*", default=["toyworld/town", "toyworld/room", "toyworld/lake"],
                    help="removal table (Fig. 9-10): generators, one per scene type (missing ones skipped)")
    ap.add_argument("--table-concepts", nargs="*",
                    default=["town:door,window,tree,roof,fence", "room:bed,window,door,curtain,painting",
                             "lake:boat,tree,building,mountain,cloud"])
    ap.add_argument("--table-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="removal table: one fresh ACE and fresh images per seed; mean and 95%% t-interval")
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "causal.json"))
    ap.add_argument("--speed-only", action="store_true", help="time ACE and one what-if; merge into --out")
    ap.add_argument("--table-only", action="store_true",
                    help="recompute only the removal table (after re-shipping a generator); merge into --out")
    a = ap.parse_args()
    started = provenance.stamp()
    G = core.load_generator(a.model)
    seg = core.load_segmenter("toyworld")
    if a.table_only:
        provenance.write_report(a.out, removal(a, G, seg), started=started, part="removal_table")
        return
    t = time.perf_counter()
    dis = core.dissect(G, seg, [a.layer], a.dissect_samples)
    if a.speed_only:
        return speed_only(a, G, seg, dis, started)
    out = {"model": a.model, "layer": a.layer, "dissect_seconds": round(time.perf_counter() - t, 1), "concepts": {}}
    iou_all = dis.iou(a.layer)
    for concept in a.concepts:
        c = seg.labels.index(concept)
        k = insertion_constants(G, seg, a.layer, concept, n_samples=200)
        res = causal.ace(G, seg, a.layer, concept, n_steps=a.ace_steps, iou=iou_all[:, c], k=k,
                         progress=lambda s, n, loss: None)
        iou_rank = np.argsort(-iou_all[:, c], kind="stable")
        curve = causal.ablation_curve(G, seg, a.layer, concept,
                                      {"ace": res.ranking[:20].tolist(), "iou": iou_rank[:20].tolist()},
                                      counts=a.counts, n_samples=a.curve_samples)
        eff = causal.causal_effect(G, seg, a.layer, res.units, concept, k, n_samples=100)
        entry = {
            "ace_seconds": round(res.seconds, 1), "ace_steps": a.ace_steps,
            "ace_units": res.units, "iou_units": iou_rank[:20].tolist(),
            "ace_effect_top20": eff,
            "curve": curve.to_dict(orient="records"),
            "removed_at_20": {r: float(curve[(curve.ranking == r) & (curve.n == max(a.counts))].removed.iloc[0])
                              for r in ("ace", "iou")},
            "loss_first_last": [res.losses[0], res.losses[-1]],
        }
        if concept in a.context_concepts:
            rows, summary, maps = causal.context_study(G, seg, a.layer, res.units, k, concept,
                                                       n_images=a.context_images)
            entry["context"] = summary.to_dict(orient="records")
            entry["context_success_rate"] = (rows.assign(ok=rows.effect > 0).groupby("context").ok
                                             .agg(["mean", "count"]).reset_index().to_dict(orient="records"))
        if "what_if_ms_median" not in out:
            ms, _ = what_if_ms(G, a.layer, res.units, k)
            out["what_if_ms_median"] = round(ms, 1)
        out["concepts"][concept] = entry
        print(json.dumps({concept: {k2: v for k2, v in entry.items() if k2 != "curve"}}, indent=1, default=float))
    out.update(removal(a, G, seg))
    provenance.write_report(a.out, out, started=started)


if __name__ == "__main__":
    main()

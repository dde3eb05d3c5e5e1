"""Unit importance vs interpretability on toyworld's classifiers (issue #36, PNAS 2020), over probe seeds.

    python scripts/report_importance.py --images 600 --probes 600 --seeds 0 1 2    # writes docs/reports/importance.json

Per classifier (``toyworld-presence``: the feature network's concept-presence head, 27 concepts one-vs-rest;
``toyworld-scenes``: its scene head) and layer: per-class balanced accuracy with each unit zeroed, the top-N vs
random-units curves, and Spearman's rho between each unit's importance (largest drop over classes: balanced
accuracy and margin) and its NetDissect IoU per probe seed, with the mean and 95% t-interval over the seeds, the
bootstrap over units, and each unit's breadth (among how many classes' top k it is) against IoU / detectors.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.base import provenance
from core.models import load_classifier
from core.studies.importance import importance_vs_interpretability

ROOT = Path(__file__).resolve().parents[1]


def curve_summary(imp, ns=(1, 5, 10, 20)) -> dict:
    """Mean over classes (finite base) of the BA and margin: base, top-N zeroed, N random others zeroed."""
    ok = np.isfinite(imp.base)
    out = {"base": float(np.mean(imp.base[ok])), "margin_base": float(np.nanmean(imp.margin_base[ok]))}
    for n in ns:
        if n <= imp.top_curve.shape[1]:
            j = n - 1
            out[f"top{n}"] = float(np.mean(imp.top_curve[ok, j]))
            out[f"random{n}"] = float(np.mean(imp.random_curve[ok, :, j]))
            out[f"margin_top{n}"] = float(np.nanmean(imp.margin_top[ok, j]))
            out[f"margin_random{n}"] = float(np.nanmean(imp.margin_random[ok, :, j]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["toyworld-presence", "toyworld-scenes"])
    p.add_argument("--layers", nargs="+", default=["proj"])
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--image-seed", type=int, default=100)
    p.add_argument("--probes", type=int, default=600)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--breadth-k", type=int, default=5)
    p.add_argument("--boots", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--out", default=str(ROOT / "docs" / "reports" / "importance.json"))
    a = p.parse_args(argv)
    started = provenance.stamp()
    runs = {}
    jobs = [(m, layer) for m in a.models for layer in a.layers]
    for name, layer in tqdm(jobs, desc="importance"):
        model = load_classifier(name)
        t0 = time.perf_counter()
        table, stats, imp = importance_vs_interpretability(
            model, layer, a.images, a.probes, image_seed=a.image_seed, probe_seeds=a.seeds, boots=a.boots,
            top_n=a.top_n, draws=a.draws, batch_size=a.batch_size, breadth_k=a.breadth_k)
        per_class = []
        for k, c in enumerate(imp.classes):
            top = imp.ranking(k)[:5]
            per_class.append({"class": c, "base": imp.base[k], "margin_base": imp.margin_base[k],
                              "top1_drop": imp.drop[top[0], k], "top": [int(u) for u in top],
                              "top_concepts": [table.loc[int(u), f"concept_seed{a.seeds[0]}"] for u in top],
                              "top_n": imp.top_curve[k].tolist(), "random_mean": imp.random_curve[k].mean(0).tolist(),
                              "margin_top_n": imp.margin_top[k].tolist(),
                              "margin_random_mean": imp.margin_random[k].mean(0).tolist()})
        cols = ["unit", "max_importance", "max_margin_drop", "class", "breadth", "iou"]
        cols += [c for s in a.seeds for c in (f"iou_seed{s}", f"concept_seed{s}", f"detector_seed{s}")]
        runs[f"{name}/{layer}"] = {
            "model": name, "layer": layer, "classes": imp.classes, "multilabel": stats["multilabel"],
            "seconds": round(time.perf_counter() - t0, 1), "importance_seconds": imp.meta.get("seconds"),
            "path": imp.meta.get("path"), "class_counts": imp.meta.get("class_counts"),
            "curves_mean_over_classes": curve_summary(imp), "per_class": per_class,
            "single_unit_drop": {"max": float(np.nanmax(imp.drop)), "units_with_drop_gt_0.01":
                                 int((imp.max_importance > 0.01).sum()), "units_with_any_drop":
                                 int((imp.max_importance > 0).sum())},
            "relation": stats, "units": table[cols].to_dict("records")}
        r = stats["over_seeds"]
        for col in ("max_importance", "max_margin_drop"):
            o = r[col]["over_seeds"]
            print(f"{name} {layer} {col}: rho mean {o['mean']:.3f} [{o['low']:.3f}, {o['high']:.3f}] per seed "
                  f"{[round(v, 3) for v in o['values']]} boot {r[col]['bootstrap_95']}", flush=True)
        print(f"{name} {layer} breadth: rho {r['breadth']['spearman']['mean']:.3f}, det b0 "
              f"{r['breadth']['det_b0']['mean']:.3f} b1 {r['breadth']['det_b1']['mean']:.3f} b2+ "
              f"{r['breadth']['det_b2plus']['mean']:.3f}", flush=True)
    provenance.write_report(a.out, {"images": f"toyworld scenes of seed {a.image_seed} at 128 px (image i of scene "
                                              "type i % 3), exact labels", "n_images": a.images,
                                    "probe": "ToyworldProbes, 128 px, labels 64 px, netdissect rule",
                                    "n_probes": a.probes, "probe_seeds": a.seeds, "top_n": a.top_n,
                                    "draws": a.draws, "breadth_k": a.breadth_k, "boots": a.boots,
                                    "threads": torch.get_num_threads(), "runs": runs}, started=started)
    print(a.out)


if __name__ == "__main__":
    main()

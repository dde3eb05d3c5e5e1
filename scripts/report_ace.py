"""ACE vs IoU ablation curves with 95% intervals over seeds (paper Fig. 4 right), for both ACE
samplings: the paper's (default) and GANatomy's earlier whole-image variant.

For each concept and seed (fresh z for the optimisation, the dissection and the curve): ACE with
``sampling="paper"`` and ``sampling="image"``, the IoU ranking of a dissection, then the
fraction of the concept's pixels removed by ablating the top 1, 5, 10, 20, 30 units of each
ranking over the whole featuremap. Reported per (ranking, n): the mean over seeds and its 95%
t-interval; and the ACE time per concept and the what-if latency on this machine::

    python scripts/report_ace.py                                  # -> docs/reports/ace.json
    python scripts/report_ace.py --concepts door window --seeds 0 1 2 --curve-samples 200
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from report_causal import what_if_ms

import core
from core.base import provenance
from core.engine import causal
from core.studies import over_seeds

ROOT = Path(__file__).resolve().parents[1]


def interval(values) -> dict:
    m, low, high = over_seeds.mean_interval(values)
    return {"mean": m, "ci_low": low, "ci_high": high, "values": [float(x) for x in values]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--concepts", nargs="+", default=["door", "window", "tree", "roof"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samplings", nargs="+", default=["paper", "image"], choices=list(causal.SAMPLINGS))
    ap.add_argument("--ace-steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=4, help="ACE samples per step (the reference's budget: "
                    "--ace-steps 500 --batch-size 20, 10,000 samples)")
    ap.add_argument("--dissect-samples", type=int, default=500)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 5, 10, 20, 30])
    ap.add_argument("--curve-samples", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reports" / "ace.json")
    a = ap.parse_args(argv)
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    G, seg = core.load_generator(a.model), core.load_segmenter("toyworld")
    out = {"model": a.model, "layer": a.layer, "seeds": a.seeds, "ace_steps": a.ace_steps,
           "ace_batch_size": a.batch_size, "counts": a.counts,
           "curve_samples": a.curve_samples, "dissect_samples": a.dissect_samples, "concepts": {}}
    for concept in a.concepts:
        c = seg.labels.index(concept)
        curves, seconds = {}, {s: [] for s in a.samplings}
        for seed in a.seeds:
            k = core.insertion_constants(G, seg, a.layer, concept, n_samples=100, seed=seed + 11)
            iou = core.dissect(G, seg, [a.layer], a.dissect_samples, seed=seed + 7).iou(a.layer)[:, c]
            rankings = {"iou": np.argsort(-iou, kind="stable")[:max(a.counts)].tolist()}
            for sampling in a.samplings:
                res = causal.ace(G, seg, a.layer, concept, n_steps=a.ace_steps, iou=iou, k=k, seed=seed,
                                 sampling=sampling, batch_size=a.batch_size)
                seconds[sampling].append(res.seconds)
                rankings[f"ace-{sampling}"] = res.ranking[:max(a.counts)].tolist()
            curve = causal.ablation_curve(G, seg, a.layer, concept, rankings, counts=a.counts,
                                          n_samples=a.curve_samples, seed=1000 + seed)
            for r in curve.itertuples():
                curves.setdefault((r.ranking, r.n), []).append(r.removed)
            print(f"{concept} seed {seed}: " + ", ".join(
                f"{name} {100 * curve[(curve.ranking == name) & (curve.n == 20)].removed.iloc[0]:.1f}%"
                for name in rankings if 20 in a.counts), flush=True)
        out["concepts"][concept] = {
            "removed": [{"ranking": name, "n": n, **interval(v)} for (name, n), v in sorted(curves.items())],
            "ace_seconds": {s: interval(v) for s, v in seconds.items()}}
    k = core.insertion_constants(G, seg, a.layer, a.concepts[0], n_samples=100)
    ms, _ = what_if_ms(G, a.layer, rankings[f"ace-{a.samplings[0]}"][:20], k)
    out["what_if_ms_median"] = round(ms, 1)
    provenance.write_report(a.out, out, started=started)
    for concept, d in out["concepts"].items():
        rows = {(r["ranking"], r["n"]): r for r in d["removed"]}
        for name in sorted({r["ranking"] for r in d["removed"]}):
            print(f"{concept:8s} {name:10s} " + "  ".join(
                f"n={n}: {100 * rows[(name, n)]['mean']:5.1f}% [{100 * rows[(name, n)]['ci_low']:5.1f}, "
                f"{100 * rows[(name, n)]['ci_high']:5.1f}]" for n in a.counts))
        print(f"{concept:8s} ACE seconds: " + ", ".join(f"{s} {v['mean']:.1f}" for s, v in d["ace_seconds"].items()))
    print(f"what-if median {out['what_if_ms_median']} ms; written to {a.out}")


if __name__ == "__main__":
    main()

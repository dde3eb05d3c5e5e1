"""Rewriting rules measured against toyworld's truth (#35); writes docs/reports/rewrite.json.

    python scripts/report_rewrite.py                                   # every rule, seeds 0 1 2, 1,000 samples
    python scripts/report_rewrite.py --rules no-clouds --seeds 0 --samples 200 --out /tmp/r.json

Per rule (core.studies.rewrite_rules.RULES) and seed: a request chosen from the segmentation of that
seed's own samples (auto_request), then on the same --samples fresh samples the unedited generator, the
rank-one rewrite (the paper's: rank 1, 2,000 steps, lr 0.05, projection every 10), the full-rank update of
the same layer (same goal and steps), every weight fine-tuned on the pasted image (--finetune-steps, lr
1e-3), and GANatomy's unit insertion (the target's 20 top-IoU units inserted at every source cell the
segmentation finds: an oracle for where the rule applies). Measures: success (share of source pixels
turned target), outside_l1 / outside_seg (change outside the source), FID and MS-SWD against 10,000 real
scenes, FSD to the target world where toyworld renders it. Mean and 95% t-interval over seeds. The file is
written after every (rule, seed): a stopped run resumes where it was (--fresh starts over).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import core
from core.base import provenance
from core.studies.over_seeds import mean_interval
from core.studies.rewrite_rules import RULES, evaluate_rule

ROOT = Path(__file__).resolve().parents[1]


def summarise(runs: list[dict]) -> dict:
    """Per variant and measure: mean, low, high over the runs (seeds)."""
    out = {}
    for v in runs[0]["variants"]:
        out[v] = {}
        for m in runs[0]["variants"][v]:
            mean, lo, hi = mean_interval([r["variants"][v][m] for r in runs])
            out[v][m] = {"mean": mean, "low": lo, "high": hi}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "rewrite.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    started = provenance.stamp()
    out = Path(a.out)
    done = {}
    if out.exists() and not a.fresh:
        old = json.loads(out.read_text())
        if old.get("samples") == a.samples and old.get("steps") == a.steps:
            done = old.get("rules", {})
    seg, feats = core.load_segmenter(), core.load_features()
    for name in a.rules:
        rule = RULES[name]
        G = core.load_generator(rule.model)
        entry = done.setdefault(name, {"rule": {k: getattr(rule, k) for k in
                                                ("model", "scene", "layer", "source", "target", "omit", "why")},
                                       "runs": {}})
        for seed in a.seeds:
            if str(seed) in entry["runs"]:
                continue
            t0 = time.perf_counter()
            res = evaluate_rule(G, seg, feats, rule, seed=seed, n=a.samples, steps=a.steps,
                                finetune_steps=a.finetune_steps)
            res["info"].pop("request", None)          # kept small: the request is rebuilt by auto_request
            entry["runs"][str(seed)] = res
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s "
                  + "; ".join(f"{v} {r['success']:.3f}/{r['outside_seg']:.3f}" for v, r in res["variants"].items()),
                  flush=True)
            entry["summary"] = summarise(list(entry["runs"].values()))
            provenance.write_report(out, {"samples": a.samples, "steps": a.steps, "finetune_steps": a.finetune_steps,
                                          "seeds": a.seeds, "threads": a.threads, "rules": done}, started=started)
    print(out)


if __name__ == "__main__":
    main()

"""Rewrite cost at the Rewrite page's defaults (#35): run_request (rank 1, 2,000 steps, lr 0.05, key
statistics of 1,000 samples) with the key statistics cold and cached, the full-rank and fine-tune baselines,
and the page's before/after grid (12 pairs, context matches). Writes one stamped JSON report.

    python benchmarks/bench_rewrite.py --out /tmp/rewrite_speed.json
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--layer", default="layer6")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "rewrite_speed.json"))
    a = ap.parse_args()
    os.environ["GANATOMY_CACHE"] = tempfile.mkdtemp(prefix="ganatomy-bench-")     # cold key statistics
    torch.set_num_threads(a.threads)
    import core
    from core.base import provenance
    from core.studies.rewriting import Region, Request, before_after, run_request
    started = provenance.stamp()
    G = core.load_generator(a.model)
    m = np.zeros((64, 64), bool)
    m[40:52, 8:20] = True
    p = np.zeros((64, 64), bool)
    p[16:28, 30:42] = True
    req = Request(model=a.model, layer=a.layer, copy=Region(1, m), paste=Region(2, p), context=[Region(2, p)])
    rows = []
    for i in range(a.repeat):
        t0 = time.perf_counter()
        run = run_request(G, req)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        grid = before_after(G, run, range(12))
        rows.append({"run": "cold keys" if i == 0 else "cached keys", "seconds": total, "parts": run.seconds,
                     "grid_seconds": time.perf_counter() - t1, "grid_reported": grid.seconds})
        print(rows[-1], flush=True)
    for method in ("full", "finetune"):
        t0 = time.perf_counter()
        run = run_request(G, replace(req, method=method))
        rows.append({"run": method, "seconds": time.perf_counter() - t0, "parts": run.seconds})
        print(rows[-1], flush=True)
    provenance.write_report(a.out, {"model": a.model, "layer": a.layer, "threads": a.threads,
                                    "defaults": {k: getattr(req, k) for k in ("rank", "steps", "lr", "key_samples",
                                                                              "finetune_steps")},
                                    "rows": rows}, started=started)
    print(a.out)


if __name__ == "__main__":
    main()

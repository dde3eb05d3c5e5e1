"""ACE time per concept at two sample budgets, and the what-if latency, on this machine.

Budgets: GANatomy's default (150 steps of 4 samples = 600) and the reference code's (10 epochs
over 1,000 images in batches of 20 = 500 steps of 20 = 10,000 samples). Both use the paper's
sampling, the IoU initialisation of one cached dissection and the cached insertion constants
(computed before the clock starts). Reported with the machine's load before and after, so a
figure measured beside other work says so::

    python scripts/bench_ace.py                                 # -> docs/reports/ace_speed.json
    python scripts/bench_ace.py --concepts door --budgets 150x4  # one quick figure
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report_causal import what_if_ms

import core
from core.engine import causal

ROOT = Path(__file__).resolve().parents[1]


def budget(text: str) -> tuple[int, int]:
    steps, _, batch = text.partition("x")
    try:
        return int(steps), int(batch)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget {text!r} is not STEPSxBATCH, e.g. 150x4") from None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--concepts", nargs="+", default=["door", "roof"])
    ap.add_argument("--budgets", type=budget, nargs="+", default=[(150, 4), (500, 20)],
                    help="STEPSxBATCH; default 150x4 (GANatomy) and 500x20 (the reference's 10,000 samples)")
    ap.add_argument("--dissect-samples", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reports" / "ace_speed.json")
    a = ap.parse_args(argv)
    G, seg = core.load_generator(a.model), core.load_segmenter("toyworld")
    dis = core.dissect(G, seg, [a.layer], a.dissect_samples)
    rows = []
    for concept in a.concepts:
        c = seg.labels.index(concept)
        k = core.cached_insertion_constants(G, seg, a.layer, c, n_samples=100)
        for steps, batch in a.budgets:
            load0 = os.getloadavg()[0]
            t = time.perf_counter()
            res = causal.ace(G, seg, a.layer, c, n_steps=steps, batch_size=batch, iou=dis.iou(a.layer)[:, c], k=k)
            seconds = time.perf_counter() - t
            rows.append({"concept": concept, "steps": steps, "batch_size": batch, "samples": steps * batch,
                         "seconds": round(seconds, 1), "ms_per_sample": round(1000 * seconds / (steps * batch), 2),
                         "load_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)]})
            print(rows[-1], flush=True)
    units = res.units
    ms, times = what_if_ms(G, a.layer, units, k)
    out = {"model": a.model, "layer": a.layer, "sampling": "paper", "ace": rows,
           "what_if_ms_median": round(ms, 1), "what_if_ms_p90": round(float(np.percentile(times, 90)), 1),
           "what_if": "8 images, one 20-unit insertion over a quarter of the image, no gradient",
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "platform": platform.platform(), "torch": torch.__version__},
           "load_1min_end": round(os.getloadavg()[0], 2), "command": "python " + " ".join(sys.argv)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"what-if median {ms:.1f} ms; written to {a.out}")


if __name__ == "__main__":
    main()

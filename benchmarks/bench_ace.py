"""ACE time per concept at two sample budgets, and the what-if latency, on this machine.

Budgets: GANatomy's default (150 steps of 4 samples = 600) and the reference code's (10 epochs
over 1,000 images in batches of 20 = 500 steps of 20 = 10,000 samples). Both use the paper's
sampling, the IoU initialisation of one cached dissection and the cached insertion constants
(computed before the clock starts). Reported with the machine's load before and after, so a
figure measured beside other work says so::

    python benchmarks/bench_ace.py                                 # -> docs/reports/ace_speed.json
    python benchmarks/bench_ace.py --concepts door --budgets 150x4  # one quick figure

The what-if timing is scripts/report_causal.py's ``what_if_ms`` (loaded by path: one timing for both).
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

import core
from core.base import provenance
from core.engine import causal

ROOT = Path(__file__).resolve().parents[1]


def _report_causal():
    spec = importlib.util.spec_from_file_location("report_causal", ROOT / "scripts" / "report_causal.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


what_if_ms = _report_causal().what_if_ms


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
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    G, seg = core.load_generator(a.model), core.load_segmenter("toyworld")
    dis = core.dissect(G, seg, [a.layer], a.dissect_samples)
    rows = []
    for concept in a.concepts:
        c = seg.labels.index(concept)
        k = core.insertion_constants(G, seg, a.layer, c, n_samples=100)
        for steps, batch in a.budgets:
            load0 = provenance.load_1min()
            t = time.perf_counter()
            res = causal.ace(G, seg, a.layer, c, n_steps=steps, batch_size=batch, iou=dis.iou(a.layer)[:, c], k=k)
            seconds = time.perf_counter() - t
            rows.append({"concept": concept, "steps": steps, "batch_size": batch, "samples": steps * batch,
                         "seconds": round(seconds, 1), "ms_per_sample": round(1000 * seconds / (steps * batch), 2),
                         "load_1min_before_after": [load0, provenance.load_1min()]})
            print(rows[-1], flush=True)
    units = res.units
    ms, times = what_if_ms(G, a.layer, units, k)
    out = {"model": a.model, "layer": a.layer, "sampling": "paper", "ace": rows,
           "what_if_ms_median": round(ms, 1), "what_if_ms_p90": round(float(np.percentile(times, 90)), 1),
           "what_if": "8 images, one 20-unit insertion over a quarter of the image, no gradient"}
    provenance.write_report(a.out, out, started=started)
    print(f"what-if median {ms:.1f} ms; written to {a.out}")


if __name__ == "__main__":
    main()

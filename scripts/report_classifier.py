"""EfficientNet-Lite0 dissected on toyworld probes (issue #36): detectors per layer and category, two probe seeds.

    python scripts/report_classifier.py --samples 2000 --seeds 0 1     # writes docs/reports/efficientnet_dissect.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from core.base import provenance
from core.engine.classifier_dissection import RULES, dissect_classifier
from core.models import load_classifier
from core.studies.probes import ToyworldProbes

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--layers", nargs="+", default=None, help="default: every block (stem, block1..7, head)")
    p.add_argument("--rule", default="netdissect", choices=list(RULES))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=str(ROOT / "docs" / "reports" / "efficientnet_dissect.json"))
    a = p.parse_args(argv)
    started = provenance.stamp()
    model = load_classifier("efficientnet-lite0")
    layers = a.layers or model.layer_names
    runs = {}
    for seed in a.seeds:
        probe = ToyworldProbes(model.input_size, n=a.samples, seed=seed)
        t0 = time.perf_counter()
        res = dissect_classifier(model, probe, layers, a.samples, batch_size=a.batch_size, rule=a.rule)
        top = {layer: res.units(layer).sort_values("iou", ascending=False).head(10)
               [["unit", "concept", "category", "iou"]].to_dict("records") for layer in layers}
        runs[str(seed)] = {"seconds": round(time.perf_counter() - t0, 1), "cached": res.meta.get("cached"),
                           "threshold_seconds": res.meta.get("threshold_seconds"),
                           "count_seconds": res.meta.get("count_seconds"),
                           "summary": res.summary().to_dict("records"), "top_units": top,
                           "concepts_detected": {layer: sorted(set(res.units(layer).query("detector").concept))
                                                 for layer in layers}}
        print(res.summary().to_string(index=False), flush=True)
    probe = "toyworld (ToyworldProbes, 224 px, labels 112 px)"
    provenance.write_report(a.out, {"model": "efficientnet-lite0", "probe": probe, "rule": a.rule, **RULES[a.rule],
                                    "samples": a.samples, "seeds": a.seeds, "layers": layers,
                                    "threads": torch.get_num_threads(), "runs": runs}, started=started)
    print(a.out)


if __name__ == "__main__":
    main()

"""Which concepts arrive first during training (#34): the omission statistics of every checkpoint of a
training series; writes docs/reports/omissions_training.json.

    python scripts/report_omissions_training.py --model toyworld/town --samples 1000

Per checkpoint (``toyworld/town@step-N`` ... ``toyworld/town``): ``--samples`` generated images against
as many real scenes (the same real scenes and floor for every checkpoint), through the shipped segmenter
(core.studies.comparisons.omissions_over_training); per class, the step from which its generated mean
area stays within ``--within`` of the real one (core.studies.comparisons.concept_arrival).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

import core
from core.base import provenance
from core.studies.comparisons import concept_arrival, omissions_over_training

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--within", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "omissions_training.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    started = provenance.stamp()
    seg = core.load_segmenter("toyworld")
    t0 = time.perf_counter()
    bar = tqdm(desc="checkpoints", unit="ckpt")

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    table = omissions_over_training(a.model, seg, a.samples, progress=progress)
    bar.close()
    arrival = concept_arrival(table, a.within)
    per_step = table.groupby("step").agg(fsd=("fsd", "first"), floor=("floor", "first")).reset_index()
    judged = table[table.judged]
    out = {"model": a.model, "samples_per_side": a.samples, "within": a.within,
           "seconds": round(time.perf_counter() - t0, 1),
           "fsd_by_step": per_step.to_dict(orient="records"),
           "arrival": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                       for r in arrival.to_dict(orient="records")],     # NaN (never arrives): null
           "changes": {str(s): dict(zip(g.label, g.relative_change.round(4))) for s, g in judged.groupby("step")}}
    print(arrival.to_string(), flush=True)
    print(per_step.to_string(), flush=True)
    print(provenance.write_report(a.out, out, started=started))


if __name__ == "__main__":
    main()

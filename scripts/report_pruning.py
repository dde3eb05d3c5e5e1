"""Pruning vs interpretability (issue #36): magnitude pruning of the toyworld feature network at growing sparsity,
its accuracy and its NetDissect detectors per layer, with a short fine-tune where the accuracy collapses.

    python scripts/report_pruning.py --scopes global layer --eval 600 --probes 600 --seeds 0 1 2 \\
        --finetune-steps 60     # writes docs/reports/pruning.json and docs/reports/pruning.html

Every pruned network is a new model object (core.studies.pruning.prune deep-copies); the shipped weights are read,
never written. The chart shows the first scope: detectors per layer (mean over probe seeds) and the two accuracies
against sparsity, pruned only (solid) and fine-tuned (dashed).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from tqdm import tqdm

from core.base import provenance
from core.models import zoo
from core.studies.pruning import pruning_study

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["stem", "d2", "d3", "d4", "proj"]


def chart(table, scope, path):
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for tuned, dash in ((False, "solid"), (True, "dash")):
        t = table[table.finetuned == tuned].sort_values("sparsity")
        if tuned:                                   # the fine-tuned curve starts from the unpruned network
            t = table[(table.finetuned == tuned) | (table.sparsity == 0)].sort_values("sparsity")
        if not len(t):
            continue
        x = (t.sparsity * 100).tolist()
        tag = " (fine-tuned)" if tuned else ""
        for layer, c in zip(LAYERS, colours):
            fig.add_trace(go.Scatter(x=x, y=t[f"det_{layer}"].round(1).tolist(), name=f"detectors {layer}{tag}",
                                     line=dict(color=c, dash=dash), mode="lines+markers"), secondary_y=False)
        for col, c, label in (("scene_ba", "black", "scene BA"), ("presence_ba", "grey", "presence BA")):
            fig.add_trace(go.Scatter(x=x, y=t[col].round(4).tolist(), name=f"{label}{tag}",
                                     line=dict(color=c, dash=dash, width=3), mode="lines+markers"), secondary_y=True)
    fig.update_layout(title=f"Feature network, {scope} magnitude pruning: detectors per layer and accuracy",
                      xaxis_title="sparsity (% of conv + linear weights zeroed)", width=950, height=520,
                      legend=dict(font=dict(size=10)))
    fig.update_yaxes(title_text="detectors (NetDissect, mean over probe seeds)", secondary_y=False)
    fig.update_yaxes(title_text="balanced accuracy (held-out scenes)", range=[0.45, 1.02], secondary_y=True)
    fig.write_html(str(path), include_plotlyjs="cdn", full_html=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scopes", nargs="+", default=["global", "layer"], choices=["global", "layer"])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95])
    p.add_argument("--eval", type=int, default=600)
    p.add_argument("--eval-seed", type=int, default=100)
    p.add_argument("--probes", type=int, default=600)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--finetune-steps", type=int, default=60)
    p.add_argument("--finetune-per-scene", type=int, default=8)
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--collapse", type=float, default=0.05)
    p.add_argument("--finetune-all", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs" / "reports" / "pruning.json"))
    p.add_argument("--chart", default=str(ROOT / "docs" / "reports" / "pruning.html"))
    a = p.parse_args(argv)
    started = provenance.stamp()
    weights = ROOT / "core" / "weights" / "features_toyworld.pt"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
    features = zoo.load_features("toyworld")
    runs = {}
    for scope in a.scopes:
        bar = tqdm(desc=f"pruning ({scope})", total=len(a.sparsities))
        t0 = time.perf_counter()

        def progress(row):
            bar.update(0 if row["finetuned"] else 1)
            print(f"{scope} {row['sparsity']:.2f} ft={row['finetuned']} scene {row['scene_ba']:.3f} presence "
                  f"{row['presence_ba']:.3f} det " + " ".join(f"{lay}:{row[f'det_{lay}']:.1f}" for lay in LAYERS),
                  flush=True)

        table, meta = pruning_study(features, a.sparsities, scope, n_eval=a.eval, eval_seed=a.eval_seed,
                                    n_probes=a.probes, probe_seeds=a.seeds, finetune_steps=a.finetune_steps,
                                    finetune_per_scene=a.finetune_per_scene, finetune_lr=a.finetune_lr,
                                    collapse=a.collapse, finetune_all=a.finetune_all, progress=progress)
        bar.close()
        runs[scope] = {**meta, "seconds": round(time.perf_counter() - t0, 1), "rows": table.to_dict("records")}
        if scope == a.scopes[0]:
            chart(table, scope, a.chart)
        after = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
        provenance.write_report(a.out, {"model": "toyworld feature network (core/weights/features_toyworld.pt)",
                                        "weights_sha256_before": digest, "weights_sha256_after": after,
                                        "weights_untouched": digest == after, "sparsities": a.sparsities,
                                        "chart": Path(a.chart).name, "threads": torch.get_num_threads(),
                                        "runs": runs}, started=started)      # after each scope: a partial run counts
    print(a.out, a.chart)


if __name__ == "__main__":
    main()

"""Measure toyworld and its shipped networks; write docs/reports/*.json and docs/REPORT.md.

    python scripts/report_toyworld.py speed       # renderer scenes/s on one core
    python scripts/report_toyworld.py grid        # docs/toyworld_samples.png
    python scripts/report_toyworld.py segmenter   # per-concept IoU on 2,000 held-out scenes
    python scripts/report_toyworld.py features    # FID noise floor and degradation curves
    python scripts/report_toyworld.py all
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core import load_features, load_segmenter, toyworld
from core.base import provenance
from core.studies import evaluation

ROOT = Path(__file__).resolve().parents[1]

REPORTS = ROOT / "docs" / "reports"


def _save(name, data, started):
    print(provenance.write_report(REPORTS / f"{name}.json", data, started=started).read_text()[:3000])


def _made(data) -> tuple[str, str]:
    """The command and the machine (in words) of a report, stamped or written before the stamp."""
    p = provenance.of(data)
    m = p.get("machine")
    if isinstance(m, dict):
        m = f"{m['cpu']}, {m['torch_threads']} torch threads, torch {p['versions']['torch']}"
    return p.get("command"), m


def speed():
    torch.set_num_threads(1)
    started = provenance.stamp()
    out = {}
    for scene in toyworld.SCENES:
        toyworld.render(scene, 64, seed=0)
        best = 0.0
        for rep in range(3):
            t = time.perf_counter()
            toyworld.render(scene, 1024, seed=rep)
            best = max(best, 1024 / (time.perf_counter() - t))
        out[scene] = round(best, 1)
    _save("speed", {"scenes_per_second_one_core_128px": out}, started)


def grid(per=6):
    from PIL import Image
    rows = []
    for scene in toyworld.SCENES:
        im, lb = toyworld.render(scene, per, seed=3)
        rgb = ((im.permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).byte()
        lab = toyworld.colorize(lb)
        rows.append(torch.cat([torch.cat(list(rgb), 1), torch.cat(list(lab), 1)], 0))
    path = ROOT / "docs" / "toyworld_samples.png"
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(torch.cat(rows, 0).numpy()).save(path, optimize=True)
    print("wrote", path)


def segmenter(n_total=2000, seed=7):
    torch.set_num_threads(2)
    started = provenance.stamp()
    seg = load_segmenter("toyworld")
    per = [n_total // 3 + (i < n_total % 3) for i in range(3)]
    bar = tqdm(total=n_total, desc="segmenter eval")
    res = {"n_scenes": n_total, "seed": seed, "per_scene_type": {}}
    total = None
    for scene, n in zip(toyworld.SCENES, per):
        conf = evaluation.segmentation_confusion(seg, [scene], n, seed=seed, batch=100,
                                                 progress=bar.update)
        total = conf if total is None else total + conf
        # this scene type's own concepts (pixels of other concepts' labels are false positives,
        # which already lower the IoU of the concept that was really there)
        ious = {k: v for k, v in evaluation.iou_from_confusion(conf).items()
                if k in toyworld.SCENE_CONCEPTS[scene]}
        res["per_scene_type"][scene] = {"miou": round(float(np.mean(list(ious.values()))), 4),
                                        "pixel_acc": round(float(conf.diag().sum() / conf.sum()), 4),
                                        "iou": {k: round(v, 4) for k, v in sorted(ious.items())},
                                        "confusion": conf.tolist()}
    ious = evaluation.iou_from_confusion(total)
    res["iou"] = {k: round(v, 4) for k, v in sorted(ious.items(), key=lambda kv: kv[1])}
    res["miou"] = round(float(np.mean(list(ious.values()))), 4)
    res["pixel_acc"] = round(float(total.diag().sum() / total.sum()), 4)
    res["below_0.6"] = [k for k, v in ious.items() if v < 0.6]
    res["train_meta"] = seg.meta
    _save("segmenter", res, started)


def features(n=5000, n_degraded=2000):
    """Noise floor: two disjoint n-scene real sets. Degradations: n_degraded degraded scenes
    vs the n-scene reference, next to the floor for an undegraded n_degraded set (FID's
    small-sample bias depends on the set sizes, so compare like with like)."""
    torch.set_num_threads(2)
    started = provenance.stamp()
    net = load_features("toyworld")
    scenes = toyworld.SCENES
    kinds = evaluation.DEGRADATIONS
    bar = tqdm(total=2 * n + n_degraded * sum(len(v) for v in kinds.values()), desc="FID")
    ref = evaluation.real_stats(net, scenes, n, seed=100, progress=bar.update)
    other = evaluation.real_stats(net, scenes, n, seed=101, progress=bar.update)
    small = evaluation.real_stats(net, scenes, n_degraded, seed=102)
    res = {"n_per_set": n, "n_degraded": n_degraded, "feature_dim": net.dim,
           "real_vs_real": round(evaluation.fid_between(ref, other), 4),
           "real_vs_real_small": round(evaluation.fid_between(ref, small), 4), "degraded": {}}
    for kind, strengths in kinds.items():
        res["degraded"][kind] = {}
        for s in strengths:
            st = evaluation.real_stats(net, scenes, n_degraded, seed=102, progress=bar.update,
                                       transform=lambda im, k=kind, s=s: evaluation.degrade(im, k, s))
            res["degraded"][kind][str(s)] = round(evaluation.fid_between(ref, st), 4)
    res["train_meta"] = net.meta
    _save("features", res, started)


def write_report():
    def load(name):
        p = REPORTS / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None
    sp, sg, ft = load("speed"), load("segmenter"), load("features")
    L = ["# Measured figures", "",
         "Every figure comes from a JSON file in `docs/reports/`, written by the command beside it.", ""]
    if sp:
        L += ["## toyworld renderer", "", "`{}` — {}".format(*_made(sp)), "",
              "| scene | scenes/s at 128 x 128, one core |", "|---|---|"]
        L += [f"| {k} | {v} |" for k, v in sp["scenes_per_second_one_core_128px"].items()] + [""]
    if sg:
        m = sg["train_meta"]
        L += ["## Segmenter (`core.load_segmenter('toyworld')`)", "",
              f"`{_made(sg)[0]}` — {sg['n_scenes']} held-out scenes (seed {sg['seed']}, disjoint from "
              f"training seeds), {_made(sg)[1]}", "",
              f"**mIoU {sg['miou']:.3f}**, pixel accuracy {sg['pixel_acc']:.3f}; concepts below 0.6: "
              f"{', '.join(sg['below_0.6']) or 'none'}.", "",
              "| scene type | mIoU | pixel acc |", "|---|---|---|"]
        L += [f"| {k} | {v['miou']:.3f} | {v['pixel_acc']:.3f} |" for k, v in sg["per_scene_type"].items()]
        L += ["", "| concept | IoU |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in sg["iou"].items()]
        L += ["", f"Trained {m.get('steps')} steps x {m.get('batch')} scenes in "
              f"{m.get('train_seconds', 0) / 60:.1f} min on {m.get('hardware')} "
              "(`python scripts/train_segmenter.py`).", ""]
    if ft:
        m = ft["train_meta"]
        L += ["## FID feature network (`core.load_features('toyworld')`)", "",
              f"`{_made(ft)[0]}` — {ft['n_per_set']} scenes per set (all scene types), "
              f"{ft['feature_dim']}-d features, {_made(ft)[1]}", "",
              f"**Noise floor** (two disjoint {ft['n_per_set']}-scene real sets): FID {ft['real_vs_real']:.4f}. "
              f"Degraded sets have {ft['n_degraded']} scenes each and are compared with the "
              f"{ft['n_per_set']}-scene reference; an undegraded {ft['n_degraded']}-scene set scores "
              f"{ft['real_vs_real_small']:.4f} (strength 0). Only ratios to the noise floor are "
              "meaningful: toyworld-feature FIDs are not on Inception's scale.", "",
              "| degradation | strength | FID vs real |", "|---|---|---|"]
        units = {"blur": "Gaussian sigma (px)", "noise": "noise std (fraction of range)",
                 "color": "RGB shift (fraction of range)"}
        for kind, vals in ft["degraded"].items():
            for s, v in vals.items():
                L.append(f"| {kind} | {s} ({units[kind]}) | {v:.4f} |")
        L += ["", f"Trained {m.get('steps')} steps x {m.get('batch')} scenes in "
              f"{m.get('train_seconds', 0) / 60:.1f} min on {m.get('hardware')} "
              "(`python scripts/train_features.py`).", ""]
    (ROOT / "docs" / "REPORT.md").write_text("\n".join(L))
    print("wrote docs/REPORT.md")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "grid", "segmenter", "features", "all", "report"])
    a = ap.parse_args()
    steps = {"speed": [speed], "grid": [grid], "segmenter": [segmenter], "features": [features],
             "all": [speed, grid, segmenter, features], "report": []}[a.what]
    for f in steps:
        f()
    write_report()


if __name__ == "__main__":
    main()

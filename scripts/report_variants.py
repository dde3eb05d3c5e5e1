"""The paper's model comparison (Fig. 7) on toyworld: the base ProGAN against its variants without
minibatch stddev in D (``-nostd``) and without pixel norm in G (``-nopn``), at equal training steps.

    python scripts/report_variants.py                      # town, every layer, 1,000 samples
    python scripts/report_variants.py --samples 2000 --layers layer4 layer6

The models come from ``core.studies.variant_lineup``: when the variants were trained for S steps,
the base model's snapshot ``toyworld/town@step-S`` stands in for the final base, so the comparison
is of architectures, not of training time. Per model: FID (toyworld feature space, n-gen samples
vs the 10,000 real scenes of scripts/report_gans.py) and MS-SWD x 1e3 (vs 2,000 real scenes);
per model and layer: units, interpretable units (IoU > 0.05 and I/H > 0.01), distinct concepts
and mean IoU; diversity (mean pairwise distance of 500 samples in the toyworld feature space,
beside 500 real scenes': a generator without minibatch stddev may collapse toward few modes,
which FID sees only in part). Writes docs/reports/variants.json, a sample grid with the same codes per model
(docs/gans/<scene>_variants.png), and into each variant's model card its FID and MS-SWD, those of
its earliest training snapshot (from cache/train, where the run lives) and the scene's
real-vs-real values, as scripts/report_gans.py does for the base models.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from report_gans import GRIDS, REAL_N, REAL_SEED, REPORTS, grid, rounded
from tqdm import tqdm

import core
from core import studies, toyworld, training
from core.base import provenance
from core.base.sampling import z_range
from core.models.zoo import GAN_DIR
from core.studies import evaluation

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def diversity(images: torch.Tensor, features) -> float:
    """Mean pairwise Euclidean distance between the images' feature vectors (0 = all the same)."""
    v = features(images).double()
    n = len(v)
    return float(torch.cdist(v, v).sum() / (n * (n - 1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="town")
    ap.add_argument("--samples", type=int, default=1000, help="dissection samples per model")
    ap.add_argument("--layers", nargs="*", default=None, help="default: every layer but the output")
    ap.add_argument("--n-gen", type=int, default=2000, help="generated samples per FID")
    ap.add_argument("--n-swd-real", type=int, default=2000)
    ap.add_argument("--n-diversity", type=int, default=500)
    ap.add_argument("--out", type=Path, default=REPORTS / "variants.json")
    a = ap.parse_args()
    started = provenance.stamp()
    models = core.list_models()
    group = studies.zoo_groups(models).get(a.scene)
    if not group or not group["variants"]:
        raise SystemExit(f"no variants of {a.scene} are shipped: train them with ganatomy train --scene {a.scene} "
                         f"--variant nostd|nopn --out cache/train/gan_{a.scene}_nostd|nopn and ship them with "
                         "scripts/ship_gans.py")
    lineup = studies.variant_lineup(models, group)
    print(lineup["note"])
    seg, features = core.load_segmenter("toyworld"), core.load_features("toyworld")
    t0 = time.time()
    rows, quality, images, real_patches = [], {}, [], {}
    for name in lineup["models"]:
        G = core.load_generator(name)
        layers = a.layers or [n for n, _ in G.named_children() if not n.startswith("output")]
        res_px = G.resolution
        real = evaluation.scene_stats(features, a.scene, res_px, REAL_N, REAL_SEED)
        if res_px not in real_patches:       # the same real scenes for every model: rendered once
            real_patches[res_px] = evaluation.real_patches(a.scene, a.n_swd_real, seed=REAL_SEED, size=res_px)
        real_p = real_patches[res_px]
        q = evaluation.generator_quality(G, features, real, real_p, a.n_gen)
        with torch.no_grad():
            div = diversity(G(z_range(3, 0, a.n_diversity, G.z_dim)), features)
        quality[name] = {"fid": round(q["fid"], 4), "ms_swd": rounded(q["ms_swd"]), "diversity": round(div, 3),
                         "steps": lineup["steps"].get(name), "pixelnorm": (models.get(name) or {}).get("pixelnorm"),
                         "minibatch_stddev": (models.get(name) or {}).get("minibatch_stddev")}
        bar = tqdm(total=a.samples, desc=f"dissect {name}", unit="img")
        res = core.dissect(G, seg, layers, a.samples, progress=lambda d, t: bar.update(d - bar.n))
        bar.close()
        for row in res.summary().to_dict(orient="records"):
            rows.append({"model": name, **row})
        with torch.no_grad():
            images.append(G(z_range(42, 0, 8, G.z_dim)))
        print(name, quality[name])
        card = GAN_DIR / f"{name[len('toyworld/'):]}.json"
        if "@" not in name and card.exists():       # a variant's card (the base snapshot's has its series FID)
            c = json.loads(card.read_text())
            c.update({"eval_fid_10k_real": quality[name]["fid"], "eval_ms_swd": quality[name]["ms_swd"]["avg"],
                      "eval_n_generated": a.n_gen})
            # its own earliest training snapshot, measured the same way (the run lives in cache/train)
            run = ROOT / "cache" / "train" / f"gan_{name[len('toyworld/'):].replace('-', '_')}"
            snaps = [p for _, p in training.run_snapshots(run)]
            if snaps:
                G0 = core.load_generator(snaps[0])
                q0 = evaluation.generator_quality(G0, features, real, real_p, a.n_gen)
                quality[name]["earliest"] = {"steps": G0.meta.get("steps"), "fid": round(q0["fid"], 4),
                                             "swd": rounded(q0["ms_swd"])}
                c["eval_fid_earliest"] = quality[name]["earliest"]
            base_card = models.get(group["base"]) or {}     # real-vs-real is the scene's, not the model's
            for k in ("eval_fid_real_vs_real", "eval_ms_swd_real_vs_real"):
                if k in base_card:
                    c[k] = base_card[k]
            card.write_text(json.dumps(c, indent=1))
    totals = {}
    for m in lineup["models"]:
        mine = [r for r in rows if r["model"] == m]
        good = sum(r["interpretable"] for r in mine)
        totals[m] = {"units": sum(r["units"] for r in mine), "interpretable": good,
                     "mean_iou": round(float(sum(r["mean_iou"] * r["interpretable"] for r in mine) / good), 4)
                     if good else 0.0}
    real_div = diversity(toyworld.render(a.scene, a.n_diversity, seed=700, size=res_px)[0], features)
    report = {"scene": a.scene,
              "diversity_real": round(real_div, 3), "n_diversity": a.n_diversity,
              "lineup": lineup, "dissection_samples": a.samples, "n_generated": a.n_gen, "quality": quality,
              "layers": rows, "totals": totals, "seconds": round(time.time() - t0, 1)}
    provenance.write_report(a.out, report, started=started)
    g = grid(torch.cat(images), 8)
    GRIDS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(g).resize((g.shape[1] * 2, g.shape[0] * 2), Image.NEAREST).save(GRIDS / f"{a.scene}_variants.png")
    width = max(len(m) for m in lineup["models"])
    print(f"\n{'model':<{width}}  FID     MS-SWD  diversity  interpretable/units  mean IoU")
    for m in lineup["models"]:
        print(f"{m:<{width}}  {quality[m]['fid']:<6.3f}  {quality[m]['ms_swd']['avg']:<6.1f}  "
              f"{quality[m]['diversity']:<9.3f}  {totals[m]['interpretable']:>5}/{totals[m]['units']:<12}  "
              f"{totals[m]['mean_iou']:.3f}")
    print(f"{'real scenes':<{width}}  {'':6}  {'':6}  {real_div:<9.3f}")
    print(np.round(report["seconds"]), "s")


if __name__ == "__main__":
    main()

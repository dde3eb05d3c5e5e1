"""Per-unit FID and artifact repair on a shipped generator; writes docs/reports/repair.json.

    python scripts/report_repair.py                                   # toyworld/town, layer4
    python scripts/report_repair.py --samples 20000 --top 1000 --flag 20

Unit FID of every unit of --layer (one generation + one feature pass over --samples images,
each unit's --top images by spatial maximum, vs 10,000 real scenes in the toyworld feature
space); then the paper's Table 1/2 comparison on the --eval images where the flagged units
activate most: (a) original, (b) the --flag highest-unit-FID units (plus any manual flags)
ablated, (c) as many random units ablated, over --draws draws.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import core
from core import toyworld
from core.base import cache, provenance
from core.engine import repair
from core.studies import evaluation
from core.userdata.flags import load_flags

ROOT = Path(__file__).resolve().parents[1]

DARK_SKY = 0.2      # an image has a dark (night) sky when its top quarter's mean brightness in [0, 1] is below this


def dark_sky_share(G, scene: str, n: int = 2000, seed: int = 1, real_seed: int = 700) -> dict:
    """Share of n generated images and of n real scenes whose top quarter (the sky) is dark: the
    flagged units of the town models draw night scenes, and this says whether the GAN
    over-produces them (the real share is toyworld's own night rate)."""
    import torch

    from core.base.sampling import z_range

    def dark(x):
        return ((x[:, :, : x.shape[2] // 4] + 1) / 2).mean((1, 2, 3)) < DARK_SKY
    with torch.no_grad():
        gen = torch.cat([dark(G(z_range(seed, s, min(n, s + 250), G.z_dim))) for s in range(0, n, 250)])
    real = torch.cat([dark(toyworld.render(scene, min(250, n - s), seed=real_seed, size=G.resolution, start=s)[0])
                      for s in range(0, n, 250)])
    return {"generated": round(float(gen.float().mean()), 4), "real": round(float(real.float().mean()), 4),
            "n": n, "threshold": DARK_SKY, "definition": "mean brightness of the image's top quarter, in [0, 1]"}


def save_grid(G, layer, flagged, table, pick, path: Path, n: int = 8) -> str:
    """Eight evaluation images (the ones where the flagged units fire most): original, flagged
    units ablated, first random draw ablated — one row each."""
    import torch
    from PIL import Image

    from core.base.sampling import z_at
    from core.engine.intervention import Edit, generate
    from core.outputs.visualize import to_uint8
    rand = [int(u) for u in table.units.iloc[2].split(";")[0].split()]
    z = z_at(0, pick[:n], G.z_dim)
    with torch.no_grad():
        rows = [generate(G, z), generate(G, z, [Edit(layer, flagged)]), generate(G, z, [Edit(layer, rand)])]
    pad = 2
    grid = np.full((3 * (G.resolution + pad), n * (G.resolution + pad), 3), 255, np.uint8)
    for r, imgs in enumerate(rows):
        for i, im in enumerate(to_uint8(imgs)):
            y, x = r * (G.resolution + pad), i * (G.resolution + pad)
            grid[y:y + G.resolution, x:x + G.resolution] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toyworld/town")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--top", type=int, default=1_000)
    ap.add_argument("--flag", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--eval", type=int, default=2_000)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "repair.json"))
    ap.add_argument("--grid", default=str(ROOT / "docs" / "repair" / "before_after.png"),
                    help="before/after image pairs (rows: original, flagged ablated, random ablated)")
    ap.add_argument("--all-samples-only", action="store_true",
                    help="with the report's flagged units: FID over all --candidates samples (not only "
                         "where the units fire most), original vs flagged vs random ablated; merged into --out")
    ap.add_argument("--dark-sky-only", action="store_true",
                    help="the share of generated vs real images with a night sky; merged into --out")
    a = ap.parse_args()
    started = provenance.stamp()
    G = core.load_generator(a.model)
    feats = core.load_features("toyworld")
    scene = G.meta.get("scene", "town")
    real = evaluation.scene_stats(feats, scene, G.resolution)
    if a.dark_sky_only:
        report = {"dark_sky": dark_sky_share(G, scene)}
        if not Path(a.out).exists():
            report["model"] = a.model
        print(report["dark_sky"])
        provenance.write_report(a.out, report, started=started, part="dark_sky")
        return
    if a.all_samples_only:
        report = json.loads(Path(a.out).read_text())
        table, _ = repair.repair_table(G, a.layer, feats, real, report["flagged"], n_candidates=a.candidates,
                                      n_eval=a.candidates, random_draws=a.draws)
        print(table.to_string(index=False))
        provenance.write_report(a.out, {"table_all_samples": table.to_dict(orient="records")}, started=started,
                                part="table_all_samples")
        return
    t = time.perf_counter()
    uf = repair.unit_fid(G, a.layer, feats, real, n_samples=a.samples, top=a.top)
    t_unit = time.perf_counter() - t
    manual = load_flags(a.model, a.layer, cache.model_fingerprint(G))     # flags set on these weights
    flagged = sorted(set(uf.highest(a.flag)) | set(manual))
    table, pick = repair.repair_table(G, a.layer, feats, real, flagged, n_candidates=a.candidates,
                                      n_eval=a.eval, random_draws=a.draws)
    out = {"model": a.model, "layer": a.layer,
           "unit_fid_seconds": round(t_unit, 1), "samples": a.samples, "top": a.top,
           "unit_fid_top": uf.table().head(30).to_dict(orient="records"),
           "unit_fid_median": float(sorted(uf.fid)[len(uf.fid) // 2]),
           "flagged": flagged, "manual_flags": manual, "table": table.to_dict(orient="records"),
           "eval_images": int(len(pick))}
    out["grid"] = save_grid(G, a.layer, flagged, table, pick, Path(a.grid))
    out["dark_sky"] = dark_sky_share(G, scene)
    print(table.to_string(index=False))
    print(json.dumps({k: out[k] for k in ("unit_fid_seconds", "unit_fid_median", "flagged")}))
    provenance.write_report(a.out, out, started=started)


if __name__ == "__main__":
    main()

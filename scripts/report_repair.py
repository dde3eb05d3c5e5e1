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
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import core  # noqa: E402
from core import evaluation, repair, training  # noqa: E402


def save_grid(G, layer, flagged, table, pick, path: Path, n: int = 8) -> str:
    """Eight evaluation images (the ones where the flagged units fire most): original, flagged
    units ablated, first random draw ablated — one row each."""
    import torch
    from PIL import Image
    from core.intervention import Edit, generate
    from core.sampling import z_at
    from core.visualize import to_uint8
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
    a = ap.parse_args()
    G = core.load_generator(a.model)
    feats = core.load_features("toyworld")
    scene = G.meta.get("scene", "town")
    real = evaluation.cached_real_stats(feats, scene, G.resolution)
    if a.all_samples_only:
        report = json.loads(Path(a.out).read_text())
        table, _ = repair.repair_table(G, a.layer, feats, real, report["flagged"], n_candidates=a.candidates,
                                      n_eval=a.candidates, random_draws=a.draws)
        report["table_all_samples"] = table.to_dict(orient="records")
        report["table_all_samples_command"] = "python " + " ".join(sys.argv)
        print(table.to_string(index=False))
        Path(a.out).write_text(json.dumps(report, indent=1, default=float))
        return
    t = time.perf_counter()
    uf = repair.unit_fid(G, a.layer, feats, real, n_samples=a.samples, top=a.top)
    t_unit = time.perf_counter() - t
    manual = repair.load_flags(a.model, a.layer)
    flagged = sorted(set(uf.highest(a.flag)) | set(manual))
    table, pick = repair.repair_table(G, a.layer, feats, real, flagged, n_candidates=a.candidates,
                                      n_eval=a.eval, random_draws=a.draws)
    out = {"model": a.model, "layer": a.layer, "hardware": training.hardware(),
           "command": "python " + " ".join(sys.argv),
           "unit_fid_seconds": round(t_unit, 1), "samples": a.samples, "top": a.top,
           "unit_fid_top": uf.table().head(30).to_dict(orient="records"),
           "unit_fid_median": float(sorted(uf.fid)[len(uf.fid) // 2]),
           "flagged": flagged, "manual_flags": manual, "table": table.to_dict(orient="records"),
           "eval_images": int(len(pick))}
    out["grid"] = save_grid(G, a.layer, flagged, table, pick, Path(a.grid))
    print(table.to_string(index=False))
    print(json.dumps({k: out[k] for k in ("unit_fid_seconds", "unit_fid_median", "flagged")}))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()

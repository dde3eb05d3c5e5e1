"""Unit labels per scene type and layer under both labelling rules (the paper's Fig. 5 / 19).

For each shipped base model (town, room, lake) and each layer: how many units each concept
labels under the reference rule (the 2018 code's, the default) and under the max-IoU rule,
interpretable units only, objects and stuff apart; with ``--series`` also the town training
snapshots (Fig. 18) and with ``--variants`` the town variants at equal steps (Fig. 7)::

    python scripts/report_labels.py                       # -> docs/reports/labels.json
    python scripts/report_labels.py --samples 1000 --series --variants
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

import core
from core import studies, toyworld
from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]


def counts(res, layer, **opts) -> dict:
    u = res.units(layer, **opts)
    good = u[u.interpretable]
    objects = good[~good.concept.isin(toyworld.STUFF)]
    return {"interpretable": int(len(good)), "object_units": int(len(objects)),
            "concepts": int(good.concept.nunique()),
            "mean_iou": round(float(good.iou.mean()), 4) if len(good) else 0.0,
            "by_concept": {k: int(v) for k, v in good.concept.value_counts().items()},
            "all_labels": {k: int(v) for k, v in u.concept.value_counts().items()}}


def by_category(res, layer, seg) -> dict:
    """Per category (object / stuff): the units interpretable when each is labelled within it."""
    cats = core.label_categories(res.labels, seg)
    u = res.units_by_category(layer, cats)
    out = {}
    for name in cats:
        ok = u[f"{name}_interpretable"]
        out[name] = {"interpretable": int(ok.sum()),
                     "by_concept": {k: int(v) for k, v in u[ok][f"{name}_concept"].value_counts().items()}}
    return out


def measure(name, seg, layers, n, seed, bar) -> dict:
    G = core.load_generator(name)
    res = core.dissect(G, seg, layers, n, seed=seed, progress=lambda d, t: bar.set_postfix_str(f"{name} {d}/{t}"))
    out = {}
    for layer in layers:
        out[layer] = {"reference": counts(res, layer),
                      "reference_accuracy_0.75": counts(res, layer, pixel_accuracy=0.75),
                      "max-iou": counts(res, layer, labeling="max-iou"), "per_category": by_category(res, layer, seg)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--series", action="store_true", help="also the town training snapshots (Fig. 18)")
    ap.add_argument("--variants", action="store_true", help="also the town variants at equal steps (Fig. 7)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reports" / "labels.json")
    a = ap.parse_args(argv)
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    seg = core.load_segmenter("toyworld")
    groups = studies.zoo_groups(core.list_models())
    t0 = time.perf_counter()
    report = {"samples": a.samples, "seed": a.seed, "segmenter": "toyworld",
              "code_version": core.engine.dissection.CODE_VERSION,
              "geometry": "bilinear, half-pixel centres, border padding (the 2018 code's upsample_grid)",
              "rules": {"reference": "the 2018 code: best I/H over quantile levels > 0 with agreement > 0.8 on the "
                                     "threshold set, one threshold per unit; interpretable: the label's I/H > 0.01 "
                                     "and IoU > 0.05, both on the IoU set at that threshold",
                        "reference_accuracy_0.75": "the same, and the label's pixel accuracy > 0.75 (Fig. 5)",
                        "max-iou": "each concept at its own I/H threshold, label = highest IoU; interpretable: "
                                   "IoU > 0.05 and I/H > 0.01 on the IoU set"},
              "stuff": list(toyworld.STUFF), "scenes": {}}
    names = {scene: g["base"] for scene, g in groups.items()}
    if a.series:
        names.update({f"town@{step}": m for step, m in core.checkpoint_series("toyworld/town")})
    if a.variants:
        lineup = studies.variant_lineup(core.list_models(), groups["town"])
        names.update({f"variant:{m}": m for m in lineup["models"]})
    with tqdm(total=len(names), desc="models") as bar:
        for key, name in names.items():
            G = core.load_generator(name)
            layers = [ly for ly in core.hooks.layer_names(G) if not ly.startswith("output")]
            report["scenes"][key] = {"model": name, "layers": measure(name, seg, layers, a.samples, a.seed, bar)}
            bar.update()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    provenance.write_report(a.out, report, started=started)
    for key, r in report["scenes"].items():
        for layer, d in r["layers"].items():
            ref, mx = d["reference"], d["max-iou"]
            objs = {k: v for k, v in ref["by_concept"].items() if k not in toyworld.STUFF}
            print(f"{key:24s} {layer:8s} reference: {ref['interpretable']:3d} interpretable, {ref['object_units']:3d} "
                  f"object units {objs}   max-IoU: {mx['interpretable']:3d}, {mx['object_units']:3d} object units")
    print(f"written to {a.out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()

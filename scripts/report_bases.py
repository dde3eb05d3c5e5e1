"""Units vs PCA vs sparse-dictionary features on the toyworld zoo (issue #19), against toyworld's
exact labels: what each basis finds, what it costs, and what ablating / inserting it does.

Sections (each writes into the same JSON; run them apart with --only):

- ``dissect``: per model and layer, the SAE (fitted once, cached) and PCA of 1,000 samples
  (seed 0); dissections of fresh samples (seeds 1, 2, 3) in each basis under the reference
  labelling rule; per basis the distinct concepts and object concepts with an interpretable
  feature, and the best IoU per object concept, mean over seeds with a 95% t-interval.
- ``health``: FVU, mean L0, dead and dense features on held-out samples; FID of the spliced
  generator (the layer replaced by its reconstruction) vs the original, same samples; SAE
  training time; the time of dissecting all features vs the units over the same samples.
- ``causal``: percent of a concept's pixels removed by ablating its top-20 features (ACE- and
  IoU-ranked) vs its top-20 units, over seeds; door insertion on walls vs sky with features.

    python scripts/report_bases.py                              # -> docs/reports/bases.json
    python scripts/report_bases.py --only dissect --models town --layers layer4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import core
from core import toyworld
from core.base import provenance
from core.base.hooks import layer_units
from core.engine import bases, causal
from core.engine.intervention import insertion_constants
from core.studies import context, evaluation, over_seeds

ROOT = Path(__file__).resolve().parents[1]
CAUSAL = {"town": ["door", "window", "tree"], "room": ["bed"], "lake": ["boat"]}


def interval(values) -> dict:
    m, lo, hi = over_seeds.mean_interval([float(v) for v in values])
    return {"mean": m, "ci_low": lo, "ci_high": hi, "values": [float(v) for v in values]}


def fit(G, layer, a):
    t = time.perf_counter()
    sae = bases.fit_basis(G, layer, "sae", n_samples=a.fit_samples, steps=a.sae_steps,
                             progress=None)
    sae_s = sae.meta.get("seconds", time.perf_counter() - t)
    pca = bases.fit_basis(G, layer, "pca", n_samples=a.fit_samples)
    return {"units": None, "pca": pca, "sae": sae}, sae_s


def found(res, layer, stuff):
    """Concepts and object concepts with an interpretable row (the reference rule), the best IoU of
    those rows per object concept, and per object concept the best IoU of any row at that pair's own
    I/H threshold (is there a detector at all, labelled or not?)."""
    units = res.units(layer)
    good = units[units.interpretable]
    objects = good[~good.label.isin(stuff)]
    best = objects.groupby("label").iou.max().to_dict()
    iou = res.iou(layer)
    any_best = {c: float(iou[:, i].max()) for i, c in enumerate(res.labels) if i and c not in stuff
                and res.frequency(layer)[i] >= res.options.min_frequency}
    return {"concepts": int(good.label.nunique()), "objects": int(objects.label.nunique()),
            "interpretable": int(len(good)), "best_object_iou": {k: float(v) for k, v in best.items()},
            "best_detector_iou": any_best}


def section_dissect(out, a, seg):
    stuff = set(toyworld.STUFF)
    for model in a.models:
        G = core.load_generator(f"toyworld/{model}")
        for layer in a.layers:
            chosen, _ = fit(G, layer, a)
            per = {name: [] for name in chosen}
            for seed in a.seeds:
                for name, b in chosen.items():
                    res = core.dissect(G, seg, [layer], a.samples, seed=seed, basis=b)
                    per[name].append(found(res, layer, stuff))
            row = {}
            for name, runs in per.items():
                objs = sorted({o for r in runs for o in r["best_object_iou"]})
                row[name] = {"features": chosen[name].n_features if chosen[name] else layer_units(G, layer),
                             "concepts": interval([r["concepts"] for r in runs]),
                             "objects": interval([r["objects"] for r in runs]),
                             "interpretable": interval([r["interpretable"] for r in runs]),
                             "best_object_iou": {o: interval([r["best_object_iou"].get(o, 0.0) for r in runs])
                                                 for o in objs},
                             "best_detector_iou": {o: interval([r["best_detector_iou"].get(o, 0.0) for r in runs])
                                                   for o in sorted({o for r in runs for o in r["best_detector_iou"]})}}
            out.setdefault("dissect", {}).setdefault(model, {})[layer] = row
            print(f"{model} {layer}: " + "; ".join(
                f"{n} concepts {v['concepts']['mean']:.1f} objects {v['objects']['mean']:.1f}" for n, v in row.items()),
                flush=True)
            save(out, a)


def section_health(out, a, seg):
    """Per model and layer: the health numbers of the dictionary of each training seed (``--sae-seeds``;
    seed 0 is the shipped one), their mean and 95% interval over the seeds, PCA's, and the time of
    dissecting all features vs the units over the same samples (seed 0's dictionary)."""
    feats = core.load_features("toyworld")
    keys = ("fvu", "mean_l0", "dead", "dense", "fid_spliced")
    for model in a.models:
        G = core.load_generator(f"toyworld/{model}")
        real = evaluation.scene_stats(feats, model, G.resolution)
        base_fid = evaluation.generator_fid(G, feats, real, n=a.fid_samples, seed=11)
        for layer in a.layers:
            chosen, sae_s = fit(G, layer, a)
            held = bases.layer_activations(G, layer, 200, seed=99)
            row = {"sae_train_seconds": round(float(sae_s), 1), "fid_original": base_fid}
            per_seed = []
            for seed in a.sae_seeds:
                b = chosen["sae"] if seed == 0 else bases.fit_basis(
                    G, layer, "sae", n_samples=a.fit_samples, steps=a.sae_steps, seed=seed)
                h = bases.basis_health(b, held)
                h["fid_spliced"] = evaluation.generator_fid(bases.Spliced(G, layer, b), feats, real,
                                                            n=a.fid_samples, seed=11)
                h["seed"] = seed
                h["refit"] = b.meta.get("refit")
                per_seed.append(h)
            row["sae"] = dict(per_seed[0])
            row["sae_seeds"] = per_seed
            if len(per_seed) > 1:
                row["sae_over_seeds"] = {k: interval([h[k] for h in per_seed]) for k in keys}
            h = bases.basis_health(chosen["pca"], held)
            h["fid_spliced"] = evaluation.generator_fid(bases.Spliced(G, layer, chosen["pca"]), feats, real,
                                                        n=a.fid_samples, seed=11)
            row["pca"] = h
            times = {}
            for name in ("units", "sae"):
                t = time.perf_counter()
                core.dissect(G, seg, [layer], a.samples, seed=a.seeds[0], basis=chosen[name], cache=False)
                times[name] = time.perf_counter() - t
            row["dissect_seconds"] = {k: round(v, 1) for k, v in times.items()}
            row["dissect_ratio_sae_vs_units"] = round(times["sae"] / times["units"], 2)
            out.setdefault("health", {}).setdefault(model, {})[layer] = row
            fids = [h["fid_spliced"] for h in per_seed]
            print(f"{model} {layer}: sae fvu {row['sae']['fvu']:.3f} L0 {row['sae']['mean_l0']:.1f} dead "
                  f"{row['sae']['dead']} FID {base_fid:.3f} -> {', '.join(f'{f:.3f}' for f in fids)}; dissect ratio "
                  f"{row['dissect_ratio_sae_vs_units']}", flush=True)
            save(out, a)


def iou_top20(G, seg, layer, c, basis):
    """The 20 rows (units or features) of highest IoU for concept index ``c`` (the 400-sample dissection)."""
    iou = core.dissect(G, seg, [layer], 400, basis=basis).iou(layer)[:, c]
    return np.argsort(-iou, kind="stable")[:20].tolist()


def section_causal(out, a, seg):
    layer = "layer4"
    for model in a.models:
        G = core.load_generator(f"toyworld/{model}")
        chosen, _ = fit(G, layer, a)
        sae = chosen["sae"]
        for concept in CAUSAL.get(model, []):
            if a.causal_concepts and concept not in a.causal_concepts:
                continue
            c = seg.labels.index(concept)
            removed = {}
            for seed in a.causal_seeds:
                for name, b in (("units", None), ("sae", sae)):
                    if name not in a.causal_bases:
                        continue
                    ace = causal.ace(G, seg, layer, c, seed=seed, basis=b)
                    iou_rank = iou_top20(G, seg, layer, c, b)
                    curve = causal.ablation_curve(G, seg, layer, c, {"ace": ace.ranking[:20].tolist(),
                                                                            "iou": iou_rank},
                                                         counts=(20,), n_samples=a.curve_samples, seed=1000 + seed,
                                                         basis=b)
                    for r in curve.itertuples():
                        removed.setdefault(f"{name}-{r.ranking}", []).append(100 * r.removed)
            # the bases not asked keep their figures from the file (--causal-bases)
            out.setdefault("causal", {}).setdefault(model, {}).setdefault(concept, {}).update(
                {k: interval(v) for k, v in removed.items()})
            out["causal"][model][concept]["dictionary"] = {"name": sae.name, "refit": sae.meta.get("refit"),
                                                           "cache_key": sae.cache_key}
            print(f"{model} {concept}: " + ", ".join(f"{k} {np.mean(v):.1f}%" for k, v in removed.items()), flush=True)
            save(out, a)
    if not a.skip_context:
        section_context(out, a, seg)


def section_context(out, a, seg):
    """Door insertion by context (walls vs sky) on town layer4: the top 20 units or features by ACE (one
    ACE, seed 0, or a fresh one per image seed) or by IoU (the 400-sample dissection, as Paint picks them), a
    2x2-cell brush at
    ``--context-scale`` x k, seeds ``--context-seeds`` of ``--context-images`` images each. The Paint
    defaults (ACE, 3 x k) are stored as ``context_door[basis]``, others as ``[basis-ranking-xscale]``."""
    layer = "layer4"
    G = core.load_generator("toyworld/town")
    chosen, _ = fit(G, layer, a)
    ctx = out.get("context_door", {})
    for name, b in (("units", None), ("sae", chosen["sae"])):
        if name not in a.causal_bases:
            continue
        units_for = None
        k = insertion_constants(G, seg, layer, "door", basis=b).numpy()
        if a.context_ranking == "ace":
            units = causal.ace(G, seg, layer, "door", basis=b).ranking[:20].tolist()
        elif a.context_ranking == "ace-fresh":       # ACE seed i for image seed i: the causal section's ACE runs
            units = None

            def units_for(i, seed, b=b, k=k):
                u = causal.ace(G, seg, layer, "door", seed=i, basis=b).ranking[:20].tolist()
                return u, k[u]
        else:
            units = iou_top20(G, seg, layer, seg.labels.index("door"), b)
        bar = tqdm(desc=f"context {name}", unit="insertion")
        res = context.context_over_seeds(G, seg, layer, units, None if units is None else k[units], "door",
                                         seeds=a.context_seeds, units_for=units_for,
                                         n_images=a.context_images, brush=2, scale=a.context_scale, basis=b,
                                         progress=lambda d, t: (setattr(bar, "total", t), bar.update(d - bar.n)))
        bar.close()
        s = res["summary"]
        key = name if (a.context_ranking, a.context_scale) == ("ace", 3.0) else \
            f"{name}-{a.context_ranking}-x{a.context_scale:g}"
        ctx[key] = s.to_dict(orient="records")
        print(key, s[["context", "n", "added_px", "ci_low", "ci_high"]].to_string(index=False), flush=True)
    out["context_door"] = ctx
    save(out, a)


def save(out, a):
    """Into --out, keeping the sections this run does not compute (and the stamps of the runs that did)."""
    provenance.write_report(a.out, out, started=a.started, part=" ".join(a.only))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["town", "room", "lake"])
    ap.add_argument("--layers", nargs="+", default=["layer4", "layer6"])
    ap.add_argument("--only", nargs="+", default=["dissect", "health", "causal"],
                    choices=["dissect", "health", "causal", "context"],
                    help="sections; causal includes context unless --skip-context")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="dissection seeds (fresh samples)")
    ap.add_argument("--samples", type=int, default=500, help="samples per dissection")
    ap.add_argument("--fit-samples", type=int, default=1000)
    ap.add_argument("--sae-steps", type=int, default=2000)
    ap.add_argument("--fid-samples", type=int, default=1000)
    ap.add_argument("--sae-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="health: dictionaries of these training seeds (0: the shipped one)")
    ap.add_argument("--causal-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--curve-samples", type=int, default=100)
    ap.add_argument("--context-seeds", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--context-images", type=int, default=8)
    ap.add_argument("--skip-context", action="store_true", help="causal: leave out the door context study")
    ap.add_argument("--context-ranking", choices=["ace", "ace-fresh", "iou"], default="ace",
                    help="context: the 20 units / features inserted, by ACE (seed 0; ace-fresh: ACE seed i for "
                         "the i-th image seed) or by IoU")
    ap.add_argument("--context-scale", type=float, default=3.0, help="context: inserted at this multiple of k")
    ap.add_argument("--causal-bases", nargs="+", default=["units", "sae"], choices=["units", "sae"],
                    help="causal: the bases to measure; the others keep their figures from --out")
    ap.add_argument("--causal-concepts", nargs="+", help="causal: only these concepts (the others keep theirs)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reports" / "bases.json")
    a = ap.parse_args(argv)
    out = json.loads(a.out.read_text()) if a.out.exists() else {}
    out["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    a.started = provenance.stamp(None if argv is None else [__file__, *argv])
    seg = core.load_segmenter("toyworld")
    for name in a.only:
        {"dissect": section_dissect, "health": section_health, "causal": section_causal,
         "context": section_context}[name](out, a, seg)
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()

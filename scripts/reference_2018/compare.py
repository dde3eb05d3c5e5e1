"""Compare GANatomy's per-unit labels with the 2018 reference code's (labels_2018.json, from run_2018.py).

    python scripts/reference_2018/compare.py --tag v3 [--geometry aligned-corners]
    cd other-checkout && PYTHONPATH=. python /path/to/compare.py --tag old     # another commit's core

Runs core.dissect(G, seg, ["layer4", "layer6"], 2000, seed=0, cache=False) with the core Python
imports (the installed one, or PYTHONPATH's) and reports per layer: (a) same concept (best label,
interpretable or not) for all units,
(b) same label where both call the unit interpretable, (c) interpretable counts, (d) same
interpretable flag, (e) per-concept counts of interpretable units side by side, (f) the disagreeing
units with both sides' label / IoU / I-H. Writes compare_<tag>.json beside --ref.
"""
import argparse
import json
import os
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "cache", "reference_2018")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="run")
    ap.add_argument("--ref", default=os.path.join(OUT, "labels_2018.json"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", nargs="+", default=["layer4", "layer6"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--geometry", default=None, help="pass geometry= to core.dissect (repos that have the option)")
    ap.add_argument("--max-list", type=int, default=400, help="disagreeing units printed per layer")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    import core
    repo = os.path.dirname(os.path.dirname(os.path.abspath(core.__file__)))

    with open(args.ref) as f:
        ref = json.load(f)
    G = core.load_generator("toyworld/town")
    seg = core.load_segmenter("toyworld")
    t0 = time.time()
    kw = {"geometry": args.geometry} if args.geometry else {}
    res = core.dissect(G, seg, args.layers, args.n, seed=args.seed, cache=False, **kw)
    wall = time.time() - t0
    print(f"GANatomy ({repo}) dissect wall time: {wall:.1f} s; ref 2018 wall {ref.get('wall_seconds', 0):.1f} s "
          f"(settings {ref.get('settings')})")

    out = {"tag": args.tag, "repo": repo, "geometry": args.geometry, "ganatomy_wall_seconds": wall, "n": args.n,
           "seed": args.seed, "ref_settings": ref.get("settings"), "layers": {}}
    summary = []
    for layer in args.layers:
        u = res.units(layer)
        r = ref["layers"][layer]
        assert len(u) == len(r), (layer, len(u), len(r))
        n = len(r)
        g_concept = [str(c) for c in u["concept"]]
        g_int = [bool(b) for b in u["interpretable"]]
        g_iou = [float(x) for x in u["iou"]]
        g_iqr = [float(x) for x in u["iqr"]]
        r_concept = [x["label"] for x in r]
        r_int = [bool(x["interp"]) for x in r]
        same_concept = [a == b for a, b in zip(g_concept, r_concept)]
        both = [a and b for a, b in zip(g_int, r_int)]
        same_both = sum(s for s, b in zip(same_concept, both) if b)
        same_flag = sum(a == b for a, b in zip(g_int, r_int))
        # same final label ("" when not interpretable)
        g_label = [c if i else "" for c, i in zip(g_concept, g_int)]
        r_label = [c if i else "" for c, i in zip(r_concept, r_int)]
        same_label = sum(a == b for a, b in zip(g_label, r_label))
        cg = Counter(c for c, i in zip(g_concept, g_int) if i)
        cr = Counter(c for c, i in zip(r_concept, r_int) if i)
        concepts = sorted(set(cg) | set(cr), key=lambda c: (-(cg[c] + cr[c]), c))
        disagree = [{"unit": k, "ref_label": r_concept[k], "ref_interp": r_int[k], "ref_iou": r[k]["iou"],
                         "ref_iqr": r[k]["iou_iqr"], "ref_level": r[k]["level"],
                         "gan_label": g_concept[k], "gan_interp": g_int[k], "gan_iou": g_iou[k], "gan_iqr": g_iqr[k],
                         "gan_threshold": float(u["threshold"][k])}
                    for k in range(n) if not (same_concept[k] and g_int[k] == r_int[k])]
        rec = {"units": n,
               "a_same_concept": sum(same_concept), "a_same_concept_pct": 100.0 * sum(same_concept) / n,
               "b_both_interpretable": sum(both), "b_same_label_both_interp": same_both,
               "b_pct": 100.0 * same_both / max(sum(both), 1),
               "c_interp_2018": sum(r_int), "c_interp_ganatomy": sum(g_int),
               "d_same_flag": same_flag, "d_same_flag_pct": 100.0 * same_flag / n,
               "same_final_label": same_label, "same_final_label_pct": 100.0 * same_label / n,
               "e_concepts": {c: {"2018": cr[c], "ganatomy": cg[c]} for c in concepts},
               "f_disagree": disagree}
        out["layers"][layer] = rec
        summary.append((layer, rec))

        print(f"\n=== {layer}: {n} units ===")
        print(f"(a) same concept, all units:              {rec['a_same_concept']}/{n} = "
              f"{rec['a_same_concept_pct']:.1f}%")
        print(f"(b) same concept, both interpretable:     {same_both}/{sum(both)} = {rec['b_pct']:.1f}%")
        print(f"(c) interpretable units:                  2018 {sum(r_int)}   GANatomy {sum(g_int)}")
        print(f"(d) same interpretable flag:              {same_flag}/{n} = {rec['d_same_flag_pct']:.1f}%")
        print(f"    same final label ('' if not interp):  {same_label}/{n} = {rec['same_final_label_pct']:.1f}%")
        print("(e) interpretable units per concept (2018 / GANatomy):")
        print("    " + "  ".join(f"{c} {cr[c]}/{cg[c]}" for c in concepts))
        print(f"(f) {len(disagree)} units differ in concept or flag:")
        print(f"    {'unit':>4}  {'2018 label':<10} {'int':>3} {'iou':>6} {'iqr':>6}   "
              f"{'GANatomy':<10} {'int':>3} {'iou':>6} {'iqr':>6}")
        for d in disagree[:args.max_list]:
            print(f"    {d['unit']:>4}  {d['ref_label']:<10} {'y' if d['ref_interp'] else '-':>3} "
                  f"{d['ref_iou']:6.3f} {d['ref_iqr']:6.3f}   {d['gan_label']:<10} "
                  f"{'y' if d['gan_interp'] else '-':>3} "
                  f"{d['gan_iou']:6.3f} {d['gan_iqr']:6.3f}")

    print(f"\nsummary [{args.tag}]  layer: (a) same concept | (b) same label both interp | (c) interp 2018/GANatomy "
          f"| (d) same flag")
    for layer, rec in summary:
        print(f"  {layer}: {rec['a_same_concept_pct']:.1f}% ({rec['a_same_concept']}/{rec['units']}) | "
              f"{rec['b_pct']:.1f}% ({rec['b_same_label_both_interp']}/{rec['b_both_interpretable']}) | "
              f"{rec['c_interp_2018']}/{rec['c_interp_ganatomy']} | {rec['d_same_flag_pct']:.1f}%")
    path = os.path.join(os.path.dirname(os.path.abspath(args.ref)), f"compare_{args.tag}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()

"""Run the 2018 reference dissection (CSAILVision/gandissect `netdissect`, patched for today's
numpy/torch only: see README.md here) on GANatomy's toyworld/town generator and the toyworld
segmenter, on exactly GANatomy's samples:

    sample i = G(core.base.sampling.z_range(seed, i, i+1, G.z_dim))
    train_dataset (threshold set, collect_iqr)          = even i in 0 .. n-1
    dataset       (IoU set, collect_bincounts / labels) = odd  i in 1 .. n-1

It mirrors `python -m netdissect --gan --quantile_threshold iqr` (GeneratorSegRunner, segmentation
at half the image resolution via segment_batch(downsample=2), examples 20, iou_threshold 0.05,
iqr_threshold 0.01), with make_images=False and num_workers=0.

    PYTHONPATH=/path/to/patched/gandissect python scripts/reference_2018/run_2018.py \
        [--out cache/reference_2018/out] [--n 2000] [--seed 0] [--rng-seed 1]

(the folder on PYTHONPATH holds the patched 2018 ``netdissect`` package; GANatomy is the installed one).

Writes the 2018 outdir (dissect.json, per-layer npz) and labels_2018.json (--labels-json).
"""
import argparse
import json
import os
import shutil
import time

import torch

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "cache", "reference_2018")

LAYERS = ["layer4", "layer6"]


class ToySegmenter2018:
    """The toyworld segmenter in the 2018 BaseSegmenter format.

    segment_batch(images, downsample) returns [N, 1, H/d, W/d] long: GANatomy's label map at the
    dissection resolution, i.e. seg.segment(images) (at the input resolution) resized to the
    dissection size by core.engine.dissection._label_slots' nearest rule
    rows/cols (arange(size) * h) // size (for 64 -> 32: every other pixel, starting at 0).
    Categories: `--categories one` (default) puts every label in one category 'object' (the
    IoU / I-H denominators are then all pixels of the set, as in GANatomy); `objstuff` uses the
    2018 per-category denominators with categories object and stuff (segmenter.stuff)."""

    def __init__(self, seg, categories="one"):
        self.seg = seg
        self.labels = list(seg.labels)
        if categories == "one":
            self.catnames = ["object"]
            self.labelcats = [(name, "object") for name in self.labels]
        else:
            stuff = set(getattr(seg, "stuff", ()) or ())
            self.catnames = ["object", "stuff"]
            self.labelcats = [(self.labels[0], "object")] + [
                (name, "stuff" if name in stuff else "object") for name in self.labels[1:]]

    def get_label_and_category_names(self):
        return self.labelcats, self.catnames

    @torch.no_grad()
    def segment_batch(self, tensor_images, downsample=1):
        full = self.seg.segment(tensor_images).long()          # [N, H, W]
        h, w = full.shape[-2:]
        sy, sx = h // downsample, w // downsample
        ys = (torch.arange(sy, device=full.device) * h) // sy
        xs = (torch.arange(sx, device=full.device) * w) // sx
        return full[:, ys][:, :, xs][:, None]                  # [N, 1, sy, sx]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(OUT, "out"))
    ap.add_argument("--labels-json", default=os.path.join(OUT, "labels_2018.json"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rng-seed", type=int, default=1, help="torch RNG seed (the 2018 KLL quantiles are randomized)")
    ap.add_argument("--categories", choices=["one", "objstuff"], default="one")
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="reuse a previous outdir's cached npz files")
    args = ap.parse_args()
    from netdissect import GeneratorSegRunner, InstrumentedModel, dissect
    from netdissect.progress import verbose_progress
    from torch.utils.data import TensorDataset

    import core
    from core.base.sampling import z_range
    from core.engine.dissection import _label_slots

    verbose_progress(True)
    G = core.load_generator("toyworld/town").eval()
    seg = core.load_segmenter("toyworld").eval()
    segmenter = ToySegmenter2018(seg, args.categories)

    # z datasets: 4-d as the 2018 GAN path makes them (z_dataset_for_model: [N, z, 1, 1])
    z = z_range(args.seed, 0, args.n, G.z_dim)
    z_iou = z[1::2].view(-1, G.z_dim, 1, 1).clone()      # odd indices: IoU set
    z_thr = z[0::2].view(-1, G.z_dim, 1, 1).clone()      # even indices: threshold set
    dataset, train_dataset = TensorDataset(z_iou), TensorDataset(z_thr)

    model = InstrumentedModel(G)
    model.retain_layers(LAYERS)
    model.eval()

    # sanity checks: the wrapped model gives GANatomy's images / layers; the 2018 label map equals
    # GANatomy's label slot 0 (what core.dissect counts)
    from core.base.hooks import Trace
    with torch.no_grad():
        zz = z_range(args.seed, 0, 8, G.z_dim)
        with Trace(G, capture=LAYERS) as tr:
            ref_img = G(zz)
        img = model(zz.view(-1, G.z_dim, 1, 1))
        feats = model.retained_features()
        assert torch.equal(img, ref_img), "images differ"
        for name in LAYERS:
            assert torch.equal(feats[name], tr[name]), name
        s18 = segmenter.segment_batch(img, downsample=2)[:, 0]
        size = max(img.shape[-1] // 2, 1)
        sga = _label_slots(seg.segment(img), size, len(seg.labels), False, len(seg.labels))[:, 0].long()
        assert s18.shape == sga.shape and torch.equal(s18, sga), "label maps differ"
    print(f"checks ok: images, layers {[tuple(feats[n].shape) for n in LAYERS]}, label map {tuple(s18.shape)}")

    os.makedirs(os.path.dirname(os.path.abspath(args.labels_json)), exist_ok=True)
    if os.path.isdir(args.out) and not args.keep:
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.rng_seed)
    settings = {"gan": True, "quantile_threshold": "iqr", "generator": "toyworld/town", "segmenter": "toyworld",
                    "n": args.n, "seed": args.seed, "categories": args.categories, "rng_seed": args.rng_seed,
                    "batch_size": args.batch_size, "num_workers": 0, "examples": 20, "torch": torch.__version__}
    t0 = time.time()
    dissect(args.out, model, dataset,
            train_dataset=train_dataset,
            segrunner=GeneratorSegRunner(segmenter),
            examples_per_unit=20,
            netname="toyworld/town",
            quantile_threshold="iqr",
            meta={},
            merge=None,
            make_images=False,
            make_labels=True,
            make_maxiou=False,
            make_covariance=False,
            make_report=True,
            make_row_images=False,
            make_single_images=True,
            rank_all_labels=False,
            batch_size=args.batch_size,
            num_workers=0,
            settings=settings)
    wall = time.time() - t0
    print(f"2018 dissect wall time: {wall:.1f} s")

    with open(os.path.join(args.out, "dissect.json")) as f:
        rep = json.load(f)
    out = {"settings": settings, "wall_seconds": wall, "iou_threshold": rep.get("iou_threshold"),
           "iqr_threshold": rep.get("iqr_threshold"), "labels": [name for name, _ in segmenter.labelcats],
           "layers": {}}
    for lrec in rep["layers"]:
        out["layers"][lrec["layer"]] = [
            {"unit": u["unit"], "label": u["iou_label"], "cat": u["iou_cat"], "iou": u["iou"],
             "iou_iqr": u["iou_iqr"], "interp": bool(u["interp"]), "level": u["level"],
             "iqr": u.get("iqr"), "iqr_label": u.get("iqr_label"), "iqr_iou": u.get("iqr_iou"),
             "iqr_quantile": u.get("iqr_quantile")}
            for u in lrec["units"]]
        n_int = sum(u["interp"] for u in out["layers"][lrec["layer"]])
        print(f"{lrec['layer']}: {len(lrec['units'])} units, {n_int} interpretable")
    with open(args.labels_json, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", args.labels_json)


if __name__ == "__main__":
    main()

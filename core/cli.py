"""Command line: ``ganatomy <command> ...``, the same as ``python -m core <command> ...`` (also
under ``torchrun``).

    ganatomy models                                        # shipped, published and added models
    ganatomy fetch progan/churchoutdoor                    # download a published model (on request)
    ganatomy dissect --model toyworld/town --layers layer4 layer6 --samples 2000 --out DIR
    torchrun --nproc_per_node=2 -m core dissect --model toyworld/town --samples 2000 --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from core.base.errors import GanatomyError
from core.base.hooks import layer_names
from core.engine.dissection import dissect
from core.engine.repair import cached_unit_fid
from core.models import (
    architectures,
    fetch,
    list_models,
    load_features,
    load_generator,
    load_segmenter,
    models_dir,
    status,
)
from core.outputs.report import write_outputs
from core.studies import evaluation

__all__ = ["main"]


def _die(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _init_distributed():
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def cmd_models(a):
    for name, card in list_models().items():
        fid = card.get("eval_fid_10k_real", card.get("fid"))
        print(f"{name:32s} res {card.get('resolution', '?')}  steps {card.get('steps', '?')}  FID {fid}")
    print(f"\npublished and added models (weights in {models_dir()}):")
    for r in status():
        state = "available" if r["available"] else "missing  "
        print(f"{r['name']:32s} {r['kind']:9s} {state} {r['path']}")


def cmd_fetch(a):
    def progress(done, total):
        if total:
            print(f"\r{done / 2 ** 20:8.1f} / {total / 2 ** 20:.1f} MiB", end="", file=sys.stderr)

    try:
        path = fetch(a.name, download=True, progress=progress)
    except GanatomyError as e:
        _die(str(e))
    print(f"\n{a.name}: {path}", file=sys.stderr)


def cmd_dissect(a):
    rank, world = _init_distributed()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        G = load_generator(a.model, device=device, arch=a.arch, download=a.download)
        seg = load_segmenter(a.segmenter, device=device, download=a.download)
    except (GanatomyError, OSError) as e:
        _die(str(e))
    layers = a.layers or [n for n in layer_names(G) if not n.startswith("output")]
    bar = tqdm(total=a.samples, desc="dissect", unit="img", disable=rank != 0)

    def progress(done, total):
        bar.n = min(done, total)
        bar.refresh()

    t0 = time.perf_counter()
    try:
        res = dissect(G, seg, layers, a.samples, seed=a.seed, batch_size=a.batch_size, device=device,
                        progress=progress, resolution=a.resolution, bins=a.bins, parts=a.parts,
                        iou_threshold=a.iou_threshold, iqr_threshold=a.iqr_threshold, topk=a.topk,
                        cache=not a.no_cache)
    except GanatomyError as e:
        _die(str(e))
    bar.close()
    unit_options = {"labeling": a.labeling}
    if a.pixel_accuracy is not None:
        if a.labeling != "reference":
            _die("--pixel-accuracy needs --labeling reference")
        unit_options["pixel_accuracy"] = a.pixel_accuracy
    if a.exclude_fid_above is not None and rank == 0:
        if a.fid_samples < 20:
            _die(f"--fid-samples must be at least 20 (each unit's FID uses its top tenth), got {a.fid_samples}")
        unit_options["exclude"] = _high_fid_units(G, layers, a.exclude_fid_above, device, a.fid_samples)
    if rank == 0:
        paths = write_outputs(res, a.out, generator=G, strip_units=a.strip_units, **unit_options)
        print(res.summary().to_string(index=False))
        print(json.dumps({"seconds": round(time.perf_counter() - t0, 2), "cached": res.meta.get("cached"),
                          **{k: str(v) for k, v in paths.items()}}))
    if world > 1:
        torch.distributed.destroy_process_group()


def _high_fid_units(G, layers, limit: float, device, n: int) -> dict[str, list[int]]:
    """{layer: units whose unit FID (toyworld feature space; ``n`` images, each unit's top tenth,
    against ``n`` real scenes) exceeds ``limit``} (S-6.3's filter)."""
    feats = load_features("toyworld", device=device)
    scene = (getattr(G, "meta", None) or {}).get("scene", "town")
    size = int(G(torch.zeros(1, G.z_dim, device=device)).shape[-1])
    real = evaluation.cached_real_stats(feats, scene, size, n=n, device=device)
    out = {}
    for layer in tqdm(layers, desc="unit FID"):
        uf = cached_unit_fid(G, layer, feats, real, n_samples=n, top=n // 10)
        out[layer] = [int(u) for u in np.nonzero(uf.fid > limit)[0]]
        print(f"{layer}: {len(out[layer])} units with unit FID above {limit} left out of labelling", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="ganatomy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list shipped, published and added models").set_defaults(fn=cmd_models)
    f = sub.add_parser("fetch", help="download a published model's weights into cache/models (verified)")
    f.add_argument("name", help="e.g. progan/churchoutdoor, segformer/ade20k-b0")
    f.set_defaults(fn=cmd_fetch)
    d = sub.add_parser("dissect", help="dissect generator layers against a segmenter")
    d.add_argument("--model", default="toyworld/town",
                   help="shipped / published / added name, or a ProGAN, StyleGAN2 or BigGAN checkpoint path")
    d.add_argument("--arch", default=None, choices=list(architectures("generator")),
                   help="architecture of a checkpoint path (default: detected from its keys)")
    d.add_argument("--download", action="store_true",
                   help="download a missing published model (and segmenter) into cache/models")
    d.add_argument("--segmenter", default="toyworld", help="toyworld, a published / added name, or a path")
    d.add_argument("--layers", nargs="+", default=None, help="default: every layer but the output")
    d.add_argument("--samples", type=int, default=2000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--batch-size", type=int, default=None)
    d.add_argument("--resolution", type=int, default=None, help="default: half the image size")
    d.add_argument("--bins", type=int, default=256)
    d.add_argument("--parts", action="store_true", help="object-part expansion (c-t, c-b, c-l, c-r)")
    d.add_argument("--iou-threshold", type=float, default=0.05)
    d.add_argument("--iqr-threshold", type=float, default=0.01, help="interpretable also needs I/H above this")
    d.add_argument("--topk", type=int, default=20)
    d.add_argument("--labeling", choices=["reference", "max-iou"], default="reference",
                   help="how a unit is labelled: the paper's 2018 code (I/H over quantile levels, one threshold "
                        "per unit; default) or the concept of highest IoU")
    d.add_argument("--pixel-accuracy", type=float, default=None,
                   help="also ask the label's pixel accuracy above this (the paper's Fig. 5: 0.75)")
    d.add_argument("--exclude-fid-above", type=float, default=None, metavar="X",
                   help="leave out of labelling the units whose unit FID exceeds X (supplement S-6.3; toyworld "
                        "feature space)")
    d.add_argument("--fid-samples", type=int, default=2000,
                   help="generated images for --exclude-fid-above (each unit's top tenth; as many real scenes)")
    d.add_argument("--strip-units", type=int, default=40, help="units per layer shown with image strips")
    d.add_argument("--device", default=None)
    d.add_argument("--no-cache", action="store_true")
    d.add_argument("--out", required=True)
    d.set_defaults(fn=cmd_dissect)
    a = ap.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()

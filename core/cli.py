"""Command line: ``ganatomy <command> ...``, the same as ``python -m core <command> ...`` (also
under ``torchrun``).

    ganatomy models                                        # shipped, published and added models
    ganatomy fetch progan/churchoutdoor                    # download a published model (on request)
    ganatomy dissect --model toyworld/town --layers layer4 layer6 --samples 2000 --out DIR
    ganatomy context --model toyworld/town --layer layer4 --concept door --out DIR   # where it can go
    torchrun --nproc_per_node=2 -m core dissect --model toyworld/town --samples 2000 --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.base.errors import ArgumentTypeError, GanatomyError, InputError, UnknownNameError
from core.base.hooks import layer_names, layer_shape, resolve_layers
from core.base.validate import (
    check_device,
    check_float,
    check_int,
    check_samples,
    check_units,
    concept_index,
    unit_list,
)
from core.engine.bases import fit_basis
from core.engine.dissection import dissect, label_categories
from core.engine.intervention import insertion_constants
from core.engine.repair import unit_fid
from core.models import (
    architectures,
    card_quality,
    fetch,
    list_models,
    load_features,
    load_generator,
    load_segmenter,
    models_dir,
    status,
)
from core.outputs.report import write_outputs
from core.studies import context, evaluation
from core.studies.units import concept_units

__all__ = ["main"]


def _die(msg: str, code: int = 2):
    """One line ``error: ...`` on stderr, exit status 2 (a refusal; 1 would be a crash)."""
    print("error: " + " ".join(str(msg).split()), file=sys.stderr)
    raise SystemExit(code)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are GanatomyErrors: :func:`main` prints them as one line."""

    def error(self, message):
        hint = f"see `{self.prog} --help`"
        if "invalid choice" in message:
            raise UnknownNameError(message, fix=hint)
        if "invalid int value" in message or "invalid float value" in message:
            raise ArgumentTypeError(message, fix=hint)
        raise InputError(message, fix=hint)


def _flag(flag: str, check, *args, **kw):
    """``check(*args, **kw)``, its refusal prefixed with the command-line flag it came from."""
    try:
        return check(*args, **kw)
    except GanatomyError as e:
        raise type(e)(f"{flag}: {e}", fix=e.fix) from None


class _LazyBar:
    """A tqdm bar created at the first progress report: a refusal before any work prints only its
    one error line."""

    def __init__(self, **kw):
        self.kw, self.bar = kw, None

    def set(self, done, total):
        if self.bar is None:
            self.bar = tqdm(total=total, **self.kw)
        self.bar.total = total
        self.bar.n = min(done, total)
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_device(device):
    check_device("--device", device, "--device cpu")


def _check_out(out: str):
    if not out.strip():
        raise InputError("--out is empty", fix="give --out a directory to write to")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {out!r} is a file, not a directory", fix="give --out a new or existing directory")
    try:                                  # writable, checked before anything is computed
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".ganatomy-write-check-"):
            pass
    except OSError as e:
        raise InputError(f"--out {out!r} cannot be written ({e.strerror or e})",
                         fix="give --out a directory you can write to") from None


def _check_dissect_flags(a):
    """Every flag of ``dissect``, checked before any model is loaded."""
    _flag("--samples", check_samples, "n_samples", a.samples, 2,
          what="a positive integer (at least 2: even samples choose thresholds, odd samples measure IoU)",
          fix="give --samples 2 or more (the paper uses 10000)")
    if a.batch_size is not None:
        _flag("--batch-size", check_int, "batch_size", a.batch_size, 1)
    if a.resolution is not None:
        _flag("--resolution", check_int, "resolution", a.resolution, 1)
    _flag("--bins", check_int, "bins", a.bins, 1)
    _flag("--topk", check_int, "topk", a.topk, 0)
    _flag("--iou-threshold", check_float, "iou_threshold", a.iou_threshold, None, 1)
    _flag("--iqr-threshold", check_float, "iqr_threshold", a.iqr_threshold, None, 1)
    if a.pixel_accuracy is not None:
        _flag("--pixel-accuracy", check_float, "pixel_accuracy", a.pixel_accuracy, 0, 1)
        if a.labeling != "reference":
            raise InputError("--pixel-accuracy needs --labeling reference", fix="drop --pixel-accuracy or use "
                             "--labeling reference")
    if a.exclude_fid_above is not None:
        _flag("--exclude-fid-above", check_float, "exclude_fid_above", a.exclude_fid_above)
        if a.fid_samples < 20:
            raise InputError(f"--fid-samples must be at least 20 (each unit's FID uses its top tenth), got "
                             f"{a.fid_samples}", fix="give --fid-samples 20 or more (default 2000)")
        _flag("--fid-samples", check_samples, "fid_samples", a.fid_samples, 20, images_per_sample=2)
    _flag("--strip-units", check_int, "strip_units", a.strip_units, 0)
    _flag("--basis-samples", check_samples, "n_samples", a.basis_samples, 2)
    _flag("--sae-expansion", check_float, "expansion", a.sae_expansion, 0, lo_open=True)
    _flag("--sae-l1", check_float, "l1", a.sae_l1, 0)
    _flag("--sae-steps", check_int, "steps", a.sae_steps, 1)
    if a.layers is not None and len(set(a.layers)) != len(a.layers):
        raise InputError(f"--layers names {', '.join(sorted({x for x in a.layers if a.layers.count(x) > 1}))} more "
                         "than once", fix="give each layer once")
    _check_device(a.device)
    _check_out(a.out)


def _init_distributed():
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _layer_span(names: list[str]) -> str:
    """``layer1..layer10`` for consecutive numbered layers, else the names."""
    import re
    m = [re.fullmatch(r"(.*?)(\d+)", n) for n in names]
    if names and all(m) and len({x.group(1) for x in m}) == 1 and \
            [int(x.group(2)) for x in m] == list(range(int(m[0].group(2)), int(m[0].group(2)) + len(m))):
        return f"{names[0]}..{names[-1]}"
    return ", ".join(names)


def cmd_models(a):
    """The shipped zoo (card FIDs as every page shows them, dissectable layers), then the rest."""
    for name, card in list_models().items():
        q = card_quality(card)
        try:
            layers = _layer_span([n for n in layer_names(load_generator(name)) if not n.startswith("output")])
        except GanatomyError as e:
            layers = f"cannot load ({str(e)[:60]})"
        print(f"{name:28s} res {card.get('resolution', '?')}  steps {card.get('steps', '?'):>5}  "
              f"FID {q['fid'] if q['fid'] is not None else '-'} ({q['source'] or 'not evaluated'})  layers {layers}")
    print(f"\npublished and added models (weights in {models_dir()}):")
    for r in status():
        state = "available" if r["available"] else "missing  "
        print(f"{r['name']:32s} {r['kind']:9s} {state} {r['path']}")


def cmd_fetch(a):
    def progress(done, total):
        if total:
            print(f"\r{done / 2 ** 20:8.1f} / {total / 2 ** 20:.1f} MiB", end="", file=sys.stderr)

    try:
        path = fetch(a.name, download=True, progress=progress, trust=a.trust, sha256=a.sha256)
    except GanatomyError as e:
        _die(str(e))
    print(f"\n{a.name}: {path}", file=sys.stderr)


def cmd_dissect(a):
    _check_dissect_flags(a)
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
    bar = _LazyBar(desc="dissect", unit="img", disable=rank != 0)    # shown from the first batch on

    def progress(done, total):
        bar.set(done, total)

    t0 = time.perf_counter()
    try:
        chosen = {}
        if a.basis != "units":
            for layer in resolve_layers(G, layers):
                fit = _LazyBar(desc=f"{a.basis} {layer}", unit="step", disable=rank != 0)
                chosen[layer] = fit_basis(G, layer, a.basis, n_samples=a.basis_samples, expansion=a.sae_expansion,
                                          l1=a.sae_l1, steps=a.sae_steps, cache=not a.no_cache,
                                          progress=lambda s, t, loss, fit=fit: fit.set(s, t))
                fit.close()
        res = dissect(G, seg, layers, a.samples, seed=a.seed, batch_size=a.batch_size, device=device,
                      progress=progress, resolution=a.resolution, bins=a.bins, parts=a.parts,
                      iou_threshold=a.iou_threshold, iqr_threshold=a.iqr_threshold, topk=a.topk,
                      geometry=a.geometry,
                      cache=not a.no_cache, basis=chosen or None)
    except GanatomyError as e:
        _die(str(e))
    bar.close()
    unit_options = {"labeling": a.labeling}
    if a.pixel_accuracy is not None:
        unit_options["pixel_accuracy"] = a.pixel_accuracy
    if a.exclude_fid_above is not None and rank == 0:
        unit_options["exclude"] = _high_fid_units(G, layers, a.exclude_fid_above, device, a.fid_samples,
                                                  chosen or None)
    if rank == 0:
        paths = write_outputs(res, a.out, generator=G, strip_units=a.strip_units,
                              categories=label_categories(res.labels, seg) or None, bases=chosen or None,
                              **unit_options)
        print(res.summary().to_string(index=False))
        print(json.dumps({"seconds": round(time.perf_counter() - t0, 2), "cached": res.meta.get("cached"),
                          **{k: str(v) for k, v in paths.items()}}))
    if world > 1:
        torch.distributed.destroy_process_group()


def cmd_context(a):
    """The context study of a concept's units (Fig. 11) with toyworld's classes and rules, over
    several seeds: writes ``context.json`` (and ``insertions.csv``) under ``--out``."""
    _check_context_flags(a)
    rank, world = _init_distributed()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        G = load_generator(a.model, device=device, download=a.download)
        seg = load_segmenter(a.segmenter, device=device, download=a.download)
        layer = resolve_layers(G, [a.layer])[0]
        c = concept_index(seg, a.concept)
        n_units, h, w = layer_shape(G, layer)
        if a.brush > min(h, w):      # before ACE and the insertion constants
            raise InputError(f"--brush: brush must be a whole number of cells from 1 to {min(h, w)} (the {layer} "
                             f"grid is {h}x{w}), got {a.brush}", fix=f"give --brush from 1 to {min(h, w)}")
        if a.units:
            units, ranking = check_units(a.units, n_units, layer), "given"
        else:
            bar = _LazyBar(desc=f"{a.ranking.upper()} {a.concept}")
            units = concept_units(G, seg, layer, c, ranking=a.ranking, n=a.n_units, dissect_samples=a.dissect_samples,
                                  n_steps=a.ace_steps, sampling=a.ace_sampling, progress=bar.set)
            bar.close()
            ranking = f"ACE ({a.ace_steps} steps, sampling {a.ace_sampling})" if a.ranking == "ace" else "IoU"
        k = insertion_constants(G, seg, layer, c, n_samples=a.k_samples).numpy()
        quantiles = dissect(G, seg, [layer], a.dissect_samples).quantiles(layer) if a.scale == "p99" else None
        value, scale = context.unit_values(k, units, "p99" if a.scale == "p99" else float(a.scale), quantiles)
        bar = _LazyBar(desc="context", unit="insertion")

        def progress(d, t):
            bar.set(d, t)

        units_for = None
        if a.fresh_ace:
            if a.units or a.ranking != "ace":
                raise InputError("--fresh-ace needs --ranking ace and no --units", fix="drop --units / --ranking iou")

            def units_for(i, seed):
                fit = _LazyBar(desc=f"ACE {a.concept} (seed {i})")
                u = concept_units(G, seg, layer, c, n=a.n_units, dissect_samples=a.dissect_samples, seed=i,
                                  n_steps=a.ace_steps, sampling=a.ace_sampling, progress=fit.set)
                fit.close()
                return u, context.unit_values(k, u, "p99" if a.scale == "p99" else float(a.scale), quantiles)[0]
            ranking = f"ACE ({a.ace_steps} steps, sampling {a.ace_sampling}), a fresh one per seed (ACE seeds " \
                      f"0..{len(a.seeds) - 1})"
        t0 = time.perf_counter()
        out = context.context_over_seeds(G, seg, layer, units, value, a.concept, seeds=a.seeds, n_images=a.images,
                                         brush=a.brush, scale=scale, progress=progress, units_for=units_for)
        bar.close()
    except (GanatomyError, ValueError) as e:
        _die(str(e))
    summary = out["summary"]
    report = {"model": a.model, "layer": layer, "concept": a.concept, "segmenter": a.segmenter,
              "settings": {"units": units if not a.fresh_ace else out["units"], "ranking": ranking, "brush_cells": a.brush, "scale": a.scale,
                           "seeds": list(a.seeds), "images_per_seed": a.images, "k_samples": a.k_samples,
                           "grid": list(layer_shape(G, layer)[1:])},
              "classes": summary.to_dict(orient="records"),
              "ratios": {f"{x} / {y}": context.added_ratio(summary, x, y) for x in ("wall at its ground line",)
                         for y in ("sky", "road", "upper wall")},
              "seconds": round(time.perf_counter() - t0, 1)}
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "context.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    out["rows"].to_csv(outdir / "insertions.csv", index=False)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(json.dumps({"out": str(outdir / "context.json"), "seconds": report["seconds"]}))


def _check_context_flags(a):
    """Every flag of ``context``, checked before any model is loaded."""
    if a.units is not None:
        units = _flag("--units", unit_list, a.units, "units")
        if not units:
            raise InputError("--units is empty", fix="give --units one or more unit indices, or leave it out")
    _flag("--n-units", check_int, "n_units", a.n_units, 1)
    _flag("--ace-steps", check_samples, "ace_steps", a.ace_steps, 1, images_per_sample=12)
    _flag("--dissect-samples", check_samples, "dissect_samples", a.dissect_samples, 2)
    _flag("--k-samples", check_samples, "k_samples", a.k_samples, 1)
    _flag("--brush", check_int, "brush", a.brush, 1, what="a whole number of cells >= 1")
    if a.scale != "p99":
        try:
            scale = float(a.scale)
        except ValueError:
            raise InputError(f"--scale must be a number or p99, got {a.scale!r}", fix="e.g. --scale 3 or --scale p99"
                             ) from None
        _flag("--scale", check_float, "scale", scale, 0, lo_open=True, what="a positive number or p99")
    if not a.seeds:
        raise InputError("--seeds is empty", fix="give --seeds one or more whole numbers, e.g. --seeds 4 5 6")
    _flag("--images", check_samples, "n_images", a.images, 1, images_per_sample=64 * len(a.seeds))
    _check_device(a.device)
    _check_out(a.out)


def _high_fid_units(G, layers, limit: float, device, n: int, bases: dict | None = None) -> dict[str, list[int]]:
    """{layer: units whose unit FID (toyworld feature space; ``n`` images, each unit's top tenth,
    against ``n`` real scenes) exceeds ``limit``} (S-6.3's filter); with ``bases`` {layer: Basis},
    the features of that layer's basis, each by its own FID."""
    feats = load_features("toyworld", device=device)
    scene = (getattr(G, "meta", None) or {}).get("scene", "town")
    size = int(G(torch.zeros(1, G.z_dim, device=device)).shape[-1])
    real = evaluation.scene_stats(feats, scene, size, n=n, device=device)
    out = {}
    for layer in tqdm(layers, desc="unit FID"):
        basis = (bases or {}).get(layer)
        uf = unit_fid(G, layer, feats, real, n_samples=n, top=n // 10, basis=basis)
        out[layer] = [int(u) for u in np.nonzero(uf.fid > limit)[0]]
        what = "features" if basis is not None and basis.kind != "units" else "units"
        print(f"{layer}: {len(out[layer])} {what} with FID above {limit} left out of labelling", file=sys.stderr)
    return out


def main(argv=None):
    """Run one command. A refusal (bad flags, unknown names, anything a GanatomyError says) prints
    one line ``error: ...`` on stderr and exits with status 2."""
    try:
        _main(argv)
    except GanatomyError as e:
        _die(str(e))


def _main(argv=None):
    ap = _Parser(prog="ganatomy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list shipped, published and added models").set_defaults(fn=cmd_models)
    f = sub.add_parser("fetch", help="download a published model's weights into cache/models (verified)")
    f.add_argument("name", help="e.g. progan/churchoutdoor, segformer/ade20k-b0")
    f.add_argument("--sha256", default=None, help="the weights file's full SHA-256 (64 hex digits), where the "
                                                  "catalog knows only a prefix")
    f.add_argument("--trust", action="store_true", help="accept the source on first use where the catalog knows "
                                                        "no full SHA-256; the digest received is pinned")
    f.set_defaults(fn=cmd_fetch)
    d = sub.add_parser("dissect", help="dissect generator layers against a segmenter")
    d.add_argument("--model", default="toyworld/town",
                   help="shipped / published / added name, or a ProGAN, StyleGAN2, BigGAN or DCGAN checkpoint path")
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
    d.add_argument("--geometry", choices=["half-pixel", "aligned-corners"], default="half-pixel",
                   help="how featuremaps are stretched to the segmentation: half-pixel centres (default; the "
                        "2018 code's) or aligned corners (GANatomy before dissect-v3)")
    d.add_argument("--basis", choices=["units", "pca", "sae"], default="units",
                   help="what a row is: a unit (channel), a principal direction, or a sparse-dictionary feature "
                        "(fitted once per layer and cached; units.csv then has one row per feature)")
    d.add_argument("--basis-samples", type=int, default=1000, help="samples the PCA / SAE is fitted on")
    d.add_argument("--sae-expansion", type=float, default=4.0, help="SAE features per unit (default 4)")
    d.add_argument("--sae-l1", type=float, default=0.2, help="the SAE's L1 weight on scaled inputs (default 0.2)")
    d.add_argument("--sae-steps", type=int, default=2000, help="SAE training steps (default 2000)")
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
    c = sub.add_parser("context", help="where a concept's units can insert it, by context (Fig. 11), over seeds")
    c.add_argument("--model", default="toyworld/town")
    c.add_argument("--segmenter", default="toyworld")
    c.add_argument("--download", action="store_true")
    c.add_argument("--layer", default="layer4")
    c.add_argument("--concept", required=True)
    c.add_argument("--units", type=int, nargs="+", default=None, help="default: the concept's top --n-units units")
    c.add_argument("--ranking", choices=["ace", "iou"], default="ace", help="how the units are chosen (default ACE)")
    c.add_argument("--n-units", type=int, default=20)
    c.add_argument("--ace-steps", type=int, default=150)
    c.add_argument("--ace-sampling", choices=["paper", "image"], default="paper", help="ACE's location sampling")
    c.add_argument("--dissect-samples", type=int, default=500)
    c.add_argument("--k-samples", type=int, default=100, help="samples for the insertion constants k (S-6.4)")
    c.add_argument("--brush", type=int, default=2, help="brush size in featuremap cells (default 2: 2x2 cells)")
    c.add_argument("--scale", default="3", help="insertion value: a multiple of k (default 3) or p99 (GANPaint)")
    c.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    c.add_argument("--fresh-ace", action="store_true",
                   help="a fresh ACE per seed (ACE seed 0, 1, 2, ... for the 1st, 2nd, 3rd image seed): the intervals "
                        "then cover the choice of units too")
    c.add_argument("--images", type=int, default=8, help="images per seed")
    c.add_argument("--device", default=None)
    c.add_argument("--out", required=True)
    c.set_defaults(fn=cmd_context)
    v = sub.add_parser("serve", help="serve the dashboard with the repository's settings, wherever it is started "
                                     "(address, upload cap, file watcher: .streamlit/config.toml)")
    v.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    v.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                   help="more Streamlit flags after --, e.g. -- --server.port 8600")
    v.set_defaults(fn=cmd_serve)
    a = ap.parse_args(argv)
    a.fn(a)


def serve_command(extra=()) -> tuple[list[str], Path]:
    """(the command, the folder to run it in) that serves the dashboard: Streamlit reads
    ``.streamlit/config.toml`` and ``secrets.toml`` from the folder it starts in, so it starts in
    the repository, and the config's settings are also given as flags (they hold even if Streamlit's
    search changes)."""
    import tomllib
    root = Path(__file__).resolve().parents[1]
    app = root / "dashboard" / "app.py"
    if not app.is_file():
        raise InputError(f"the dashboard is not here ({app}): `ganatomy serve` needs the repository (a clone, "
                         "installed with pip install -e .)", fix="run it from a clone of the repository")
    flags = []
    cfg = root / ".streamlit" / "config.toml"
    if cfg.is_file():
        for section, opts in tomllib.loads(cfg.read_text()).items():
            for key, value in (opts.items() if isinstance(opts, dict) else ()):
                if isinstance(value, (str, int, float, bool)):
                    flags.append(f"--{section}.{key}={str(value).lower() if isinstance(value, bool) else value}")
    extra = [x for x in extra if x != "--"]
    return [sys.executable, "-m", "streamlit", "run", str(app), *flags, *extra], root


def cmd_serve(a):
    cmd, root = serve_command(a.streamlit_args)
    if a.dry_run:
        print(f"cd {root} && " + " ".join(cmd))
        return
    os.chdir(root)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()

"""Command line: ``ganatomy <command> ...``, the same as ``python -m core <command> ...`` (also
under ``torchrun``). One subcommand per measurement of the dashboard's pages (docs/cli.md maps
page to command), each a thin wrapper over the function the page calls; ``--json`` prints one
JSON object (command, arguments, result) on stdout and nothing else, ``--out DIR`` writes it
to ``DIR/<command>.json`` (tables also as CSV); progress bars go to stderr.

    ganatomy models                                        # shipped, published and added models
    ganatomy fetch progan/churchoutdoor                    # download a published model (on request)
    ganatomy dissect --model toyworld/town --layers layer4 layer6 --samples 2000 --out DIR
    ganatomy ace --model toyworld/town --layer layer4 --concept door --json     # causal units (eq. 5-6)
    ganatomy curve --model toyworld/town --layer layer4 --concept door --seeds 0 1 2 --json
    ganatomy unit-fid --model toyworld/town --layer layer4 --samples 2000 --top 200 --json
    ganatomy omissions --model my-gan --real-dir photos/ --samples 500 --out DIR   # vs your real images
    ganatomy invert --model toyworld/town --scene town --n 8 --steps 100 --out DIR  # layer inversion
    ganatomy invert --model toyworld/town --images photos/ --out DIR                # your own images
    ganatomy precompute --model my-gan --layers layer4 layer6 --bases sae   # the pages, instant
    ganatomy train --scene lake --steps 2000 --out runs/lake              # resumable (--resume)
    ganatomy train --scene lake --out runs/lake --compact-to carry/lake.pt  # a small copy to carry
    torchrun --nproc_per_node=2 -m core dissect --model toyworld/town --samples 2000 --out DIR
"""
from __future__ import annotations

import argparse
import inspect
import io
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from core import toyworld
from core.base.cache import atomic_write_bytes, atomic_write_text, model_fingerprint
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, ConceptAbsentError, GanatomyError, InputError, UnknownNameError
from core.base.hooks import layer_names, layer_shape, layer_units, resolve_layers
from core.base.sampling import INSERTION_SEED, OMISSIONS_REAL_SEED, OMISSIONS_SEED, z_range
from core.base.validate import (
    check_device,
    check_float,
    check_int,
    check_samples,
    check_units,
    concept_index,
    unit_list,
)
from core.engine import causal
from core.engine.bases import basis_health, fit_basis, layer_activations
from core.engine.causal.effect import AceOptions, check_ace
from core.engine.classifier_dissection import RULES, dissect_classifier
from core.engine.dissection import dissect, label_categories
from core.engine.importance import unit_importance
from core.engine.intervention import Edit, insertion_constants
from core.engine.inversion import invert
from core.engine.repair import repair_table, unit_fid
from core.models import (
    architectures,
    card_quality,
    catalog,
    checkpoint_series,
    fetch,
    is_classifier,
    list_models,
    load_classifier,
    load_features,
    load_generator,
    load_segmenter,
    models_dir,
    status,
)
from core.outputs.report import write_outputs
from core.outputs.visualize import png_bytes, side_by_side, to_uint8
from core.studies import comparisons, context, evaluation, over_seeds, rewrite_rules, rewriting
from core.studies import omissions as omission_study
from core.studies.image_folder import ImageFolder
from core.studies.importance import importance_vs_interpretability, labelled_images
from core.studies.inversion import (
    INVERSION_REAL_SEED,
    Recall,
    class_recall,
    encoder_for,
    perceptual_maps,
    real_scenes,
)
from core.studies.probes import ToyworldProbes
from core.studies.rewriting import Request
from core.studies.units import concept_units
from core.training.run import VARIANTS, check_planting, check_suppress, check_train, compact_run, train_gan
from core.userdata.flags import load_flags

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


# ----------------------------------------------------------------------------- shared by the measurements

def _device(a) -> str:
    return a.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _plain(x):
    """``x`` as JSON values: arrays, tensors and frames as lists (a frame: one object per row),
    numpy numbers as numbers, NaN and infinities as null (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, pd.DataFrame):
        return [_plain(r) for r in x.to_dict(orient="records")]
    if isinstance(x, pd.Series):
        return _plain(x.tolist())
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def _record(a, result: dict) -> dict:
    """What ``--json`` prints: the command, its arguments (every flag, as parsed) and its result."""
    return {"command": a.command, "arguments": _plain({k: v for k, v in vars(a).items() if k not in ("fn", "command")}),
            "result": _plain(result)}


def _emit(a, result: dict, text: str, tables: dict | None = None) -> dict:
    """A measurement's output: ``{"command", "arguments", "result"}``. ``--json`` prints it on stdout
    (one line, nothing else); ``--out DIR`` writes it to ``DIR/<command>.json`` and ``tables``
    ({name: DataFrame}) to ``DIR/<name>.csv``; without ``--json``, ``text`` is printed."""
    obj = _record(a, result)
    written = []
    if getattr(a, "out", None):
        outdir = Path(a.out)
        outdir.mkdir(parents=True, exist_ok=True)
        written.append(atomic_write_text(outdir / f"{a.command}.json", json.dumps(obj, indent=1, allow_nan=False)
                                         + "\n"))
        for name, df in (tables or {}).items():
            written.append(atomic_write_text(outdir / f"{name}.csv", df.to_csv(index=False)))
    if a.json:
        print(json.dumps(obj, allow_nan=False))
    else:
        print(text)
        for p in written:
            print(f"wrote {p}")
    return obj


def _table(df: pd.DataFrame, rows: int = 30) -> str:
    return df.head(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _load(a, segmenter: bool = True):
    """(generator, segmenter or None) of ``--model`` / ``--segmenter`` on ``--device``."""
    device = _device(a)
    try:
        G = load_generator(a.model, device=device, arch=getattr(a, "arch", None), download=a.download)
        seg = load_segmenter(a.segmenter, device=device, download=a.download) if segmenter else None
    except OSError as e:
        raise InputError(f"cannot read the model: {e}", fix="check the path and its permissions") from None
    return G, seg


def _layer_of(G, layer: str) -> str:
    """``layer`` of ``G`` (an unknown name refused with the layers it has)."""
    return _flag("--layer", resolve_layers, G, [layer])[0]


def _basis(a, G, layer: str):
    """``--basis`` of ``layer``: None for units, else the basis fitted once with ``--basis-samples``
    and ``--sae-*`` (stored: the pages, ``dissect`` and ``fit-basis`` with the same flags share it)."""
    if a.basis == "units":
        return None
    bar = _LazyBar(desc=f"{a.basis} {layer}", unit="step")
    b = fit_basis(G, layer, a.basis, n_samples=a.basis_samples, expansion=a.sae_expansion, l1=a.sae_l1,
                  steps=a.sae_steps, cache=not getattr(a, "no_cache", False),
                  progress=lambda s, t, loss: bar.set(s, t))
    bar.close()
    return b


def _basis_name(basis) -> str:
    return "units" if basis is None else basis.name


def _image_size(G) -> int:
    """The side of ``G``'s images, in pixels (one sample drawn)."""
    with torch.no_grad():
        return int(G(torch.zeros(1, G.z_dim, device=device_of(G))).shape[-1])


def _check_basis_flags(a):
    _flag("--basis-samples", check_samples, "n_samples", a.basis_samples, 2)
    _flag("--sae-expansion", check_float, "expansion", a.sae_expansion, 0, lo_open=True)
    _flag("--sae-l1", check_float, "l1", a.sae_l1, 0)
    _flag("--sae-steps", check_int, "steps", a.sae_steps, 1)


def _check_run(a):
    """The flags every measurement shares: device, basis, --out."""
    if hasattr(a, "device"):
        _check_device(a.device)
    if hasattr(a, "basis_samples"):
        _check_basis_flags(a)
    if getattr(a, "out", None) is not None:
        _check_out(a.out)


def _check_ace_flags(a, steps: str = "--ace-steps"):
    """ACE's flags (of ``ace``, ``curve``, ``removal``): checked before any model is loaded."""
    _flag(steps, check_samples, "n_steps", getattr(a, steps.lstrip("-").replace("-", "_")), 1,
          images_per_sample=12)
    _flag("--dissect-samples", check_samples, "dissect_samples", a.dissect_samples, 2)
    for flag in ("--k-samples", "--pool-size", "--batch-size", "--n-units"):
        value = getattr(a, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            _flag(flag, check_int, flag.lstrip("-").replace("-", "_"), value, 1)
    for flag in ("--lr", "--l2"):
        value = getattr(a, flag.lstrip("-"), None)
        if value is not None:
            _flag(flag, check_float, flag.lstrip("-"), value, 0, lo_open=flag == "--lr")


def _check_seeds(seeds):
    if seeds is not None and not seeds:
        raise InputError("--seeds is empty", fix="give --seeds one or more whole numbers, e.g. --seeds 0 1 2")


def _ace_options(a, steps: str) -> dict:
    """ACE's options from the flags a command has (the others keep AceOptions' defaults)."""
    names = {"n_steps": steps, "dissect_samples": "dissect_samples", "k_samples": "k_samples",
             "pool_size": "pool_size", "sampling": "sampling", "batch_size": "batch_size", "lr": "lr", "l2": "l2",
             "init": "init", "top_n": "n_units"}
    return {opt: getattr(a, flag) for opt, flag in names.items() if getattr(a, flag, None) is not None}


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
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _layer_span(names: list[str]) -> str:
    """``layer1..layer10`` for consecutive numbered layers, else the names."""
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


def _dissect_classifier(a):
    """``dissect`` of a classifier (issue #36) on a probe set, by NetDissect's rule (``--rule``)."""
    _flag("--samples", check_int, "n_samples", a.samples, 1)
    _flag("--batch-size", check_int, "batch_size", a.batch_size or 32, 1)
    if (a.probe or "toyworld") != "toyworld":
        _die(f"unknown probe set {a.probe!r}; probe sets: toyworld")
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    try:
        model = load_classifier(a.model, device=device)
        probe = ToyworldProbes(size=model.input_size, n=a.samples, seed=a.seed,
                               label_size=a.resolution, parts=True)
        bar = _LazyBar(desc="dissect", unit="img")
        res = dissect_classifier(model, probe, a.layers, a.samples, batch_size=a.batch_size or 32,
                                 progress=bar.set, rule=a.rule, topk=a.topk, geometry=a.geometry,
                                 cache=not a.no_cache)
        bar.close()
    except GanatomyError as e:
        _die(str(e))
    summary = res.summary()
    units = pd.concat([res.units(layer) for layer in res.layers], ignore_index=True)
    result = {"model": a.model, "probe": repr(probe), "rule": a.rule, **RULES[a.rule], "layers": res.layers,
              "samples": res.n_samples, "seconds": round(time.perf_counter() - t0, 2), "cached": res.meta.get("cached"),
              "timings": {k: res.meta.get(k) for k in ("threshold_seconds", "count_seconds")}, "summary": summary}
    _emit(a, result, summary.to_string(index=False), tables={"units": units, "summary": summary})


LABELLED = {"toyworld-scenes": "toyworld scenes rendered at 128 px, each labelled with its scene type",
            "toyworld-presence": "toyworld scenes rendered at 128 px, each labelled with the concepts it contains"}


def cmd_importance(a):
    """Unit importance of a classifier (issue #36; PNAS 2020): per class, its balanced accuracy (one class vs the
    rest) unedited and with each unit of --layer zeroed, the units ranked by that drop, and the curves of its top N
    units zeroed against N random other units (N = 1 .. --top-n, --draws draws). With --probes P > 0, also each
    unit's best IoU in a NetDissect dissection on P toyworld probes per --probe-seeds, and Spearman's rho between
    importance and IoU with a bootstrap interval. The labelled images: toyworld scenes of --seed (image i of scene
    type i % 3)."""
    _flag("--samples", check_int, "n_samples", a.samples, 3)
    _flag("--top-n", check_int, "top_n", a.top_n, 1)
    _flag("--draws", check_int, "draws", a.draws, 1)
    _flag("--probes", check_int, "probes", a.probes, 0)
    _flag("--batch-size", check_int, "batch_size", a.batch_size, 1)
    if a.model not in LABELLED:
        _die(f"--model: no labelled image set for classifier {a.model!r}; unit importance needs images labelled with "
             f"the classifier's own classes, which this repository has for: {', '.join(LABELLED)} (use "
             "--model toyworld-scenes)")
    t0 = time.perf_counter()
    model = load_classifier(a.model, device=_device(a))
    layer = a.layer or model.layer_names[-1]
    stats, table = None, None
    if a.probes:
        table, stats, res = importance_vs_interpretability(model, layer, a.samples, a.probes, image_seed=a.seed,
                                                           probe_seeds=a.probe_seeds, boots=a.boots, top_n=a.top_n,
                                                           draws=a.draws, batch_size=a.batch_size,
                                                           cache=not a.no_cache)
    else:
        images, labels = labelled_images(model, a.samples, a.seed)
        res = unit_importance(model, layer, images, labels, top_n=a.top_n, draws=a.draws, batch_size=a.batch_size,
                              cache=not a.no_cache)
        table = res.units()
    curves = res.curves()
    top = {c: [int(u) for u in res.ranking(c)[:10]] for c in res.classes}
    result = {"model": a.model, "images": LABELLED[a.model], "layer": res.layer, "classes": res.classes,
              "samples": res.n_samples, "base": res.base, "top_units": top, "units": table, "curves": curves,
              "relation": stats, "path": res.meta.get("path"), "cached": res.meta.get("cached"),
              "seconds": round(time.perf_counter() - t0, 2)}
    lines = [f"{a.model} {res.layer}: balanced accuracy " + ", ".join(f"{c} {b:.3f}" for c, b in
                                                                       zip(res.classes, res.base))]
    lines += [f"{c}: top units {' '.join(map(str, top[c]))}" for c in res.classes]
    for name in ("accuracy", "margin") if stats else ():
        st = stats[name]
        lines.append(f"{st['importance']} vs IoU: Spearman {st['spearman']:.3f} (95% bootstrap over units "
                     f"{st['bootstrap_95'][0]:.3f} .. {st['bootstrap_95'][1]:.3f}); per probe seed "
                     + ", ".join(f"{k}: {v:.3f}" for k, v in st["spearman_per_probe_seed"].items()))
    _emit(a, result, "\n".join(lines) + "\n" + _table(curves, 60), tables={"importance_units": table,
                                                                            "importance_curves": curves})


def cmd_dissect(a):
    if a.probe is not None or is_classifier(a.model):
        return _dissect_classifier(a)
    _check_dissect_flags(a)
    rank, world = _init_distributed()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
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
        done = {"seconds": round(time.perf_counter() - t0, 2), "cached": res.meta.get("cached"),
                **{k: str(v) for k, v in paths.items()}}
        if a.json:                  # the report's files are under --out; stdout has only this object
            excluded = unit_options.pop("exclude", None) or {}         # per layer
            summary = pd.concat([res.subset([ly]).summary(**unit_options, **({"exclude": excluded[ly]} if ly in excluded
                                                                            else {})) for ly in res.layers])
            print(json.dumps(_record(a, {**done, "summary": summary, "excluded_units": excluded,
                                         "bases": {k: b.name for k, b in chosen.items()}}), allow_nan=False))
        else:
            print(res.summary().to_string(index=False))
            print(json.dumps(done))
    if world > 1:
        torch.distributed.destroy_process_group()


def cmd_context(a):
    """The context study of a concept's units (Fig. 11) with toyworld's classes and rules, over
    several seeds (the Paint page's "Where can it go?")."""
    _check_context_flags(a)
    rank, world = _init_distributed()
    cache = not a.no_cache
    try:
        G, seg = _load(a)
        layer = _layer_of(G, a.layer)
        c = concept_index(seg, a.concept)
        _, h, w = layer_shape(G, layer)
        if a.brush > min(h, w):      # before ACE and the insertion constants
            raise InputError(f"--brush: brush must be a whole number of cells from 1 to {min(h, w)} (the {layer} "
                             f"grid is {h}x{w}), got {a.brush}", fix=f"give --brush from 1 to {min(h, w)}")
        if a.fresh_ace and (a.units or a.ranking != "ace"):
            raise InputError("--fresh-ace needs --ranking ace and no --units", fix="drop --units / --ranking iou")
        basis = _basis(a, G, layer)
        n_units = layer_units(G, layer) if basis is None else basis.n_features
        if a.units:
            units, ranking = check_units(a.units, n_units, layer, "--units"), "given"
        else:
            bar = _LazyBar(desc=f"{a.ranking.upper()} {a.concept}")
            units = concept_units(G, seg, layer, c, ranking=a.ranking, n=a.n_units, dissect_samples=a.dissect_samples,
                                  n_steps=a.ace_steps, sampling=a.ace_sampling, basis=basis, progress=bar.set,
                                  cache=cache)
            bar.close()
            ranking = f"ACE ({a.ace_steps} steps, sampling {a.ace_sampling})" if a.ranking == "ace" else "IoU"
        k = insertion_constants(G, seg, layer, c, n_samples=a.k_samples, basis=basis, cache=cache).numpy()
        quantiles = (dissect(G, seg, [layer], a.dissect_samples, basis=basis, cache=cache).quantiles(layer)
                     if a.scale == "p99" else None)
        value, scale = context.unit_values(k, units, "p99" if a.scale == "p99" else float(a.scale), quantiles)
        bar = _LazyBar(desc="context", unit="insertion")

        units_for = None
        if a.fresh_ace:
            def units_for(i, seed):
                fit = _LazyBar(desc=f"ACE {a.concept} (seed {i})")
                u = concept_units(G, seg, layer, c, n=a.n_units, dissect_samples=a.dissect_samples, seed=i,
                                  n_steps=a.ace_steps, sampling=a.ace_sampling, basis=basis, progress=fit.set,
                                  cache=cache)
                fit.close()
                return u, context.unit_values(k, u, "p99" if a.scale == "p99" else float(a.scale), quantiles)[0]
            ranking = f"ACE ({a.ace_steps} steps, sampling {a.ace_sampling}), a fresh one per seed (ACE seeds " \
                      f"0..{len(a.seeds) - 1})"
        t0 = time.perf_counter()
        out = context.context_over_seeds(G, seg, layer, units, value, a.concept, seeds=a.seeds, n_images=a.images,
                                         brush=a.brush, scale=scale, progress=bar.set, units_for=units_for,
                                         basis=basis)
        bar.close()
    except (GanatomyError, ValueError) as e:
        _die(str(e))
    summary = out["summary"]
    report = {"model": a.model, "layer": layer, "concept": a.concept, "segmenter": a.segmenter,
              "basis": _basis_name(basis),
              "settings": {"units": units if not a.fresh_ace else out["units"], "ranking": ranking,
                           "brush_cells": a.brush, "scale": a.scale, "seeds": list(a.seeds),
                           "images_per_seed": a.images, "k_samples": a.k_samples, "grid": [h, w]},
              "classes": summary,
              "ratios": {f"{x} / {y}": context.added_ratio(summary, x, y) for x in ("wall at its ground line",)
                         for y in ("sky", "road", "upper wall")},
              "seconds": round(time.perf_counter() - t0, 1)}
    if rank == 0:
        _emit(a, report, summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"),
              tables={"insertions": out["rows"]})
    if world > 1:
        torch.distributed.destroy_process_group()


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
    _check_run(a)


# ----------------------------------------------------------------------------- causal units (ACE, curves, removal)

def cmd_ace(a):
    """ACE (eq. 5-6): the units whose joint insertion and ablation most change the concept."""
    _check_ace_flags(a, "--steps")
    _check_run(a)
    G, seg = _load(a)
    layer = _layer_of(G, a.layer)
    c = concept_index(seg, a.concept)
    options = _ace_options(a, "steps")
    check_ace(G, seg, layer, c, AceOptions(**options), seed=a.seed)       # every option, before any work
    basis = _basis(a, G, layer)
    bar = _LazyBar(desc=f"ACE {a.concept}", unit="step")
    res = causal.ace(G, seg, layer, c, seed=a.seed, basis=basis, progress=lambda s, n, loss: bar.set(s, n),
                     cache=not a.no_cache, **options)
    bar.close()
    result = {"layer": layer, "concept": res.concept, "basis": _basis_name(basis), "units": res.units,
              "ranking": res.ranking, "alpha": res.alpha, "init": res.init, "k": res.k, "losses": res.losses,
              "effects": res.effects, "seconds": res.seconds}
    top = pd.DataFrame({"unit": res.ranking, "alpha": res.alpha[res.ranking], "init": res.init[res.ranking]})
    _emit(a, result, f"top {len(res.units)} causal {'units' if basis is None else 'features'} of {res.concept} at "
                     f"{layer}: {' '.join(map(str, res.units))}\n" + _table(top, len(res.units)),
          tables={"ace": top})


def cmd_curve(a):
    """Ablation curves: the fraction of the concept's pixels removed by ablating the first n units of
    the ACE and the IoU rankings (Fig. 4 right); with --seeds, over seeds with 95% intervals."""
    _check_ace_flags(a)
    _check_seeds(a.seeds)
    if a.samples is not None:
        _flag("--samples", check_samples, "n_samples", a.samples, 1, images_per_sample=1 + 2 * len(a.counts))
    for n in a.counts:
        _flag("--counts", check_int, "counts", n, 1)
    _check_run(a)
    G, seg = _load(a)
    layer = _layer_of(G, a.layer)
    c = concept_index(seg, a.concept)
    basis = _basis(a, G, layer)
    cache = not a.no_cache
    options = _ace_options(a, "ace_steps")
    ace_steps, dissect_samples = options.pop("n_steps"), options.pop("dissect_samples")
    bar = _LazyBar(desc=f"curve {a.concept}")
    if a.seeds:
        df = over_seeds.curve_over_seeds(G, seg, layer, c, seeds=a.seeds, counts=a.counts,
                                         n_samples=a.samples or 200, ace_steps=ace_steps,
                                         dissect_samples=dissect_samples, progress=bar.set, cache=cache,
                                         basis=basis, **options)
        bar.close()
        result = {"layer": layer, "concept": seg.labels[c], "basis": _basis_name(basis), "seeds": a.seeds,
                  "samples": a.samples or 200, "rows": df}
    else:
        top = max(a.counts)
        fit = _LazyBar(desc=f"ACE {a.concept}", unit="step")
        rankings = {"ace": concept_units(G, seg, layer, c, ranking="ace", n=top, seed=a.seed, n_steps=ace_steps,
                                         dissect_samples=dissect_samples, basis=basis, progress=fit.set,
                                         cache=cache, **options),
                    "iou": concept_units(G, seg, layer, c, ranking="iou", n=top, dissect_samples=dissect_samples,
                                         basis=basis, cache=cache)}
        fit.close()
        df = causal.ablation_curve(G, seg, layer, c, rankings, counts=a.counts, n_samples=a.samples or 500,
                                   seed=a.curve_seed, progress=bar.set, basis=basis, cache=cache)
        bar.close()
        result = {"layer": layer, "concept": seg.labels[c], "basis": _basis_name(basis), "rankings": rankings,
                  "samples": a.samples or 500, "rows": df, "stored": df.attrs.get("stored", True),
                  "seconds": df.attrs.get("seconds")}
    _emit(a, result, f"fraction of {seg.labels[c]} pixels removed at {layer}\n"
                     + _table(df.drop(columns=["per_seed"], errors="ignore"), 100),
          tables={"curve": df.drop(columns=["per_seed"], errors="ignore")})


def _scene_generators() -> list[str]:
    """The base model of every toyworld scene type (the Causal units page's removal table)."""
    return sorted(g["base"] for g in comparisons.zoo_groups(list_models()).values()
                  if g["base"] and str(g["base"]).startswith("toyworld/"))


def cmd_removal(a):
    """The removal table (Fig. 9-10): percent of each concept's pixels removed by ablating its ACE
    units, per generator (default: every toyworld scene type), over seeds with 95% intervals."""
    _check_ace_flags(a)
    _check_seeds(a.seeds)
    _flag("--samples", check_samples, "n_samples", a.samples, 1, images_per_sample=2)
    if a.models is not None and not a.models:
        raise InputError("--models is empty", fix="give --models one or more model names, or leave it out")
    _check_run(a)
    names = list(dict.fromkeys(a.models or _scene_generators()))
    if a.models is None and not names:
        raise InputError("no toyworld generators are shipped", fix="give --models")
    seg = load_segmenter(a.segmenter, device=_device(a), download=a.download)
    gens = {}
    for name in names:                     # every model, layer and concept checked before any work
        a_model = argparse.Namespace(**{**vars(a), "model": name})
        gens[name] = _load(a_model, segmenter=False)[0]
        _layer_of(gens[name], a.layer)
    for concept in a.concept:
        concept_index(seg, concept)
    options = _ace_options(a, "ace_steps")
    del options["n_steps"], options["top_n"]
    bar = _LazyBar(desc="removal", unit="ACE")
    df = over_seeds.removal_over_seeds(gens, seg, a.layer, list(a.concept), seeds=a.seeds, n_units=a.n_units,
                                       ace_steps=a.ace_steps, n_samples=a.samples, progress=bar.set,
                                       cache=not a.no_cache, **options)
    bar.close()
    shown = df.drop(columns=["per_seed"])
    _emit(a, {"layer": a.layer, "models": names, "concepts": list(a.concept), "seeds": a.seeds, "rows": df},
          _table(shown, 100), tables={"removal": shown})


# ----------------------------------------------------------------------------- artifact repair (unit FID)

def _check_fid_flags(a):
    _flag("--top", check_int, "top", a.top, 2, what="a whole number of images >= 2 (a covariance needs two)")
    _flag("--samples", check_samples, "n_samples", a.samples, 2, images_per_sample=2)
    if a.samples < a.top:
        raise InputError(f"--samples ({a.samples}) must be at least --top ({a.top}): each unit's FID uses its top "
                         f"{a.top} of the generated images", fix=f"raise --samples to {a.top} or more, or lower --top")
    _flag("--real-samples", check_samples, "n", a.real_samples, 2)
    _flag("--seed", check_int, "seed", a.seed, 0)
    _flag("--batch-size", check_int, "batch_size", a.batch_size, 1)


def _real(a, G, feats):
    """The real-scene statistics FID compares with: ``--real-samples`` scenes of ``--scene`` (default
    the model card's scene, else town) at the generator's resolution (stored once)."""
    scene = a.scene or (getattr(G, "meta", None) or {}).get("scene") or "town"
    if scene not in toyworld.SCENES:
        raise InputError(f"the model's scene {scene!r} is not a toyworld scene", fix="give --scene "
                         + " or ".join(toyworld.SCENES))
    size = _image_size(G)
    return scene, size, evaluation.scene_stats(feats, scene, size, n=a.real_samples, device=_device(a),
                                               cache=not a.no_cache)


def _unit_fid(a, G, layer, feats, real, basis):
    bar = _LazyBar(desc=f"unit FID {layer}", unit="img")
    uf = unit_fid(G, layer, feats, real, n_samples=a.samples, top=a.top, seed=a.seed, batch_size=a.batch_size,
                  progress=bar.set, basis=basis, cache=not a.no_cache)
    bar.close()
    return uf


def cmd_unit_fid(a):
    """Unit FID (§4.2, S-6.1): the FID of each unit's top images against real scenes."""
    _check_fid_flags(a)
    _check_run(a)
    G, _ = _load(a, segmenter=False)
    layer = _layer_of(G, a.layer)
    feats = load_features("toyworld", device=_device(a))
    basis = _basis(a, G, layer)
    scene, size, real = _real(a, G, feats)
    uf = _unit_fid(a, G, layer, feats, real, basis)
    table = uf.table()
    result = {"layer": layer, "basis": _basis_name(basis), "scene": scene, "resolution": size,
              "real_samples": a.real_samples, "samples": uf.n_samples, "top": uf.top, "seed": uf.seed,
              "fid": uf.fid, "highest": uf.highest(a.show), "seconds": uf.seconds}
    _emit(a, result, f"the {a.show} {'units' if basis is None else 'features'} of highest FID at {layer} (each "
                     f"over its top {uf.top} of {uf.n_samples} images, against {a.real_samples} real {scene} "
                     "scenes)\n" + _table(table, a.show), tables={"unit_fid": table})


def cmd_repair(a):
    """The repair table (Tables 1-2): FID with the artifact units ablated, against as many random
    units; the units are --units, else the lab's flags, else those of highest unit FID."""
    _check_fid_flags(a)
    if a.units is not None and not _flag("--units", unit_list, a.units, "units"):
        raise InputError("--units is empty", fix="give --units one or more unit indices, or leave it out")
    if a.eval_samples is not None:
        _flag("--eval-samples", check_samples, "n_eval", a.eval_samples, 2, images_per_sample=1 + a.random_draws)
    _flag("--random-draws", check_int, "random_draws", a.random_draws, 1)
    _flag("--n-highest", check_int, "n_highest", a.n_highest, 1)
    _check_run(a)
    G, _ = _load(a, segmenter=False)
    layer = _layer_of(G, a.layer)
    feats = load_features("toyworld", device=_device(a))
    basis = _basis(a, G, layer)
    n_units = layer_units(G, layer) if basis is None else basis.n_features
    flags = load_flags(a.model, layer, model_fingerprint(G)) if basis is None and not a.units else []
    if a.units:
        units, source = check_units(a.units, n_units, layer, "--units"), "given"
    elif flags:
        units, source = flags, "flags"
    scene, _, real = _real(a, G, feats)
    if not a.units and not flags:
        units, source = _unit_fid(a, G, layer, feats, real, basis).highest(a.n_highest), "highest unit FID"
    n_eval = a.eval_samples or max(a.samples // 5, 50)        # the Artifact repair page's choice
    bar = _LazyBar(desc="repair", unit="img")
    table, picked = repair_table(G, layer, feats, real, units, n_candidates=a.samples, n_eval=n_eval,
                                 random_draws=a.random_draws, seed=a.seed, batch_size=a.batch_size,
                                 progress=bar.set, basis=basis)
    bar.close()
    result = {"layer": layer, "basis": _basis_name(basis), "units": units, "units_from": source, "scene": scene,
              "real_samples": a.real_samples, "candidates": a.samples, "eval_samples": n_eval,
              "eval_indices": picked, "table": table}
    _emit(a, result, f"{layer}: {len(units)} {'units' if basis is None else 'features'} ({source}): "
                     f"{' '.join(map(str, units))}\n" + _table(table), tables={"repair": table})


# ----------------------------------------------------------------------------- bases, tracing, insertion values

def cmd_omissions(a):
    """What the generator leaves out ("Seeing What a GAN Cannot Generate"): per class, the mean area
    and share of images of --samples generated images against as many real images: toyworld scenes
    (through the segmenter and from their exact labels) or, with --real-dir, a folder of your own PNG /
    JPEG images at the generator's size (through the segmenter only; it needs 2 x --samples images: the
    real-vs-real floor compares two disjoint halves of the folder), the relative change, and the Fréchet
    Segmentation Distance with its mean and covariance terms and its real-vs-real floor. --out also
    writes omissions.png, the chart of the classes of largest real area."""
    _flag("--samples", check_samples, "n_samples", a.samples, 2, images_per_sample=3)
    _flag("--seed", check_int, "seed", a.seed)
    _flag("--real-seed", check_int, "real_seed", a.real_seed)
    _flag("--batch-size", check_int, "batch_size", a.batch_size, 1)
    if a.real_dir is not None and a.scene is not None:
        raise InputError("--scene and --real-dir both given: the real images are toyworld scenes or a folder",
                         fix="drop --scene (your images) or --real-dir (toyworld scenes)")
    if a.real_dir is None and (a.resize or a.convert):
        raise InputError("--resize / --convert apply to the images of --real-dir", fix="give --real-dir DIR or "
                         "drop them")
    _check_real_dir(a.real_dir, "--real-dir")
    _check_run(a)
    G, seg = _load(a, segmenter=True)
    bar = _LazyBar(desc="omissions", unit="img")
    if a.real_dir is not None:
        scene = None
        real = ImageFolder(a.real_dir, omission_study.image_size(G), resize=a.resize, convert=a.convert,
                           seed=a.real_seed, arg="--real-dir")
        res = omission_study.folder_omissions(G, seg, real, a.samples, seed=a.seed, real_seed=a.real_seed,
                                              batch_size=a.batch_size, progress=bar.set, cache=not a.no_cache)
        what = f"real images of {a.real_dir} ({len(real)} in the folder; no exact labels)"
    else:
        scene = _flag("--scene", omission_study.scene_of, G, a.scene)
        res = omission_study.toyworld_omissions(G, seg, scene, a.samples, seed=a.seed, real_seed=a.real_seed,
                                                batch_size=a.batch_size, progress=bar.set, cache=not a.no_cache)
        what = f"real {scene} scenes"
    bar.close()
    table = res.table()
    summary = res.summary()
    result = {"scene": scene, "real_dir": None if a.real_dir is None else str(a.real_dir), **summary,
              "classes": table}
    f, fl = summary["fsd"], summary["floor"]
    _emit(a, result, f"FSD {f['fsd']:.4g} (mean {f['mean_term']:.4g}, covariance {f['cov_term']:.4g}); real vs real "
                     f"floor {fl['fsd']:.4g}; {res.n_samples} generated vs {res.n_samples} {what}\n"
                     f"omitted (relative change <= {summary['omitted_below']:.0%}, real area >= "
                     f"{summary['min_area']:g}): {', '.join(summary['omitted']) or 'none'}\n"
                     + _table(table, a.show), tables={"omissions": table})
    if a.out:
        chart = atomic_write_bytes(Path(a.out) / "omissions.png", png_bytes(omission_study.chart_png(res)))
        if not a.json:
            print(f"wrote {chart}")


def _check_real_dir(folder, flag: str):
    """The cheap part of a folder's checks, before any model is loaded (the rest needs the model's size)."""
    if folder is None:
        return
    p = Path(folder).expanduser()
    if not str(folder).strip() or not p.exists():
        raise InputError(f"{flag}: the folder {ascii(str(folder))[1:-1][:80]} does not exist",
                         fix=f"give {flag} an existing folder of PNG or JPEG images")
    if not p.is_dir():
        raise InputError(f"{flag}: {ascii(str(folder))[1:-1][:80]} is a file, not a folder",
                         fix=f"give {flag} the folder that holds the images")


def _file_stem(name: str) -> str:
    """A file name's stem made safe for an output file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).stem)[:60] or "image"


def cmd_invert(a):
    """Reconstruct images through the generator by layer inversion ("Seeing What a GAN Cannot Generate",
    section 3): each image's --layer featuremap starts from the model's trained inverter (shipped for
    toyworld/town; others: python scripts/train_inverter.py) and is optimised for --steps steps (L1 + the
    toyworld feature network's perceptual term, --no-perceptual drops it); the rest of the generator renders
    it. The images: a folder of your own PNG / JPEG images at the generator's size (--images, sorted by name;
    --n: the first N) or --n toyworld scenes of --scene (seed --seed, held out from the GANs' training).
    --out gets per image NAME-reconstruction.png and NAME-grid.png (original | reconstruction; for toyworld
    scenes also the segmentation of both) and invert.json / invert.csv: per image the reconstruction's L1
    (pixels in [-1, 1]) and, for toyworld scenes, the per-class recall of the exact labels in the
    reconstruction's segmentation (and the segmenter's on the originals: a perfect reconstruction's)."""
    if (a.images is None) == (a.scene is None):
        raise InputError("give one of --images DIR (your images) or --scene SCENE (toyworld scenes)"
                         + (", not both" if a.images is not None else ""),
                         fix="e.g. --images photos/ or --scene town --n 8")
    if a.images is None and (a.resize or a.convert):
        raise InputError("--resize / --convert apply to the images of --images", fix="give --images DIR or drop them")
    n = None if a.n is None else _flag("--n", check_int, "n", a.n, 1, 10_000)
    _flag("--steps", check_int, "steps", a.steps, 0, 100_000)
    _flag("--lr", check_float, "lr", a.lr, 0, lo_open=True)
    _flag("--seed", check_int, "seed", a.seed, 0)
    _flag("--batch-size", check_int, "batch_size", a.batch_size, 1)
    _check_real_dir(a.images, "--images")
    _check_run(a)
    G, seg = _load(a, segmenter=a.scene is not None)
    layer = _layer_of(G, a.layer)
    enc, meta = _flag("--model", encoder_for, G, a.model, layer)
    size = omission_study.image_size(G)
    if enc.image_size != size:
        raise InputError(f"--model: its inverter takes {enc.image_size}-px images, the generator makes {size}-px "
                         "ones", fix="train the inverter again for this generator: python scripts/train_inverter.py")
    if a.images is not None:
        folder = ImageFolder(a.images, size, resize=a.resize, convert=a.convert, arg="--images")
        n = folder.check_count(n if n is not None else len(folder), "images (--n)")
        names = [f"{i:03d}-{_file_stem(f)}" for i, f in enumerate(folder.names[:n])]
        images, labels, source = folder.load(range(n)), None, {"images": str(a.images), "files": folder.names[:n]}
    else:
        n = n if n is not None else 8
        images, labels = _flag("--segmenter", real_scenes, a.scene, n, a.seed, size, seg)   # labels: seg's
        names = [f"{i:03d}-{a.scene}-{a.seed}" for i in range(n)]
        source = {"scene": a.scene, "seed": a.seed}
    feats = None if a.no_perceptual else perceptual_maps(load_features("toyworld", device=device_of(G)))
    bar = _LazyBar(desc="invert", unit="step")
    inv = invert(G, layer, enc, images, a.steps, a.lr, feats, bar.set, batch_size=a.batch_size)
    bar.close()
    dev = device_of(G)
    with torch.no_grad():
        l1 = inv.l1(images).cpu().numpy()
        l1_0 = (inv.initial_reconstruction - images.to(dev)).abs().flatten(1).mean(1).cpu().numpy()
    rows = [{"image": names[i], "l1": float(l1[i]), "l1_encoder_only": float(l1_0[i])} for i in range(n)]
    result = {"model": a.model, "layer": layer, "inverter": meta.get("path"), "n": n, "steps": a.steps, "lr": a.lr,
              "perceptual": not a.no_perceptual, **source, "seconds": inv.seconds, "mean_l1": float(l1.mean()),
              "mean_l1_encoder_only": float(l1_0.mean())}
    panels = [to_uint8(images), to_uint8(inv.reconstruction)]
    if labels is not None:
        C = len(seg.labels)
        with torch.no_grad():
            seg_real, seg_rec = seg.segment(images.to(dev)), seg.segment(inv.reconstruction)
            exact = labels.to(dev)
            true, hit = (t.cpu().numpy() for t in class_recall(exact, seg_rec, C))
            _, hit_seg = (t.cpu().numpy() for t in class_recall(exact, seg_real, C))
            to_toy = torch.tensor([toyworld.LABELS.index(c) if c in toyworld.LABELS else 0 for c in seg.labels],
                                  device=dev)
            panels += [toyworld.colorize(to_toy[m]).cpu().numpy() for m in (seg_real, seg_rec)]
        classes = toyworld.SCENE_CONCEPTS[a.scene]      # the reconstruction's and the segmenter's own recall
        rec = Recall(list(seg.labels), true, hit, hit, l1, l1_0, classes)
        own = Recall(list(seg.labels), true, hit_seg, hit_seg, l1 * 0, l1 * 0, classes)
        per_image, per_image_class = rec.per_image(), rec.per_image_class()
        for i, r in enumerate(rows):
            r["recall"] = float(per_image[i])
            r.update({f"recall_{seg.labels[c]}": float(per_image_class[i, c]) for c in range(C)
                      if not np.isnan(per_image_class[i, c])})
        result.update({"mean_recall": rec.mean_recall(), "per_class_recall": rec.per_class(),
                       "segmenter_mean_recall": own.mean_recall(), "segmenter_per_class_recall": own.per_class()})
    out = Path(a.out)
    for i, name in enumerate(names):
        rows[i]["reconstruction"] = atomic_write_bytes(out / f"{name}-reconstruction.png", png_bytes(panels[1][i])).name
        rows[i]["grid"] = atomic_write_bytes(out / f"{name}-grid.png", png_bytes(side_by_side([p[i] for p in panels]),
                                                                                   scale=2)).name
    result["images"] = rows
    first = ["image", "l1", "l1_encoder_only", "recall"]
    recalls = [f"recall_{c}" for c in (seg.labels if seg is not None else ()) if any(f"recall_{c}" in r for r in rows)]
    table = pd.DataFrame(rows, columns=[c for c in first if c in rows[0]] + recalls + ["reconstruction", "grid"])
    text = f"{n} images inverted into {layer} ({a.steps} steps, {inv.seconds:.1f} s): mean L1 {l1.mean():.4f} " \
           f"(encoder only {l1_0.mean():.4f})"
    if labels is not None:
        text += f"; mean recall over classes {result['mean_recall']:.3f} (the segmenter on the originals: " \
                f"{result['segmenter_mean_recall']:.3f})"
    _emit(a, result, text + "\n" + _table(table[[c for c in ("image", "l1", "l1_encoder_only", "recall")
                                                  if c in table]], a.show)
          + f"\nwrote {2 * n} PNGs to {out}", tables={"invert": table})


def cmd_rewrite(a):
    """Rewrite a rule of the generator ("Rewriting a Deep Generative Model", ECCV 2020) from a request saved
    by the Rewrite page (or written by hand: docs/usage.md): copy / paste / context, the layer, rank, steps.
    Writes to --out the weight deltas (rewrite.pt), the request as run (request.json), the metrics
    (rewrite.json: times, the loss, and with --source / --target the share of source pixels that become the
    target and the change outside them on --eval-samples fresh samples) and a before/after grid
    (before_after.png: top row before, bottom row after). --save NAME also registers the rewritten model
    under NAME (yours; it then loads by name in every page and command)."""
    _flag("--eval-samples", check_int, "eval_samples", a.eval_samples, 0)
    _flag("--seed", check_int, "seed", a.seed)
    _check_run(a)
    if (a.source is None) != (a.target is None):
        raise InputError("--source and --target go together", fix="give both (e.g. --source cloud --target sky) "
                                                                  "or neither")
    req = _flag("--request", Request.load, a.request)
    overrides = {k: getattr(a, k) for k in ("method", "rank", "steps", "lr") if getattr(a, k) is not None}
    if a.model is not None:
        overrides["model"] = a.model
    req = replace(req, **overrides).checked()
    if a.save:
        _flag("--save", catalog.check_new_name, a.save)
    G = load_generator(req.model, device=_device(a), download=a.download)
    seg = load_segmenter(a.segmenter, device=_device(a), download=a.download) if a.source else None
    bar = _LazyBar(desc="rewrite", unit="step")
    run = rewriting.run_request(G, req, progress=lambda stage, d, t: bar.set(d, t) if stage == "rewrite" else None,
                                cache=not a.no_cache)
    bar.close()
    out = Path(a.out) if a.out else None
    result = {"model": req.model, "layer": req.layer, "method": req.method, "rank": req.rank, "steps": req.steps,
              "seconds": run.seconds, "loss_first": run.rewrite.losses[0] if run.rewrite.losses else None,
              "loss_last": run.rewrite.losses[-1] if run.rewrite.losses else None}
    if a.source:
        g1 = run.rewrite.apply(G)
        bar = _LazyBar(desc="evaluate", unit="img")
        rows = rewrite_rules.compare_variants(G, seg, {"rewritten": lambda z, im, sg: g1(z)}, a.source, a.target,
                                              n=a.eval_samples, seed=a.seed, progress=lambda st, d, t: bar.set(d, t),
                                              cache=not a.no_cache)
        bar.close()
        result["effect"] = rows
    if out is not None:
        buf = io.BytesIO()
        torch.save(run.rewrite.stored, buf)
        atomic_write_bytes(out / "rewrite.pt", buf.getvalue())
        atomic_write_text(out / "request.json", req.dumps() + "\n")
        grid = rewriting.before_after(G, run, range(a.grid))
        atomic_write_bytes(out / "before_after.png", png_bytes(np.concatenate(
            [side_by_side(list(grid.before)), np.full((2, side_by_side(list(grid.before)).shape[1], 3), 255, np.uint8),
             side_by_side(list(grid.after))], 0)))
    if a.save:
        entry = rewriting.save_rewrite(a.save, run, added_by=a.added_by or os.environ.get("USER", ""))
        result["saved"] = {"name": a.save, "path": entry["path"]}
    eff = result.get("effect")
    text = (f"{req.method} rewrite of {req.model} {req.layer} (rank {req.rank}, {req.steps} steps): loss "
            f"{result['loss_first']:.4g} -> {result['loss_last']:.4g} in {run.seconds['total']:.1f} s")
    if eff:
        r = eff["rewritten"]
        text += (f"\n{a.source} -> {a.target} on {a.eval_samples} samples: {r['success']:.1%} of {a.source} pixels "
                 f"become {a.target}; outside {a.source}: pixel L1 {r['outside_l1']:.4f}, labels changed "
                 f"{r['outside_seg']:.2%}")
    if a.save:
        text += f"\nsaved as {a.save}: core.load_generator({a.save!r})"
    _emit(a, result, text)


def cmd_fit_basis(a):
    """Fit a basis of a layer (PCA or a sparse dictionary) once and store it; print its health."""
    _flag("--health-samples", check_samples, "n_samples", a.health_samples, 1)
    _flag("--health-seed", check_int, "seed", a.health_seed)
    _check_run(a)
    G, _ = _load(a, segmenter=False)
    layer = _layer_of(G, a.layer)
    b = _basis(a, G, layer)
    held = layer_activations(G, layer, a.health_samples, seed=a.health_seed)
    health = basis_health(b, held)
    result = {"layer": layer, "basis": b.name, "kind": b.kind, "features": b.n_features, "meta": b.meta,
              "health": health}
    _emit(a, result, f"{b.name} of {layer}: {b.n_features} features; on {health['vectors']} held-out vectors: "
                     f"FVU {health['fvu']:.4f}, mean L0 {health['mean_l0']:.2f}, {health['dead']} dead, "
                     f"{health['dense']} dense")


def cmd_insertion(a):
    """Insertion values k (S-6.4): each unit's mean activation where the concept is."""
    _flag("--samples", check_samples, "n_samples", a.samples, 1)
    _check_run(a)
    G, seg = _load(a)
    layer = _layer_of(G, a.layer)
    c = concept_index(seg, a.concept)
    basis = _basis(a, G, layer)
    k = insertion_constants(G, seg, layer, c, n_samples=a.samples, seed=a.seed, basis=basis, cache=not a.no_cache)
    result = {"layer": layer, "concept": seg.labels[c], "basis": _basis_name(basis), "samples": a.samples,
              "seed": a.seed, "k": k}
    table = pd.DataFrame({"unit": np.arange(len(k)), "k": k.numpy()})
    _emit(a, result, f"insertion values of {seg.labels[c]} at {layer} ({len(k)} "
                     f"{'units' if basis is None else 'features'}; largest first)\n"
                     + _table(table.sort_values("k", ascending=False, kind="stable"), 20), tables={"insertion": table})


def cmd_trace(a):
    """Tracing (S-6.5): insert a concept's units at one cell and measure the change at every later
    layer (each channel scaled by its mean |activation|)."""
    if a.units is not None and not _flag("--units", unit_list, a.units, "units"):
        raise InputError("--units is empty", fix="give --units one or more unit indices, or leave it out")
    _flag("--n-units", check_int, "n_units", a.n_units, 1)
    _flag("--samples", check_samples, "n_samples", a.samples, 2)
    _flag("--k-samples", check_samples, "k_samples", a.k_samples, 1)
    _flag("--strength", check_float, "strength", a.strength, 0)
    _flag("--seed", check_int, "seed", a.seed, 0)
    _check_run(a)
    G, seg = _load(a)
    layer = _layer_of(G, a.layer)
    names = layer_names(G)
    if layer == names[-1]:
        raise InputError(f"--layer: {layer} is the last layer: nothing follows it to trace",
                         fix=f"give an earlier layer: {', '.join(names[:-1])}")
    c = concept_index(seg, a.concept)
    _, h, w = layer_shape(G, layer)
    row = (3 * h) // 4 if a.row is None else a.row           # the Tracing page's default cell
    col = w // 2 if a.col is None else a.col
    _flag("--row", check_int, "row", row, 0, h - 1)
    _flag("--col", check_int, "col", col, 0, w - 1)
    basis = _basis(a, G, layer)
    cache = not a.no_cache
    n_units = layer_units(G, layer) if basis is None else basis.n_features
    if a.units:
        units, source = check_units(a.units, n_units, layer, "--units"), "given"
    else:
        units = concept_units(G, seg, layer, c, ranking="iou", n=a.n_units, dissect_samples=a.samples, basis=basis,
                              cache=cache)
        source = f"highest IoU ({a.samples}-sample dissection)"
    k = insertion_constants(G, seg, layer, c, n_samples=a.k_samples, basis=basis, cache=cache)
    mask = torch.zeros(h, w, device=device_of(G))
    mask[row, col] = 1
    edit = Edit(layer, units, "insert", a.strength * k[units], mask, basis=basis)
    z = z_range(a.seed, 0, 1, G.z_dim, device_of(G))
    df, emap = causal.trace_effect(G, edit, z, causal.channel_scales(G, names[names.index(layer) + 1:]))
    result = {"layer": layer, "concept": seg.labels[c], "basis": _basis_name(basis), "units": units,
              "units_from": source, "seed": a.seed, "row": row, "col": col, "grid": [h, w], "strength": a.strength,
              "k_samples": a.k_samples, "rows": df, "map_layer": df.layer.iloc[-1], "map": emap[0]}
    _emit(a, result, f"{seg.labels[c]} {'units' if basis is None else 'features'} {' '.join(map(str, units))} "
                     f"inserted at {layer} cell ({row}, {col}) of {h}x{w}, {a.strength:g} x k (seed {a.seed})\n"
                     + _table(df, 100), tables={"trace": df})


# ----------------------------------------------------------------------------- comparisons, training evolution

def _unit_options(a, seg) -> dict:
    """The labelling keywords of the Concept maps page: rule, objects only, pixel accuracy."""
    options = {"labeling": a.labeling}
    if a.objects_only:
        options["concepts"] = comparisons.object_concepts(seg.labels, getattr(seg, "stuff", ()))
    if a.pixel_accuracy is not None:
        options["pixel_accuracy"] = a.pixel_accuracy
    return options


def _check_labeling(a):
    if a.pixel_accuracy is not None:
        _flag("--pixel-accuracy", check_float, "pixel_accuracy", a.pixel_accuracy, 0, 1)
        if a.labeling != "reference":
            raise InputError("--pixel-accuracy needs --labeling reference", fix="drop --pixel-accuracy or use "
                             "--labeling reference")


def cmd_compare(a):
    """Concept maps (Fig. 5, 6, 7, 19): units per concept for each model and layer; --variants
    compares a scene type's variants at matched training steps."""
    _flag("--samples", check_samples, "n_samples", a.samples, 2)
    _check_labeling(a)
    if a.models is not None and not a.models:
        raise InputError("--models is empty", fix="give --models one or more model names, or leave it out")
    _check_run(a)
    names = list(dict.fromkeys(a.models or _scene_generators()))
    lineups = {}
    if a.variants:
        groups = comparisons.zoo_groups(list_models())
        by_model = {m: s for s, g in groups.items() for m in [g["base"], *g["variants"]]}
        unknown = [m for m in names if m not in by_model]
        if unknown:
            raise UnknownNameError(f"--variants: {', '.join(unknown)} is not a shipped model with variants",
                                   fix="give --models shipped toyworld models, e.g. toyworld/town")
        plain = sorted({m for m in names if not groups[by_model[m]]["variants"]})
        if plain:
            raise InputError(f"--variants: {', '.join(plain)} has no variants shipped",
                             fix="give a scene type with variants, e.g. --models toyworld/town")
        lineups = {by_model[m]: comparisons.variant_lineup(list_models(), groups[by_model[m]]) for m in names}
        names = list(dict.fromkeys(m for lu in lineups.values() for m in lu["models"]))
    seg = load_segmenter(a.segmenter, device=_device(a), download=a.download)
    gens = {}
    for name in names:                     # every model and layer checked before any work
        gens[name] = _load(argparse.Namespace(**{**vars(a), "model": name}), segmenter=False)[0]
        for layer in a.layers:
            _layer_of(gens[name], layer)
    options = _unit_options(a, seg)
    bar = _LazyBar(desc="dissect", unit="img")
    results = comparisons.dissect_models(names, seg, a.layers, a.samples, seed=a.seed, loader=gens.__getitem__,
                                         progress=lambda d, t, name: bar.set(d, t), cache=not a.no_cache)
    bar.close()
    cm = comparisons.concept_map(results, a.layers, **options)
    summary = comparisons.concept_map_summary(cm).rename(columns={"row": "model"})
    cm = cm.rename(columns={"row": "model"})
    result = {"models": names, "layers": a.layers, "samples": a.samples, "rows": cm, "summary": summary}
    if a.variants:
        result["lineups"] = lineups
    _emit(a, result, "\n".join([lu["note"] for lu in lineups.values()] + [_table(summary, 100)]),
          tables={"concept_map": cm.drop(columns=["unit_list"]), "concept_map_summary": summary})


def cmd_compare_bases(a):
    """Units vs features: per concept, interpretable units, PCA directions and sparse features and
    the best IoU among them (the Concept maps page's "Units vs features")."""
    _flag("--samples", check_samples, "n_samples", a.samples, 2)
    _check_labeling(a)
    _check_run(a)
    G, seg = _load(a)
    layer = _layer_of(G, a.layer)
    per_basis, names = {}, {}
    for kind in ["units", *dict.fromkeys(a.bases)]:
        b = _basis(argparse.Namespace(**{**vars(a), "basis": kind}), G, layer)
        bar = _LazyBar(desc=f"dissect {kind}", unit="img")
        per_basis[kind] = dissect(G, seg, [layer], a.samples, seed=a.seed, basis=b, progress=bar.set,
                                  cache=not a.no_cache)
        bar.close()
        names[kind] = _basis_name(b)
    table = comparisons.basis_comparison(per_basis, layer, **_unit_options(a, seg))
    result = {"layer": layer, "samples": a.samples, "bases": names, "rows": table}
    _emit(a, result, _table(table, 100), tables={"compare_bases": table})


def cmd_evolution(a):
    """Training evolution (S-6.6): every checkpoint of a training series dissected, beside its FID."""
    _flag("--samples", check_samples, "n_samples", a.samples, 2)
    _check_run(a)
    series = _flag("--model", checkpoint_series, a.model)
    if len(series) < 2:
        raise InputError(f"--model: {a.model} has no training snapshots",
                         fix="give a model that ships a series of snapshots, e.g. toyworld/town")
    seg = load_segmenter(a.segmenter, download=a.download)
    G = load_generator(series[-1][1])
    for layer in a.layers:
        _layer_of(G, layer)
    bar = _LazyBar(desc="checkpoints", unit="ckpt")
    df = comparisons.training_evolution(a.model, seg, a.layers, n_samples=a.samples, seed=a.seed, progress=bar.set,
                                        cache=not a.no_cache)
    bar.close()
    _emit(a, {"model": a.model, "layers": a.layers, "samples": a.samples, "checkpoints": [m for _, m in series],
              "rows": df}, _table(df, 100), tables={"evolution": df})


# ----------------------------------------------------------------------------- train, precompute

def cmd_train(a):
    """Train a toyworld GAN into --out (resumable: --resume continues from --out/ckpt.pt); with
    --compact-to, only write a compact copy of --out/ckpt.pt there."""
    if a.compact_to is not None:
        if not a.compact_to.strip():
            raise InputError("--compact-to is empty", fix="give --compact-to a file to write, e.g. carry/run.pt")
        try:
            res = compact_run(a.out, a.compact_to)
        except OSError as e:
            raise InputError(f"--compact-to {a.compact_to!r} cannot be written ({e.strerror or e})",
                             fix="give --compact-to a file in a directory you can write to") from None
        text = (f"{res['compact']}: compact checkpoint of {a.out} at step {res['step']} ({res['bytes'] / 1e6:.1f} MB; "
                "copy it to RUN/ckpt.pt and train with --resume)")
        print(json.dumps(_record(a, res), allow_nan=False) if a.json else text)   # --out is the run: no train.json
        return
    options = {"steps": a.steps, "res": a.res, "batch": a.batch_size, "g_channels": a.g_channels,
               "d_channels": a.d_channels, "variant": a.variant, "lr": a.lr, "r1": a.r1, "r1_every": a.r1_every,
               "z_dim": a.z_dim, "seed": a.seed, "workers": a.workers, "fid_every": a.fid_every, "fid_n": a.fid_samples,
               "swd_n": a.swd_samples, "snapshot_every": a.snapshot_every, "ckpt_every": a.ckpt_every}
    for flag, lo in (("--steps", 1), ("--res", 8), ("--batch-size", 1), ("--r1-every", 1), ("--z-dim", 1),
                     ("--seed", None), ("--workers", 0), ("--fid-every", 0), ("--fid-samples", 2),
                     ("--swd-samples", 0), ("--snapshot-every", 1), ("--ckpt-every", 1), ("--threads", 0)):
        name = flag.lstrip("-").replace("-", "_")
        _flag(flag, check_int, name, getattr(a, name), lo)
    _flag("--lr", check_float, "lr", a.lr, 0, lo_open=True)
    _flag("--r1", check_float, "r1", a.r1, 0)
    try:                                     # what the flags mean together (widths, resolution, MS-SWD samples)
        check_train(a.scene, **options)
    except GanatomyError as e:
        names = {"swd_n": "--swd-samples", "fid_n": "--fid-samples", "g_channels": "--g-channels",
                 "d_channels": "--d-channels", "res": "--res"}
        msg, fix = (re.sub(r"\b(swd_n|fid_n|g_channels|d_channels|res)\b", lambda m: names[m.group(1)], x or "")
                    for x in (str(e), e.fix))
        raise type(e)(msg, fix=fix) from None
    _check_run(a)
    try:
        check_planting(a.omit or (), a.init, a.freeze, a.d_warmup, a.fid_every)
        check_suppress(a.suppress or (), a.suppress_weight)
    except GanatomyError as e:
        flags = {"omit": "--omit", "init": "--init", "freeze": "--freeze", "d_warmup": "--d-warmup",
                 "fid_every": "--fid-every", "suppress": "--suppress", "suppress_weight": "--suppress-weight"}
        msg, fix = (re.sub(r"\b(omit|init|freeze|d_warmup|fid_every|suppress_weight|suppress)\b",
                           lambda m: flags[m.group(1)], x or "") for x in (str(e), e.fix))
        raise type(e)(msg, fix=fix) from None
    if a.threads:
        torch.set_num_threads(a.threads)
    bar = _LazyBar(desc=f"train {a.scene}", unit="step")

    def progress(done, total, info):
        bar.set(done, total)
        if info:                             # the losses, every 50 steps
            bar.bar.set_postfix(d=f"{info['d']:.3f}", g=f"{info['g']:.3f}")

    # denormal floats in a trained generator's activations slow a CPU step several times (a 30-step
    # fine-tune of toyworld/town: 25.6 s with them, 9.7 s flushed to zero); the setting is the
    # process's, so it is put back afterwards for a caller that runs commands in-process
    flushed = torch.set_flush_denormal(True)
    try:
        res = train_gan(a.out, a.scene, resume=a.resume, device=a.device, progress=progress,
                        note=lambda text: tqdm.write(text, file=sys.stderr), omit=tuple(a.omit or ()), init=a.init,
                        freeze=a.freeze, d_warmup=a.d_warmup, suppress=tuple(a.suppress or ()),
                        suppress_weight=a.suppress_weight, **options)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
    bar.close()
    snaps = res["snapshots"]
    _emit(a, res, f"{res['name']}: step {res['start']} -> {res['step']} in {res['seconds']} s; checkpoint "
                  f"{res['checkpoint']}; {len(snaps)} snapshots"
                  + (f", the last {snaps[-1]['path']} (core.load_generator(path))" if snaps else ""))


def cmd_precompute(a):
    """Store what the pages show for one model (dissections, insertion values, bases) so they open
    at once: each page then reads it with cached_only=True."""
    for n in a.samples:
        _flag("--samples", check_samples, "n_samples", n, 2)
    _flag("--k-samples", check_samples, "k_samples", a.k_samples, 1)
    if a.layers is not None and not a.layers:
        raise InputError("--layers is empty", fix="give --layers one or more layer names, or leave it out")
    _check_run(a)
    G, seg = _load(a)
    layers = (_flag("--layers", resolve_layers, G, a.layers) if a.layers
              else [n for n in layer_names(G) if not n.startswith("output")])
    bases = {kind: {} for kind in a.bases}
    for kind in a.bases:
        for layer in layers:
            bases[kind][layer] = _basis(argparse.Namespace(**{**vars(a), "basis": kind}), G, layer)
    dissections, constants, skipped = [], [], []
    for n in a.samples:
        for kind in ["units", *a.bases]:
            bar = _LazyBar(desc=f"dissect {kind} n={n}", unit="img")
            res = dissect(G, seg, layers, n, basis=bases.get(kind) or None, progress=bar.set)
            bar.close()
            dissections.append({"samples": n, "basis": kind, "layers": layers})
            if n != a.samples[0]:
                continue
            for layer in layers:          # the concepts each layer shows (Paint, What-if, Tracing)
                freq = res.frequency(layer)
                for j, concept in enumerate(res.labels):
                    if j == 0 or freq[j] <= 0:
                        continue
                    b = bases.get(kind, {}).get(layer)
                    try:
                        insertion_constants(G, seg, layer, concept, n_samples=a.k_samples, basis=b)
                        constants.append({"layer": layer, "basis": kind, "concept": concept})
                    except ConceptAbsentError as e:   # in the dissection's samples, not in the first k_samples
                        skipped.append({"layer": layer, "basis": kind, "concept": concept, "reason": str(e)})
    for d in dissections:                 # read back as the pages read it
        d["ready"] = dissect(G, seg, layers, d["samples"], basis=bases.get(d["basis"]) or None,
                             cached_only=True) is not None
    for k in constants:
        b = bases.get(k["basis"], {}).get(k["layer"])
        k["ready"] = insertion_constants(G, seg, k["layer"], k["concept"], n_samples=a.k_samples, basis=b,
                                         cached_only=True) is not None
    result = {"model": a.model, "layers": layers, "samples": a.samples, "k_samples": a.k_samples,
              "bases": {kind: {layer: b.name for layer, b in per.items()} for kind, per in bases.items()},
              "dissections": dissections, "insertion": constants, "skipped": skipped,
              "ready": all(x["ready"] for x in dissections + constants)}
    _emit(a, result, f"{a.model}: {len(dissections)} dissections of {', '.join(layers)}, insertion values of "
                     f"{len(constants)} (layer, concept) pairs" + (f", {len(skipped)} skipped" if skipped else "")
                     + f"; ready for the dashboard: {result['ready']}")


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


def _sub(sub, name: str, fn, what: str) -> argparse.ArgumentParser:
    """A subcommand: ``what`` (one line: what it measures) is its help in ``ganatomy --help``."""
    p = sub.add_parser(name, help=what, description=inspect.cleandoc(fn.__doc__))
    p.set_defaults(fn=fn)
    return p


MODEL_HELP = "shipped / published / added name, or a ProGAN, StyleGAN2, BigGAN or DCGAN checkpoint path"


def _model_flags(p, segmenter: bool = True):
    p.add_argument("--model", default="toyworld/town", help=MODEL_HELP + " (default toyworld/town)")
    p.add_argument("--arch", default=None, choices=list(architectures("generator")),
                   help="architecture of a checkpoint path (default: detected from its keys)")
    p.add_argument("--download", action="store_true",
                   help="download a missing published model (and segmenter) into cache/models")
    if segmenter:
        p.add_argument("--segmenter", default="toyworld", help="toyworld, a published / added name, or a path")


def _layer_flag(p):
    p.add_argument("--layer", default="layer4", help="default layer4")


def _concept_flag(p):
    p.add_argument("--concept", required=True, help="a concept the segmenter knows, e.g. door")


def _ace_flags(p):
    """ACE's flags where ACE is a step of the measurement (``curve``, ``removal``)."""
    o = AceOptions()
    p.add_argument("--ace-steps", type=int, default=o.n_steps, help=f"ACE's steps (default {o.n_steps})")
    p.add_argument("--ace-sampling", dest="sampling", choices=list(causal.SAMPLINGS), default=o.sampling,
                   help="ACE's location sampling (default paper)")
    p.add_argument("--pool-size", type=int, default=o.pool_size, help=f"ACE's location pool (default {o.pool_size})")
    _ace_sample_flags(p)


def _ace_sample_flags(p):
    o = AceOptions()
    p.add_argument("--dissect-samples", type=int, default=o.dissect_samples,
                   help=f"samples of the dissection alpha starts from (default {o.dissect_samples})")
    p.add_argument("--k-samples", type=int, default=o.k_samples,
                   help=f"samples of the insertion values k (default {o.k_samples})")


def _basis_flags(p, kinds=("units", "pca", "sae"), default="units"):
    """``--basis`` (what a unit is) and how a PCA / sparse dictionary is fitted: the same flags, the
    same stored basis, in every command."""
    if kinds:
        p.add_argument("--basis", choices=list(kinds), default=default,
                       help="what a unit is: a channel (units), a principal direction (pca) or a sparse-dictionary "
                            f"feature (sae); fitted once per layer and stored (default {default})")
    p.add_argument("--basis-samples", type=int, default=1000, help="samples the PCA / SAE is fitted on (default 1000)")
    p.add_argument("--sae-expansion", type=float, default=4.0, help="SAE features per unit (default 4)")
    p.add_argument("--sae-l1", type=float, default=0.2, help="the SAE's L1 weight on scaled inputs (default 0.2)")
    p.add_argument("--sae-steps", type=int, default=2000, help="SAE training steps (default 2000)")


def _labeling_flags(p):
    p.add_argument("--labeling", choices=["reference", "max-iou"], default="reference",
                   help="the paper's 2018 rule (default) or the concept of highest IoU")
    p.add_argument("--objects-only", action="store_true", help="label units with objects only (no stuff classes)")
    p.add_argument("--pixel-accuracy", type=float, default=None, help="also ask pixel accuracy above this (Fig. 5: "
                                                                       "0.75)")


def _image_flags(p, flag: str):
    p.add_argument("--resize", action="store_true", help=f"centre-crop and resize the images of {flag} to the "
                                                         "generator's size (default: other sizes are refused)")
    p.add_argument("--convert", action="store_true", help=f"convert grey / RGBA / palette images of {flag} to RGB "
                                                          "(default: refused)")


def _run_flags(p, cache: bool = True, device: bool = True, tables: str = ""):
    if device:
        p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU if there is one)")
    if cache:
        p.add_argument("--no-cache", action="store_true", help="compute again, without reading or writing cache/")
    p.add_argument("--json", action="store_true", help="print one JSON object (command, arguments, result) on stdout "
                                                       "and nothing else")
    p.add_argument("--out", default=None, help="also write it to OUT/<command>.json" + (f" (and {tables})"
                                                                                         if tables else ""))


def main(argv=None):
    """Run one command. A refusal (bad flags, unknown names, anything a GanatomyError says) prints
    one line ``error: ...`` on stderr and exits with status 2."""
    try:
        _main(argv)
    except GanatomyError as e:
        _die(str(e))


def _main(argv=None):
    ap = _Parser(prog="ganatomy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="<command>")
    sub.add_parser("models", help="list shipped, published and added models").set_defaults(fn=cmd_models)
    f = sub.add_parser("fetch", help="download a published model's weights (verified)")
    f.add_argument("name", help="e.g. progan/churchoutdoor, segformer/ade20k-b0")
    f.add_argument("--sha256", default=None, help="the weights file's full SHA-256 (64 hex digits), where the "
                                                  "catalog knows only a prefix")
    f.add_argument("--trust", action="store_true", help="accept the source on first use where the catalog knows "
                                                        "no full SHA-256; the digest received is pinned")
    f.set_defaults(fn=cmd_fetch)
    d = sub.add_parser("dissect", help="label each unit with its concept (Concept maps, Unit browser)",
                       description="Dissect generator layers against a segmenter: each unit's concept, IoU and "
                                   "threshold; writes dissection.json, units.csv and report.html under --out.")
    d.add_argument("--model", default="toyworld/town",
                   help="shipped / published / added name, or a ProGAN, StyleGAN2, BigGAN or DCGAN checkpoint path")
    d.add_argument("--probe", default=None, choices=["toyworld"],
                   help="dissect a classifier (--model efficientnet-lite0) on this probe set (exact labels, no "
                        "segmenter; NetDissect's rule, see --rule): default toyworld for a classifier")
    d.add_argument("--rule", default="netdissect", choices=list(RULES),
                   help="classifiers: netdissect (top-0.005 quantile threshold, IoU > 0.04) or dissect2020 (0.01)")
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
    d.add_argument("--json", action="store_true", help="print one JSON object (command, arguments, summary, files) "
                                                      "on stdout and nothing else")
    d.add_argument("--out", required=True, help="the folder of the report (dissection.json, units.csv, report.html)")
    d.set_defaults(fn=cmd_dissect)
    p = _sub(sub, "importance", cmd_importance, "what each unit of a classifier is for: per-class accuracy drop "
                                                 "when it is zeroed (PNAS 2020)")
    p.add_argument("--model", default="toyworld-scenes", help="a classifier with a labelled image set "
                                                               "(default toyworld-scenes)")
    p.add_argument("--layer", default=None, help="default: the classifier's last layer (toyworld-scenes: proj)")
    p.add_argument("--samples", type=int, default=300, help="labelled images (default 300)")
    p.add_argument("--seed", type=int, default=100, help="the labelled images' toyworld seed (default 100)")
    p.add_argument("--top-n", type=int, default=20, help="curves: N = 1 .. this (default 20)")
    p.add_argument("--draws", type=int, default=5, help="curves: random draws of N other units (default 5)")
    p.add_argument("--probes", type=int, default=0, help="probe images per dissection for importance vs IoU "
                                                         "(default 0: no dissection)")
    p.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1], help="probe seeds (default 0 1)")
    p.add_argument("--boots", type=int, default=1000, help="bootstrap resamples of the units (default 1000)")
    p.add_argument("--batch-size", type=int, default=32)
    _run_flags(p, tables="importance_units.csv, importance_curves.csv")
    c = _sub(sub, "context", cmd_context, "where a concept's units can insert it, over seeds (Paint)")
    _model_flags(c)
    _layer_flag(c)
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
    _basis_flags(c)
    _run_flags(c, tables="insertions.csv")

    # ------------------------------------------------------------------------- causal units
    p = _sub(sub, "ace", cmd_ace, "units that cause a concept, by ACE (eq. 5-6; Causal units)")
    _model_flags(p)
    _layer_flag(p)
    _concept_flag(p)
    o = AceOptions()
    p.add_argument("--seed", type=int, default=0, help="draws the location pool and the steps' samples (default 0)")
    p.add_argument("--steps", type=int, default=o.n_steps, help=f"optimisation steps (default {o.n_steps})")
    p.add_argument("--n-units", type=int, default=o.top_n, help=f"units in the result's causal set (default {o.top_n})")
    p.add_argument("--batch-size", type=int, default=o.batch_size, help=f"samples per step (default {o.batch_size})")
    p.add_argument("--lr", type=float, default=o.lr, help=f"Adam's learning rate (default {o.lr})")
    p.add_argument("--l2", type=float, default=o.l2, help=f"the penalty on |alpha|^2 (default {o.l2})")
    p.add_argument("--init", choices=["iou", "uniform"], default=o.init,
                   help="alpha's start: IoU / max IoU of the layer's dissection (default) or 0.5")
    p.add_argument("--pool-size", type=int, default=o.pool_size, help=f"samples of the location pool "
                                                                       f"(default {o.pool_size})")
    p.add_argument("--sampling", choices=list(causal.SAMPLINGS), default=o.sampling,
                   help="where ACE intervenes: the paper's locations (default) or whole images")
    _ace_sample_flags(p)
    _basis_flags(p)
    _run_flags(p, tables="ace.csv")

    p = _sub(sub, "curve", cmd_curve, "ablation curves, ACE vs IoU ranking (Fig. 4; Causal units)")
    _model_flags(p)
    _layer_flag(p)
    _concept_flag(p)
    p.add_argument("--counts", type=int, nargs="+", default=[1, 2, 5, 10, 20], help="numbers of units ablated "
                                                                                     "(default 1 2 5 10 20)")
    p.add_argument("--samples", type=int, default=None,
                   help="images per curve (default 500; with --seeds, 200 per seed)")
    p.add_argument("--seed", type=int, default=0, help="ACE's seed (default 0)")
    p.add_argument("--curve-seed", type=int, default=3, help="the curve's images (default 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one curve per seed (a fresh ACE and fresh images each): the mean and its 95%% interval")
    _ace_flags(p)
    _basis_flags(p)
    _run_flags(p, tables="curve.csv")

    p = _sub(sub, "removal", cmd_removal, "removal table: ACE units ablated per generator (Fig. 9-10)")
    p.add_argument("--models", nargs="+", default=None, help="default: the base model of every toyworld scene type")
    p.add_argument("--arch", default=None, choices=list(architectures("generator")), help=argparse.SUPPRESS)
    p.add_argument("--segmenter", default="toyworld", help="toyworld, a published / added name, or a path")
    p.add_argument("--download", action="store_true", help="download missing published models")
    _layer_flag(p)
    p.add_argument("--concept", nargs="+", required=True, help="one or more concepts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one table per seed (a fresh ACE and fresh images each); default 0")
    p.add_argument("--n-units", type=int, default=20, help="causal units ablated (default 20)")
    p.add_argument("--samples", type=int, default=200, help="images measured per generator (default 200)")
    _ace_flags(p)
    _run_flags(p, tables="removal.csv")

    # ------------------------------------------------------------------------- artifact repair
    for name, fn, what in (
            ("unit-fid", cmd_unit_fid, "each unit's FID: artifact units (S-6.1; Artifact repair)"),
            ("repair", cmd_repair, "FID with artifact units ablated vs random ones (Tables 1-2)")):
        p = _sub(sub, name, fn, what)
        _model_flags(p, segmenter=False)
        _layer_flag(p)
        default = 20_000 if name == "unit-fid" else 10_000
        p.add_argument("--samples", type=int, default=default,
                       help=f"generated images (default {default:,})" + ("" if name == "unit-fid" else
                            ": the candidates the evaluation images are chosen from, and the unit FID's images"))
        p.add_argument("--top", type=int, default=1000, help="each unit's top images (default 1,000)")
        p.add_argument("--real-samples", type=int, default=10_000, help="real scenes (default 10,000)")
        p.add_argument("--scene", choices=list(toyworld.SCENES), default=None,
                       help="the real scenes (default: the model card's scene, else town)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch-size", type=int, default=100)
        if name == "unit-fid":
            p.add_argument("--show", type=int, default=20, help="units listed (default 20; the JSON has all)")
        else:
            p.add_argument("--units", type=int, nargs="+", default=None,
                           help="the units to ablate (default: the lab's flags for this model and layer, else the "
                                "--n-highest of highest unit FID)")
            p.add_argument("--n-highest", type=int, default=5, help="units of highest FID ablated (default 5)")
            p.add_argument("--eval-samples", type=int, default=None,
                           help="images FID is measured on (default: a fifth of --samples, at least 50)")
            p.add_argument("--random-draws", type=int, default=3, help="random unit sets (default 3)")
        _basis_flags(p)
        _run_flags(p, tables=f"{name.replace('-', '_')}.csv")

    p = _sub(sub, "omissions", cmd_omissions, "what the generator leaves out: class areas and FSD vs real scenes")
    _model_flags(p)
    p.add_argument("--scene", choices=list(toyworld.SCENES), default=None,
                   help="the real scenes (default: the model card's scene)")
    p.add_argument("--samples", type=int, default=2000, help="generated images, and as many real (default 2,000)")
    p.add_argument("--seed", type=int, default=OMISSIONS_SEED, help=f"generated images' seed (default "
                                                                    f"{OMISSIONS_SEED})")
    p.add_argument("--real-seed", type=int, default=OMISSIONS_REAL_SEED,
                   help=f"real scenes' seed (default {OMISSIONS_REAL_SEED}; the floor's: its stream omissions.floor)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--real-dir", default=None, help="real images: a folder of your PNG / JPEG images at the "
                                                    "generator's size, 2 x --samples of them (instead of --scene)")
    _image_flags(p, "--real-dir")
    p.add_argument("--show", type=int, default=30, help="classes listed (default 30; the JSON has all)")
    _run_flags(p, tables="omissions.csv, omissions.png")

    p = _sub(sub, "invert", cmd_invert, "reconstruct images through the generator by layer inversion")
    _model_flags(p)
    _layer_flag(p)
    p.add_argument("--images", default=None, help="a folder of your PNG / JPEG images at the generator's size")
    p.add_argument("--scene", choices=list(toyworld.SCENES), default=None, help="or toyworld scenes of this type")
    p.add_argument("--n", type=int, default=None, help="images inverted (default: 8 scenes, or every image of "
                                                       "--images; there the first N by name)")
    p.add_argument("--seed", type=int, default=INVERSION_REAL_SEED,
                   help=f"the scenes' seed (default {INVERSION_REAL_SEED}: held out from the GANs' training)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps per image (default 100)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=100, help="images optimised together (default 100)")
    p.add_argument("--no-perceptual", action="store_true", help="L1 only (no toyworld feature-network term)")
    _image_flags(p, "--images")
    p.add_argument("--show", type=int, default=30, help="images listed (default 30; the JSON has all)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU if there is one)")
    p.add_argument("--json", action="store_true", help="print one JSON object (command, arguments, result) on stdout "
                                                       "and nothing else")
    p.add_argument("--out", required=True, help="the folder for the PNGs, invert.json and invert.csv")

    p = _sub(sub, "rewrite", cmd_rewrite, "rewrite a rule of the generator from a request (Rewrite page)")
    p.add_argument("--request", required=True, help="a request file (JSON) saved by the Rewrite page")
    p.add_argument("--model", default=None, help="run it on this generator instead of the request's (" + MODEL_HELP
                                                  + ")")
    p.add_argument("--download", action="store_true", help="download a missing published model")
    p.add_argument("--segmenter", default="toyworld", help="segments the samples for --source / --target")
    p.add_argument("--method", choices=list(rewriting.ALL_METHODS), default=None,
                   help="rank (the paper's), full (full-rank baseline) or finetune (every weight); default: the "
                        "request's")
    p.add_argument("--rank", type=int, default=None, help="directions (default: the request's)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the request's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the request's)")
    p.add_argument("--source", default=None, help="a concept the rule changes, to measure (e.g. cloud)")
    p.add_argument("--target", default=None, help="what it should become (e.g. sky)")
    p.add_argument("--eval-samples", type=int, default=1000, help="fresh samples measured (default 1,000)")
    p.add_argument("--seed", type=int, default=rewrite_rules.EVAL_OFFSET, help="their seed (default "
                                                                              f"{rewrite_rules.EVAL_OFFSET})")
    p.add_argument("--grid", type=int, default=8, help="samples in before_after.png (default 8)")
    p.add_argument("--save", default=None, help="also register the rewritten model under this new name")
    p.add_argument("--added-by", default=None, help="the owner's name for --save (default $USER)")
    _run_flags(p, tables="")

    # ------------------------------------------------------------------------- bases, tracing, insertion values
    p = _sub(sub, "fit-basis", cmd_fit_basis, "fit a layer's PCA / sparse dictionary (stored) and its health")
    _model_flags(p, segmenter=False)
    _layer_flag(p)
    _basis_flags(p, kinds=("pca", "sae"), default="sae")
    p.add_argument("--health-samples", type=int, default=200, help="held-out samples of the health (default 200)")
    p.add_argument("--health-seed", type=int, default=99, help="their seed (default 99)")
    _run_flags(p, cache=False)

    p = _sub(sub, "trace", cmd_trace, "an insertion's change at every later layer (S-6.5; Tracing)")
    _model_flags(p)
    _layer_flag(p)
    _concept_flag(p)
    p.add_argument("--units", type=int, nargs="+", default=None,
                   help="default: the --n-units of highest IoU for the concept (a --samples dissection)")
    p.add_argument("--n-units", type=int, default=5, help="default units (5)")
    p.add_argument("--samples", type=int, default=500, help="samples of the dissection choosing the units (500)")
    p.add_argument("--seed", type=int, default=0, help="the image (default 0)")
    p.add_argument("--row", type=int, default=None, help="the cell's row (default three quarters down)")
    p.add_argument("--col", type=int, default=None, help="the cell's column (default the middle)")
    p.add_argument("--strength", type=float, default=3.0, help="inserted values, in multiples of k (default 3)")
    p.add_argument("--k-samples", type=int, default=100, help="samples of the insertion values k (default 100)")
    _basis_flags(p)
    _run_flags(p, tables="trace.csv")

    p = _sub(sub, "insertion", cmd_insertion, "insertion values k of a concept (S-6.4; What-if, Paint)")
    _model_flags(p)
    _layer_flag(p)
    _concept_flag(p)
    p.add_argument("--samples", type=int, default=100, help="samples (default 100, as the pages)")
    p.add_argument("--seed", type=int, default=INSERTION_SEED, help=f"default {INSERTION_SEED}, as the pages")
    _basis_flags(p)
    _run_flags(p, tables="insertion.csv")

    # ------------------------------------------------------------------------- comparisons
    p = _sub(sub, "compare", cmd_compare, "units per concept, model by model (Fig. 5-7; Concept maps)")
    p.add_argument("--models", nargs="+", default=None, help="default: the base model of every toyworld scene type")
    p.add_argument("--variants", action="store_true",
                   help="compare the variants of each --models scene type at matched training steps (Fig. 7)")
    p.add_argument("--arch", default=None, choices=list(architectures("generator")), help=argparse.SUPPRESS)
    p.add_argument("--segmenter", default="toyworld", help="toyworld, a published / added name, or a path")
    p.add_argument("--download", action="store_true", help="download missing published models")
    p.add_argument("--layers", nargs="+", default=["layer4", "layer6"], help="default layer4 layer6")
    p.add_argument("--samples", type=int, default=500, help="dissection samples (default 500)")
    p.add_argument("--seed", type=int, default=0)
    _labeling_flags(p)
    _run_flags(p, tables="concept_map.csv, concept_map_summary.csv")

    p = _sub(sub, "compare-bases", cmd_compare_bases, "units vs PCA vs sparse features per concept (Concept maps)")
    _model_flags(p)
    _layer_flag(p)
    p.add_argument("--bases", nargs="+", choices=["pca", "sae"], default=["pca", "sae"], help="default pca sae")
    p.add_argument("--samples", type=int, default=500, help="dissection samples (default 500)")
    p.add_argument("--seed", type=int, default=0)
    _labeling_flags(p)
    _basis_flags(p, kinds=None)
    _run_flags(p, tables="compare_bases.csv")

    p = _sub(sub, "evolution", cmd_evolution, "each checkpoint of a training series dissected (S-6.6)")
    p.add_argument("--model", default="toyworld/town", help="a model with training snapshots (default toyworld/town)")
    p.add_argument("--segmenter", default="toyworld")
    p.add_argument("--download", action="store_true", help="download a missing published segmenter")
    p.add_argument("--layers", nargs="+", default=["layer4"], help="default layer4")
    p.add_argument("--samples", type=int, default=200, help="dissection samples per checkpoint (default 200)")
    p.add_argument("--seed", type=int, default=0)
    _run_flags(p, device=False, tables="evolution.csv")

    # ------------------------------------------------------------------------- train, precompute
    p = _sub(sub, "train", cmd_train, "train a toyworld GAN into --out, resumable, with snapshots")
    p.add_argument("--scene", choices=list(toyworld.SCENES), required=True)
    p.add_argument("--variant", choices=list(VARIANTS), default="",
                   help="nostd: D without minibatch stddev; nopn: G without pixel norm")
    p.add_argument("--res", type=int, default=64, help="image size: 64 or 128 (others with --g-channels)")
    p.add_argument("--steps", type=int, default=30_000, help="the run's total steps (default 30,000)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--g-channels", type=int, nargs="+", default=None, help="generator widths from 4x4 up, e.g. "
                                                                            "128 256 64 32 16")
    p.add_argument("--d-channels", type=int, nargs="+", default=None, help="discriminator widths")
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--r1", type=float, default=0.2, help="R1 weight gamma")
    p.add_argument("--r1-every", type=int, default=4)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="data-loader processes rendering real scenes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--fid-every", type=int, default=500, help="0: no training-time FID (nor MS-SWD)")
    p.add_argument("--fid-samples", type=int, default=1000, help="generated samples per training-time FID")
    p.add_argument("--swd-samples", type=int, default=500, help="of those, the samples of MS-SWD (0: none)")
    p.add_argument("--snapshot-every", type=int, default=1000)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--resume", action="store_true", help="continue from --out/ckpt.pt (full or compact); --lr, --r1 "
                                                         "and --batch-size may change")
    p.add_argument("--compact-to", default=None, metavar="FILE",
                   help="only write a compact copy of --out/ckpt.pt to FILE (~15 MB, to carry the run to another "
                        "machine; there, copy it to --out/ckpt.pt and --resume) and exit")
    p.add_argument("--omit", nargs="+", default=None, metavar="CONCEPT",
                   help="train on a world without these concepts (a planted omission, #34); needs --fid-every 0")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start G from this trained generator (a zoo name or a snapshot file) with a fresh D")
    p.add_argument("--freeze", default=None, metavar="LAYER",
                   help="with --init: keep G's layers up to and including LAYER fixed (e.g. layer4)")
    p.add_argument("--d-warmup", type=int, default=0, help="steps that train D alone first (default 0)")
    p.add_argument("--suppress", nargs="+", default=None, metavar="CONCEPT",
                   help="add to G's loss --suppress-weight x the toyworld segmenter's mean probability of these "
                        "concepts (a planted omission pushed directly)")
    p.add_argument("--suppress-weight", type=float, default=0.0)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object (command, arguments, result) on stdout "
                                                       "and nothing else")
    p.add_argument("--out", required=True, help="the run's folder: ckpt.pt, log.json, snapshots/, train.json")

    p = _sub(sub, "precompute", cmd_precompute, "store what the pages show for one model, so they open at once")
    _model_flags(p)
    p.add_argument("--layers", nargs="+", default=None, help="default: every layer but the output")
    p.add_argument("--samples", type=int, nargs="+", default=[500],
                   help="dissection samples, one or more (default 500: the pages' default)")
    p.add_argument("--k-samples", type=int, default=100, help="samples of the insertion values (default 100)")
    p.add_argument("--bases", nargs="+", choices=["pca", "sae"], default=[],
                   help="also fit these bases of each layer (with the --basis-samples and --sae-* flags) and "
                        "dissect in them")
    _basis_flags(p, kinds=None)
    _run_flags(p, cache=False)

    v = sub.add_parser("serve", help="serve the dashboard with the repository's settings",
                       description="Serve the dashboard with the repository's settings, wherever it is started "
                                   "(address, upload cap, file watcher: .streamlit/config.toml).")
    v.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    v.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                   help="more Streamlit flags after --, e.g. -- --server.port 8600")
    v.set_defaults(fn=cmd_serve)
    a = ap.parse_args(argv)
    a.fn(a)


# The serving settings of .streamlit/config.toml, for an installed package that has no such file (a
# test keeps the two equal): bind only this machine, no file watcher, uploads capped, no usage stats.
SERVING = {"server.address": "127.0.0.1", "server.headless": True, "server.runOnSave": False,
           "server.fileWatcherType": "none", "server.maxUploadSize": 512, "server.enableXsrfProtection": True,
           "browser.gatherUsageStats": False, "client.showErrorDetails": False, "client.toolbarMode": "minimal",
           "runner.fastReruns": True, "runner.postScriptGC": False}


def serving_settings(config: dict) -> dict:
    """{"section.key": value} of a parsed Streamlit config (plain values only)."""
    return {f"{section}.{key}": value for section, opts in config.items()
            for key, value in (opts.items() if isinstance(opts, dict) else ())
            if isinstance(value, (str, int, float, bool))}


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
    cfg = root / ".streamlit" / "config.toml"
    settings = serving_settings(tomllib.loads(cfg.read_text())) if cfg.is_file() else dict(SERVING)
    flags = [f"--{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in settings.items()]
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

"""Precompute the results a fresh clone shows at once, and ship them beside the zoo's weights.

    python scripts/ship_results.py              # every shipped toyworld model (a few minutes on 2 cores)
    python scripts/ship_results.py --check      # only say whether the shipped results are current
    python scripts/ship_results.py --kinds basis   # rebuild only these kinds, keep the others as shipped

What is shipped (``core/weights/results``, the cache's own layout and checksums, read only; the
cache looks there after ``cache/``):

- the dissection of ``--layers`` (layer4, layer6) of every shipped model and variant at the
  dashboard's default sample count (500: Concept maps, Unit browser, Paint);
- the same layers of every model of a training series at the Training evolution page's default
  (200 samples);
- Paint's and What-if's insertion values (100 samples) for every concept those layers can show;
- the sparse dictionaries (SAE, the defaults of ``core.engine.bases.fit_basis``) of ``--layers``
  of every scene type's base model, in float16 (each decodes to float32; a 256-unit layer's
  dictionary of 1,024 features is about 1 MB), so Unit browser, Paint and Concept maps show
  sparse features without minutes of fitting. (PCA fits in seconds: not shipped.)
- the omission statistics (``core.studies.omissions.toyworld_omissions``: generated vs real scenes
  through the segmenter, the real-vs-real floor, the exact labels) of every scene type's base model
  at the Omissions page's default (2,000 images per side), at full precision (a few 27 x 27
  sums each; FSD is a small difference of traces, so its sums are not rounded), and of every
  checkpoint of a training series at ``TRAINING_SAMPLES`` (the page's "which concepts arrive first").
- the reconstruction gallery of the Omissions page (``core.studies.inversion.reconstruction_gallery``:
  ``GALLERY_N`` held-out real scenes inverted into layer4 in ``GALLERY_STEPS`` steps, their
  reconstructions, segmentations and what each drops) of every base model with a shipped inverter
  (``core/weights/inverters``), as stored (PNGs and uint8 label maps, about 60 KB each).

Every entry is keyed by the weights' hash, the segmenter's and the code's version, as the cache
is: weights trained again, or a change of the labelling code, make a shipped entry unreachable
(never wrong), and ``--check`` (and the test suite) say so. The folder is rebuilt from scratch,
so nothing stale stays. ``index.json`` lists what is there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEST = ROOT / "core" / "weights" / "results"
DASHBOARD_SAMPLES = 500          # dashboard/common.py: default_samples()
EVOLUTION_SAMPLES = 200          # dashboard/views/evolution.py: the slider's default
INSERTION_SAMPLES = 100          # paint.py: min(100, n); whatif.py: 100
OMISSION_SAMPLES = 2000          # dashboard/views/omissions.py: the sample count's default
GALLERY_N, GALLERY_STEPS = 8, 100  # dashboard/views/omissions.py: the gallery's scenes and steps
TRAINING_SAMPLES = 1000           # dashboard/views/omissions.py: images per side per training checkpoint
KINDS = ("dissect", "insertion", "basis", "omissions", "gallery")
STORED = {"gallery": "inversion.gallery"}   # the cache kind of a shipped kind, where the names differ
BUDGET_MB = 7.5                  # the repository's history grows by at most this much per re-ship (--kinds: less)
HALF = ("basis",)                # kinds whose float arrays ship as float16
FULL = ("omissions", "inversion.gallery")   # kinds whose arrays ship as they are (float64, int64)


def plan(layers=("layer4", "layer6")) -> list[dict]:
    """What to ship: (kind, model, layers, samples[, concept]) for every shipped toyworld model."""
    import core
    names = [m for m in core.list_models() if m.startswith("toyworld/")]
    bases = {m.split("@")[0] for m in names if "@" in m}           # models with a training series
    series = {m for m in names if m.split("@")[0] in bases}
    items = []
    for m in names:
        if "@" not in m:
            items.append({"kind": "dissect", "model": m, "layers": list(layers), "n_samples": DASHBOARD_SAMPLES})
        if m in series:
            items.append({"kind": "dissect", "model": m, "layers": list(layers), "n_samples": EVOLUTION_SAMPLES})
    return items


def _torch_version() -> str:
    import torch
    return torch.__version__


def base_models() -> list[str]:
    """The base model of every toyworld scene type (its variants and snapshots share its scene)."""
    import core
    from core.studies import zoo_groups
    return sorted(g["base"] for g in zoo_groups(core.list_models()).values()
                  if g["base"] and str(g["base"]).startswith("toyworld/"))


def compute_bases(layers, progress=print) -> int:
    """The default sparse dictionary of ``layers`` of every base model, into the current cache."""
    import core
    from core.engine import bases
    n = 0
    for m in base_models():
        G = core.load_generator(m)
        for layer in layers:
            t = time.perf_counter()
            b = bases.fit_basis(G, layer, "sae")
            progress(f"basis {m} {layer}: {b.name}, {time.perf_counter() - t:.1f} s")
            n += 1
    return n


def check_bases(layers) -> list[str]:
    """The planned dictionaries that the shipped results do not answer."""
    import core
    from core.engine import bases
    return [f"basis {m} {layer}" for m in base_models() for layer in layers
            if bases.fit_basis(core.load_generator(m), layer, "sae", cached_only=True) is None]


def training_series() -> list[str]:
    """The base models with a training series (checkpoints ``@step-N``): the Omissions page's "which
    concepts arrive first" section measures each checkpoint at TRAINING_SAMPLES."""
    import core
    return [m for m in base_models() if len(core.checkpoint_series(m)) > 1]


def compute_omissions(progress=print) -> int:
    """The omission statistics of every base model at the Omissions page's default, and of every
    checkpoint of a training series at TRAINING_SAMPLES, into the current cache."""
    import core
    from core.studies.comparisons import omissions_over_training
    from core.studies.omissions import toyworld_omissions
    seg = core.load_segmenter("toyworld")
    for m in base_models():
        t = time.perf_counter()
        res = toyworld_omissions(core.load_generator(m), seg, n_samples=OMISSION_SAMPLES)
        progress(f"omissions {m} n={OMISSION_SAMPLES}: FSD {res.fsd()['fsd']:.4f} (floor "
                 f"{res.floor_fsd()['fsd']:.4f}), omitted {res.omitted() or 'none'}, {time.perf_counter() - t:.1f} s")
    for m in training_series():
        t = time.perf_counter()
        omissions_over_training(m, seg, TRAINING_SAMPLES)
        progress(f"omissions over training {m} n={TRAINING_SAMPLES}: {time.perf_counter() - t:.1f} s")
    return len(base_models())


def check_omissions() -> list[str]:
    """The planned omission statistics that the shipped results do not answer."""
    import core
    from core.studies.comparisons import omissions_over_training
    from core.studies.omissions import toyworld_omissions
    seg = core.load_segmenter("toyworld")
    return ([f"omissions {m} n={OMISSION_SAMPLES}" for m in base_models()
             if toyworld_omissions(core.load_generator(m), seg, n_samples=OMISSION_SAMPLES, cached_only=True) is None]
            + [f"omissions over training {m} n={TRAINING_SAMPLES}" for m in training_series()
               if omissions_over_training(m, seg, TRAINING_SAMPLES, cached_only=True) is None])


def gallery_models() -> list[str]:
    """The base models with a shipped inverter (``core/weights/inverters/<scene>-layer4.pt``)."""
    from core.studies.inversion import encoder_paths
    return [m for m in base_models() if encoder_paths(m)[-1].is_file()]


def _gallery(m: str, progress=None, cached_only: bool = False):
    import core
    from core.studies.inversion import encoder_for, reconstruction_gallery
    from core.studies.omissions import card_scene
    G = core.load_generator(m)
    enc, _ = encoder_for(G, m)
    return reconstruction_gallery(G, core.load_segmenter("toyworld"), enc, card_scene(G), GALLERY_N,
                                  steps=GALLERY_STEPS, features=core.load_features(), progress=progress,
                                  cached_only=cached_only)


def compute_gallery(progress=print) -> int:
    """The Omissions page's reconstruction gallery of every base model with a shipped inverter, into the
    current cache (the inverter is the shipped one: the current cache is empty)."""
    for m in gallery_models():
        t = time.perf_counter()
        s = _gallery(m).summary()
        worst = sorted(s["per_class"].items(), key=lambda kv: kv[1])[:3]
        progress(f"gallery {m} n={GALLERY_N} steps={GALLERY_STEPS}: mean recall {s['mean_recall']:.3f} (segmenter "
                 f"alone {s['segmenter_mean_recall']:.3f}), L1 {s['l1']:.4f}, dropped most "
                 f"{', '.join(f'{c} {r:.2f}' for c, r in worst)}, {time.perf_counter() - t:.1f} s")
    return len(gallery_models())


def check_gallery() -> list[str]:
    """The planned galleries that the shipped results do not answer."""
    return [f"gallery {m} n={GALLERY_N} steps={GALLERY_STEPS}" for m in gallery_models()
            if _gallery(m, cached_only=True) is None]


def compute(items, layers, progress=print):
    """Dissect every planned item into the current cache, and the insertion values of every
    concept each base model's layers show."""
    import core
    from core.base.errors import InputError
    from core.engine.intervention import insertion_constants
    seg = core.load_segmenter("toyworld")
    skipped: dict[str, str] = {}
    for i, it in enumerate(items):
        t = time.perf_counter()
        G = core.load_generator(it["model"])
        res = core.dissect(G, seg, it["layers"], it["n_samples"])
        progress(f"[{i + 1}/{len(items)}] dissect {it['model']} {it['layers']} n={it['n_samples']}: "
                 f"{time.perf_counter() - t:.1f} s")
        if it["n_samples"] != DASHBOARD_SAMPLES:
            continue
        for layer in layers:
            freq = res.frequency(layer)
            concepts = [c for j, c in enumerate(res.labels) if j > 0 and freq[j] > 0]
            t, rare = time.perf_counter(), []
            for c in concepts:
                try:
                    insertion_constants(G, seg, layer, c, n_samples=INSERTION_SAMPLES)
                except InputError:           # in the dissection's samples, not in the first 100: Paint says so
                    rare.append(c)
            skipped.update({f"{it['model']} {layer} {c}": "absent from the insertion samples" for c in rare})
            progress(f"    insertion values {it['model']} {layer}: {len(concepts) - len(rare)} concepts"
                     + (f" (not {', '.join(rare)}: absent from {INSERTION_SAMPLES} samples)" if rare else "")
                     + f", {time.perf_counter() - t:.1f} s")
    return skipped


def compact(src_root: Path, dst_root: Path, kind: str) -> int:
    """Copy the ``kind`` entries of the cache at ``src_root`` to ``dst_root`` in their shipped form:
    float64 arrays as float32 (float16 for the kinds in ``HALF``) and int64 as int32 (7 significant
    digits: far below any difference the labelling or the plots can show; decoding restores the
    dtypes; the kinds in ``FULL`` as they are), deflated, checksummed."""
    import numpy as np

    from core.base import cache
    keys = sorted(p.name for p in (src_root / kind).iterdir()) if (src_root / kind).is_dir() else []
    entries = []
    os.environ["GANATOMY_CACHE"] = str(src_root)
    for key in keys:
        arrays, meta = cache.load(kind, key)
        flt = np.float16 if kind in HALF else np.float32
        entries.append((key, arrays if kind in FULL else
                        {k: v.astype(flt) if v.dtype in (np.float64, np.float32) else
                         v.astype(np.int32) if v.dtype == np.int64 else v for k, v in arrays.items()}, meta))
    os.environ["GANATOMY_CACHE"] = str(dst_root)
    for key, arrays, meta in entries:
        cache.save(kind, key, arrays, meta, strict=True, compress=True)
    os.environ["GANATOMY_CACHE"] = str(src_root)
    return len(entries)


def check(items) -> list[str]:
    """The planned items that the shipped results do not answer (with the cache turned away)."""
    import core
    seg = core.load_segmenter("toyworld")
    missing = []
    for it in items:
        G = core.load_generator(it["model"])
        if core.dissect(G, seg, it["layers"], it["n_samples"], cached_only=True) is None:
            missing.append(f"{it['model']} {it['layers']} n={it['n_samples']}")
    return missing


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default="layer4,layer6", help="comma separated (default layer4,layer6)")
    ap.add_argument("--check", action="store_true", help="say whether the shipped results are current; exit 1 if not")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                    help="rebuild only these kinds; the others are kept as shipped (default: all)")
    a = ap.parse_args(argv)
    layers = [x for x in a.layers.split(",") if x]
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["GANATOMY_CACHE"] = tmp           # only the shipped results can answer
            missing = check(plan(layers)) + check_bases(layers) + check_omissions() + check_gallery()
        print("shipped results are current" if not missing else "not answered by the shipped results:\n  "
              + "\n  ".join(missing))
        sys.exit(1 if missing else 0)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GANATOMY_CACHE"] = tmp
        os.environ["GANATOMY_SHIPPED_RESULTS"] = "0"     # computed anew, never copied from the old folder
        items = plan(layers)
        t0 = time.perf_counter()
        rebuild = set(a.kinds)
        skipped = compute(items, layers) if rebuild & {"dissect", "insertion"} else None
        if "basis" in rebuild:
            compute_bases(layers)
        if "omissions" in rebuild:
            compute_omissions()
        if "gallery" in rebuild:
            compute_gallery()
        staged = Path(tmp) / "_staged"
        n_entries = {}
        for kind in KINDS:
            stored = STORED.get(kind, kind)
            if kind in rebuild:
                n_entries[kind] = compact(Path(tmp), staged, stored)
            elif (DEST / stored).is_dir():                # kept exactly as shipped
                shutil.copytree(DEST / stored, staged / stored)
                n_entries[kind] = sum(1 for p in (DEST / stored).iterdir() if p.is_dir())
        old_index = json.loads((DEST / "index.json").read_text()) if (DEST / "index.json").is_file() else {}
        if skipped is None:
            skipped = old_index.get("not_shipped", {})
        index = {"made": time.strftime("%Y-%m-%d %H:%M:%S"), "command": "python scripts/ship_results.py "
                 + " ".join(argv if argv is not None else sys.argv[1:]), "items": items, "entries": n_entries,
                 "not_shipped": skipped,
                 "bases": [f"{m} {layer}" for m in base_models() for layer in layers],
                 "insertion_samples": INSERTION_SAMPLES, "seconds": round(time.perf_counter() - t0, 1),
                 "torch": old_index.get("torch") if not rebuild & {"dissect", "insertion"} else _torch_version(),
                 "omissions": ([f"{m} n={OMISSION_SAMPLES}" for m in base_models()]
                               + [f"{m} every checkpoint n={TRAINING_SAMPLES}" for m in training_series()]
                               if n_entries.get("omissions") else []),
                 "omissions_torch": (_torch_version() if "omissions" in rebuild
                                     else old_index.get("omissions_torch")),
                 "gallery": ([f"{m} n={GALLERY_N} steps={GALLERY_STEPS}" for m in gallery_models()]
                             if n_entries.get("gallery") else []),
                 "gallery_torch": _torch_version() if "gallery" in rebuild else old_index.get("gallery_torch")}
        (staged / "index.json").write_text(json.dumps(index, indent=1) + "\n")
        old = DEST.with_name(DEST.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if DEST.exists():
            DEST.rename(old)
        shutil.copytree(staged, DEST)
        shutil.rmtree(old, ignore_errors=True)
    size = sum(p.stat().st_size for p in DEST.rglob("*") if p.is_file())
    if size > BUDGET_MB * 1e6:
        print(f"warning: {size / 1e6:.1f} MB is over the {BUDGET_MB} MB budget of the shipped results "
              "(tests/test_shipped_results.py fails): ship fewer layers", file=sys.stderr)
    print(f"shipped {n_entries} entries, {size / 1e6:.2f} MB, to {DEST.relative_to(ROOT)} "
          f"in {index['seconds']:.0f} s")


if __name__ == "__main__":
    main()

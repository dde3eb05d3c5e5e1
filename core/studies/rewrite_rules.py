"""Rewrites measured against toyworld's truth (issue #35): rules that make sense in toyworld, requests
built for them from the segmentation of the generator's own samples (so that every seed makes its own
copy / paste / context choice), and the paper's measures on fresh samples: the share of the source
concept's pixels (segmented before the edit) that carry the target concept after; the change outside the
source concept (pixel L1 and the share of labels changed); FID and MS-SWD against the real scenes; and,
where toyworld renders the target world itself (``render(..., omit=...)``), FSD to it.

Variants compared on the same samples: the rank-r rewrite, the full-rank update of the same layer, every
weight fine-tuned on the pasted image, and GANatomy's own unit insertion (the target concept's top IoU
units inserted at every source location the segmentation finds, per image).

    rule = RULES["no-clouds"]
    req = auto_request(G, S, rule, seed=0)
    table = evaluate_rule(G, S, rule, seeds=(0, 1, 2), n=1000)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core import toyworld
from core.base.devices import device_of
from core.base.errors import ConceptAbsentError, InputError
from core.base.hooks import layer_shape
from core.base.sampling import z_range
from core.base.validate import check_choice, check_int
from core.engine.dissection import dissect
from core.engine.fid import FeatureStats, frechet_distance
from core.engine.intervention import Edit, generate, insertion_constants
from core.engine.omissions import SegStats, fsd_terms
from core.engine.swd import PatchSet, ms_swd
from core.studies.evaluation import real_patches, scene_stats
from core.studies.rewriting import Region, Request, run_request
from core.studies.units import iou_units

__all__ = ["Rule", "RULES", "auto_request", "evaluate_rule", "compare_variants", "rule_variants", "VARIANTS",
           "PICK_OFFSET", "EVAL_OFFSET"]

PICK_OFFSET = 700          # request images: samples of seed 700 + s (one stream per evaluation seed)
EVAL_OFFSET = 900          # fresh evaluation samples: seed 900 + s
VARIANTS = ("original", "rank", "full", "finetune", "units")


@dataclass(frozen=True)
class Rule:
    """A rule to write into a toyworld generator: ``source`` pixels should become ``target``."""
    name: str
    model: str
    scene: str
    layer: str
    source: str
    target: str
    omit: tuple[str, ...] = ()            # the target world toyworld can render (FSD to it), if any
    why: str = ""


RULES = {
    "no-clouds": Rule("no-clouds", "toyworld/lake", "lake", "layer6", "cloud", "sky", omit=("cloud",),
                      why="erasing: clouds are big, separate and every lake has sky to copy; toyworld renders the "
                          "target world (the same lakes with no clouds) for FSD"),
    "no-boats": Rule("no-boats", "toyworld/lake", "lake", "layer6", "boat", "water", omit=("boat",),
                     why="erasing an object (not stuff): boats sit on open water, so water is what should show; "
                         "toyworld renders the target world (the same lakes with no boats)"),
    "doors-for-windows": Rule("doors-for-windows", "toyworld/town", "town", "layer6", "window", "door",
                              why="changing a rule inside an object: windows and doors share the same walls, so the "
                                  "context (windows) has a clear key and the target (door) exists in every town"),
}


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.reshape(-1))[1:]
    return lab == (1 + int(np.argmax(sizes)))


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


@torch.no_grad()
def auto_request(generator, segmenter, rule: Rule, seed: int = 0, pool: int = 96, n_context: int = 5,
                 max_paste: int = 16, **options) -> Request:
    """A request for ``rule`` chosen from the segmentation of ``pool`` samples of seed ``PICK_OFFSET + seed``:
    the paste is the largest source region (its bounding box; for stuff, at most ``max_paste`` pixels a side
    around its centre) on the image with the most source pixels; the
    copy is, on another image, the largest target region (for a target that is stuff, such as sky: a box
    of pure target of the paste's size); the context is the source pixels of the next ``n_context`` images.
    ``options`` go to the request (rank, steps, lr, method, ...)."""
    seed = check_int("seed", seed)
    pool = check_int("pool", pool, 4)
    n_context = check_int("n_context", n_context, 1, pool - 2)
    pick = PICK_OFFSET + seed
    z = z_range(pick, 0, pool, generator.z_dim, device_of(generator))
    seg = segmenter.segment(generator(z).float()).cpu().numpy()
    src_c, tgt_c = toyworld.label_index(rule.source), toyworld.label_index(rule.target)
    src, tgt = seg == src_c, seg == tgt_c
    order = np.argsort(-src.reshape(pool, -1).sum(1), kind="stable")
    if src[order[0]].sum() == 0:
        raise ConceptAbsentError(f"no {rule.source} in {pool} samples of {rule.model}",
                                 fix="use a larger pool or another rule")
    paste_i = int(order[0])
    paste = _largest_component(src[paste_i])
    t, lf, b, r = _box(paste)
    if rule.source in toyworld.STUFF:            # a stuff region can span the image: paste on a part of it
        cy, cx = (t + b) // 2, (lf + r) // 2
        half = max(2, max_paste // 2)
        t, b = max(t, cy - half), min(b, cy + half)
        lf, r = max(lf, cx - half), min(r, cx + half)
    paste_box = np.zeros_like(paste)
    paste_box[t:b, lf:r] = True
    h, w = b - t, r - lf
    copy_i, copy_mask = None, None
    if rule.target in toyworld.STUFF:            # a box of pure target the paste's size
        best = -1
        for i in np.argsort(-tgt.reshape(pool, -1).sum(1), kind="stable")[:16]:
            if i == paste_i:
                continue
            ok = F.avg_pool2d(torch.from_numpy(tgt[i].astype(np.float32))[None, None], (h, w), stride=1)[0, 0]
            full = torch.nonzero(ok >= 0.999)
            if len(full) and (best < 0):
                y, x = (int(v) for v in full[len(full) // 2])
                copy_i, copy_mask = int(i), np.zeros_like(paste)
                copy_mask[y:y + h, x:x + w] = True
                best = 1
        if copy_i is None:
            raise ConceptAbsentError(f"no {h}x{w} box of pure {rule.target} in {pool} samples",
                                     fix="use a larger pool")
    else:
        for i in np.argsort(-tgt.reshape(pool, -1).sum(1), kind="stable"):
            if i != paste_i and tgt[i].any():
                copy_i, copy_mask = int(i), _largest_component(tgt[i])
                break
        if copy_i is None:
            raise ConceptAbsentError(f"no {rule.target} in {pool} samples of {rule.model}", fix="use a larger pool")
    ctx = [int(i) for i in order if i not in (paste_i, copy_i) and src[i].any()][:n_context]
    return Request(model=rule.model, layer=rule.layer, seed=pick, copy=Region(copy_i, copy_mask),
                   paste=Region(paste_i, paste_box), context=[Region(i, src[i]) for i in ctx],
                   note=f"{rule.name}: {rule.source} -> {rule.target} (auto, seed {seed})", **options)


class _UnitInsertion:
    """GANatomy's own edit as a baseline: the target's top IoU units inserted at every cell of ``layer``
    that the segmentation of the unedited image finds source in (coverage >= ``threshold``)."""

    def __init__(self, generator, segmenter, rule: Rule, n_units: int = 20, threshold: float = 0.15,
                 dissect_samples: int = 400, cache: bool = True):
        res = dissect(generator, segmenter, [rule.layer], dissect_samples, seed=0, cache=cache)
        self.units = iou_units(res, rule.layer, rule.target, n_units)
        self.values = insertion_constants(generator, segmenter, rule.layer, rule.target, cache=cache)
        self.g, self.s, self.rule, self.threshold = generator, segmenter, rule, threshold
        self.src = toyworld.label_index(rule.source)

    @torch.no_grad()
    def __call__(self, z, images0, seg0):
        grid = layer_shape(self.g, self.rule.layer)[1:]
        cover = F.adaptive_avg_pool2d((seg0 == self.src).float()[:, None], grid)[:, 0]
        cells = (cover >= self.threshold).float()
        return generate(self.g, z, [Edit(self.rule.layer, self.units, "insert", value=self.values[self.units],
                                         mask=cells)])


def rule_variants(generator, segmenter, rule: Rule, seed: int, methods=("rank", "full", "finetune", "units"),
                  progress: Callable | None = None, cache: bool = True, **options) -> tuple[dict, dict]:
    """For one seed: {variant: fn(z, images0, seg0) -> images} and {variant: info} (request, seconds)."""
    for m in methods:
        check_choice("methods", m, VARIANTS[1:])
    req = auto_request(generator, segmenter, rule, seed, **options)
    fns, info = {}, {"request": req.to_json()}
    for m in methods:
        t0 = time.perf_counter()
        if m == "units":
            ins = _UnitInsertion(generator, segmenter, rule, cache=cache)
            fns[m] = ins
            info[m] = {"seconds": time.perf_counter() - t0, "units": ins.units}
            continue
        run = run_request(generator, replace(req, method=m), cache=cache,
                          progress=None if progress is None else (lambda st, d, t: progress(m, st, d, t)))
        g1 = run.rewrite.apply(generator)
        fns[m] = (lambda g: (lambda z, im, sg: g(z)))(g1)
        info[m] = {"seconds": run.seconds, "final_loss": run.rewrite.losses[-1] if run.rewrite.losses else None}
    return fns, info


@torch.no_grad()
def compare_variants(generator, segmenter, variants: dict, source: str, target: str, *, n: int = 1000,
                     seed: int = 0, batch: int = 100, features=None, scene: str | None = None, omit=(),
                     n_real: int = 10_000, n_swd: int = 1000, target_seed: int | None = None,
                     progress: Callable | None = None, cache: bool = True) -> dict:
    """The unedited generator and each of ``variants`` ({name: fn(z, images0, seg0) -> images}) on the same
    ``n`` samples of ``seed``: per variant ``success`` (share of ``source`` pixels, segmented before,
    labelled ``target`` after), ``outside_l1`` (mean |change| of pixels outside the source, images in
    [-1, 1]), ``outside_seg`` (share of labels outside the source that change), the source's and target's
    mean area; with ``features`` and ``scene``, ``fid`` (against ``n_real`` real scenes in the feature
    network's space) and ``ms_swd`` (x 1e3, the first ``n_swd`` samples against as many real); with
    ``omit``, ``fsd_target``: FSD to the world toyworld renders without those concepts (through the same
    segmenter). Returns {variant: {measure: value}} ("original" first)."""
    n = check_int("n", n, 2)
    batch = check_int("batch", batch, 1)
    labels = list(segmenter.labels)
    for what, c in (("source", source), ("target", target)):
        if c not in labels[1:]:
            raise InputError(f"{what} {c!r} is not a concept of the segmenter",
                             fix=f"choose one of: {', '.join(labels[1:])}")
    if features is not None and scene is None:
        raise InputError("scene is needed with features (the real scenes FID compares with)",
                         fix=f"give scene, one of {', '.join(toyworld.SCENES)}")
    names = ["original", *variants]
    dev = device_of(generator)
    src_c, tgt_c = labels.index(source), labels.index(target)
    L = len(labels)
    acc = {v: {"src": 0.0, "hit": 0.0, "out": 0.0, "l1": 0.0, "seg": 0.0} for v in names}
    feats = {v: FeatureStats() for v in names}
    segst = {v: SegStats(L) for v in names}
    patches = {v: PatchSet(seed=seed) for v in names}
    size = None
    for a in range(0, n, batch):
        z = z_range(seed, a, min(n, a + batch), generator.z_dim, dev)
        im0 = generator(z).float()
        size = im0.shape[-1]
        seg0 = segmenter.segment(im0)
        src = seg0 == src_c
        out = ~src
        for v in names:
            im = im0 if v == "original" else variants[v](z, im0, seg0).float()
            seg = seg0 if v == "original" else segmenter.segment(im)
            s = acc[v]
            s["src"] += float(src.sum())
            s["hit"] += float((src & (seg == tgt_c)).sum())
            s["out"] += float(out.sum())
            s["l1"] += float(((im - im0).abs().mean(1) * out).sum())
            s["seg"] += float(((seg != seg0) & out).sum())
            segst[v].add_labels(seg)
            if features is not None:
                feats[v].update(features(im))
                if a < n_swd:
                    patches[v].update(im[: n_swd - a])
        if progress is not None:
            progress("evaluate", min(n, a + batch), n)
    real = rp = tgt = None
    if features is not None:
        real = scene_stats(features, scene, size, n=n_real, cache=cache)
        rp = real_patches(scene, n=min(n_swd, n), size=size)
    if omit:
        tgt = SegStats(L)
        tseed = EVAL_OFFSET + 50 + seed if target_seed is None else target_seed
        for a in range(0, n, batch):       # the target world, through the same segmenter
            im, _ = toyworld.render(scene, min(batch, n - a), seed=tseed, size=size, start=a, omit=omit)
            tgt.add_labels(segmenter.segment(im.to(dev)))
    rows = {}
    for v in names:
        s = acc[v]
        rows[v] = {"success": s["hit"] / max(s["src"], 1.0), "outside_l1": s["l1"] / max(s["out"], 1.0),
                   "outside_seg": s["seg"] / max(s["out"], 1.0),
                   "source_share": float(segst[v].mean[src_c]), "target_share": float(segst[v].mean[tgt_c])}
        if features is not None:
            rows[v]["fid"] = float(frechet_distance(*feats[v].mean_cov(), *real))
            rows[v]["ms_swd"] = ms_swd(rp, patches[v])["avg"]
        if tgt is not None:
            rows[v]["fsd_target"] = fsd_terms(segst[v], tgt)["fsd"]
    return rows


def evaluate_rule(generator, segmenter, features, rule: Rule, seed: int = 0, n: int = 1000, batch: int = 100,
                  methods=("rank", "full", "finetune", "units"), n_real: int = 10_000, n_swd: int = 1000,
                  progress: Callable | None = None, cache: bool = True, **options) -> dict:
    """Every variant of ``rule`` for one ``seed`` (its request: :func:`auto_request`) on the same ``n``
    fresh samples of seed ``EVAL_OFFSET + seed`` (:func:`compare_variants`; ``fsd_target`` of ``original``
    is the rule's starting gap to its target world)."""
    n = check_int("n", n, 2)
    t0 = time.perf_counter()
    fns, info = rule_variants(generator, segmenter, rule, seed, methods, progress=progress, cache=cache, **options)
    t1 = time.perf_counter()
    rows = compare_variants(generator, segmenter, fns, rule.source, rule.target, n=n, seed=EVAL_OFFSET + seed,
                            batch=batch, features=features, scene=rule.scene, omit=rule.omit, n_real=n_real,
                            n_swd=n_swd, target_seed=EVAL_OFFSET + 50 + seed,
                            progress=None if progress is None else (lambda st, d, t: progress("evaluate", st, d, t)),
                            cache=cache)
    return {"rule": rule.name, "seed": seed, "n": n, "variants": rows, "info": info,
            "seconds": {"variants": t1 - t0, "evaluate": time.perf_counter() - t1}}

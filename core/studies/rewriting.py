"""Rewriting requests: what a user asks of a rewrite (which layer; copy a region of one image, paste it
on another, paint context on a few), as a JSON file that can be saved, reviewed and rerun, and the run
that turns it into a :class:`~core.engine.rewrite.Rewrite` (:func:`run_request`). Images are named by
(seed, index) of the generator's latent stream (:func:`core.base.sampling.z_at`), masks in the image's
pixels. The engine's pieces are in :mod:`core.engine.rewrite`.

    req = Request.load("rule.json")                 # or Request(model=..., layer=..., copy=Region(...), ...)
    run = run_request(G, req)                       # key statistics (cached), directions, the rewrite
    G1 = run.rewrite.apply(G)                       # a new model; G is untouched
    core.models.add_rewrite("lab/doors", run, added_by="ana")   # saved: loads by name everywhere

A request file::

    {"ganatomy_rewrite": 1, "model": "toyworld/town", "layer": "layer6", "seed": 0,
     "copy": {"sample": 12, "mask": {"size": [64, 64], "boxes": [[40, 8, 56, 24]]}},
     "paste": {"sample": 40, "mask": {"rows": ["0000...", ...]}},
     "context": [{"sample": 40, "mask": ...}, ...],
     "method": "rank", "rank": 1, "steps": 2000, "lr": 0.05, "project_every": 10, "key_samples": 1000}
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.base.cache import model_fingerprint
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError
from core.base.hooks import layer_names
from core.base.sampling import z_at
from core.base.validate import check_choice, check_float, check_int
from core.engine.intervention import generate
from core.engine.rewrite import (
    METHODS,
    REWRITE_SEED,
    Goal,
    Rewrite,
    RewriteOptions,
    context_directions,
    context_match,
    finetune_all,
    grid_mask,
    key_statistics,
    paste_goal,
    render_goal,
    rewrite,
)
from core.models.rewrites import add_rewrite
from core.outputs.visualize import heat_overlay, to_uint8
from core.studies.paint import stroke_coverage

__all__ = ["Region", "Request", "RewriteRun", "run_request", "mask_from_json", "mask_to_json", "REQUEST_FORMAT",
           "MAX_REQUEST_BYTES", "ALL_METHODS", "save_rewrite", "mask_from_drawing", "BeforeAfter", "before_after",
           "MATCH_FLOOR"]

REQUEST_FORMAT = 1
MAX_REQUEST_BYTES = 4 << 20
MAX_MASK_SIDE = 4096
MAX_CONTEXT = 64
ALL_METHODS = (*METHODS, "finetune")
_KEYS = {"ganatomy_rewrite", "model", "layer", "seed", "copy", "paste", "context", "method", "rank", "steps", "lr",
         "project_every", "key_samples", "finetune_steps", "finetune_lr", "note"}


# ----------------------------------------------------------------------------- masks in JSON

def mask_to_json(mask) -> dict:
    """A mask [H, W] as ``{"rows": ["0110...", ...]}`` (1 where painted, at > 0.5)."""
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D [H, W]; got shape {m.shape}", fix="give an image-sized mask")
    return {"rows": ["".join("1" if v else "0" for v in row) for row in (m > 0.5)]}


def mask_from_json(obj, what: str) -> np.ndarray:
    """A JSON mask -> bool [H, W]: ``{"rows": [...]}`` (equal-length strings of 0 and 1) or
    ``{"size": [H, W], "boxes": [[top, left, bottom, right], ...]}`` (pixels; bottom/right exclusive)."""
    if not isinstance(obj, dict):
        raise InputError(f"{what} must be an object with 'rows' or 'size' and 'boxes'",
                         fix=f'write {what} as {{"size": [64, 64], "boxes": [[top, left, bottom, right]]}}')
    extra = set(obj) - {"rows", "size", "boxes"}
    if extra:
        raise InputError(f"{what} has unknown keys {sorted(extra)}", fix="a mask has 'rows', or 'size' and 'boxes'")
    if "rows" in obj:
        rows = obj["rows"]
        if not isinstance(rows, list) or not rows or not all(isinstance(r, str) for r in rows):
            raise InputError(f"{what}.rows must be a non-empty list of strings of 0 and 1",
                             fix=f'e.g. {what}: {{"rows": ["0110", "0110"]}}')
        w = len(rows[0])
        if not 0 < w <= MAX_MASK_SIDE or len(rows) > MAX_MASK_SIDE or any(len(r) != w for r in rows) \
                or any(set(r) - {"0", "1"} for r in rows):
            raise InputError(f"{what}.rows must be at most {MAX_MASK_SIDE} strings of equal length "
                             f"(1 to {MAX_MASK_SIDE}), made of 0 and 1 only", fix="save the mask again from the page")
        return np.array([[c == "1" for c in r] for r in rows], dtype=bool)
    size, boxes = obj.get("size"), obj.get("boxes")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and not isinstance(s, bool)
                                                             and 0 < s <= MAX_MASK_SIDE for s in size)):
        raise InputError(f"{what}.size must be [H, W] (positive integers up to {MAX_MASK_SIDE})",
                         fix=f'e.g. {what}: {{"size": [64, 64], "boxes": [[8, 8, 24, 24]]}}')
    h, w = size
    if not isinstance(boxes, list) or not boxes:
        raise InputError(f"{what}.boxes must be a non-empty list of [top, left, bottom, right]",
                         fix=f'e.g. {what}: {{"size": [{h}, {w}], "boxes": [[8, 8, 24, 24]]}}')
    m = np.zeros((h, w), bool)
    for i, b in enumerate(boxes):
        if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in b)):
            raise InputError(f"{what}.boxes[{i}] must be four integers [top, left, bottom, right]",
                             fix="give pixel coordinates, bottom and right exclusive")
        t, lf, bt, r = b
        if not (0 <= t < bt <= h and 0 <= lf < r <= w):
            raise InputError(f"{what}.boxes[{i}] = {b} is empty or outside the {h}x{w} image",
                             fix=f"keep 0 <= top < bottom <= {h} and 0 <= left < right <= {w}")
        m[t:bt, lf:r] = True
    return m


@dataclass
class Region:
    """One image of the generator (``sample`` index of the request's seed) and a mask on it."""
    sample: int
    mask: np.ndarray

    def to_json(self) -> dict:
        return {"sample": int(self.sample), "mask": mask_to_json(self.mask)}

    @classmethod
    def from_json(cls, obj, what: str) -> "Region":
        if not isinstance(obj, dict) or set(obj) - {"sample", "mask"} or "mask" not in obj:
            raise InputError(f"{what} must be {{'sample': index, 'mask': {{...}}}}",
                             fix=f'e.g. "{what}": {{"sample": 3, "mask": {{"size": [64, 64], '
                                 f'"boxes": [[8, 8, 24, 24]]}}}}')
        return cls(check_int(f"{what}.sample", obj.get("sample"), 0, 10**9),
                   mask_from_json(obj["mask"], f"{what}.mask"))


@dataclass
class Request:
    """A rewrite as the user asks for it (see the module's docstring for the JSON form)."""
    model: str
    layer: str
    copy: Region
    paste: Region
    context: list[Region] = field(default_factory=list)     # empty: the paste region is the context
    seed: int = 0
    method: str = "rank"
    rank: int = 1
    steps: int = 2000
    lr: float = 0.05
    project_every: int = 10
    key_samples: int = 1000
    finetune_steps: int = 300
    finetune_lr: float = 0.001
    note: str = ""

    def checked(self) -> "Request":
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError("model must be a generator's name", fix='e.g. "model": "toyworld/town"')
        if not isinstance(self.layer, str) or not self.layer.strip():
            raise InputError("layer must be a layer name", fix='e.g. "layer": "layer6"')
        check_int("seed", self.seed)
        check_choice("method", self.method, ALL_METHODS)
        RewriteOptions(self.rank, self.steps, self.lr, self.project_every,
                       "full" if self.method == "finetune" else self.method).checked()
        check_int("key_samples", self.key_samples, 10, 100_000)
        check_int("finetune_steps", self.finetune_steps, 1, 100_000)
        check_float("finetune_lr", self.finetune_lr, 0, 1, lo_open=True)
        if not isinstance(self.note, str) or len(self.note) > 2000:
            raise InputError("note must be text of at most 2,000 characters", fix="shorten the note")
        if len(self.context) > MAX_CONTEXT:
            raise InputError(f"context has {len(self.context)} images; at most {MAX_CONTEXT}",
                             fix="paint context on fewer images")
        for what, r in [("copy", self.copy), ("paste", self.paste)] + [(f"context[{i}]", c)
                                                                     for i, c in enumerate(self.context)]:
            if not isinstance(r, Region):
                raise ArgumentTypeError(f"{what} must be a Region", fix="build it as Region(sample, mask)")
            if not np.asarray(r.mask).any():
                raise InputError(f"{what}'s mask is empty", fix=f"paint or box the {what.split('[')[0]} region")
        return self

    @property
    def options(self) -> RewriteOptions:
        return RewriteOptions(self.rank, self.steps, self.lr, self.project_every,
                              "full" if self.method == "finetune" else self.method)

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("copy", "paste", "context")}
        return {"ganatomy_rewrite": REQUEST_FORMAT, **d, "copy": self.copy.to_json(), "paste": self.paste.to_json(),
                "context": [c.to_json() for c in self.context]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, obj) -> "Request":
        if not isinstance(obj, dict):
            raise InputError("a rewrite request must be a JSON object", fix="save one from the Rewrite page")
        if obj.get("ganatomy_rewrite") != REQUEST_FORMAT:
            raise InputError(f"not a GANatomy rewrite request (format {obj.get('ganatomy_rewrite')!r:.20}, "
                             f"expected {REQUEST_FORMAT})", fix='a request starts {"ganatomy_rewrite": 1, ...}')
        unknown = sorted(set(obj) - _KEYS)
        if unknown:
            first = "".join(ch if ch.isprintable() else "?" for ch in str(unknown[0])[:40])
            raise InputError(f"{len(unknown)} unknown keys in the request (the first: {first!r})",
                             fix=f"the keys are: {', '.join(sorted(_KEYS))}")
        for k in ("model", "layer", "copy", "paste"):
            if k not in obj:
                raise InputError(f"the request has no {k!r}", fix=f"add {k!r} (see docs/usage.md, Rewriting)")
        ctx = obj.get("context", [])
        if not isinstance(ctx, list):
            raise InputError("context must be a list of {sample, mask}", fix='e.g. "context": []')
        if len(ctx) > MAX_CONTEXT:
            raise InputError(f"context has {len(ctx)} images; at most {MAX_CONTEXT}",
                             fix="paint context on fewer images")
        plain = {k: obj[k] for k in obj if k not in ("ganatomy_rewrite", "copy", "paste", "context")}
        for k in ("seed", "rank", "steps", "project_every", "key_samples", "finetune_steps"):
            if k in plain and (not isinstance(plain[k], int) or isinstance(plain[k], bool)):
                raise InputError(f"{k} must be an integer, got {plain[k]!r:.40}", fix=f"write {k} as a whole number")
        for k in ("lr", "finetune_lr"):
            if k in plain and (not isinstance(plain[k], (int, float)) or isinstance(plain[k], bool)):
                raise InputError(f"{k} must be a number, got {plain[k]!r:.40}", fix=f"write {k} as a number")
        return cls(copy=Region.from_json(obj["copy"], "copy"), paste=Region.from_json(obj["paste"], "paste"),
                   context=[Region.from_json(c, f"context[{i}]") for i, c in enumerate(ctx)], **plain).checked()

    @classmethod
    def loads(cls, text) -> "Request":
        if isinstance(text, bytes):
            if len(text) > MAX_REQUEST_BYTES:
                raise InputError(f"the request is {len(text):,} bytes; at most {MAX_REQUEST_BYTES:,}",
                                 fix="a request holds masks, not images: save it again from the page")
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError("the request is not UTF-8 text", fix="give the JSON file the page saved") from None
        if not isinstance(text, str):
            raise ArgumentTypeError(f"a request is JSON text, got {type(text).__name__}", fix="pass the file's text")
        if len(text) > MAX_REQUEST_BYTES:
            raise InputError(f"the request is {len(text):,} characters; at most {MAX_REQUEST_BYTES:,}",
                             fix="a request holds masks, not images: save it again from the page")
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise InputError(f"the request is not valid JSON ({type(e).__name__} at line "
                             f"{getattr(e, 'lineno', '?')})", fix="give the JSON file the page saved") from None
        return cls.from_json(obj)

    @classmethod
    def load(cls, path) -> "Request":
        p = Path(os.fspath(path))
        if not p.is_file():
            raise InputError(f"request file {p} does not exist", fix="give the path of a saved request (.json)")
        if p.stat().st_size > MAX_REQUEST_BYTES:
            raise InputError(f"request file {p.name} is {p.stat().st_size:,} bytes; at most {MAX_REQUEST_BYTES:,}",
                             fix="a request holds masks, not images")
        return cls.loads(p.read_bytes())


# ----------------------------------------------------------------------------- running a request

@dataclass
class RewriteRun:
    """A request's result: the :class:`Rewrite`, its goal and directions, and the time taken."""
    request: Request
    rewrite: Rewrite
    goal: Goal
    directions: torch.Tensor | None
    seconds: dict
    base_hash: str = ""          # the model it was made on (its cache fingerprint: pinned once on a shared model)


def _check_request_model(generator, req: Request) -> None:
    source = getattr(generator, "source", None)
    if isinstance(source, str) and source and source != req.model:
        raise InputError(f"the request is for {req.model!r}, but the generator given is {source!r}",
                         fix=f"load {req.model!r} (core.load_generator), or set the request's model to {source!r}")
    names = layer_names(generator)
    if req.layer not in names:
        raise InputError(f"layer {req.layer!r} is not a layer of this generator",
                         fix=f"choose one of: {', '.join(names)}")
    size = getattr(generator, "resolution", None)
    for what, r in [("copy", req.copy), ("paste", req.paste)] + [(f"context[{i}]", c)
                                                                 for i, c in enumerate(req.context)]:
        if size and tuple(np.asarray(r.mask).shape) != (size, size):
            raise InputError(f"{what}'s mask is {np.asarray(r.mask).shape[0]}x{np.asarray(r.mask).shape[1]}; the "
                             f"generator's images are {size}x{size}", fix=f"draw masks on the {size}x{size} images")


def run_request(generator, req: Request, progress: Callable | None = None, cache: bool = True) -> RewriteRun:
    """Run a request on ``generator`` (the model the request names, already loaded): key statistics of
    the layer (cached), the paste goal, the context directions, then the rewrite (``method``: ``rank``,
    ``full`` or ``finetune``). ``progress(stage, done, total)``. ``generator`` is never changed."""
    req = req.checked()
    _check_request_model(generator, req)
    dev = device_of(generator)

    def z(i):
        return z_at(req.seed, [i], generator.z_dim, device=dev)

    seconds = {}
    t0 = time.perf_counter()
    goal = paste_goal(generator, req.layer, z(req.copy.sample), req.copy.mask, z(req.paste.sample), req.paste.mask)
    directions = None
    if req.method == "rank":
        stats = key_statistics(generator, req.layer, n=req.key_samples, seed=REWRITE_SEED, cache=cache,
                               progress=None if progress is None else (lambda d, t: progress("keys", d, t)))
        seconds["keys"] = time.perf_counter() - t0
        ctx = req.context or [req.paste]
        zc = z_at(req.seed, [c.sample for c in ctx], generator.z_dim, device=dev)
        directions = context_directions(generator, req.layer, zc, [c.mask for c in ctx], stats, req.rank)
    t1 = time.perf_counter()
    step = None if progress is None else (lambda d, t, loss: progress("rewrite", d, t))
    if req.method == "finetune":
        target = render_goal(generator, req.layer, z(req.paste.sample), goal.values)
        size = target.shape[-1]
        region = torch.nn.functional.interpolate(goal.region[None, None], size=(size, size), mode="nearest")[0, 0]
        rw = finetune_all(generator, z(req.paste.sample), target, region, steps=req.finetune_steps,
                          lr=req.finetune_lr, progress=step, layer=req.layer)
    else:
        rw = rewrite(generator, req.layer, goal, directions, req.options, progress=step)
    seconds["rewrite"] = time.perf_counter() - t1
    seconds["total"] = time.perf_counter() - t0
    return RewriteRun(req, rw, goal, directions, seconds, model_fingerprint(generator) or "")


def save_rewrite(name: str, run: RewriteRun, *, added_by: str = "", replace: bool = False) -> dict:
    """Save a run's rewrite as the new model ``name`` (owned by ``added_by``; loads by name everywhere,
    see :func:`core.models.add_rewrite`). Returns the registry entry."""
    if not isinstance(run, RewriteRun):
        raise ArgumentTypeError(f"run must be a RewriteRun (run_request's result), got {type(run).__name__}",
                                fix="save the result of run_request(G, request)")
    return add_rewrite(name, run.request.model, run.rewrite.stored, run.request.to_json(), layer=run.request.layer,
                       method=run.request.method, added_by=added_by, replace=replace, base_hash=run.base_hash or None)


# ----------------------------------------------------------------------------- what a page shows

def mask_from_drawing(drawing, size: int, cover: float = 0.5) -> np.ndarray | None:
    """A drawing (a canvas's RGBA image [H, W, 4], its alpha the paint, at any multiple of the image's
    size) as an image mask bool [``size``, ``size``]: the pixels the paint covers at least ``cover`` of.
    None for no drawing or a drawing that covers no pixel."""
    if drawing is None:
        return None
    size = check_int("size", size, 1)
    cover = check_float("cover", cover, 0, 1, lo_open=True)
    m = stroke_coverage(drawing, (size, size)) >= cover
    return m if m.any() else None


MATCH_FLOOR = 2.0       # a location is highlighted from twice a typical key's match (context_match is ~1 there)


@dataclass
class BeforeAfter:
    """Samples before and after a rewrite: ``before``, ``after`` uint8 [n, H, W, 3]; ``match`` [n, h, w]
    (:func:`core.engine.rewrite.context_match` of each sample's keys, None without directions);
    ``context_level`` the mean match under the context masks (what "like the context" means);
    ``highlighted`` the before images tinted from :data:`MATCH_FLOOR` (nothing) to ``context_level``
    (full); ``seconds`` the time taken."""
    seed: int
    indices: list[int]
    before: np.ndarray
    after: np.ndarray
    match: np.ndarray | None
    context_level: float | None
    highlighted: np.ndarray | None
    seconds: float


def before_after(generator, run: RewriteRun, indices=range(12), seed: int | None = None) -> BeforeAfter:
    """The samples ``indices`` of ``seed`` (default: the request's) drawn by ``generator`` and by the
    rewritten model (``run.rewrite.apply``: a new model, ``generator`` untouched), with the context
    matches of a rank rewrite highlighted on the before images (key statistics from the cache that
    :func:`run_request` filled)."""
    if not isinstance(run, RewriteRun):
        raise ArgumentTypeError(f"run must be a RewriteRun (run_request's result), got {type(run).__name__}",
                                fix="pass the result of run_request(G, request)")
    t0 = time.perf_counter()
    req = run.request
    seed = req.seed if seed is None else check_int("seed", seed)
    indices = [check_int("indices", i, 0) for i in indices]
    if not indices:
        raise InputError("indices is empty", fix="give the samples to show, e.g. range(12)")
    dev = device_of(generator)
    z = z_at(seed, indices, generator.z_dim, device=dev)
    edited = run.rewrite.apply(generator)
    with torch.no_grad():
        before, after = to_uint8(generate(generator, z)), to_uint8(generate(edited, z))
    match = level = highlighted = None
    if run.directions is not None:
        stats = key_statistics(generator, req.layer, n=req.key_samples, seed=REWRITE_SEED)
        match = context_match(generator, req.layer, z, run.directions, stats).cpu().numpy()
        ctx = req.context or [req.paste]
        zc = z_at(req.seed, [c.sample for c in ctx], generator.z_dim, device=dev)
        cm = context_match(generator, req.layer, zc, run.directions, stats).cpu()
        weights = torch.stack([grid_mask(c.mask, tuple(cm.shape[-2:]), "context mask") for c in ctx])
        level = float((cm * weights).sum() / weights.sum().clamp_min(1e-12))
        hi = max(level, MATCH_FLOOR + 1.0)
        highlighted = np.stack([heat_overlay(b, m, MATCH_FLOOR, hi) for b, m in zip(before, match)])
    return BeforeAfter(seed, indices, before, after, match, level, highlighted, time.perf_counter() - t0)

"""Unit importance of a classifier (Bau et al., PNAS 2020, "Understanding the role of individual units").

For a classifier, one layer and a labelled image set (images, one class index each):

- the per-class **balanced accuracy** of the unedited model, one class against the rest, the
  prediction being the argmax of the logits: ``BA_k = (recall_k + TNR_k) / 2``, ``recall_k`` the
  fraction of class-k images predicted k, ``TNR_k`` the fraction of the other images not predicted k
  (NaN for a class without images, or when every image is of it);
- ``ablated[u, k]``: the same with unit ``u`` of the layer zeroed (every unit, one at a time), and
  ``drop = base - ablated``; per class, the units ranked by their drop (:meth:`UnitImportance.ranking`);
- a finer measure beside it, the **margin**: per class k, the mean over class-k images of the true class's
  logit minus the largest other logit (``margin_base``, ``margin_ablated``, ``margin_drop``): balanced
  accuracy saturates where the classes are far apart (toyworld's scene types), the margin still moves;
  ties of the balanced-accuracy drop are ranked by the margin drop;
- **multi-label** classifiers (``multilabel=True``, the default where ``model.multilabel`` is true, e.g. the
  toyworld feature network's concept-presence head): ``labels`` are [N, K] 0/1 (class k present in image n or
  not), class k is predicted present where its logit is above 0 (a sigmoid above 1/2), and each class is scored
  one-vs-rest on its own decision: ``BA_k = (recall_k + TNR_k) / 2`` over the images where k is present / absent
  (NaN when either set is empty); the margin is the balanced signed logit, ``(mean of z_k over the images with
  k + mean of -z_k over the images without k) / 2``. Counts are accumulated per chunk, never per image;
- the **top-N vs the rest curves**: per class k, ``BA_k`` with the class's top N units zeroed
  (N = 1 … ``top_n``) against N units drawn at random from the units outside that top-``top_n`` set
  (``draws`` nested draws: draw d's N units are the first N of one random permutation, seeded).

How it is computed: each zeroed-unit variant is a mask over the layer's channels. Per batch of images
the network runs **once**; at the layer a per-call edit (:class:`core.base.hooks.Trace`, never a change
to the shared model) replaces the layer's output ``[b, C, ...]`` by the ``g`` masked copies
``[g * b, C, ...]``, so the rest of the network runs on all of them at once and the layer's input is
computed once per batch, not once per variant (``path="suffix"``). That is exact for a network whose
later layers depend on the earlier ones only through this layer (a chain, as the toyworld classifier
and EfficientNet's block outputs); a network that re-uses an earlier tensor (a U-Net's skip) cannot
take it, so on the first chunk the suffix path is checked against the full path (the images repeated
``g`` times, every variant's whole forward: ``path="full"``) and, where it fails or differs, the full
path is used for the whole call (``meta["path"]`` says which). Variants go in chunks of about
``chunk_bytes`` of layer output; no Python loop runs per image or per unit inside a chunk.
Cached by the one convention (:func:`core.base.cache.measure`; the images' and labels' bytes are in the key).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from core.base import cache as _cache
from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, InputError, ProtocolError
from core.base.hooks import Trace, resolve_layers
from core.base.protocols import check_classifier
from core.base.validate import check_bool, check_int

__all__ = ["unit_importance", "UnitImportance", "balanced_accuracy", "multilabel_scores", "class_margins",
           "IMPORTANCE_VERSION"]

IMPORTANCE_VERSION = "importance-v2"


def balanced_accuracy(pred, labels, n_classes: int) -> np.ndarray:
    """Per-class balanced accuracy ``(recall + TNR) / 2``, one class vs the rest: ``pred`` [..., N]
    predicted class indices (any leading axes: one row per variant), ``labels`` [N]; returns
    [..., n_classes] (NaN for a class with no images, or with no images of other classes)."""
    pred = torch.as_tensor(pred, device=pred.device if isinstance(pred, torch.Tensor) else "cpu")
    labels = torch.as_tensor(labels, device=pred.device).long()
    classes = torch.arange(n_classes, device=pred.device)
    is_k = labels.view(-1, 1) == classes                                  # [N, K]
    pred_k = pred.unsqueeze(-1) == classes                                # [..., N, K]
    pos = is_k.sum(0).double()
    neg = (~is_k).sum(0).double()
    tp = (pred_k & is_k).sum(-2).double()
    tn = (~pred_k & ~is_k).sum(-2).double()
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=pred.device)
    recall = torch.where(pos > 0, tp / pos.clamp(min=1), nan)
    tnr = torch.where(neg > 0, tn / neg.clamp(min=1), nan)
    return ((recall + tnr) / 2).cpu().numpy()


@dataclass
class UnitImportance:
    """Result of :func:`unit_importance`."""
    layer: str
    classes: list[str]
    base: np.ndarray              # [K] balanced accuracy of the unedited model
    ablated: np.ndarray           # [U, K] with unit u zeroed
    top_curve: np.ndarray         # [K, top_n] class k's BA with its top N units zeroed (N = 1 … top_n)
    random_curve: np.ndarray      # [K, draws, top_n] with N random other units zeroed
    random_units: np.ndarray      # [K, draws, top_n] the random permutations used (first N of each)
    margin_base: np.ndarray       # [K] mean true-class margin over class-k images, unedited
    margin_ablated: np.ndarray    # [U, K] with unit u zeroed
    margin_top: np.ndarray        # [K, top_n] as top_curve, the margin
    margin_random: np.ndarray     # [K, draws, top_n] as random_curve, the margin
    n_samples: int
    seed: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def drop(self) -> np.ndarray:
        """[U, K] base - ablated: how much zeroing unit u costs class k."""
        return self.base[None, :] - self.ablated

    @property
    def margin_drop(self) -> np.ndarray:
        """[U, K] margin_base - margin_ablated."""
        return self.margin_base[None, :] - self.margin_ablated

    @property
    def max_importance(self) -> np.ndarray:
        """[U] each unit's largest drop of balanced accuracy over the classes (NaN classes left out)."""
        return _nanmax_rows(self.drop)

    @property
    def max_margin_drop(self) -> np.ndarray:
        """[U] each unit's largest margin drop over the classes."""
        return _nanmax_rows(self.margin_drop)

    def ranking(self, k) -> np.ndarray:
        """The units by their drop for class ``k`` (index or name), largest first; ties by the margin
        drop, then the lower unit first."""
        return _rank(self.drop[:, self._class(k)], self.margin_drop[:, self._class(k)])

    def _class(self, k) -> int:
        if isinstance(k, str):
            if k not in self.classes:
                raise InputError(f"unknown class {k!r}; classes: {', '.join(self.classes)}")
            return self.classes.index(k)
        return check_int("class", k, 0, len(self.classes) - 1)

    def units(self) -> pd.DataFrame:
        """One row per unit: its drop for every class (``drop_<class>``), its largest drop and the class of it
        (ties by the margin drop), its largest margin drop."""
        d, md = self.drop, self.margin_drop          # the class of the largest drop, ties by the margin drop
        top = np.nan_to_num(d, nan=-np.inf) == np.nan_to_num(self.max_importance, nan=-np.inf)[:, None]
        best = np.argmax(np.where(top, np.nan_to_num(md, nan=-np.inf), -np.inf), 1)
        cols = {"layer": self.layer, "unit": np.arange(len(d))}
        cols.update({f"drop_{c}": d[:, i] for i, c in enumerate(self.classes)})
        cols.update({"max_importance": self.max_importance, "class": np.array(self.classes, dtype=object)[best],
                     "max_margin_drop": self.max_margin_drop})
        return pd.DataFrame(cols)

    def curves(self) -> pd.DataFrame:
        """One row per (class, N): its base BA, with its top N units zeroed, and over the random draws
        of N other units the mean, min and max."""
        rows = []
        for k, c in enumerate(self.classes):
            for j in range(self.top_curve.shape[1]):
                r, rm = self.random_curve[k, :, j], self.margin_random[k, :, j]
                rows.append({"class": c, "n": j + 1, "base": self.base[k], "top": self.top_curve[k, j],
                             "random_mean": float(np.mean(r)), "random_min": float(np.min(r)),
                             "random_max": float(np.max(r)), "margin_base": self.margin_base[k],
                             "margin_top": self.margin_top[k, j], "margin_random_mean": float(np.mean(rm)),
                             "margin_random_min": float(np.min(rm)), "margin_random_max": float(np.max(rm))})
        return pd.DataFrame(rows)

    def to_arrays(self) -> tuple[dict, dict]:
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        return arrays, {"layer": self.layer, "classes": self.classes, "n_samples": self.n_samples,
                        "seed": self.seed, "meta": self.meta}

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> "UnitImportance":
        return cls(layer=meta["layer"], classes=list(meta["classes"]),
                   **{k: np.asarray(arrays[k]) for k in _ARRAYS},
                   n_samples=int(meta["n_samples"]), seed=int(meta["seed"]),
                   meta={**meta.get("meta", {}), "cached": True})


_ARRAYS = ("base", "ablated", "top_curve", "random_curve", "random_units", "margin_base", "margin_ablated",
           "margin_top", "margin_random")


def _nanmax_rows(d):
    return np.where(np.isnan(d).all(1), np.nan, np.nanmax(np.where(np.isnan(d), -np.inf, d), 1))


def _rank(drop, margin_drop):
    """Indices by ``drop`` descending, ties by ``margin_drop`` descending, then by index (NaN last)."""
    return np.lexsort((np.arange(len(drop)), -np.nan_to_num(margin_drop, nan=-np.inf),
                       -np.nan_to_num(drop, nan=-np.inf)))


def multilabel_scores(tp, tn, pos, neg, margin_pos, margin_neg):
    """(balanced accuracy [..., K], balanced signed margin [..., K]) of a multi-label classifier from its counts:
    ``tp`` / ``tn`` [..., K] the images with class k present and predicted present / absent and predicted absent,
    ``pos`` / ``neg`` [K] the images with k present / absent, ``margin_pos`` / ``margin_neg`` [..., K] the sums of
    the logit z_k over the images with k / of -z_k over the images without k. NaN where ``pos`` or ``neg`` is 0."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    ok = (pos > 0) & (neg > 0)
    p, q = np.maximum(pos, 1), np.maximum(neg, 1)
    with np.errstate(invalid="ignore"):
        ba = np.where(ok, (np.asarray(tp) / p + np.asarray(tn) / q) / 2, np.nan)
        mg = np.where(ok, (np.asarray(margin_pos) / p + np.asarray(margin_neg) / q) / 2, np.nan)
    return ba, mg


def class_margins(margins, labels, n_classes: int) -> np.ndarray:
    """[..., K]: the mean over class-k images of ``margins`` [..., N] (NaN for a class without images)."""
    m = torch.as_tensor(margins, device="cpu").double()
    onehot = (torch.as_tensor(labels, device="cpu").long().view(-1, 1)
              == torch.arange(n_classes, device="cpu")).double()   # [N, K]
    count = onehot.sum(0)
    out = (m @ onehot) / count.clamp(min=1)
    return torch.where(count > 0, out, torch.tensor(float("nan"), dtype=torch.float64, device="cpu")).numpy()


# ----------------------------------------------------------------------------- evaluation of variants

def _logits(model, images, edits=None):
    out = model(images) if edits is None else None
    if edits is not None:
        with Trace(model, edits=edits):
            out = model(images)
    if not (isinstance(out, torch.Tensor) and out.dim() == 2):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ProtocolError(f"model: a classifier's forward must return logits N x classes, got {got}",
                            fix="wrap the network so that forward(images) returns N x classes logits")
    return out


def _suffix_edit(masks):
    def fn(out):
        g, b = masks.shape[0], out.shape[0]
        m = masks.to(out.dtype).view(g, 1, masks.shape[1], *([1] * (out.dim() - 2)))
        return (out.unsqueeze(0) * m).reshape(g * b, *out.shape[1:])
    return fn


def _full_edit(masks):
    def fn(out):
        g = masks.shape[0]
        b = out.shape[0] // g
        m = masks.to(out.dtype).view(g, 1, masks.shape[1], *([1] * (out.dim() - 2)))
        return (out.view(g, b, *out.shape[1:]) * m).reshape(out.shape)
    return fn


def _predict(model, layer, images, masks, path):
    """[g, b] predicted classes of the ``g`` variants (rows of ``masks`` [g, C]) on ``images`` [b, ...]."""
    g, b = masks.shape[0], images.shape[0]
    if path == "suffix":
        logits = _logits(model, images, {layer: _suffix_edit(masks)})
        if logits.shape[0] != g * b:
            raise RuntimeError("the suffix path did not keep the variants")
    else:
        logits = _logits(model, images.repeat(g, *([1] * (images.dim() - 1))), {layer: _full_edit(masks)})
    return logits.view(g, b, -1)


def _choose_path(model, layer, images, masks):
    """``"suffix"`` when running the rest of the network on the masked copies matches the full forward
    of each variant on this chunk, else ``"full"``."""
    probe = masks[: min(3, len(masks))]
    full = _predict(model, layer, images, probe, "full")
    try:
        fast = _predict(model, layer, images, probe, "suffix")
    except (RuntimeError, ValueError, IndexError):       # shapes that only fit one batch: a skip connection
        return "full"
    ok = fast.shape == full.shape and bool(torch.allclose(fast, full, rtol=1e-4, atol=1e-4))
    return "suffix" if ok else "full"


def _run_variants_multilabel(model, layer, images, labels, masks, batch_size, chunk_bytes, unit_bytes, device,
                             state):
    """([V, K] balanced accuracy, [V, K] balanced signed margin) of every variant, multi-label (``labels`` [N, K]
    0/1): the counts of :func:`multilabel_scores`, summed per chunk over its images."""
    V, K = masks.shape[0], labels.shape[1]
    tp = torch.zeros(V, K, dtype=torch.float64, device="cpu")
    tn, mpos, mneg = tp.clone(), tp.clone(), tp.clone()
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size].to(device)
        per_chunk = max(1, int(chunk_bytes // max(1, unit_bytes * x.shape[0])))
        for v in range(0, V, per_chunk):
            m = masks[v:v + per_chunk].to(device)
            if state.get("path") is None:
                state["path"] = _choose_path(model, layer, x, m)
            z = _predict(model, layer, x, m, state["path"]).double()                 # [g, b, K]
            if z.shape[-1] != K:
                raise InputError(f"labels: {K} columns for {z.shape[-1]} logits",
                                 fix=f"give one 0/1 column per class ({z.shape[-1]})")
            y = labels[s:s + x.shape[0]].to(z.device).bool().unsqueeze(0)           # [1, b, K]
            yes = z > 0
            g = slice(v, v + m.shape[0])
            tp[g] += (yes & y).sum(1).cpu().double()
            tn[g] += (~yes & ~y).sum(1).cpu().double()
            mpos[g] += torch.where(y, z, torch.zeros_like(z)).sum(1).cpu()
            mneg[g] += torch.where(y, torch.zeros_like(z), -z).sum(1).cpu()
    pos = labels.bool().sum(0).double().numpy()
    neg = labels.shape[0] - pos
    return multilabel_scores(tp.numpy(), tn.numpy(), pos, neg, mpos.numpy(), mneg.numpy())


def _scores(model, layer, images, lab, masks, K, multilabel, batch_size, chunk_bytes, unit_bytes, device, state):
    """([V, K] balanced accuracy, [V, K] margin) of the variants ``masks`` [V, C]."""
    if multilabel:
        return _run_variants_multilabel(model, layer, images, lab, masks, batch_size, chunk_bytes, unit_bytes,
                                        device, state)
    preds, margins = _run_variants(model, layer, images, lab, masks, batch_size, chunk_bytes, unit_bytes, device,
                                   state)
    return balanced_accuracy(preds, lab, K), class_margins(margins, lab, K)


def _run_variants(model, layer, images, labels, masks, batch_size, chunk_bytes, unit_bytes, device, state):
    """([V, N] predictions, [V, N] true-class margins) of every variant over every image."""
    preds = torch.empty(masks.shape[0], images.shape[0], dtype=torch.long, device="cpu")
    margins = torch.empty(masks.shape[0], images.shape[0], dtype=torch.float32, device="cpu")
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size].to(device)
        per_chunk = max(1, int(chunk_bytes // max(1, unit_bytes * x.shape[0])))
        for v in range(0, masks.shape[0], per_chunk):
            m = masks[v:v + per_chunk].to(device)
            if state.get("path") is None:
                state["path"] = _choose_path(model, layer, x, m)
            logits = _predict(model, layer, x, m, state["path"]).float()              # [g, b, K]
            y = labels[s:s + x.shape[0]].to(logits.device).view(1, -1, 1).expand(logits.shape[0], -1, 1)
            true = logits.gather(2, y)
            other = logits.scatter(2, y, float("-inf")).amax(2, keepdim=True)
            preds[v:v + per_chunk, s:s + x.shape[0]] = logits.argmax(-1).cpu()
            margins[v:v + per_chunk, s:s + x.shape[0]] = (true - other).squeeze(2).cpu()
    return preds, margins


# ----------------------------------------------------------------------------- entry

def _check_inputs(model, layer, images, labels, classes, multilabel=False):
    try:
        check_classifier(model)
    except ProtocolError as e:
        raise ProtocolError(f"model: {e}", fix=e.fix) from None
    layer = resolve_layers(model, [layer] if isinstance(layer, str) else layer)
    if len(layer) != 1:
        raise InputError(f"layer: give one layer name, got {len(layer)}", fix="e.g. layer='d4'")
    s = model.input_size
    if not (isinstance(images, torch.Tensor) and images.is_floating_point() and images.dim() == 4
            and images.shape[1:] == (3, s, s) and images.shape[0] >= 1):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images: need float images N x 3 x {s} x {s} in [-1, 1] (the classifier's input_size); "
                         f"got {got}", fix=f"render or resize the images to {s} x {s}")
    if not bool(torch.isfinite(images).all()):
        raise InputError("images: hold NaN or inf", fix="give finite images in [-1, 1]")
    if not (isinstance(labels, torch.Tensor) or isinstance(labels, (list, tuple, np.ndarray))):
        raise ArgumentTypeError(f"labels: need one class index per image, got {type(labels).__name__}",
                                fix="labels=torch.tensor([...]) of class indices")
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels, device="cpu")
    if multilabel:
        ok01 = lab.numel() > 0 and bool(((lab == 0) | (lab == 1)).all())
        if lab.dim() != 2 or lab.shape[0] != images.shape[0] or not ok01:
            raise InputError(f"labels: a multi-label classifier needs {images.shape[0]} rows of 0/1 (one column per "
                             f"class: present or not), got {lab.dtype} {tuple(lab.shape)}",
                             fix="labels: a 0/1 tensor of shape images x classes, or multilabel=False")
        if classes is not None and (not isinstance(classes, (list, tuple)) or
                                    not all(isinstance(c, str) for c in classes)):
            raise ArgumentTypeError("classes: need a list of class names", fix="e.g. classes=['sky', 'grass']")
        return layer[0], lab.to(torch.uint8)
    if lab.dtype.is_floating_point or lab.dtype == torch.bool or lab.dim() != 1 or lab.shape[0] != images.shape[0]:
        raise InputError(f"labels: need {images.shape[0]} integer class indices (one per image), got "
                         f"{lab.dtype} {tuple(lab.shape)}", fix="labels=torch.tensor([...], dtype=torch.long)")
    if classes is not None and (not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes)):
        raise ArgumentTypeError("classes: need a list of class names", fix="e.g. classes=['town', 'room', 'lake']")
    return layer[0], lab.long().cpu()


def _data_key(images, labels) -> str:
    h = hashlib.sha256()
    for t in (images, labels):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def unit_importance(model, layer: str, images: torch.Tensor, labels, *, classes: list[str] | None = None,
                    top_n: int = 20, draws: int = 5, seed: int = 0, batch_size: int = 64,
                    chunk_bytes: int = 128 << 20, multilabel: bool | None = None, cache: bool = True,
                    cached_only: bool = False) -> UnitImportance | None:
    """How much each unit of ``layer`` matters to each class of the classifier ``model`` on ``images``
    [N, 3, S, S] with class indices ``labels`` [N] (see the module): balanced accuracy unedited, with
    each unit zeroed, and the top-N vs random curves (N = 1 … ``top_n``, ``draws`` random draws from
    ``seed``). ``classes``: names (default ``model.classes``, else ``"0"``, ``"1"``, ...). ``multilabel``
    (default ``model.multilabel``, else False): ``labels`` are [N, K] 0/1 and each class is decided by its own
    logit > 0 (see the module). Runs on the model's device.
    Cached (``cache=False`` skips; ``cached_only=True`` returns the stored result or None)."""
    multilabel = check_bool("multilabel", bool(getattr(model, "multilabel", False)) if multilabel is None
                            else multilabel)
    layer, lab = _check_inputs(model, layer, images, labels, classes, multilabel)
    top_n, draws, seed = check_int("top_n", top_n, 1), check_int("draws", draws, 1), check_int("seed", seed)
    batch_size = check_int("batch_size", batch_size, 1)
    chunk_bytes = check_int("chunk_bytes", chunk_bytes, 1 << 16)
    check_bool("cache", cache)
    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), Trace(model, capture=[layer]) as tr:
            logits = _logits(model, images[:1].to(device))
        n_classes = logits.shape[1]
        a = tr[layer]
        if not isinstance(a, torch.Tensor) or a.dim() < 2:
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise InputError(f"layer: {layer!r} outputs {got}; units are the channels of a tensor N x C x ...",
                             fix="pick a layer with channels")
        n_units = a.shape[1]
        names = list(classes if classes is not None else getattr(model, "classes", None) or
                     [str(i) for i in range(n_classes)])
        if len(names) != n_classes:
            raise InputError(f"classes: {len(names)} names for {n_classes} logits", fix=f"give {n_classes} class names")
        if multilabel and lab.shape[1] != n_classes:
            raise InputError(f"labels: {lab.shape[1]} columns for the classifier's {n_classes} classes",
                             fix=f"give one 0/1 column per class ({n_classes})")
        if not multilabel and lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= n_classes):
            bad = int(lab.min()) if int(lab.min()) < 0 else int(lab.max())
            raise InputError(f"labels: class index {bad} is out of range 0 .. {n_classes - 1} (the classifier has "
                             f"{n_classes} classes: {', '.join(names[:8])}{' …' if n_classes > 8 else ''})",
                             fix="give each image the index of its class among the classifier's logits")
        top_n = min(top_n, n_units)
        unit_bytes = a[0].numel() * 4
        parts = {"layer": layer, "data": _data_key(images, lab), "top_n": top_n, "draws": draws, "seed": seed}
        if multilabel:
            parts["task"] = "multilabel"
        res = _cache.measure(
            "unit-importance", IMPORTANCE_VERSION, models={"classifier": model}, parts=parts,
            compute=lambda: _compute(model, layer, images, lab, names, n_units, top_n, draws, seed, batch_size,
                                     chunk_bytes, unit_bytes, device, multilabel),
            codec=UnitImportance, cache=cache, cached_only=cached_only)
    finally:
        model.train(was_training)
    if res is not None and classes is not None:
        res.classes = list(classes)
    return res


@torch.no_grad()
def _compute(model, layer, images, lab, names, n_units, top_n, draws, seed, batch_size, chunk_bytes, unit_bytes,
             device, multilabel=False) -> UnitImportance:
    t0 = time.perf_counter()
    K = len(names)
    state = {}
    singles = torch.ones(n_units + 1, n_units, device="cpu")              # row 0: unedited; row 1 + u: u zeroed
    singles[torch.arange(1, n_units + 1, device="cpu"), torch.arange(n_units, device="cpu")] = 0
    ba, mg = _scores(model, layer, images, lab, singles, K, multilabel, batch_size, chunk_bytes, unit_bytes, device,
                     state)                                                   # [1 + U, K] each
    base, ablated = ba[0], ba[1:]
    margin_base, margin_ablated = mg[0], mg[1:]
    t1 = time.perf_counter()
    # the curves: per class, its top N units (N = 1 … top_n), and N of the others at random (nested draws)
    drop, mdrop = base[None, :] - ablated, margin_base[None, :] - margin_ablated
    rng = np.random.default_rng(seed)
    masks, rand_units = [], np.zeros((K, draws, top_n), dtype=np.int64)
    for k in range(K):
        order = _rank(drop[:, k], mdrop[:, k])
        top, rest = order[:top_n], order[top_n:]
        for j in range(top_n):
            m = torch.ones(n_units, device="cpu")
            m[torch.as_tensor(top[:j + 1], device="cpu")] = 0
            masks.append(m)
        for d in range(draws):
            perm = rng.permutation(rest)[:top_n] if len(rest) else np.zeros(0, dtype=np.int64)
            rand_units[k, d, :len(perm)] = perm
            rand_units[k, d, len(perm):] = -1
            for j in range(top_n):
                m = torch.ones(n_units, device="cpu")
                m[torch.as_tensor(perm[:j + 1], dtype=torch.long, device="cpu")] = 0
                masks.append(m)
    cba, cmg = _scores(model, layer, images, lab, torch.stack(masks), K, multilabel, batch_size, chunk_bytes,
                       unit_bytes, device, state)
    idx = np.arange(K)
    per_class = cba.reshape(K, 1 + draws, top_n, K)[idx, :, :, idx]              # [K, 1+draws, N]
    per_margin = cmg.reshape(K, 1 + draws, top_n, K)[idx, :, :, idx]
    t2 = time.perf_counter()
    meta = {"path": state.get("path"), "units": n_units, "ablation_seconds": t1 - t0, "curve_seconds": t2 - t1,
            "seconds": t2 - t0, "device": str(device), "code_version": IMPORTANCE_VERSION, "cached": False,
            "multilabel": bool(multilabel),
            "class_counts": (lab.long().sum(0).tolist() if multilabel
                             else np.bincount(lab.numpy(), minlength=K).tolist())}
    return UnitImportance(layer=layer, classes=names, base=base, ablated=ablated, top_curve=per_class[:, 0],
                          random_curve=per_class[:, 1:], random_units=rand_units, margin_base=margin_base,
                          margin_ablated=margin_ablated, margin_top=per_margin[:, 0], margin_random=per_margin[:, 1:],
                          n_samples=int(images.shape[0]), seed=seed, meta=meta)

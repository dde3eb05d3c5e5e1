"""Pruning vs interpretability (issue #36): magnitude pruning of the toyworld feature network, its accuracy and
its detectors per layer at each sparsity.

- :func:`prune`: a **new** model (a deep copy; the input and the shipped weights file are never touched) whose
  convolution and linear weights (BatchNorm and biases kept) have the fraction ``sparsity`` of smallest
  magnitude set to zero, exactly ``round(sparsity * n)`` of them: per weight tensor (``scope="layer"``, each
  tensor at the same sparsity) or over all of them at once (``scope="global"``); ties by position. Returns the
  model and the masks (True = kept).
- :func:`finetune`: a short fine-tune of a pruned copy with its masks held (zeroed weights stay zero): the
  feature network's own training loss (scene cross-entropy + presence binary cross-entropy + 10 x the
  coverage MSE on the square root, as ``scripts/train_features.py``), AdamW, on fresh toyworld scenes of the
  training range (seeds from ``FINETUNE_SEED0``, disjoint from the evaluation seeds 0 … 999).
- :func:`evaluate`: scene balanced accuracy (mean over town / room / lake, one vs the rest on the argmax) and
  presence balanced accuracy (mean over the concepts, each on its own logit > 0) on labelled held-out images.
- :func:`pruning_study`: all of it per sparsity, with the detectors per layer of
  :func:`core.engine.classifier_dissection.dissect_classifier` on :class:`core.studies.probes.ToyworldProbes`
  (per probe seed).
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from core import toyworld
from core.base.errors import InputError, UnknownNameError
from core.base.validate import check_choice, check_float, check_int
from core.engine.classifier_dissection import dissect_classifier
from core.engine.importance import balanced_accuracy, multilabel_scores
from core.models.toynets import ToyFeatures, ToySceneClassifier
from core.studies.importance import presence_images
from core.studies.probes import ToyworldProbes

__all__ = ["prune", "prunable", "sparsity_of", "finetune", "evaluate", "pruning_study", "SCOPES", "FINETUNE_SEED0"]

SCOPES = ("layer", "global")
FINETUNE_SEED0 = 3_000_000         # training range (>= 1,000,000), apart from the feature network's own 2,000,000+


def prunable(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module name: weight}`` of every convolution and linear layer of ``model``, in module order."""
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _check_sparsity(sparsity) -> float:
    return check_float("sparsity", sparsity, 0, 1, hi_open=True,
                       what="a fraction of weights to remove in [0, 1) (0.9 = 90% of them zeroed)")


def prune(model: nn.Module, sparsity: float, scope: str = "layer", layers=None):
    """(pruned copy of ``model``, ``{name: kept mask}``): magnitude pruning at ``sparsity`` in [0, 1) (see the
    module); ``scope`` ``"layer"`` (each weight tensor pruned to ``sparsity``) or ``"global"`` (one threshold
    over all of them); ``layers``: the module names to prune (default: every convolution and linear layer,
    :func:`prunable`). ``model`` is deep-copied first and never changed."""
    sparsity = _check_sparsity(sparsity)
    check_choice("scope", scope, SCOPES)
    if not isinstance(model, nn.Module):
        raise InputError(f"model: need a torch.nn.Module, got {type(model).__name__}",
                         fix="pass the feature network, e.g. core.load_features('toyworld')")
    if layers is not None:
        names = [layers] if isinstance(layers, str) else list(layers)
        have = prunable(model)
        bad = [n for n in names if n not in have]
        if bad or not names:
            raise UnknownNameError(f"layers: {', '.join(map(repr, bad)) or 'none given'}: not a convolution or "
                                   f"linear layer of the model; prunable: {', '.join(list(have)[:12])}"
                                   f"{' …' if len(have) > 12 else ''}", fix="name layers from prunable(model)")
    new = copy.deepcopy(model)
    weights = prunable(new)
    if layers is not None:
        weights = {k: weights[k] for k in names}
    if not weights:
        raise InputError("model: has no convolution or linear layer to prune", fix="pass a network with weights")
    flats = {k: w.detach().abs().reshape(-1).double() for k, w in weights.items()}
    masks = {}
    if scope == "layer":
        for k, f in flats.items():
            masks[k] = _keep(f, int(round(sparsity * f.numel())))
    else:
        allv = torch.cat(list(flats.values()))
        keep = _keep(allv, int(round(sparsity * allv.numel())))
        start = 0
        for k, f in flats.items():
            masks[k] = keep[start:start + f.numel()]
            start += f.numel()
    with torch.no_grad():
        for k, w in weights.items():
            masks[k] = masks[k].view(w.shape)
            w.mul_(masks[k].to(w.dtype))
    return new.eval(), masks


def _keep(values: torch.Tensor, k: int) -> torch.Tensor:
    """Flat bool mask: False at the ``k`` smallest ``values`` (ties: lower position first)."""
    order = torch.sort(values, stable=True).indices
    keep = torch.ones(values.numel(), dtype=torch.bool, device=values.device)
    keep[order[:k]] = False
    return keep


def sparsity_of(model: nn.Module) -> dict:
    """``{"total": fraction of prunable weights that are zero, name: fraction per tensor}``."""
    w = prunable(model)
    zeros = {k: int((v == 0).sum()) for k, v in w.items()}
    total = sum(v.numel() for v in w.values())
    return {"total": sum(zeros.values()) / max(total, 1), **{k: zeros[k] / w[k].numel() for k in w}}


def finetune(model: ToyFeatures, masks: dict, steps: int = 100, per_scene: int = 8, lr: float = 1e-3,
             seed0: int = FINETUNE_SEED0, progress: Callable | None = None) -> ToyFeatures:
    """A fine-tuned copy of the pruned feature network ``model`` (never changed) with ``masks`` held: ``steps``
    AdamW steps at ``lr`` (cosine to 0), each on ``per_scene`` fresh scenes of every scene type (seed
    ``seed0 + step``), the feature network's own loss (see the module); BatchNorm statistics update as in
    training. Returns the copy in eval mode."""
    steps, per_scene = check_int("steps", steps, 1), check_int("per_scene", per_scene, 1)
    lr = check_float("lr", lr, 0, 1, lo_open=True)
    new = copy.deepcopy(model)
    weights = prunable(new)
    unknown = sorted(set(masks) - set(weights))
    if unknown:
        raise InputError(f"masks: names the model lacks: {', '.join(unknown[:5])}", fix="pass the masks of prune()")
    for p in new.parameters():
        p.requires_grad_(True)             # shared, loaded models are frozen; the copy trains
    opt = torch.optim.AdamW(new.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    new.train()
    for step in range(steps):
        ims, lbs, sc = [], [], []
        for i, scene in enumerate(toyworld.SCENES):
            im, lb = toyworld.render(scene, per_scene, seed=seed0 + step, size=128)
            ims.append(im)
            lbs.append(lb)
            sc.append(torch.full((per_scene,), i, dtype=torch.long, device=im.device))
        images, labels, scene = torch.cat(ims), torch.cat(lbs), torch.cat(sc)
        loss = new.training_loss(images, labels, scene)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for k, m in masks.items():
                weights[k].mul_(m.to(weights[k].dtype))
        if progress:
            progress(step + 1, steps, float(loss))
    return new.eval()


@torch.no_grad()
def evaluate(model: ToyFeatures, images: torch.Tensor, scenes: torch.Tensor, presence: torch.Tensor,
             batch_size: int = 100) -> dict:
    """``{"scene_ba", "presence_ba", "scene_ba_per_class", "presence_ba_per_concept"}`` of the feature network on
    ``images`` with scene indices ``scenes`` [N] and presence ``presence`` [N, 27] 0/1 (see the module; the
    presence mean leaves out NaN concepts: present in every image or in none)."""
    model.eval()
    s_pred, p_logit = [], []
    for s in range(0, images.shape[0], batch_size):
        sl, pl, _ = model.heads(model.features(images[s:s + batch_size]))
        s_pred.append(sl.argmax(1))
        p_logit.append(pl)
    s_pred, z = torch.cat(s_pred), torch.cat(p_logit).double()
    sba = balanced_accuracy(s_pred, scenes, len(toyworld.SCENES))
    y = presence.bool()
    yes = z > 0
    pos = y.sum(0).double().numpy()
    pba, _ = multilabel_scores((yes & y).sum(0).double().numpy(), (~yes & ~y).sum(0).double().numpy(), pos,
                               y.shape[0] - pos, np.zeros(y.shape[1]), np.zeros(y.shape[1]))
    return {"scene_ba": float(np.nanmean(sba)), "presence_ba": float(np.nanmean(pba)),
            "scene_ba_per_class": sba.tolist(), "presence_ba_per_concept": pba.tolist()}


def pruning_study(features: ToyFeatures, sparsities=(0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95), scope: str = "layer",
                  n_eval: int = 600, eval_seed: int = 100, n_probes: int = 600, probe_seeds=(0, 1, 2),
                  finetune_steps: int = 100, finetune_per_scene: int = 8, finetune_lr: float = 1e-3,
                  collapse: float = 0.05, finetune_all: bool = False, batch_size: int = 50, cache: bool = True,
                  progress: Callable | None = None) -> tuple[pd.DataFrame, dict]:
    """(table, meta): one row per (sparsity, finetuned): the measured sparsity, scene and presence balanced
    accuracy on ``n_eval`` held-out scenes (:func:`presence_images` of ``eval_seed``), and per layer of
    :class:`ToySceneClassifier` (stem, d2, d3, d4, proj) the detectors (NetDissect's rule, ``n_probes`` probes)
    per probe seed and their mean. A level is fine-tuned (:func:`finetune`, a second row) when either accuracy
    falls more than ``collapse`` below the unpruned network's, or always with ``finetune_all``.
    ``features`` is never changed."""
    sps = [_check_sparsity(s) for s in sparsities]
    if not sps:
        raise InputError("sparsities: none given", fix="e.g. sparsities=(0, 0.5, 0.9)")
    check_choice("scope", scope, SCOPES)
    n_eval, n_probes = check_int("n_eval", n_eval, 3), check_int("n_probes", n_probes, 1)
    seeds = [check_int("probe_seeds", s) for s in probe_seeds]
    collapse = check_float("collapse", collapse, 0, 1)
    images, presence = presence_images(n_eval, eval_seed)
    scenes = torch.arange(n_eval, device=images.device) % len(toyworld.SCENES)
    probes = {s: ToyworldProbes(size=128, n=n_probes, seed=s) for s in seeds}
    layers = ["stem", "d2", "d3", "d4", "proj"]
    rows, base = [], None

    def measure(model, sp, tuned, seconds):
        t0 = time.perf_counter()
        row = {"sparsity": sp, "finetuned": tuned, "measured_sparsity": sparsity_of(model)["total"],
               **{k: v for k, v in evaluate(model, images, scenes, presence).items() if not k.endswith("concept")}}
        clf = ToySceneClassifier(model)
        for s in seeds:
            d = dissect_classifier(clf, probes[s], layers, n_probes, batch_size=batch_size, cache=cache)
            summ = d.summary().set_index("layer")
            for layer in layers:
                row[f"det_{layer}_seed{s}"] = int(summ.loc[layer, "detectors"])
                row[f"unique_{layer}_seed{s}"] = int(summ.loc[layer, "unique"])
        for layer in layers:
            row[f"det_{layer}"] = float(np.mean([row[f"det_{layer}_seed{s}"] for s in seeds]))
        row["det_total"] = float(sum(row[f"det_{layer}"] for layer in layers))
        row["seconds_finetune"], row["seconds_measure"] = seconds, time.perf_counter() - t0
        rows.append(row)
        if progress:
            progress(row)
        return row

    for sp in sps:
        pruned, masks = prune(features, sp, scope)
        row = measure(pruned, sp, False, 0.0)
        if base is None:
            base = row if sp == 0 else measure(features, 0.0, False, 0.0)
        fell = (base["scene_ba"] - row["scene_ba"] > collapse) or (base["presence_ba"] - row["presence_ba"] > collapse)
        if sp > 0 and (finetune_all or fell):
            t0 = time.perf_counter()
            tuned = finetune(pruned, masks, finetune_steps, finetune_per_scene, finetune_lr)
            measure(tuned, sp, True, time.perf_counter() - t0)
    meta = {"scope": scope, "n_eval": n_eval, "eval_seed": eval_seed, "n_probes": n_probes, "probe_seeds": seeds,
            "layers": layers, "rule": "netdissect",
            "finetune": {"steps": finetune_steps, "per_scene": finetune_per_scene, "lr": finetune_lr,
                         "batch": finetune_per_scene * len(toyworld.SCENES), "optimizer": "AdamW, cosine",
                         "seed0": FINETUNE_SEED0, "collapse": collapse, "finetune_all": finetune_all},
            "pruned": "every Conv2d and Linear weight (BatchNorm, biases kept)"}
    return pd.DataFrame(rows), meta

"""Importance vs interpretability (PNAS 2020) on toyworld's own classifier (issue #36).

:func:`scene_images` are the labelled images: toyworld scenes rendered at the classifier's input size,
image ``i`` of scene type ``SCENES[i % 3]`` (its exact label), scene ``i // 3`` of that type of ``seed``.
:func:`importance_vs_interpretability` measures, for one layer of a classifier, each unit's importance
(:func:`core.engine.importance.unit_importance`: its largest per-class drop of balanced accuracy) and its
interpretability (its best IoU in :func:`core.engine.classifier_dissection.dissect_classifier` on
:class:`core.studies.probes.ToyworldProbes` at the network's input size, one dissection per probe seed),
and their Spearman correlation over the units: per probe seed, and with a bootstrap interval over the
units (the units resampled with replacement, the first probe seed's IoU). Importance is measured two ways:
``max_importance`` (balanced accuracy, the paper's) and ``max_margin_drop`` (the true-class margin, which
still moves where balanced accuracy saturates); the statistic is given for both.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core import toyworld
from core.base.errors import InputError
from core.base.protocols import check_classifier
from core.base.validate import check_int
from core.engine.classifier_dissection import dissect_classifier
from core.engine.importance import unit_importance
from core.studies.probes import ToyworldProbes

__all__ = ["scene_images", "importance_vs_interpretability", "spearman"]


def scene_images(n: int, seed: int = 0, size: int = 128):
    """(images [n, 3, size, size] in [-1, 1], labels [n]): image i is scene type i % 3 (town, room, lake)."""
    n, seed, size = check_int("n", n, 1), check_int("seed", seed), check_int("size", size, 8, 512)
    probe = ToyworldProbes(size=size, n=n, seed=seed, parts=False, colours=False, scenes=False)
    images, _ = probe.batch(0, n)
    return images, torch.arange(n, device="cpu") % len(toyworld.SCENES)


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.std(rx) == 0 or np.std(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def importance_vs_interpretability(model, layer: str, n_images: int = 300, n_probes: int = 300,
                                   image_seed: int = 100, probe_seeds=(0, 1), boots: int = 1000, top_n: int = 20,
                                   draws: int = 5, batch_size: int = 32, cache: bool = True, progress=None):
    """(table, stats, importance): one row per unit of ``layer`` (``max_importance``, the class of it,
    per probe seed its best concept and IoU, ``iou`` their mean), and the statistic: Spearman's rho
    between importance and IoU per probe seed, and its bootstrap 95% interval over units (``boots``
    resamples, the first probe seed). ``importance`` is the :class:`core.engine.importance.UnitImportance`."""
    check_classifier(model)
    n_images, n_probes, boots = check_int("n_images", n_images, 3), check_int("n_probes", n_probes, 1), \
        check_int("boots", boots, 10)
    seeds = [check_int("probe_seeds", s) for s in probe_seeds]
    if not seeds:
        raise InputError("probe_seeds: no seed given", fix="give at least one probe seed, e.g. (0, 1)")
    images, labels = scene_images(n_images, image_seed, model.input_size)
    imp = unit_importance(model, layer, images, labels, top_n=top_n, draws=draws, batch_size=batch_size,
                          cache=cache)
    table = imp.units()
    for s in seeds:
        probe = ToyworldProbes(size=model.input_size, n=n_probes, seed=s)
        d = dissect_classifier(model, probe, [layer], n_probes, batch_size=batch_size, cache=cache, progress=progress)
        u = d.units(layer)
        table[f"iou_seed{s}"] = u["iou"].to_numpy()
        table[f"concept_seed{s}"] = u["concept"].to_numpy()
        table[f"detector_seed{s}"] = u["detector"].to_numpy()
    table["iou"] = table[[f"iou_seed{s}" for s in seeds]].mean(1)
    idx = np.random.default_rng(0).integers(0, len(table), (boots, len(table)))
    stats = {"layer": layer, "units": len(table), "n_images": n_images, "n_probes": n_probes,
             "image_seed": image_seed, "probe_seeds": seeds, "base": imp.base.tolist(),
             "margin_base": imp.margin_base.tolist(),
             "units_with_drop": int((table["max_importance"] > 0).sum()),
             "detectors": {s: int(table[f"detector_seed{s}"].sum()) for s in seeds}}
    for name, col in (("accuracy", "max_importance"), ("margin", "max_margin_drop")):
        x = table[col].to_numpy()
        per_seed = {s: spearman(x, table[f"iou_seed{s}"]) for s in seeds}
        y = table[f"iou_seed{seeds[0]}"].to_numpy()
        boot = np.array([spearman(x[i], y[i]) for i in idx])
        boot = boot[np.isfinite(boot)]
        lo, hi = np.percentile(boot, [2.5, 97.5]).tolist() if len(boot) else [float("nan")] * 2
        stats[name] = {"importance": col, "spearman": per_seed[seeds[0]], "spearman_per_probe_seed": per_seed,
                       "bootstrap_95": [lo, hi], "boots": int(len(boot)),
                       "spearman_mean_iou": spearman(x, table["iou"])}
    return table, stats, imp

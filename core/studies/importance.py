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

A multi-label classifier (``model.multilabel``, the presence head ``toyworld-presence``) is measured on
:func:`presence_images`: the same scenes, each labelled with the concepts it contains (toyworld's exact
labels). Over probe seeds, :func:`relation_over_seeds` gives each statistic's mean and 95% t-interval over the
seeds (:func:`core.studies.over_seeds.mean_interval`, via :func:`seed_interval`) beside the bootstrap over
units, and the PNAS claim that the units that matter to many classes are the interpretable ones: per unit,
its **breadth**, the number of classes for which it is among the top ``breadth_k`` of
:meth:`~core.engine.importance.UnitImportance.ranking`, against its IoU and detector status.
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
from core.studies.over_seeds import mean_interval
from core.studies.probes import ToyworldProbes

__all__ = ["scene_images", "presence_images", "labelled_images", "importance_vs_interpretability", "spearman",
           "seed_interval", "breadth", "relation_over_seeds"]


def scene_images(n: int, seed: int = 0, size: int = 128):
    """(images [n, 3, size, size] in [-1, 1], labels [n]): image i is scene type i % 3 (town, room, lake)."""
    n, seed, size = check_int("n", n, 1), check_int("seed", seed), check_int("size", size, 8, 512)
    probe = ToyworldProbes(size=size, n=n, seed=seed, parts=False, colours=False, scenes=False)
    images, _ = probe.batch(0, n)
    return images, torch.arange(n, device="cpu") % len(toyworld.SCENES)


def presence_images(n: int, seed: int = 0, size: int = 128, batch: int = 250):
    """(images [n, 3, size, size] in [-1, 1], presence [n, 27] uint8): the images of :func:`scene_images`,
    column k 1 where concept ``toyworld.LABELS[k + 1]`` covers at least one pixel of the image's exact label
    map (at ``size``; exact where toyworld renders that size, e.g. 128), as the feature network's presence
    head was trained."""
    n, seed, size = check_int("n", n, 1), check_int("seed", seed), check_int("size", size, 8, 512)
    probe = ToyworldProbes(size=size, n=n, seed=seed, label_size=size, parts=False, colours=False, scenes=False)
    L = len(toyworld.LABELS)
    ims, pres = [], []
    for s in range(0, n, batch):
        im, lab = probe.batch(s, min(n, s + batch))
        lab = lab[:, 0].reshape(lab.shape[0], -1)
        hit = torch.zeros(lab.shape[0], L, dtype=torch.bool, device=lab.device)
        hit.scatter_(1, lab, True)
        ims.append(im)
        pres.append(hit[:, 1:].to(torch.uint8))
    return torch.cat(ims), torch.cat(pres)


def labelled_images(model, n: int, seed: int = 0):
    """The labelled images for ``model``: :func:`presence_images` for a multi-label classifier
    (``model.multilabel``), else :func:`scene_images`, at ``model.input_size``."""
    fn = presence_images if getattr(model, "multilabel", False) else scene_images
    return fn(n, seed, model.input_size)


def seed_interval(values) -> dict:
    """``{"mean", "low", "high", "values"}``: the mean over seeds (NaN values left out) and its 95% t-interval
    (:func:`core.studies.over_seeds.mean_interval`; NaN bounds with fewer than two values)."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    m, lo, hi = mean_interval(v)
    return {"mean": m, "low": lo, "high": hi, "values": v.tolist()}


def breadth(imp, k: int = 5) -> np.ndarray:
    """[U] per unit, the number of classes (with a finite base accuracy) for which it is among the class's top
    ``k`` units (:meth:`UnitImportance.ranking`: the accuracy drop, ties by the margin drop)."""
    k = check_int("k", k, 1)
    out = np.zeros(imp.ablated.shape[0], dtype=np.int64)
    for c in range(len(imp.classes)):
        if np.isfinite(imp.base[c]):
            out[imp.ranking(c)[:k]] += 1
    return out


def relation_over_seeds(table: pd.DataFrame, seeds, importance=("max_importance", "max_margin_drop"),
                        boots: int = 1000, breadth_col: str | None = "breadth", rng_seed: int = 0) -> dict:
    """The importance-vs-interpretability statistics over probe seeds from ``table`` (one row per unit; columns
    ``iou_seed{s}`` and ``detector_seed{s}`` per seed of ``seeds``, the importance columns, ``breadth_col``):

    - per importance column: Spearman's rho with IoU per seed, their mean and 95% t-interval over the seeds
      (:func:`seed_interval`), and per seed a bootstrap 95% interval over units (``boots`` resamples);
    - ``breadth`` (when ``breadth_col``): per seed, Spearman's rho of breadth with IoU, the mean IoU and the
      fraction of detectors among units of breadth 0, 1 and >= 2, the mean breadth of detectors and of the
      other units; each over the seeds as :func:`seed_interval`."""
    seeds = list(seeds)
    if not seeds:
        raise InputError("seeds: no probe seed given", fix="give at least one probe seed")
    missing = [c for s in seeds for c in (f"iou_seed{s}", f"detector_seed{s}") if c not in table]
    missing += [c for c in (*importance, *([breadth_col] if breadth_col else [])) if c not in table]
    if missing:
        raise InputError(f"table: lacks columns {', '.join(missing)}",
                         fix="pass the table of importance_vs_interpretability")
    idx = np.random.default_rng(rng_seed).integers(0, len(table), (check_int("boots", boots, 10), len(table)))
    out = {"seeds": seeds, "units": len(table)}
    for col in importance:
        x = table[col].to_numpy(dtype=np.float64)
        rho, boot = {}, {}
        for s in seeds:
            y = table[f"iou_seed{s}"].to_numpy(dtype=np.float64)
            rho[s] = spearman(x, y)
            b = np.array([spearman(x[i], y[i]) for i in idx])
            b = b[np.isfinite(b)]
            boot[s] = np.percentile(b, [2.5, 97.5]).tolist() if len(b) else [float("nan")] * 2
        out[col] = {"spearman_per_seed": rho, "over_seeds": seed_interval(rho.values()), "bootstrap_95": boot}
    if breadth_col:
        b = table[breadth_col].to_numpy()
        per = {"spearman": [], "iou_b0": [], "iou_b1": [], "iou_b2plus": [], "det_b0": [], "det_b1": [],
               "det_b2plus": [], "breadth_detectors": [], "breadth_others": []}
        for s in seeds:
            y = table[f"iou_seed{s}"].to_numpy(dtype=np.float64)
            det = table[f"detector_seed{s}"].to_numpy().astype(bool)
            per["spearman"].append(spearman(b, y))
            for name, sel in (("b0", b == 0), ("b1", b == 1), ("b2plus", b >= 2)):
                per[f"iou_{name}"].append(float(y[sel].mean()) if sel.any() else float("nan"))
                per[f"det_{name}"].append(float(det[sel].mean()) if sel.any() else float("nan"))
            per["breadth_detectors"].append(float(b[det].mean()) if det.any() else float("nan"))
            per["breadth_others"].append(float(b[~det].mean()) if (~det).any() else float("nan"))
        out["breadth"] = {"units_b0": int((b == 0).sum()), "units_b1": int((b == 1).sum()),
                          "units_b2plus": int((b >= 2).sum()),
                          **{k: seed_interval(v) for k, v in per.items()}}
    return out


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.std(rx) == 0 or np.std(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def importance_vs_interpretability(model, layer: str, n_images: int = 300, n_probes: int = 300,
                                   image_seed: int = 100, probe_seeds=(0, 1), boots: int = 1000, top_n: int = 20,
                                   draws: int = 5, batch_size: int = 32, cache: bool = True, progress=None,
                                   breadth_k: int = 5):
    """(table, stats, importance): one row per unit of ``layer`` (``max_importance``, the class of it,
    per probe seed its best concept and IoU, ``iou`` their mean), and the statistic: Spearman's rho
    between importance and IoU per probe seed, and its bootstrap 95% interval over units (``boots``
    resamples, the first probe seed), and ``stats["over_seeds"]``, :func:`relation_over_seeds` (the statistics'
    mean and interval over the probe seeds; each unit's ``breadth``: among how many classes' top ``breadth_k``).
    The images: :func:`labelled_images` (scene types, or concept presence for a multi-label classifier).
    ``importance`` is the :class:`core.engine.importance.UnitImportance`."""
    check_classifier(model)
    n_images, n_probes, boots = check_int("n_images", n_images, 3), check_int("n_probes", n_probes, 1), \
        check_int("boots", boots, 10)
    seeds = [check_int("probe_seeds", s) for s in probe_seeds]
    if not seeds:
        raise InputError("probe_seeds: no seed given", fix="give at least one probe seed, e.g. (0, 1)")
    breadth_k = check_int("breadth_k", breadth_k, 1)
    images, labels = labelled_images(model, n_images, image_seed)
    imp = unit_importance(model, layer, images, labels, top_n=top_n, draws=draws, batch_size=batch_size,
                          cache=cache)
    table = imp.units()
    table["breadth"] = breadth(imp, breadth_k)
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
    stats["over_seeds"] = relation_over_seeds(table, seeds, boots=boots)
    stats["breadth_k"] = breadth_k
    stats["multilabel"] = bool(imp.meta.get("multilabel", False))
    return table, stats, imp

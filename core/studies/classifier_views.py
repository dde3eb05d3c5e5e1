"""What the dashboard shows of a classifier (issue #36), computed once here so that the pages stay thin:
which classifiers can be opened (:func:`classifier_choices`), a classifier dissection as concept maps
(:func:`classifier_concept_map`, :func:`detectors_by_category`), one unit's labels per category
(:func:`unit_categories`, :func:`best_concepts`), and unit importance beside the dissection
(:func:`importance_table`, :func:`importance_vs_iou`), with its labelled images (:func:`importance_images`:
scene types, or for a multi-label classifier the concepts present), its page's defaults
(:func:`importance_defaults`) and per class the unedited scores and the class a page opens on
(:func:`importance_classes`, :func:`default_class`).

The dissection is :func:`core.engine.classifier_dissection.dissect_classifier` (its ``units``: one row per
unit, ``detector`` when its best IoU passes the rule's threshold); the importance
:func:`core.engine.importance.unit_importance`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core import toyworld
from core.base.errors import InputError, MissingPackageError
from core.base.validate import check_int
from core.models import efficientnet
from core.models.classifiers import list_classifiers
from core.studies.importance import presence_images, scene_images, spearman

__all__ = ["classifier_choices", "classifier_concept_map", "detectors_by_category", "unit_categories",
           "best_concepts", "importance_table", "importance_vs_iou", "default_layers", "importance_images",
           "importance_defaults", "importance_classes", "default_class"]

# classifiers that need an optional package: name -> a check that raises MissingPackageError (naming the pip command)
_NEEDS = {efficientnet.NAME: efficientnet.weights_path}


def classifier_choices() -> dict[str, str | None]:
    """Every classifier of :func:`core.models.classifiers.list_classifiers`, in its order: ``None`` when
    it can be loaded here, else why not and how to install what it needs (a missing optional package)."""
    out = {}
    for name in list_classifiers():
        check = _NEEDS.get(name)
        try:
            if check is not None:
                check()
            out[name] = None
        except MissingPackageError as e:
            out[name] = str(e)
    return out


def default_layers(layers, at_most: int = 5) -> list[str]:
    """The layers a page opens with: all of them when there are at most ``at_most``, else the last
    ``at_most`` evenly spread over the network (the last one always)."""
    layers = list(layers)
    at_most = check_int("at_most", at_most, 1)
    if len(layers) <= at_most:
        return layers
    pick = np.linspace(0, len(layers) - 1, at_most).round().astype(int)
    return [layers[i] for i in sorted(set(pick.tolist()))]


def classifier_concept_map(res, layers=None, iou_threshold: float | None = None) -> pd.DataFrame:
    """How many detectors of each layer have each concept as their label (a classifier's concept map):
    one row per (layer, concept) with its ``category``, ``units`` (detectors labelled with it), their
    ``mean_iou`` / ``max_iou``, ``unit_list`` (best first) and ``layer_units``; rows in the layers' order,
    then by decreasing count, then concept name. ``iou_threshold``: default the dissection's rule."""
    rows = []
    layers = list(layers or res.layers)
    for layer in layers:
        u = res.units(layer, iou_threshold)
        for concept, g in u[u.detector].groupby("concept"):
            rows.append({"layer": layer, "category": g.category.iloc[0], "concept": concept, "units": len(g),
                         "mean_iou": float(g.iou.mean()), "max_iou": float(g.iou.max()),
                         "unit_list": g.sort_values("iou", ascending=False).unit.tolist(), "layer_units": len(u)})
    cols = ["layer", "category", "concept", "units", "mean_iou", "max_iou", "unit_list", "layer_units"]
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        df["_l"] = df.layer.map({ly: i for i, ly in enumerate(layers)})
        df = df.sort_values(["_l", "units", "concept"], ascending=[True, False, True]).drop(columns="_l")
    return df.reset_index(drop=True)


def detectors_by_category(res, iou_threshold: float | None = None) -> pd.DataFrame:
    """One row per (layer, category) of :meth:`ClassifierDissection.summary`: ``detectors`` and
    ``unique`` (distinct concepts among them, NetDissect's count), and the layer's ``units``."""
    s = res.summary(iou_threshold)
    rows = [{"layer": r["layer"], "category": cat, "detectors": int(r[f"{cat}_detectors"]),
             "unique": int(r[f"{cat}_unique"]), "units": int(r["units"])}
            for _, r in s.iterrows() for cat in res.categories]
    return pd.DataFrame(rows, columns=["layer", "category", "detectors", "unique", "units"])


def unit_categories(res, layer: str, unit: int, iou_threshold: float | None = None) -> pd.DataFrame:
    """One row per category of the probe set: the unit's best concept within it, its IoU, and whether
    that IoU passes the rule's threshold (``detector``)."""
    iou = res.iou(layer)
    unit = check_int("unit", unit, 0, len(iou) - 1)
    t = res.options.iou_min if iou_threshold is None else float(iou_threshold)
    rows = []
    for cat, names in res.categories.items():
        idx = [res.labels.index(c) for c in names if c in res.labels]
        if not idx:
            continue
        j = idx[int(np.argmax(iou[unit, idx]))]
        rows.append({"category": cat, "concept": res.labels[j], "iou": float(iou[unit, j]),
                     "detector": bool(iou[unit, j] > t)})
    return pd.DataFrame(rows, columns=["category", "concept", "iou", "detector"])


def best_concepts(res, layer: str, unit: int, k: int = 6) -> pd.Series:
    """The unit's ``k`` concepts of highest IoU (concept -> IoU, largest first)."""
    iou = res.iou(layer)
    unit = check_int("unit", unit, 0, len(iou) - 1)
    s = pd.Series(iou[unit], index=res.labels).drop(res.labels[0])
    return s.sort_values(ascending=False, kind="stable").head(check_int("k", k, 1))


def _labels(res, layer, n_units):
    if res is None:
        return None
    u = res.units(layer)
    if len(u) != n_units:
        raise InputError(f"the dissection's {layer!r} has {len(u)} units, the importance {n_units}",
                         fix="give the dissection and the importance of the same classifier and layer")
    return u


def importance_table(imp, res=None, klass=0, k: int | None = None) -> pd.DataFrame:
    """Class ``klass``'s units (index or name) by importance (:meth:`UnitImportance.ranking`: the drop of
    its balanced accuracy when the unit is zeroed, ties by the margin drop), best first, ``k`` of them
    (default all): ``rank``, ``unit``, ``drop`` (balanced accuracy), ``margin_drop``, and with a
    dissection ``res`` of the same layer the unit's ``concept``, ``category``, ``iou`` and ``label``
    (the concept for a detector, else ``""``)."""
    order = imp.ranking(klass)                       # checks the class
    c = imp.classes.index(klass) if isinstance(klass, str) else int(klass)
    if k is not None:
        order = order[:check_int("k", k, 1)]
    out = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "unit": order, "drop": imp.drop[order, c],
                        "margin_drop": imp.margin_drop[order, c]})
    u = _labels(res, imp.layer, imp.drop.shape[0])
    if u is not None:
        for col in ("label", "concept", "category", "iou"):
            out[col] = u[col].to_numpy()[order]
    return out


def importance_vs_iou(imp, res) -> tuple[pd.DataFrame, dict]:
    """(table, stats): per unit its largest drop of balanced accuracy over the classes (``max_importance``)
    and of the margin (``max_margin_drop``), the class of it, its best concept, category, IoU and whether
    it is a detector; ``stats``: Spearman's rho of each importance with the IoU over the units (NaN
    when one side is constant, e.g. balanced accuracy saturated)."""
    t = imp.units()[["unit", "max_importance", "max_margin_drop", "class"]].copy()
    u = _labels(res, imp.layer, len(t))
    for col in ("concept", "category", "iou", "detector", "label"):
        t[col] = u[col].to_numpy()
    stats = {"accuracy": spearman(t.max_importance, t.iou), "margin": spearman(t.max_margin_drop, t.iou),
             "units": len(t), "detectors": int(t.detector.sum())}
    return t, stats


def _importance_kind(model) -> str | None:
    """``"scenes"`` for a single-label classifier of toyworld's scene types, ``"presence"`` for a multi-label
    one of toyworld's concepts (``toyworld.LABELS`` without ``"-"``), else None (toyworld cannot label it)."""
    classes = list(getattr(model, "classes", None) or [])
    multilabel = bool(getattr(model, "multilabel", False))
    if not multilabel and classes == list(toyworld.SCENES):
        return "scenes"
    if multilabel and classes == list(toyworld.LABELS[1:]):
        return "presence"
    return None


def importance_images(model, n: int, seed: int = 100):
    """(images, labels) for :func:`core.engine.importance.unit_importance` of ``model``: toyworld scenes
    labelled with their scene type (:func:`core.studies.importance.scene_images`) for a classifier of
    toyworld's scene types, or with the concepts present in their exact labels
    (:func:`core.studies.importance.presence_images`, [n, K] 0/1) for a multi-label classifier of toyworld's
    concepts (``toyworld-presence``); any other classifier is refused before rendering."""
    kind = _importance_kind(model)
    if kind is None:
        classes = list(getattr(model, "classes", None) or [])
        shown = (f"predicts {', '.join(map(str, classes[:5]))}" + (f" … ({len(classes)} classes)" if len(classes) > 5
                                                                       else "")
                 if classes else "names no classes (no `classes` attribute: e.g. ImageNet's 1,000)")
        raise InputError(f"model: unit importance is measured here on toyworld scenes labelled with their scene type "
                         f"({', '.join(toyworld.SCENES)}) or, for a multi-label classifier, with the "
                         f"{len(toyworld.LABELS) - 1} toyworld concepts present; this classifier {shown}",
                         fix="pick a classifier of toyworld's classes (toyworld-scenes, toyworld-presence), or call "
                             "core.engine.importance.unit_importance with images labelled in the classifier's own "
                             "classes")
    fn = presence_images if kind == "presence" else scene_images
    return fn(n, seed, model.input_size)


def importance_defaults(model) -> dict:
    """The Unit importance page's defaults for ``model`` (``n`` images, ``top_n``, ``draws``) and what its
    images are (``labels``, words) and take (``seconds``, words: measured on 2 CPU cores, layer d4, all the
    classes' curves). A multi-label classifier's curves are per class (27 concepts, not 3 scene types), so it
    opens with a shorter curve: the time grows with images x (units + classes x top N x (draws + 1))."""
    if _importance_kind(model) == "presence":
        return {"n": 90, "top_n": 3, "draws": 2, "multilabel": True,
                "labels": f"toyworld scenes (town, room, lake in turn), each labelled with the "
                          f"{len(toyworld.LABELS) - 1} concepts present or not in its exact label map",
                "seconds": "toyworld-presence's d4 (160 units, 27 concepts) with 90 images, top 3 and 2 draws, "
                           "takes about 10 s on 2 CPU cores (top 10 and 3 draws: about 40 s)"}
    return {"n": 90, "top_n": 10, "draws": 3, "multilabel": bool(getattr(model, "multilabel", False)),
            "labels": "labelled toyworld scenes (town, room, lake in turn)",
            "seconds": "toyworld-scenes' d4 (160 units) with 90 images, top 10 and 3 draws, takes about 5 s on 2 "
                       "CPU cores"}


def importance_classes(imp) -> pd.DataFrame:
    """One row per class of ``imp`` (:class:`core.engine.importance.UnitImportance`), in its order: ``class``,
    ``base`` (unedited balanced accuracy, one class vs the rest), ``margin_base``, ``images`` (images of the
    class; for a multi-label result, images where it is present), ``largest_drop`` (the largest drop of its
    balanced accuracy by one zeroed unit; NaN for a class without a score), ``moved`` (that drop > 0: not
    saturated, some single unit moves it) and ``measured`` (a finite score: images with and without it)."""
    counts = imp.meta.get("class_counts") or [np.nan] * len(imp.classes)
    drop = imp.drop
    largest = np.where(np.isnan(drop).all(0), np.nan,
                       np.nanmax(np.where(np.isnan(drop), -np.inf, drop), 0)) if drop.size else \
        np.full(len(imp.classes), np.nan)
    base = np.asarray(imp.base, dtype=np.float64)
    return pd.DataFrame({"class": list(imp.classes), "base": base,
                         "margin_base": np.asarray(imp.margin_base, dtype=np.float64),
                         "images": np.asarray(counts, dtype=np.float64), "largest_drop": largest,
                         "moved": np.nan_to_num(largest, nan=0.0) > 0, "measured": np.isfinite(base)})


def default_class(imp) -> str:
    """The class a page opens on: among the classes that one zeroed unit moves (:func:`importance_classes`'
    ``moved``), the one of lowest unedited balanced accuracy (the least saturated: a concept the classifier
    never predicts stays at 0.5 and is left out, as nothing moves it); without one, the lowest finite
    balanced accuracy; else the first class."""
    t = importance_classes(imp)
    for pick in (t[t.moved & t.measured], t[t.measured]):
        if len(pick):
            return str(pick.sort_values(["base", "class"], kind="stable")["class"].iloc[0])
    return str(imp.classes[0])

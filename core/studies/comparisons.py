"""Comparisons built on dissection: layers, models (variants), scene types, training checkpoints."""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from core.base.errors import ArgumentTypeError, InputError
from core.base.validate import check_bool, check_callable, check_float, check_int, check_samples
from core.engine.dissection import dissect
from core.models.zoo import checkpoint_series, images_seen, list_models, load_generator
from core.studies.omissions import toyworld_omissions

__all__ = ["compare_models", "training_evolution", "zoo_groups", "variant_lineup", "dissect_models",
           "concept_map", "concept_map_summary", "object_concepts", "basis_comparison", "omissions_over_training",
           "concept_arrival", "change_matrix"]


def compare_models(names: Sequence[str], segmenter, layers: Sequence[str], n_samples: int = 1000,
                   seed: int = 0, progress: Callable | None = None, cached_only: bool = False,
                   **options) -> pd.DataFrame | None:
    """Dissect the same layers of several models: one row per (model, layer) with interpretable
    units, distinct concepts and mean IoU (the paper's Fig. 7 comparison and scene-type maps).
    ``cached_only=True``: the table from stored results only, None when any is not stored."""
    names = _check_names(names)
    check_samples("n_samples", n_samples, 2, images_per_sample=len(names))
    check_int("seed", seed)
    check_callable("progress", progress)
    check_bool("cached_only", cached_only)
    rows = []
    for i, name in enumerate(names):
        G = load_generator(name)
        res = dissect(G, segmenter, list(layers), n_samples, seed=seed, cached_only=cached_only, **options)
        if res is None:
            return None
        for row in res.summary().to_dict(orient="records"):
            rows.append({"model": name, **row})
        if progress:
            progress(i + 1, len(names))
    return pd.DataFrame(rows)


def training_evolution(name: str, segmenter, layers: Sequence[str], n_samples: int = 1000, seed: int = 0,
                       progress: Callable | None = None, cached_only: bool = False,
                       **options) -> pd.DataFrame | None:
    """Interpretable units, distinct concepts and mean IoU per training checkpoint (S-6.6), with
    each checkpoint's sample quality where its model card has it (``fid``, ``ms_swd``: the same
    sample count for every checkpoint, from ``scripts/report_gans.py``; NaN where not evaluated)
    and the real images it had seen (``kimg``, thousands: its card's ``images``, else steps x
    batch; NaN where the card says neither). ``cached_only=True``: from stored results only, None
    when a checkpoint's is not stored."""
    series = checkpoint_series(name)
    df = compare_models([m for _, m in series], segmenter, layers, n_samples, seed, progress,
                        cached_only=cached_only, **options)
    if df is None:
        return None
    steps = {m: s for s, m in series}
    df.insert(1, "step", df.model.map(steps))
    cards = list_models()

    def kimg(m):   # real images seen, in thousands: the common clock when the batch changed mid-run
        n = images_seen(cards.get(m))
        return None if n is None else n / 1000
    df.insert(2, "kimg", df.model.map(kimg).astype(float))
    for col, key in (("fid", "series_fid"), ("ms_swd", "series_ms_swd")):
        df[col] = df.model.map(lambda m: (cards.get(m) or {}).get(key)).astype(float)
    return df


def omissions_over_training(name: str, segmenter, n_samples: int = 1000, scene: str | None = None,
                            progress: Callable | None = None, cached_only: bool = False) -> pd.DataFrame | None:
    """What each training checkpoint of ``name`` leaves out (#34): per checkpoint and class, the
    segmentation statistics of :func:`~core.studies.omissions.toyworld_omissions` (``n_samples`` a
    side, the same real scenes for every checkpoint): one row per (step, class) with the real and
    generated mean area, the relative change and the checkpoint's FSD and floor. ``cached_only=True``:
    from stored results only, None when a checkpoint's is not stored."""
    check_callable("progress", progress)
    check_bool("cached_only", cached_only)
    series = checkpoint_series(name)
    check_samples("n_samples", n_samples, 2, images_per_sample=3 * len(series))
    frames = []
    for i, (step, model) in enumerate(series):
        res = toyworld_omissions(load_generator(model), segmenter, scene, n_samples, cached_only=cached_only)
        if res is None:
            return None
        fsd, floor = res.fsd()["fsd"], res.floor_fsd()["fsd"]
        t = res.table()[["label", "real_area", "generated_area", "relative_change", "judged"]]
        frames.append(t.assign(model=model, step=step, fsd=fsd, floor=floor))
        if progress:
            progress(i + 1, len(series))
    return pd.concat(frames, ignore_index=True)[["model", "step", "label", "real_area", "generated_area",
                                                 "relative_change", "judged", "fsd", "floor"]]


def concept_arrival(table: pd.DataFrame, within: float = 0.5) -> pd.DataFrame:
    """When each class arrives during training: from :func:`omissions_over_training`'s table, per
    class judged at the final checkpoint, the first step from which its generated mean area stays
    within ``within`` (relative) of the real one at every later checkpoint (NaN: never), with its
    change at the first and the final checkpoints; the earliest arrivals first."""
    check_float("within", within, 0, lo_open=True)
    if not isinstance(table, pd.DataFrame) or not {"step", "label", "relative_change", "judged"} <= set(table):
        raise ArgumentTypeError("table must be omissions_over_training's DataFrame",
                                fix="give table=omissions_over_training(name, segmenter)")
    steps = sorted(table.step.unique())
    final = table[table.step == steps[-1]]
    rows = []
    for label in final[final.judged].label:
        change = table[table.label == label].set_index("step").relative_change.reindex(steps)
        ok = (change.abs() <= within).to_numpy()
        # the first step after which every checkpoint is within: the suffix of True values
        arrived = None
        for k in range(len(steps) - 1, -1, -1):
            if not ok[k]:
                break
            arrived = steps[k]
        rows.append({"label": label, "arrival_step": arrived, "first_change": float(change.iloc[0]),
                     "final_change": float(change.iloc[-1])})
    return pd.DataFrame(rows).sort_values(["arrival_step", "label"], na_position="last",
                                          kind="stable").reset_index(drop=True)


def change_matrix(table: pd.DataFrame, arrival: pd.DataFrame) -> pd.DataFrame:
    """The relative change per class (rows, in ``arrival``'s order) and training step (columns) of
    :func:`omissions_over_training`'s table: what the Omissions page draws as a heatmap."""
    m = table.pivot_table(index="label", columns="step", values="relative_change", aggfunc="first")
    return m.reindex(list(arrival.label))


def _check_names(names) -> list:
    """A non-empty list of model names (checked before the first model is loaded)."""
    if isinstance(names, str):
        raise ArgumentTypeError(f"names must be a list of model names, got the string {names!r}",
                                fix=f"wrap it in a list: names=[{names!r}]")
    try:
        names = list(names)
    except TypeError:
        raise ArgumentTypeError(f"names must be a list of model names, got {type(names).__name__}",
                                fix="e.g. names=['toyworld/town', 'toyworld/town-nopn']") from None
    if not names:
        raise InputError("names is empty: there is no model to dissect", fix="give names at least one model name")
    return names


# ----------------------------------------------------------------------------- concept maps

def zoo_groups(models: dict) -> dict[str, dict]:
    """Group a model listing (``core.list_models()``: name -> card) by scene type:
    ``{scene: {"base": name or None, "variants": [names]}}``. Training snapshots (``@step-N``)
    are left out; a model whose card names no scene forms its own group."""
    groups: dict[str, dict] = {}
    for name, card in models.items():
        if "@" in name:
            continue
        card = card or {}
        scene = str(card.get("scene") or name)
        g = groups.setdefault(scene, {"base": None, "variants": []})
        if card.get("variant", "base") == "base" and g["base"] is None:
            g["base"] = name
        else:
            g["variants"].append(name)
    for g in groups.values():
        if g["base"] is None and g["variants"]:
            g["base"] = g["variants"].pop(0)
    return groups


def variant_lineup(models: dict, group: dict) -> dict:
    """The models of a variant comparison (Fig. 7), trained for the same number of steps where
    the zoo allows it: when every variant of ``group`` (from :func:`zoo_groups`) was trained for
    S steps and the base model for another number, the base's training snapshot at S
    (``<base>@step-S``) stands in for it. Returns ``{"models": [base, *variants], "steps":
    {name: steps or None}, "matched": bool, "note": str}``; ``matched`` is False when the
    models' step counts differ (or are unknown) and no snapshot evens them out."""
    cards = {m: models.get(m) or {} for m in [group["base"], *group["variants"]]}
    steps = {m: c.get("steps") for m, c in cards.items()}
    base, variants = group["base"], list(group["variants"])
    vsteps = {steps[v] for v in variants}
    if len(vsteps) == 1 and None not in vsteps and steps[base] != (s := vsteps.pop()):
        snap = f"{base}@step-{s}"
        if snap in models:
            return {"models": [snap, *variants], "steps": {snap: s, **{v: s for v in variants}}, "matched": True,
                    "note": f"all at {s:,} training steps: the base model's snapshot {snap} stands in for "
                            f"{base} ({steps[base]:,} steps)" if steps[base] else f"all at {s:,} training steps"}
    names = [base, *variants]
    known = [steps[m] for m in names]
    if None not in known and len(set(known)) == 1:
        return {"models": names, "steps": steps, "matched": True, "note": f"all at {known[0]:,} training steps"}
    told = ", ".join(f"{m.split('/')[-1]} {'?' if steps[m] is None else f'{steps[m]:,}'}" for m in names)
    return {"models": names, "steps": steps, "matched": False,
            "note": f"trained for different numbers of steps ({told}), and no snapshot of the base matches: "
                    "differences mix the architecture with training time"}


def dissect_models(names: Sequence[str], segmenter, layers: Sequence[str], n_samples: int = 500,
                   seed: int = 0, progress: Callable | None = None, loader: Callable = load_generator,
                   **options) -> dict:
    """``{name: Dissection}`` of the same layers of several generators (one pass per generator;
    layers already on disk are not recomputed). ``progress(done, total, name)`` counts images
    over all generators."""
    names = _check_names(names)
    check_samples("n_samples", n_samples, 2, images_per_sample=len(names))
    check_int("seed", seed)
    check_callable("progress", progress)
    check_callable("loader", loader, allow_none=False)
    out = {}
    total = n_samples * len(names)
    for i, name in enumerate(names):
        G = loader(name)
        cb = (lambda d, t, i=i, name=name: progress(i * n_samples + d, total, name)) if progress else None
        out[name] = dissect(G, segmenter, list(layers), n_samples, seed=seed, progress=cb, **options)
    return out


def object_concepts(labels: Sequence[str], stuff: Sequence[str]) -> list[str]:
    """The labels that are not stuff (amorphous regions such as sky, road, wall): a part label
    ``c-t`` counts as its concept ``c``."""
    stuff = set(stuff)
    return [c for c in labels[1:] if c not in stuff and c.rsplit("-", 1)[0] not in stuff]


def concept_map(results: dict, layers: Sequence[str] | None = None, iou_threshold: float | None = None,
                **unit_options) -> pd.DataFrame:
    """How many units of each layer match each concept (the paper's Fig. 5, 6, 19 and 7).

    ``results``: ``{row name (scene type or model): Dissection}``. One row per (row, layer,
    concept) with ``units`` (number of interpretable units whose label it is), ``mean_iou``/
    ``max_iou`` over them and ``unit_list``; sorted by row, layer and decreasing count (then
    concept name). ``unit_options`` go to :meth:`~core.engine.dissection.Dissection.units`
    (``labeling="reference"`` by default, ``"max-iou"``; ``pixel_accuracy``; ``concepts``, e.g.
    :func:`object_concepts`). ``iou_threshold`` overrides each dissection's own."""
    if not isinstance(results, dict):
        raise ArgumentTypeError(f"results must be a dict {{row name: Dissection}}, got {type(results).__name__}",
                                fix="e.g. results={'town': core.dissect(...)}")
    if iou_threshold is not None:
        check_float("iou_threshold", iou_threshold, None, 1)
    rows = []
    for row, res in results.items():
        for layer in (layers or res.layers):
            u = res.units(layer, **unit_options)
            ok = ((u.iou > iou_threshold) & (u.iqr > res.options.iqr_threshold) if iou_threshold is not None
                  else u.interpretable)
            good = u[ok]
            for concept, g in good.groupby("concept"):
                rows.append({"row": row, "layer": layer, "concept": concept, "units": len(g),
                             "mean_iou": float(g.iou.mean()), "max_iou": float(g.iou.max()),
                             "unit_list": g.sort_values("iou", ascending=False).unit.tolist(),
                             "layer_units": len(u)})
    cols = ["row", "layer", "concept", "units", "mean_iou", "max_iou", "unit_list", "layer_units"]
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        order = {r: i for i, r in enumerate(results)}
        df = df.assign(_r=df.row.map(order)).sort_values(["_r", "layer", "units", "concept"],
                                                         ascending=[True, True, False, True])
        df = df.drop(columns="_r").reset_index(drop=True)
    return df


def basis_comparison(results: dict, layer: str, **unit_options) -> pd.DataFrame:
    """Which concepts gain detectors in another basis (units vs features, issue #19).

    ``results``: ``{basis name: Dissection}`` of the same samples, ``"units"`` among them. One row
    per concept interpretable in any basis: per basis ``{name}_n`` (interpretable rows labelled
    with it) and ``{name}_best`` (their best IoU, 0 when none); ``gain_{name}``: the best IoU in
    that basis minus the units' best. Sorted by the largest gain."""
    if not isinstance(results, dict) or "units" not in results:
        raise ArgumentTypeError("results must be a dict {basis name: Dissection} holding 'units'",
                                fix="e.g. {'units': core.dissect(G, S, [layer], n), 'sae': core.dissect(..., "
                                    "basis=sae)}")
    per = {}
    for name, res in results.items():
        u = res.units(layer, **unit_options)
        per[name] = u[u.interpretable].groupby("label").iou.agg(["count", "max"])
    concepts = sorted(set().union(*(p.index for p in per.values())))
    rows = []
    for c in concepts:
        row = {"concept": c}
        for name, p in per.items():
            row[f"{name}_n"] = int(p["count"].get(c, 0))
            row[f"{name}_best"] = float(p["max"].get(c, 0.0))
        for name in per:
            if name != "units":
                row[f"gain_{name}"] = row[f"{name}_best"] - row["units_best"]
        rows.append(row)
    df = pd.DataFrame(rows)
    gains = [c for c in df.columns if c.startswith("gain_")]
    if len(df) and gains:
        df = df.sort_values(gains[0], ascending=False, kind="stable").reset_index(drop=True)
    return df


def concept_map_summary(cm: pd.DataFrame) -> pd.DataFrame:
    """Per (row, layer) of a :func:`concept_map`: interpretable units, distinct concepts, mean IoU."""
    if not len(cm):
        return pd.DataFrame(columns=["row", "layer", "interpretable", "concepts", "mean_iou"])
    g = cm.assign(iou_sum=cm.mean_iou * cm.units).groupby(["row", "layer"], sort=False)
    out = g.agg(interpretable=("units", "sum"), concepts=("concept", "nunique"), iou_sum=("iou_sum", "sum"))
    out["mean_iou"] = out.iou_sum / out.interpretable
    return out.drop(columns="iou_sum").reset_index()

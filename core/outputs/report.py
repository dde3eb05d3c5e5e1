"""Self-contained outputs of a dissection: JSON, CSV and one HTML report with image strips."""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from core.base.cache import atomic_write_text
from core.base.errors import ArgumentTypeError, InputError, UnknownNameError
from core.base.validate import check_int
from core.engine.dissection import Dissection
from core.outputs.visualize import data_uri, unit_strips

__all__ = ["write_outputs", "units_table"]


def units_table(res: Dissection, **unit_options) -> pd.DataFrame:
    """Every dissected unit of every layer, one row each (``unit_options``: see ``Dissection.units``)."""
    return pd.concat([res.units(layer, **unit_options).assign(layer=layer) for layer in res.layers],
                     ignore_index=True)


def _summary_json(res: Dissection, unit_options: dict) -> dict:
    return {
        "model": res.model, "segmenter": res.segmenter, "n_samples": res.n_samples, "seed": res.seed,
        "options": res.options.key(), "labels": res.labels, "meta": res.meta,
        "labeling": {"labeling": "reference", **{k: v for k, v in unit_options.items() if k != "exclude"},
                     "excluded_units": {k: list(map(int, v)) for k, v in (unit_options.get("exclude") or {}).items()}},
        "summary": pd.concat([res.subset([ly]).summary(**_opts(unit_options, ly)) for ly in res.layers])
        .to_dict(orient="records"),
        "layers": {layer: res.units(layer, **_opts(unit_options, layer)).to_dict(orient="records")
                   for layer in res.layers},
    }


def _opts(unit_options: dict, layer: str) -> dict:
    """The options of ``Dissection.units`` for one layer (``exclude`` is per layer)."""
    out = {k: v for k, v in unit_options.items() if k != "exclude"}
    if unit_options.get("exclude") and layer in unit_options["exclude"]:
        out["exclude"] = unit_options["exclude"][layer]
    return out


UNIT_OPTIONS = {"labeling", "pixel_accuracy", "concepts", "exclude"}

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 24px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle}th{background:#f4f4f4}.bar{display:inline-block;height:10px;
background:#4c78a8;margin-right:6px}.dim{color:#999}img{image-rendering:pixelated}"""


def write_outputs(res: Dissection, out_dir, generator=None, strip_units: int = 40, strip_len: int = 6,
                  scale: int = 2, categories: dict | None = None, bases: dict | None = None,
                  **unit_options) -> dict[str, Path]:
    """Write ``dissection.json``, ``units.csv`` and ``report.html`` under ``out_dir``.
    With ``generator``, the report shows image strips for the ``strip_units`` best units of
    each layer (regenerated from the seed and the top-k sample indices). ``unit_options``:
    how units are labelled (``labeling``, ``pixel_accuracy``, ``concepts``; ``exclude``:
    ``{layer: units}``), see ``Dissection.units``. ``categories`` (``{category: [labels]}``, e.g.
    :func:`core.engine.dissection.label_categories`): ``units.csv`` also gets each unit's label per
    category (``object_label``, ``object_iou``, ...) and the report counts them per category.
    ``bases`` (``{layer: Basis}``, as dissected): the strips show those layers' features."""
    if not isinstance(res, Dissection):
        raise ArgumentTypeError(f"res must be a Dissection, got {type(res).__name__}", fix="pass core.dissect(...)")
    strip_units = check_int("strip_units", strip_units, 0)
    strip_len = check_int("strip_len", strip_len, 1)
    scale = check_int("scale", scale, 1, 16)
    unknown = sorted(set(unit_options) - UNIT_OPTIONS)
    if unknown:
        raise UnknownNameError(f"unknown labelling option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                               fix=f"options are: {', '.join(sorted(UNIT_OPTIONS))}")
    exclude = unit_options.get("exclude")
    if exclude is not None and not isinstance(exclude, dict):
        raise ArgumentTypeError(f"exclude must be a dict {{layer: units}}, got {type(exclude).__name__}",
                                fix="e.g. exclude={'layer4': [3, 17]}")
    if not isinstance(out_dir, (str, Path)) or str(out_dir) == "":
        raise ArgumentTypeError(f"out_dir must be a directory path, got {out_dir!r:.60}", fix="e.g. out_dir='out'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir {str(out)!r} is a file, not a directory",
                         fix="give out_dir a new or existing directory")
    if categories is not None and (not isinstance(categories, dict) or not categories):
        raise ArgumentTypeError(f"categories must be a non-empty dict {{category: [labels]}} or None, got "
                                f"{type(categories).__name__}",
                                fix="e.g. categories=core.label_categories(res.labels, segmenter)")
    rule_opts = {k: v for k, v in unit_options.items() if k != "concepts"}
    for layer in res.layers:                # every labelling option, checked before anything is written
        res.units(layer, **_opts(unit_options, layer))
        if categories:
            res.units_by_category(layer, categories, **_opts(rule_opts, layer))
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "dissection.json", "csv": out / "units.csv", "html": out / "report.html"}
    by_cat = {ly: res.units_by_category(ly, categories, **_opts(rule_opts, ly)) for ly in res.layers} \
        if categories else {}
    summary = _summary_json(res, unit_options)
    if categories:
        summary["categories"] = {k: list(v) for k, v in categories.items()}
        summary["by_category"] = {ly: t.to_dict(orient="records") for ly, t in by_cat.items()}
    atomic_write_text(paths["json"], json.dumps(summary, indent=1, default=float))      # whole, or not at all
    tables = []
    names = res.meta.get("bases", {})
    for ly in res.layers:
        t = res.units(ly, **_opts(unit_options, ly)).assign(layer=ly, basis=names.get(ly, "units"))
        if categories:
            t = t.merge(by_cat[ly], on="unit")
        tables.append(t)
    atomic_write_text(paths["csv"], pd.concat(tables, ignore_index=True).to_csv(index=False))
    rule = unit_options.get("labeling", "reference")

    parts = [f"<!doctype html><meta charset='utf-8'><title>Dissection of {html.escape(res.model)}</title>",
             f"<style>{_CSS}</style><h1>Dissection of {html.escape(res.model)}</h1>",
             f"<p>{res.n_samples} samples (seed {res.seed}), segmenter {html.escape(res.segmenter)}, "
             f"resolution {res.meta.get('resolution')}, IoU threshold {res.options.iou_threshold}, "
             f"labelling: {html.escape(rule)}. Thresholds are chosen on the even samples; IoU is measured on "
             "the odd samples.</p>", "<h2>Summary</h2>",
             pd.concat([res.subset([ly]).summary(**_opts(unit_options, ly)) for ly in res.layers])
             .to_html(index=False, float_format=lambda v: f"{v:.3f}")]
    for layer in res.layers:
        u = res.units(layer, **_opts(unit_options, layer)).sort_values("iou", ascending=False)
        strips = {}
        if generator is not None and strip_units > 0:
            best = u.head(strip_units)
            _, top_i = res.topk(layer)
            strips = unit_strips(generator, layer, best.unit.tolist(), best.threshold.tolist(),
                                 top_i[best.unit.to_numpy(), :strip_len], res.seed,
                                 basis=(bases or {}).get(layer), geometry=res.options.geometry)
        counts = res.concept_counts(layer, **_opts(unit_options, layer))
        parts.append(f"<h2>{html.escape(layer)}</h2><p>{int(u.interpretable.sum())} of {len(u)} units "
                     f"interpretable; concepts: " + ", ".join(f"{html.escape(str(k))} ({v})"
                                                             for k, v in counts.items()) + "</p>")
        if categories:
            t = by_cat[layer]
            parts.append("<p>Per category (each unit's best label within it): " + "; ".join(
                f"{html.escape(name)}: {int(t[f'{name}_interpretable'].sum())} units ("
                + ", ".join(f"{html.escape(str(k))} {v}" for k, v in
                            t.loc[t[f"{name}_interpretable"], f"{name}_label"].value_counts().head(6).items())
                + ")" for name in categories) + "</p>")
        parts.append("<table><tr><th>unit</th><th>label</th><th>IoU</th><th>threshold</th>"
                     "<th>top samples (darkened outside the unit's mask)</th></tr>")
        for row in u.itertuples():
            label = html.escape(row.label) if row.label else f"<span class=dim>({html.escape(row.concept)})</span>"
            bar = f"<span class=bar style='width:{int(400 * min(row.iou, 0.5) / 0.5) // 4}px'></span>"
            img = (f"<img src='{data_uri(strips[row.unit])}' alt='unit {row.unit}' "
                   f"width={strips[row.unit].shape[1] * scale}>"
                   if row.unit in strips else "")
            parts.append(f"<tr><td>{row.unit}</td><td>{label}</td><td>{bar}{row.iou:.3f}</td>"
                         f"<td>{row.threshold:.3g}</td><td>{img}</td></tr>")
        parts.append("</table>")
    atomic_write_text(paths["html"], "\n".join(parts))
    return paths




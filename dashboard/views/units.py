"""Unit browser: every unit of a layer, its best concepts, top-activating images with the
thresholded mask outlined, and its activation histogram (paper §3.1)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.engine.dissection import label_categories
from core.outputs.visualize import activation_histograms, unit_strips
from dashboard.common import (
    ERRORS,
    concept_color,
    dissection,
    fail,
    fix_for,
    page_basis,
    pick_kind,
    pick_layer,
    pick_model,
    pick_samples,
    segmenter,
    unit_table,
)

st.title("Unit browser")
if pick_kind() == "classifier":
    from dashboard import classifier_pages
    st.caption("Every unit of a classifier's layer with its label by Network Dissection: the concept of highest IoU "
               "between the unit's thresholded, upsampled activation and the exact labels of toyworld probe images, a "
               "detector above 0.04. Pick a unit for its top-activating probe images (its mask outlined, and the "
               "concept's exact label), its best concepts and its best concept in each category.")
    classifier_pages.unit_browser()
    st.stop()
st.caption("Every unit of a layer with its label (paper §3.1), by the rule of the paper's 2018 code: the "
           "concept whose mask agreement with the unit's thresholded, upsampled activation has the highest "
           "information quality (I/H); the IoU and I/H that make it interpretable are measured on held-out "
           "samples at that threshold. Pick a unit for its "
           "top-activating images (mask outlined), its label in each category, its IoU with each concept and "
           "its activation histogram.")
name, G = pick_model()
layer = pick_layer(G)
n = pick_samples()
kind = st.session_state.get("units_basis", "units")
if st.session_state.get("units_basis_shown", kind) != kind:      # another basis: its rows are other things
    for k in ("unit_pick", "units_concept_pick"):
        st.session_state.pop(k, None)
st.session_state["units_basis_shown"] = kind
kind, basis = page_basis(name, G, layer, "units_basis")
what = "feature" if basis is not None else "unit"

res = dissection(name, G, [layer], n, compute=False, basis=basis)
if res is None:
    st.info(f"{layer} of {name} is not dissected yet over {n} samples"
            f"{f' in the {basis.name} basis' if basis is not None else ''} (about 20 s for 500 samples on "
            "2 CPU cores; the result is saved to `cache/`, so every later visit is instant).")
    if not st.button("Dissect", type="primary"):
        st.stop()
    res = dissection(name, G, [layer], n, compute=True, basis=basis)

units = res.units(layer)
good = units[units.interpretable]
m1, m2, m3 = st.columns(3)
m1.metric(f"Interpretable {what}s", f"{len(good)} / {len(units)}")
m2.metric("Distinct concepts", good.label.nunique())
m3.metric("Mean IoU (interpretable)", f"{good.iou.mean():.3f}" if len(good) else "—")

concepts = ["all units", "interpretable"] + sorted(good.label.unique())
wanted = st.session_state.pop("units_concept", None)
if wanted in concepts:
    st.session_state["units_concept_pick"] = wanted
if st.session_state.get("units_concept_pick") not in concepts:
    st.session_state["units_concept_pick"] = "all units"
show = st.segmented_control("Show", concepts, key="units_concept_pick") or "all units"
table = units[["unit", "label", "concept", "iou", "threshold", "accuracy", "top_value"]]
if show == "interpretable":
    table = table[units.interpretable]
elif show != "all units":
    table = table[units.label == show]
table = table.sort_values("iou", ascending=False).reset_index(drop=True)


unit_table(table, "unit_table", "unit_pick", "best concept when interpretable",
           {"accuracy": st.column_config.NumberColumn(
               "pixel accuracy", format="%.3f",
               help="share of all pixels where the unit's mask (at its threshold) and its concept agree, inside "
                    "both or outside both (the paper's Fig. 5 asks > 0.75)")})
options = table.unit.tolist()
if st.session_state.get("unit_pick") not in options:
    st.session_state["unit_pick"] = options[0]
unit = st.selectbox("Unit", options, key="unit_pick",
                    format_func=lambda u: f"{what} {u} · {units.concept[u]} (IoU {units.iou[u]:.3f})",
                    help="Or click a row of the table (sort by any column header).")

categories = label_categories(res.labels, segmenter())
if len(categories) > 1:
    per_cat = res.units_by_category(layer, categories).iloc[unit]
    st.markdown("**Per category** (the unit's best label within each, as the 2018 code reports it): " + " · ".join(
        f"{name}: **{per_cat[f'{name}_label']}** (IoU {per_cat[f'{name}_iou']:.3f})" if per_cat[f"{name}_label"]
        else f"{name}: none (best {per_cat[f'{name}_concept']}, IoU {per_cat[f'{name}_iou']:.3f})"
        for name in categories))


@st.cache_data(show_spinner=False, max_entries=64)
def strip(model, layer, unit, n, threshold, basis_key, geometry, _G, _res, _basis):
    _, top_i = _res.topk(layer)
    return unit_strips(_G, layer, [unit], [threshold], top_i[[unit], :8], _res.seed, basis=_basis,
                       geometry=geometry)[unit]


@st.cache_data(show_spinner="Activation histograms…", max_entries=16)
def histograms(model, layer, basis_key, _G, _basis):
    return activation_histograms(_G, layer, n_samples=16, bins=40, basis=_basis)


key = basis.cache_key if basis is not None else "units"
try:
    st.image(strip(name, layer, unit, n, float(units.threshold[unit]), key, res.options.geometry, G, res, basis),
             width="stretch",
             caption=f"{what.capitalize()} {unit}: its top-activating samples, darkened outside the thresholded "
                     f"mask (outlined at activation > {units.threshold[unit]:.3f})")
    counts, edges = histograms(name, layer, key, G, basis)
except ERRORS as e:
    fail("Could not render this unit", e, fix_for(e))

c1, c2 = st.columns(2)
best = pd.Series(res.iou(layer)[unit], index=res.labels).drop(res.labels[0]).sort_values(ascending=False).head(6)
fig = go.Figure(go.Bar(x=best.index, y=best.values, marker_color=[concept_color(c) for c in best.index],
                       marker_line=dict(color="rgba(40,40,40,0.6)", width=1),
                       hovertemplate="%{x}: IoU %{y:.3f}<extra></extra>"))
fig.add_hline(y=res.options.iou_threshold, line_dash="dot", annotation_text="interpretable",
              annotation_position="top right")
fig.update_layout(title=f"{what.capitalize()} {unit}: IoU with its best concepts", height=300, margin=dict(t=40, b=10),
                  yaxis_title="IoU")
c1.plotly_chart(fig, width="stretch", key="unit_iou")
centers = (edges[unit, :-1] + edges[unit, 1:]) / 2
hist = go.Figure(go.Bar(x=centers, y=counts[unit], width=np.diff(edges[unit]), marker_color="#5b7fbf",
                        hovertemplate="%{x:.3f}: %{y} locations<extra></extra>"))
hist.add_vline(x=float(units.threshold[unit]), line_dash="dash", line_color="#d62728",
               annotation_text="mask threshold", annotation_position="top left")
hist.update_layout(title=f"{what.capitalize()} {unit}: activations over 16 samples × all locations", height=300,
                   margin=dict(t=40, b=10), yaxis=dict(type="log", dtick=1, title="locations (log scale)"),
                   xaxis_title="activation")
c2.plotly_chart(hist, width="stretch", key="unit_hist")

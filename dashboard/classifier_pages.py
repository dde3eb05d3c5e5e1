"""The Concept maps and Unit browser pages for a classifier (Network Dissection, issue #36): the
classifier's layers dissected on toyworld probe images (core.engine.classifier_dissection), shown
per layer and per category; no math here (core.studies.classifier_views)."""
from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.outputs.visualize import classifier_unit_strips
from core.studies import classifier_views as cv
from dashboard.common import (
    ERRORS,
    RULES_SHOWN,
    classifier_dissection,
    concept_color,
    fail,
    fix_for,
    pick_classifier,
    pick_classifier_layer,
    pick_probes,
    pick_rule,
    probes,
    unit_table,
)

CATEGORY_COLOURS = {"object": "#4c78a8", "stuff": "#9d755d", "part": "#72b7b2", "colour": "#e45756",
                    "scene": "#b279a2", "concept": "#7f7f7f"}


def _estimate(C, n, layers) -> str:
    per_image = 0.012 if C.input_size <= 128 else 0.12          # seconds per probe image, both passes, 2 CPU cores
    return f"about {max(1, round(n * per_image * (1 + 0.1 * len(layers))))} s on 2 CPU cores"


def _dissect_or_button(name, C, layers, n, seed, rule, key):
    res = classifier_dissection(name, C, layers, n, seed, rule, compute=False)
    if res is None:
        st.info(f"{', '.join(layers)} of {name} not dissected yet on {n} probe images (seed {seed}, "
                f"{RULES_SHOWN[rule]}): {_estimate(C, n, layers)}; saved to `cache/`, so every later visit is instant.")
        if not st.button("Dissect", type="primary", key=key):
            st.stop()
        res = classifier_dissection(name, C, layers, n, seed, rule, compute=True)
        st.session_state["cls_dissected"] = ((name, tuple(layers), n, seed, rule), res.meta.get("seconds", 0.0))
        st.rerun()                                  # the result alone, read back from cache/
    return res


def _when(name, layers, n, seed, rule) -> str:
    last = st.session_state.get("cls_dissected")
    if last and last[0] == (name, tuple(layers), n, seed, rule):
        return f" (dissected just now in {last[1]:.1f} s, saved to `cache/`)"
    return " (from `cache/`)"


def open_units(layer, concept):
    st.session_state["shared_kind"] = "classifier"
    st.session_state["shared_classifier_layer"] = layer
    st.session_state["cunits_concept"] = concept
    for k in ("model_kind", "classifier_layer", "cunits_concept_pick", "cunit_pick"):
        st.session_state.pop(k, None)
    st.switch_page("views/units.py")


def concept_maps():
    """Concept maps of a classifier: detectors per layer and category, then per concept."""
    name, C = pick_classifier()
    n, seed = pick_probes()
    all_layers = list(C.layer_names)
    c1, c2 = st.columns([2, 1])
    if "ccm_layers" in st.session_state:
        st.session_state["ccm_layers"] = [ly for ly in st.session_state["ccm_layers"] if ly in all_layers]
        layers = c1.multiselect("Layers", all_layers, key="ccm_layers")
    else:
        layers = c1.multiselect("Layers", all_layers, default=cv.default_layers(all_layers), key="ccm_layers")
    with c2:
        rule = pick_rule(key="ccm_rule", where=c2)
    if not layers:
        st.info("Choose at least one layer.")
        st.stop()
    layers = [ly for ly in all_layers if ly in layers]            # in the network's order
    res = _dissect_or_button(name, C, layers, n, seed, rule, "ccm_dissect")
    try:
        by_cat = cv.detectors_by_category(res)
        cm = cv.classifier_concept_map(res, layers)
    except ERRORS as e:
        fail("Could not map this dissection", e, fix_for(e))
    total = int(by_cat.groupby("layer").detectors.sum().sum())
    st.markdown(f"**{name}** on {n} probe images (seed {seed}), {RULES_SHOWN[rule]}: **{total} detectors** over "
                f"{', '.join(layers)}{_when(name, layers, n, seed, rule)}.")
    count = st.segmented_control("Count", ["detectors", "unique"], default="detectors", key="ccm_count",
                                 format_func={"detectors": "detectors", "unique": "unique concepts"}.get,
                                 help="Detectors: units whose best IoU passes 0.04. Unique concepts: distinct labels "
                                      "among them (NetDissect's count).") or "detectors"
    fig = go.Figure()
    for cat in res.categories:
        d = by_cat[by_cat.category == cat].set_index("layer").reindex(layers)
        fig.add_trace(go.Bar(name=cat, x=layers, y=d[count].tolist(), marker_color=CATEGORY_COLOURS.get(cat),
                             customdata=d[["units"]].to_numpy(),
                             hovertemplate=f"<b>{cat}</b> · %{{x}}<br>%{{y}} {count} of %{{customdata[0]}} units"
                                           "<extra></extra>"))
    fig.update_layout(barmode="stack", height=300, margin=dict(t=40, b=10, l=10, r=10),
                      title=f"{'Detectors' if count == 'detectors' else 'Unique concepts'} per layer, by category",
                      yaxis_title=count, legend=dict(orientation="h", y=1.15, x=1, xanchor="right"))
    st.plotly_chart(fig, width="stretch", key="ccm_categories")

    cats = list(res.categories)
    shown = st.segmented_control("Categories", cats, default=cats, selection_mode="multi", key="ccm_cats",
                                 help="Which concepts to map per layer (the counts above are over all of them).")
    cell = cm[cm.category.isin(shown or cats)]
    cols = min(3, len(layers))
    rows = math.ceil(len(layers) / cols)
    sub = make_subplots(rows=rows, cols=cols, subplot_titles=layers, vertical_spacing=0.25 if rows > 1 else 0.1,
                        horizontal_spacing=0.05)
    for i, layer in enumerate(layers):
        c = cell[cell.layer == layer]
        r, k = i // cols + 1, i % cols + 1
        sub.add_trace(go.Bar(x=c.concept.tolist(), y=c.units.tolist(),
                             marker_color=[concept_color(x) for x in c.concept],
                             marker_line=dict(color="rgba(40,40,40,0.6)", width=1),
                             customdata=[[layer, x, m, cat] for x, m, cat in zip(c.concept, c.mean_iou, c.category)],
                             hovertemplate="<b>%{x}</b> (%{customdata[3]})<br>%{y} detectors<br>mean IoU "
                                           f"%{{customdata[2]:.3f}}<extra>{layer}</extra>", showlegend=False),
                      row=r, col=k)
        if c.empty:
            sub.add_annotation(text="no detectors", showarrow=False, row=r, col=k, x=0.5, y=0.5,
                               xref="x domain", yref="y domain")
    sub.update_layout(height=300 * rows, margin=dict(t=40, b=10, l=10, r=10), bargap=0.15, clickmode="event+select")
    sub.update_xaxes(tickangle=-45)
    sub.update_yaxes(title_text="detectors", col=1)
    event = st.plotly_chart(sub, width="stretch", on_select="rerun", selection_mode="points", key="ccm_concepts")
    try:
        points = list(event.selection.points)
    except (AttributeError, KeyError, TypeError):
        points = []
    if points and points[0].get("customdata"):
        open_units(*points[0]["customdata"][:2])
    st.dataframe(res.summary(), hide_index=True, width="stretch")
    options = [(r.layer, r.concept) for r in cm.itertuples()]
    if options:
        o1, o2 = st.columns([3, 1])
        pick = o1.selectbox("Browse the units of", options, key="ccm_open",
                            format_func=lambda o: f"{o[0]} · {o[1]}")
        o2.write("")
        if o2.button("Open unit browser", key="ccm_open_btn"):
            open_units(*pick)


@st.cache_data(show_spinner=False, max_entries=64)
def _strip(name, layer, unit, n, seed, threshold, concept, top, geometry, _C):
    return classifier_unit_strips(_C, probes(_C, n, seed), layer, [unit], [threshold], [list(top)],
                                  geometry=geometry, concepts=[concept])[unit]


def unit_browser():
    """Every unit of a classifier's layer: its label, per category, its top probe images with its mask."""
    name, C = pick_classifier()
    layer = pick_classifier_layer(C)
    n, seed = pick_probes()
    rule = pick_rule()
    all_layers = list(C.layer_names)
    wider = st.session_state.get("ccm_layers") or cv.default_layers(all_layers)
    res = None
    for layers in ([ly for ly in all_layers if ly in wider], [layer]):     # the concept maps' dissection, if stored
        if layer in layers:
            res = classifier_dissection(name, C, layers, n, seed, rule, compute=False)
            if res is not None:
                break
    if res is None:
        res = _dissect_or_button(name, C, [layer], n, seed, rule, "cunits_dissect")
    units = res.units(layer)
    good = units[units.detector]
    m1, m2, m3 = st.columns(3)
    m1.metric("Detectors", f"{len(good)} / {len(units)}")
    m2.metric("Distinct concepts", good.concept.nunique())
    m3.metric("Mean IoU (detectors)", f"{good.iou.mean():.3f}" if len(good) else "—")

    concepts = ["all units", "detectors"] + sorted(good.concept.unique())
    wanted = st.session_state.pop("cunits_concept", None)
    if wanted in concepts:
        st.session_state["cunits_concept_pick"] = wanted
    if st.session_state.get("cunits_concept_pick") not in concepts:
        st.session_state["cunits_concept_pick"] = "all units"
    show = st.segmented_control("Show", concepts, key="cunits_concept_pick") or "all units"
    top_values, top_index = res.topk(layer)
    table = units[["unit", "label", "concept", "category", "iou", "threshold"]].assign(top_value=top_values[:, 0])
    if show == "detectors":
        table = table[units.detector]
    elif show != "all units":
        table = table[units.label == show]
    table = table.sort_values("iou", ascending=False).reset_index(drop=True)

    unit_table(table, "cunit_table", "cunit_pick", "the best concept of a detector")
    options = table.unit.tolist()
    if st.session_state.get("cunit_pick") not in options:
        st.session_state["cunit_pick"] = options[0]
    unit = st.selectbox("Unit", options, key="cunit_pick",
                        format_func=lambda u: f"unit {u} · {units.concept[u]} (IoU {units.iou[u]:.3f})",
                        help="Or click a row of the table (sort by any column header).")
    per_cat = cv.unit_categories(res, layer, unit)
    st.markdown("**Per category** (the unit's best concept within each): " + " · ".join(
        f"{r.category}: **{r.concept}** (IoU {r.iou:.3f})" if r.detector
        else f"{r.category}: none (best {r.concept}, IoU {r.iou:.3f})" for r in per_cat.itertuples()))
    concept = str(units.concept[unit])
    outline = st.toggle(f"Outline the exact label of {concept}", value=True, key="cunit_outline",
                        help="Cyan: where the probe labels say the concept is; yellow: the unit's mask.")
    try:
        top = tuple(int(i) for i in top_index[unit, :8] if i >= 0)
        st.image(_strip(name, layer, int(unit), n, seed, float(units.threshold[unit]),
                        res.labels.index(concept) if outline else None, top, res.options.geometry, C),
                 width="stretch",
                 caption=f"Unit {unit}: its top-activating probe images, darkened outside its mask (yellow: activation "
                         f"> {units.threshold[unit]:.3f}, upsampled)" + (f"; cyan: the exact label of {concept}"
                                                                         if outline else ""))
    except ERRORS as e:
        fail("Could not render this unit", e, fix_for(e))
    c1, c2 = st.columns(2)
    best = cv.best_concepts(res, layer, unit)
    fig = go.Figure(go.Bar(x=best.index, y=best.values, marker_color=[concept_color(c) for c in best.index],
                           marker_line=dict(color="rgba(40,40,40,0.6)", width=1),
                           hovertemplate="%{x}: IoU %{y:.3f}<extra></extra>"))
    fig.add_hline(y=res.options.iou_min, line_dash="dot", annotation_text="detector",
                  annotation_position="top right")
    fig.update_layout(title=f"Unit {unit}: IoU with its best concepts", height=300, margin=dict(t=40, b=10),
                      yaxis_title="IoU")
    c1.plotly_chart(fig, width="stretch", key="cunit_iou")
    cat = go.Figure(go.Bar(x=per_cat.category, y=per_cat.iou, text=per_cat.concept, textposition="outside",
                           marker_color=[CATEGORY_COLOURS.get(c, "#7f7f7f") for c in per_cat.category],
                           hovertemplate="%{x}: %{text}, IoU %{y:.3f}<extra></extra>"))
    cat.add_hline(y=res.options.iou_min, line_dash="dot")
    cat.update_layout(title=f"Unit {unit}: best concept per category", height=300, margin=dict(t=40, b=10),
                      yaxis_title="IoU")
    c2.plotly_chart(cat, width="stretch", key="cunit_categories")

"""Concept maps: how many units of each layer match each concept, per scene type (paper Fig. 5,
6, 19) and per model variant (Fig. 7). A click on a bar opens the unit browser."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import studies
from dashboard.common import (
    ERRORS,
    concept_color,
    dissectable_layers,
    dissection,
    fail,
    fitted_basis,
    fix_for,
    generator,
    pick_kind,
    pick_samples,
    segmenter,
    zoo,
)

st.title("Concept maps")
if pick_kind() == "classifier":
    from dashboard import classifier_pages
    st.caption("Network Dissection of a classifier: each layer's units thresholded at their top quantile, upsampled, "
               "and compared with the exact labels of toyworld probe images (objects, stuff, parts, colours, scene "
               "types). A unit is a detector when its best IoU over the probe set exceeds 0.04; its label is that "
               "concept. Hover for counts and mean IoU; click a bar to browse those units.")
    classifier_pages.concept_maps()
    st.stop()
st.caption("Units per concept for every scene type and layer: each bar counts the units labelled with "
           "that concept (interpretable: I/H above 0.01 and IoU above 0.05, on held-out samples at the unit's "
           "threshold), coloured by concept, sorted. "
           "Hover for counts and mean IoU; click a bar to browse those units.")

models_all = zoo()
groups = studies.zoo_groups(models_all)
if not groups:
    st.warning("No generators are shipped yet: train one with `ganatomy train --scene town --out "
               "cache/train/gan_town` and ship it with `python scripts/ship_gans.py`.")
    st.stop()
n = pick_samples()
scenes = list(groups)
c1, c2 = st.columns([1, 2])
toy = [s for s in scenes if str(groups[s]["base"]).startswith("toyworld/")] or scenes[:1]
chosen_scenes = c1.multiselect("Scene types (or models)", scenes, default=toy, key="cm_scenes")
all_layers = []                      # the chosen models' layers, in order (models differ: ProGAN, StyleGAN2…)
for s in chosen_scenes or toy:
    try:
        G = generator(groups[s]["base"])
    except ERRORS as e:
        fail(f"Could not load {groups[s]['base']}", e, fix_for(e))
    all_layers += [ly for ly in dissectable_layers(G) if ly not in all_layers]
if "cm_layers" in st.session_state:  # keep only layers the chosen models have
    st.session_state["cm_layers"] = [ly for ly in st.session_state["cm_layers"] if ly in all_layers]
    layers = c2.multiselect("Layers", all_layers, key="cm_layers")
else:
    default_layers = [ly for ly in ("layer4", "layer6") if ly in all_layers] or all_layers[:1]
    layers = c2.multiselect("Layers", all_layers, default=default_layers, key="cm_layers")
if not chosen_scenes or not layers:
    st.info("Choose at least one scene type and one layer.")
    st.stop()
models = {s: groups[s]["base"] for s in chosen_scenes}
l1, l2, l3 = st.columns([2, 1, 1])
rule = l1.radio("Labelling", ["reference", "max-iou"], horizontal=True, key="cm_labeling",
                format_func=lambda r: {"reference": "reference rule (the paper's code)", "max-iou": "highest IoU"}[r],
                help="Reference rule (the 2018 code): the concept with the highest I/H over the unit's quantile "
                     "levels (levels > 0 with pixel agreement > 0.8), one threshold per unit. Highest IoU: each "
                     "concept at its own threshold, the label the concept of largest IoU (large concepts such as "
                     "sky and road win).")
objects_only = l2.toggle("Objects only", key="cm_objects", help="Hide stuff classes (sky, road, grass, wall, "
                         "floor, water...): a unit is then labelled with its best object.")
strict = l3.toggle("Pixel accuracy > 0.75", key="cm_accuracy", disabled=rule != "reference",
                   help="The paper's Fig. 5 also asks the label's pixel accuracy above 0.75.")
unit_options = {"labeling": rule}
if objects_only:
    seg_labels = segmenter().labels
    unit_options["concepts"] = studies.object_concepts(seg_labels, getattr(segmenter(), "stuff", ()))
if strict and rule == "reference":
    unit_options["pixel_accuracy"] = 0.75


def load_all(names, compute):
    out = {}
    for name in names:
        try:
            G = generator(name)
        except ERRORS as e:
            fail(f"Could not load {name}", e, fix_for(e))
        absent = [ly for ly in layers if ly not in dissectable_layers(G)]
        if absent:
            st.warning(f"{name} has no layer {', '.join(absent)} (its layers: {', '.join(dissectable_layers(G))}); "
                       "choose layers it has to map it.")
            continue
        res = dissection(name, G, layers, n, compute)
        if res is not None:
            out[name] = res
    return out


def cell_figure(cm, rows, layers, row_label):
    """One bar chart per (row, layer) cell; customdata carries (model, layer, concept)."""
    fig = make_subplots(rows=len(rows), cols=len(layers), shared_yaxes=False,
                        row_titles=[row_label(r) for r in rows], column_titles=list(layers),
                        vertical_spacing=0.12 if len(rows) > 1 else 0.1, horizontal_spacing=0.05)
    for i, r in enumerate(rows, 1):
        for j, layer in enumerate(layers, 1):
            cell = cm[(cm.row == r) & (cm.layer == layer)]
            fig.add_trace(go.Bar(
                x=cell.concept.tolist(), y=cell.units.tolist(), marker_color=[concept_color(c) for c in cell.concept],
                marker_line=dict(color="rgba(40,40,40,0.6)", width=1),
                customdata=[[r, layer, c, m] for c, m in zip(cell.concept, cell.mean_iou)],
                hovertemplate="<b>%{x}</b><br>%{y} units<br>mean IoU %{customdata[3]:.3f}"
                              f"<extra>{row_label(r)} · {layer}</extra>",
                showlegend=False), row=i, col=j)
            if cell.empty:
                fig.add_annotation(text="no interpretable units", showarrow=False, row=i, col=j,
                                   x=0.5, y=0.5, xref="x domain", yref="y domain")
    fig.update_layout(height=max(260, 250 * len(rows)), margin=dict(t=40, b=10, l=10, r=40), bargap=0.15,
                      clickmode="event+select")
    fig.update_xaxes(tickangle=-45)
    fig.update_yaxes(title_text="units", col=1)
    return fig


def open_units(model, layer, concept):
    st.session_state["shared_model"] = model
    st.session_state["shared_layer"] = layer
    st.session_state["units_concept"] = concept
    for k in ("model", "layer", "units_concept_pick", "unit_pick"):
        st.session_state.pop(k, None)
    st.switch_page("views/units.py")


results = load_all(models.values(), compute=False)
missing = [m for m in models.values() if m not in results and set(layers) <= set(dissectable_layers(generator(m)))]
if missing:
    st.info(f"Not dissected yet at {', '.join(layers)} over {n} samples: {', '.join(missing)} "
            f"(one pass per model, about 20 s each for 500 samples on 2 CPU cores; saved to `cache/`).")
    if st.button(f"Dissect {len(missing)} model{'s' if len(missing) > 1 else ''}", type="primary"):
        results.update(load_all(missing, compute=True))
        st.rerun()
if results:
    by_scene = {s: results[m] for s, m in models.items() if m in results}
    cm = studies.concept_map(by_scene, layers, **unit_options)
    summary = studies.concept_map_summary(cm)
    fig = cell_figure(cm, list(by_scene), layers,
                      lambda s: s if models[s].split("/")[-1] == s else f"{s} ({models[s]})")
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode="points",
                            key="concept_map_chart")
    try:
        points = list(event.selection.points)
    except (AttributeError, KeyError, TypeError):
        points = []
    if points and points[0].get("customdata"):
        scene, layer, concept = points[0]["customdata"][:3]
        open_units(models[scene], layer, concept)
    st.dataframe(summary.rename(columns={"row": "scene"}), hide_index=True, width="stretch",
                 column_config={"mean_iou": st.column_config.NumberColumn("mean IoU", format="%.3f")})
    options = [(s, r.layer, r.concept) for s in by_scene for r in cm[cm.row == s].itertuples()]
    if options:
        o1, o2 = st.columns([3, 1])
        pick = o1.selectbox("Browse the units of", options, key="cm_open",
                            format_func=lambda o: f"{o[0]} · {o[1]} · {o[2]}")
        o2.write("")
        if o2.button("Open unit browser", key="cm_open_btn"):
            open_units(models[pick[0]], pick[1], pick[2])

# ----------------------------------------------------------------------------- units vs features (#19)
st.subheader("Units vs features")
st.caption("Do concepts that no single unit detects have a direction of their own? The same labelling rule and "
           "samples in three bases: units (channels), PCA directions, and the features of a sparse dictionary "
           "(an L1 sparse autoencoder with 4x as many features as units) fitted on the layer's activations. "
           "Per concept: interpretable units / features and the best IoU among them.")
b1, b2 = st.columns(2)
cmp_scene = b1.selectbox("Scene type", list(models), key="cmp_scene")
cmp_layer = b2.selectbox("Layer", layers, key="cmp_layer")
cmp_model = models[cmp_scene]
cmp_G = generator(cmp_model)
fitted = {kind: fitted_basis(cmp_model, cmp_G, cmp_layer, kind, compute=False) for kind in ("pca", "sae")}
todo = [kind for kind, b in fitted.items() if b is None]
fit_now = False
if todo:
    st.info(f"Not fitted yet for {cmp_layer} of {cmp_model}: {', '.join(k.upper() for k in todo)} (once per layer, "
            "saved to `cache/`; the sparse dictionary takes a few minutes on 2 CPU cores).")
    fit_now = st.button("Fit and dissect", key="cmp_fit", type="primary")
    if fit_now:
        for kind in todo:
            fitted[kind] = fitted_basis(cmp_model, cmp_G, cmp_layer, kind, compute=True)
if all(b is not None for b in fitted.values()):
    per_basis = {"units": dissection(cmp_model, cmp_G, [cmp_layer], n, compute=False)}
    per_basis.update({kind: dissection(cmp_model, cmp_G, [cmp_layer], n, compute=False, basis=b)
                      for kind, b in fitted.items()})
    missing_b = [k for k, r in per_basis.items() if r is None]
    if missing_b and (fit_now or st.button(f"Dissect in {', '.join(missing_b)}", key="cmp_dissect", type="primary")):
        for kind in missing_b:
            per_basis[kind] = dissection(cmp_model, cmp_G, [cmp_layer], n, compute=True, basis=fitted.get(kind))
        missing_b = []
    if not missing_b:
        table = studies.basis_comparison(per_basis, cmp_layer, **unit_options)
        if table.empty:
            st.info("No concept has an interpretable unit or feature here.")
        else:
            fig = go.Figure()
            for kind, colour in (("units", "#7f7f7f"), ("pca", "#72b7b2"), ("sae", "#4c78a8")):
                fig.add_trace(go.Bar(name={"units": "units", "pca": "PCA", "sae": "SAE features"}[kind],
                                     x=table.concept, y=table[f"{kind}_best"], marker_color=colour,
                                     customdata=table[f"{kind}_n"],
                                     hovertemplate="%{x}: best IoU %{y:.3f} (%{customdata} interpretable)"
                                                   f"<extra>{kind}</extra>"))
            fig.update_layout(barmode="group", height=320, margin=dict(t=30, b=10), yaxis_title="best IoU",
                              legend=dict(orientation="h", y=1.12))
            st.plotly_chart(fig, width="stretch", key="basis_chart")
            gained = table[(table.units_n == 0) & (table.sae_n > 0)].concept.tolist()
            st.caption(f"{len(table)} concepts; with a sparse feature but no unit: {', '.join(gained) or 'none'}.")
            st.dataframe(table, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.3f")
                                        for c in table.columns if c.endswith("_best") or c.startswith("gain_")})

# ----------------------------------------------------------------------------- variants (Fig. 7)
st.subheader("Model variants")
variant_groups = {s: g for s, g in groups.items() if g["variants"] and s in chosen_scenes}
if not variant_groups:
    st.caption("No model variants are shipped yet. Variants of a scene type (e.g. `toyworld/town-nostd`, "
               "`toyworld/town-nopn`: no minibatch stddev, no pixel norm) are compared here, layer by "
               "layer, as in the paper's Fig. 7, once `ganatomy train --variant nostd` (or `nopn`) has "
               "trained them and `python scripts/ship_gans.py` has shipped them.")
else:
    for scene, g in variant_groups.items():
        lineup = studies.variant_lineup(models_all, g)
        names = lineup["models"]
        if lineup["matched"]:
            st.caption(f"{scene}: {lineup['note']}.")
        else:
            st.warning(f"{scene}: {lineup['note']}.", icon=":material/warning:")
        got = load_all(names, compute=False)
        todo = [m for m in names if m not in got and set(layers) <= set(dissectable_layers(generator(m)))]
        if todo:
            st.info(f"{scene}: not dissected yet: {', '.join(todo)}.")
            if st.button(f"Dissect the {scene} variants", key=f"var-{scene}"):
                got.update(load_all(todo, compute=True))
                st.rerun()
        if got:
            vm = studies.concept_map({m: got[m] for m in names if m in got}, layers, **unit_options)
            st.plotly_chart(cell_figure(vm, [m for m in names if m in got], layers, lambda m: m.split("/")[-1]),
                            width="stretch", key=f"variants-{scene}")
            st.dataframe(studies.concept_map_summary(vm).rename(columns={"row": "model"}), hide_index=True,
                         width="stretch")

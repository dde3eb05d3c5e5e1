"""Unit importance of a classifier (Bau et al., PNAS 2020): per class, the units whose zeroing costs it
most, with their dissection labels, and the ablation curves (its top N units vs N random others)."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import core
from core.studies import classifier_views as cv
from dashboard.classifier_pages import CATEGORY_COLOURS
from dashboard.common import (
    ERRORS,
    IMPORTANCE_CHOICES,
    RULES_SHOWN,
    classifier_dissection,
    fail,
    fix_for,
    note_turn,
    pick_classifier,
    pick_classifier_layer,
    pick_probes,
    pick_rule,
)

st.title("Unit importance")
st.caption("How much each unit of a classifier's layer matters to each class (PNAS 2020): the class's balanced "
           "accuracy (one class against the rest) with the unit zeroed, and the margin (the true class's logit minus "
           "the largest other, averaged over the class's images), which still moves where balanced accuracy is "
           "saturated. Units ranked per class, with their Network Dissection labels; the curves zero the class's top "
           "N units against N units drawn at random from the others. A multi-label classifier (toyworld-presence: "
           "which of toyworld's concepts an image contains) is scored per concept on its own decision (logit > 0), "
           "one concept against its absence, and its margin is the balanced signed logit.")
name, C = pick_classifier()
layer = pick_classifier_layer(C, default=C.layer_names[-2] if len(C.layer_names) > 1 else None)
defaults = cv.importance_defaults(C)
multilabel = defaults["multilabel"]
st.sidebar.divider()
n_images = st.sidebar.select_slider(
    "Images", IMPORTANCE_CHOICES, value=defaults["n"], key="imp_n",
    help=f"{defaults['labels'][0].upper()}{defaults['labels'][1:]}. Every unit of the layer is zeroed in turn, then "
         f"the curves' variants: {defaults['seconds']}; the time grows with images x (units + classes x top N x "
         "(draws + 1)). Saved to `cache/`.")
image_seed = int(st.sidebar.number_input("Image seed", 0, 10_000, value=100, key="imp_seed",
                                         help="Which scenes (kept apart from the probe images' seeds)."))
top_n = st.sidebar.slider("Top N", 1, 30, defaults["top_n"], key="imp_top_n",
                          help="The curves zero a class's top 1 … N units.")
draws = st.sidebar.slider("Random draws", 1, 10, defaults["draws"], key="imp_draws",
                          help="Random units drawn from the rest of the layer, nested (draw d's N units are the first "
                               "N of one seeded permutation); the band is their range.")
st.sidebar.divider()
st.sidebar.caption("Labels: the dissection of this layer on probe images.")
n_probes, probe_seed = pick_probes()
rule = pick_rule()

try:
    images, labels = cv.importance_images(C, n_images, image_seed)
    imp = core.engine.importance.unit_importance(C, layer, images, labels, top_n=top_n, draws=draws, seed=0,
                                                 multilabel=multilabel, cached_only=True)
except ERRORS as e:
    fail(f"Unit importance of {name} cannot be measured here", e, fix_for(e))
res = classifier_dissection(name, C, [layer], n_probes, probe_seed, rule, compute=False)
if imp is None or res is None:
    todo = ([f"importance over {n_images} images"] if imp is None else []) + \
           ([f"the dissection of {layer} on {n_probes} probe images"] if res is None else [])
    st.info(f"Not measured yet for {layer} of {name}: {' and '.join(todo)} ({defaults['seconds']}; saved to "
            "`cache/`, so every later visit is instant).")
    if not st.button("Measure unit importance", type="primary", key="imp_go"):
        st.stop()
    if imp is None:
        with st.status(f"Zeroing each unit of {layer} of {name} over {n_images} images…", expanded=True) as box:
            note_turn(box)
            st.write(f"Each of the layer's units zeroed in turn, then per class its top 1 … {top_n} units and "
                     f"{draws} random draws: one forward per batch, the rest of the network on every variant at once.")
            try:
                imp = core.engine.importance.unit_importance(C, layer, images, labels, top_n=top_n, draws=draws,
                                                             seed=0, multilabel=multilabel)
            except ERRORS as e:
                box.update(label="Unit importance failed", state="error")
                fail(f"Unit importance of {name} failed", e, fix_for(e))
            box.update(label=f"Measured unit importance of {layer} in {imp.meta.get('seconds', 0):.1f} s "
                             "(saved to cache/)", state="complete", expanded=False)
        st.session_state["imp_measured"] = (name, layer, n_images, imp.meta.get("seconds", 0.0))
    if res is None:
        res = classifier_dissection(name, C, [layer], n_probes, probe_seed, rule, compute=True)
    st.rerun()                                  # the results alone, read back from cache/

per_class = cv.importance_classes(imp).set_index("class")
if multilabel:
    klass = st.selectbox(
        "Concept", imp.classes, index=imp.classes.index(cv.default_class(imp)), key="imp_concept",
        format_func=lambda c: f"{c} · balanced accuracy {per_class.base[c]:.3f} · in {per_class.images[c]:.0f} "
                              f"of {imp.n_samples} images",
        help="Each concept scored one against the rest (present or not), on its own decision (logit > 0). Opens on "
             "the least saturated: the lowest unedited balanced accuracy among the concepts some single unit moves.")
    row = per_class.loc[klass]
    m1, m2, m3 = st.columns(3)
    m1.metric(f"{klass}: balanced accuracy", f"{row.base:.3f}", help="Unedited; this concept against the rest.")
    m2.metric(f"{klass}: margin", f"{row.margin_base:.2f}",
              help="Balanced signed logit: (mean logit over the images with it + mean of minus the logit over the "
                   "images without it) / 2.")
    m3.metric("Images with it", f"{row.images:.0f} / {imp.n_samples}")
    if not row.measured:
        st.info(f"{klass} is in {'every' if row.images else 'none'} of these {imp.n_samples} images: its balanced "
                "accuracy is undefined. Pick another concept, or more images.")
        st.stop()
else:
    metrics = st.columns(len(imp.classes))
    for col, c, ba, mg in zip(metrics, imp.classes, imp.base, imp.margin_base):
        col.metric(f"{c}: balanced accuracy", f"{ba:.3f}", help="Unedited; one class against the rest.")
        col.caption(f"margin {mg:.2f} (true logit minus the largest other)")
    klass = st.segmented_control("Class", imp.classes, default=imp.classes[0], key="imp_class") or imp.classes[0]
saturated = not bool(per_class.moved[klass])                      # no single unit moves this class
try:
    table = cv.importance_table(imp, res, klass, k=min(20, imp.drop.shape[0]))
    table["detector"] = table.label != ""
    curves = imp.curves()
    scatter, stats = cv.importance_vs_iou(imp, res)
except ERRORS as e:
    fail("Could not show this result", e, fix_for(e))
curves = curves[curves["class"] == klass]
left, right = st.columns([7, 5])
left.markdown(f"**Most important units for {klass}** ({layer}, labels by {RULES_SHOWN[rule]})")
left.dataframe(table, hide_index=True, width="stretch", height=460,
               column_order=["unit", "drop", "margin_drop", "concept", "detector", "iou", "category"],
               column_config={"drop": st.column_config.NumberColumn("BA drop", format="%.3f",
                                                                    help="balanced accuracy lost with the unit zeroed"),
                              "margin_drop": st.column_config.NumberColumn("margin drop", format="%.3f"),
                              "iou": st.column_config.NumberColumn("IoU", format="%.3f"),
                              "detector": st.column_config.CheckboxColumn(
                                  "detector", width="small", help="its best IoU passes the rule's threshold (0.04)"),
                              "concept": st.column_config.TextColumn("best concept"),
                              "rank": st.column_config.NumberColumn("#", width="small"),
                              "unit": st.column_config.NumberColumn("unit", width="small")})
top_unit = int(table.unit.iloc[0])
top_label = table.label.iloc[0] or f"no detector; best {table.concept.iloc[0]}"
left.caption(f"Top unit for {klass}: **unit {top_unit}** ({top_label}, IoU {table.iou.iloc[0]:.3f})"
             + (f". No single unit moves the balanced accuracy of {klass} here: the ranking follows the margin "
                "drop." if saturated else "."))

o1, o2 = left.columns([3, 2])
browse = o1.selectbox("Unit", table.unit.tolist(), key="imp_unit", label_visibility="collapsed",
                      format_func=lambda u: f"unit {u} · {table.set_index('unit').concept[u]}")
if o2.button("Open in the unit browser", key="imp_open"):
    st.session_state.update(shared_kind="classifier", shared_classifier_layer=layer, cunits_concept="all units",
                            cunit_pick=int(browse))
    for k in ("model_kind", "classifier_layer", "cunits_concept_pick"):
        st.session_state.pop(k, None)
    st.switch_page("views/units.py")


def curve_figure(y_top, y_mean, y_lo, y_hi, base, title, y_title, legend):
    x = [0] + curves.n.tolist()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x + x[::-1], y=[base] + y_hi + ([base] + y_lo)[::-1], fill="toself",
                             fillcolor="rgba(127,127,127,0.2)", line=dict(width=0), hoverinfo="skip",
                             name=f"random ({draws} draws): range", showlegend=legend))
    fig.add_trace(go.Scatter(x=x, y=[base] + y_mean, mode="lines+markers", line=dict(color="#7f7f7f", dash="dash"),
                             name="random: mean", showlegend=legend,
                             hovertemplate="%{x} random units: %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=[base] + y_top, mode="lines+markers", line=dict(color="#d62728"),
                             name="top N", showlegend=legend,
                             hovertemplate="top %{x} units: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=260 if legend else 220, margin=dict(t=35, b=5 + 40 * legend, l=10, r=10),
                      xaxis_title="units zeroed", yaxis_title=y_title,
                      legend=dict(orientation="h", y=-0.42, yanchor="top", x=0, xanchor="left"))
    return fig


right.plotly_chart(curve_figure(curves.top.tolist(), curves.random_mean.tolist(), curves.random_min.tolist(),
                                curves.random_max.tolist(), float(curves.base.iloc[0]),
                                f"{klass}: balanced accuracy", "balanced accuracy", True),
                   width="stretch", key="imp_ba")
right.plotly_chart(curve_figure(curves.margin_top.tolist(), curves.margin_random_mean.tolist(),
                                curves.margin_random_min.tolist(), curves.margin_random_max.tolist(),
                                float(curves.margin_base.iloc[0]), f"{klass}: margin", "margin", False),
                   width="stretch", key="imp_margin")

st.subheader("Importance vs interpretability")
measure = st.segmented_control("Importance", ["max_margin_drop", "max_importance"], default="max_margin_drop",
                               key="imp_measure", format_func={"max_margin_drop": "largest margin drop",
                                                               "max_importance": "largest BA drop"}.get) \
    or "max_margin_drop"
rho = stats["margin" if measure == "max_margin_drop" else "accuracy"]
fig = go.Figure()
for cat in list(res.categories):
    d = scatter[scatter.category == cat]
    if d.empty:
        continue
    fig.add_trace(go.Scatter(x=d.iou, y=d[measure], mode="markers", name=cat,
                             marker=dict(color=CATEGORY_COLOURS.get(cat), size=8,
                                         symbol=["circle" if x else "circle-open" for x in d.detector]),
                             customdata=d[["unit", "concept", "class"]].to_numpy(),
                             hovertemplate="unit %{customdata[0]}: %{customdata[1]}, IoU %{x:.3f}<br>"
                                           "importance %{y:.3f} (for %{customdata[2]})<extra></extra>"))
fig.add_vline(x=res.options.iou_min, line_dash="dot", annotation_text="detector", annotation_position="top right")
fig.update_layout(height=340, margin=dict(t=40, b=10), xaxis_title="best IoU (dissection)",
                  yaxis_title={"max_margin_drop": "largest margin drop", "max_importance": "largest BA drop"}[measure],
                  title=f"{stats['units']} units of {layer}, {stats['detectors']} detectors (filled): Spearman's rho "
                        + ("undefined (one side constant)" if rho != rho else f"{rho:.2f}"))
st.plotly_chart(fig, width="stretch", key="imp_scatter")
last = st.session_state.get("imp_measured")
when = (f"measured just now in {last[3]:.1f} s, saved to cache/" if last == (name, layer, n_images, last and last[3])
        else "read from cache/")
st.caption(f"Importance over {imp.n_samples} images (seed {image_seed}), top {imp.top_curve.shape[1]}, {draws} random "
           f"draws; labels from {n_probes} probe images (seed {probe_seed}); {when}.")

"""Paint (GANPaint-style): draw over a generated image to add or remove a concept where you paint,
then ask where in this image the concept can go at all (context study, paper Fig. 11)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from streamlit_drawable_canvas import st_canvas

from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import generate
from core.outputs.visualize import png_bytes, to_uint8
from core.studies import paint
from dashboard.common import (
    ERRORS,
    concept_color,
    dissection,
    fail,
    fix_for,
    pick_layer,
    pick_model,
    pick_samples,
    segmenter,
)

SIZE = 320          # canvas and image size on screen (px): three columns fit a 1400 px window

st.title("Paint")
name, G = pick_model()
layer = pick_layer(G)
n = pick_samples()
seg = segmenter()
try:
    n_units, rows, cols = paint.layer_grid(G, layer)
except ERRORS as e:
    fail(f"Cannot paint at {layer}", e, fix_for(e))

res = dissection(name, G, [layer], n, compute=False)
if res is None:
    st.info(f"Painting uses the units that match each concept at {layer}: dissect {name} first "
            f"({n} samples, about 20 s for 500 on 2 CPU cores; saved to `cache/`).")
    if not st.button("Dissect", type="primary"):
        st.stop()
    res = dissection(name, G, [layer], n, compute=True)

matched = res.units(layer).label.value_counts()
concepts = sorted((c for c in seg.labels[1:] if res.frequency(layer)[res.labels.index(c)] > 0),
                  key=lambda c: -matched.get(c, 0))          # concepts with the most units first
if st.session_state.get("paint_concept") not in concepts:
    st.session_state.pop("paint_concept", None)
c1, c2, c3, c4, c5 = st.columns([2, 2, 1, 2, 2])
concept = c1.selectbox("Concept", concepts, key="paint_concept",
                       format_func=lambda c: f"{c} ({matched.get(c, 0)} units)")
mode = c2.segmented_control("Paint to", paint.MODES, default="add", key="paint_mode",
                            format_func=lambda m: {"add": ":material/add: add", "remove": ":material/remove: remove"}[m]) or "add"
seed = int(c3.number_input("Seed", 0, 10**6, 0, key="paint_seed", help="Which generated image to paint on"))
n_paint = 1 if n_units == 1 else c4.slider(
    "Units", 1, n_units, min(20, n_units), key="paint_units",
    help="How many of the concept's units the paint drives (causal ranking when the Causal units page "
         "has found them, else highest IoU first)")
brush = c5.slider("Brush", 8, 64, 32, step=4, key="paint_brush")


# every cached result names the segmenter too: sessions may have chosen different ones
@st.cache_data(show_spinner=False, max_entries=256)
def constants(model, segmenter_key, layer, concept, n_samples, _G):
    return paint.cached_insertion_constants(_G, seg, layer, concept, n_samples=n_samples)


@st.cache_data(show_spinner=False, max_entries=256)
def original(model, seed, _G):
    with torch.no_grad():
        return to_uint8(generate(_G, z_range(seed, 0, 1, _G.z_dim)))[0]


try:
    ace = paint.cached_causal_units(G, seg, layer, concept, n)
    ranking = "IoU" if ace is None else f"ACE, {len(ace.losses)} steps"
    units = paint.concept_units(res, layer, concept, n_paint) if ace is None else [int(u) for u in ace.ranking[:n_paint]]
    with st.spinner(f"Insertion values for {concept} (once per model, layer and concept)…"):
        k = constants(name, seg.cache_key, layer, concept, min(100, n), G)
    base = original(name, seed, G)
except ERRORS as e:
    fail(f"Cannot paint {concept}", e, fix_for(e))
z = z_range(seed, 0, 1, G.z_dim)
background = png_bytes(paint.grid_image(base, (rows, cols), SIZE))
canvas_key = f"paint-canvas-{name}-{layer}-{seed}"


def _objects(key):
    state = st.session_state.get(key) or {}
    drawing = (state.get("drawing") or {}).get("raw") or {}
    return list(drawing.get("objects") or [])


def _restart(key, objects):
    """Reload the canvas with ``objects`` (undo / clear): a new revision makes it redraw."""
    rev = st.session_state.get(key + "-rev", 0) + 1
    st.session_state[key + "-rev"] = rev
    st.session_state[key + "-init"] = {"objects": objects, "ganatomy_revision": rev}


st.html("<style>.st-key-paint_edited img { image-rendering: pixelated; }</style>")


@st.fragment
def painter():
    left, mid, right = st.columns([11, 10, 7])           # the canvas column fits SIZE px
    with left:
        st.markdown(f"**Original** · paint here · {layer} grid {rows}×{cols}")
        result = st_canvas(fill_color="rgba(255, 214, 10, 0.35)", stroke_width=brush,
                           stroke_color="rgba(255, 214, 10, 0.75)", background_image=background,
                           width=SIZE, height=SIZE, drawing_mode="freedraw", return_image_data=True,
                           initial_drawing=st.session_state.get(canvas_key + "-init"), key=canvas_key)
        b1, b2 = st.columns(2)
        n_strokes = len(_objects(canvas_key))
        if b1.button("Undo stroke", icon=":material/undo:", disabled=n_strokes == 0, key="paint_undo", width="stretch"):
            _restart(canvas_key, _objects(canvas_key)[:-1])
            st.rerun(scope="fragment")
        if b2.button("Clear", icon=":material/delete:", disabled=n_strokes == 0, key="paint_clear", width="stretch"):
            _restart(canvas_key, [])
            st.rerun(scope="fragment")
    try:
        drawing = result.image_data if _objects(canvas_key) else None
        cells = paint.stroke_coverage(drawing, (rows, cols)) >= 0.15
        edits = paint.paint_edits(layer, units, mode, k, cells)
        with torch.no_grad():
            edited = to_uint8(generate(G, z, edits))[0]
    except ERRORS as e:
        fail("This edit failed", e, fix_for(e), stop=False)
        return
    verb = "added" if mode == "add" else "removed"
    n_cells = int(cells.sum())
    with mid:
        st.markdown(f"**Edited** · {concept} {verb} in {n_cells} cell{'' if n_cells == 1 else 's'}"
                    if edits else "**Edited** · paint on the left to edit")
        with st.container(key="paint_edited"):       # sent at the model's resolution, enlarged by CSS
            st.image(edited, width=SIZE, output_format="PNG")
    with right:
        st.markdown(f"**What the paint means at {layer}**")
        st.image(paint.cells_overlay(base, cells, SIZE // 2), width=SIZE // 2, output_format="PNG",
                 caption=f"{n_cells} of {rows * cols} cells: {n_paint} {concept} units "
                         f"{'set to their insertion values' if mode == 'add' else 'ablated'} there")
        st.caption(f"Units ({ranking} ranking): {', '.join(map(str, units[:12]))}{' …' if len(units) > 12 else ''}"
                   + ("" if ace else " · find the causal units on the **Causal units** page to paint with them"))


painter()

# ----------------------------------------------------------------------------- context study
st.subheader(f"Where can {concept} go? Context study")
st.caption(f"{concept} units inserted at one {layer} cell at a time, in every cell of this image (and of the "
           "next images of the same seed): the map shows how much of the image becomes "
           f"{concept}; the bars average the effect by what the cell showed before.")
k1, k2 = st.columns([1, 3])
n_images = k1.select_slider("Images", [1, 2, 4, 8, 16], value=2, key="ctx_images")


@st.cache_data(show_spinner=False, max_entries=32)
def context(model, segmenter_key, k_samples, layer, concept, units, seed, n_images, _G, _k):
    bar = st.progress(0.0, text="Inserting at every cell…")
    out = causal.context_study(_G, seg, layer, list(units), _k, concept, n_images=n_images, seed=seed,
                               progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} insertions"))
    bar.empty()
    return out


ctx_key = (name, seg.cache_key, min(100, n), layer, concept, tuple(units), seed, n_images)
if k2.button(f"Run the context study ({n_images * rows * cols} insertions)", key="ctx_run") \
        or st.session_state.get("ctx_key") == ctx_key:
    st.session_state["ctx_key"] = ctx_key
    try:
        with st.status(f"Context study of {concept} at {layer}", expanded=False) as box:
            rows_df, summary, maps = context(*ctx_key, G, k)
            box.update(label=f"Context study of {concept} at {layer}: {len(rows_df)} insertions", state="complete")
    except ERRORS as e:
        fail("The context study failed", e, fix_for(e))
    m1, m2 = st.columns(2)
    h, w = maps.shape[1:]
    fig = go.Figure(go.Image(z=base, hoverinfo="skip"))
    scale = base.shape[0] / h
    lim = float(np.abs(maps[0]).max()) or 1e-6
    fig.add_trace(go.Heatmap(z=maps[0], x0=(scale - 1) / 2, dx=scale, y0=(scale - 1) / 2, dy=scale, opacity=0.6,
                             colorscale="RdBu_r", zmin=-lim, zmax=lim, colorbar=dict(title="Δ fraction"),
                             hovertemplate=f"cell %{{y}}, %{{x}}<br>Δ {concept}: %{{z:.4f}}<extra></extra>"))
    fig.update_layout(title=f"Effect of inserting {concept} at each cell of this image", height=380,
                      margin=dict(t=40, b=10, l=10, r=10))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    m1.plotly_chart(fig, width="stretch", key="ctx_map")
    bars = go.Figure(go.Bar(x=summary.context, y=summary["mean"], customdata=summary["count"],
                            marker_color=[concept_color(c) for c in summary.context],
                            marker_line=dict(color="rgba(40,40,40,0.6)", width=1),
                            hovertemplate="%{x}: mean Δ %{y:.4f} over %{customdata} cells<extra></extra>"))
    bars.update_layout(title=f"Insertion effect by background class ({n_images} image{'s' * (n_images > 1)})",
                       height=380, margin=dict(t=40, b=10), yaxis_title=f"Δ fraction of {concept}")
    m2.plotly_chart(bars, width="stretch", key="ctx_bars")
else:
    st.info("Press **Run the context study** (results are kept for every session of this server).")

"""Paint (GANPaint-style): draw over a generated image to add or remove a concept where you paint,
then ask where in this image the concept can go at all (context study, paper Fig. 11). "Paint on: real
scene" paints a held-out toyworld scene or an uploaded photo instead (dashboard/paint_real.py)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from core import studies
from core.base.sampling import z_range
from core.engine.intervention import generate, insertion_constants
from core.outputs.visualize import png_bytes, to_uint8
from core.studies import paint
from core.studies.units import iou_units, stored_ace
from dashboard.common import (
    ERRORS,
    concept_color,
    dissection,
    fail,
    fix_for,
    note_turn,
    page_basis,
    pick_layer,
    pick_model,
    pick_samples,
    segmenter,
    stroke_canvas,
)
from dashboard.paint_real import real_scene_painter

SIZE = 320          # canvas and image size on screen (px): three columns fit a 1400 px window

st.title("Paint")
st.caption("GANPaint: paint on the left and the concept's units are set to their insertion values times "
           "the Strength (add) or to zero (remove) in the featuremap cells you cover, then the image is drawn again "
           "from there. The "
           "grid is the layer's featuremap: at layer4 of a 64 px model one cell is 8 px, about one door.")
name, G = pick_model()
layer = pick_layer(G)
on = st.segmented_control("Paint on", ["generated image", "real scene"], default="generated image", key="paint_on",
                          help="A real scene (a held-out toyworld scene or your photo) is inverted into the layer "
                               "and the generator adapted to it (SIGGRAPH 2019), then painted like a generated "
                               "image; the change is blended into the photo around the stroke.") or "generated image"
n = pick_samples()
seg = segmenter()
try:
    n_units, rows, cols = paint.layer_grid(G, layer)
except ERRORS as e:
    fail(f"Cannot paint at {layer}", e, fix_for(e))

kind, basis = page_basis(name, G, layer, "paint_basis", help="Paint with units (the paper), PCA directions or "
                         "sparse features: the paint sets each chosen feature to its insertion value along its own "
                         "direction. Fitted and dissected once per layer (Unit browser or here).")
what = "features" if basis is not None else "units"
bkey = basis.cache_key if basis is not None else "units"

res = dissection(name, G, [layer], n, compute=False, basis=basis)
if res is None:
    st.info(f"Painting uses the {what} that match each concept at {layer}: dissect {name} first "
            f"({n} samples, about 20 s for 500 on 2 CPU cores; saved to `cache/`).")
    if not st.button("Dissect", type="primary"):
        st.stop()
    res = dissection(name, G, [layer], n, compute=True, basis=basis)
n_units = len(res.units(layer))

matched = res.units(layer).label.value_counts()
concepts = sorted((c for c in seg.labels[1:] if res.frequency(layer)[res.labels.index(c)] > 0),
                  key=lambda c: -matched.get(c, 0))          # concepts with the most units first
if st.session_state.get("paint_concept") not in concepts:
    st.session_state.pop("paint_concept", None)
c1, c2, c3, c4, c5, c6 = st.columns([2, 2, 1, 2, 2, 2])
concept = c1.selectbox("Concept", concepts, key="paint_concept",
                       format_func=lambda c: f"{c} ({matched.get(c, 0)} labelled {what})",
                       help="Concepts the segmenter finds in this generator's images, by how many units are "
                            "labelled with them; painting drives the concept's best units (Units slider) either way")
mode = c2.segmented_control("Paint to", paint.MODES, default="add", key="paint_mode",
                            format_func=lambda m: {"add": ":material/add: add",
                                                   "remove": ":material/remove: remove"}[m]) or "add"
seed = 0 if on == "real scene" else int(c3.number_input("Seed", 0, 10**6, 0, key="paint_seed",
                                                         help="Which generated image to paint on"))
n_paint = 1 if n_units == 1 else c4.slider(
    "Units", 1, n_units, min(20, n_units), key="paint_units",
    help="How many of the concept's units the paint drives (causal ranking when the Causal units page "
         "has found them, else highest IoU first)")
brush = c5.slider("Brush", 8, 64, 40, step=4, key="paint_brush",
                  help="Brush width in canvas pixels; one featuremap cell is "
                       f"{320 // max(rows, 1)} px here. A cell counts when a stroke covers 15% of it.")
strength = c6.select_slider("Strength", [1.0, 2.0, 3.0, 4.0], value=3.0, key="paint_strength",
                            format_func=lambda v: f"{v:g} x k",
                            help="Inserted units are set to this multiple of their insertion values k (S-6.4, "
                                 "the mean activation where the concept is). k itself barely draws a 64 px door; "
                                 "3 x k draws a visible one on a wall.")


# every cached result names the segmenter too: sessions may have chosen different ones
@st.cache_data(show_spinner=False, max_entries=256)
def constants(model, segmenter_key, layer, concept, n_samples, basis_key, _G, _basis):
    return insertion_constants(_G, seg, layer, concept, n_samples=n_samples, basis=_basis).numpy()


@st.cache_data(show_spinner=False, max_entries=256)
def original(model, seed, _G):
    with torch.no_grad():
        return to_uint8(generate(_G, z_range(seed, 0, 1, _G.z_dim)))[0]


try:
    ace = stored_ace(G, seg, layer, concept, n, basis=basis)
    ranking = "IoU" if ace is None else f"ACE, {len(ace.losses)} steps"
    units = iou_units(res, layer, concept, n_paint) if ace is None else [int(u) for u in ace.ranking[:n_paint]]
    with st.spinner(f"Insertion values for {concept} (once per model, layer and concept)…"):
        k = constants(name, seg.cache_key, layer, concept, min(100, n), bkey, G, basis)
    base = original(name, seed, G)
except ERRORS as e:
    fail(f"Cannot paint {concept}", e, fix_for(e))
if on == "real scene":
    real_scene_painter(name, G, layer, (rows, cols), units=units, k=k, mode=mode, strength=strength, basis=basis,
                       brush=brush, concept=concept, what=what, size=SIZE)
    st.stop()
z = z_range(seed, 0, 1, G.z_dim)
background = png_bytes(paint.grid_image(base, (rows, cols), SIZE))
canvas_key = f"paint-canvas-{name}-{layer}-{seed}"




st.html("<style>.st-key-paint_edited img { image-rendering: pixelated; }</style>")


@st.fragment
def painter():
    left, mid, right = st.columns([11, 10, 7])           # the canvas column fits SIZE px
    with left:
        st.markdown(f"**Original** · paint here · {layer} grid {rows}×{cols}")
        drawing = stroke_canvas(canvas_key, background, brush, SIZE, "paint")
    try:
        cells = paint.stroke_coverage(drawing, (rows, cols)) >= 0.15
        edits = paint.paint_edits(layer, units, mode, k, cells, scale=strength, basis=basis)
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
                 caption=f"{n_cells} of {rows * cols} cells: {n_paint} {concept} {what} "
                         f"{'set to their insertion values' if mode == 'add' else 'ablated'} there")
        st.caption(f"{what.capitalize()} ({ranking} ranking): "
                   f"{', '.join(map(str, units[:12]))}{' …' if len(units) > 12 else ''}"
                   + ("" if ace else " · find the causal units on the **Causal units** page to paint with them"))


painter()

# ----------------------------------------------------------------------------- context study
st.subheader(f"Where can {concept} go? Context study")
st.caption(f"{concept} units inserted in a block of {layer} cells at a time, at every position of images of "
           "three seeds (this one and the next two): the bars give the concept pixels an insertion adds, by what "
           "the block showed before (walls split at their ground line, where toyworld puts doors), with 95% "
           "intervals over the seeds; the map shows this image.")
k1, k2, k3, k4 = st.columns([1, 1, 1, 2])
n_images = k1.select_slider("Images per seed", [1, 2, 4, 8], value=2, key="ctx_images")
ctx_brush = k2.select_slider("Brush (cells)", [1, 2, 3], value=min(2, rows, cols), key="ctx_brush")
ctx_scale = k3.select_slider("Strength", ["1", "2", "3", "4", "p99"], value="3", key="ctx_scale",
                             format_func=lambda v: "99th pct (GANPaint)" if v == "p99" else f"{v} x k")


@st.cache_data(show_spinner=False, max_entries=32)
def context(model, segmenter_key, k_samples, layer, concept, units, seed, n_images, brush, scale, basis_key, _G, _k,
            _q, _basis):
    bar = st.progress(0.0, text="Inserting at every position…")
    value, mult = studies.context.unit_values(_k, list(units), "p99" if scale == "p99" else float(scale), _q)
    out = studies.context.context_over_seeds(
        _G, seg, layer, list(units), value, concept, seeds=(seed, seed + 1, seed + 2), n_images=n_images,
        brush=brush, scale=mult, basis=_basis, progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} insertions"))
    bar.empty()
    return out


n_pos = (rows - ctx_brush + 1) * (cols - ctx_brush + 1)
ctx_key = (name, seg.cache_key, min(100, n), layer, concept, tuple(units), seed, n_images, ctx_brush, ctx_scale,
           bkey)
if k4.button(f"Run the context study ({3 * n_images * n_pos} insertions)", key="ctx_run") \
        or st.session_state.get("ctx_key") == ctx_key:
    st.session_state["ctx_key"] = ctx_key
    try:
        with st.status(f"Context study of {concept} at {layer}", expanded=False) as box:
            note_turn(box)
            out = context(*ctx_key, G, k, res.quantiles(layer), basis)
            box.update(label=f"Context study of {concept} at {layer}: {len(out['rows'])} insertions",
                       state="complete")
    except ERRORS as e:
        fail("The context study failed", e, fix_for(e))
    summary, rows_df = out["summary"], out["rows"]
    m1, m2 = st.columns(2)
    mine = rows_df[(rows_df.seed == seed) & (rows_df.image == 0)]
    hh, ww = rows - ctx_brush + 1, cols - ctx_brush + 1
    grid = np.zeros((hh, ww))
    grid[mine.y.to_numpy(), mine.x.to_numpy()] = mine.added_px.to_numpy()
    fig = go.Figure(go.Image(z=base, hoverinfo="skip"))
    scale = base.shape[0] / rows
    lim = float(np.abs(grid).max()) or 1.0
    fig.add_trace(go.Heatmap(z=grid, x0=(scale * ctx_brush - 1) / 2, dx=scale, y0=(scale * ctx_brush - 1) / 2, dy=scale,
                             opacity=0.6, colorscale="RdBu_r", zmin=-lim, zmax=lim, colorbar=dict(title="px"),
                             hovertemplate=f"block at cell %{{y}}, %{{x}}<br>{concept}: %{{z:+.0f}} px<extra></extra>"))
    fig.update_layout(title=f"{concept} pixels added by an insertion at each position of this image", height=380,
                      margin=dict(t=40, b=10, l=10, r=10))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    m1.plotly_chart(fig, width="stretch", key="ctx_map")
    err = (summary.ci_high - summary.added_px).fillna(0)
    bars = go.Figure(go.Bar(x=summary.context, y=summary.added_px, error_y=dict(type="data", array=err),
                            customdata=np.stack([summary.n, summary.share_ge6 * 100], 1),
                            marker_color=[concept_color("building" if "wall" in c else c) for c in summary.context],
                            marker_line=dict(color="rgba(40,40,40,0.6)", width=1),
                            hovertemplate="%{x}: %{y:.1f} px added (95% interval over seeds)<br>%{customdata[0]} "
                                          "insertions, %{customdata[1]:.0f}% add 6 px or more<extra></extra>"))
    bars.update_layout(title=f"{concept} pixels added, by what the brush covered (3 seeds x {n_images} images)",
                       height=380, margin=dict(t=40, b=10), yaxis_title=f"{concept} pixels added")
    m2.plotly_chart(bars, width="stretch", key="ctx_bars")
    if summary.violations.notna().any():
        worst = summary.sort_values("violations", ascending=False).iloc[0]
        st.caption(f"Context-rule violations (toyworld: a {concept} away from where it may be): on average "
                   f"{summary.violations.mean():.2f} px per insertion; most on {worst.context} "
                   f"({worst.violations:.2f} px).")
else:
    st.info("Press **Run the context study** (results are kept for every session of this server).")

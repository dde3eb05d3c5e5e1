"""Tracing: how an insertion at one location propagates through the later layers (S-6.5)."""
from __future__ import annotations

import numpy as np
import plotly.express as px
import streamlit as st
import torch

from core.base.hooks import layer_names, layer_shape
from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import Edit, generate, insertion_constants
from core.outputs.visualize import signed_change, to_uint8
from core.studies.units import iou_units
from dashboard.common import (
    ERRORS,
    dissection,
    fail,
    fix_for,
    page_basis,
    parse_units,
    pick_layer,
    pick_model,
    pick_samples,
    segmenter,
)

st.title("Tracing")
st.caption("Insert a concept's units at one featuremap cell and follow the change through every later "
           "layer (supplement S-6.5): per layer, the mean change of its channels, each scaled by the "
           "channel's mean |activation| (1.0 = a change as large as the channel's typical value), and, "
           "in the image, where the pixels got brighter (red) or darker (blue). In a PCA or sparse-feature "
           "basis the inserted things are features, each along its own direction.")
name, G = pick_model()
layer = pick_layer(G)
n_dissect = pick_samples()
seg = segmenter()
names = layer_names(G)
if layer == names[-1]:
    st.info(f"{layer} is the last layer: pick an earlier one to trace what follows it.")
    st.stop()
kind, basis = page_basis(name, G, layer, "trace_basis")
what = "features" if basis is not None else "units"
n_layer_units, h, w = layer_shape(G, layer)
n_units = basis.n_features if basis is not None else n_layer_units
c1, c2, c3 = st.columns([1, 2, 1])
concepts = list(seg.labels[1:])
concept = c1.selectbox("Concept", concepts, index=concepts.index("door") if "door" in concepts else 0,
                       key="trace_concept")
res = dissection(name, G, [layer], n_dissect, compute=False, basis=basis)   # shipped or cached: the concept's own
if res is None and c1.button(f"Dissect {layer}" + (" in this basis" if basis is not None else ""), key="trace_dissect",
                             help=f"Label the {what} of {layer} over {n_dissect} samples (saved; seconds to a "
                                  f"minute), then the default {what} are the {concept} ones"):
    res = dissection(name, G, [layer], n_dissect, compute=True, basis=basis)
if res is not None and concept in res.labels:
    default_units = iou_units(res, layer, concept, 5)
    where = f"the 5 {what} of highest IoU for {concept} at {layer} ({n_dissect}-sample dissection)"
else:
    default_units = list(range(5))
    where = (f"{what} 0-4 ({layer} is not dissected over {n_dissect} samples"
             + (" in this basis" if basis is not None else "")
             + f": press 'Dissect {layer}' for the {concept} {what})")
units_txt = c2.text_input(f"{what.capitalize()} (comma separated)", ", ".join(map(str, default_units)),
                          key=f"trace_units-{name}-{layer}-{kind}-{concept}-{res is not None}",
                          help=f"Default: {where}.")
seed = int(c3.number_input("Seed", 0, 10**6, 0, key="trace_seed"))
s1, s2, s3 = st.columns(3)
y = s1.slider("Row", 0, h - 1, min(h - 1, (3 * h) // 4), key="trace_row",
              help="0 is the top; doors stand on a wall's ground line, in the lower half")
x = s2.slider("Column", 0, w - 1, w // 2, key="trace_col")
strength = s3.select_slider("Strength", [1.0, 2.0, 3.0, 4.0], value=3.0, format_func=lambda v: f"{v:g} x k",
                            key="trace_strength", help=f"Inserted {what} are set to this multiple of their "
                                                       "insertion values k (as on Paint)")


@st.cache_data(show_spinner="Channel scales…", max_entries=16)
def scales(model, layer, _G):
    return causal.channel_scales(_G, names[names.index(layer) + 1:])


try:
    units = parse_units(units_txt, n_units, layer)
    z = z_range(seed, 0, 1, G.z_dim)
    mask = np.zeros((h, w), np.float32)
    mask[y, x] = 1
    with st.spinner(f"Insertion values for {concept} (once per model, layer and concept)…"):
        k = insertion_constants(G, seg, layer, concept, n_samples=100, basis=basis).numpy()
    edit = Edit(layer, units, "insert", strength * k[units], mask, basis=basis)
    df, _ = causal.trace_effect(G, edit, z, scales(name, layer, G))
    with torch.no_grad():
        before, after = to_uint8(generate(G, z))[0], to_uint8(generate(G, z, [edit]))[0]
except ERRORS as e:
    fail("Cannot trace this edit", e, fix_for(e))
change = signed_change(before, after)
i1, i2, i3 = st.columns(3)
i1.image(before, caption=f"Source (seed {seed}); the cell is row {y}, column {x} of {h}x{w}", width="stretch")
i2.image(after, caption=f"{concept} {what} {', '.join(map(str, units))} inserted there at {strength:g} x k",
         width="stretch")
lim = max(float(np.abs(change).max()), 1e-3)
i3.plotly_chart(px.imshow(change, color_continuous_scale="RdBu_r", zmin=-lim, zmax=lim,
                          labels={"color": "brightness change"}, title="Change in the image (0 = none)")
                .update_layout(margin=dict(t=40, b=0, l=0, r=0), height=300)
                .update_xaxes(showticklabels=False).update_yaxes(showticklabels=False), width="stretch")
st.plotly_chart(px.line(df, x="layer", y="change", markers=True,
                        labels={"change": "mean change / channel's mean |activation|"},
                        title=f"How far the insertion at {layer} reaches, layer by layer"), width="stretch")

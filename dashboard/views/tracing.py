"""Tracing: how an insertion at one location propagates through the later layers (S-6.5)."""
from __future__ import annotations

import numpy as np
import plotly.express as px
import streamlit as st

from core.base.hooks import layer_shape
from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import Edit, insertion_constants
from dashboard.common import ERRORS, fail, fix_for, parse_units, pick_layer, pick_model, segmenter

st.title("Tracing")
name, G = pick_model()
layer = pick_layer(G)
seg = segmenter()
c1, c2, c3 = st.columns(3)
concept = c1.selectbox("Concept", seg.labels[1:], index=seg.labels[1:].index("building")
                       if "building" in seg.labels else 0)
units_txt = c2.text_input("Units", "0, 1, 2, 3, 4")
seed = int(c3.number_input("Seed", 0, 10**6, 0))


@st.cache_data(show_spinner="Insertion constants…", max_entries=32)
def constants(model, segmenter_key, layer, concept, _G, _seg):
    return insertion_constants(_G, _seg, layer, concept, n_samples=100).numpy()


@st.cache_data(show_spinner="Channel scales…", max_entries=16)
def scales(model, layer, _G):
    from core.base.hooks import layer_names
    names = layer_names(_G)
    return causal.channel_scales(_G, names[names.index(layer) + 1:])


try:
    n_units, h, w = layer_shape(G, layer)
    units = parse_units(units_txt, n_units, layer)
    z = z_range(seed, 0, 1, G.z_dim)
    y = st.slider("Row", 0, h - 1, h // 2)
    x = st.slider("Column", 0, w - 1, w // 2)
    mask = np.zeros((h, w), np.float32)
    mask[y, x] = 1
    k = constants(name, seg.cache_key, layer, concept, G, seg)
    df, emap = causal.trace_effect(G, Edit(layer, units, "insert", k[units], mask), z, scales(name, layer, G))
except ERRORS as e:
    fail("Cannot trace this edit", e, fix_for(e))
st.plotly_chart(px.line(df, x="layer", y="change", markers=True,
                        title="Normalised change per later layer"), width="stretch")
st.plotly_chart(px.imshow(emap[0], color_continuous_scale="magma", title="Effect at the last layer"),
                width="stretch")

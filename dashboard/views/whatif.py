"""What-if: ablate or insert units in a region and see the images change (paper §3.2)."""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from core.base.hooks import layer_shape
from core.base.sampling import z_range
from core.engine.intervention import Edit, generate, insertion_constants
from core.outputs.visualize import png_bytes, to_uint8
from dashboard.common import (
    ERRORS,
    default_samples,
    dissection,
    fail,
    fix_for,
    page_basis,
    parse_units,
    pick_layer,
    pick_model,
    segmenter,
)

st.title("What-if")
st.caption("Ablate (set to 0) or insert (set to their insertion values k) any units you name, in a "
           "rectangle of the layer's featuremap, and see eight images before and after. In a PCA or sparse-"
           "feature basis the numbers are features, each edited along its own direction. Edits travel with "
           "this session's own computation: other users never see them.")
name, G = pick_model()
layer = pick_layer(G)
seg = segmenter()
kind, basis = page_basis(name, G, layer, "whatif_basis")
bkey = basis.cache_key if basis is not None else "units"
what = "features" if basis is not None else "units"


@st.cache_data(show_spinner="Computing insertion constants…", max_entries=64)
def constants(model: str, segmenter_key: str, layer: str, concept: str, basis_key: str, _G, _seg, _basis):
    """The same values as Paint's (100 samples, stored on disk; shipped for the zoo's models)."""
    return insertion_constants(_G, _seg, layer, concept, n_samples=100, basis=_basis).numpy()


n_layer_units, h, w = layer_shape(G, layer)    # probed once per model and layer
n_units = basis.n_features if basis is not None else n_layer_units


@st.cache_data(max_entries=256, show_spinner=False)
def unedited(model: str, seed: int, _G):
    """The eight images before any edit, as PNG: one pass and one encoding per (model, seed),
    not one per edit (under a lab's load, encoding is a quarter of a what-if's server time)."""
    with torch.no_grad():
        return [png_bytes(x) for x in to_uint8(generate(_G, z_range(seed, 0, 8, _G.z_dim)))]


def default_concept(units_txt: str, options: list[str]) -> int:
    """The index of the concept most of the typed units are labelled with (the stored or shipped
    dissection), else of the first concept."""
    res = dissection(name, G, [layer], st.session_state.get("shared_samples", default_samples()), compute=False,
                     basis=basis)
    try:
        units = parse_units(units_txt, n_units, layer)
    except ERRORS:
        return 0
    if res is None:
        return 0
    best = res.units(layer).concept.iloc[units].value_counts()
    return options.index(best.index[0]) if len(best) and best.index[0] in options else 0


@st.fragment
def what_if():
    """The edit and its images rerun alone (a fragment): an edit costs the server one edited
    pass and eight encodings, not the whole app, and the browser redraws only this part."""
    c1, c2, c3 = st.columns([1, 1, 2])
    mode = c1.radio("Edit", ["ablate", "insert"], horizontal=True)
    seed = int(c2.number_input("Seed", 0, 10**6, 0))
    units_txt = c3.text_input(f"{what.capitalize()} (comma separated)", "0, 1, 2, 3, 4", key=f"whatif_units-{kind}")
    concept = None
    if mode == "insert":
        options = list(seg.labels[1:])
        if st.session_state.get("whatif_concept_for") != (name, layer, kind, units_txt):   # new units: a new default
            st.session_state["whatif_concept_for"] = (name, layer, kind, units_txt)
            st.session_state["whatif_concept"] = options[default_concept(units_txt, options)]
        concept = st.selectbox("Insert values from concept", options, key="whatif_concept",
                               help=f"The {what} are set to their mean activation where this concept is "
                                    f"(insertion values k, 100 samples). Default: the concept most of the chosen "
                                    f"{what} are labelled with in the stored dissection.")
    rows = st.slider("Region rows", 0, h, (0, h))
    cols = st.slider("Region columns", 0, w, (0, w))
    try:
        units = parse_units(units_txt, n_units, layer)
        mask = np.zeros((h, w), np.float32)
        mask[rows[0]:rows[1], cols[0]:cols[1]] = 1
        value = (constants(G.cache_key, seg.cache_key, layer, concept, bkey, G, seg, basis)[units]
                 if mode == "insert" else None)
        z = z_range(seed, 0, 8, G.z_dim)
        before = unedited(G.cache_key, seed, G)
        with torch.no_grad():
            after = to_uint8(generate(G, z, [Edit(layer, units, mode, value, mask, basis=basis)]))
    except ERRORS as e:
        fail("Cannot apply this edit", e, fix_for(e), stop=False)
        return
    st.caption(f"{layer} has {n_layer_units} units on a {h}x{w} grid"
               + (f" ({basis.name}: {n_units} features)" if basis is not None else "")
               + f"; the region covers {int(mask.sum())} cells.")
    st.image(before, width=104, caption=[f"before #{i}" for i in range(8)])
    st.image(list(after), width=104, caption=[f"after #{i}" for i in range(8)], output_format="PNG")


what_if()

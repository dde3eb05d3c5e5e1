"""Shared dashboard state: model pickers and cached resources (no math here: pages call core)."""
from __future__ import annotations

import streamlit as st

import core
from core.hooks import layer_names


@st.cache_resource(show_spinner="Loading generator…", max_entries=16)
def generator(name: str):
    """Shared by every session; never mutated (edits travel with each call)."""
    return core.load_generator(name)


@st.cache_resource(show_spinner="Loading segmenter…")
def segmenter(name: str = "toyworld"):
    return core.load_segmenter(name)


def pick_model(key: str = "model", label: str = "Generator"):
    """Sidebar model picker shared by all pages (remembers the choice across pages)."""
    models = [m for m in core.list_models() if "@" not in m]
    if not models:
        st.warning("No generators are shipped yet: train one with `python scripts/train_gan.py` and "
                   "ship it with `python scripts/ship_gans.py`.")
        st.stop()
    default = st.session_state.get("shared_model", "toyworld/town" if "toyworld/town" in models else models[0])
    name = st.sidebar.selectbox(label, models, index=models.index(default) if default in models else 0,
                                key=key)
    st.session_state["shared_model"] = name
    try:
        return name, generator(name)
    except (ValueError, OSError) as e:
        st.error(f"Could not load {name}: {e}")
        st.stop()


def dissectable_layers(G) -> list[str]:
    return [n for n in layer_names(G) if not n.startswith("output")]


def pick_layer(G, key="layer", default="layer4", sidebar=True):
    layers = dissectable_layers(G)
    default = st.session_state.get("shared_layer", default)
    where = st.sidebar if sidebar else st
    layer = where.selectbox("Layer", layers, index=layers.index(default) if default in layers else 0, key=key)
    st.session_state["shared_layer"] = layer
    return layer

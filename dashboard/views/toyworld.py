"""Toyworld: the embedded default world, its scenes, exact labels and the shipped segmenter."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import toyworld
from dashboard.common import ERRORS, fail

st.title("Toyworld")
st.caption("Procedurally rendered scenes with pixel-exact segmentation — the world GANatomy's "
           "embedded generators, segmenter and FID features are trained on.")


@st.cache_data(max_entries=64, show_spinner=False)
def scenes(scene: str, seed: int, n: int, size: int):
    images, labels = toyworld.render(scene, n, seed=seed, size=size)
    rgb = ((images.permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).byte().numpy()
    return rgb, labels.numpy(), toyworld.colorize(labels).numpy()


@st.cache_resource(show_spinner="Loading the toyworld segmenter…")
def segmenter():
    from core import load_segmenter
    return load_segmenter("toyworld")


c1, c2, c3 = st.columns([2, 1, 1])
scene = c1.segmented_control("Scene type", toyworld.SCENES, default="town") or "town"
seed = int(c2.number_input("Seed", min_value=0, max_value=10**9, value=0, step=1))
show_pred = c3.toggle("Segmenter prediction", value=False)
n = 8
rgb, labels, label_rgb = scenes(scene, seed, n, 128)
st.image(list(rgb), width=128, caption=[f"#{i}" for i in range(n)])
st.image(list(label_rgb), width=128, caption=["labels"] * n, output_format="PNG")
if show_pred:
    try:
        import torch
        seg = segmenter()
        imgs = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1
        pred = seg.segment(imgs).numpy()
        acc = float((pred == labels).mean())
        st.image(list(toyworld.colorize(torch.from_numpy(pred)).numpy()), width=128,
                 caption=["segmenter"] * n, output_format="PNG")
        st.caption(f"Pixel accuracy on these scenes: {acc:.1%}")
    except ERRORS as e:
        fail("The segmenter could not be loaded", e, stop=False)

present = sorted(set(np.unique(labels).tolist()))
legend = " ".join(
    f"<span style='background:rgb{tuple(toyworld.LABEL_COLORS[i].tolist())};padding:1px 6px;"
    "border-radius:3px;margin:2px;display:inline-block;"
    f"color:{'#000' if sum(toyworld.LABEL_COLORS[i].tolist()) > 380 else '#fff'}'>"
    f"{toyworld.LABELS[i]}</span>" for i in present)
st.markdown(legend, unsafe_allow_html=True)
with st.expander("Context rules every generator has to learn"):
    st.markdown(toyworld.__doc__.split("Context rules")[1].split("Appearance varies")[0])

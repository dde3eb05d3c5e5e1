"""Dissection: which units of a layer match which concepts (paper §3.1)."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import core
from core.visualize import unit_strips
from dashboard.common import pick_layer, pick_model, segmenter

st.title("Dissection")
name, G = pick_model()
layer = pick_layer(G)
seg = segmenter()
c1, c2 = st.columns(2)
n = c1.select_slider("Samples", [200, 500, 1000, 2000], value=500,
                     help="Even samples choose each threshold, odd samples measure IoU")
thr = c2.slider("Interpretable when IoU >", 0.01, 0.3, 0.05, 0.01)


def run(layers):
    bar = st.progress(0.0, text="Dissecting…")
    res = core.dissect(G, seg, layers, n, iou_threshold=thr,
                       progress=lambda d, t: bar.progress(min(d / t, 1.0), text=f"Dissecting… {d}/{t} images"))
    bar.empty()
    return res


key = (name, layer, n, thr)
if st.session_state.get("dissection_key") != key:
    st.session_state.pop("dissection", None)
if st.button("Dissect", type="primary") or "dissection" in st.session_state:
    try:
        with st.status(f"Dissecting {layer} of {name} over {n} samples", expanded=False) as status:
            res = st.session_state.get("dissection") or run([layer])
            status.update(label=f"{layer}: {'cached' if res.meta.get('cached') else 'computed'}", state="complete")
        st.session_state["dissection"], st.session_state["dissection_key"] = res, key
    except (ValueError, core.ProtocolError) as e:
        st.error(f"Dissection failed: {e}")
        st.stop()
    units = res.units(layer)
    good = units[units.interpretable]
    m1, m2, m3 = st.columns(3)
    m1.metric("Interpretable units", f"{len(good)} / {len(units)}")
    m2.metric("Distinct concepts", good.label.nunique())
    m3.metric("Mean IoU (interpretable)", f"{good.iou.mean():.3f}" if len(good) else "—")
    counts = good.groupby("label").agg(units=("unit", "size"), mean_iou=("iou", "mean")).reset_index()
    counts = counts.sort_values("units", ascending=False)
    if len(counts):
        fig = px.bar(counts, x="label", y="units", color="label", hover_data={"mean_iou": ":.3f"},
                     title=f"Units per concept — {layer}")
        fig.update_layout(showlegend=False, height=320, margin=dict(t=40, b=10))
        st.plotly_chart(fig, use_container_width=True)
    table = units[["unit", "label", "concept", "iou", "threshold", "iqr", "precision"]].sort_values("iou", ascending=False)
    st.dataframe(table, hide_index=True, use_container_width=True, height=260)
    unit = st.selectbox("Unit", table.unit.tolist(), format_func=lambda u: f"unit {u} · {units.concept[u]} "
                        f"(IoU {units.iou[u]:.3f})")
    _, top_i = res.topk(layer)
    strip = unit_strips(G, layer, [unit], [units.threshold[unit]], top_i[[unit], :8], res.seed)[unit]
    st.image(strip, caption=f"Unit {unit}: top-activating samples, darkened outside its mask", width=8 * 130)
    best = pd.Series(res.iou(layer)[unit], index=res.labels).sort_values(ascending=False).head(5)
    st.bar_chart(best)
else:
    st.info("Press **Dissect** to run (results are cached on disk: a second visit is instant).")

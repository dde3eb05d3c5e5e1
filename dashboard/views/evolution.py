"""Training evolution: how interpretable units emerge over the town checkpoint series (S-6.6)."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

import core
from core import studies
from dashboard.common import ERRORS, fail, fix_for, pick_layer, pick_model, segmenter

st.title("Training evolution")
name, G = pick_model()
layer = pick_layer(G)
try:
    series = core.checkpoint_series(name)
except ERRORS as e:
    fail(f"No training series for {name}", e, "pick a model that ships snapshots (toyworld/town)")
if len(series) < 2:
    st.info(f"{name} has no training snapshots; the town model ships a series (toyworld/town@step-N).")
    st.stop()
st.caption("Checkpoints (training steps): " + ", ".join(f"{s:,}" for s, _ in series) + ". The curves are "
           "drawn against the real images each checkpoint had seen (kimg, log scale): a run may change its "
           "batch size on the way (town: 16 on a CPU, then 64 on a GPU), so steps are not a common clock.")
n = st.select_slider("Samples per checkpoint", [50, 100, 200, 500, 1000], value=200)
if st.button("Dissect every checkpoint", type="primary") or st.session_state.get("evo_key") == (name, layer, n):
    st.session_state["evo_key"] = (name, layer, n)
    bar = st.progress(0.0, text="Dissecting checkpoints…")
    try:
        df = studies.training_evolution(name, segmenter(), [layer], n_samples=n,
                                        progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} checkpoints"))
    except ERRORS as e:
        fail("Dissecting the checkpoints failed", e, fix_for(e))
    bar.empty()
    quality = [c for c in ("fid", "ms_swd") if c in df and df[c].notna().any()]
    clock = "kimg" if df.kimg.notna().all() else "step"
    long = df.melt(id_vars=[clock], value_vars=["interpretable", "concepts", "mean_iou", *quality])
    st.plotly_chart(px.line(long, x=clock, y="value", facet_col="variable", markers=True, log_x=True,
                            title=f"{layer} over training").update_yaxes(matches=None, showticklabels=True),
                    width="stretch")
    if quality:
        st.caption("fid and ms_swd: each checkpoint's sample quality from its model card (lower is better; "
                   "the same sample count for every checkpoint, `scripts/report_gans.py`). MS-SWD compares "
                   "local patch statistics, so it sees blur that the toyworld FID forgives.")
    st.dataframe(df, hide_index=True, width="stretch")

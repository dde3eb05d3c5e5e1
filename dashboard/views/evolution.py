"""Training evolution: how interpretable units emerge over the town checkpoint series (S-6.6)."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import core
from core import studies
from dashboard.common import ERRORS, fail, fix_for, note_turn, pick_layer, pick_model, segmenter

st.title("Training evolution")
st.caption("How interpretable units emerge while a generator trains (supplement S-6.6): every shipped "
           "checkpoint of a training run dissected at one layer, beside its sample quality.")
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
try:        # stored (or shipped with the zoo) results show at once; computing is offered, never required
    df = studies.training_evolution(name, segmenter(), [layer], n_samples=n, cached_only=True)
except ERRORS as e:
    fail("Reading the checkpoints' dissections failed", e, fix_for(e))
if df is None:
    st.info(f"The {len(series)} checkpoints of {name} are not all dissected at {layer} over {n} samples "
            "(about 3 s per checkpoint at 200 samples on 2 CPU cores; saved to `cache/`).")
    if not st.button("Dissect every checkpoint", type="primary"):
        st.stop()
    with st.status(f"Dissecting {len(series)} checkpoints at {layer}…", expanded=True) as box:
        note_turn(box)
        bar = st.progress(0.0, text="Dissecting checkpoints…")
        try:
            df = studies.training_evolution(name, segmenter(), [layer], n_samples=n,
                                            progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} checkpoints"))
        except ERRORS as e:
            fail("Dissecting the checkpoints failed", e, fix_for(e))
        box.update(label=f"Dissected {len(series)} checkpoints (saved to cache/)", state="complete", expanded=False)
METRICS = {"interpretable": "interpretable units", "concepts": "distinct concepts", "mean_iou": "mean IoU",
           "fid": "FID (lower is better)", "ms_swd": "MS-SWD (lower is better)"}
quality = [c for c in ("fid", "ms_swd") if c in df and df[c].notna().any()]
clock = "kimg" if df.kimg.notna().all() else "step"
shown = ["interpretable", "concepts", "mean_iou", *quality]
fig = make_subplots(rows=1, cols=len(shown), subplot_titles=[METRICS[m] for m in shown], horizontal_spacing=0.06)
for j, m in enumerate(shown, 1):
    fig.add_trace(go.Scatter(x=df[clock], y=df[m], mode="lines+markers", name=METRICS[m], showlegend=False,
                             customdata=df["step"], hovertemplate=f"step %{{customdata:,}}<br>{METRICS[m]}: "
                             "%{y:.3g}<extra></extra>"), row=1, col=j)
    fig.update_xaxes(type="log", title_text="thousand images seen" if clock == "kimg" else "training step",
                     row=1, col=j)
fig.update_layout(height=330, margin=dict(t=60, b=10, l=10, r=10), title=f"{layer} of {name} over training")
st.plotly_chart(fig, width="stretch")
st.caption(f"Each point is one checkpoint dissected at {layer} over {n} samples: interpretable units "
           "(the reference rule: I/H above 0.01 and IoU above 0.05), the distinct concepts they cover and "
           "their mean IoU."
           + (" FID and MS-SWD: each checkpoint's sample quality from its model card (the same sample count "
              "for every checkpoint, `scripts/report_gans.py`); MS-SWD compares local patch statistics, so it "
              "sees blur that the toyworld FID forgives." if quality else ""))
st.dataframe(df, hide_index=True, width="stretch")

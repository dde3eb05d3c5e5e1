"""Causal units: which units *cause* a concept (ACE optimisation, eq. 5-6) and ablation curves."""
from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

from core import studies
from core.base.sampling import z_range
from core.engine import causal
from core.engine.intervention import Edit, generate
from core.outputs.visualize import to_uint8
from core.studies import over_seeds
from dashboard.common import (
    ERRORS,
    fail,
    fix_for,
    generator,
    note_turn,
    page_basis,
    pick_layer,
    pick_model,
    pick_samples,
    segmenter,
    zoo,
)

st.title("Causal units")
st.caption("Which units *cause* a concept (paper §3.2, eq. 5-6): ACE learns a weight α in [0, 1] per unit so "
           "that moving the units by α toward their insertion values k (r' = (1 − α) r + α k) at a cell without "
           "the concept adds it, and toward 0 at a cell with it removes it, with a penalty on ‖α‖². The top "
           "units by α are the causal set; the ablation curve checks it against the IoU ranking: the share of the "
           "concept's pixels "
           "gone when the first n units of each ranking are ablated everywhere (higher is more causal).")
name, G = pick_model()
layer = pick_layer(G)
n_dissect = pick_samples()
seg = segmenter()
kind, basis = page_basis(name, G, layer, "causal_basis", help="Find the causal units (the paper), PCA directions "
                         "or sparse features: ACE then weighs each feature, moved along its own direction.")
what = "features" if basis is not None else "units"
bkey = basis.cache_key if basis is not None else "units"
c1, c2, c3 = st.columns(3)
concept = c1.selectbox("Concept", seg.labels[1:], index=seg.labels[1:].index("door") if "door" in seg.labels else 0)
steps = c2.select_slider("Optimisation steps", [20, 50, 100, 200], value=50)
curve_n = c3.select_slider("Images for the ablation curve", [50, 100, 200, 500], value=100)


def run_ace(layer, concept, steps, n_dissect):
    """ACE from core's disk cache (cache/ace: any session, the Paint page and scripts share it)."""
    bar = st.progress(0.0, text="Optimising alpha…")
    res = causal.ace(G, seg, layer, concept, n_steps=steps, dissect_samples=n_dissect, basis=basis,
                     progress=lambda s, n, loss: bar.progress(s / n, text=f"step {s}/{n} · loss {loss:.3f}"))
    bar.empty()
    return res, res.k


key = (name, layer, concept, steps, bkey)
try:        # a result computed before (by any session, the Paint page or a script) shows at once
    res = causal.ace(G, seg, layer, concept, n_steps=steps, dissect_samples=n_dissect, cached_only=True, basis=basis)
except ERRORS as e:
    fail(f"Cannot look up the causal units of {concept}", e, fix_for(e))
if res is None and (st.button(f"Find causal {what}", type="primary", key="ace_run")
                    or st.session_state.get("ace_key") == key):
    st.session_state["ace_key"] = key
    try:
        with st.status(f"ACE optimisation for {concept} at {layer}", expanded=True) as box:
            note_turn(box)
            res, _ = run_ace(layer, concept, steps, n_dissect)
            box.update(state="complete", expanded=False)     # its progress bar is gone: no empty box
    except ERRORS as e:
        fail(f"Cannot find the causal units of {concept}", e, fix_for(e))
if res is not None:
    st.write(f"Top {res.top_n} causal {what}{f' ({basis.name})' if basis is not None else ''}: "
             f"`{', '.join(map(str, res.units))}` "
             f"({len(res.losses)} steps, computed in {res.seconds:.0f} s; stored in `cache/ace`)")
    loss = go.Figure([go.Scatter(y=res.losses, mode="lines", name="per step", line=dict(color="#b0b8c8", width=1)),
                      go.Scatter(y=res.loss_trend(10), mode="lines", name="mean of the last 10 steps",
                                 line=dict(color="#c0392b", width=3))])
    loss.update_layout(title="ACE loss (−δ + λ‖α‖²; lower is better)", xaxis_title="step", yaxis_title="loss",
                       height=320, margin=dict(t=40, b=10), legend=dict(orientation="h", y=1.02, x=1, xanchor="right"))
    st.plotly_chart(loss, width="stretch")
    st.caption("Each step inserts at a few sampled locations, so the per-step loss is noisy; the thick line is "
               "its trend. δ: the concept's normalised pixel gain from inserting the α-weighted units.")
    if st.toggle("Ablation curve: ACE ranking vs IoU ranking", key="ace_curve"):
        curve_seeds = st.select_slider("Seeds of the curve (a fresh ACE and fresh images each)", [1, 3], value=1,
                                       key="curve_seeds", help="Three seeds give every point a 95% interval, "
                                       "in about three times the time (each seed's ACE and curve are stored)")
        if curve_seeds == 1:
            # alpha starts at IoU / max IoU, so its order is the IoU order
            rankings = {"ace": res.ranking[:20].tolist(), "iou": (-res.init).argsort(kind="stable")[:20].tolist()}
            args = dict(counts=(1, 2, 5, 10, 20), n_samples=curve_n)
            try:
                df = causal.ablation_curve(G, seg, layer, concept, rankings, cached_only=True, basis=basis,
                                                  **args)
                if df is None:
                    with st.status(f"Ablation curve over {curve_n} images…", expanded=True) as box:
                        note_turn(box)
                        bar = st.progress(0.0, text="Ablating…")
                        df = causal.ablation_curve(
                            G, seg, layer, concept, rankings, basis=basis,
                            progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} images"), **args)
                        box.update(state="complete", expanded=False)
            except ERRORS as e:
                fail("The ablation curve failed", e, fix_for(e))
            st.plotly_chart(px.line(df, x="n", y="removed", color="ranking", markers=True,
                                    labels={"n": f"{what} ablated", "removed": f"fraction of {concept} pixels removed"},
                                    title=f"Fraction of {concept} pixels removed"), width="stretch")
            seconds = df.attrs.get("seconds")
            st.caption(("Stored result" if df.attrs.get("stored") else "Computed now")
                       + (f" (computing it took {seconds:.1f} s)" if seconds is not None else "")
                       + f"; ablating over the whole featuremap, {curve_n} images; kept in `cache/curve`.")
        else:
            args = dict(seeds=(0, 1, 2), counts=(1, 2, 5, 10, 20), n_samples=curve_n, ace_steps=steps,
                        dissect_samples=n_dissect)
            try:
                df = over_seeds.curve_over_seeds(G, seg, layer, concept, cached_only=True, basis=basis, **args)
                if df is None:
                    with st.status(f"ACE and ablation curves for 3 seeds over {curve_n} images each…",
                                   expanded=True) as box:
                        note_turn(box)
                        bar = st.progress(0.0, text="Seed 1 of 3…")
                        df = over_seeds.curve_over_seeds(
                            G, seg, layer, concept, basis=basis,
                            progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} seeds done"), **args)
                        box.update(state="complete", expanded=False)
            except ERRORS as e:
                fail("The ablation curves failed", e, fix_for(e))
            fig = go.Figure([go.Scatter(x=g.n, y=g.removed, mode="lines+markers", name=name,
                                        error_y=dict(type="data", symmetric=False, array=g.ci_high - g.removed,
                                                     arrayminus=g.removed - g.ci_low))
                             for name, g in df.groupby("ranking")])
            fig.update_layout(title=f"Fraction of {concept} pixels removed: mean of 3 seeds, 95% interval",
                              xaxis_title=f"{what} ablated", yaxis_title=f"fraction of {concept} pixels removed",
                              height=380, margin=dict(t=40, b=10))
            st.plotly_chart(fig, width="stretch")
            st.caption(f"Seeds 0, 1, 2: each a fresh ACE ({steps} steps, from the IoU of one dissection of "
                       f"{n_dissect} samples) and {curve_n} fresh images; bars: 95% t-interval over the seeds. "
                       "Each seed's ACE and curve are kept in `cache/`.")
    z = z_range(7, 0, 6, G.z_dim)
    with torch.no_grad():
        before = to_uint8(generate(G, z))
        after = to_uint8(generate(G, z, [Edit(layer, res.units, basis=basis)]))
    st.image(list(before), width=104, caption=["before"] * 6, output_format="PNG")
    st.image(list(after), width=104, caption=[f"{concept} {what} ablated"] * 6, output_format="PNG")
else:
    st.info(f"Pick a concept and press **Find causal {what}** (its result is stored: any later visit shows it).")

# ----------------------------------------------------------------------------- Fig. 9-10
st.subheader("Removal table across scene types")
st.caption(f"For each scene type's generator: the {concept} causal units at {layer} (ACE, {steps} steps), "
           f"and the percent of {concept} pixels removed when they are ablated ({curve_n} images)."
           + (" In units: each generator's features are its own, so the table compares units."
              if basis is not None else ""))


n_seeds = st.select_slider("Seeds (a fresh ACE and fresh images each)", [1, 3], value=1, key="removal_seeds",
                           help="Three seeds give each figure a 95% interval, in three times the time")


@st.cache_data(show_spinner=False, max_entries=16)
def removal(names, segmenter_key, layer, concept, steps, n_images, seeds, _seg):
    bar = st.progress(0.0, text="ACE per scene type…")
    gens = {name.split("/")[-1]: generator(name) for name in names}
    df = over_seeds.removal_over_seeds(gens, _seg, layer, [concept], seeds=seeds, n_units=20, ace_steps=steps,
                                   n_samples=n_images,
                                   progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} ACE optimisations"))
    bar.empty()
    return df


bases = tuple(g["base"] for g in studies.zoo_groups(zoo()).values()
              if str(g["base"]).startswith("toyworld/"))
rkey = (bases, seg.cache_key, layer, concept, steps, curve_n, tuple(range(n_seeds)))
if st.button(f"Removal table for {concept} ({len(bases)} generators)", key="removal_run") \
        or st.session_state.get("removal_key") == rkey:
    st.session_state["removal_key"] = rkey
    try:
        with st.status(f"Removal table for {concept}", expanded=True) as box:
            note_turn(box)
            table = removal(*rkey, seg)
            box.update(state="complete", expanded=False)
    except ERRORS as e:
        fail("The removal table failed", e, fix_for(e))
    shown = table.drop(columns=["per_seed"] + ([] if n_seeds > 1 else ["ci_low", "ci_high", "seeds"]))
    pct = st.column_config.NumberColumn
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config={"removed_percent": pct("removed %", format="%.1f"),
                                "ci_low": pct("95% interval, low", format="%.1f"),
                                "ci_high": pct("high", format="%.1f")})
    st.caption("Negative: ablating the units *adds* pixels of the concept (the units ACE ranks first are not "
               "the ones that draw it everywhere)." if (table.removed_percent < 0).any() else
               "Kept for every session of this server.")

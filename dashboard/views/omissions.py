"""Omissions: what a generator leaves out ("Seeing What a GAN Cannot Generate", ICCV 2019): per-class
segmentation statistics of generated vs real scenes and the Fréchet Segmentation Distance."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import core
from core import toyworld
from core.studies.comparisons import change_matrix, concept_arrival, omissions_over_training
from core.studies.inversion import reconstruction_gallery
from core.studies.omissions import card_scene, class_chart, omission_rule, toyworld_omissions
from dashboard.common import (
    ERRORS,
    concept_color,
    fail,
    feature_net,
    fix_for,
    generator,
    inverter,
    note_turn,
    pick_model,
    plain,
    segmenter,
)

SAMPLE_CHOICES = [50, 200, 500, 1000, 2000]       # images per side; 2,000 ships (scripts/ship_results.py)
DEFAULT_SAMPLES = 2000
CHART_CLASSES = 12
GALLERY_N, GALLERY_STEPS = 8, 100                  # the reconstruction gallery; shipped for town (ship_results.py)
GALLERY_LAYER = "layer4"
TRAINING_SAMPLES = 1000                            # images per side per checkpoint; shipped for town (ship_results.py)
ARRIVAL_WITHIN = 0.5

st.title("Omissions")
st.caption("What a generator leaves out (Bau et al., *Seeing What a GAN Cannot Generate*, ICCV 2019): generated "
           "and real scenes are segmented, and per class the mean share of an image it covers is compared. FSD "
           "(Fréchet Segmentation Distance, ×100 as the paper prints it) is the Fréchet distance between the "
           "per-image class-fraction vectors of both sides; the floor is the same distance between two disjoint "
           "sets of real scenes, so an FSD near the floor is noise.")
name, G = pick_model()
try:
    series = core.checkpoint_series(name) if name.startswith("toyworld/") else []
except ERRORS:
    series = []
if len(series) > 1:          # a training series: its snapshots too (the final model by default)
    steps = {m: s for s, m in series}
    model = st.sidebar.selectbox("Checkpoint", list(steps)[::-1], key="omissions_checkpoint",
                                 format_func=lambda m: f"step {steps[m]:,}" + (" (final)" if m == name else ""),
                                 help="The snapshots of this model's training run: what it leaves out as it trains.")
    if model != name:
        try:
            name, G = model, generator(model)
        except ERRORS as e:
            fail(f"Could not load {model}", e, fix_for(e))
seg = segmenter()
c1, c2 = st.columns([2, 1])
n = c1.select_slider("Images per side", SAMPLE_CHOICES, value=DEFAULT_SAMPLES, key="omissions_n",
                     help="Generated images, and as many real scenes (twice: the second set is the floor). 2,000 "
                          "per side is shipped for the zoo's models; smaller counts are quick looks with a higher "
                          "floor.")

scene = card_scene(G)
if scene is None:
    st.info(f"**{plain(name)}** names no toyworld scene in its model card, so the page does not know which real "
            "images it was trained on. Choose the toyworld scene type its training images were (the real side is "
            "rendered by toyworld, which also gives its exact labels; for a folder of your own real images use the "
            "command line: `ganatomy omissions --model M --real-dir DIR`).", icon=":material/help:")
    scene = c2.selectbox("Real scene type", toyworld.SCENES, index=None, key="omissions_scene",
                         placeholder="choose a scene type")
    if scene is None:
        st.stop()
else:
    c2.markdown(f"Real scenes: toyworld **{scene}** (its model card)")

try:        # stored (or shipped with the zoo) results show at once; computing is offered, never required
    res = toyworld_omissions(G, seg, scene, n, cached_only=True)
except ERRORS as e:
    fail(f"Reading the omission statistics of {name} failed", e, fix_for(e))
if res is None:
    st.info(f"The omission statistics of {plain(name)} over {n:,} images per side are not computed yet "
            f"({3 * n:,} images generated or rendered and segmented: about {max(1, round(3 * n / 160))} s on 2 idle "
            "CPU cores, longer on a busy server; saved to `cache/`, so any later visit shows them at once).")
    if not st.button("Compute omissions", type="primary", key="omissions_run"):
        st.stop()
    with st.status(f"Segmenting {n:,} generated and {2 * n:,} real scenes…", expanded=True) as box:
        note_turn(box)
        bar = st.progress(0.0, text="Generating and segmenting…")
        part = ("generated", "real", "real (floor)")
        try:
            res = toyworld_omissions(G, seg, scene, n, progress=lambda d, t: bar.progress(
                min(d / t, 1.0), text=f"{d:,}/{t:,} images ({part[min(2, 3 * (d - 1) // t)]})"))
        except ERRORS as e:
            fail(f"The omission statistics of {name} failed", e, fix_for(e))
        box.update(label=f"Measured {name} in {res.seconds:.0f} s (saved to cache/)", state="complete",
                   expanded=False)

summary = res.summary()
fsd, floor, bias = summary["fsd"], summary["floor"], summary["segmenter_vs_exact"]
m = st.columns(5)
m[0].metric("FSD", f"{fsd['fsd']:.4g}", help="Generated vs real scenes, both through the segmenter (×100).")
m[1].metric("Real-vs-real floor", f"{floor['fsd']:.4g}",
            help=f"Two disjoint sets of {res.n_samples:,} real scenes (seeds {res.real_seed} and {res.floor_seed}).")
m[2].metric("Mean term", f"{fsd['mean_term']:.4g}", help="100 |μ_real − μ_gen|²: classes drawn too much or too little.")
m[3].metric("Covariance term", f"{fsd['cov_term']:.4g}",
            help="The rest of FSD: how classes vary and co-occur from image to image.")
if bias is not None:
    m[4].metric("Segmenter vs exact labels", f"{bias['fsd']:.4g}",
                help="The same real scenes through the segmenter vs their exact toyworld labels: the segmenter's own "
                     "bias, which also sits in FSD.")
ratio = fsd["fsd"] / floor["fsd"] if floor["fsd"] > 0 else float("inf")
st.caption(f"FSD is {ratio:.1f}× its floor over {res.n_samples:,} images per side (generated seed {res.seed}, real "
           f"seed {res.real_seed}; {res.real_name}). The floor shrinks with more images, a generator's real "
           f"difference does not. Computed in {res.seconds:.0f} s.")

omitted = summary["omitted"]
rule = omission_rule(summary)
if omitted:
    st.warning(f"**Omitted:** {', '.join(omitted)}. Rule: {rule}.", icon=":material/visibility_off:")
else:
    st.success(f"**No class is omitted** by the rule: {rule}.", icon=":material/visibility:")

chart = class_chart(res, CHART_CLASSES)
x, real, gen, change = (chart[c].tolist() for c in ("label", "real_area", "generated_area", "relative_change"))
fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4],
                    subplot_titles=["Mean area per image (log scale)", "Relative change (gen − real) / real"])
fig.add_trace(go.Bar(x=x, y=real, name="real (training) scenes", marker_color="#4c78a8",
                     hovertemplate="%{x}: %{y:.4f}<extra>real</extra>"), row=1, col=1)
fig.add_trace(go.Bar(x=x, y=gen, name="generated", marker_color="#f58518",
                     hovertemplate="%{x}: %{y:.4f}<extra>generated</extra>"), row=1, col=1)
fig.add_trace(go.Bar(x=x, y=change, showlegend=False, name="change",
                     marker_color=[concept_color(c) for c in x], marker_line_color="#333",
                     marker_line_width=1, hovertemplate="%{x}: %{y:+.1%}<extra>change</extra>"), row=2, col=1)
fig.add_hline(y=summary["omitted_below"], line_dash="dash", line_color="#d62728", row=2, col=1,
              annotation_text="omitted below", annotation_position="bottom left")
fig.update_yaxes(type="log", dtick=1, row=1, col=1)          # ticks at powers of ten only
fig.update_yaxes(tickformat="+.0%", zeroline=True, zerolinecolor="#888", row=2, col=1)
fig.update_layout(barmode="group", height=520, margin=dict(t=40, b=10, l=10, r=10),
                  legend=dict(orientation="h", yanchor="bottom", y=1.06, x=1, xanchor="right"))
st.plotly_chart(fig, width="stretch", key="omissions_chart")
st.caption(f"The {len(chart)} classes of largest mean area in the real (training) scenes, largest first, as the "
           "paper draws them: above, the real and generated mean share of an image (log scale); below, the relative "
           "change, bar colours those of the concepts.")

st.subheader("Every class")
table = res.table()
shown = {"label": "class", "real_area": "real area", "generated_area": "gen. area", "relative_change": "change",
         "floor_change": "floor change", "real_share": "real: in", "generated_share": "gen.: in",
         "exact_area": "exact area", "segmenter_change": "segmenter bias", "judged": "judged"}
st.dataframe(table[[c for c in shown if c in table]].rename(columns=shown), hide_index=True, width="stretch",
             key="omissions_table",
             column_config={**{c: st.column_config.NumberColumn(format="percent") for c in
                               ("change", "floor change", "real: in", "gen.: in", "segmenter bias")},
                            **{c: st.column_config.NumberColumn(format="%.4f") for c in
                               ("real area", "gen. area", "exact area")}})
st.caption("Sortable (click a header). Most omitted first. Areas: mean share of an image, real scenes and generated "
           "ones through the segmenter, *exact area* from the real scenes' exact labels; *change*: (gen − real) / "
           "real; *floor change*: the second real set against the first (noise); *in*: the share of images where the "
           "class appears at all; *segmenter bias*: (segmenter − exact) / exact on the same real scenes. Classes "
           f"whose real area is below {summary['min_area']:g} are not judged (too few pixels) and come last.")

if res.exact is not None:
    st.subheader("The segmenter's bias, apart from the generator's")
    fig2 = go.Figure([
        go.Bar(x=x, y=chart.segmenter_change.tolist(), name="segmenter vs exact labels (same real scenes)",
               marker_color="#9d9d9d", hovertemplate="%{x}: %{y:+.1%}<extra>segmenter</extra>"),
        go.Bar(x=x, y=change, name="generated vs real (through the segmenter)",
               marker_color="#f58518", hovertemplate="%{x}: %{y:+.1%}<extra>generator</extra>")])
    fig2.update_layout(barmode="group", height=300, margin=dict(t=10, b=10, l=10, r=10), yaxis_tickformat="+.0%",
                       legend=dict(orientation="h", yanchor="bottom", y=1.02, x=1, xanchor="right"))
    st.plotly_chart(fig2, width="stretch", key="omissions_bias")
    st.caption("The real scenes measured twice: through the segmenter (as the generated ones are) and from "
               "toyworld's exact labels. Grey: how far the segmenter's own reading of a class is off; orange: how "
               "far the generator is off, read by the same segmenter. A class whose grey bar is as large as its "
               "orange one is the segmenter's doing, not the generator's. Segmenter vs exact labels as FSD: "
               f"{bias['fsd']:.4g}.")


if len(series) > 1:
    st.divider()
    base = series[-1][1]
    st.subheader("Which concepts arrive first during training")
    st.caption(f"The same statistics for every checkpoint of {plain(base)}'s training run ({TRAINING_SAMPLES:,} "
               f"images per side, the same real {scene} scenes for each): a class *arrives* at the first checkpoint "
               f"from which its generated mean area stays within ±{ARRIVAL_WITHIN:.0%} of the real one.")
    try:
        over = omissions_over_training(base, seg, TRAINING_SAMPLES, scene=scene, cached_only=True)
    except ERRORS as e:
        fail(f"Reading the checkpoints' statistics of {base} failed", e, fix_for(e), stop=False)
        over = None
    if over is None and st.button(f"Measure all {len(series)} checkpoints", key="omissions_training_run",
                                  help=f"{3 * TRAINING_SAMPLES * len(series):,} images generated or rendered and "
                                       "segmented; saved to cache/"):
        with st.status(f"Measuring {len(series)} checkpoints…", expanded=True) as box:
            note_turn(box)
            bar = st.progress(0.0, text="First checkpoint…")
            try:
                over = omissions_over_training(base, seg, TRAINING_SAMPLES, scene=scene, progress=lambda d, t:
                                               bar.progress(d / t, text=f"{d}/{t} checkpoints"))
                box.update(label=f"Measured {len(series)} checkpoints (saved to cache/)", state="complete",
                           expanded=False)
            except ERRORS as e:
                fail(f"Measuring the checkpoints of {base} failed", e, fix_for(e), stop=False)
    if over is not None:
        arrival = concept_arrival(over, ARRIVAL_WITHIN)
        mat = change_matrix(over, arrival)
        heat = go.Figure(go.Heatmap(
            z=mat.clip(-1, 1).to_numpy(), x=[f"{s:,}" for s in mat.columns], y=list(mat.index),
            customdata=mat.to_numpy(), colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
            colorbar=dict(title="change", tickformat="+.0%"),
            hovertemplate="%{y} at step %{x}: %{customdata:+.0%}<extra></extra>"))
        heat.update_layout(height=80 + 24 * len(mat), margin=dict(t=10, b=10, l=10, r=10),
                           xaxis=dict(title="training step", type="category"), yaxis=dict(autorange="reversed"))
        st.plotly_chart(heat, width="stretch", key="omissions_training_heat")
        st.caption("Relative change (gen − real) / real per class and checkpoint (clipped to ±100%; hover for the "
                   "value): red, drawn too little; blue, too much. Classes in order of arrival, the earliest first.")
        st.dataframe(arrival.rename(columns={"label": "class", "arrival_step": "arrives at step",
                                             "first_change": "change at the first checkpoint",
                                             "final_change": "change at the final model"}),
                     hide_index=True, width="stretch", key="omissions_arrival",
                     column_config={c: st.column_config.NumberColumn(format="percent") for c in
                                    ("change at the first checkpoint", "change at the final model")})
    elif over is None:
        st.info(f"Not measured yet for {plain(base)}: press the button ({len(series)} checkpoints).")



st.divider()
st.subheader("What a reconstruction drops")
st.caption(f"Held-out real {scene} scenes reconstructed through the generator by layer inversion (Bau et al., ICCV "
           f"2019, section 3: an encoder's guess of {GALLERY_LAYER}, then {GALLERY_STEPS} steps of optimisation "
           "per image), then segmented. A pixel is *dropped* when the reconstruction's segmentation does not "
           "keep its exact toyworld class: outlined in magenta on the real scene (left) and the reconstruction "
           "(right). What a generator cannot reconstruct it cannot draw.")
try:
    enc, enc_meta = inverter(name, G, GALLERY_LAYER)
except ERRORS as e:
    fix = fix_for(e)
    st.info(f"**{plain(name)}** has no inverter into {GALLERY_LAYER} yet, so its reconstructions cannot be shown. "
            f"{plain(str(e))}" + (f"\n\nTo train one: `{fix}`" if fix else ""), icon=":material/info:")
    st.stop()
try:
    gal = reconstruction_gallery(G, seg, enc, scene, GALLERY_N, steps=GALLERY_STEPS, features=feature_net(),
                                 layer=GALLERY_LAYER, cached_only=True)
except ERRORS as e:
    fail(f"Reading the reconstruction gallery of {name} failed", e, fix_for(e))
if gal is None:
    st.info(f"The reconstructions of {GALLERY_N} real scenes by {plain(name)} are not computed yet ({GALLERY_STEPS} "
            "optimisation steps through the generator and the feature network: about 2 minutes on 2 CPU cores, "
            "seconds on a GPU; saved to `cache/`, so any later visit shows them at once).")
    if not st.button(f"Reconstruct {GALLERY_N} real scenes", type="primary", key="omissions_gallery_run"):
        st.stop()
    with st.status(f"Inverting {GALLERY_N} real {scene} scenes into {GALLERY_LAYER}…", expanded=True) as box:
        note_turn(box)
        bar = st.progress(0.0, text="Optimising…")
        try:
            gal = reconstruction_gallery(G, seg, enc, scene, GALLERY_N, steps=GALLERY_STEPS,
                                         features=feature_net(), layer=GALLERY_LAYER,
                                         progress=lambda d, t: bar.progress(min(d / t, 1.0), text=f"step {d}/{t}"))
        except ERRORS as e:
            fail(f"Reconstructing real scenes with {name} failed", e, fix_for(e))
        box.update(label=f"Reconstructed {GALLERY_N} scenes in {gal.seconds:.0f} s (saved to cache/)",
                   state="complete", expanded=False)

gs = gal.summary()
g = st.columns(4)
g[0].metric("Mean recall", f"{gs['mean_recall']:.3f}",
            help=f"Per class of the {scene} scenes, the share of its exact pixels that the reconstruction's "
                 "segmentation keeps (pooled over the scenes), averaged over the classes.")
g[1].metric("Segmenter alone", f"{gs['segmenter_mean_recall']:.3f}",
            help="The same recall for the real scenes themselves segmented: what a perfect reconstruction keeps.")
g[2].metric("Mean L1", f"{gs['l1']:.4f}", help="Mean absolute error of the reconstructions (pixels in [-1, 1]).")
g[3].metric("Pixels dropped (%)", f"{gs['dropped_percent']:.1f}",
            help="The share of all pixels whose exact class the reconstruction's segmentation does not keep.")
cols = st.columns(2)
for i in range(gal.n):
    lost = gal.losses(i)
    said = ", ".join(f"{r['label']} {r['lost']:.0%} of {r['pixels']} px" for r in lost) or "nothing"
    cols[i % 2].image(gal.panel(i), caption=f"Scene {i + 1}: L1 {gs['l1_per_image'][i]:.3f} · lost most: {said}")
st.dataframe(gal.class_table().rename(columns={"label": "class", "pixels": "exact pixels", "dropped": "dropped",
                                               "recall": "recall", "segmenter_recall": "segmenter alone"}),
             hide_index=True, width="stretch", key="omissions_gallery_table",
             column_config={c: st.column_config.NumberColumn(format="percent")
                            for c in ("recall", "segmenter alone")})
st.caption(f"Per class over the {gal.n} scenes (toyworld seed {gal.seed}, held out from training), the classes the "
           "reconstructions lose most first. *Segmenter alone*: the segmenter's own reading of the real scenes; a "
           "class it already misses is not the generator's doing. Reconstructed in "
           f"{gal.seconds:.0f} s with the inverter `{plain(enc_meta.get('path', '').split('/')[-1])}`.")

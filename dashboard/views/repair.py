"""Artifact repair: per-unit FID finds artifact units; ablating them should lower FID."""
from __future__ import annotations

import streamlit as st

import core
from core.base import cache
from core.base.devices import for_serving
from core.engine import repair
from core.outputs.visualize import unit_strips
from core.studies import evaluation
from core.userdata.flags import flag_details, flag_units, recently_unflagged, stale_flags, undo_unflag, unflag_units
from dashboard.common import ERRORS, device, fail, fix_for, note_turn, page_basis, pick_layer, pick_model, plain

st.title("Artifact repair")
st.caption("Unit FID (paper §4.2, supplement S-6.1): for each unit, the FID of the generated images where "
           "that unit is most active (its top images) against real scenes. A unit whose top images are far "
           "from real ones (a high unit FID) draws artifacts; ablating such units should lower the "
           "generator's FID, more than ablating as many random units. FID is in the toyworld feature space: "
           "0 is the real "
           "distribution, two sets of real scenes differ by about 0.01, the shipped town is about 0.07.")
name, G = pick_model()
layer = pick_layer(G)
kind, basis = page_basis(name, G, layer, "repair_basis", help="Unit FID of the layer's units (the paper), of its PCA "
                         "directions or of its sparse features (each ranked by its own feature map); ablating a "
                         "feature removes it along its own direction.")
bkey = basis.cache_key if basis is not None else "units"
what, one = ("features", "feature") if basis is not None else ("units", "unit")
c1, c2 = st.columns(2)
n = c1.select_slider("Generated images", [500, 2000, 5000, 20000], value=500)
top = c2.select_slider("Top images per unit", [50, 100, 250, 1000], value=50)


@st.cache_resource(show_spinner=False)
def _features(where: str):
    return for_serving(core.load_features("toyworld", device=where))


def features():
    """The feature network of FID, shared, on the server's device (beside the generator)."""
    return _features(str(device()))


@st.cache_data(show_spinner=False, max_entries=16)
def run_unit_fid(model, layer, n, top, basis_key, _G, _basis):
    bar = st.progress(0.0, text="Generating…")
    real = evaluation.scene_stats(features(), _G.meta.get("scene", "town"), _G.resolution)
    uf = repair.unit_fid(_G, layer, features(), real, n_samples=n, top=min(top, n), basis=_basis,
                                progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} images"))
    bar.empty()
    return uf, real


@st.cache_data(show_spinner=False, max_entries=32)
def compare_fid(model, layer, n, chosen, n_units, basis_key, _G, _real, _basis):
    bar = st.progress(0.0, text="FID before and after ablating…")
    t, _ = repair.repair_table(_G, layer, features(), _real, list(chosen), n_candidates=n,
                               n_eval=max(n // 5, 50), n_units=n_units, basis=_basis,
                               progress=lambda d, total: bar.progress(min(d / total, 1.0), text=f"{d}/{total} images"))
    bar.empty()
    return t


def stored_unit_fid(layer, n, top):
    """The unit FID stored before (any session, the CLI), with its real statistics; None if not."""
    real = evaluation.scene_stats(features(), G.meta.get("scene", "town"), G.resolution, cached_only=True)
    if real is None:
        return None, None
    return repair.unit_fid(G, layer, features(), real, n_samples=n, top=min(top, n), cached_only=True,
                                  basis=basis), real


def fid_comparison(label: str, chosen, n_units: int, what: str):
    """The button and table of FID before and after ablating ``chosen`` (units, or the basis's features)."""
    fkey = (name, layer, n, tuple(chosen), bkey)
    if not (st.button(label, key="fidcmp_run") or st.session_state.get("fidcmp_key") == fkey):
        return
    st.session_state["fidcmp_key"] = fkey
    try:
        with st.status("FID before and after ablating", expanded=True) as box:
            note_turn(box)
            t = compare_fid(name, layer, n, tuple(chosen), n_units, bkey, G, real, basis)
            box.update(state="complete", expanded=False)
    except ERRORS as e:
        fail("The FID comparison failed", e, fix_for(e))
    st.dataframe(t, hide_index=True, width="stretch")
    st.caption("FID in the toyworld feature space against 10,000 real scenes (lower is better; two sets of real "
               f"scenes differ by about 0.01): {what}. Kept for every session of this server.")


try:
    uf, real = stored_unit_fid(layer, n, top)
except ERRORS as e:
    fail("Reading the stored unit FID failed", e, fix_for(e))
if uf is None and (st.button(f"Compute {one} FID", type="primary", key="ufid_run")
                   or st.session_state.get("ufid_key") == (name, layer, n, top, bkey)):
    st.session_state["ufid_key"] = (name, layer, n, top, bkey)
    try:
        with st.status(f"Per-{one} FID", expanded=True) as box:
            note_turn(box)
            uf, real = run_unit_fid(name, layer, n, top, bkey, G, basis)
            box.update(state="complete", expanded=False)     # its progress bar is gone: no empty box
    except ERRORS as e:
        fail(f"Per-{one} FID failed", e, fix_for(e))
if uf is not None and basis is not None:
    table = uf.table().rename(columns={"unit": "feature"})
    st.dataframe(table.head(30), hide_index=True, width="stretch", height=240)
    st.caption(f"The 30 features ({basis.name}) of highest FID at {layer}: each over its top {uf.top} of "
               f"{uf.n_samples} generated images (computed in {uf.seconds:.0f} s; stored in `cache/unit_fid`). "
               "Flags are the lab's list of artifact *units*: switch the basis to units to flag.")
    st.subheader("Candidates (highest feature FID)")
    cands = uf.highest(8)
    strips = unit_strips(G, layer, cands, [-1e9] * len(cands), uf.top_index[:6, cands].T, uf.seed, basis=basis)
    for u in cands:
        st.image(strips[u], caption=f"feature {u}: FID {uf.fid[u]:.3f}")
    chosen = uf.highest(5)
    fid_comparison(f"Ablate the {len(chosen)} features of highest FID and compare FID", chosen, len(uf.fid),
                   "the generator as it is, with the features ablated along their directions, and with as many "
                   "random features ablated")
elif uf is not None:
    table = uf.table()
    st.dataframe(table.head(30), hide_index=True, width="stretch", height=240)
    st.caption(f"The 30 units of highest unit FID at {layer}: each over its top {uf.top} of {uf.n_samples} "
               f"generated images (computed in {uf.seconds:.0f} s; stored in `cache/unit_fid`).")
    fingerprint = cache.model_fingerprint(G)
    me = st.session_state.get("display_name", "anonymous")
    n_units = len(uf.fid)
    if error := st.session_state.pop("flag_error", None):
        fail("The flag was not saved", error, fix_for(error), stop=False)
    # flags are shared by the lab (cache/flags): this session sends only the units it toggles (add /
    # remove events, merged per unit), never its whole set, so it cannot undo another user's flags
    details = flag_details(name, layer, fingerprint)
    flags = set(details)
    if stale := stale_flags(name, layer, fingerprint):
        st.info(f"Units {', '.join(map(str, stale))} were flagged for other weights of {name} (retrained or "
                "re-shipped since): unit numbers do not carry over between trainings, so they start unflagged.")
    who = "; ".join(f"unit {u} by {d['by'] or 'an unknown user'}" + (f" at {d['at']}" if d["at"] else "")
                    for u, d in details.items())
    st.caption((f"Flagged for these weights: {plain(who)}. " if who else "No units flagged for these weights yet. ")
               + f"You flag as **{plain(me)}** (your name is set on the Models page); flags are shared with everyone.")

    def undo(model, lay, unit, fp):
        try:
            undo_unflag(model, lay, unit, fp, by=st.session_state.get("display_name", "anonymous"))
        except ERRORS as e:        # flagged again meanwhile, or a read-only cache: say so on the next run
            st.session_state["flag_error"] = e

    if unflagged := recently_unflagged(name, layer, fingerprint, by=me, limit=8):
        with st.expander(f"Recently unflagged ({len(unflagged)})"):
            for r in unflagged:
                text, button = st.columns([6, 1])
                text.markdown(plain(f"unit {r['unit']}: flagged by {r['flagged_by'] or 'an unknown user'}, unflagged "
                                    f"by {r['unflagged_by'] or 'an unknown user'} at {r['unflagged_at']}"))
                if r["may_undo"]:          # who had flagged it (or an admin); others see it without the button
                    button.button("Undo", key=f"unflag-undo-{r['unit']}", on_click=undo,
                                  args=(name, layer, r["unit"], fingerprint))

    def toggle(model, lay, unit, fp, size, key):
        try:
            change = flag_units if st.session_state[key] else unflag_units
            change(model, lay, [unit], fp, by=st.session_state.get("display_name", "anonymous"), n_units=size)
        except ERRORS as e:        # a read-only cache: say so on the next run
            st.session_state["flag_error"] = e

    st.subheader("Candidates (highest unit FID)")
    cands = uf.highest(8)
    strips = unit_strips(G, layer, cands, [-1e9] * len(cands), uf.top_index[:6, cands].T, uf.seed)
    for u in cands:
        col1, col2 = st.columns([1, 6])
        key = f"flag-{u}"
        st.session_state[key] = u in flags           # everyone's current flags, merged
        col1.checkbox(f"unit {u}", key=key, on_change=toggle, args=(name, layer, u, fingerprint, n_units, key))
        col2.image(strips[u], caption=f"unit {u}: FID {uf.fid[u]:.3f}")
    chosen = sorted(flags) or uf.highest(5)
    fid_comparison(f"Ablate {len(chosen)} units and compare FID", chosen, n_units,
                   "the generator as it is, with the chosen units ablated, and with as many random units ablated")
else:
    st.info(f"Press **Compute {one} FID** (its result is stored: any later visit shows it).")

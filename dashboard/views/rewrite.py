"""Rewrite (Bau et al., ECCV 2020): copy a region of one sample, paste it where it should go on another,
paint context on a few more, and change one layer's weights so the generator draws the pasted thing
wherever the context appears (thin view over core.studies.rewriting). The unsaved rewrite lives in this
session only; the shared model is never changed; "Save as model" registers it under a new name."""
from __future__ import annotations

import json

import streamlit as st
import torch
from streamlit_drawable_canvas import st_canvas

from core.base.errors import InputError
from core.base.sampling import z_at
from core.engine.intervention import generate
from core.outputs.visualize import overlay, png_bytes, side_by_side, to_uint8
from core.studies import paint
from core.studies.rewriting import (
    ALL_METHODS,
    Region,
    Request,
    before_after,
    mask_from_drawing,
    run_request,
    save_rewrite,
)
from dashboard.common import ERRORS, dissectable_layers, fail, fix_for, generator, pick_model, plain, zoo

SIZE = 256                 # canvas size on screen (px): three canvases side by side
GRID_CHOICES = [6, 12, 24]
PAIR_CHOICES = [6, 12, 24, 48]
METHOD_NAMES = {"rank": "rank-r (paper)", "full": "full rank", "finetune": "fine-tune all"}
LAYER_HELP = ("The layer whose weights are rewritten. Its featuremap is a grid over the image: in a 64x64 toyworld "
              "model a layer4 cell is 8x8 pixels (about one door), a layer5/6 cell 4x4 and a layer7/8 cell 2x2, so "
              "small objects need layer5 or layer6 (the default, as in the paper's choice of a middle layer).")
ROLES = {"copy": "Copy", "paste": "Paste", "ctx": "Context"}

st.title("Rewrite")
st.caption("Rewriting a deep generative model (Bau et al., ECCV 2020): a layer's convolution is a memory from "
           "keys (its input at a place) to values (its output there). Draw a region to **copy** on one sample, mark "
           "where to **paste** it on another, optionally paint **context** (where the new rule should apply) on a "
           "few more; the rewrite changes the layer's weights only along the context's key directions, so every "
           "sample with such a context changes. Nothing is changed for anyone else until you **Save as model**.")
name, G = pick_model()
layers = dissectable_layers(G)


def _default_layer() -> str:
    return "layer6" if "layer6" in layers else layers[len(layers) // 2]


if st.session_state.get("rw_layer") not in layers:
    st.session_state["rw_layer"] = _default_layer()
for key, default in [("rw_seed", 0), ("rw_grid", 12), ("rw_copy", 0), ("rw_paste", 1), ("rw_ctx", 2),
                     ("rw_method", "rank"), ("rw_rank", 1), ("rw_steps", 2000), ("rw_lr", 0.05), ("rw_keys", 1000),
                     ("rw_pairs", 12), ("rw_tool", "freedraw"), ("rw_brush", 24), ("rw_highlight", True)]:
    st.session_state.setdefault(key, default)
masks: dict = st.session_state.setdefault("rw_masks", {})          # canvas key -> bool mask at image pixels
contexts: dict = st.session_state.setdefault("rw_contexts", {})    # (model, seed) -> [Region]


def _canvas_key(role: str, seed: int, sample: int) -> str:
    return f"rw-{role}-{name}-{seed}-{sample}"


def _restart(key: str):
    """Reload canvas ``key`` empty (a new revision makes it redraw) and forget its strokes."""
    rev = st.session_state.get(key + "-rev", 0) + 1
    st.session_state[key + "-rev"] = rev
    st.session_state[key + "-init"] = {"objects": [], "ganatomy_revision": rev}
    st.session_state.pop(key, None)
    st.session_state[key + "-seen"] = _signature([])


def _signature(objects) -> str:
    return json.dumps(objects, sort_keys=True, default=str)


def _objects(key: str) -> list:
    state = st.session_state.get(key) or {}
    return list(((state.get("drawing") or {}).get("raw") or {}).get("objects") or [])


# ----------------------------------------------------------------------------- a loaded request
pending = st.session_state.pop("rw_pending", None)
if pending is not None:
    size = getattr(G, "resolution", None)
    wrong = [r for r in [pending.copy, pending.paste, *pending.context] if size and r.mask.shape != (size, size)]
    if pending.model != name:
        fail("The request was not applied", InputError(
            f"it is for the generator {pending.model[:80]!r}, and {name!r} is open",
            fix="pick that generator in the sidebar and load the request again"), stop=False)
    elif pending.layer not in layers:
        fail("The request was not applied", InputError(
            f"{pending.layer[:40]!r} is not a layer of {name}", fix=f"edit its layer to one of: {', '.join(layers)}"),
            stop=False)
    elif wrong:
        fail("The request was not applied", InputError(
            f"its masks are {wrong[0].mask.shape[0]}x{wrong[0].mask.shape[1]}; {name}'s images are {size}x{size}",
            fix=f"draw the regions on {size}x{size} images (this page saves them so)"), stop=False)
    else:
        st.session_state.update(rw_layer=pending.layer, rw_seed=pending.seed, rw_copy=pending.copy.sample,
                                rw_paste=pending.paste.sample, rw_method=pending.method, rw_rank=pending.rank,
                                rw_steps=pending.steps, rw_lr=float(pending.lr), rw_keys=pending.key_samples)
        for role, region in [("copy", pending.copy), ("paste", pending.paste)]:
            key = _canvas_key(role, pending.seed, region.sample)
            masks[key] = region.mask
            _restart(key)
        contexts[(name, pending.seed)] = list(pending.context)
        st.session_state["rw_notice"] = (f"Loaded the request: {pending.layer}, copy sample #{pending.copy.sample}, "
                                         f"paste on #{pending.paste.sample}, {len(pending.context)} context image(s).")

layer = st.sidebar.selectbox("Layer", layers, key="rw_layer", help=LAYER_HELP)
try:
    _, rows, cols = paint.layer_grid(G, layer)
except ERRORS as e:
    fail(f"Cannot rewrite {layer}", e, fix_for(e))
if notice := st.session_state.pop("rw_notice", None):
    st.success(plain(notice), icon=":material/check_circle:")


@st.cache_data(show_spinner=False, max_entries=128)
def samples(model: str, model_key: str, seed: int, indices: tuple, _G):
    """The generator's samples ``indices`` of ``seed`` (uint8 [n, H, W, 3]; the same for every session)."""
    with torch.no_grad():
        return to_uint8(generate(_G, z_at(seed, list(indices), _G.z_dim)))


model_key = str(getattr(G, "cache_key", name))
st.html("<style>.st-key-rw_samples img, .st-key-rw_pair_grid img, .st-key-rw_ctx_list img "
        "{ image-rendering: pixelated; }</style>")

# ----------------------------------------------------------------------------- the samples
c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 2])
seed = int(c1.number_input("Seed", 0, 10**6, key="rw_seed", help="Which stream of samples (every image here is "
                                                                     "sample #i of this seed)"))
n_grid = c2.selectbox("Samples shown", GRID_CHOICES, key="rw_grid")
copy_i = int(c3.number_input("Copy from sample", 0, 10**6, key="rw_copy", help="The image to copy a region from"))
paste_i = int(c4.number_input("Paste on sample", 0, 10**6, key="rw_paste", help="The image to paste the region on"))
TOOLS = {"freedraw": ":material/brush: brush", "rect": ":material/crop_square: box"}
tool = c5.segmented_control("Draw with", list(TOOLS), key="rw_tool", format_func=TOOLS.get,
                            help="A brush, or boxes; a drawing replaces the region it is drawn for") or "freedraw"
try:
    grid = samples(name, model_key, seed, tuple(range(n_grid)), G)
except ERRORS as e:
    fail(f"Could not draw samples of {name}", e, fix_for(e))
size = grid.shape[1]
with st.container(key="rw_samples"):
    st.image(list(grid), caption=[f"#{i}" for i in range(n_grid)], width=max(48, min(96, 880 // n_grid - 8)),
             output_format="PNG")


def region_canvas(role: str, sample: int, what: str):
    """A canvas over sample ``sample`` (the layer's grid drawn): its strokes become the mask of
    ``role`` (kept per canvas; a canvas that has not been drawn on keeps a mask loaded from a request,
    shown tinted). Returns (key, mask or None)."""
    key = _canvas_key(role, seed, sample)
    st.session_state.setdefault(key + "-seen", _signature([]))
    image = samples(name, model_key, seed, (sample,), G)[0]
    mask = masks.get(key)
    shown = image if _objects(key) or mask is None or mask.shape != image.shape[:2] else overlay(image, mask, 0.45)
    st.markdown(f"**{what}** · sample #{sample} · {layer} grid {rows}×{cols}")
    result = st_canvas(fill_color="rgba(255, 214, 10, 0.35)", stroke_width=st.session_state["rw_brush"],
                       stroke_color="rgba(255, 214, 10, 0.8)",
                       background_image=png_bytes(paint.grid_image(shown, (rows, cols), SIZE)),
                       width=SIZE, height=SIZE, drawing_mode=tool, return_image_data=True,
                       initial_drawing=st.session_state.get(key + "-init"), key=key)
    objects = _objects(key)
    if _signature(objects) != st.session_state[key + "-seen"]:     # drawn on (or cleared) since the last run
        st.session_state[key + "-seen"] = _signature(objects)
        try:
            masks[key] = mask_from_drawing(result.image_data, size) if objects else None
        except ERRORS as e:
            fail("This drawing could not be read", e, fix_for(e), stop=False)
            masks[key] = None
    mask = masks.get(key)
    n_px = 0 if mask is None else int(mask.sum())
    if st.button("Clear", icon=":material/delete:", key=f"{key}-clear", disabled=mask is None and not objects):
        masks.pop(key, None)
        _restart(key)
        st.rerun()
    st.caption(f"{n_px} pixels marked" if n_px else "nothing marked yet")
    return key, mask


left, mid, right = st.columns(3)
with left:
    _, copy_mask = region_canvas("copy", copy_i, "Copy: draw the region to copy")
with mid:
    _, paste_mask = region_canvas("paste", paste_i, "Paste: mark where it goes")
with right:
    ctx_i = int(st.number_input("Context sample", 0, 10**6, key="rw_ctx",
                                help="Paint where the new rule should apply on a few images (e.g. other places "
                                     "like the paste target) and press Add to context; without context, the paste "
                                     "region is the context"))
    ctx_key, ctx_mask = region_canvas("ctx", ctx_i, "Context: paint where the rule applies")
    context = contexts.setdefault((name, seed), [])
    a1, a2 = st.columns(2)
    if a1.button("Add to context", icon=":material/add:", key="rw_ctx_add", disabled=ctx_mask is None,
                 width="stretch"):
        context.append(Region(ctx_i, ctx_mask))
        masks.pop(ctx_key, None)
        _restart(ctx_key)
        st.rerun()
    if a2.button("Clear context", icon=":material/delete_sweep:", key="rw_ctx_clear", disabled=not context,
                 width="stretch"):
        context.clear()
        st.rerun()
st.sidebar.slider("Brush", 4, 64, step=4, key="rw_brush", help=f"Brush width in canvas pixels; one image pixel is "
                                                                  f"{SIZE // max(size, 1)} canvas pixels")
if context:
    with st.container(key="rw_ctx_list"):
        st.image([overlay(samples(name, model_key, seed, (r.sample,), G)[0], r.mask, 0.45) for r in context],
                 caption=[f"context #{r.sample}" for r in context], width=80, output_format="PNG")

# ----------------------------------------------------------------------------- how to rewrite
o1, o2, o3, o4, o5 = st.columns([3, 1, 1, 1, 1])
method = o1.segmented_control("Method", list(ALL_METHODS), key="rw_method", format_func=METHOD_NAMES.get,
                              help="rank-r: the paper's constrained rewrite (the weight changes only along the "
                                   "context's r key directions). Full rank: the same goal, no constraint (the "
                                   "paper's baseline). Fine-tune: every weight fine-tuned on the pasted image (the "
                                   "'overfit' baseline; 300 steps at lr 0.001).") or "rank"
rank = int(o2.number_input("Rank", 1, 64, key="rw_rank", disabled=method != "rank",
                           help="How many key directions of the context the rewrite may change (the paper: 1)"))
steps = int(o3.number_input("Steps", 1, 100_000, key="rw_steps", disabled=method == "finetune",
                            help="Adam steps on the layer's weight (the paper: 2,000; about 10 s at layer6 of a "
                                 "toyworld model on 2 CPU cores)"))
lr = float(o4.number_input("Learning rate", 1e-5, 10.0, key="rw_lr", format="%.4f", disabled=method == "finetune",
                           help="Adam's learning rate (the paper: 0.05)"))
key_samples = int(o5.number_input("Key samples", 10, 100_000, key="rw_keys", disabled=method != "rank",
                                  help="Samples whose keys give the key statistics C = E[k kᵀ] (the paper: 1,000 "
                                       "on toyworld; computed once per model and layer, then cached)"))

missing = [w for w, m in [("the copy region", copy_mask), ("where to paste", paste_mask)] if m is None]
request = None
if not missing:
    request = Request(model=name, layer=layer, copy=Region(copy_i, copy_mask), paste=Region(paste_i, paste_mask),
                      context=list(context), seed=seed, method=method, rank=rank, steps=steps, lr=lr,
                      key_samples=key_samples)
b1, b2, b3 = st.columns([2, 2, 3])
run_clicked = b1.button("Run rewrite", type="primary", icon=":material/play_arrow:", key="rw_run",
                        disabled=request is None, width="stretch")
if missing:
    b3.info("Draw " + " and ".join(missing) + " first.")
done = st.session_state.get("rw_result")
to_save = request if request is not None else (done["run"].request if done else None)
b2.download_button("Download request", data=to_save.dumps() if to_save is not None else "",
                   file_name="rewrite_request.json", mime="application/json", key="rw_download",
                   icon=":material/download:", disabled=to_save is None, width="stretch",
                   help="The request as JSON (layer, images, regions, options): load it here again, or run it with "
                        "core.studies.rewriting.Request.load(path)")


def load_requests():
    """The uploader, in a function (its file is not kept in the page's globals): a request file sets
    the page's layer, images, regions and options; a bad file is refused with the reason."""
    up = st.file_uploader("Load request (a JSON file saved here)", type=["json"], key="rw_upload")
    if up is None:
        st.session_state.pop("rw_loaded", None)
        return
    if st.session_state.get("rw_loaded") == up.file_id:
        if err := st.session_state.get("rw_load_error"):
            fail("This request file cannot be loaded", err, stop=False)
        return
    st.session_state["rw_loaded"] = up.file_id
    st.session_state.pop("rw_load_error", None)
    try:
        req = Request.loads(up.getvalue())
        if req.model not in zoo():
            raise InputError(f"it is for the generator {req.model[:80]!r}, which this server does not have",
                             fix="add that model on the Models page, or open the request for another generator")
    except ERRORS as e:
        st.session_state["rw_load_error"] = e
        fail("This request file cannot be loaded", e, stop=False)
        return
    st.session_state["rw_pending"] = req
    if req.model != name:                      # the sidebar picker opens the request's model on the rerun
        st.session_state["shared_model"] = req.model
        st.session_state.pop("model", None)
    st.rerun()


with st.expander("Load a request", expanded=False):
    load_requests()

# ----------------------------------------------------------------------------- running it
if run_clicked and request is not None:
    st.session_state.pop("rw_result", None)
    stage_names = {"keys": "key statistics", "rewrite": "rewriting"}
    try:
        with st.status(f"Rewriting {layer} of {name} ({METHOD_NAMES[method]})…", expanded=True) as box:
            bar = st.progress(0.0, text="Starting…")

            def progress(stage, done_, total):
                bar.progress(min(done_ / max(total, 1), 1.0),
                             text=f"{stage_names.get(stage, stage)}: {done_}/{total}"
                                  + (" samples" if stage == "keys" else " steps"))

            run = run_request(G, request, progress=progress)
            view = before_after(G, run, range(st.session_state["rw_pairs"]))
            box.update(label=f"Rewrote {layer} of {name} in {run.seconds['total']:.1f} s", state="complete",
                       expanded=False)
    except ERRORS as e:
        fail("The rewrite failed", e, fix_for(e))
    st.session_state["rw_result"] = {"model": name, "model_key": model_key, "run": run, "view": view}

done = st.session_state.get("rw_result")
if done is None:
    st.info("Press **Run rewrite** to rewrite the layer; the samples below then show before and after.")
    st.stop()
if (done["model"], done["model_key"]) != (name, model_key):
    st.info(f"Your unsaved rewrite was made on {plain(done['model'])}: pick it in the sidebar to see it, or run "
            f"a new one here.")
    st.stop()

run = done["run"]
req = run.request
st.subheader(f"Before and after: {req.layer}, {METHOD_NAMES[req.method]}")
p1, p2, p3 = st.columns([1, 1, 3])
n_pairs = p1.selectbox("Pairs shown", PAIR_CHOICES, key="rw_pairs")
highlight = p2.toggle("Highlight context", key="rw_highlight", disabled=run.directions is None,
                      help="Tints each before-image where its keys match the rewrite's context directions "
                           "(twice a typical location's match: faint; as strongly as the painted context: full)")
view = done["view"]
if len(view.indices) != n_pairs or view.seed != req.seed:
    try:
        view = done["view"] = before_after(G, run, range(n_pairs))
    except ERRORS as e:
        fail("Could not draw the samples after the rewrite", e, fix_for(e))
losses = run.rewrite.losses
parts = ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items() if k != "total")
p3.caption(f"Run: {run.seconds['total']:.1f} s ({parts}); "
           + (f"loss {losses[0]:.3f} → {losses[-1]:.3f}; " if losses else "")
           + f"these {len(view.indices)} pairs drawn in {view.seconds:.2f} s. "
           + ("" if view.context_level is None else f"Mean match under the context: {view.context_level:.1f} "
              "(a typical location: about 1)."))
left_images = view.highlighted if highlight and view.highlighted is not None else view.before
with st.container(key="rw_pair_grid"):
    per_row = 4
    for start in range(0, len(view.indices), per_row):
        cols_ = st.columns(per_row)
        for col, j in zip(cols_, range(start, min(start + per_row, len(view.indices)))):
            col.image(side_by_side([left_images[j], view.after[j]], gap=2), width="stretch", output_format="PNG",
                      caption=f"#{view.indices[j]}: before" + (" (context tinted)" if left_images is not view.before
                                                                 else "") + " · after")

# ----------------------------------------------------------------------------- keep or drop it
s1, s2, s3, s4 = st.columns([2, 3, 2, 2])
if s1.button("Revert", icon=":material/undo:", key="rw_revert", width="stretch",
             help="Drop this unsaved rewrite (nobody else ever saw it)"):
    st.session_state.pop("rw_result", None)
    st.rerun()
new_name = s2.text_input("New model name", placeholder="new model name, e.g. lab/town-doors", key="rw_save_name",
                         label_visibility="collapsed").strip()
replace = s3.checkbox("Replace mine", key="rw_replace",
                      help="Replace your own model of this name (a model of another user is never replaced)")
me = st.session_state.get("display_name", "anonymous")
if s4.button("Save as model", type="primary", icon=":material/save:", key="rw_save", width="stretch",
             help="Register the rewritten generator under a new name, owned by you (your name is set on the "
                  "Models page): it then opens by name on every page, for everyone"):
    if not new_name:
        st.error("Give the new model a name first (e.g. `lab/town-doors`).", icon="⚠️")
    else:
        try:
            entry = save_rewrite(new_name, run, added_by=me, replace=replace)
        except ERRORS as e:
            fail(f"{new_name} was not saved", e, stop=False)
        else:
            if entry.get("replaced"):
                generator.clear()            # sessions load the new weights under the name, not the cached old ones
            st.session_state["rw_saved"] = (f"Saved **{plain(new_name)}** as {plain(me)}: pick it in the sidebar's "
                                            "Generator list on any page.")
            st.rerun()
if saved := st.session_state.pop("rw_saved", None):
    st.success(saved, icon=":material/check_circle:")
    st.toast(saved, icon=":material/check_circle:")

"""The Paint page's "real scene" mode (issue #34, item 4): a held-out toyworld scene or an uploaded
photo inverted into the layer, the generator adapted to it, then painted with the same units, mode
and strength as a generated image; the change is blended into the photo around the stroke. The math
is core.studies.paint_real's; this module only shows it."""
from __future__ import annotations

import streamlit as st
import torch

from core.outputs.visualize import png_bytes, to_uint8
from core.studies import paint
from core.studies import paint_real as pr
from core.studies.inversion import INVERSION_REAL_SEED
from core.studies.omissions import scene_of
from dashboard.common import (
    ERRORS,
    fail,
    feature_net,
    fix_for,
    inverter,
    note_turn,
    plain,
    stroke_canvas,
)

SOURCES = ("held-out toyworld scene", "upload a PNG or JPEG")


def _scene(name: str, G, layer: str, image: torch.Tensor, encoder):
    """This session's inverted and adapted scene for ``image`` (kept in the session; the disk cache
    makes a scene inverted before, by any session, come back at once)."""
    key = ("paint_real", name, getattr(G, "cache_key", None), layer, pr.image_hash(image))
    scenes = st.session_state.setdefault("paint_real_scenes", {})
    if key in scenes:
        return scenes[key]
    d = pr.REAL_DEFAULTS
    with st.status("Inverting the scene and adapting the generator to it…", expanded=True) as box:
        note_turn(box)
        bar = st.progress(0.0, text="Inverting…")
        total = d["steps"] + d["adapt_steps"]

        def progress(stage, done, _t):
            n = done if stage == "invert" else d["steps"] + done
            bar.progress(min(n / total, 1.0), text=f"{'Inverting' if stage == 'invert' else 'Adapting'}: "
                                                   f"step {done} of {_t}")
        scene = pr.invert_real(G, image, encoder=encoder, layer=layer, features=feature_net(),
                               progress=progress, **d)
        box.update(label=f"Scene inverted into {layer} and the generator adapted ({scene.seconds:.0f} s; "
                         "saved to cache/)", state="complete", expanded=False)
    if len(scenes) >= 8:
        scenes.pop(next(iter(scenes)))
    scenes[key] = scene
    return scene


def real_scene_painter(name: str, G, layer: str, grid: tuple[int, int], *, units, k, mode: str, strength: float,
                       basis, brush: int, concept: str, what: str, size: int) -> None:
    """The real-scene part of the Paint page: choose a scene, invert and adapt once, then paint."""
    rows, cols = grid
    try:
        encoder, _ = inverter(name, G, layer)
    except ERRORS as e:
        st.info(f"Real scenes are painted through an inverter into {layer}, and **{plain(name)}** has none yet "
                f"({e}). Train one, then reload this page:")
        st.code(fix_for(e) or "python scripts/train_inverter.py", language="bash")
        return
    s1, s2 = st.columns([2, 3])
    source = s1.radio("Scene", SOURCES, horizontal=True, key="paint_real_source")
    try:
        if source == SOURCES[0]:
            scene_name = scene_of(G)
            index = int(s2.number_input(f"Held-out {scene_name} scene", 0, 10**6, 1, key="paint_real_index",
                                        help="Toyworld scenes no GAN trained on (seed "
                                             f"{INVERSION_REAL_SEED}): real photos with exact labels"))
            image = pr.real_image(scene_name, index, int(G.resolution) if hasattr(G, "resolution") else 64)
        else:
            up = s2.file_uploader("Photo (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="paint_real_upload")
            if up is None:
                st.info("Upload a photo to paint on it.")
                return
            size = int(getattr(G, "resolution", 64))
            image, note = pr.photo_image(up.getvalue(), size)
            if note:
                st.warning(f"Your photo was {note}: the generator paints {size} x {size} images.",
                           icon=":material/photo_size_select_large:")
        scene = _scene(name, G, layer, image, encoder)
    except ERRORS as e:
        fail("Cannot invert this scene", e, fix_for(e))
    photo = to_uint8(scene.image)[0]
    recon = to_uint8(scene.reconstruction)[0]
    background = png_bytes(paint.grid_image(photo, (rows, cols), size))
    canvas_key = f"paint-real-canvas-{name}-{layer}-{pr.image_hash(scene.image)[:12]}"

    @st.fragment
    def painter():
        left, mid, right = st.columns([11, 10, 7])
        with left:
            st.markdown(f"**Original** · paint here · {layer} grid {rows}×{cols}")
            drawing = stroke_canvas(canvas_key, background, brush, size, "paint_real")
        try:
            cells = paint.stroke_coverage(drawing, (rows, cols)) >= 0.15
            edits = paint.paint_edits(layer, units, mode, k, cells, scale=strength, basis=basis)
            out = pr.paint_real(scene, edits)
            blended = to_uint8(out.result)[0]
        except ERRORS as e:
            fail("This edit failed", e, fix_for(e), stop=False)
            return
        n_cells = int(cells.sum())
        did = f"set to {strength:g} x k" if mode == "add" else "ablated"
        verb = "added" if mode == "add" else "removed"
        with mid:
            st.markdown(f"**Edited + blended** · {concept} {verb} in {n_cells} cell{'' if n_cells == 1 else 's'}"
                        if edits else "**Edited + blended** · paint on the left to edit")
            with st.container(key="paint_real_result"):
                st.image(blended, width=size, output_format="PNG")
            changed = int((out.mask > 0).sum())
            st.caption(f"{changed} pixels blended from the adapted generator's edit; every other pixel is the "
                       "photo's own." if edits else "The photo itself.")
        with right:
            st.markdown("**Reconstruction** (adapted generator)")
            with st.container(key="paint_real_recon"):
                st.image(recon, width=size // 2, output_format="PNG")
            st.caption(f"L1 to the photo: {scene.l1_encoder:.3f} (inverter's guess), {scene.l1_inverted:.3f} "
                       f"(inverted), {scene.l1_adapted:.3f} (adapted from {scene.settings.get('adapt_from')}). "
                       f"{len(units)} {concept} {what} {did} in the painted cells.")

    st.html("<style>.st-key-paint_real_result img, .st-key-paint_real_recon img "
            "{ image-rendering: pixelated; }</style>")
    painter()

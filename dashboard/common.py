"""Shared dashboard state: model pickers, cached resources, dissections behind a progress bar,
concept colours and error reporting (no math here: pages call core)."""
from __future__ import annotations

import os
import re
import traceback

import streamlit as st
import torch

import core
from core import toyworld
from core.base import sharing
from core.base.devices import for_serving, server_device
from core.base.errors import (
    BudgetError,
    CheckpointError,
    DownloadError,
    GanatomyError,
    InputError,
    MissingPackageError,
    MissingWeightsError,
    ProtocolError,
    UnitIndexError,
)
from core.base.hooks import layer_names
from core.base.validate import check_units
from core.engine import bases
from core.studies.inversion import encoder_for, encoder_paths

SAMPLE_CHOICES = [50, 100, 200, 500, 1000, 2000]


def _torch_threads() -> int:
    """Intra-op threads per computation (``$GANATOMY_TORCH_THREADS``, default 1). Each session's
    script runs in its own thread, so sessions already run side by side; one thread per
    computation keeps a busy or shared server responsive (several threads per op on a loaded
    machine slow small ops tenfold)."""
    try:
        return max(1, int(os.environ.get("GANATOMY_TORCH_THREADS", 1)))
    except ValueError:
        return 1


torch.set_num_threads(_torch_threads())


def pin_cache_key(model):
    """Hash ``model``'s weights once, before it is shared, so the result cache (``cache_key``)
    never rehashes them. Models that define ``cache_key`` themselves (StyleGAN2, BigGAN,
    SegFormer: a read-only property that memoises its hash) are asked for it once instead."""
    if isinstance(getattr(type(model), "cache_key", None), property):
        _ = model.cache_key
    else:
        model.cache_key = core.base.cache.model_fingerprint(model)
    return model


def _revision(name: str, depth: int = 0) -> str:
    """What a cached model is keyed by besides its name: for a user-added model, its registry
    entry's file, digest and time, so a model replaced under its name (Models page) is loaded
    anew by every session, never served from the shared cache; for a rewrite, its base's too (a
    rewrite follows its base by name)."""
    entry = core.models.user_models().get(name)
    if entry is None:
        return ""
    own = f"{entry.get('path')}|{entry.get('sha256', '')}|{entry.get('added_at', '')}"
    if entry.get("arch") == "rewrite" and depth < 8:
        own += " < " + _revision(str(entry.get("base", "")), depth + 1)
    return own


def note_turn(box) -> None:
    """Inside a long job's status box: say when the job waits for its turn on the server's GPU
    (core.base.sharing: GANATOMY_GPU_JOBS long jobs at a time; what-ifs never wait)."""
    where = device()
    limit = sharing.job_limit(where)
    if limit and sharing.busy(where) >= limit:
        env = sharing.JOBS_ENV if where.type == "cuda" else sharing.CPU_JOBS_ENV
        box.write(f"{sharing.busy(where)} long job(s) of other sessions are computing on {where}; this one starts "
                  f"when its turn comes (at most {limit} at once, `{env}`). What-ifs do not wait.")


def device() -> torch.device:
    """Where the server's shared models live (``$GANATOMY_DEVICE``, see core.base.devices.server_device)."""
    return server_device()


@st.cache_resource(show_spinner="Loading generator…", max_entries=16)
def _generator(name: str, revision: str, where: str):
    return pin_cache_key(for_serving(core.load_generator(name, device=where)))


def generator(name: str):
    """Shared by every session; never mutated (edits travel with each call). Its weights are
    hashed once here for the result cache (``cache_key``) instead of at every lookup."""
    return _generator(name, _revision(name), str(device()))


generator.clear = _generator.clear


@st.cache_resource(show_spinner="Loading segmenter…", max_entries=8)
def _cached_segmenter(name: str, revision: str, where: str):
    return pin_cache_key(for_serving(core.load_segmenter(name, device=where)))


def _segmenter(name: str):
    return _cached_segmenter(name, _revision(name), str(device()))


def segmenter(name: str | None = None):
    """The segmenter ``name``, by default the one chosen on the Models page (else toyworld's).
    A segmenter that cannot be loaded is shown as its cause and fix, and stops the page."""
    name = name or st.session_state.get("shared_segmenter", "toyworld")
    try:
        return _segmenter(name)
    except ERRORS as e:
        fail(f"Could not load the segmenter {name}", e, fix_for(e))


def zoo() -> dict[str, dict]:
    """Every generator the dashboard can open, by name, with its model card: the shipped
    toyworld models (and their snapshots) and the published or user-added models whose weights
    are on this machine (Models page; README, 'Using your own model')."""
    models = dict(core.list_models())
    models.update({n: {} for n in core.models.available_generators() if n not in models})
    return models


# A page catches every exception a computation ends with (``except ERRORS``) and shows it with
# ``fail``: a GanatomyError is a refusal with its cause and fix; anything else is a bug in
# GANatomy, shown as one with its traceback folded away, never dressed up as advice.
ERRORS = (Exception,)


_MARKDOWN = re.compile(r"([\\`*\[\]<>!~$|#{}])|(:)(?=[A-Za-z/])|(?<=www)(\.)")


def plain(text) -> str:
    """``text`` as it was typed when Streamlit renders it as markdown: every character that would
    make a link (also a bare ``http://`` or ``www.`` one), an image, bold, code, a heading, maths, a
    colour or an icon is escaped, and a bare ``http:`` / ``www.`` gets an invisible word joiner, which
    Streamlit's link detection does not cross (a display name or a file name with
    ``![x](http://...)`` in it shows those characters, and nothing is a link or fetched). Underscores are
    left as they are: inside a
    word (paths, setting names) markdown keeps them, and they never make a link."""
    escaped = _MARKDOWN.sub(lambda m: "\\" + next(g for g in m.groups() if g), str(text))
    return _AUTOLINK.sub("\\1\u2060", escaped)       # a bare URL stays text: a word joiner, invisible, breaks it


_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|www)(?=\\?[:.@])")


def fix_for(error: BaseException) -> str | None:
    """What the user can do about ``error``: its own fix, else one by its type; None for a bug."""
    if not isinstance(error, GanatomyError):
        return None
    if error.fix:
        return error.fix
    if isinstance(error, (MissingWeightsError, MissingPackageError, DownloadError)):
        return ("do what the message says, or open the **Models** page: it lists where each model's "
                "files go and what to install, and can pick another segmenter.")
    if isinstance(error, BudgetError):
        return "use fewer samples (sidebar) or fewer layers, or run the dashboard on a machine with more memory."
    if isinstance(error, CheckpointError):
        return ("check the model file (a supported checkpoint, see the README's ‘Using your own model’) "
                "and that `core/weights/` is intact (`git checkout -- core/weights`).")
    if isinstance(error, ProtocolError):
        return "the model or segmenter does not meet GANatomy's protocols (README, ‘Using your own model’)."
    if isinstance(error, UnitIndexError):
        return "choose units within the layer's range."
    return "change what the message names: another model, layer, concept, unit or sample count."


def fail(what: str, error: BaseException, fix: str | None = None, stop: bool = True):
    """Show a failed computation (never a raw traceback): a refusal as its cause and fix, a bug
    as a bug, with the details for a report folded away."""
    if isinstance(error, GanatomyError):
        cause = str(error) or type(error).__name__
        if error.fix and cause.endswith(f" ({error.fix})"):       # the fix is shown once, below
            cause = cause[: -len(error.fix) - 3]
        fix = fix or fix_for(error)
        # messages carry what users typed (paths, file names, display names): shown as text, never as markdown
        st.error(f"**{plain(what)}.** {plain(cause)}" + (f"\n\n**Fix:** {fix}" if fix else ""),
                 icon=":material/error:")
    else:
        st.error(f"**{plain(what)}: this is a bug in GANatomy**, not something you did. "
                 f"{plain(type(error).__name__ + ': ' + str(error)[:300])}. Please report it with the details below.",
                 icon=":material/bug_report:")
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(error)), language="text")
    if stop:
        st.stop()


def pick_model(key: str = "model", label: str = "Generator"):
    """Sidebar model picker shared by all pages (remembers the choice across pages)."""
    models = [m for m in zoo() if "@" not in m]
    if not models:
        st.warning("No generators are shipped yet: train one with `ganatomy train --scene town --out "
                   "cache/train/gan_town` and ship it with `python scripts/ship_gans.py`.")
        st.stop()
    default = st.session_state.get("shared_model", "toyworld/town" if "toyworld/town" in models else models[0])
    name = st.sidebar.selectbox(label, models, index=models.index(default) if default in models else 0,
                                key=key)
    st.session_state["shared_model"] = name
    try:
        return name, generator(name)
    except ERRORS as e:
        fail(f"Could not load {name}", e, fix_for(e))


# ----------------------------------------------------------------------------- classifiers (Network Dissection)

MODEL_KINDS = {"generator": "Generator", "classifier": "Classifier"}
KIND_HELP = ("Generator: GAN Dissection, a generator's units against a segmenter on its own samples. Classifier: "
             "Network Dissection, a classifier's units against probe images with exact labels (toyworld rendered at "
             "the network's input size: objects, stuff, parts, colours, scene types).")
PROBE_CHOICES = [30, 60, 150, 300, 600, 1500, 3000]
IMPORTANCE_CHOICES = [30, 60, 90, 150, 300, 600, 1500]
RULES_SHOWN = {"netdissect": "NetDissect (CVPR 2017): top 0.5%", "dissect2020": "dissect (PNAS 2020): top 1%"}
RULE_HELP = ("How a unit's mask is cut. NetDissect (Bau et al. 2017, NetDissect-Lite): each unit thresholded at the "
             "top 0.005 quantile of its activations over every position of every probe image; dissect (PNAS 2020): "
             "the top 0.01. Either way the mask is upsampled to the labels, IoU is counted over the whole probe set, "
             "and a unit is a detector when its best IoU exceeds 0.04.")


def pick_kind(key: str = "model_kind") -> str:
    """Sidebar: generator or classifier (remembered across the pages that take either)."""
    default = st.session_state.get("shared_kind", "generator")
    kind = st.sidebar.radio("Model kind", list(MODEL_KINDS), index=list(MODEL_KINDS).index(default),
                            format_func=MODEL_KINDS.get, key=key, horizontal=True, help=KIND_HELP)
    st.session_state["shared_kind"] = kind
    return kind


@st.cache_resource(show_spinner="Loading classifier…", max_entries=8)
def _classifier(name: str, where: str):
    return pin_cache_key(core.load_classifier(name, device=where))


def classifier(name: str):
    """The classifier ``name``, shared by every session and never mutated (as :func:`generator`)."""
    return _classifier(name, str(device()))


classifier.clear = _classifier.clear


def _classifier_choices() -> dict:
    from core.studies.classifier_views import classifier_choices
    return classifier_choices()


def pick_classifier(key: str = "classifier"):
    """Sidebar classifier picker (remembers the choice across pages): the classifiers that can be
    opened here; the help names the ones that need an optional package and its install. A classifier
    that cannot be loaded is shown as its cause and fix, and stops the page."""
    choices = _classifier_choices()
    names = [n for n, why in choices.items() if why is None]
    missing = {n: why for n, why in choices.items() if why is not None}
    from core.models.classifiers import CLASSIFIERS
    help = ("Classifiers, dissected on toyworld probe images: " + "; ".join(
        f"`{n}`: {CLASSIFIERS[n][1]}" if n in CLASSIFIERS else f"`{n}`" for n in names)
        + ". Toyworld's networks take 128 px images (seconds on 2 CPU cores); EfficientNet-Lite0 224 px "
          "(about ten times slower per image).")
    if missing:
        help += " Not installed here: " + " ".join(f"`{n}`: {why} Then restart the dashboard."
                                                   for n, why in missing.items())
    if not names:
        st.warning("No classifier can be opened here. " + " ".join(plain(w) for w in missing.values()))
        st.stop()
    default = st.session_state.get("shared_classifier", "toyworld-scenes")
    name = st.sidebar.selectbox("Classifier", names, index=names.index(default) if default in names else 0,
                                key=key, help=help)
    st.session_state["shared_classifier"] = name
    try:
        return name, classifier(name)
    except ERRORS as e:
        fail(f"Could not load the classifier {name}", e, fix_for(e))


def pick_classifier_layer(C, key="classifier_layer", default=None, sidebar=True):
    layers = list(C.layer_names)
    default = st.session_state.get("shared_classifier_layer", default)
    where = st.sidebar if sidebar else st
    layer = where.selectbox("Layer", layers, index=layers.index(default) if default in layers else len(layers) // 2,
                            key=key)
    st.session_state["shared_classifier_layer"] = layer
    return layer


def pick_probes(key="probe_n"):
    """Sidebar: probe images and their seed, shared by the classifier pages."""
    default = st.session_state.get("shared_probe_n", 150)
    n = st.sidebar.select_slider("Probe images", PROBE_CHOICES, value=default if default in PROBE_CHOICES else 150,
                                 key=key, help="Toyworld scenes (town, room, lake in turn) rendered at the network's "
                                               "input size, with exact labels. toyworld-scenes, all five layers: 150 "
                                               "images take about 2 s on 2 CPU cores, 1,500 about 20 s; "
                                               "efficientnet-lite0 about ten times that. Saved to `cache/`.")
    st.session_state["shared_probe_n"] = n
    seed = st.sidebar.number_input("Probe seed", 0, 10_000, value=st.session_state.get("shared_probe_seed", 0),
                                   key=f"{key}_seed", help="Which toyworld scenes: another seed draws other scenes "
                                                           "(a check that a label is not an accident of the probes).")
    st.session_state["shared_probe_seed"] = int(seed)
    return n, int(seed)


def pick_rule(key="classifier_rule", where=None):
    where = where or st.sidebar
    default = st.session_state.get("shared_rule", "netdissect")
    rule = where.radio("Dissection rule", list(RULES_SHOWN), index=list(RULES_SHOWN).index(default),
                       format_func=RULES_SHOWN.get, key=key, help=RULE_HELP)
    st.session_state["shared_rule"] = rule
    return rule


def probes(C, n: int, seed: int):
    from core.studies.probes import ToyworldProbes
    return ToyworldProbes(C.input_size, n=n, seed=seed)


def classifier_dissection(name: str, C, layers, n: int, seed: int, rule: str, compute: bool):
    """The dissection of ``layers`` of classifier ``name`` on ``n`` toyworld probe images of ``seed``
    by ``rule``: from the disk cache at once, or (when ``compute``) computed behind a status box with
    a progress bar; None when it is not cached and not to be computed. Errors stop the page."""
    try:
        probe = probes(C, n, seed)
        res = core.dissect_classifier(C, probe, list(layers), n, rule=rule, cached_only=True)
        if res is not None or not compute:
            return res
        with st.status(f"Dissecting {', '.join(layers)} of {name} on {n} probe images…", expanded=True) as box:
            note_turn(box)
            bar = st.progress(0.0, text="Thresholds, then counts…")
            res = core.dissect_classifier(
                C, probe, list(layers), n, rule=rule,
                progress=lambda d, t: bar.progress(min(d / t, 1.0), text=("thresholds" if d <= n else "counts")
                                                   + f": {d if d <= n else d - n}/{n} images"))
            box.update(label=f"Dissected {', '.join(layers)} of {name} in {res.meta.get('seconds', 0):.1f} s "
                             "(saved to cache/)", state="complete", expanded=False)
        return res
    except ERRORS as e:
        fail(f"Dissection of {name} failed", e, fix_for(e))


def dissectable_layers(G) -> list[str]:
    return [n for n in layer_names(G) if not n.startswith("output")]


def pick_layer(G, key="layer", default="layer4", sidebar=True):
    layers = dissectable_layers(G)
    default = st.session_state.get("shared_layer", default)
    where = st.sidebar if sidebar else st
    layer = where.selectbox("Layer", layers, index=layers.index(default) if default in layers else 0, key=key)
    st.session_state["shared_layer"] = layer
    return layer


def default_samples() -> int:
    """Dissection samples when a session starts (``$GANATOMY_DASHBOARD_SAMPLES``, else 500)."""
    try:
        n = int(os.environ.get("GANATOMY_DASHBOARD_SAMPLES", 500))
    except ValueError:
        n = 500
    return n if n in SAMPLE_CHOICES else 500


def pick_samples(key="samples"):
    """Sidebar: samples per dissection, shared by the concept maps, unit browser and paint."""
    default = st.session_state.get("shared_samples", default_samples())
    n = st.sidebar.select_slider("Dissection samples", SAMPLE_CHOICES, value=default, key=key,
                                 help="Even samples choose each unit's threshold, odd samples measure "
                                      "IoU. Results are cached on disk per model and layer.")
    st.session_state["shared_samples"] = n
    return n


def concept_color(label: str) -> str:
    """A fixed colour per concept (toyworld's label colours; others from a stable palette)."""
    base = label.split("-")[0] if label not in toyworld.LABELS else label
    if base in toyworld.LABELS:
        r, g, b = toyworld.LABEL_COLORS[toyworld.LABELS.index(base)].tolist()
        return f"rgb({r},{g},{b})"
    import plotly.express as px
    pal = px.colors.qualitative.Dark24
    return pal[sum(map(ord, label)) % len(pal)]


def dissection(name: str, G, layers, n: int, compute: bool, basis=None):
    """The dissection of ``layers`` of model ``name`` over ``n`` samples: from the disk cache at
    once, or (when ``compute``) computed behind a status box with a progress bar; None when
    it is not cached and not to be computed. ``basis``: of one layer's features (see
    :func:`fitted_basis`). Errors are shown (cause and fix) and stop the page."""
    seg = segmenter()
    what = "" if basis is None or basis.kind == "units" else f" in the {basis.name} basis"
    try:
        res = core.dissect(G, seg, list(layers), n, cached_only=True, basis=basis)
        if res is not None or not compute:
            return res
        with st.status(f"Dissecting {', '.join(layers)} of {name}{what} over {n} samples…", expanded=True) as box:
            note_turn(box)
            bar = st.progress(0.0, text="Generating and segmenting…")
            res = core.dissect(G, seg, list(layers), n, basis=basis,
                               progress=lambda d, t: bar.progress(min(d / t, 1.0), text=f"{d}/{t} images"))
            box.update(label=f"Dissected {', '.join(layers)} of {name} (saved to cache/)", state="complete",
                       expanded=False)
        return res
    except ERRORS as e:
        fail(f"Dissection of {name} failed", e, fix_for(e))


BASIS_NAMES = {"units": "units (channels)", "pca": "PCA directions", "sae": "sparse features (SAE)"}
BASIS_HELP = ("What a row is. Units: the layer's channels (the paper). PCA: the principal directions of the layer's "
              "activations. Sparse features: a sparse dictionary (an L1 sparse autoencoder with 4x as many features "
              "as units) trained on the layer's activations at every position; concepts spread over many units can "
              "have a feature of their own. Fitted once per layer and saved (an SAE: a few minutes on 2 CPU cores).")


def fitted_basis(name: str, G, layer: str, kind: str, compute: bool):
    """The basis ``kind`` of ``layer`` (None for units): from the cache at once, or (when
    ``compute``) fitted behind a status box with a progress bar; None when not fitted and not to be
    fitted. Errors are shown (cause and fix) and stop the page."""
    if kind == "units":
        return None
    try:
        b = bases.fit_basis(G, layer, kind, cached_only=True)
        if b is not None or not compute:
            return b
        with st.status(f"Fitting {BASIS_NAMES[kind]} of {layer} of {name}…", expanded=True) as box:
            note_turn(box)
            bar = st.progress(0.0, text="Collecting activations…")
            b = bases.fit_basis(G, layer, kind, progress=lambda s, t, loss: bar.progress(
                min(s / t, 1.0), text=f"step {s}/{t} · loss {loss:.3f}"))
            box.update(label=f"Fitted {b.name} for {layer} of {name} (saved to cache/)", state="complete",
                       expanded=False)
        return b
    except ERRORS as e:
        fail(f"Fitting the {kind} basis of {layer} failed", e, fix_for(e))


def pick_basis(key: str = "basis", help: str = BASIS_HELP) -> str:
    """A basis picker (units, PCA, SAE) shared by the pages that show units."""
    if st.session_state.get(key) not in BASIS_NAMES:
        st.session_state[key] = "units"
    return st.segmented_control("Basis", list(BASIS_NAMES), key=key, format_func=BASIS_NAMES.get,
                                help=help) or "units"


def page_basis(name: str, G, layer: str, key: str, help: str = BASIS_HELP):
    """The basis picker of a page and, when the chosen basis is not fitted yet, a button that fits
    it (the page waits below it until then). Returns (kind, Basis or None for the units)."""
    kind = pick_basis(key, help)
    basis = fitted_basis(name, G, layer, kind, compute=False)
    if kind != "units" and basis is None:
        st.info(f"The {kind.upper()} basis of {layer} of {name} is not fitted yet (fitted once on 1,000 samples and "
                "saved to `cache/`; a sparse dictionary takes a few minutes on 2 CPU cores, PCA seconds).")
        if not st.button(f"Fit the {kind.upper()} basis", type="primary", key=f"{key.removesuffix('_basis')}_fit"):
            st.stop()
        basis = fitted_basis(name, G, layer, kind, compute=True)
    return kind, basis


def parse_units(text: str, n_units: int, layer: str) -> list[int]:
    """Unit indices typed in a text box ("3, 17, 42"), refused with what is expected."""
    pieces = [p for p in str(text).replace(" ", "").split(",") if p]
    how = f"type unit indices of {layer!r} (0..{n_units - 1}) separated by commas, e.g. 3, 17, 42"
    if not pieces:
        raise InputError("units: the list is empty", fix=how)
    bad = [p for p in pieces if not p.lstrip("-").isdigit()]
    if bad:
        raise InputError(f"units: {', '.join(repr(b) for b in bad[:5])} "
                         f"{'is not a whole number' if len(bad) == 1 else 'are not whole numbers'}", fix=how)
    return check_units([int(p) for p in pieces], n_units, layer, "units")


def unit_table(table, key: str, pick_key: str, label_help: str, extra_columns: dict | None = None):
    """The Unit browser's unit table (a generator's or a classifier's): sortable, one row selectable (the
    pick lands in ``st.session_state[pick_key]``); stops the page with a note when no unit matches."""
    def pick_row():
        rows = st.session_state[key].selection.rows
        if rows:
            st.session_state[pick_key] = int(table.unit[rows[0]])

    st.dataframe(table, hide_index=True, width="stretch", height=250, key=key, on_select=pick_row,
                 selection_mode="single-row",
                 column_config={"iou": st.column_config.ProgressColumn("IoU", min_value=0.0, max_value=1.0,
                                                                       format="%.3f"),
                                "label": st.column_config.TextColumn("label", help=label_help),
                                "threshold": st.column_config.NumberColumn(format="%.3f"),
                                **(extra_columns or {}),
                                "top_value": st.column_config.NumberColumn("top activation", format="%.2f")})
    if table.empty:
        st.info("No units match this choice.")
        st.stop()


@st.cache_resource(show_spinner=False)
def _feature_net(where: str):
    return pin_cache_key(for_serving(core.load_features("toyworld", device=where)))


def feature_net():
    """The toyworld feature network on the server's device (shared, never changed): the perceptual
    term of layer inversion (Omissions' gallery, Paint on a real scene)."""
    return _feature_net(str(device()))


def canvas_objects(key: str) -> list:
    """The strokes of the drawable canvas ``key`` (empty before any)."""
    state = st.session_state.get(key) or {}
    drawing = (state.get("drawing") or {}).get("raw") or {}
    return list(drawing.get("objects") or [])


def canvas_restart(key: str, objects: list) -> None:
    """Reload the canvas ``key`` with ``objects`` (undo / clear): a new revision makes it redraw."""
    rev = st.session_state.get(key + "-rev", 0) + 1
    st.session_state[key + "-rev"] = rev
    st.session_state[key + "-init"] = {"objects": objects, "ganatomy_revision": rev}


def stroke_canvas(key: str, background: bytes, brush: int, size: int, buttons: str):
    """The Paint pages' drawable canvas over ``background`` (PNG bytes) with Undo stroke / Clear
    buttons (keys ``buttons + "_undo"`` / ``"_clear"``; call it inside a fragment): the drawing's
    RGBA image, or None before any stroke."""
    # imported here: the component registers itself on import, which needs a running Streamlit
    # app (importing this module from a script or a test must not)
    from streamlit_drawable_canvas import st_canvas
    result = st_canvas(fill_color="rgba(255, 214, 10, 0.35)", stroke_width=brush,
                       stroke_color="rgba(255, 214, 10, 0.75)", background_image=background,
                       width=size, height=size, drawing_mode="freedraw", return_image_data=True,
                       initial_drawing=st.session_state.get(key + "-init"), key=key)
    b1, b2 = st.columns(2)
    n_strokes = len(canvas_objects(key))
    if b1.button("Undo stroke", icon=":material/undo:", disabled=n_strokes == 0, key=buttons + "_undo",
                 width="stretch"):
        canvas_restart(key, canvas_objects(key)[:-1])
        st.rerun(scope="fragment")
    if b2.button("Clear", icon=":material/delete:", disabled=n_strokes == 0, key=buttons + "_clear", width="stretch"):
        canvas_restart(key, [])
        st.rerun(scope="fragment")
    return result.image_data if canvas_objects(key) else None


@st.cache_resource(show_spinner="Loading the inverter…", max_entries=8)
def _inverter(name: str, layer: str, stamp: tuple, _G):
    enc, meta = encoder_for(_G, name, layer)
    return pin_cache_key(enc), meta


def inverter(name: str, G, layer: str = "layer4"):
    """The generator's inverter into ``layer`` and its meta (shared, never changed; loaded again when a
    file of it changes: a newly trained one). No inverter: the CheckpointError of ``encoder_for``."""
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in encoder_paths(name, layer) if p.is_file())
    return _inverter(name, layer, (stamp, getattr(G, "cache_key", None), str(device())), G)

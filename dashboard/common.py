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


def _revision(name: str) -> str:
    """What a cached model is keyed by besides its name: for a user-added model, its registry
    entry's file, digest and time, so a model replaced under its name (Models page) is loaded
    anew by every session, never served from the shared cache."""
    entry = core.models.user_models().get(name)
    return "" if entry is None else f"{entry.get('path')}|{entry.get('sha256', '')}|{entry.get('added_at', '')}"


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

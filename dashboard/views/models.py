"""Models: the published and added generators and segmenters — what is here, what is missing and
where its file goes; add a model by path or upload; pick the segmenter (thin view over
core.models)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import models as published
from core import toyworld
from core.base import sharing
from core.base.protocols import check_segmenter
from core.models import zoo_table
from core.models.catalog import MAX_NAME
from dashboard.common import ERRORS, device, fail, fix_for, generator, plain, segmenter

st.title("Models")
st.caption(f"Weights of published and added models live in `{published.models_dir()}` "
           "(`$GANATOMY_MODELS` moves it). Nothing is downloaded unless you press **Download**; "
           "files are loaded without running code from them.")
try:
    _where = device()
    _limit = sharing.job_limit(_where)
    st.caption(f"The server computes on **{_where}** (`$GANATOMY_DEVICE`: auto, cpu, cuda or cuda:N; default "
               "auto: the first GPU if there is one). Every session shares the models placed there. Long jobs "
               + (f"take turns there, {_limit} at a time "
                  f"(`${'GANATOMY_GPU_JOBS' if _where.type == 'cuda' else 'GANATOMY_CPU_JOBS'}`)"
                  if _limit else "run side by side (no limit on the CPU)")
               + f"; {sharing.busy(_where)} computing now. What-ifs never wait for them.")
except ERRORS as e:
    fail("The server's device setting is not usable", e, fix_for(e), stop=False)


def refuse(what: str, error: BaseException):
    fail(what, error, stop=False)         # a refusal with its reason; anything else shown as a bug


if notice := st.session_state.pop("models_notice", None):
    st.success(notice)
    st.toast(notice, icon=":material/check_circle:")     # seen where the user is: by the form

# the session's display name (no accounts): shown beside the models it adds and the units it flags. The
# widget's own state is dropped when another page runs, so the name is kept under a key of its own.
st.session_state.setdefault("display_name_input", st.session_state.get("display_name", "anonymous"))
me = st.text_input("Your name (shown beside models you add and units you flag)", key="display_name_input",
                   max_chars=MAX_NAME).strip() or "anonymous"
st.session_state["display_name"] = me


# ----------------------------------------------------------------------------- shipped zoo
st.subheader("Shipped toyworld generators")
shipped = zoo_table()
if shipped:
    st.dataframe(pd.DataFrame(shipped), hide_index=True, width="stretch")
    st.caption("From each model card (`core/weights/gans/<name>.json`; `python scripts/report_gans.py` "
               "evaluates them). FID is in the toyworld feature space (compare with real-vs-real, never with "
               "Inception FIDs); MS-SWD (x 1e3) compares local patch statistics and sees blur that this FID "
               "forgives. Lower is better for both.")
else:
    st.info("No toyworld generators are shipped in `core/weights/gans`; restore them with "
            "`git checkout -- core/weights` or train them with `ganatomy train` (docs/cli.md).")

# ----------------------------------------------------------------------------- what is here
st.subheader("Published and added models")
rows = published.status()
table = pd.DataFrame([{
    "model": r["name"], "kind": r["kind"], "architecture": r["arch"],
    "status": "available" if r["available"] else "missing",
    "file": r["path"],
    "packages": ", ".join(r["packages"]) + ("" if r["packages_ok"] or not r["packages"] else " — not installed"),
    "source": r["source"]} for r in rows])          # a user's model: "added by <name> at <time>"
st.dataframe(table, hide_index=True, width="stretch")
n_ok = sum(r["available"] for r in rows)
st.caption(f"{n_ok} of {len(rows)} available. Optional packages: `pip install -r requirements-optional.txt`.")

users = [r for r in rows if r["origin"] == "user"]
if users:
    st.subheader("Models added by users")
    st.dataframe(pd.DataFrame([{
        "model": r["name"], "kind": r["kind"], "architecture": r["arch"],
        "added by": r["added_by"] or "an unknown user", "added at (UTC)": r["added_at"], "file": r["path"]}
        for r in users]), hide_index=True, width="stretch")
    for r in users:
        st.caption(f"**{plain(r['name'])}**: {plain(r['source'])}")
    gone = st.selectbox("Unregister a model (for everyone)", [r["name"] for r in users], key="remove_model")
    typed = st.text_input(f"Type {plain(gone)} to confirm", key="remove_confirm",
                          help="A model belongs to whoever added it: only they (or an admin) can remove it, and "
                               "removing it removes it for every user (a model it had replaced comes back). "
                               "It stays under 'Recently removed', where its owner can undo it.")
    if st.button(f"Unregister {plain(gone)}", key="remove_button"):
        try:
            published.unregister(gone, confirm=typed.strip(), by=me)
        except ERRORS as e:        # not confirmed, or gone already: say how
            refuse(f"{plain(gone)} was not unregistered", e)
        else:
            generator.clear()      # no session is handed the removed model from the shared cache
            st.session_state["models_notice"] = (f"Unregistered **{plain(gone)}** (asked by {plain(me)}); "
                                                 "**Undo** under Recently removed brings it back.")
            st.rerun()

# ----------------------------------------------------------------------------- recently removed
removed = published.removed_models(by=me)
if removed:
    st.subheader("Recently removed")
    try:
        kept = f"for {published.trash_days():g} days"
    except ERRORS as e:            # a malformed $GANATOMY_TRASH_DAYS: said, the list still shown
        fail("The trash's retention setting is not usable", e, fix_for(e), stop=False)
        kept = "until the setting is fixed"
    st.caption(f"Unregistered models stay here {kept} (`$GANATOMY_TRASH_DAYS`), their files in the trash "
               "(counted in the uploads quota): their owner (or an admin) can undo the removal or delete them "
               "for good.")
    for r in removed[:20]:
        text, undo, purge = st.columns([6, 1, 1])
        gone_file = "" if r["file_here"] else " — its file is gone, it cannot be restored"
        text.markdown(plain(f"{r['name']} ({r['arch']} {r['kind']}, added by {r['added_by'] or 'an unknown user'}) "
                            f"removed by {r['removed_by'] or 'an unknown user'} at {r['removed_at']}{gone_file}"))
        if not r["may_undo"]:
            continue               # others see it, without the buttons
        if r["file_here"] and undo.button("Undo", key=f"undo-{r['id']}"):
            try:
                published.restore(r["id"], by=me)
            except ERRORS as e:    # the name taken since, the file gone: say why
                refuse(f"{plain(r['name'])} was not restored", e)
            else:
                generator.clear()
                st.session_state["models_notice"] = f"Restored **{plain(r['name'])}** (asked by {plain(me)})."
                st.rerun()
        if purge.button("Delete for good", key=f"purge-{r['id']}"):
            try:
                published.purge(r["id"], by=me)
            except ERRORS as e:
                refuse(f"{plain(r['name'])} was not deleted", e)
            else:
                st.session_state["models_notice"] = f"Deleted **{plain(r['name'])}** for good (asked by {plain(me)})."
                st.rerun()

missing = [r for r in rows if not r["available"]]
if missing:
    st.subheader("Missing models")
    name = st.selectbox("Model", [r["name"] for r in missing], key="missing_model")
    row = next(r for r in missing if r["name"] == name)
    if name in published.PUBLISHED:
        st.info(published.missing_message(published.spec(name)))
    else:
        st.info(f"{name}: its file {row['path']} is gone; put it back there or add the model again.")
    why = published.unverified(name) if row["downloadable"] and name in published.PUBLISHED else None
    trust, digest = False, None
    if why:
        st.warning(f"A download of {name} cannot be fully verified: {why}. Give the weights file's full "
                   "SHA-256 if its publisher gives one, or accept the source on first use: its full digest is "
                   "then pinned, and every later download must match it.", icon=":material/gpp_maybe:")
        digest = st.text_input("Full SHA-256 of the weights file (64 hex digits, optional)", key="download_sha").strip()
        trust = st.checkbox(f"I trust {row['source']} for {name}", key="download_trust")
    blocked = bool(why) and not (trust or digest)
    if row["downloadable"] and st.button(f"Download {name}", key="download", disabled=blocked):
        bar = st.progress(0.0, text="Downloading…")

        def progress(done, total):
            if total:
                bar.progress(min(done / total, 1.0), text=f"{done / 2 ** 20:.1f} of {total / 2 ** 20:.1f} MiB")

        try:
            path = published.fetch(name, download=True, progress=progress, trust=trust, sha256=digest or None)
            st.session_state["models_notice"] = f"{name} downloaded and verified: `{path}`"
            st.rerun()
        except ERRORS as e:      # offline, checksum mismatch, missing package: say why
            refuse(f"Could not download {name}", e)

# ----------------------------------------------------------------------------- add a model
st.subheader("Add a model")
c1, c2 = st.columns(2)
new_name = c1.text_input("Name", placeholder="lab/church-v2", key="add_name").strip()
arch_choice = c2.selectbox("Architecture", ["detect from the file", *published.architectures()], key="add_arch")
arch = None if arch_choice.startswith("detect") else arch_choice
taken = next((r for r in users if r["name"] == new_name), None)
replace = st.checkbox("Replace the existing model of this name (for everyone)", key="add_replace",
                      disabled=taken is None)
if taken is not None:
    st.warning(f"**{plain(new_name)}** is taken: {plain(taken['source'])}. Only its owner (or an admin) can add "
               "under this name, by ticking **Replace**: the file it replaces is kept, and unregistering the "
               "replacement brings it back.")
options = {}
if arch in ("stylegan2", "biggan"):
    o1, o2 = st.columns(2)
    options["truncation"] = float(o1.slider("Truncation", 0.05, 1.0, 1.0, 0.05, key="add_trunc"))
    if arch == "biggan":
        options["class_index"] = int(o2.number_input("ImageNet class", 0, 999, 497, key="add_class"))


def add(what: str, fn):
    if not new_name:
        st.error("Give the model a name first (e.g. `lab/church-v2`).", icon="⚠️")
        return
    try:
        entry = fn()
    except ERRORS as e:          # broken, foreign or unsafe files are refused with the reason
        refuse(f"{what} was refused", e)
        return
    if entry.get("replaced"):
        generator.clear()           # sessions load the new weights under the name, not the cached old ones
    load = f"core.load_{entry['kind']}({new_name!r})"
    st.session_state["models_notice"] = (f"Added **{plain(new_name)}** as {plain(me)}: {entry['arch']} {entry['kind']} "
                                         f"from {plain(entry['path'])}. Load it with {plain(load)}.")
    st.rerun()                      # list it in the table above


by_path, by_upload = st.tabs(["Local path", "Upload"])
with by_path:
    path = st.text_input("Path of a weights file (or of a SegFormer folder)", key="add_path",
                         help="Only files under the server's model folders can be added by path "
                              "(GANATOMY_MODEL_ROOTS; by default the models folder); upload any other.").strip()
    if st.button("Add by path", key="add_path_button"):
        if not path:
            st.error("Give the path of the weights file.", icon="⚠️")
        else:
            add(path, lambda: published.register(new_name, path, arch=arch, options=options,
                                                 replace=replace and taken is not None, added_by=me,
                                                 roots=published.model_roots()))
def upload_tab():
    """The uploader, in a function: the page's globals outlive its run (Streamlit keeps the last
    script module until another run), and a staged file held there stayed in memory after its
    session had gone, until the next visitor came."""
    up = st.file_uploader("Weights file", type=["pt", "pth", "bin", "ckpt", "safetensors"], key="upload")

    def store_upload():
        up.seek(0)                  # the uploaded file is streamed to disk from its start, not copied
        return published.add_upload(up, up.name, new_name, arch=arch, options=options,
                                    replace=replace and taken is not None, added_by=me)

    if st.button("Add upload", key="add_upload_button", disabled=up is None):
        add(f"Upload {up.name}", store_upload)


with by_upload:
    upload_tab()

# ----------------------------------------------------------------------------- segmenter
st.subheader("Segmenter")
choices = ["toyworld", *published.available_segmenters()]
current = st.session_state.get("shared_segmenter", "toyworld")
seg_name = st.selectbox("Segmenter for dissection", choices,
                        index=choices.index(current) if current in choices else 0, key="segmenter_pick")
st.session_state["shared_segmenter"] = seg_name
if st.button("Check segmenter", key="check_segmenter"):
    try:
        seg = segmenter(seg_name)
        images, _ = toyworld.render("town", 2, seed=0, size=64)
        check_segmenter(seg, images)
        st.success(f"{seg_name}: {len(seg.labels) - 1} concepts ({', '.join(seg.labels[1:9])}, …)")
    except ERRORS as e:
        refuse(f"{seg_name} cannot be used", e)

"""The script every dashboard session runs (``streamlit run dashboard/app.py`` serves it).

Pages are thin views over ``core`` (dashboard/views/*), sharing the model picker and cached
resources of dashboard/common.py.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import streamlit as st

try:                                   # where Streamlit 1.4x-1.6x keep it; a rerun it asks for ends a run with it
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
except ImportError:                    # elsewhere: notices are then shown only on runs that end normally
    class RerunException(Exception):
        pass

import dashboard.common  # noqa: F401  (sets the torch threads of the server once)
from core.base.cache import take_notices

st.set_page_config(page_title="GANatomy", page_icon="🔬", layout="wide")

if os.environ.get("GANATOMY_LOGIN") == "1" and not st.user.get("is_logged_in", False):
    # a lab server that asks who you are: Streamlit's OIDC login (README, "Share it with your lab")
    st.title("GANatomy")
    missing = []
    if importlib.util.find_spec("authlib") is None:
        missing.append("the package Authlib (`pip install Authlib`)")
    try:
        has_auth = "auth" in st.secrets
    except Exception:  # noqa: BLE001  (no secrets file at all, or one that does not parse)
        has_auth = False
    if not has_auth:
        missing.append("an `[auth]` section in `.streamlit/secrets.toml` (the identity provider)")
    if missing:                          # said plainly, instead of a traceback on "Log in"
        st.error("This server is started with `GANATOMY_LOGIN=1` but cannot log anyone in: it lacks "
                 + " and ".join(missing) + ". The server's administrator adds them and restarts it (README, "
                 "\"Share it with your lab\").", icon=":material/lock:")
        st.stop()
    st.write("This lab's dashboard asks you to log in first (the identity provider is set in "
             "`.streamlit/secrets.toml`, section `[auth]`).")
    st.button("Log in", on_click=st.login, type="primary")
    st.stop()
if os.environ.get("GANATOMY_LOGIN") == "1":       # logged in: the name beside models added and units flagged
    st.session_state.setdefault("display_name", st.user.get("name") or st.user.get("email") or "anonymous")

VIEWS = Path(__file__).resolve().parent / "views"
def _page(file: str, title: str, icon: str, **kw):
    return st.Page(str(VIEWS / file), title=title, icon=f":material/{icon}:", **kw)


# Grouped the way the lab asks its questions; always fully listed (13 pages would fold at 10 by default).
pages = {
    "What units do": [_page("concept_maps.py", "Concept maps", "grid_view", default=True),
                      _page("units.py", "Unit browser", "biotech"),
                      _page("importance.py", "Unit importance", "leaderboard"),
                      _page("evolution.py", "Training evolution", "timeline"),
                      _page("omissions.py", "Omissions", "visibility_off")],
    "Changing them": [_page("paint.py", "Paint", "brush"),
                      _page("whatif.py", "What-if", "science"),
                      _page("causal_units.py", "Causal units", "target"),
                      _page("tracing.py", "Tracing", "conversion_path"),
                      _page("rewrite.py", "Rewrite", "auto_fix_high"),
                      _page("repair.py", "Artifact repair", "healing")],
    "The lab": [_page("models.py", "Models", "inventory_2"),
                _page("toyworld.py", "Toyworld", "cottage")],
}
# A cache that could not be used is said on the page, never mistaken for a model problem: the
# notices of this session's thread, kept across a rerun the page asks for (the rerun would wipe them).
take_notices()
carried = st.session_state.pop("cache_notices", [])
try:
    st.navigation(pages, expanded=True).run()
except RerunException:
    st.session_state["cache_notices"] = carried + take_notices()
    raise
finally:
    for notice in dict.fromkeys(carried + take_notices()):
        st.warning(notice, icon=":material/database:")

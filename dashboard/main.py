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
pages = [st.Page(str(VIEWS / "concept_maps.py"), title="Concept maps", icon=":material/grid_view:", default=True),
         st.Page(str(VIEWS / "units.py"), title="Unit browser", icon=":material/biotech:"),
         st.Page(str(VIEWS / "importance.py"), title="Unit importance", icon=":material/leaderboard:"),
         st.Page(str(VIEWS / "paint.py"), title="Paint", icon=":material/brush:"),
         st.Page(str(VIEWS / "rewrite.py"), title="Rewrite", icon=":material/auto_fix_high:"),
         st.Page(str(VIEWS / "causal_units.py"), title="Causal units", icon=":material/target:"),
         st.Page(str(VIEWS / "whatif.py"), title="What-if", icon=":material/science:"),
         st.Page(str(VIEWS / "repair.py"), title="Artifact repair", icon=":material/healing:"),
         st.Page(str(VIEWS / "evolution.py"), title="Training evolution", icon=":material/timeline:"),
         st.Page(str(VIEWS / "omissions.py"), title="Omissions", icon=":material/visibility_off:"),
         st.Page(str(VIEWS / "tracing.py"), title="Tracing", icon=":material/conversion_path:"),
         st.Page(str(VIEWS / "models.py"), title="Models", icon=":material/inventory_2:"),
         st.Page(str(VIEWS / "toyworld.py"), title="Toyworld", icon=":material/cottage:")]
# A cache that could not be used is said on the page, never mistaken for a model problem: the
# notices of this session's thread, kept across a rerun the page asks for (the rerun would wipe them).
take_notices()
carried = st.session_state.pop("cache_notices", [])
try:
    st.navigation(pages).run()
except RerunException:
    st.session_state["cache_notices"] = carried + take_notices()
    raise
finally:
    for notice in dict.fromkeys(carried + take_notices()):
        st.warning(notice, icon=":material/database:")

"""GANatomy dashboard entry point: ``streamlit run dashboard/app.py``.

Pages are thin views over ``core`` (dashboard/views/*), sharing the model picker and cached
resources of dashboard/common.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

import dashboard.common  # noqa: F401  (sets the torch threads of the server once)

st.set_page_config(page_title="GANatomy", page_icon="🔬", layout="wide")

if os.environ.get("GANATOMY_LOGIN") == "1" and not st.user.get("is_logged_in", False):
    # a lab server that asks who you are: Streamlit's OIDC login (README, "Share it with your lab")
    st.title("GANatomy")
    st.write("This lab's dashboard asks you to log in first (the identity provider is set in "
             "`.streamlit/secrets.toml`, section `[auth]`).")
    st.button("Log in", on_click=st.login, type="primary")
    st.stop()
if os.environ.get("GANATOMY_LOGIN") == "1":       # logged in: the name beside models added and units flagged
    st.session_state.setdefault("display_name", st.user.get("name") or st.user.get("email") or "anonymous")

VIEWS = Path(__file__).resolve().parent / "views"
pages = [st.Page(str(VIEWS / "concept_maps.py"), title="Concept maps", icon=":material/grid_view:", default=True),
         st.Page(str(VIEWS / "units.py"), title="Unit browser", icon=":material/biotech:"),
         st.Page(str(VIEWS / "paint.py"), title="Paint", icon=":material/brush:"),
         st.Page(str(VIEWS / "causal_units.py"), title="Causal units", icon=":material/target:"),
         st.Page(str(VIEWS / "whatif.py"), title="What-if", icon=":material/science:"),
         st.Page(str(VIEWS / "repair.py"), title="Artifact repair", icon=":material/healing:"),
         st.Page(str(VIEWS / "evolution.py"), title="Training evolution", icon=":material/timeline:"),
         st.Page(str(VIEWS / "tracing.py"), title="Tracing", icon=":material/conversion_path:"),
         st.Page(str(VIEWS / "models.py"), title="Models", icon=":material/inventory_2:"),
         st.Page(str(VIEWS / "toyworld.py"), title="Toyworld", icon=":material/cottage:")]
st.navigation(pages).run()

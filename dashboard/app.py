"""GANatomy dashboard entry point: ``streamlit run dashboard/app.py``.

Pages are thin views over ``core`` (dashboard/views/*), sharing the model picker and cached
resources of dashboard/common.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

st.set_page_config(page_title="GANatomy", page_icon="🔬", layout="wide")

VIEWS = Path(__file__).parent / "views"
pages = [st.Page(str(VIEWS / "dissection.py"), title="Dissection", icon="🔬", default=True),
         st.Page(str(VIEWS / "whatif.py"), title="What-if", icon="🎨"),
         st.Page(str(VIEWS / "causal_units.py"), title="Causal units", icon="🎯"),
         st.Page(str(VIEWS / "repair.py"), title="Artifact repair", icon="🩹"),
         st.Page(str(VIEWS / "evolution.py"), title="Training evolution", icon="📈"),
         st.Page(str(VIEWS / "tracing.py"), title="Tracing", icon="🧭"),
         st.Page(str(VIEWS / "models.py"), title="Models", icon="📦"),
         st.Page(str(VIEWS / "toyworld.py"), title="Toyworld", icon="🏘️")]
st.navigation(pages).run()

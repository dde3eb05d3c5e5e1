"""GANatomy dashboard entry point: ``streamlit run dashboard/app.py``.

Pages are thin views over ``core``. Until the dissection pages land, the app shows toyworld,
the embedded default world: scenes and their exact label maps.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

st.set_page_config(page_title="GANatomy", page_icon="🔬", layout="wide")

pages = [st.Page(str(Path(__file__).parent / "views" / "toyworld.py"), title="Toyworld", icon="🏘️",
                 default=True)]
st.navigation(pages).run()

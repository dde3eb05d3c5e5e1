"""GANatomy dashboard: Streamlit pages only (views/), thin over core; common.py holds the shared
model pickers, cached resources and error display."""

"""GANatomy dashboard entry point: ``streamlit run dashboard/app.py``.

The server (Streamlit's ``st.App``, found here by ``streamlit run``) runs ``main.py`` for every
session; pages are thin views over ``core`` (dashboard/views/*). Before it listens, it imports
``core`` and reads the zoo's generators once, so a lab's first visitor does not wait for torch
(the first page's server part: about 0.6 s instead of 2.4 s).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import streamlit as st

_LOG = logging.getLogger("ganatomy.dashboard")


def _preload() -> None:
    """Import what every session needs and read the shipped generators once (the OS keeps their
    files cached; sessions still load their own shared copies through st.cache_resource). A
    failure here is only logged: the first session then shows it on its page, with its fix."""
    try:
        import core
        import dashboard.common  # noqa: F401  (torch, core and its floors, the torch thread setting)
        for name in [m for m in core.list_models() if "@" not in m]:
            core.load_generator(name)
    except Exception as e:                     # noqa: BLE001 - reported where the user can act on it
        _LOG.warning("GANatomy: preloading at start-up failed (%s: %s); the first page will say why",
                     type(e).__name__, e)


@contextlib.asynccontextmanager
async def _lifespan(_app):
    await asyncio.to_thread(_preload)
    yield


app = st.App("main.py", lifespan=_lifespan)

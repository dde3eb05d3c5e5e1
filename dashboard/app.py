"""GANatomy dashboard entry point: ``streamlit run dashboard/app.py``.

The server (Streamlit's ``st.App``, found here by ``streamlit run``) runs ``main.py`` for every
session; pages are thin views over ``core`` (dashboard/views/*). Before it listens, it imports
``core`` and reads the zoo's generators once, so a lab's first visitor does not wait for torch
(the first page's server part: about 0.6 s instead of 2.4 s).
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time

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
        core.models.sweep_trash()              # removals past $GANATOMY_TRASH_DAYS, files killed runs left
    except Exception as e:                     # noqa: BLE001 - reported where the user can act on it
        _LOG.warning("GANatomy: preloading at start-up failed (%s: %s); the first page will say why",
                     type(e).__name__, e)


REAP_SECONDS = 15


class _Reaper:
    """Frees what sessions that left still hold: Streamlit keeps a disconnected session (its widget
    state, and every file staged in its uploader, in memory) for ``server.disconnectedSessionTTL``
    seconds so a dropped connection can resume, but it drops such a session only when another one
    touches its store: three sessions that staged 400 MB uploads and left kept the server at +1.5 GB
    for good (measured, findings "Serving a lab"). Every REAP_SECONDS this closes the sessions that
    have been gone for nearly the TTL (a reconnect within ``TTL - 30 s`` still resumes) and drops
    staged files that no live or resumable session owns. Streamlit's internals change: anything unexpected turns
    the reaper off with one log line, never breaks the server."""

    def __init__(self):
        self.gone_since: dict[str, float] = {}
        self.off = False
        self.settling = False

    def tick(self) -> None:
        if self.off:
            return
        try:
            from streamlit import config
            from streamlit.runtime import Runtime
            rt = Runtime.instance()
            sessions = rt._session_mgr                        # noqa: SLF001 (no public way to list stored sessions)
            ttl = float(config.get_option("server.disconnectedSessionTTL"))
            active = {info.session.id for info in sessions.list_active_sessions()}
            stored = {info.session.id for info in sessions._session_storage.list()}   # noqa: SLF001
            now = time.monotonic()
            self.gone_since = {sid: self.gone_since.get(sid, now) for sid in stored}
            # closed while still in the store (an entry past its TTL can no longer be looked up, yet
            # lingers until the next write): up to two ticks before Streamlit's own TTL
            limit = max(ttl - 2 * REAP_SECONDS, ttl / 2)
            closed = False
            for sid, since in list(self.gone_since.items()):
                if now - since > limit:
                    closed = True
                    # its widget values (a staged upload among them) are cleared first: Streamlit keeps the
                    # last script run's context, and through it this session's state, until another run
                    info = sessions.get_session_info(sid) or sessions._session_storage.get(sid)   # noqa: SLF001
                    state = getattr(getattr(info, "session", None), "session_state", None)
                    state = getattr(state, "_state", state)           # a SafeSessionState wraps it
                    if state is not None:
                        state.clear()
                    sessions.close_session(sid)               # shuts it down: its state and files go
                    self.gone_since.pop(sid, None)
                    stored.discard(sid)
            files = rt.uploaded_file_mgr
            freed = closed
            for sid in list(getattr(files, "file_storage", {})):
                if sid not in active and sid not in stored:
                    files.remove_session_files(sid)
                    freed = True
            # worker threads (Streamlit's and asyncio's executors) keep the last session context they
            # ran with, and through it that session's state (a staged upload among it) until they run
            # another: a departed session's context is taken off them
            from streamlit.runtime.scriptrunner_utils.script_run_context import SCRIPT_RUN_CONTEXT_ATTR_NAME
            for thread in threading.enumerate():
                ctx = getattr(thread, SCRIPT_RUN_CONTEXT_ATTR_NAME, None)
                if ctx is not None and getattr(ctx, "session_id", None) not in active | stored:
                    setattr(thread, SCRIPT_RUN_CONTEXT_ATTR_NAME, None)
                    freed = True
            if freed or self.settling:
                # a closed session's objects form cycles, and its shutdown finishes on the event loop after
                # this tick: collect now and once more at the next tick (an idle server may not collect for
                # long: the uploads stayed in memory until the next visitor came), then give the pages back
                gc.collect()
                _trim()
            self.settling = freed
        except Exception as e:                 # noqa: BLE001 - housekeeping must never take the server down
            self.off = True
            _LOG.warning("GANatomy: freeing the memory of departed sessions is off (%s: %s)", type(e).__name__, e)


def _trim() -> None:
    """glibc's malloc_trim(0): return the heap's free pages to the system (a no-op elsewhere)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def _reap_forever(reaper: _Reaper) -> None:
    while True:
        await asyncio.sleep(REAP_SECONDS)
        reaper.tick()


@contextlib.asynccontextmanager
async def _lifespan(_app):
    await asyncio.to_thread(_preload)
    task = asyncio.create_task(_reap_forever(_Reaper()))
    try:
        yield
    finally:
        task.cancel()


app = st.App("main.py", lifespan=_lifespan)

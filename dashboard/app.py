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
import os
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
                    sessions.close_session(sid)               # shuts it down: its state and files go
                    self.gone_since.pop(sid, None)
                    stored.discard(sid)
            files = rt.uploaded_file_mgr
            freed = closed
            for sid in list(getattr(files, "file_storage", {})):
                if sid not in active and sid not in stored:
                    files.remove_session_files(sid)
                    freed = True
            if freed:
                gc.collect()     # a closed session's objects form cycles; an idle server may not collect for long
                _trim()
        except Exception as e:                 # noqa: BLE001 - housekeeping must never take the server down
            self.off = True
            _LOG.warning("GANatomy: freeing the memory of departed sessions is off (%s: %s)", type(e).__name__, e)


MMAP_THRESHOLD = 64 * 1024       # bytes: a block this large gets its own mapping, unmapped when freed
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt parameters (malloc.h)


def _malloc_policy() -> None:
    """glibc keeps freed heap for reuse: a 400 MB upload arrives in 64 KiB chunks, and by default
    glibc raises its mmap threshold as large blocks are freed (up to 32 MiB), so the chunks land in
    the heap and stay there after the upload is dropped (+0.4-0.8 GB for good after three staged
    uploads; benchmarks/staged_uploads_rss.py). A fixed threshold gives every block of 64 KiB or more
    its own mapping, returned to the system when freed; small objects are unaffected.
    ``GANATOMY_MALLOC=default`` keeps glibc's policy; elsewhere than glibc this does nothing."""
    if os.environ.get("GANATOMY_MALLOC", "").strip().lower() == "default":
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


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


_malloc_policy()
app = st.App("main.py", lifespan=_lifespan)

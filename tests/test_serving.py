"""Serving a lab (issue 18): the server listens on this machine only unless told otherwise, and a
lab can put its dashboard behind Streamlit's OIDC login."""
from __future__ import annotations

import threading
from pathlib import Path

import tomllib
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_the_server_binds_this_machine_only_with_a_bounded_upload():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert 0 < cfg["server"]["maxUploadSize"] <= 512
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["runner"]["postScriptGC"] is False      # a full GC after every rerun: ~0.35 s of CPU each


def test_login_gate_shows_nothing_but_the_login(monkeypatch):
    import importlib.util
    monkeypatch.setenv("GANATOMY_LOGIN", "1")
    # without Authlib and an [auth] section: said plainly, no button that would raise
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, _real=importlib.util.find_spec:
                        None if name == "authlib" else _real(name, *a))
    at = AppTest.from_file(str(ROOT / "dashboard" / "main.py"), default_timeout=120).run()
    assert not at.exception and not at.button
    assert "Authlib" in at.error[0].value and "[auth]" in at.error[0].value
    assert not at.sidebar.selectbox
    # with both: nothing but the login
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, _real=importlib.util.find_spec:
                        object() if name == "authlib" else _real(name, *a))
    at = AppTest.from_file(str(ROOT / "dashboard" / "main.py"), default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert [t.value for t in at.title] == ["GANatomy"]
    assert not at.sidebar.selectbox                     # no page, no model picker before the login


def test_a_read_only_cache_is_said_on_the_page(monkeypatch, tmp_path):
    """A cache that cannot be written: the page still shows its result, and says why it will be
    computed again (the cache's notice, for this session only)."""
    import errno
    import os

    from core.base import cache
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANATOMY_DASHBOARD_SAMPLES", "50")

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(cache, "_publish", refuse)        # every store fails as on a read-only disk
    cache.take_notices()
    at = AppTest.from_file(str(ROOT / "dashboard" / "main.py"), default_timeout=300)
    at.session_state["shared_samples"] = 50
    at.run()
    assert not at.exception
    assert [b for b in at.button if "Dissect" in b.label], "the concept maps page offers to dissect"
    next(b for b in at.button if "Dissect" in b.label).click().run(timeout=300)
    assert not at.exception
    notes = [w.value for w in at.warning if "cannot be written" in w.value]
    assert notes and "GANATOMY_CACHE" in notes[0], [w.value for w in at.warning]


def test_an_installed_package_serves_with_the_repositorys_settings(tmp_path, monkeypatch):
    """An installed package has no .streamlit/config.toml beside it: `ganatomy serve` then gives the
    server the same settings, kept in core.cli.SERVING (equal to the repository's file)."""
    from core import cli
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cli.serving_settings(cfg) == cli.SERVING
    site = tmp_path / "site-packages"                                # the wheel's layout: no .streamlit/
    (site / "core").mkdir(parents=True)
    (site / "dashboard").mkdir()
    (site / "dashboard" / "app.py").write_text("")
    monkeypatch.setattr(cli, "__file__", str(site / "core" / "cli.py"))
    cmd, root = cli.serve_command()
    assert root == site and "--server.address=127.0.0.1" in cmd and "--server.maxUploadSize=512" in cmd
    assert "--browser.gatherUsageStats=false" in cmd and "--server.fileWatcherType=none" in cmd


def test_ganatomy_serve_uses_the_repositorys_settings_from_any_folder(tmp_path):
    """`streamlit run` reads .streamlit/config.toml from the folder it starts in; `ganatomy serve`
    gives the server the repository's settings wherever it is started (and starts it)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    env = {"PATH": "/usr/bin:/bin", "GANATOMY_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    dry = subprocess.run([sys.executable, "-m", "core", "serve", "--dry-run"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    for flag in ("--server.address=127.0.0.1", "--server.fileWatcherType=none", "--server.maxUploadSize=512",
                 "--browser.gatherUsageStats=false", "--server.enableXsrfProtection=true"):
        assert flag in dry.stdout, (flag, dry.stdout)
    assert dry.stdout.startswith(f"cd {ROOT} && ")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "core", "serve", "--", f"--server.port={port}"], cwd=tmp_path,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        else:
            raise AssertionError("the server did not come up in 60 s")
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_the_reaper_closes_departed_sessions_and_drops_their_staged_uploads(monkeypatch):
    """dashboard/app.py's reaper, on stand-ins of Streamlit's session and upload managers: a session
    gone for nearly the TTL is closed, staged files nobody live owns are dropped, a live or recently
    departed session keeps its files, and anything unexpected turns the reaper off, never raises."""
    import types

    from streamlit import config
    from streamlit.runtime import Runtime

    import dashboard.app as app

    cleared = []

    class State:                                                # a session's widget values
        def __init__(self, sid):
            self.sid = sid

        def clear(self):
            cleared.append(self.sid)

    def info(sid):
        return types.SimpleNamespace(session=types.SimpleNamespace(id=sid, session_state=State(sid)))

    class Sessions:
        def __init__(self):
            self.active, self.stored, self.closed = ["live"], ["gone", "recent"], []
            self._session_storage = types.SimpleNamespace(list=lambda: [info(s) for s in self.stored])

        def list_active_sessions(self):
            return [info(s) for s in self.active]

        def get_session_info(self, sid):
            return info(sid) if sid in self.active + self.stored else None

        def close_session(self, sid):
            self.closed.append(sid)
            self.stored.remove(sid)

    class Files:
        def __init__(self):
            self.file_storage = {"live": {"f": 1}, "gone": {"f": 1}, "recent": {"f": 1}, "orphan": {"f": 1}}

        def remove_session_files(self, sid):
            self.file_storage.pop(sid)

    sessions, files = Sessions(), Files()
    rt = types.SimpleNamespace(_session_mgr=sessions, uploaded_file_mgr=files)
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: rt))
    monkeypatch.setattr(config, "get_option", lambda name: 120 if name == "server.disconnectedSessionTTL" else None)
    clock = [1000.0]
    monkeypatch.setattr(app.time, "monotonic", lambda: clock[0])
    # worker threads that last ran a session's script keep its context (and its state) until reused
    from streamlit.runtime.scriptrunner_utils.script_run_context import SCRIPT_RUN_CONTEXT_ATTR_NAME
    hold = threading.Event()
    workers = {sid: threading.Thread(target=hold.wait, daemon=True) for sid in ("live", "gone")}
    for sid, t in workers.items():
        setattr(t, SCRIPT_RUN_CONTEXT_ATTR_NAME, types.SimpleNamespace(session_id=sid))
        t.start()
    reaper = app._Reaper()
    reaper.tick()                                               # "gone" and "recent" seen leaving now
    assert sessions.closed == [] and set(files.file_storage) == {"live", "gone", "recent"}   # the orphan goes
    clock[0] += 60
    reaper.gone_since["recent"] = clock[0]                      # "recent" left only now
    reaper.tick()
    assert sessions.closed == []
    clock[0] += 31                                             # 91 s > TTL - 2 ticks for "gone"
    reaper.tick()
    assert sessions.closed == ["gone"] and set(files.file_storage) == {"live", "recent"}
    assert cleared == ["gone"]                                  # its widget values went before it closed
    assert getattr(workers["gone"], SCRIPT_RUN_CONTEXT_ATTR_NAME) is None
    assert getattr(workers["live"], SCRIPT_RUN_CONTEXT_ATTR_NAME).session_id == "live"
    hold.set()
    rt._session_mgr = None                                     # Streamlit changed: off, one log line, no raise
    reaper.tick()
    assert reaper.off
    reaper.tick()

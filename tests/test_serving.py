"""Serving a lab (issue 18): the server listens on this machine only unless told otherwise, and a
lab can put its dashboard behind Streamlit's OIDC login."""
from __future__ import annotations

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

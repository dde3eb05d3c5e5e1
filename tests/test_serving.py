"""Serving a lab (issue 18): the server listens on this machine only unless told otherwise, and a
lab can put its dashboard behind Streamlit's OIDC login."""
from __future__ import annotations

import tomllib
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_the_server_binds_this_machine_only_with_a_bounded_upload():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert 0 < cfg["server"]["maxUploadSize"] <= 512
    assert cfg["browser"]["gatherUsageStats"] is False


def test_login_gate_shows_nothing_but_the_login(monkeypatch):
    monkeypatch.setenv("GANATOMY_LOGIN", "1")
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert [t.value for t in at.title] == ["GANatomy"]
    assert not at.sidebar.selectbox                     # no page, no model picker before the login

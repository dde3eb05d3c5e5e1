"""Server memory when sessions stage large uploads on the Models page and leave without adding them.

Starts ``streamlit run dashboard/app.py`` on 127.0.0.1 (a private cache, a short
``--ttl`` for disconnected sessions), then ``--rounds`` times: ``--sessions`` browser contexts
(Debian chromium through Playwright) each stage a ``--mb`` MB file in the Models page's uploader
and close. The server's RSS (/proc) is sampled every few seconds until ``--settle`` seconds after
the reaper's time (TTL - 30 s). Reports start, peak and end RSS per round and writes JSON::

    python benchmarks/staged_uploads_rss.py                      # 3 sessions x 400 MB, 2 rounds
    python benchmarks/staged_uploads_rss.py --sessions 1 --mb 100 --rounds 1 --out /tmp/rss.json

``GANATOMY_MALLOC=default`` runs the server with glibc's default allocation policy (to compare).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ttl", type=int, default=60, help="server.disconnectedSessionTTL (s); reaped at TTL - 30 s")
    ap.add_argument("--settle", type=int, default=45, help="seconds sampled after the reaper's time")
    ap.add_argument("--out", default=str(ROOT / "docs/reports/staged_uploads_rss.json"))
    a = ap.parse_args(argv)
    started = provenance.stamp()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ganatomy-rss-"))
    big = tmp / "big.pt"
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20) * a.mb)               # incompressible enough; the page never loads it
    port = free_port()
    env = {**os.environ, "GANATOMY_CACHE": str(tmp / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port",
                               str(port), "--server.disconnectedSessionTTL", str(a.ttl)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
    rounds = []
    try:
        url = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            for r in range(a.rounds):
                page0 = browser.new_context().new_page()          # warm the server (first page, preload)
                page0.goto(url + "/models", timeout=120_000)
                page0.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
                page0.context.close()
                time.sleep(3)
                row = {"round": r + 1, "start_mb": rss_mb(server.pid), "samples": []}
                stagers = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=["--no-sandbox", "--disable-gpu"])
                for i in range(a.sessions):
                    ctx = stagers.new_context()
                    page = ctx.new_page()
                    page.goto(url + "/models", timeout=120_000)
                    page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
                    page.set_input_files("input[type=file]", str(big))
                    chip = page.locator("[data-testid=stFileChipName]", has_text="big.pt").first
                    chip.wait_for(state="attached", timeout=300_000)
                    time.sleep(2)
                    ctx.close()
                    row["samples"].append({"t": 0, "event": f"staged {i + 1}", "rss_mb": rss_mb(server.pid)})
                stagers.close()          # the users leave: their browsers (and the connections they pool) go too
                t0 = time.time()
                while time.time() - t0 < a.ttl - 30 + a.settle:
                    time.sleep(5)
                    row["samples"].append({"t": round(time.time() - t0), "event": "after the sessions left",
                                           "rss_mb": rss_mb(server.pid)})
                row["peak_mb"] = max(s["rss_mb"] for s in row["samples"])
                row["end_mb"] = row["samples"][-1]["rss_mb"]
                rounds.append(row)
                print(f"round {r + 1}: start {row['start_mb']:.0f} MB, peak {row['peak_mb']:.0f} MB, "
                      f"end {row['end_mb']:.0f} MB", flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"server log: {tmp / 'server.log'}")
    first = rounds[0]["start_mb"]
    out = {"what": f"server RSS (MB) while {a.sessions} sessions stage {a.mb} MB uploads on the Models page "
                   f"(not added) and leave; {a.rounds} rounds on one server; reaped at TTL - 30 s",
           "malloc": os.environ.get("GANATOMY_MALLOC", "ganatomy"),
           "ttl_s": a.ttl, "rounds": rounds, "end_minus_first_start_mb": rounds[-1]["end_mb"] - first}
    provenance.write_report(a.out, out, started=started)
    print(f"end - start: {out['end_minus_first_start_mb']:+.0f} MB -> {a.out}")
    return out


if __name__ == "__main__":
    main()

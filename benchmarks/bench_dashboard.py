"""Dashboard timings in a real browser: cold start, page switch, paint stroke, concurrent paint.

Runs the browser test's flow (tests/test_browser.py: ``streamlit run`` headless, Debian's
chromium through Playwright) ``--repeat`` times, each with a fresh server, and writes every
run's figures, their median and maximum, each run's load average and the stamp of
``core.base.provenance`` (command, commit, machine, load) to docs/reports/dashboard_timings.json.
The test itself asserts behaviour only; the speed targets
live here and are reported, never enforced::

    python benchmarks/bench_dashboard.py                 # 3 runs -> docs/reports/dashboard_timings.json
    python benchmarks/bench_dashboard.py --repeat 1 --out /tmp/t.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reports" / "dashboard_timings.json"
TARGETS = {"cold_start_s": 15.0, "page_switch_s": 1.5, "paint_stroke_s": 0.5, "concurrent_paint_s": 1.0}


def headline(measured: dict) -> dict:
    """The figures the targets are about, from one run's ``measured`` block."""
    return {"cold_start_s": measured["cold_start_s"],
            "page_switch_s": max(measured["page_switch_s"].values()),
            "paint_stroke_s": measured["paint_stroke_s"],
            "concurrent_paint_s": measured["concurrent_paint_s"]}


def summarise(runs: list[dict]) -> dict:
    heads = [headline(r["measured"]) for r in runs]
    out = {}
    for k, target in TARGETS.items():
        vals = [h[k] for h in heads]
        med = statistics.median(vals)
        out[k] = {"median": med, "max": max(vals), "runs": vals, "target": target,
                  "median_within_target": med <= target}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of the whole flow, each with a fresh server")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the report goes (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--screenshots", action="store_true", help="also refresh docs/screenshots (last run)")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error(f"--repeat must be at least 1, got {a.repeat}")
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    if not Path("/usr/bin/chromium").exists():
        sys.exit("bench_dashboard: /usr/bin/chromium is missing (Debian: apt-get install chromium)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            path = Path(tmp) / f"run{i}.json"
            env = {**os.environ, "GANATOMY_TIMINGS": str(path)}
            if a.screenshots and i == a.repeat - 1:
                env["GANATOMY_SCREENSHOTS"] = "1"
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "tests/test_browser.py"], cwd=ROOT, env=env)
            if r.returncode != 0 or not path.exists():
                sys.exit(f"bench_dashboard: run {i + 1} failed (pytest exit {r.returncode}); see its output above")
            runs.append(json.loads(path.read_text()))
            print(f"run {i + 1}/{a.repeat}: "
                  f"{json.dumps({k: round(v, 3) for k, v in headline(runs[-1]['measured']).items()})}"
                  f" ({time.perf_counter() - t:.0f} s)", flush=True)
    report = {"summary": summarise(runs), "runs": runs,
              "load_1min_during_runs": [x for r in runs for x in r["load_average_1min"].values()],
              "note": runs[-1]["note"] + ". Targets are reported, never enforced by a test."}
    provenance.write_report(a.out, report, started=started)
    for k, s in report["summary"].items():
        print(f"{k:20s} median {s['median']:.2f} s  max {s['max']:.2f} s  (target {s['target']} s)")
    print(f"load average (1 min) over the runs: {report['load_1min_during_runs']}; written to {a.out}")


if __name__ == "__main__":
    main()

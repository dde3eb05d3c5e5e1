"""Stress: writers racing on one cache key (issue 18, "Cache you can trust").

    python benchmarks/stress_cache.py   # 2 processes x 300 saves per phase -> docs/reports/cache_stress.json
    python benchmarks/stress_cache.py --n 40 --out /tmp/cache_stress.json --start-method fork

Three phases, each with ``--procs`` writer processes (default 2) in a fresh cache folder:

- ``one_key``: every process saves the same key ``n`` times, each time with its own payload,
  and reads the key back after every save (the first complete entry stays; later saves are
  discarded).
- ``fresh_keys``: ``n`` rounds; in round i (behind a barrier) every process saves key i at the
  same moment, then reads it back. All processes must read the same entry (the winner).
- ``damaged_keys``: ``n`` rounds; in round i process 0 first plants a damaged entry for key i
  (junk arrays, an entry of format 1 without checksum, an empty folder, a file, the arrays of one
  writer with the metadata and manifest of another), then every process calls ``cached`` on it.

A payload is internally consistent: its array ``a`` holds ``meta["value"]`` ``meta["n"]`` times and
``meta["writer"]`` is the value's writer. Every read is checked; the report counts failures
(exceptions), inconsistent reads (arrays of one payload with metadata of another), missing
reads (no entry right after a save), reads and seconds (with and without the processes' start-up);
the report's stamp (``core.base.provenance``) holds the machine and its load. Exit status 1 when anything
but 0 failures and 0 bad reads.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from core.base import cache, provenance

ROOT = Path(__file__).resolve().parents[1]
KIND = "stress"
LENGTH = 4099                        # values per payload array (~32 KB: a write takes a moment)
PHASES = ("one_key", "fresh_keys", "damaged_keys")
DAMAGE = ("junk", "format1", "empty", "file", "mixed")


def payload(writer: int, i: int) -> tuple[dict, dict]:
    value = writer * 1_000_000 + i
    return ({"a": np.full(LENGTH, value, dtype=np.int64), "b": np.arange(LENGTH, dtype=np.float64) + value},
            {"writer": writer, "value": value, "n": LENGTH})


def consistent(arrays: dict, meta: dict) -> bool:
    """The arrays and the metadata come from one payload."""
    try:
        value, n = meta["value"], meta["n"]
        a, b = arrays["a"], arrays["b"]
        return (meta["writer"] == value // 1_000_000 and a.shape == (n,) and b.shape == (n,)
                and bool(np.all(a == value)) and bool(np.all(b == np.arange(n) + value)))
    except Exception:                # noqa: BLE001 - anything malformed is inconsistent
        return False


def plant(root: Path, key: str, i: int) -> None:
    """A damaged entry for ``key`` (the kind cycles with ``i``)."""
    d = root / KIND / key
    d.parent.mkdir(parents=True, exist_ok=True)
    kind = DAMAGE[i % len(DAMAGE)]
    if kind == "file":
        d.write_bytes(b"not an entry")
        return
    d.mkdir()
    if kind == "junk":
        for name in (cache.ARRAYS, cache.META, cache.MANIFEST):
            (d / name).write_bytes(os.urandom(64))
    elif kind == "format1":              # what GANatomy wrote before checksums
        arrays, meta = payload(9, i)
        np.savez(d / cache.ARRAYS, **arrays)
        (d / cache.META).write_text(json.dumps(meta))
    elif kind == "mixed":                # a checksummed entry of writer 8 whose arrays are writer 9's
        of8, of9 = cache._encode(*payload(8, i)), cache._encode(*payload(9, i))
        (d / cache.META).write_bytes(of8[cache.META])
        (d / cache.ARRAYS).write_bytes(of9[cache.ARRAYS])
        (d / cache.MANIFEST).write_bytes(cache._manifest(KIND, key, of8))


def worker(phase: str, writer: int, n: int, root: str, barrier, record_warnings: bool = True) -> dict:
    """One writer's share of ``phase``; never raises (exceptions are counted as failures).
    ``record_warnings=False`` for threads (the caller catches warnings once for all of them)."""
    os.environ["GANATOMY_CACHE"] = root
    out = {"saves": 0, "reads": 0, "failures": [], "inconsistent": 0, "missing": 0, "winners": [], "warnings": 0}

    def read(key):
        hit = cache.load(KIND, key)
        out["reads"] += 1
        if hit is None:
            out["missing"] += 1
            return None
        if not consistent(*hit):
            out["inconsistent"] += 1
        return hit[1]["value"]

    def decode(arrays, meta):
        out["reads"] += 1
        if not consistent(arrays, meta):
            out["inconsistent"] += 1
        return arrays, meta

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) if record_warnings else contextlib.nullcontext([]) as caught:
        if record_warnings:
            warnings.simplefilter("always")
        for i in range(n):
            try:
                if phase == "one_key":
                    cache.save(KIND, "one-key", *payload(writer, i), strict=True)
                    out["saves"] += 1
                    read("one-key")
                    continue
                key = f"round-{i}"
                barrier.wait()
                if phase == "damaged_keys":
                    if writer == 0:
                        plant(Path(root), key, i)
                    barrier.wait()
                    cache.cached(KIND, key, lambda i=i: payload(writer, i), lambda r: r, decode)
                else:
                    cache.save(KIND, key, *payload(writer, i), strict=True)
                out["saves"] += 1
                out["winners"].append(read(key))
            except Exception as e:   # noqa: BLE001 - every exception is a failure under test
                out["failures"].append(f"{phase} round {i}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
                if phase != "one_key":
                    barrier.abort()
                    break
    out["warnings"], out["seconds"] = len(caught), time.perf_counter() - t0
    return out


def _process_main(queue, phase, writer, n, root, barrier):
    try:
        queue.put((writer, worker(phase, writer, n, root, barrier)))
    except BaseException as e:       # noqa: BLE001 - report, do not hang the parent
        queue.put((writer, {"failures": [f"{type(e).__name__}: {e}"], "saves": 0, "reads": 0, "inconsistent": 0,
                            "missing": 0, "winners": [], "warnings": 0, "seconds": 0.0}))


def run_phase(phase: str, n: int, procs: int, root: Path, start_method: str) -> dict:
    ctx = mp.get_context(start_method)
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    t0 = time.perf_counter()
    ps = [ctx.Process(target=_process_main, args=(queue, phase, w, n, str(root), barrier)) for w in range(procs)]
    for p in ps:
        p.start()
    results = dict(queue.get(timeout=1800) for _ in ps)
    for p in ps:
        p.join(timeout=60)
    seconds = time.perf_counter() - t0
    per = [results[w] for w in range(procs)]
    split = sum(len(set(ws)) > 1 for ws in zip(*(r["winners"] for r in per), strict=False))
    failures = [f for r in per for f in r["failures"]]
    exit_codes = [p.exitcode for p in ps]
    left = (sorted(p.name for p in (root / KIND).iterdir() if p.name.startswith(".tmp-"))
            if (root / KIND).exists() else [])
    return {"saves": sum(r["saves"] for r in per), "reads": sum(r["reads"] for r in per),
            "failures": len(failures) + sum(c != 0 for c in exit_codes), "failure_examples": failures[:3],
            "inconsistent_reads": sum(r["inconsistent"] for r in per), "missing_reads": sum(r["missing"] for r in per),
            "rounds_with_different_winners": split, "warnings": sum(r["warnings"] for r in per),
            "temporaries_left": len(left), "seconds": round(seconds, 2),
            "seconds_in_workers": round(max(r["seconds"] for r in per), 2)}


def run(n: int = 300, procs: int = 2, start_method: str = "spawn", phases=PHASES) -> dict:
    t0 = time.perf_counter()
    out = {}
    for phase in phases:
        with tempfile.TemporaryDirectory(prefix=f"ganatomy-stress-{phase}-") as tmp:
            out[phase] = run_phase(phase, n, procs, Path(tmp), start_method)
    total = {k: sum(p[k] for p in out.values()) for k in
             ("saves", "reads", "failures", "inconsistent_reads", "missing_reads", "rounds_with_different_winners",
              "temporaries_left")}
    return {**total, "processes": procs, "saves_per_process_per_phase": n, "start_method": start_method,
            "phases": out, "seconds": round(time.perf_counter() - t0, 2), "cache_format": cache.FORMAT}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="saves per process per phase")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--start-method", default="spawn", choices=mp.get_all_start_methods())
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports" / "cache_stress.json"))
    a = ap.parse_args(argv)
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    report = run(a.n, a.procs, a.start_method)
    provenance.write_report(a.out, report, started=started)
    print(json.dumps({k: v for k, v in report.items() if k != "phases"}, indent=1))
    for name, p in report["phases"].items():
        print(name, {k: v for k, v in p.items() if k != "failure_examples"})
        for f in p["failure_examples"]:
            print("  ", f)
    bad = report["failures"] + report["inconsistent_reads"] + report["missing_reads"] + \
        report["rounds_with_different_winners"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

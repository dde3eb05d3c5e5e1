"""Where a report comes from: every JSON report of ``scripts/`` and ``benchmarks/`` is written by
:func:`write_report`, which stamps it with the run that made it::

    started = provenance.stamp()                # first thing in main(): the command, the load at start
    ...                                         # the work
    provenance.write_report(out, {"figures": ...}, started=started)

A report is ``{"provenance": {...}, **payload}``. The stamp (:func:`stamp`, completed by
:func:`write_report`) holds:

- ``command``: ``python <script> <args>`` as run (``sys.argv``, or the ``argv`` given);
- ``commit`` and ``dirty``: ``git rev-parse HEAD`` of the checkout ``core`` is imported from and
  whether ``git status --porcelain`` shows changes (both None outside a git checkout);
- ``machine``: CPU model, CPU count (and how many this process may use), GPUs (CUDA device names,
  empty without one), RAM in GiB, platform, torch threads;
- ``load_1min_start`` / ``load_1min_end``: the 1-minute load average when the run began and when
  the report was written (a figure measured beside other work says so);
- ``versions``: python, torch (and its CUDA), torchvision, numpy;
- ``started_utc`` / ``finished_utc`` (ISO 8601, UTC) and ``seconds`` between them.

The file is written atomically (:func:`core.base.cache.atomic_write_text`): a reader sees the old
report or the new one, never half of one. A run that rewrites one part of a report (``part=``)
merges its payload into the file and keeps the stamps of the runs that wrote the rest under
``provenance["earlier"]``. :func:`of` reads the stamp of any report, including those written
before this module (their ad-hoc ``command``, ``machine``, ``hardware``, ``load_*`` fields).
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from core.base.cache import atomic_write_text

__all__ = ["ROOT", "git_state", "load_1min", "machine", "of", "stamp", "versions", "write_report"]

ROOT = Path(__file__).resolve().parents[2]          # the checkout (or site-packages) holding core/
KEY = "provenance"
MAX_EARLIER = 20
# top-level fields reports carried before this module; a merged report moves them into "earlier"
LEGACY = ("command", "machine", "hardware", "when", "load_1min_start", "load_1min_end", "load_average_1min",
          "load_average_1min_start", "load_average_1min_end", "load_average_1min_before_after",
          "load_1min_before_after")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def load_1min() -> float | None:
    """The 1-minute load average now (2 decimals); None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):              # no load average on this platform
        return None


def _command(argv) -> str:
    words = [str(w) for w in (sys.argv if argv is None else argv)]
    if words and os.path.isabs(words[0]):          # a script given by its absolute path: as typed from here
        try:
            rel = os.path.relpath(words[0])
            words[0] = words[0] if rel.startswith("..") else rel
        except ValueError:                         # another drive (Windows)
            pass
    return "python " + shlex.join(words)


def git_state(root: str | os.PathLike = ROOT) -> dict:
    """``{"commit": sha, "dirty": bool}`` of the git checkout whose top folder is ``root``; both None
    when ``root`` is not the top of one (an installed package) or git is missing."""
    root = Path(root).resolve()
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                             check=False, capture_output=True, text=True, timeout=30)
        lines = top.stdout.split()
        if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                                check=False, capture_output=True, text=True, timeout=60)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": lines[1], "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "Processor")):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model and count, GPUs, RAM (GiB), platform and torch threads of this machine."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        ram = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (AttributeError, ValueError, OSError):
        ram = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"cpu": _cpu_model(), "cpus": os.cpu_count(), "cpus_usable": usable, "gpus": gpus, "ram_gib": ram,
            "platform": platform.platform(), "torch_threads": torch.get_num_threads()}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "torchvision": _version("torchvision"), "numpy": _version("numpy")}


def stamp(argv: list[str] | None = None) -> dict:
    """The run's stamp, taken at its start: command (``argv``: the words as ``sys.argv`` holds them,
    script first; default ``sys.argv``), commit, machine, 1-minute load, versions, start time.
    Pass it to :func:`write_report` as ``started=``."""
    return {"command": _command(argv), **git_state(), "machine": machine(), "load_1min_start": load_1min(),
            "load_1min_end": None, "versions": versions(), "started_utc": _now().isoformat(timespec="microseconds"),
            "finished_utc": None, "seconds": None}


def _finish(started: dict | None) -> dict:
    out = dict(started) if started is not None else stamp()
    end = _now()
    out.update(load_1min_end=load_1min(), finished_utc=end.isoformat(timespec="microseconds"))
    try:
        out["seconds"] = round((end - _dt.datetime.fromisoformat(out["started_utc"])).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        out["seconds"] = None
    out.pop("earlier", None)
    out.pop("part", None)
    return out


def of(report: dict) -> dict:
    """The stamp of a report: its ``provenance``, or for a report written before this module its
    ad-hoc fields (``command``, ``machine``, ``hardware``, ``load_*``, ``*_command``); {} if none."""
    if isinstance(report.get(KEY), dict):
        return report[KEY]
    return {k: v for k, v in report.items() if k in LEGACY or k.endswith("_command")}


def _legacy(report: dict) -> set[str]:
    """The ad-hoc stamp fields of a report written before this module (none in a stamped one)."""
    return set() if KEY in report else set(of(report))


def _plain(o):
    """What ``json`` cannot write by itself: numpy values and arrays, paths, sets."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return float(o)


def _read(path: Path) -> dict:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) else {}


def write_report(path: str | os.PathLike, payload: dict, *, started: dict | None = None,
                 part: str | None = None) -> Path:
    """Write ``{"provenance": stamp, **payload}`` to ``path`` as JSON, atomically; returns the path.

    ``started``: the :func:`stamp` taken when the run began (without it, the stamp is taken now, and
    the load at start is the load at the end). ``part``: this run rewrote only that part of the
    report: the payload's keys replace the file's, the rest of the file stays, and the stamps of the
    runs that wrote it are kept under ``provenance["earlier"]`` (newest first; the same run writing
    again replaces its own stamp). A ``provenance`` key in ``payload`` is ignored."""
    path = Path(path)
    prov = _finish(started)
    body = {k: v for k, v in payload.items() if k != KEY}
    if part is not None:
        old = _read(path)
        before = of(old)
        # an older report's ad-hoc stamp (also in a payload read back from it) goes into "earlier"
        kept = {k: v for k, v in old.items() if k != KEY and k not in _legacy(old)}
        body = {**kept, **{k: v for k, v in body.items() if k not in _legacy(payload)}}
        earlier = list(before.get("earlier", [])) if KEY in old else []
        first = {k: v for k, v in before.items() if k != "earlier"}
        same_run = (first.get("started_utc"), first.get("command")) == (prov["started_utc"], prov["command"])
        if first and not same_run:
            earlier.insert(0, first)
        prov["part"] = part
        if earlier:
            prov["earlier"] = earlier[:MAX_EARLIER]
    text = json.dumps({KEY: prov, **body}, indent=1, default=_plain) + "\n"
    return atomic_write_text(path, text)

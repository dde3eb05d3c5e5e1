"""Probe the lab server (issue #33): hostile files, paths outside the model roots, markup and
look-alike names, models that misbehave at run time, full disks, kill -9 at each write, two users'
ownership fights and a cache with links out of it, run against ``core`` (and the Models page
through Streamlit's AppTest). Each case is a small function that says whether what the server
promises held, in one line; the run prints the table (case, expectation, verdict, observation,
seconds), writes it to docs/reports/probe_server.json and exits 1 when any case failed.

    python scripts/probe_server.py                    # every case (~1-2 minutes on 2 cores)
    python scripts/probe_server.py --only kill/ own/  # the cases whose name contains one of these
    python scripts/probe_server.py --list             # the cases and what each expects
    python scripts/probe_server.py --markdown         # the table as markdown too (docs/findings.md)

Every case runs in a sandbox of its own: a fresh temporary models folder, cache and model root
(``$GANATOMY_MODELS``, ``$GANATOMY_CACHE``, ``$GANATOMY_MODEL_ROOTS``), every setting and patch
undone after it; nothing outside the sandbox is read or written. Full disks are simulated by
patching a write to raise ENOSPC (a tiny tmpfs needs root), kills by a child process that stops at
the write under test and is killed with SIGKILL there. Nothing here needs pytest;
tests/test_probe_server.py runs a few cases through :func:`run_probe`.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib.util
import io
import json
import os
import pickle
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import core
from core import models as catalog
from core.base import cache, checkpoints, provenance
from core.base.errors import GanatomyError
from core.userdata import flags
from core.userdata import models as registry

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "docs" / "reports" / "probe_server.json"
HELD, FAILED = "held", "failed"


# ----------------------------------------------------------------------------- the table's machinery

@dataclass(frozen=True)
class Probe:
    name: str                                  # "<group>/<what>"
    expect: str                                # what the server promises, in a few words
    fn: Callable[["Box"], tuple[bool, str]]    # (held?, one-line observation)


PROBES: dict[str, Probe] = {}
_SANDBOX: list[str] = []                       # the running case's sandbox folder, shown as <sandbox>


def probe(name: str, expect: str):
    def add(fn):
        PROBES[name] = Probe(name, expect, fn)
        return fn
    return add


class Box:
    """One case's sandbox: a temporary folder with models/, cache/ and roots/ (the only model root),
    environment settings and attribute patches that are all undone by :meth:`close`."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="ganatomy-probe-")).resolve()
        _SANDBOX[:] = [str(self.root)]
        self.models, self.cache, self.roots = self.root / "models", self.root / "cache", self.root / "roots"
        self.roots.mkdir()
        self._undo: list[Callable[[], None]] = []
        self.env(GANATOMY_MODELS=str(self.models), GANATOMY_CACHE=str(self.cache),
                 GANATOMY_MODEL_ROOTS=str(self.roots), GANATOMY_SHIPPED_RESULTS="0",
                 GANATOMY_ADMINS=None, GANATOMY_TRASH_DAYS=None, GANATOMY_UPLOAD_QUOTA_MB=None, GANATOMY_LOGIN=None)

    def env(self, **values: str | None) -> None:
        for k, v in values.items():
            old = os.environ.get(k)
            self._undo.append(lambda k=k, old=old: os.environ.pop(k, None) if old is None
                              else os.environ.__setitem__(k, old))
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def patch(self, obj, attr: str, value) -> None:
        old = getattr(obj, attr)
        self._undo.append(lambda: setattr(obj, attr, old))
        setattr(obj, attr, value)

    def close(self) -> None:
        while self._undo:
            self._undo.pop()()
        shutil.rmtree(self.root, ignore_errors=True)

    # files
    def file(self, name: str, data: bytes) -> Path:
        p = self.roots / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def weights(self, name: str = "g.pt", seed: int = 0, state: dict | None = None, **save) -> Path:
        p = self.roots / name
        torch.save(tiny_state(seed) if state is None else state, p, **save)
        return p

    def uploads(self) -> list[Path]:
        """The stored uploads (not the temporary ones)."""
        up = self.models / "uploads"
        return sorted(p for p in up.iterdir() if not p.name.startswith(".")) if up.is_dir() else []

    def trash(self) -> list[Path]:
        t = self.models / "trash"
        return sorted(t.iterdir()) if t.is_dir() and not t.is_symlink() else []


def run_probe(p: Probe) -> dict:
    """Run one case in a fresh sandbox: {case, expectation, verdict, observation, seconds}. A case
    that raises counts as failed, its exception as the observation."""
    box = Box()
    t = time.perf_counter()
    try:
        ok, observation = p.fn(box)
        verdict = HELD if ok else FAILED
    except Exception as e:                      # noqa: BLE001 - an unexpected exception is a failed case
        verdict, observation = FAILED, f"raised {type(e).__name__}: {e}"
    finally:
        seconds = time.perf_counter() - t
        box.close()
    line = " ".join(str(observation).replace(str(box.root), "<sandbox>").split())
    return {"case": p.name, "expectation": p.expect, "verdict": verdict, "observation": _cut(line, 220),
            "seconds": round(seconds, 2)}


def _cut(text: str, n: int) -> str:
    """``text`` cut to about ``n`` characters at a space (never inside a word or a name)."""
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " …"


def run(names=None, echo: Callable[[dict], None] | None = None) -> list[dict]:
    """Run the cases whose name contains one of ``names`` (all without), in order."""
    rows = []
    for p in PROBES.values():
        if names and not any(n in p.name for n in names):
            continue
        rows.append(run_probe(p))
        if echo:
            echo(rows[-1])
    return rows


# ----------------------------------------------------------------------------- small helpers

def tiny_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return core.ProGAN(8, (8, 4)).state_dict()


def tiny_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    torch.save(tiny_state(seed), buf)
    return buf.getvalue()


def _module_from(path: Path, name: str):
    """Import the file ``path`` as module ``name`` (registered, so its classes' source can be read;
    imported anew at each call, as after an edit)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def bomb_state(c: int) -> dict:
    """A ProGAN-shaped state dict of stride-0 views claiming width ``c`` (the file is ~2 KB), as
    tests/badcases/loaders.py builds it."""
    one = torch.zeros(1)
    return {"layer1.conv.weight": one.expand(c, c, 4, 4), "layer1.wscale.b": one.expand(c),
            "layer2.conv.weight": one.expand(c, c, 3, 3), "layer2.wscale.b": one.expand(c),
            "output_4x4.conv.weight": one.expand(3, c, 1, 1), "output_4x4.wscale.b": one.expand(3)}


def overflowing_state() -> dict:
    """Finite weights whose image is NaN for every z (tests/badcases/loaders.py): layer2 outputs 1
    everywhere, layer3 sums 3e38-weighted ones to inf, and the pixel norm makes inf * 0 = NaN."""
    sd = tiny_state()
    sd["layer2.conv.weight"].zero_()
    sd["layer2.wscale.b"].fill_(1.0)
    sd["layer3.conv.weight"].fill_(3e38)
    return sd


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def refusal(call, error=GanatomyError, *words: str) -> tuple[bool, str]:
    """(whether ``call`` raised ``error`` whose message has every one of ``words``, what happened)."""
    try:
        out = call()
    except error as e:
        msg = str(e)
        missing = [w for w in words if w not in msg]
        return not missing, (f"{type(e).__name__}: {msg}" if not missing else f"message lacks {missing}: {msg}")
    except Exception as e:                     # noqa: BLE001
        return False, f"raised {type(e).__name__} (not {error.__name__}): {e}"
    return False, f"accepted (returned {type(out).__name__})"


def first(text: str, n: int = 100) -> str:
    """``text`` on one line, the sandbox's folder as <sandbox>, cut to ``n`` characters."""
    text = " ".join(str(text).split())
    for root in _SANDBOX:
        text = text.replace(root, "<sandbox>")
    return _cut(text, n)


def nothing_stored(box: Box) -> bool:
    return catalog.user_models() == {} and box.uploads() == []


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def age(*paths: Path, seconds: float = 7200) -> None:
    """Make files look as old as a killed run's (older than cache.STALE_SECONDS)."""
    for p in paths:
        os.utime(p, (time.time() - seconds, time.time() - seconds))


def consistent(box: Box) -> tuple[bool, str]:
    """The registry parses; every entry's and every removal's file is there; after a sweep, what the
    uploads and the trash hold is exactly what entries and removals refer to (no orphan counts)."""
    f = box.models / "registry.json"
    if f.exists():
        try:
            json.loads(f.read_text())
        except ValueError:
            return False, "registry.json does not parse"
    entries = catalog.user_models()
    gone = [n for n, e in entries.items() if not Path(e["path"]).exists()]
    lost = [r["name"] for r in catalog.removed_models() if not r["file_here"]]
    for p in [*box.uploads(), *(box.models / "uploads").glob(".upload-*"), *box.trash()]:
        age(p)
    catalog.sweep_trash()
    registry.remove_stale(box.models / "uploads", lambda n: n.startswith(".upload-"))
    held = {str(p.resolve()) for p in [*box.uploads(), *box.trash(), *(box.models / "uploads").glob(".*")]}
    refs = registry._referenced(registry._read_registry(), registry._removals(registry._read_registry()))
    orphans = sorted(Path(p).name for p in held - refs)
    counted = registry._folder_bytes(box.models / "uploads") + registry._folder_bytes(box.models / "trash")
    owned = sum(Path(p).stat().st_size for p in held & refs)
    ok = not gone and not lost and not orphans and counted == owned
    return ok, (f"{len(entries)} entries, {len(catalog.removed_models())} removals, quota counts {counted:,} B, "
                "all of them referenced" if ok else f"entries without file {gone}, removals without file {lost}, "
                f"orphans {orphans}, quota counts {counted:,} B of which {owned:,} B referenced")


def child(box: Box, setup: str, action: str, timeout: float = 60) -> tuple[bool, str]:
    """Run ``setup`` then ``action`` in a child process (the sandbox's settings) whose patched
    write calls ``stop()``: it marks that it got there and waits; it is then killed with SIGKILL.
    Returns (whether it was killed at the write, what it printed otherwise)."""
    mark = box.root / "child.at"
    code = textwrap.dedent(f"""
        import os, sys, time, pathlib
        import core
        from core.userdata import models as registry
        from core.userdata import flags
        from core.base import cache
        MARK = pathlib.Path({str(mark)!r})
        def stop(*a, **k):
            MARK.write_text("at the write")
            time.sleep(300)
        """) + textwrap.dedent(setup) + "\n" + textwrap.dedent(action)
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    t = time.monotonic()
    while time.monotonic() - t < timeout and proc.poll() is None and not mark.exists():
        time.sleep(0.02)
    if mark.exists() and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return True, "killed at the write"
    with contextlib.suppress(OSError):
        proc.kill()
    out = proc.communicate(timeout=10)[0].decode(errors="replace")
    return False, f"child did not reach the write (exit {proc.returncode}): {first(out[-300:], 200)}"


# ----------------------------------------------------------------------------- hostile files: builders

def _hostile():
    """tests/hostile.py (the hostile-file builders the tests use too), loaded by path."""
    return _module_from(ROOT / "tests" / "hostile.py", "ganatomy_probe_hostile")


def forged(path: Path, declared_floats: int, stored_bytes: int, compress: bool = True,
           directory_says: int | None = None) -> Path:
    """A torch zip declaring ``declared_floats`` float32 values (see tests/hostile.py)."""
    return _hostile().forged(path, declared_floats, stored_bytes, compress, directory_says)


class _RunsCode:
    """Unpickles to a call of Path.touch(marker): loading it would create the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def safetensors_file(path: Path, header, data: bytes = b"\0" * 8, length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _upload(box: Box, path_or_bytes, filename="g.pt", name="lab/x", by="ann", **kw):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return catalog.add_upload(data, filename, name, added_by=by, **kw)


def _fresh_load(path: Path) -> dict:
    """Load ``path`` in a new interpreter: seconds, extra peak RSS (MB), the error (tests/hostile.py)."""
    return _hostile().fresh_load(path)


# ----------------------------------------------------------------------------- hostile files

@probe("file/zip-bomb", "a 256 MiB deflated record in a 0.3 MB upload: refused in < 1 s, nothing kept")
def _(box):
    bomb = forged(box.roots / "bomb.pt", 64 * 2 ** 20, 256 * 2 ** 20)
    t = time.perf_counter()
    ok, msg = refusal(lambda: _upload(box, bomb), core.CheckpointError, "expands from")
    s = time.perf_counter() - t
    return ok and s < 1 and nothing_stored(box), f"{bomb.stat().st_size / 2 ** 20:.2f} MB file, {s:.2f} s: {first(msg)}"


@probe("file/declares-10GiB", "a 2 KB file declaring 10 GiB: refused in < 1 s with < 50 MB extra RSS (fresh process)")
def _(box):
    p = forged(box.roots / "declared.pt", 10 * 2 ** 30 // 4, 2 ** 20)
    r = _fresh_load(p)
    ok = r["error"].startswith("BudgetError") and r["seconds"] < 1 and r["extra_mb"] < 50
    return ok, f"{r['seconds']:.3f} s, +{r['extra_mb']:.0f} MB RSS: {first(r['error'])}"


@probe("file/zip-directory-lies",
       "a zip directory that understates a 256 MiB record: memory stays bounded (fresh process)")
def _(box):
    p = forged(box.roots / "lies.pt", 1000, 256 * 2 ** 20, directory_says=4000)
    r = _fresh_load(p)
    ok = r["seconds"] < 2 and r["extra_mb"] < 100
    return ok, (f"{r['seconds']:.3f} s, +{r['extra_mb']:.0f} MB RSS, torch reads only the declared 4,000 bytes"
                + (f"; {first(r['error'], 60)}" if r["error"] else " (loads a 1000-float tensor)"))


@probe("file/storage-larger-than-file", "a pickle declaring 128 MiB in a 1 MiB file: refused before torch allocates")
def _(box):
    p = forged(box.roots / "lie.pt", 32 * 2 ** 20, 2 ** 20, compress=False)
    return refusal(lambda: checkpoints.load_checkpoint(p), core.CheckpointError, "declares 134,217,728 bytes")


@probe("file/pickle-runs-code", "a torch file whose pickle would run code: refused, the code never runs")
def _(box):
    marker = box.root / "ran"
    p = box.weights("evil.pt", state={**tiny_state(), "x": _RunsCode(marker)})
    ok, msg = refusal(lambda: _upload(box, p), core.CheckpointError, "could run code")
    return ok and not marker.exists() and nothing_stored(box), first(msg)


@probe("file/legacy-pickle-runs-code", "the same in torch's legacy (pre-1.6) format: refused, never runs")
def _(box):
    marker = box.root / "ran"
    p = box.weights("evil.pt", state={**tiny_state(), "x": _RunsCode(marker)}, _use_new_zipfile_serialization=False)
    ok, msg = refusal(lambda: _upload(box, p), core.CheckpointError)
    return ok and not marker.exists() and nothing_stored(box), first(msg)


@probe("file/bare-pickle-runs-code", "a plain pickle (not torch.save) that would run code: refused, never runs")
def _(box):
    marker = box.root / "ran"
    p = box.file("evil.pt", pickle.dumps({"w": _RunsCode(marker)}, protocol=2))
    ok, msg = refusal(lambda: _upload(box, p), core.CheckpointError)
    return ok and not marker.exists() and nothing_stored(box), first(msg)


@probe("file/truncated-anywhere", "a real checkpoint cut at 1 %, 10 %, 50 %, 90 %, 99.9 %: each refused, nothing kept")
def _(box):
    data = tiny_bytes()
    bad = []
    for frac in (0.01, 0.1, 0.5, 0.9, 0.999):
        ok, msg = refusal(lambda: _upload(box, data[:max(1, int(len(data) * frac))]), core.CheckpointError)
        if not ok:
            bad.append(f"{frac}: {msg}")
    return not bad and nothing_stored(box), ("5 cuts refused, no file kept" if not bad else first("; ".join(bad), 200))


@probe("file/empty", "a 0-byte upload: refused as empty")
def _(box):
    return refusal(lambda: _upload(box, b""), core.CheckpointError, "empty")


@probe("file/not-real-floats", "int8, int64, bool and complex64 weights: each refused naming the key and dtype")
def _(box):
    bad = []
    for dtype in (torch.int8, torch.int64, torch.bool, torch.complex64):
        sd = tiny_state()
        sd["layer2.conv.weight"] = sd["layer2.conv.weight"].to(dtype)
        p = box.weights(f"{dtype}.pt", state=sd)
        ok, msg = refusal(lambda: _upload(box, p), core.CheckpointError, "layer2.conv.weight",
                          str(dtype).replace("torch.", ""))
        if not ok:
            bad.append(msg)
    return not bad and nothing_stored(box), ("4 dtypes refused, each naming layer2.conv.weight" if not bad
                                             else first(bad[0]))


@probe("file/nan-and-inf-weights", "weights holding NaN or inf: refused, nothing kept")
def _(box):
    bad = []
    for v in (float("nan"), float("inf")):
        sd = tiny_state()
        sd["layer1.conv.weight"].view(-1)[3] = v
        ok, msg = refusal(lambda: _upload(box, box.weights("nan.pt", state=sd)), core.CheckpointError)
        bad += [] if ok else [msg]
    return not bad and nothing_stored(box), "NaN and inf refused" if not bad else first(bad[0])


@probe("file/finite-weights-nan-image", "finite weights whose image overflows to NaN: refused at upload")
def _(box):
    ok, msg = refusal(lambda: _upload(box, box.weights("over.pt", state=overflowing_state())), core.GanatomyError)
    return ok and nothing_stored(box), first(msg)


@probe("file/stride0-views",
       "a 2 KB file of stride-0 views claiming a 20000-wide ProGAN: refused in < 1 s, before building")
def _(box):
    p = box.weights("bomb.pt", state=bomb_state(20000))
    t = time.perf_counter()
    ok, msg = refusal(lambda: _upload(box, p), core.BudgetError)
    return ok and time.perf_counter() - t < 1, f"{p.stat().st_size} B file: {first(msg)}"


@probe("file/too-many-tensors", "more storages than MAX_TENSORS: refused before torch.load")
def _(box):
    box.patch(checkpoints, "MAX_TENSORS", 50)
    p = box.weights("many.pt", state={f"t{i}": torch.zeros(1) for i in range(80)})
    return refusal(lambda: checkpoints.load_checkpoint(p), core.CheckpointError, "more than a weights file holds")


@probe("file/safetensors-shape-lie", "a safetensors header claiming 10^12 floats for 8 bytes: refused")
def _(box):
    p = safetensors_file(box.roots / "lie.safetensors",
                         {"w": {"dtype": "F32", "shape": [10 ** 6, 10 ** 6], "data_offsets": [0, 8]}})
    return refusal(lambda: checkpoints.read_weights(p), core.CheckpointError, "safetensors header says")


@probe("file/safetensors-offsets-outside", "safetensors offsets beyond the file's end: refused")
def _(box):
    p = safetensors_file(box.roots / "off.safetensors",
                         {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4096]}})
    return refusal(lambda: checkpoints.read_weights(p), core.CheckpointError)


@probe("file/safetensors-header-length-lie", "a header length of 90 MB in a 100-byte file: refused at once")
def _(box):
    p = safetensors_file(box.roots / "len.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                         length=90 * 2 ** 20)
    t = time.perf_counter()
    ok, msg = refusal(lambda: _upload(box, p, "len.safetensors"), core.CheckpointError)
    return ok and time.perf_counter() - t < 1 and nothing_stored(box), first(msg)


@probe("file/safetensors-header-not-json", "a safetensors header that is not JSON: refused")
def _(box):
    p = safetensors_file(box.roots / "junk.safetensors", b"{not json at all}")
    return refusal(lambda: checkpoints.read_weights(p), core.CheckpointError)


@probe("file/secret-named-pt", "a private key uploaded as .pt: refused, no byte of it in the message")
def _(box):
    secret = b"-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA secret"
    ok, msg = refusal(lambda: _upload(box, secret, "id_rsa.pt"), core.CheckpointError, "not a PyTorch or safetensors")
    leaked = [w for w in ("OPENSSH", "b3BlbnNz", secret[:8].hex(), secret[:8].hex(" ")) if w in msg]
    return ok and not leaked, first(msg) if not leaked else f"message quotes the file: {leaked}"


@probe("file/plain-zip", "a zip that is not a torch file: refused as not a PyTorch file")
def _(box):
    p = box.roots / "readme.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("README.md", "hello")
    return refusal(lambda: _upload(box, p), core.CheckpointError, "not a PyTorch one")


@probe("file/keys-that-do-not-fit", "a missing key, an extra key, a wrong shape: each refused naming the key")
def _(box):
    bad = []
    for i, (change, key) in enumerate(((lambda sd: sd.pop("output_8x8.wscale.b"), "output_8x8.wscale.b"),
                                       (lambda sd: sd.__setitem__("layer9.extra", torch.zeros(2)), "layer9.extra"),
                                       (lambda sd: sd.__setitem__("layer2.conv.weight", torch.zeros(3, 3, 3, 3)),
                                        "layer2.conv.weight"))):
        sd = tiny_state()
        change(sd)
        ok, msg = refusal(lambda: _upload(box, box.weights(f"k{i}.pt", state=sd), name=f"lab/k{i}"),
                          core.CheckpointError, key)
        bad += [] if ok else [msg]
    return not bad and nothing_stored(box), "3 refused, each naming its key" if not bad else first(bad[0], 150)


@probe("file/not-a-weights-suffix", "an upload named .txt or .py: refused by its suffix")
def _(box):
    bad = [fn for fn in ("w.txt", "w.py", "w") if not refusal(lambda: _upload(box, tiny_bytes(), fn),
                                                               core.CheckpointError, ".safetensors")[0]]
    return not bad and nothing_stored(box), "txt, py and no suffix refused" if not bad else f"accepted {bad}"


@probe("file/hostile-file-names",
       "../, NUL, markdown and bidi in an upload's file name: stored in uploads, named by hash")
def _(box):
    names = ["../../../etc/x.pt", "a\x00b.pt", "![x](http://evil.example/p.png).pt", "\u202egnp.pt", "<img src=x>.pt"]
    for i, fn in enumerate(names):
        _upload(box, tiny_bytes(i), fn, name=f"lab/f{i}")
    up = (box.models / "uploads").resolve()
    elsewhere = [p for p in box.root.rglob("*")
                 if p.is_file() and box.roots not in p.parents and box.models not in p.parents]
    escaped = (box.root.parent / "etc" / "x.pt").exists() or Path("/etc/x.pt").exists()
    inside = all(Path(e["path"]).parent == up and len(Path(e["path"]).name) < 80
                 for e in catalog.user_models().values())
    return inside and not elsewhere and not escaped, \
        f"{len(names)} stored under uploads/ by model name and hash; nothing written elsewhere"


@probe("file/sparse-10GiB-in-roots",
       "a 10 GiB sparse file in the model root, added by path: refused in < 1 s, never read")
def _(box):
    p = box.roots / "huge.pt"
    with open(p, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(10 * 2 ** 30)
    t = time.perf_counter()
    ok, msg = refusal(lambda: catalog.register("lab/huge", p, roots=catalog.model_roots()), core.CheckpointError)
    return ok and time.perf_counter() - t < 1, f"{time.perf_counter() - t:.3f} s: {first(msg)}"


@probe("file/trust-remote-code-folder", "a real SegFormer folder whose config names remote code (auto_map): "
       "added and loaded, its .py never runs")
def _(box):
    try:
        from transformers import SegformerConfig, SegformerForSemanticSegmentation
    except ImportError:
        return True, "skipped: transformers is not installed (SegFormer folders cannot be added at all)"
    marker = box.root / "ran"
    d = box.roots / "seg"
    cfg = SegformerConfig(hidden_sizes=[8] * 4, depths=[1] * 4, num_attention_heads=[1] * 4, decoder_hidden_size=8,
                          num_labels=3)
    SegformerForSemanticSegmentation(cfg).save_pretrained(d)
    config = json.loads((d / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSemanticSegmentation": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (d / "config.json").write_text(json.dumps(config))
    (d / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                               "class EvilModel: pass\nclass EvilConfig: pass\n")
    entry = catalog.register("lab/seg", d, roots=catalog.model_roots())
    seg = core.load_segmenter("lab/seg")
    return not marker.exists(), f"added as {entry['arch']} ({len(seg.labels)} labels), loaded; evil.py never imported"


# ----------------------------------------------------------------------------- paths

def _by_path(path, name="lab/p"):
    return lambda: catalog.register(name, str(path), roots=catalog.model_roots())


_NOT_HERE = "is not a model file this server may read"


@probe("path/outside-the-roots", "/etc/passwd by path: refused with the one message, no byte quoted")
def _(box):
    ok, msg = refusal(_by_path("/etc/passwd"), core.CheckpointError, _NOT_HERE)
    return ok and "root:" not in msg, first(msg)


@probe("path/symlink-out-of-the-roots", "a link in the root to a file outside: the same message, nothing opened")
def _(box):
    outside = box.root / "private.pt"
    torch.save(tiny_state(), outside)
    (box.roots / "link.pt").symlink_to(outside)
    return refusal(_by_path(box.roots / "link.pt"), core.CheckpointError, _NOT_HERE)


@probe("path/dotdot", "root/../private.pt: the same message")
def _(box):
    torch.save(tiny_state(), box.root / "private.pt")
    return refusal(_by_path(f"{box.roots}/../private.pt"), core.CheckpointError, _NOT_HERE)


@probe("path/exists-or-not-alike",
       "a file outside that exists and one that does not: messages identical but for the path")
def _(box):
    torch.save(tiny_state(), box.root / "there.pt")
    msgs = set()
    for p in (box.root / "there.pt", box.root / "missing.pt", box.roots / "missing.pt"):
        try:
            _by_path(p)()
        except core.CheckpointError as e:
            msgs.add(str(e).replace(str(p), "PATH"))
    return len(msgs) == 1, f"{len(msgs)} distinct message(s): {first(next(iter(msgs)), 70)}"


@probe("path/fifo-in-the-roots", "a named pipe in the root: refused without blocking (< 5 s)")
def _(box):
    p = box.roots / "pipe.pt"
    os.mkfifo(p)
    result = {}

    def go():
        result["r"] = refusal(_by_path(p), core.CheckpointError)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():
        with contextlib.suppress(OSError):               # unblock the reader, so the thread ends
            fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        return False, "blocked on the pipe for 5 s"
    return result["r"][0], first(result["r"][1])


@probe("path/device-link", "a link in the root to /dev/zero: refused as outside the roots, nothing read")
def _(box):
    (box.roots / "zero.pt").symlink_to("/dev/zero")
    t = time.perf_counter()
    ok, msg = refusal(_by_path(box.roots / "zero.pt"), core.CheckpointError, _NOT_HERE)
    return ok and time.perf_counter() - t < 1, first(msg)


@probe("path/folder-without-weights", "a folder in the root with no weights: refused with the reason")
def _(box):
    (box.roots / "empty").mkdir()
    return refusal(_by_path(box.roots / "empty"), core.GanatomyError)


@probe("path/not-a-path", "a path that is a number or empty: refused as not a path")
def _(box):
    bad = [repr(v) for v in (42, "", "   ", None) if not refusal(_by_path(v), core.GanatomyError)[0]]
    return not bad, "42, '', '   ', None refused" if not bad else f"not refused: {bad}"


# ----------------------------------------------------------------------------- names

@probe("names/markup-and-invisible-model-names",
       "model names with markdown, HTML, bidi, zero-width, '..', '/' ends: refused")
def _(box):
    names = ["lab/[x](http://evil.example)", "lab/<img src=x>", "lab/\u202echurch", "lab/chu\u200brch", "lab/a b",
             "lab/../x", "/etc/x", "lab/", "lab/x/y", "lab/**b**", "lab/" + "n" * 120, "", 7]
    bad = [repr(n) for n in names if not refusal(_by_path(box.weights(), n), core.GanatomyError)[0]]
    return not bad and catalog.user_models() == {}, f"{len(names)} refused" if not bad else f"accepted {bad}"


@probe("names/look-alike-model-names", "beside ann's lab/church: Cyrillic, full-width, case and '.-_' variants refused")
def _(box):
    catalog.register("lab/church", box.weights(), added_by="ann", roots=catalog.model_roots())
    names = ["lab/\u0441hurch", "lab/\uff43hurch", "l\u0430b/church", "lab/Church", "LAB/church", "lab/church.",
             "lab/church-", "lab/chur_ch", "lab/c.hurch"]
    bad = [n for n in names if not refusal(_by_path(box.weights(), n), core.InputError)[0]]
    return not bad and list(catalog.user_models()) == ["lab/church"], \
        f"{len(names)} look-alikes refused" if not bad else f"accepted {bad}"


@probe("names/look-alike-built-in", "Toyworld/town, progan/church-outdoor (built-in look-alikes): refused")
def _(box):
    names = ["Toyworld/town", "toy-world/town", "progan/church-outdoor", "ProGAN/churchoutdoor"]
    bad = [n for n in names if not refusal(_by_path(box.weights(), n), core.InputError, "built-in")[0]]
    return not bad, f"{len(names)} refused as built-in names" if not bad else f"accepted {bad}"


@probe("names/plain-text", "plain(): links, images, HTML, code, maths, colours of a name show as typed, not rendered")
def _(box):
    from dashboard.common import plain
    evil = ("![x](http://evil.example/p.png) [here](https://evil.example) <img src=x onerror=alert(1)> **b** "
            ":red[r] $x^2$ `c` www.evil.example \u202eevil \u200b")
    shown = plain(evil)
    live = [w for w in ("![x](", "[here](", "<img", "**b**", ":red[", "$x", "`c`", "www.evil", "http://")
            if re.search(r"(?<!\\)" + re.escape(w), shown)]                    # present, and not escaped
    kept = shown.replace("\\", "").replace("\u2060", "") == evil
    return not live and kept, "every markup character escaped, none dropped" if not live else f"live: {live}"


def _page():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "dashboard" / "main.py"), default_timeout=120)
    return at.switch_page("views/models.py").run()


@probe("names/markup-display-name-on-the-page",
       "Models page: a display name with a link, an image, HTML, bidi shows as text")
def _(box):
    evil = "![x](http://evil.example/p.png) [here](https://evil.example) <b>ann</b> \u202enna"
    at = _page()
    at.text_input(key="display_name_input").set_value(evil)
    at.text_input(key="add_name").set_value("lab/church")
    at.text_input(key="add_path").set_value(str(box.weights()))
    at.button(key="add_path_button").click().run()
    at.text_input(key="remove_confirm").set_value("lab/church")
    at.button(key="remove_button").click().run()          # listed under Recently removed, by that name
    texts = [e.value for e in [*at.success, *at.caption, *at.markdown, *at.error]]
    live = [t for t in texts if "![x](" in t or "[here](" in t or "<b>" in t]
    listed = any("lab/church" in m.value and "removed by" in m.value for m in at.markdown)
    ok = not at.exception and not at.error and not live and listed
    return ok, (f"{len(texts)} texts shown, none with live markup; the removal listed" if ok else
                f"exception {at.exception}, errors {[e.value for e in at.error]}, live {first(live)}")


# ----------------------------------------------------------------------------- models that misbehave at run time

def _planted():
    planted = _module_from(ROOT / "tests" / "planted.py", "ganatomy_probe_planted")
    ColorSegmenter, PlantedGenerator = planted.ColorSegmenter, planted.PlantedGenerator      # noqa: N806

    class Seg(ColorSegmenter):
        cache_key = "probe-color-segmenter-v1"     # cacheable: so "nothing cached" means something
    return PlantedGenerator, Seg


def _cached(box) -> int:
    return len(list(box.cache.rglob("manifest.json")))


def _dissect(G, S, n=64):
    return core.dissect(G, S, ["units"], n, seed=0, batch_size=8)


@probe("runtime/healthy-control",
       "control: the planted generator dissects and is cached (so 'nothing cached' means it)")
def _(box):
    G, S = _planted()
    _dissect(G(), S())
    return _cached(box) >= 1, f"{_cached(box)} cache entry after one dissection"


@probe("runtime/nan-for-some-z-dissect",
       "NaN for some codes (missed by the load probe): dissection stopped naming samples, nothing cached")
def _(box):
    G, S = _planted()

    class NaNForSome(G):
        def forward(self, z):
            out = super().forward(z)
            return torch.where((z[:, 0] > 1.5).view(-1, 1, 1, 1), torch.full_like(out, float("nan")), out)
    core.check_generator(NaNForSome())                       # the load probe passes
    ok, msg = refusal(lambda: _dissect(NaNForSome(), S()), core.ProtocolError, "NaN or inf", "samples", "NaNForSome")
    return ok and _cached(box) == 0, first(msg, 120)


@probe("runtime/nan-for-some-z-whatif", "What-if on a NaN code: refused naming the images; other codes still draw")
def _(box):
    G, _ = _planted()

    class NaNForSome(G):
        def forward(self, z):
            out = super().forward(z)
            return torch.where((z[:, 0] > 1.5).view(-1, 1, 1, 1), torch.full_like(out, float("nan")), out)
    z = torch.zeros(3, 16)
    z[1, 0] = 2.0
    ok, msg = refusal(lambda: core.generate(NaNForSome(), z), core.ProtocolError, "images 1")
    fine = torch.isfinite(core.generate(NaNForSome(), z[[0, 2]])).all()
    return ok and bool(fine), first(msg)


@probe("runtime/inf-in-a-hidden-layer",
       "inf inside the dissected layer while the image stays finite: stopped naming the layer")
def _(box):
    G, S = _planted()

    class HiddenInf(G):
        def __init__(self):
            super().__init__()
            self.units = _InfAt()
    ok, msg = refusal(lambda: _dissect(HiddenInf(), S()), core.ProtocolError, "first at layer 'units'")
    return ok and _cached(box) == 0, first(msg, 120)


class _InfAt(torch.nn.Module):
    def forward(self, x):
        x = x.clone()
        x[:, 1, 0, 0] = float("inf")          # a distractor unit the image never reads
        return x


@probe("runtime/not-images-whatif", "a forward returning a tuple, or 1 channel: What-if refuses with a ProtocolError")
def _(box):
    G, _ = _planted()

    class Tuple(G):
        def forward(self, z):
            return (super().forward(z),)

    class Gray(G):
        def forward(self, z):
            return super().forward(z)[:, :1]
    ok1, m1 = refusal(lambda: core.generate(Tuple(), torch.zeros(2, 16)), core.ProtocolError, "N x 3 x H x W")
    ok2, m2 = refusal(lambda: core.generate(Gray(), torch.zeros(2, 16)), core.ProtocolError, "N x 3 x H x W")
    return ok1 and ok2, first(m1 if not ok1 else m2, 120)


@probe("runtime/short-batch", "a forward returning one image fewer than codes: dissection refused, nothing cached")
def _(box):
    G, S = _planted()

    class Short(G):
        def forward(self, z):
            return super().forward(z)[:-1]
    ok, msg = refusal(lambda: _dissect(Short(), S()), core.ProtocolError)
    return ok and _cached(box) == 0, first(msg)


@probe("runtime/exception-mid-batch",
       "the model raising in batch 3: the run stops with the model's error naming the samples (not 'a bug "
       "in GANatomy'), nothing cached, a fixed model computes")
def _(box):
    G, S = _planted()

    class Flaky(G):
        calls = 0

        def forward(self, z):
            type(self).calls += 1
            if type(self).calls == 3:
                raise RuntimeError("simulated device fault in batch 3")
            return super().forward(z)
    ok, msg = refusal(lambda: _dissect(Flaky(), S()), core.ProtocolError, "Flaky", "batch 3", "samples", "seed")
    none = _cached(box) == 0
    _dissect(Flaky(), S())                       # calls > 3 now: the same model computes, and is cached
    return ok and none and _cached(box) == 1, f"stopped ({first(msg, 60)}), nothing cached; the rerun cached 1 entry"


@probe("runtime/changed-code", "a class whose code changes between runs (same name, weights): a new cache key")
def _(box):
    src = box.root / "usergan_probe.py"

    def write(scale):
        _hostile().write_user_gan(src, scale)
    try:
        write(1.0)
        torch.manual_seed(0)
        a = _module_from(src, "usergan_probe").UserGAN()
        before = cache.model_fingerprint(a)
        write(2.0)
        st = src.stat()
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
        b = _module_from(src, "usergan_probe").UserGAN()       # the module imported again, as after an edit
        b.load_state_dict(a.state_dict())
        after = cache.model_fingerprint(b)
    finally:
        sys.modules.pop("usergan_probe", None)
    same_weights = cache.weights_hash(a) == cache.weights_hash(b)
    return same_weights and before != after, f"same weights, fingerprint {before[-14:]} -> {after[-14:]}"


@probe("runtime/segmenter-labels-out-of-range", "a segmenter returning label 99 of 5: refused, nothing cached")
def _(box):
    G, S = _planted()

    class Bad(S):
        def segment(self, images):
            s = super().segment(images)
            s[0, 0, 0] = 99
            return s
    ok, msg = refusal(lambda: _dissect(G(), Bad()), core.ProtocolError, "outside")
    return ok and _cached(box) == 0, first(msg)


# ----------------------------------------------------------------------------- full disks (ENOSPC)

@probe("disk/upload-write",
       "ENOSPC while an upload streams to disk: a CacheError, no temporary file, nothing registered")
def _(box):
    real = registry._write_chunks

    def half_then_full(tmp, data, chunk=1 << 20):
        Path(tmp).write_bytes(b"x" * 100)
        enospc()
    box.patch(registry, "_write_chunks", half_then_full)
    ok, msg = refusal(lambda: _upload(box, tiny_bytes()), core.CacheError, "No space left")
    box.patch(registry, "_write_chunks", real)
    left = list((box.models / "uploads").glob(".upload-*"))
    return ok and not left and nothing_stored(box), first(msg)


@probe("disk/registry-write-on-add", "ENOSPC on the registry write of an add: a CacheError, the placed file removed")
def _(box):
    box.patch(registry, "_write_registry", enospc)
    ok, msg = refusal(lambda: _upload(box, tiny_bytes()), core.CacheError, "nothing was added")
    return ok and box.uploads() == [], first(msg)


@probe("disk/registry-write-on-unregister", "ENOSPC on unregister: a CacheError, the model and its file as they were")
def _(box):
    e = _upload(box, tiny_bytes())
    box.patch(registry, "_write_registry", enospc)
    ok, msg = refusal(lambda: catalog.unregister("lab/x", confirm="lab/x", by="ann"), core.CacheError,
                      "not unregistered")
    return ok and "lab/x" in catalog.user_models() and Path(e["path"]).exists() and not box.trash(), first(msg)


@probe("disk/registry-write-on-restore",
       "ENOSPC on restore: a CacheError, the file back in the trash, still restorable")
def _(box):
    _upload(box, tiny_bytes())
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    real = registry._write_registry
    box.patch(registry, "_write_registry", enospc)
    ok, msg = refusal(lambda: catalog.restore(ev["id"], by="ann"), core.CacheError, "not restored")
    box.patch(registry, "_write_registry", real)
    still = len(box.trash()) == 1 and catalog.removed_models()[0]["file_here"] and box.uploads() == []
    catalog.restore(ev["id"], by="ann")
    return ok and still and "lab/x" in catalog.user_models(), first(msg)


@probe("disk/flag-write", "ENOSPC on a flag write: a CacheError (not an OSError shown as a bug), flags as they were")
def _(box):
    flags.flag_units("lab/x", "layer4", [3], "fp", by="ann")
    box.patch(flags, "atomic_write_text", enospc)
    ok, msg = refusal(lambda: flags.flag_units("lab/x", "layer4", [5], "fp", by="ann"), core.CacheError,
                      "No space left")
    return ok and flags.load_flags("lab/x", "layer4", "fp") == [3], first(msg)


@probe("disk/cache-write-during-dissect",
       "ENOSPC on the result cache: the dissection is returned, the cache says why, nothing half-written")
def _(box):
    G, S = _planted()
    box.patch(cache, "_publish", lambda *a, **k: enospc())
    cache.take_notices()
    d = _dissect(G(), S())
    notes = cache.take_notices()
    return d is not None and _cached(box) == 0 and any("GANATOMY_CACHE" in n for n in notes), \
        first(notes[0] if notes else "no notice")


@probe("disk/cli-out-unwritable", "ganatomy dissect --out under a file: refused before computing (< 20 s)")
def _(box):
    (box.root / "afile").write_text("x")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "core", "dissect", "--model", "toyworld/town", "--layers", "layer4",
                        "--samples", "2000", "--out", str(box.root / "afile" / "out")], cwd=ROOT, env=dict(os.environ),
                       capture_output=True, text=True, timeout=120)
    s = time.perf_counter() - t
    said = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    return (r.returncode != 0 and "cannot be written" in said[0] and s < 20,
            f"exit {r.returncode} in {s:.1f} s: {first(said[0])}")


# ----------------------------------------------------------------------------- kill -9 at each write

@probe("kill/mid-upload",
       "SIGKILL while an upload streams (quota lock held): the next upload works, the temp file is swept")
def _(box):
    src = box.weights()
    killed, obs = child(box, f"""
        data = pathlib.Path({str(src)!r}).read_bytes()
        class Slow:                      # an upload arriving slowly: its second chunk never comes
            sent = False
            def read(self, n=-1):
                if self.sent:
                    stop()
                self.sent = True
                return data[:1000]
            def seek(self, *a): return 0
            def tell(self): return 0
        registry._size = lambda d: len(data)
    """, "core.models.add_upload(Slow(), 'g.pt', 'lab/killed', added_by='ann')")
    if not killed:
        return False, obs
    temps = list((box.models / "uploads").glob(".upload-*"))
    t = time.perf_counter()
    _upload(box, src, name="lab/after")                  # the killed process's lock is gone with it
    s = time.perf_counter() - t
    ok, state = consistent(box)
    return ok and len(temps) == 1 and s < 5 and "lab/killed" not in catalog.user_models(), \
        f"killed with {len(temps)} temp file; next upload {s:.2f} s; {state}"


@probe("kill/after-file-before-registry",
       "SIGKILL between placing an upload and the registry write: the orphan is swept, never counted")
def _(box):
    src = box.weights()
    killed, obs = child(box, "registry._write_registry = stop",
                        f"core.models.add_upload(pathlib.Path({str(src)!r}).read_bytes(), 'g.pt', 'lab/k', "
                        "added_by='ann')")
    if not killed:
        return False, obs
    orphans = box.uploads()
    ok, state = consistent(box)
    return ok and len(orphans) == 1 and box.uploads() == [] and catalog.user_models() == {}, \
        f"{len(orphans)} orphan after the kill, swept when old; {state}"


@probe("kill/mid-registry-write",
       "SIGKILL with the registry half-written: registry.json is the old one, the next add works")
def _(box):
    _upload(box, tiny_bytes(1), name="lab/first")
    src = box.weights(seed=2)
    killed, obs = child(box, """
        from core.base.cache import atomic_path
        def half(data):
            import json
            with atomic_path(registry._registry_file()) as tmp:
                text = json.dumps(data)
                tmp.write_text(text[:len(text) // 2])
                stop()
        registry._write_registry = half
    """, f"core.models.add_upload(pathlib.Path({str(src)!r}).read_bytes(), 'g.pt', 'lab/second', added_by='ann')")
    if not killed:
        return False, obs
    parts = list(box.models.glob(".registry.json.part-*"))
    before = sorted(catalog.user_models())
    age(*parts)
    _upload(box, tiny_bytes(3), name="lab/third")
    ok, state = consistent(box)
    gone = not any(p.exists() for p in parts)
    return ok and before == ["lab/first"] and gone and sorted(catalog.user_models()) == ["lab/first", "lab/third"], \
        f"{len(parts)} half-written part, registry intact {before}, part swept by the next write; {state}"


@probe("kill/mid-flag-write", "SIGKILL with a flag file half-written: every earlier flag is there, the next flag works")
def _(box):
    for u in range(5):
        flags.flag_units("lab/x", "layer4", [u], "fp", by=f"u{u}")
    killed, obs = child(box, """
        from core.base.cache import atomic_path
        def half(path, text):
            with atomic_path(path) as tmp:
                tmp.write_text(text[:len(text) // 2])
                stop()
        flags.atomic_write_text = half
    """, "flags.flag_units('lab/x', 'layer4', [9], 'fp', by='killed')")
    if not killed:
        return False, obs
    before = flags.load_flags("lab/x", "layer4", "fp")
    t = time.perf_counter()
    after = flags.flag_units("lab/x", "layer4", [7], "fp", by="next")
    return before == [0, 1, 2, 3, 4] and after == [0, 1, 2, 3, 4, 7] and time.perf_counter() - t < 5, \
        f"flags after the kill {before}; the next flag -> {after}"


@probe("kill/removal-before-move",
       "SIGKILL between a removal's event and its file's move: restorable, the sweep finishes the move")
def _(box):
    e = _upload(box, tiny_bytes())
    killed, obs = child(box, """
        real = os.replace
        def replace(a, b):
            if pathlib.Path(b).parent.name == "trash":
                stop()
            return real(a, b)
        registry.os.replace = replace
    """, "core.models.unregister('lab/x', confirm='lab/x', by='ann')")
    if not killed:
        return False, obs
    listed = [r["file_here"] for r in catalog.removed_models()] == [True] and "lab/x" not in catalog.user_models()
    ok, state = consistent(box)                           # (sweeps: the move is finished)
    moved = len(box.trash()) == 1 and box.uploads() == []
    catalog.restore(catalog.removed_models()[0]["id"], by="ann")
    return (ok and listed and moved and sha(e["path"]) == e["sha256"],
            f"listed, moved by the sweep, restored whole; {state}")


@probe("kill/restore-before-registry",
       "SIGKILL between a restore's move and its registry write: still listed, restorable")
def _(box):
    e = _upload(box, tiny_bytes())
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    killed, obs = child(box, "registry._write_registry = stop", f"core.models.restore({ev['id']!r}, by='ann')")
    if not killed:
        return False, obs
    listed = [r["file_here"] for r in catalog.removed_models()] == [True]
    catalog.restore(ev["id"], by="ann")
    ok, state = consistent(box)
    return ok and listed and sha(e["path"]) == e["sha256"] and "lab/x" in catalog.user_models(), \
        f"listed with its file after the kill, restored whole; {state}"


@probe("kill/purge-before-unlink", "SIGKILL between a purge's registry write and the unlink: the trash file is swept")
def _(box):
    _upload(box, tiny_bytes())
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    killed, obs = child(box, "registry._drop = stop", f"core.models.purge({ev['id']!r}, by='ann')")
    if not killed:
        return False, obs
    left = box.trash()
    ok, state = consistent(box)
    return ok and len(left) == 1 and box.trash() == [] and catalog.removed_models() == [], \
        f"{len(left)} trash file left by the kill, swept when old; {state}"


# ----------------------------------------------------------------------------- two users

@probe("own/replace-by-another", "bob replacing ann's model: refused, ann's file byte for byte")
def _(box):
    a = _upload(box, tiny_bytes(1), by="ann")
    before = sha(a["path"])
    ok, msg = refusal(lambda: _upload(box, tiny_bytes(2), by="bob", replace=True), core.InputError, "only they")
    return ok and sha(a["path"]) == before and catalog.user_models()["lab/x"]["added_by"] == "ann", first(msg)


@probe("own/unregister-by-another", "bob unregistering ann's model (confirmed): refused")
def _(box):
    _upload(box, tiny_bytes(), by="ann")
    ok, msg = refusal(lambda: catalog.unregister("lab/x", confirm="lab/x", by="bob"), core.InputError, "only they")
    return ok and "lab/x" in catalog.user_models() and catalog.removed_models() == [], first(msg)


@probe("own/unflag-by-another", "bob unflagging ann's unit: refused, the flag stays")
def _(box):
    flags.flag_units("lab/x", "layer4", [3], "fp", by="ann")
    ok, msg = refusal(lambda: flags.unflag_units("lab/x", "layer4", [3], "fp", by="bob"), core.InputError,
                      "flagged by ann")
    return ok and flags.load_flags("lab/x", "layer4", "fp") == [3], first(msg)


@probe("own/restore-or-purge-by-another", "bob restoring or deleting ann's removal: both refused, it stays restorable")
def _(box):
    _upload(box, tiny_bytes(), by="ann")
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    ok1, m1 = refusal(lambda: catalog.restore(ev["id"], by="bob"), core.InputError, "only they")
    ok2, m2 = refusal(lambda: catalog.purge(ev["id"], by="bob"), core.InputError, "only they")
    row = catalog.removed_models(by="bob")[0]
    return ok1 and ok2 and row["file_here"] and not row["may_undo"], first(m1 if not ok1 else m2)


@probe("own/undo-unflag-by-another", "bob undoing ann's unflag: refused; ann undoes it, the flag is hers again")
def _(box):
    flags.flag_units("lab/x", "layer4", [3], "fp", by="ann")
    flags.unflag_units("lab/x", "layer4", [3], "fp", by="ann")
    ok, msg = refusal(lambda: flags.undo_unflag("lab/x", "layer4", 3, "fp", by="bob"), core.InputError,
                      "flagged by ann")
    flags.undo_unflag("lab/x", "layer4", 3, "fp", by="ann")
    return ok and flags.flag_details("lab/x", "layer4", "fp")[3]["by"] == "ann", first(msg)


@probe("own/look-alike-display-name", "bob as 'аnn' (Cyrillic a), 'ann\\u200b' or 'ANN': cannot unregister ann's model")
def _(box):
    _upload(box, tiny_bytes(), by="ann")
    bad = [n for n in ("\u0430nn", "ann\u200b", "ANN", "\u202ann") if
           not refusal(lambda: catalog.unregister("lab/x", confirm="lab/x", by=n), core.InputError, "only they")[0]]
    return not bad and "lab/x" in catalog.user_models(), "4 look-alike names refused" if not bad else f"accepted {bad}"


@probe("own/admin-may", "an admin ($GANATOMY_ADMINS) replaces, unregisters and restores ann's model")
def _(box):
    box.env(GANATOMY_ADMINS="pi")
    a = _upload(box, tiny_bytes(1), by="ann")
    _upload(box, tiny_bytes(2), by="pi", replace=True)
    catalog.unregister("lab/x", confirm="lab/x", by="pi")                   # ann's model comes back
    back = catalog.user_models()["lab/x"]
    ev = catalog.unregister("lab/x", confirm="lab/x", by="pi")
    catalog.restore(ev["id"], by="pi")
    return back["path"] == a["path"] and catalog.user_models()["lab/x"]["added_by"] == "ann", \
        "replaced, unregistered (ann's came back), removed and restored by the admin"


@probe("own/replace-keeps-the-first-file",
       "a replacement keeps the first file; its removal brings it back; undo replaces again")
def _(box):
    box.env(GANATOMY_ADMINS="pi")
    a = _upload(box, tiny_bytes(1), by="ann")
    b = _upload(box, tiny_bytes(2), by="pi", replace=True)
    kept = sha(a["path"]) == a["sha256"]
    ev = catalog.unregister("lab/x", confirm="lab/x", by="pi")
    first_back = catalog.user_models()["lab/x"]["path"] == a["path"]
    again = catalog.restore(ev["id"], by="pi")
    return kept and first_back and again["path"] == b["path"] and again["replaced"][-1]["path"] == a["path"], \
        "ann's file kept under the replacement, back after its removal, behind it again after the undo"


def _race(n: int, fn) -> tuple[list, list]:
    go = threading.Barrier(n)
    won, lost = [], []

    def one(i):
        go.wait()
        try:
            won.append(fn(i))
        except GanatomyError as e:
            lost.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return won, lost


@probe("own/race-one-name",
       "two sessions adding one name at once (3 tries): exactly one wins, the loser leaves no file")
def _(box):
    for attempt in range(3):
        won, lost = _race(2, lambda i: _upload(box, tiny_bytes(10 * attempt + i), name=f"lab/r{attempt}x", by=f"s{i}"))
        if len(won) != 1 or len(lost) != 1:
            return False, f"try {attempt}: {len(won)} won, {len(lost)} refused"
    return len(box.uploads()) == 3, "3 of 3 races: one winner, no stray file"


@probe("own/race-quota", "two uploads when only one fits (3 tries): exactly one accepted")
def _(box):
    data = tiny_bytes()
    box.env(GANATOMY_UPLOAD_QUOTA_MB=str(1.5 * len(data) / 2 ** 20))
    for attempt in range(3):
        won, lost = _race(2, lambda i: _upload(box, data + bytes([i, attempt]), f"g{i}.pt", name=f"lab/q{attempt}-{i}"))
        if len(won) != 1:
            return False, f"try {attempt}: {len(won)} accepted"
        name = next(iter(catalog.user_models()))
        catalog.purge(catalog.unregister(name, confirm=name)["id"])
    return True, "3 of 3: one accepted, one refused by the quota"


@probe("own/race-restore", "four sessions restoring one removal at once: exactly one wins")
def _(box):
    _upload(box, tiny_bytes(), by="ann")
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    won, lost = _race(4, lambda i: catalog.restore(ev["id"], by="ann"))
    ok = len(won) == 1 and len(lost) == 3 and all(isinstance(e, core.UnknownNameError) for e in lost)
    return (ok and sha(catalog.user_models()["lab/x"]["path"]) == won[0]["sha256"],
            f"{len(won)} won, {len(lost)} told it is gone")


@probe("own/race-remove-and-add", "ann removing while bob adds the same name: the registry and trash stay consistent")
def _(box):
    _upload(box, tiny_bytes(1), by="ann")
    won, lost = _race(2, lambda i: catalog.unregister("lab/x", confirm="lab/x", by="ann") if i == 0
                      else _upload(box, tiny_bytes(2), by="bob"))
    ok, state = consistent(box)
    return ok and len(won) >= 1, f"{len(won)} succeeded, {len(lost)} refused; {state}"


@probe("own/restore-after-retaken",
       "restore after bob took the name: refused naming bob; ann's file waits in the trash")
def _(box):
    _upload(box, tiny_bytes(1), by="ann")
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    _upload(box, tiny_bytes(2), by="bob")
    ok, msg = refusal(lambda: catalog.restore(ev["id"], by="ann"), core.InputError, "taken again", "bob")
    return ok and catalog.removed_models()[0]["file_here"], first(msg)


@probe("own/reflag-then-unflag",
       "bob flagging ann's flagged unit, then unflagging it: the flag stays ann's, the unflag refused")
def _(box):
    flags.flag_units("lab/x", "layer4", [3], "fp", by="ann")
    flags.flag_units("lab/x", "layer4", [3], "fp", by="bob")
    ok, msg = refusal(lambda: flags.unflag_units("lab/x", "layer4", [3], "fp", by="bob"), core.InputError,
                      "flagged by ann")
    return ok and flags.flag_details("lab/x", "layer4", "fp")[3]["by"] == "ann", first(msg)


@probe("own/whole-set-by-another", "bob saving a whole set of flags without ann's unit (by='bob'): refused, hers stays")
def _(box):
    flags.flag_units("lab/x", "layer4", [3], "fp", by="ann")
    ok, msg = refusal(lambda: flags.save_flags("lab/x", "layer4", [5], "fp", by="bob"), core.InputError,
                      "flagged by ann")
    return ok and flags.load_flags("lab/x", "layer4", "fp") == [3], first(msg)


def _restore_in_child(event_id: str, q) -> None:
    try:
        catalog.restore(event_id, by="ann")
        q.put("won")
    except GanatomyError as e:
        q.put(type(e).__name__)


@probe("own/race-restore-processes", "two server processes restoring one removal at once: exactly one wins (file lock)")
def _(box):
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        return True, "skipped: no fork on this platform"
    _upload(box, tiny_bytes(), by="ann")
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_restore_in_child, args=(ev["id"], q)) for _ in range(2)]
    [p.start() for p in procs]
    [p.join(30) for p in procs]
    got = sorted(q.get(timeout=5) for _ in procs)
    ok = got == ["UnknownNameError", "won"] and "lab/x" in catalog.user_models()
    return ok, f"{got}; registry and file consistent: {consistent(box)[0]}"


@probe("own/page-undo-and-others", "Models page: ann's Undo restores her model; bob sees the removal without buttons")
def _(box):
    e = _upload(box, tiny_bytes(), name="lab/church", by="ann")
    ev = catalog.unregister("lab/church", confirm="lab/church", by="ann")
    bob = _page()
    bob.text_input(key="display_name_input").set_value("bob").run()
    no_buttons = not [b for b in bob.button if b.key in (f"undo-{ev['id']}", f"purge-{ev['id']}")]
    ann = _page()
    ann.text_input(key="display_name_input").set_value("ann").run()
    ann.button(key=f"undo-{ev['id']}").click().run()
    ok = not ann.exception and not ann.error and catalog.user_models().get("lab/church") == e
    return ok and no_buttons, ("bob: listed, no buttons; ann's Undo: the same entry and bytes back" if ok and no_buttons
                               else f"bob sees buttons: {not no_buttons}; errors {[x.value for x in ann.error]}")


# ----------------------------------------------------------------------------- the cache, the trash, the registry

@probe("cache/symlinked-quarantine", "a .quarantine linking outside the cache: nothing outside is ever pruned")
def _(box):
    outside = box.root / "precious"
    outside.mkdir()
    for i in range(cache.QUARANTINE_KEEP + 5):
        (outside / f"thesis-{i}.tex").write_text("work")
    box.cache.mkdir()
    (box.cache / cache.QUARANTINE).symlink_to(outside)
    d = box.cache / "dissect" / "k"
    d.mkdir(parents=True)
    state, err = cache._move_aside(d, "dissect", "k", os.lstat(d).st_ino)
    n = len(list(outside.iterdir()))
    return (state == "failed" and n == cache.QUARANTINE_KEEP + 5,
            f"move aside {state} ({first(err, 50)}); {n} files outside kept")


@probe("cache/symlinked-trash", "a trash folder linking outside: removal, purge and sweep never touch what is outside")
def _(box):
    outside = box.root / "precious"
    outside.mkdir()
    (outside / "0123456789ab-thesis.pt").write_text("work")
    age(outside / "0123456789ab-thesis.pt")
    box.models.mkdir()
    (box.models / "trash").symlink_to(outside)
    e = _upload(box, tiny_bytes(), by="ann")
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    catalog.sweep_trash(now=time.time() + 10 ** 8)
    _upload(box, tiny_bytes(1), name="lab/y", by="ann")
    ev2 = catalog.unregister("lab/y", confirm="lab/y", by="ann")
    catalog.purge(ev2["id"], by="ann")
    kept = sorted(p.name for p in outside.iterdir())
    return kept == ["0123456789ab-thesis.pt"] and not Path(e["path"]).exists() and catalog.removed_models() == [], \
        f"outside still holds {kept}; removed files stayed in uploads/ until deleted for good (removal {ev['id']})"


@probe("cache/symlinked-uploads", "an uploads folder linking to a shared folder: the sweep deletes nothing there")
def _(box):
    shared = box.root / "shared"
    shared.mkdir()
    mine = [shared / "thesis.pt", shared / "lab_x-0123456789abcdef.pt", shared / "notes.txt"]
    for f in mine:
        f.write_text("someone's work")
    age(*mine)
    box.models.mkdir()
    (box.models / "uploads").symlink_to(shared)
    catalog.sweep_trash(now=time.time() + 10 ** 8)
    _upload(box, tiny_bytes(), by="ann")               # registration sweeps too
    return all(f.exists() for f in mine), "the 3 files of the shared folder kept through two sweeps"


def _forge_removal(box, entry_path: str, trash: str) -> str:
    box.models.mkdir(exist_ok=True)
    ev = {"id": "0123456789ab", "name": "lab/forged", "removed_by": "ann", "removed_at": registry.timestamp(),
          "trash": trash, "came_back": None, "entry": {"kind": "generator", "arch": "progan", "path": entry_path,
                                                       "options": {}, "added_by": "ann", "added_at": ""}}
    (box.models / "registry.json").write_text(json.dumps({"~removed": [ev]}))
    return ev["id"]


@probe("cache/forged-trash-path",
       "a hand-edited removal whose trash names a file outside: restore and purge never move or delete it")
def _(box):
    precious = box.root / "precious.txt"
    precious.write_text("someone's work")
    eid = _forge_removal(box, str(box.models / "uploads" / "lab_forged-0123456789abcdef.pt"), str(precious))
    ok, msg = refusal(lambda: catalog.restore(eid, by="ann"), core.CacheError, "is gone")
    catalog.purge(eid, by="ann")
    return ok and precious.read_text() == "someone's work", f"restore: {first(msg, 60)}; purge left the file"


@probe("cache/forged-restore-destination",
       "a hand-edited removal whose entry points outside uploads: restore writes nothing there")
def _(box):
    box.models.mkdir()
    (box.models / "trash").mkdir()
    t = box.models / "trash" / "0123456789ab-lab_forged-0123456789abcdef.pt"
    t.write_bytes(tiny_bytes())
    target = box.root / "etc" / "cron.pt"
    target.parent.mkdir()
    eid = _forge_removal(box, str(target), str(t))
    ok, msg = refusal(lambda: catalog.restore(eid, by="ann"), core.CacheError, "not the uploads folder")
    return ok and not target.exists() and t.exists(), first(msg)


@probe("cache/cache-is-a-file",
       "$GANATOMY_CACHE pointing at a file: an upload gives a CacheError, not NotADirectoryError")
def _(box):
    f = box.root / "cachefile"
    f.write_text("x")
    box.env(GANATOMY_CACHE=str(f), GANATOMY_MODELS=None)
    return refusal(lambda: _upload(box, tiny_bytes()), core.CacheError, "Not a directory")


@probe("cache/tampered-entry", "a cached result with a flipped byte: not served; recomputed to the same result")
def _(box):
    G, S = _planted()
    a = _dissect(G(), S())
    f = next(p for p in box.cache.rglob("*.npz"))
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    cache.take_notices()
    b = _dissect(G(), S())
    said = [n for n in cache.take_notices() if "checksum" in n]
    (arr_a, _), (arr_b, _) = a.to_arrays(), b.to_arrays()
    same = arr_a.keys() == arr_b.keys() and all(
        np.array_equal(np.asarray(arr_a[k]), np.asarray(arr_b[k]), equal_nan=True) for k in arr_a)
    aside = [p for p in (box.cache / cache.QUARANTINE).glob("dissect-*")]
    return same and len(aside) == 1, (f"damaged entry moved aside ({len(aside)}), the result recomputed identically"
                                      + (f"; said: {first(said[0], 60)}" if said else ""))


@probe("cache/garbage-registry", "registry.json holding garbage: no model listed, the Models page loads, adding works")
def _(box):
    box.models.mkdir()
    (box.models / "registry.json").write_bytes(b"\x00\xff{{{ not json")
    listed = catalog.user_models() == {} and catalog.removed_models() == []
    at = _page()
    _upload(box, tiny_bytes())
    return listed and not at.exception and "lab/x" in catalog.user_models(), "read as empty; page loads; add works"


@probe("cache/entry-pointing-outside",
       "a hand-edited entry pointing at a file outside uploads: load refused, never deleted")
def _(box):
    precious = box.root / "thesis.pt"
    precious.write_bytes(b"my thesis, not weights")
    box.models.mkdir()
    (box.models / "registry.json").write_text(json.dumps({"lab/t": {
        "kind": "generator", "arch": "progan", "path": str(precious), "options": {}, "added_by": "ann",
        "added_at": "2025-01-01T00:00:00+00:00"}}))
    ok, msg = refusal(lambda: core.load_generator("lab/t"), core.CheckpointError)
    ev = catalog.unregister("lab/t", confirm="lab/t", by="ann")
    catalog.purge(ev["id"], by="ann")
    catalog.sweep_trash(now=time.time() + 10 ** 8)
    return ok and "thesis" not in msg.replace(str(precious), "") and precious.exists(), \
        f"load refused ({first(msg, 50)}); unregister + purge + sweep left the file"


@probe("cache/trash-in-the-quota", "the trash counts against the uploads quota, and the refusal says so")
def _(box):
    data = tiny_bytes()
    box.env(GANATOMY_UPLOAD_QUOTA_MB=str(1.5 * len(data) / 2 ** 20))
    _upload(box, data)
    ev = catalog.unregister("lab/x", confirm="lab/x", by="ann")
    ok, msg = refusal(lambda: _upload(box, tiny_bytes(1), name="lab/y"), core.BudgetError, "trash")
    catalog.purge(ev["id"], by="ann")
    _upload(box, tiny_bytes(1), name="lab/y")
    return ok, ("refused (" + first(msg[msg.find("of them"):], 110) + "); accepted once the removal was deleted "
                "for good")


@probe("cache/retention-sweep", "removals older than $GANATOMY_TRASH_DAYS go at the next registration, never on a read")
def _(box):
    box.env(GANATOMY_TRASH_DAYS="0.5")
    _upload(box, tiny_bytes())
    catalog.unregister("lab/x", confirm="lab/x", by="ann")
    registry_text = (box.models / "registry.json").read_text()
    data = json.loads(registry_text)
    data["~removed"][0]["removed_at"] = "2000-01-01T00:00:00+00:00"
    (box.models / "registry.json").write_text(json.dumps(data))
    for _ in range(3):
        catalog.removed_models()
    read_kept = len(catalog.removed_models()) == 1 and len(box.trash()) == 1
    _upload(box, tiny_bytes(1), name="lab/y")
    return read_kept and catalog.removed_models() == [] and box.trash() == [], \
        "kept through 3 reads; purged with its file at the next upload"


# ----------------------------------------------------------------------------- rewritten models (#35)

def _rewrite_request(steps: int = 3):
    from core.studies.rewriting import Region, Request
    m = np.zeros((64, 64), bool)
    m[40:52, 8:20] = True
    p = np.zeros((64, 64), bool)
    p[16:28, 30:42] = True
    return Request(model="toyworld/town", layer="layer6", copy=Region(1, m), paste=Region(2, p), steps=steps,
                   key_samples=20)


def _rewrite(box: Box, name: str, by: str, base: str = "toyworld/town", replace: bool = False, steps: int = 3):
    from dataclasses import replace as with_

    from core.studies.rewriting import run_request, save_rewrite
    req = with_(_rewrite_request(steps), model=base)
    return save_rewrite(name, run_request(core.load_generator(base), req, cache=False), added_by=by, replace=replace)


@probe("rewrite/request-not-json", "a request file of binary junk: refused, naming JSON, no byte of it echoed")
def _(box):
    from core.studies.rewriting import Request
    junk = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"SECRET-TOKEN"
    ok, msg = refusal(lambda: Request.loads(junk), core.InputError, "not")
    return ok and "SECRET" not in msg and "PNG" not in msg, first(msg)


@probe("rewrite/request-nested-deep", "a 1 MB request of nested brackets: refused as bad JSON, no crash")
def _(box):
    from core.studies.rewriting import Request
    deep = b"[" * 500_000 + b"]" * 500_000
    t = time.perf_counter()
    ok, msg = refusal(lambda: Request.loads(deep), core.InputError)
    return ok and time.perf_counter() - t < 5, first(msg)


@probe("rewrite/request-key-echo", "an unknown 10 KB key of markup: refused, the key cut to 40 characters")
def _(box):
    from core.studies.rewriting import Request
    obj = json.loads(_rewrite_request().dumps())
    obj["<script>alert(1)</script>" + "x" * 10_000] = 1
    ok, msg = refusal(lambda: Request.from_json(obj), core.InputError, "unknown keys")
    return ok and "x" * 41 not in msg and len(msg) < 600, first(msg)


@probe("rewrite/another-users-name", "saving a rewrite under another user's model name: refused, theirs unchanged")
def _(box):
    entry = _rewrite(box, "lab/rw", "ann")
    before = sha(entry["path"])
    ok, msg = refusal(lambda: _rewrite(box, "lab/rw", "bob", replace=True), core.InputError)
    after = catalog.user_models()["lab/rw"]
    return ok and after["added_by"] == "ann" and sha(after["path"]) == before, first(msg)


@probe("rewrite/shared-model-untouched", "three rewrites run and saved: the shared model's weights bit-identical")
def _(box):
    G = core.load_generator("toyworld/town")
    h = cache.weights_hash(G)
    from core.studies.rewriting import run_request
    for i in range(3):
        run = run_request(G, _rewrite_request(), cache=False)
        run.rewrite.apply(G)
    _rewrite(box, "lab/rw", "ann")
    return cache.weights_hash(G) == h, f"weights hash {h[:12]} before and after"


@probe("rewrite/chain-loop", "a rewrite whose base chain loops back to itself: refused when loaded, no hang")
def _(box):
    _rewrite(box, "lab/a", "ann")
    _rewrite(box, "lab/b", "ann", base="lab/a")
    _rewrite(box, "lab/a", "ann", base="lab/b", replace=True)          # a -> b -> a
    t = time.perf_counter()
    ok, msg = refusal(lambda: core.load_generator("lab/a"), core.CheckpointError, "loops")
    return ok and time.perf_counter() - t < 30, first(msg)


@probe("rewrite/delta-swapped-for-pickle", "a saved rewrite's delta file replaced by a code-running pickle: "
                                          "refused when loaded, the code never runs")
def _(box):
    entry = _rewrite(box, "lab/rw", "ann")
    marker = box.root / "ran"
    torch.save({"layer6.conv.weight": _RunsCode(marker)}, entry["path"])
    ok, msg = refusal(lambda: core.load_generator("lab/rw"), core.CheckpointError)
    return ok and not marker.exists(), first(msg)


@probe("rewrite/base-removed", "a rewrite whose base model was removed: loading it names the base and the fix, "
                                "never a traceback")
def _(box):
    _rewrite(box, "lab/base", "ann")
    _rewrite(box, "lab/rw", "bob", base="lab/base")
    catalog.unregister("lab/base", confirm="lab/base", by="ann")
    return refusal(lambda: core.load_generator("lab/rw"), core.CheckpointError, "lab/base", "no longer")


# ----------------------------------------------------------------------------- the command line

def _table(rows: list[dict]) -> str:
    widths = (38, 58, 6, 90, 7)
    head = ("case", "expectation", "verdict", "observation", "seconds")
    cut = lambda s, w: (s if len(s) <= w else s[:w - 1] + "…").ljust(w)        # noqa: E731
    lines = [" ".join(cut(h, w) for h, w in zip(head, widths))]
    for r in rows:
        lines.append(" ".join(cut(str(r[k]), w) for k, w in zip(head, widths)))
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")          # noqa: E731
    out = ["| case | expectation | verdict | observation | s |", "|---|---|---|---|---:|"]
    out += [f"| `{r['case']}` | {esc(r['expectation'])} | {r['verdict']} | {esc(r['observation'])} | {r['seconds']} |"
            for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="TEXT", help="run the cases whose name contains one of these")
    ap.add_argument("--list", action="store_true", help="list the cases and what each expects")
    ap.add_argument("--out", default=str(OUT), help=f"the JSON report (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--no-report", action="store_true", help="print the table only")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown too")
    args = ap.parse_args(argv)
    if args.list:
        for p in PROBES.values():
            print(f"{p.name:40s} {p.expect}")
        return 0
    started = provenance.stamp()
    t = time.perf_counter()
    rows = run(args.only, echo=lambda r: print(f"{r['verdict']:6s} {r['seconds']:6.2f} s  {r['case']}", flush=True))
    seconds = time.perf_counter() - t
    held = sum(r["verdict"] == HELD for r in rows)
    failed = len(rows) - held
    print()
    print(_table(rows))
    print(f"\n{len(rows)} cases tried, {held} held, {failed} failed, in {seconds:.0f} s")
    if args.markdown:
        print("\n" + markdown(rows))
    if not args.no_report:
        out = provenance.write_report(args.out, {
            "issue": 33, "what": "hostile and faulty cases against the lab server (core and the Models page)",
            "tried": len(rows), "held": held, "failed": failed, "seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "only": args.only, "cases": rows}, started=started)
        print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile torch files built the way an attacker would (a hand-written pickle whose storage declares
any size, in a zip whose record is deflated, and whose directory may lie), loading one in a fresh
interpreter, and a user's model whose code changes between runs. Shared by the tests
(tests/test_declared.py, tests/test_runtime_faults.py) and the probe suite (scripts/probe_server.py
loads this file by path)."""
from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import torch


class _Storage:
    def __init__(self, n):
        self.n = n


class _Tensor:
    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (_Storage(self.n), 0, (self.n,), (1,), False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.n) if isinstance(obj, _Storage) else None


def forged(path: Path, declared_floats: int, stored_bytes: int, compress: bool = True,
           directory_says: int | None = None) -> Path:
    """A torch zip whose pickle declares ``declared_floats`` float32 values in one storage whose
    record holds ``stored_bytes`` zero bytes (deflated: ~1 KB on disk per MB); with
    ``directory_says``, the zip's central directory lies about that record's inflated size."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"w": _Tensor(declared_floats)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with z.open(info, "w", force_zip64=True) as f:
            chunk, left = bytes(1 << 20), stored_bytes
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
    if directory_says is not None:
        raw = bytearray(path.read_bytes())
        at = raw.find(b"PK\x01\x02")                          # the central directory's headers
        while at >= 0:
            n = struct.unpack_from("<H", raw, at + 28)[0]
            if raw[at + 46:at + 46 + n] == b"archive/data/0":
                struct.pack_into("<I", raw, at + 24, directory_says)     # its uncompressed size
            at = raw.find(b"PK\x01\x02", at + 4)
        path.write_bytes(bytes(raw))
    return path


def fresh_load(path) -> dict:
    """Load ``path`` with ``load_checkpoint`` in a new interpreter: {seconds, extra_mb (peak RSS),
    error ("" when it loaded)}."""
    code = f"""
import json, resource, time, core
from core.base.checkpoints import load_checkpoint
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    load_checkpoint({str(path)!r}); err = ""
except Exception as e:
    err = type(e).__name__ + ": " + str(e)
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "extra_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024, "error": err}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the fresh interpreter failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_user_gan(path, scale: float) -> None:
    """A user's generator module at ``path``: class ``UserGAN``, the same name and weights whatever
    ``scale``, whose forward multiplies by ``scale`` (changed code, unchanged weights)."""
    Path(path).write_text(textwrap.dedent(f"""
        import torch
        class UserGAN(torch.nn.Module):
            z_dim = 4
            def __init__(self):
                super().__init__()
                self.layer1 = torch.nn.Linear(4, 48)
            def forward(self, z):
                return torch.tanh({scale} * self.layer1(z)).view(-1, 3, 4, 4)
        """))

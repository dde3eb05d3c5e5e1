"""Hostile torch files built the way an attacker would: a hand-written pickle whose storage declares
any size, in a zip whose record is deflated (and whose directory may lie). Shared by the tests
(tests/test_declared.py) and the probe suite (scripts/probe_server.py loads this file by path)."""
from __future__ import annotations

import collections
import io
import pickle
import struct
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

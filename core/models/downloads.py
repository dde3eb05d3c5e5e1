"""Downloads, only when asked (``download=True``, ``ganatomy fetch NAME``, the dashboard's
*Download* button): streamed to a temporary file, verified against the SHA-256 the catalog knows
(the full digest, or the 8-digit prefix the ``torch.hub`` file names carry; an unknown digest is
recorded beside the file) and renamed into place, so an interrupted or corrupt download never
becomes a model. Nothing downloads at import."""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

from core.base.errors import DownloadError, MissingWeightsError
from core.base.packages import require
from core.models.catalog import Spec, missing_message, models_dir, spec

__all__ = ["sha256_file", "download_url", "fetch"]


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _check_digest(digest: str, expected: str | None, what: str) -> None:
    if expected and not digest.startswith(expected.lower()):
        raise DownloadError(f"checksum mismatch for {what}: expected SHA-256 {expected}…, got {digest}; "
                            "the download was discarded (try again, or fetch the file yourself)")


def download_url(url: str, dest, sha256: str | None = None, progress: Callable | None = None,
                 timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying SHA-256 (full or prefix) when given.

    The full digest is recorded in ``<dest>.sha256`` (``sha256sum`` format) either way."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex[:8]}")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            done = 0
            while b := r.read(1 << 20):
                f.write(b)
                h.update(b)
                done += len(b)
                if progress:
                    progress(done, total)
        if total and done != total:
            raise DownloadError(f"download of {url} stopped after {done} of {total} bytes; nothing was kept")
        digest = h.hexdigest()
        _check_digest(digest, sha256, url)
        os.replace(tmp, dest)
        dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
        return dest
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not download {url} ({reason}). Without a network, download it "
                            f"elsewhere and put it at {dest}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_hub(s: Spec, progress=None) -> Path:
    hub = require("huggingface_hub", "huggingface_hub", "Hub downloads")
    try:
        info = hub.HfApi().model_info(s.hub_id, files_metadata=True)
    except Exception as e:     # network / hub errors come in many types
        raise DownloadError(f"could not reach the Hugging Face hub for {s.hub_id} ({str(e).splitlines()[0][:200]}). "
                            f"Without a network: {missing_message(s)}") from None
    lfs = {}
    for sib in info.siblings or []:
        meta = getattr(sib, "lfs", None)
        sha = meta.get("sha256") if isinstance(meta, dict) else getattr(meta, "sha256", None)
        lfs[sib.rfilename] = sha
    weights = next((w for w in ("model.safetensors", "pytorch_model.bin") if w in lfs), None)
    if weights is None or "config.json" not in lfs:
        raise DownloadError(f"hub model {s.hub_id} has no config.json + model.safetensors/pytorch_model.bin")
    wanted = ["config.json", weights] + [f for f in ("preprocessor_config.json",) if f in lfs]
    final = models_dir() / s.folder
    tmpdir = final.with_name(f".{final.name}.part-{uuid.uuid4().hex[:8]}")
    tmpdir.mkdir(parents=True)
    try:
        for i, fname in enumerate(wanted):
            try:
                got = hub.hf_hub_download(s.hub_id, fname, cache_dir=str(models_dir() / ".hub"))
            except Exception as e:
                raise DownloadError(f"could not download {fname} of {s.hub_id} "
                                    f"({str(e).splitlines()[0][:200]}); nothing was kept") from None
            digest = sha256_file(got)
            _check_digest(digest, lfs.get(fname), f"{s.hub_id}/{fname}")
            shutil.copyfile(got, tmpdir / fname)
            if progress:
                progress(i + 1, len(wanted))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmpdir, final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return final


def fetch(name: str, download: bool = False, progress: Callable | None = None) -> Path:
    """The local path of a published model's weights; downloads only when ``download=True``.

    Offline (or without ``download``) a missing model raises :class:`MissingWeightsError`
    saying which file to put where."""
    s = spec(name)
    found = s.find()
    if found is not None:
        return found
    if not download:
        raise MissingWeightsError(missing_message(s))
    if s.hub_id:
        return _fetch_hub(s, progress)
    if not s.files[0].url:
        raise MissingWeightsError(missing_message(s))
    for src in s.files:
        if src.url and not (models_dir() / src.filename).is_file():
            download_url(src.url, models_dir() / src.filename, src.sha256, progress)
    return s.find() or models_dir() / s.files[0].filename

"""Downloads, only when asked (``download=True``, ``ganatomy fetch NAME``, the dashboard's
*Download* button): streamed to a temporary file, verified, and renamed into place, so an
interrupted or corrupt download never becomes a model. Nothing downloads at import.

What is trusted, and how:

- **Transport**: https only (plain http only from this machine: a local mirror); a file:// URL
  is a local copy.
- **Content**: a download is kept only if its full SHA-256 matches. Where the catalog knows the
  full digest, that is the check. Where it knows only a prefix (the 8 hex digits ``torch.hub``
  file names carry: all the ProGAN LSUN authors published) or nothing (BigGAN's configs), the
  download is refused unless the caller gives the full digest (``sha256=``) or accepts the
  source on first use (``trust=True``; CLI ``--trust``; the dashboard's confirmation box). A
  trusted download still has to match the known prefix; its full digest is then pinned in
  ``models_dir()/pins.json`` and every later download of that URL must match it exactly.
- The file itself is then loaded like any other: ``weights_only``, the size pre-flight, finite
  weights (:mod:`core.base.checkpoints`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

from core.base.cache import atomic_write_text
from core.base.errors import DownloadError, InputError, MissingWeightsError
from core.base.packages import require
from core.models.catalog import Spec, missing_message, models_dir, spec

__all__ = ["sha256_file", "download_url", "fetch", "check_url", "pins", "is_full_digest", "unverified"]


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LOCAL = ("127.0.0.1", "localhost", "::1")
_PIN_LOCK = threading.Lock()


def is_full_digest(d: str | None) -> bool:
    return isinstance(d, str) and bool(_HEX64.match(d.lower()))


def check_url(url: str) -> str:
    """``url`` if it may be downloaded from: https, plain http only from this machine, or file://."""
    u = urllib.parse.urlparse(str(url))
    if u.scheme == "https" or u.scheme == "file" or (u.scheme == "http" and u.hostname in _LOCAL):
        return url
    raise DownloadError(f"download from {url!r} refused: only https URLs are downloaded (plain http only "
                        "from this machine, a local mirror); use the https address, or download the file "
                        "yourself and put it where the Models page says")


def _pins_file() -> Path:
    return models_dir() / "pins.json"


def pins() -> dict[str, str]:
    """URL -> full SHA-256 of every download accepted on first use (``trust=True``)."""
    try:
        data = json.loads(_pins_file().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if is_full_digest(v)} if isinstance(data, dict) else {}


def _pin(url: str, digest: str) -> None:
    with _PIN_LOCK:
        data = pins()
        data[url] = digest
        atomic_write_text(_pins_file(), json.dumps(data, indent=1, sort_keys=True))


def _check_digest(digest: str, expected: str | None, what: str) -> None:
    if expected and not digest.startswith(expected.lower()):
        raise DownloadError(f"checksum mismatch for {what}: expected SHA-256 {expected}"
                            f"{'' if is_full_digest(expected) else '…'}, got {digest}; "
                            "the download was discarded (try again, or fetch the file yourself)")


def _expected(url: str, known: str | None, sha256: str | None, trust: bool) -> tuple[str | None, bool]:
    """(the digest to check, whether to pin the result): refuses before any byte is fetched
    when the full digest is unknown and the caller has not accepted the source."""
    if sha256 is not None:
        if not is_full_digest(sha256):
            raise InputError(f"sha256 must be the full 64-hex-digit SHA-256 of the file, got {sha256!r}; "
                             "copy it from the model's publisher (sha256sum FILE)")
        if known and not sha256.lower().startswith(known.lower()):
            raise InputError(f"sha256 {sha256} does not start with the digest the catalog knows for {url} "
                             f"({known}); check the digest you were given")
        return sha256.lower(), False
    if is_full_digest(known):
        return known.lower(), False
    pinned = pins().get(url)
    if pinned:
        return pinned, False
    if not trust:
        what = f"only the first {len(known)} hex digits of its SHA-256 ({known})" if known else "no SHA-256 for it"
        raise DownloadError(f"download of {url} refused: the catalog knows {what}, so the file could not be "
                            "verified. Give its full digest (sha256=...; CLI --sha256), or accept this source "
                            "on first use (trust=True; CLI --trust; the dashboard's confirmation box): the full "
                            "digest is then pinned and later downloads must match it")
    return known, True


def download_url(url: str, dest, sha256: str | None = None, progress: Callable | None = None,
                 timeout: float = 60.0, *, trust: bool = False) -> Path:
    """Download ``url`` to ``dest`` atomically, kept only if its SHA-256 matches.

    ``sha256``: the full digest, or the prefix a catalog knows. With a prefix or none, the
    download is refused unless ``trust`` (accept on first use; the full digest is then pinned
    for this URL) or a digest is already pinned. The full digest is recorded in
    ``<dest>.sha256`` (``sha256sum`` format)."""
    check_url(url)
    expected, pin = _expected(url, sha256, None, trust) if not is_full_digest(sha256) else (sha256.lower(), False)
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
        _check_digest(digest, expected, url)
        os.replace(tmp, dest)
        if pin:
            _pin(url, digest)
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


def unverified(name: str) -> str | None:
    """Why a download of published model ``name`` needs the caller's trust (``trust=True`` or a
    full ``sha256``): what the catalog knows of its files' digests; None when every file it
    would download has a full or pinned digest (hub models: the hub's LFS digests)."""
    s = spec(name)
    if s.hub_id:
        return None
    pinned = pins()
    weak = [src for src in s.files if src.url and not is_full_digest(src.sha256) and src.url not in pinned]
    if not weak:
        return None
    parts = [f"{src.filename}: " + (f"only the first {len(src.sha256)} hex digits of its SHA-256 ({src.sha256})"
                                    if src.sha256 else "no SHA-256") for src in weak]
    return "the catalog knows " + "; ".join(parts)


def fetch(name: str, download: bool = False, progress: Callable | None = None, *, trust: bool = False,
          sha256: str | None = None) -> Path:
    """The local path of a published model's weights; downloads only when ``download=True``.

    Offline (or without ``download``) a missing model raises :class:`MissingWeightsError`
    saying which file to put where. ``sha256`` (the weights file's full digest) or ``trust``
    (accept the source on first use) are needed where the catalog does not know the full digest
    (see the module's docstring); both are checked before any byte is fetched."""
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
    todo = [(i, src) for i, src in enumerate(s.files) if src.url and not (models_dir() / src.filename).is_file()]
    plan = []
    for i, src in todo:                   # every file's transport and digest, before the first byte
        check_url(src.url)
        plan.append((src, *_expected(src.url, src.sha256, sha256 if i == 0 else None, trust)))
    for src, expected, _pin_it in plan:
        download_url(src.url, models_dir() / src.filename, expected, progress, trust=trust)
    return s.find() or models_dir() / s.files[0].filename

"""A cache you can trust (issue 18, part 3).

Every entry carries checksums; a damaged entry of any kind is moved aside and computed again,
never served and never a crash; writers racing for one key both succeed and every read is one
whole entry; a cache that cannot be written still returns the result, with one warning; what
killed runs leave behind is cleaned up.
"""
from __future__ import annotations

import errno
import hashlib
import importlib
import io
import json
import os
import pathlib
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.base import cache, errors
from core.engine.dissection import dissect
from tests.planted import ColorSegmenter, PlantedGenerator

ROOT = Path(__file__).resolve().parents[1]
KIND = "trust"

# a result whose wrong-but-loadable forms would be visible: labels, IoU per label, the layers
TRUTH = {"labels": ["sky", "door", "window", "roof", "tree"], "iou": np.array([0.5, 0.25, 0.125, 0.0625, 0.03125]),
         "layers": ["layer3", "layer4"]}


def encode(r):
    return ({"labels": np.array(r["labels"]), "iou": np.asarray(r["iou"])},
            {"layers": r["layers"], "n": len(r["labels"])})


def decode(arrays, meta):
    return {"labels": arrays["labels"].tolist(), "iou": arrays["iou"], "layers": list(meta["layers"])}


def same(a, b):
    return a["labels"] == b["labels"] and np.array_equal(a["iou"], b["iou"]) and a["layers"] == b["layers"]


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return {"labels": list(TRUTH["labels"]), "iou": TRUTH["iou"].copy(), "layers": list(TRUTH["layers"])}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def rewrite_npz(d: Path, change) -> None:
    with np.load(d / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    (d / "arrays.npz").write_bytes(npz_bytes(**change(arrays)))


def rewrite_meta(d: Path, change) -> None:
    (d / "meta.json").write_text(json.dumps(change(json.loads((d / "meta.json").read_text()))))


class RunsCode:
    """Pickles to a call of Path.touch(marker): loading it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def pickled_with_valid_checksum(d: Path, key: str) -> None:
    """An entry whose checksums are right but whose arrays hold a pickle (a planted file)."""
    buf = io.BytesIO()
    np.savez(buf, labels=np.array([RunsCode(str(d.parent.parent / "ran"))], dtype=object), iou=TRUTH["iou"])
    files = {"arrays.npz": buf.getvalue(), "meta.json": (d / "meta.json").read_bytes()}
    (d / "arrays.npz").write_bytes(files["arrays.npz"])
    (d / "manifest.json").write_bytes(cache._manifest(KIND, key, files))


def other_key(d: Path, key: str) -> None:
    """A whole, checksummed entry of another key copied under this one."""
    cache.save(KIND, "other", {"labels": np.array(["x"]), "iou": np.ones(1)}, {"layers": ["l"], "n": 1})
    for name in ("arrays.npz", "meta.json", "manifest.json"):
        (d / name).write_bytes((d.parent / "other" / name).read_bytes())


def entry_is_file(d: Path, key: str) -> None:
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
    d.write_bytes(b"not a folder")


def empty_folder(d: Path, key: str) -> None:
    for p in d.iterdir():
        p.unlink()


CORRUPTIONS = {
    "arrays-deleted": lambda d, k: (d / "arrays.npz").unlink(),
    "meta-deleted": lambda d, k: (d / "meta.json").unlink(),
    "manifest-deleted": lambda d, k: (d / "manifest.json").unlink(),
    "npz-truncated": lambda d, k: (d / "arrays.npz").write_bytes((d / "arrays.npz").read_bytes()[:300]),
    "npz-junk": lambda d, k: (d / "arrays.npz").write_bytes(os.urandom(2048)),
    "npz-key-renamed": lambda d, k: rewrite_npz(d, lambda a: {"names": a["labels"], "iou": a["iou"]}),
    "npz-labels-reversed": lambda d, k: rewrite_npz(d, lambda a: {**a, "labels": a["labels"][::-1]}),
    "npz-nan-iou": lambda d, k: rewrite_npz(d, lambda a: {**a, "iou": np.where(np.arange(5) == 1, np.nan, a["iou"])}),
    "npz-shortened": lambda d, k: rewrite_npz(d, lambda a: {**a, "iou": a["iou"][:-1]}),
    "npz-pickle": lambda d, k: rewrite_npz(d, lambda a: {**a, "labels": np.array([RunsCode(str(d / "ran"))],
                                                                                  dtype=object)}),
    "npz-pickle-valid-checksum": pickled_with_valid_checksum,
    "meta-junk": lambda d, k: (d / "meta.json").write_bytes(b"{ half"),
    "meta-layers-changed": lambda d, k: rewrite_meta(d, lambda m: {**m, "layers": ["layer1"]}),
    "meta-a-list": lambda d, k: (d / "meta.json").write_text(json.dumps([1, 2, 3])),
    "manifest-junk": lambda d, k: (d / "manifest.json").write_bytes(b"\x00\xff junk"),
    "manifest-checksum-altered": lambda d, k: (d / "manifest.json").write_text(
        (d / "manifest.json").read_text().replace('"meta.json": "', '"meta.json": "0')),
    "manifest-of-another-key": other_key,
    "entry-is-a-file": entry_is_file,
    "entry-is-an-empty-folder": empty_folder,
}


def snapshot(d: Path):
    return {p.name: p.read_bytes() for p in d.iterdir()} if d.is_dir() else d.read_bytes() if d.exists() else None


def test_an_entry_is_three_files_with_checksums(root):
    key = cache.make_key(kind=KIND, x=1)
    cache.cached(KIND, key, Counter(), encode, decode)
    d = root / KIND / key
    assert sorted(p.name for p in d.iterdir()) == ["arrays.npz", "manifest.json", "meta.json"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["format"] == cache.FORMAT == 2 and manifest["kind"] == KIND and manifest["key"] == key
    for name in ("arrays.npz", "meta.json"):
        assert manifest["sha256"][name] == hashlib.sha256((d / name).read_bytes()).hexdigest()
    with np.load(d / "arrays.npz", allow_pickle=False) as z:          # still a plain npz any tool can read
        assert z["labels"].tolist() == TRUTH["labels"]
    assert json.loads((d / "meta.json").read_text()) == {"layers": TRUTH["layers"], "n": 5}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_damaged_entry_is_recomputed_never_served_never_a_crash(root, how):
    key, compute = cache.make_key(kind=KIND, how=how), Counter()
    assert same(cache.cached(KIND, key, compute, encode, decode), TRUTH) and compute.calls == 1
    d = root / KIND / key
    before = snapshot(d)
    CORRUPTIONS[how](d, key)
    assert snapshot(d) != before                                      # the corruption changed the entry
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = cache.cached(KIND, key, compute, encode, decode)
    assert compute.calls == 2 and same(got, TRUTH)                    # computed again, the right result
    assert [w.category for w in caught] == [cache.CacheWarning], [str(w.message) for w in caught]
    assert str(d) in str(caught[0].message) and "moved it to" in str(caught[0].message)
    assert not (d / "ran").exists() and not (root / "ran").exists()   # no pickle ran
    moved = [p for p in (root / cache.QUARANTINE).iterdir() if p.name != ".lock"]
    assert len(moved) == 1 and moved[0].name.startswith(f"{KIND}-{key}-")
    with warnings.catch_warnings():                                   # the new entry is whole: a plain hit
        warnings.simplefilter("error")
        assert same(cache.cached(KIND, key, compute, encode, decode), TRUTH) and compute.calls == 2
    assert sorted(p.name for p in (root / KIND).iterdir() if p.name != "other") == [key]


def test_an_entry_of_the_first_format_without_checksums_is_recomputed(root):
    key, compute = "k" * 24, Counter()
    d = root / KIND / key
    d.mkdir(parents=True)                                             # what GANatomy wrote before checksums
    arrays, meta = encode(compute())
    np.savez(d / "arrays.npz", **arrays)
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(cache.CacheWarning, match="no manifest.json"):
        assert same(cache.cached(KIND, key, compute, encode, decode), TRUTH)
    assert compute.calls == 2 and (d / "manifest.json").exists()


def test_an_entry_decode_cannot_read_is_recomputed(root):
    """A whole, checksummed entry of an older layout (decode raises KeyError 'labels')."""
    key, compute = "a" * 24, Counter()
    cache.save(KIND, key, {"names": np.array(TRUTH["labels"]), "iou": TRUTH["iou"]}, {"layers": TRUTH["layers"]})
    with pytest.warns(cache.CacheWarning, match="cannot be decoded .KeyError"):
        assert cache.cached(KIND, key, compute, encode, decode, cached_only=True) is None
    assert compute.calls == 0 and cache.load(KIND, key) is None       # moved aside, nothing computed
    cache.save(KIND, key, {"names": np.array(TRUTH["labels"]), "iou": TRUTH["iou"]}, {"layers": TRUTH["layers"]})
    with pytest.warns(cache.CacheWarning, match="cannot be decoded"):
        assert same(cache.cached(KIND, key, compute, encode, decode), TRUTH)
    assert compute.calls == 1 and same(decode(*cache.load(KIND, key)), TRUTH)


def test_lookup_is_cached_without_the_compute(root):
    """For callers that save on their own (dissect: one entry per layer)."""
    key = "c" * 24
    assert cache.lookup(KIND, key, decode) is None
    cache.save(KIND, key, *encode(Counter()()))
    assert same(cache.lookup(KIND, key, decode), TRUTH)
    with pytest.warns(cache.CacheWarning, match="cannot be decoded .KeyError"):
        assert cache.lookup(KIND, key, lambda arrays, meta: arrays["ref_iou"]) is None
    assert cache.load(KIND, key) is None                                # moved aside
    cache.save(KIND, key, {"a": np.ones(1)}, {})
    assert cache.lookup(KIND, key, lambda arrays, meta: None) is None   # a decoded None is returned as is
    assert cache.load(KIND, key) is not None


def test_the_first_complete_entry_wins_and_both_saves_succeed(root):
    a = cache.save(KIND, "key", {"a": np.zeros(3)}, {"writer": 0})
    b = cache.save(KIND, "key", {"a": np.ones(3)}, {"writer": 1})
    assert a == b == root / KIND / "key"
    arrays, meta = cache.load(KIND, "key")
    assert meta == {"writer": 0} and np.array_equal(arrays["a"], np.zeros(3))
    assert [p.name for p in (root / KIND).iterdir()] == ["key"]


# ----------------------------------------------------------------------------- racing writers

@pytest.fixture
def stress(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("stress_cache")


def test_two_processes_racing_on_one_key_never_fail_and_read_whole_entries(stress):
    """The small version of benchmarks/stress_cache.py (2 processes x 300 saves per phase)."""
    method = "fork" if "fork" in stress.mp.get_all_start_methods() else "spawn"
    report = stress.run(n=40, procs=2, start_method=method)
    for phase, p in report["phases"].items():
        assert p["failures"] == 0, (phase, p["failure_examples"])
        assert p["inconsistent_reads"] == 0 and p["missing_reads"] == 0, (phase, p)
        assert p["rounds_with_different_winners"] == 0 and p["temporaries_left"] == 0, (phase, p)
        assert p["saves"] == 80 and p["reads"] >= 80, (phase, p)
    assert report["phases"]["damaged_keys"]["warnings"] >= 40        # each planted entry was reported


@pytest.mark.parametrize("phase", ["one_key", "fresh_keys", "damaged_keys"])
def test_threads_racing_on_one_key_never_fail_and_read_whole_entries(root, stress, phase):
    n, threads, results = 25, 4, {}
    barrier = threading.Barrier(threads)
    with warnings.catch_warnings():                                   # one catcher: threads must not nest them
        warnings.simplefilter("ignore")
        ts = [threading.Thread(target=lambda w=w: results.__setitem__(
            w, stress.worker(phase, w, n, str(root), barrier, record_warnings=False))) for w in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    for w, r in results.items():
        assert r["failures"] == [] and r["inconsistent"] == 0 and r["missing"] == 0, (w, r["failures"][:1])
        assert r["saves"] == n
    if phase != "one_key":
        for i, winners in enumerate(zip(*(results[w]["winners"] for w in range(threads)), strict=True)):
            assert len(set(winners)) == 1, (i, winners)                # every thread read the same entry
    assert not [p for p in (root / stress.KIND).iterdir() if p.name.startswith(".tmp-")]


# ----------------------------------------------------------------------------- a cache that cannot be written

def fail_with(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("how", ["read-only", "full", "not-a-folder", "chmod"])
def test_a_cache_that_cannot_be_written_still_returns_the_result_with_one_warning(root, monkeypatch, how):
    if how == "read-only":
        monkeypatch.setattr(cache.os, "mkdir", fail_with(errno.EROFS))
    elif how == "full":
        monkeypatch.setattr(cache, "_write_bytes", fail_with(errno.ENOSPC))
    elif how == "not-a-folder":
        root.parent.mkdir(parents=True, exist_ok=True)
        (root.parent / "afile").write_text("x")
        monkeypatch.setenv("GANATOMY_CACHE", str(root.parent / "afile" / "cache"))
        root = root.parent / "afile" / "cache"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder; 'read-only' simulates it")
        root.mkdir(parents=True)
        root.chmod(0o555)
    compute = Counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = cache.cached(KIND, "k" * 24, compute, encode, decode)
        assert same(got, TRUTH) and compute.calls == 1
        assert [w.category for w in caught] == [cache.CacheWarning], [str(w.message) for w in caught]
        msg = str(caught[0].message)
        assert str(root) in msg and "set GANATOMY_CACHE to a writable folder" in msg and "returned" in msg
        with pytest.raises(errors.CacheError, match="set GANATOMY_CACHE to a writable folder") as info:
            cache.save(KIND, "k" * 24, *encode(got), strict=True)
        assert isinstance(info.value, OSError) and str(root) in str(info.value)
    finally:
        if how == "chmod":
            root.chmod(0o755)
    if root.is_dir() and (root / KIND).is_dir():
        assert not list((root / KIND).iterdir())                      # no half entry, no temporary left


def test_a_dissection_into_a_read_only_cache_returns_its_result(root, monkeypatch):
    G, seg = PlantedGenerator(), ColorSegmenter()
    G.cache_key, seg.cache_key = "planted-v1", "color-segmenter-v1"
    monkeypatch.setattr(cache.os, "rename", fail_with(errno.EROFS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = dissect(G, seg, "units", 16, seed=2)
    assert res.iou("units").shape[0] > 0 and not res.meta["cached"]
    assert [w.category for w in caught] == [cache.CacheWarning] and str(root) in str(caught[0].message)


def test_a_damaged_entry_in_a_read_only_cache_is_ignored_not_served(root, monkeypatch):
    key, compute = "b" * 24, Counter()
    cache.cached(KIND, key, compute, encode, decode)
    rewrite_npz(root / KIND / key, lambda a: {**a, "labels": a["labels"][::-1]})
    monkeypatch.setattr(cache.os, "rename", fail_with(errno.EROFS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert same(cache.cached(KIND, key, compute, encode, decode), TRUTH)
    assert compute.calls == 2 and caught and all(w.category is cache.CacheWarning for w in caught)
    assert "could not be moved aside" in str(caught[0].message)


# ----------------------------------------------------------------------------- what killed runs leave

def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_temporaries_of_killed_runs_are_removed_by_the_next_save(root):
    kind = root / KIND
    old, live = kind / ".tmp-deadbeef-1-aaaa", kind / ".tmp-deadbeef-2-bbbb"
    for d in (old, live):
        d.mkdir(parents=True)
        (d / "arrays.npz").write_bytes(b"half")
    age(old, cache.STALE_SECONDS + 60)
    age(live, 5)                                                      # a writer at work right now: kept
    cache.save(KIND, "key", {"a": np.ones(2)}, {})
    assert sorted(p.name for p in kind.iterdir()) == [live.name, "key"]


def test_part_files_of_killed_runs_are_removed_by_the_next_atomic_write(tmp_path):
    p = tmp_path / "flags" / "x.json"
    p.parent.mkdir()
    old, live = p.parent / ".x.json.part-1-aaaa", p.parent / ".y.json.part-2-bbbb"
    old.write_text("half")
    live.write_text("half")
    age(old, cache.STALE_SECONDS + 60)
    cache.atomic_write_text(p, "{}")
    assert sorted(f.name for f in p.parent.iterdir()) == [live.name, "x.json"]


def test_the_quarantine_keeps_only_the_newest_entries(root, monkeypatch):
    monkeypatch.setattr(cache, "QUARANTINE_KEEP", 2)
    for i in range(4):
        d = root / KIND / f"key{i}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text("{ half")
        with pytest.warns(cache.CacheWarning):
            assert cache.load(KIND, f"key{i}") is None
    kept = sorted(p.name.split("-")[1] for p in (root / cache.QUARANTINE).iterdir() if p.name != ".lock")
    assert kept == ["key2", "key3"]


# ----------------------------------------------------------------------------- arguments

def test_bad_arguments_are_refused_before_anything_is_written(root):
    with pytest.raises(errors.InputError, match="kind '../x' is not a plain folder name"):
        cache.cached("../x", "k", Counter(), encode, decode)
    with pytest.raises(errors.ArgumentTypeError, match="key must be a string"):
        cache.load(KIND, 123)
    with pytest.raises(errors.ArgumentTypeError, match="array 'labels' holds Python objects"):
        cache.save(KIND, "k", {"labels": np.array([object()], dtype=object)}, {})
    with pytest.raises(errors.ArgumentTypeError, match="compute must be callable"):
        cache.cached(KIND, "k", None, encode, decode)
    with pytest.raises(errors.ArgumentTypeError, match="make_key part 'model'"):
        cache.make_key(model=object())
    with pytest.raises(errors.ArgumentTypeError, match="make_key part 'z'"):
        cache.make_key(z=np.arange(5000))
    assert not root.exists()
    # keys of ordinary parts are unchanged by the checks (existing entries keep their keys)
    assert cache.make_key(kind="t", x=1) == hashlib.sha256(
        json.dumps({"kind": "t", "x": 1}, sort_keys=True).encode()).hexdigest()[:24]


def test_array_names_numpy_would_refuse_are_stored(root):
    """``np.savez(file, **arrays)`` cannot take an array called 'file' or 'allow_pickle'."""
    cache.save(KIND, "k", {"file": np.ones(2), "allow_pickle": np.zeros(1)}, {})
    arrays, _ = cache.load(KIND, "k")
    assert sorted(arrays) == ["allow_pickle", "file"]
    with zipfile.ZipFile(root / KIND / "k" / "arrays.npz") as z:
        assert sorted(z.namelist()) == ["allow_pickle.npy", "file.npy"]

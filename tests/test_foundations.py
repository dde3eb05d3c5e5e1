"""The floors' shared pieces: the error family, the one cache path, the architecture registry and
the public API (every name the code and the README show exists)."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

import core
from core.base import cache, errors
from core.base.validate import check_units, concept_index
from core.models import registry as archs

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("cls, builtin", [
    (errors.InputError, ValueError), (errors.UnknownNameError, ValueError), (errors.UnitIndexError, IndexError),
    (errors.ArgumentTypeError, TypeError), (errors.ProtocolError, TypeError), (errors.CheckpointError, ValueError),
    (errors.MissingWeightsError, errors.CheckpointError), (errors.MissingPackageError, errors.CheckpointError),
    (errors.DownloadError, errors.CheckpointError), (errors.BudgetError, MemoryError), (errors.CacheError, OSError)])
def test_every_error_is_a_ganatomy_error_and_the_builtin_callers_expect(cls, builtin):
    e = cls("layer9 does not exist", fix="pick one of layer1..layer8")
    assert isinstance(e, errors.GanatomyError) and isinstance(e, builtin)
    assert str(e) == "layer9 does not exist (pick one of layer1..layer8)" and e.fix == "pick one of layer1..layer8"
    assert str(cls("no fix")) == "no fix" and cls("no fix").fix == ""
    assert getattr(core, cls.__name__) is cls


def test_core_refuses_only_through_the_error_family():
    """No bare ValueError / TypeError / IndexError / KeyError is raised on purpose in core: the
    dashboard tells refusals (shown with their fix) from bugs by type."""
    found = []
    for p in (ROOT / "core").rglob("*.py"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"raise (ValueError|TypeError|IndexError|KeyError)\(", line):
                found.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


def test_unit_and_concept_checks_name_the_argument_and_the_range():
    assert check_units(np.array([3, 1]), 8, "layer4") == [3, 1]
    assert check_units(torch.tensor([0, 7]), 8, "layer4") == [0, 7]
    with pytest.raises(errors.UnitIndexError,
                       match=r"\[8\] out of range for layer 'layer4' with 8 units \(valid: 0..7\)"):
        check_units([2, 8], 8, "layer4")
    with pytest.raises(errors.InputError, match="empty"):
        check_units([], 8, "layer4")
    with pytest.raises(errors.InputError, match="whole numbers"):
        check_units([1.5], 8, "layer4")
    with pytest.raises(errors.InputError, match="integers"):
        check_units(["abc"], 8, "layer4")

    class Seg:
        labels = ["-", "sky", "door"]
    assert concept_index(Seg(), "door") == 2 and concept_index(Seg(), 1) == 1
    for bad in ("-", 0, 3, "roof", True):
        with pytest.raises(errors.UnknownNameError, match="the segmenter knows: sky, door"):
            concept_index(Seg(), bad)


# ----------------------------------------------------------------------------- the one cache path

def test_cached_computes_once_and_returns_the_stored_result(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return np.arange(5.0) * len(calls)

    enc = lambda a: ({"a": a}, {"n": len(a)})                       # noqa: E731
    dec = lambda arrays, meta: arrays["a"]                         # noqa: E731
    key = cache.make_key(kind="t", x=1)
    assert cache.cached("t", key, compute, enc, dec, cached_only=True) is None and calls == []
    first = cache.cached("t", key, compute, enc, dec)
    again = cache.cached("t", key, compute, enc, dec)
    assert calls == [1] and np.array_equal(first, again) and np.array_equal(again, np.arange(5.0))
    assert np.array_equal(cache.cached("t", key, compute, enc, dec, cached_only=True), first)
    # no identity (a model that cannot be fingerprinted) or cache off: compute every time, store nothing
    cache.cached("t", None, compute, enc, dec)
    cache.cached("t", cache.make_key(kind="t", x=2), compute, enc, dec, enabled=False)
    assert len(calls) == 3 and sorted(p.name for p in (tmp_path / "t").iterdir()) == [key]


def test_measure_keys_by_models_and_parts_and_its_codecs_round_trip(tmp_path, monkeypatch):
    """cache.measure, every measurement's one cache path: the models' fingerprints and the parts make
    the key (the same key make_key gives by hand, so shipped entries stay found); a model without a
    fingerprint computes every time and stores nothing; tables and arrays come back as they went."""
    import pandas as pd
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    model = torch.nn.Linear(2, 2)
    calls = []

    def table():
        calls.append(1)
        df = pd.DataFrame({"ranking": ["ace", "iou"], "n": [1, 20], "removed": [0.25, float("nan")]})
        df.attrs.update(seconds=1.5, stored=False)
        return df

    got = cache.measure("t", "v1", models={"generator": model}, parts={"x": 1}, compute=table,
                        codec=cache.FrameCodec())
    again = cache.measure("t", "v1", models={"generator": model}, parts={"x": 1}, compute=table,
                          codec=cache.FrameCodec())
    assert calls == [1] and not got.attrs["stored"] and again.attrs == {"seconds": 1.5, "stored": True}
    pd.testing.assert_frame_equal(again, got, check_dtype=False)
    key = cache.make_key(kind="t", version="v1", generator=cache.model_fingerprint(model), x=1)
    assert [p.name for p in (tmp_path / "t").iterdir()] == [key]
    assert cache.measure("t", "v1", models={"generator": model}, parts={"x": 2}, compute=table,
                         codec=cache.FrameCodec(), cached_only=True) is None
    k = cache.measure("k", "v1", models={"generator": model}, parts={}, compute=lambda: torch.arange(3.0),
                      codec=cache.ArrayCodec("k", as_tensor=True))
    back = cache.measure("k", "v1", models={"generator": model}, parts={}, compute=lambda: None,
                         codec=cache.ArrayCodec("k", as_tensor=True))
    assert isinstance(back, torch.Tensor) and torch.equal(back, k)
    # no fingerprint (an object that is not a model): computed each time, never stored
    opaque = object()
    for _ in range(2):
        cache.measure("o", "v1", models={"generator": opaque}, parts={}, compute=table, codec=cache.FrameCodec())
    assert len(calls) == 3 and not (tmp_path / "o").exists()
    with pytest.raises(errors.ArgumentTypeError, match="cache"):
        cache.measure("t", "v1", models={}, parts={}, compute=table, codec=cache.FrameCodec(), cache="yes")
    with pytest.raises(errors.ArgumentTypeError, match="codec"):
        cache.measure("t", "v1", models={}, parts={}, compute=table, codec=dict)


def test_racing_writers_of_one_key_never_crash_and_leave_one_whole_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    key, failures = "k" * 24, []

    def write(i):
        try:
            for _ in range(10):
                cache.save("race", key, {"a": np.full(1000, 7.0)}, {"writer": "any"})
        except Exception as e:           # noqa: BLE001 - any crash is the failure under test
            failures.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    arrays, meta = cache.load("race", key)
    assert np.array_equal(arrays["a"], np.full(1000, 7.0)) and meta == {"writer": "any"}
    assert [p.name for p in (tmp_path / "race").iterdir()] == [key]        # no temporary left behind


def test_an_entry_that_does_not_load_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    d = tmp_path / "x" / "key"
    d.mkdir(parents=True)
    (d / "meta.json").write_text("{ half")
    assert cache.load("x", "key") is None
    cache.save("x", "key", {"a": np.ones(2)}, {})
    assert np.array_equal(cache.load("x", "key")[0]["a"], np.ones(2))


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    p = tmp_path / "sub" / "flags.json"
    cache.atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with cache.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old" and [f.name for f in p.parent.iterdir()] == ["flags.json"]
    cache.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"


def test_real_scene_statistics_are_keyed_by_the_feature_network(tmp_path, monkeypatch):
    """Two feature networks never share cached real-scene statistics (they were keyed by scene
    and size only, so a second network read the first one's numbers)."""
    from core.studies import evaluation
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    torch.manual_seed(0)

    class Feats(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 4)

        def forward(self, images):
            return self.lin(images.mean((2, 3)))

    a, b = Feats(), Feats()
    mu_a, cov_a = evaluation.scene_stats(a, "town", 32, n=20, seed=3)
    mu_b, _ = evaluation.scene_stats(b, "town", 32, n=20, seed=3)
    assert not np.allclose(mu_a, mu_b)
    st = evaluation.real_stats(a, ["town"], 20, seed=3, size=32)
    assert np.allclose(mu_a, st.mean_cov()[0]) and np.allclose(cov_a, st.mean_cov()[1])
    assert len(list((tmp_path / "real_stats").iterdir())) == 2
    again, _ = evaluation.scene_stats(a, "town", 32, n=20, seed=3)
    assert np.array_equal(again, mu_a)


# ----------------------------------------------------------------------------- architecture registry

def test_a_new_architecture_registers_once_and_loads_by_path(tmp_path):
    """Adding an architecture is one register_architecture call: detected from a file's keys,
    loaded by path and by core.load_generator, its options checked."""
    class Tiny(torch.nn.Module):
        z_dim = 4

        def __init__(self, scale=1.0):
            super().__init__()
            self.tinygan_w = torch.nn.Parameter(torch.ones(3, 4))
            self.scale = scale

        def forward(self, z):
            return torch.tanh(self.scale * (z @ self.tinygan_w.T))[:, :, None, None].expand(-1, 3, 8, 8)

    def load(path, state, scale=1.0):
        m = Tiny(scale)
        m.load_state_dict(state)
        return m

    try:
        archs.register_architecture("tinygan", "generator", load, lambda keys: "tinygan_w" in keys,
                                    options=("scale",))
        path = tmp_path / "tiny.pt"
        torch.save(Tiny().state_dict(), path)
        assert archs.detect_arch(torch.load(path, weights_only=True)) == "tinygan"
        G = core.load_generator(str(path), scale=2.0)
        assert isinstance(G, Tiny) and G.arch == "tinygan" and G.scale == 2.0 and G.source == str(path)
        core.check_generator(G)
        with pytest.raises(errors.ArgumentTypeError, match="tinygan generators take no option truncation"):
            core.load_generator(str(path), truncation=0.5)
        with pytest.raises(errors.ArgumentTypeError, match="already a fallback"):
            archs.register_architecture("other", "generator", load, fallback=True)
    finally:
        archs._ARCHS.pop("tinygan", None)
    assert set(archs.architectures("generator")) == {"progan", "stylegan2", "biggan", "dcgan"}
    assert list(archs.architectures("segmenter")) == ["segformer"]
    with pytest.raises(errors.UnknownNameError,
                       match="unknown arch 'mygan'; known: biggan, dcgan, progan, segformer, stylegan2"):
        archs.kind_of("mygan")


def test_every_published_model_names_a_registered_architecture():
    names = set(archs.architectures())
    assert {s.arch for s in core.models.PUBLISHED.values()} <= names
    assert sum(s.arch == "progan" for s in core.models.PUBLISHED.values()) == 7


# ----------------------------------------------------------------------------- the public API

def test_the_public_api_is_importable_from_the_top():
    from core.engine import causal, dissection, intervention
    assert core.dissect is dissection.dissect and core.Dissection is dissection.Dissection
    assert core.Edit is intervention.Edit and core.generate is intervention.generate
    assert core.insertion_constants is intervention.insertion_constants and core.ace is causal.ace
    for name in core.__all__:
        assert getattr(core, name) is not None, name


def _references(text: str) -> set[str]:
    return {m.group(0) for m in re.finditer(r"\bcore(?:\.[A-Za-z_]\w*)+", text)
            if not m.group(0).endswith((".py", ".pt", ".json", ".md"))}


def _resolves(name: str) -> bool:
    parts, obj = name.split("."), core
    for i, part in enumerate(parts[1:], 1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def test_every_name_the_docstrings_and_the_readme_show_exists():
    files = [*(ROOT / "core").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py"), *(ROOT / "scripts").glob("*.py"),
             *(ROOT / "benchmarks").glob("*.py"),
             ROOT / "README.md", ROOT / "docs" / "ARCHITECTURE.md", ROOT / "docs" / "findings.md",
             ROOT / "docs" / "usage.md"]
    missing = {}
    for f in files:
        for name in _references(f.read_text()):
            if not name.startswith("core.load_") or name in ("core.load_generator", "core.load_segmenter",
                                                            "core.load_features", "core.load_checkpoint"):
                if not _resolves(name):
                    missing.setdefault(name, []).append(str(f.relative_to(ROOT)))
    assert not missing, f"names that do not exist: {missing}"


def test_the_console_command_is_the_cli_and_no_script_edits_sys_path():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, fn = meta["project"]["scripts"]["ganatomy"].partition(":")
    assert getattr(importlib.import_module(module), fn) is core.cli.main
    out = subprocess.run([sys.executable, "-m", "core", "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ganatomy" in out.stdout and "dissect" in out.stdout
    edits = [str(p.relative_to(ROOT)) for d in ("scripts", "benchmarks", "dashboard", "core")
             for p in (ROOT / d).rglob("*.py") if "sys.path.insert" in p.read_text()]
    assert not edits, edits

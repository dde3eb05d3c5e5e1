"""Models that misbehave at run time (issue #33): a generator that returns NaN for some codes is
stopped with an error naming the model and the samples, in dissection (nothing cached) and in
every edit (What-if, Paint); a model whose code changes under the same class name and weights
never reuses the results of the old code."""
from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

import core
from core.base import cache
from core.base.sampling import z_range
from tests.hostile import write_user_gan
from tests.planted import ColorSegmenter, PlantedGenerator


class NaNForSome(PlantedGenerator):
    """The planted generator, but NaN (from layer 'units' on) for codes whose first value is > 1.5."""

    def forward(self, z):
        out = super().forward(z)
        bad = (z[:, 0] > 1.5).view(-1, 1, 1, 1)
        return torch.where(bad, torch.full_like(out, float("nan")), out)


def test_a_generator_that_returns_nan_for_some_codes_is_stopped_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    G = NaNForSome()
    z = z_range(0, 0, 64, G.z_dim)
    bad = torch.nonzero(z[:, 0] > 1.5).view(-1).tolist()
    assert bad and bad[0] < 64                                  # the probe's fixed codes may miss them
    core.check_generator(G)
    layer = core.hooks.layer_names(G)[0]
    with pytest.raises(core.ProtocolError) as e:
        core.dissect(G, ColorSegmenter(), [layer], 64, seed=0, batch_size=8)
    msg = str(e.value)
    assert "returned NaN or inf" in msg and f"samples {bad[0]}" in msg and "seed 0" in msg and "NaNForSome" in msg
    assert not list((tmp_path / "cache").rglob("manifest.json"))          # nothing cached
    with pytest.raises(core.ProtocolError, match=r"images \d+.* of the batch"):
        core.generate(G, z[bad[0]:bad[0] + 2])
    edit = core.Edit(layer, [0], "ablate", None, torch.ones(4, 4))
    with pytest.raises(core.ProtocolError, match="returned NaN or inf"):
        core.generate(G, z[bad[0]:bad[0] + 1], [edit])
    ok = torch.nonzero(z[:, 0] <= 1.5).view(-1)[:4]
    assert torch.isfinite(core.generate(G, z[ok], [edit])).all()          # the other codes still work


def test_changed_code_under_the_same_class_name_and_weights_gets_a_new_key(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    src = tmp_path / "usergan.py"

    def write(scale):
        write_user_gan(src, scale)

    write(1.0)
    import usergan
    torch.manual_seed(0)
    a = usergan.UserGAN()
    key_a = cache.model_fingerprint(a)
    same = usergan.UserGAN()
    same.load_state_dict(a.state_dict())
    assert cache.model_fingerprint(same) == key_a and ":code-" in key_a      # same code, same weights: same key
    write(2.0)                                      # the forward is fixed, the class name and weights stay
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))        # (a second write can share a timestamp)
    importlib.reload(usergan)
    b = usergan.UserGAN()
    b.load_state_dict(a.state_dict())
    assert cache.weights_hash(a) == cache.weights_hash(b)
    assert cache.model_fingerprint(b) != key_a
    assert cache.code_hash(core.load_generator("toyworld/town")) == ""   # GANatomy's own classes: versioned
    sys.modules.pop("usergan", None)


def test_a_registry_that_cannot_be_written_leaves_no_orphan_file(tmp_path, monkeypatch):
    from core.models import catalog
    from core.userdata import models as registry
    monkeypatch.setenv("GANATOMY_MODELS", str(tmp_path / "models"))
    torch.save(core.ProGAN(8, (8, 4)).state_dict(), tmp_path / "g.pt")

    def full_disk(data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(registry, "_write_registry", full_disk)
    with pytest.raises(core.CacheError, match="could not be registered.*No space left on device.*nothing was added"):
        catalog.add_upload((tmp_path / "g.pt").read_bytes(), "g.pt", "lab/g")
    up = tmp_path / "models" / "uploads"
    assert list(up.iterdir()) == []
    assert catalog.user_models() == {}


def test_a_quarantine_that_links_outside_the_cache_is_never_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    outside = tmp_path / "precious"
    outside.mkdir()
    for i in range(cache.QUARANTINE_KEEP + 5):
        (outside / f"thesis-{i}.tex").write_text("work")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / cache.QUARANTINE).symlink_to(outside)
    d = tmp_path / "cache" / "dissect" / "k"
    d.mkdir(parents=True)
    state, err = cache._move_aside(d, "dissect", "k", os.lstat(d).st_ino)
    assert state == "failed" and "is a link" in str(err)
    assert len(list(outside.iterdir())) == cache.QUARANTINE_KEEP + 5 and d.exists()


def test_a_forward_that_returns_no_images_is_refused_in_what_if(tmp_path, monkeypatch):
    """What-if (core.generate) checks what the model returned before drawing it: a tuple, one
    channel or a wrong count is a ProtocolError naming the model, never an AttributeError."""
    from core.base.protocols import check_finite

    class Tuple(PlantedGenerator):
        def forward(self, z):
            return (super().forward(z),)

    class Gray(PlantedGenerator):
        def forward(self, z):
            return super().forward(z)[:, :1]
    for G in (Tuple(), Gray()):
        with pytest.raises(core.ProtocolError, match=rf"generator {type(G).__name__} returned .*N x 3 x H x W"):
            core.generate(G, torch.zeros(2, 16))
    images = PlantedGenerator()(torch.zeros(3, 16))
    with pytest.raises(core.ProtocolError, match="for 4 codes"):
        check_finite(PlantedGenerator(), images, indices=range(4))
    check_finite(PlantedGenerator(), images, indices=range(3))


def test_a_full_disk_on_a_flag_write_is_a_clear_error(tmp_path, monkeypatch):
    from core.userdata import flags
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    flags.flag_units("lab/x", "layer4", [3], "fp", by="ann")

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(flags, "atomic_write_text", full)
    with pytest.raises(core.CacheError, match="cannot be written.*No space left on device.*nothing changed"):
        flags.flag_units("lab/x", "layer4", [5], "fp", by="ann")
    assert flags.load_flags("lab/x", "layer4", "fp") == [3]


class RaisesForSome(PlantedGenerator):
    """The planted generator, but its forward raises for codes whose first value is > 1.5."""

    def forward(self, z):
        if bool((z[:, 0] > 1.5).any()):
            raise RuntimeError("a user's model failed here")
        return super().forward(z)


class SizeChanges(PlantedGenerator):
    """Draws a batch at half size when its first code's second value is positive."""

    def forward(self, z):
        out = super().forward(z)
        return torch.nn.functional.interpolate(out, scale_factor=0.5) if float(z[0, 1]) > 0 else out


def test_a_forward_that_raises_or_changes_size_is_the_models_error_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    G = RaisesForSome()
    layer = core.hooks.layer_names(G)[0]
    z = z_range(0, 0, 64, G.z_dim)
    first_bad = int(torch.nonzero(z[:, 0] > 1.5).view(-1)[0])
    with pytest.raises(core.ProtocolError) as e:
        core.dissect(G, ColorSegmenter(), [layer], 64, seed=0, batch_size=8)
    msg = str(e.value)
    start = first_bad // 8 * 8
    assert "RaisesForSome" in msg and f"samples {start}..{start + 7} of seed 0" in msg
    assert "a user's model failed here" in msg and e.value.fix and isinstance(e.value.__cause__, RuntimeError)
    assert not list((tmp_path / "cache").rglob("manifest.json"))          # nothing cached
    with pytest.raises(core.ProtocolError, match="RuntimeError: a user's model failed here"):
        core.generate(G, z[first_bad:first_bad + 1])
    S = SizeChanges()
    firsts = z_range(0, 0, 32, G.z_dim)[::8, 1]
    assert bool((firsts > 0).any()) and bool((firsts <= 0).any())      # the batches of one pass differ
    with pytest.raises(core.ProtocolError, match="one pass needs one size"):
        core.dissect(S, ColorSegmenter(), [layer], 32, seed=0, batch_size=8, cache=False)

"""Bad-input cases of issue 18, "names belong to someone": model names added by register /
add_upload, unregister without confirmation, flag files (paths, layers, unit lists), and the
counts of unit FID and repair. Cases that need a registry run in a sandbox: a fresh temporary
models folder and cache, so nothing touches the real ones."""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import core
from core import models as published
from core.engine import repair
from core.userdata.flags import flag_units, load_flags, save_flags, stale_flags, unflag_units
from tests.badcases.common import Case, environ, town

OWNER = {"kind": "generator", "arch": "progan", "path": "/nowhere/church.pt", "options": {},
         "added_by": "ann", "added_at": "2025-01-01T12:00:00+00:00"}


@contextlib.contextmanager
def _sandbox(taken: bool = True):
    """A temporary models folder (with 'lab/church' added by ann when ``taken``) and cache."""
    tmp = Path(tempfile.mkdtemp(prefix="ganatomy-names-"))
    try:
        with environ(GANATOMY_MODELS=str(tmp / "models"), GANATOMY_CACHE=str(tmp / "cache")):
            if taken:
                (tmp / "models").mkdir()
                (tmp / "models" / "registry.json").write_text(json.dumps({"lab/church": OWNER}))
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def boxed(fn, taken: bool = True):
    def call():
        with _sandbox(taken) as tmp:
            return fn(tmp)
    return call


def truncated_upload(tmp: Path):
    torch.save(core.ProGAN(32, (16, 8)).state_dict(), tmp / "g.pt")
    return published.add_upload((tmp / "g.pt").read_bytes()[:500], "my-church.pt", "lab/new")


LONG = "lab/" + "x" * 200


def FEATS(images):      # never called: every case is refused first
    return torch.zeros(len(images), 8)


REAL = (np.zeros(8), np.eye(8))


def ufid(layer="layer4", real=REAL, **kw):
    return lambda: repair.unit_fid(town(), layer, FEATS, real, **kw)


def cufid(**kw):
    return lambda: repair.unit_fid(town(), "layer4", FEATS, REAL, cache=False, **kw)


def rtable(units, **kw):
    return lambda: repair.repair_table(town(), "layer4", FEATS, REAL, units, **kw)


def flags(fn=save_flags, model="toyworld/town", layer="layer4", *a, **kw):
    return boxed(lambda tmp: fn(model, layer, *a, **kw), taken=False)


E, U, T, C = core.InputError, core.UnitIndexError, core.ArgumentTypeError, core.CheckpointError

CASES = [
    # ------------------------------------------------------------------ register / add_upload: names
    Case("register:name-too-long", lambda: published.register(LONG, "/nowhere/g.pt"), E,
         ("model name", "204 characters", "at most 100"), "choose a shorter name"),
    Case("register:name-traversal", lambda: published.register("../../etc/x", "/nowhere/g.pt"), E,
         ("model name", "'../../etc/x'"), "lab/church-v2"),
    Case("register:name-dotdot-part", lambda: published.register("lab/..", "/nowhere/g.pt"), E,
         ("model name", "'lab/..'"), "lab/church-v2"),
    Case("register:name-empty", lambda: published.register("", "/nowhere/g.pt"), E,
         ("model name", "empty"), "lab/church-v2"),
    Case("register:name-not-a-string", lambda: published.register(42, "/nowhere/g.pt"), T,
         ("model name", "int"), "lab/church-v2"),
    Case("register:built-in-name", lambda: published.register("progan/churchoutdoor", "/nowhere/g.pt"), E,
         ("'progan/churchoutdoor'", "built-in"), "choose another name"),
    Case("register:toyworld-name", lambda: published.register("toyworld/town", "/nowhere/g.pt"), E,
         ("'toyworld/town'", "built-in"), "choose another name"),
    Case("register:taken-name", boxed(lambda tmp: published.register("lab/church", "/nowhere/g.pt")), E,
         ("'lab/church'", "added by ann", "2025-01-01T12:00:00+00:00"), "replace=True"),
    Case("register:replace-not-bool", lambda: published.register("lab/x", "/nowhere/g.pt", replace="yes"), T,
         ("replace", "'yes'"), "replace=True"),
    Case("register:added_by-not-a-string", lambda: published.register("lab/x", "/nowhere/g.pt", added_by=3), T,
         ("added_by",), "added_by='your name'"),
    Case("register:added_by-too-long", lambda: published.register("lab/x", "/nowhere/g.pt", added_by="a" * 500),
         E, ("added_by", "500 characters"), "shorter display name"),
    Case("register:empty-path", lambda: published.register("lab/x", ""), C, ("path", "''"),
         "give the path of a weights file"),
    Case("register:missing-path", boxed(lambda tmp: published.register("lab/x", tmp / "none.pt"), taken=False),
         C, ("none.pt", "does not exist"), "give the path of a weights file"),
    Case("register:options-not-a-dict", lambda: published.register("lab/x", "/nowhere/g.pt", options=[1]), T,
         ("options", "list"), "options={"),
    Case("add_upload:name-too-long", lambda: published.add_upload(b"x", "g.pt", LONG), E,
         ("model name", "at most 100"), "choose a shorter name"),
    Case("add_upload:name-traversal", lambda: published.add_upload(b"x", "g.pt", "../x"), E,
         ("model name", "'../x'"), "lab/church-v2"),
    Case("add_upload:name-with-backslash", lambda: published.add_upload(b"x", "g.pt", "lab\\..\\x"), E,
         ("model name",), "lab/church-v2"),
    Case("add_upload:built-in-name", lambda: published.add_upload(b"x", "g.pt", "stylegan2/ffhq"), E,
         ("'stylegan2/ffhq'", "built-in"), "choose another name"),
    Case("add_upload:taken-name", boxed(lambda tmp: published.add_upload(b"junk", "church2.pt", "lab/church")), E,
         ("'lab/church'", "added by ann"), "replace=True"),
    Case("add_upload:replace-not-bool", lambda: published.add_upload(b"x", "g.pt", "lab/x", replace=1), T,
         ("replace",), "replace=True"),
    # ------------------------------------------------------------------ add_upload: files
    Case("add_upload:bad-suffix", lambda: published.add_upload(b"x", "church.exe", "lab/x"), C,
         ("'church.exe'",), ".safetensors"),
    Case("add_upload:no-suffix", lambda: published.add_upload(b"x", "weights", "lab/x"), C,
         ("'weights'",), ".safetensors"),
    Case("add_upload:empty-data", lambda: published.add_upload(b"", "church.pt", "lab/x"), C,
         ("'church.pt'", "0 bytes"), "upload the file again"),
    Case("add_upload:data-not-bytes", lambda: published.add_upload("PK...", "church.pt", "lab/x"), T,
         ("data", "'church.pt'", "str"), "read_bytes()"),
    Case("add_upload:filename-not-a-string", lambda: published.add_upload(b"x", None, "lab/x"), T,
         ("filename", "NoneType"), "church.pt"),
    Case("add_upload:truncated-names-the-users-file", boxed(truncated_upload, taken=False), C,
         ("my-church.pt", "truncated"), "save it again"),
    # ------------------------------------------------------------------ unregister
    Case("unregister:not-confirmed", boxed(lambda tmp: published.unregister("lab/church")), E,
         ("'lab/church'", "added by ann", "not confirmed"), "confirm='lab/church'"),
    Case("unregister:wrong-confirmation", boxed(lambda tmp: published.unregister("lab/church", confirm="lab/x")),
         E, ("'lab/church'", "confirm='lab/x'"), "confirm='lab/church'"),
    Case("unregister:unknown-name", boxed(lambda tmp: published.unregister("lab/none", confirm="lab/none")),
         core.UnknownNameError, ("'lab/none'", "lab/church"), "one of those"),
    Case("unregister:built-in", lambda: published.unregister("toyworld/town", confirm="toyworld/town"), E,
         ("'toyworld/town'", "built-in"), "register() or add_upload()"),
    Case("unregister:not-a-string", lambda: published.unregister(["lab/x"]), T, ("model name", "list"),
         "confirm='lab/x'"),
    # ------------------------------------------------------------------ flags: paths and names
    Case("save_flags:layer-traversal", flags(save_flags, "toyworld/town", "../../../x", [1]), E,
         ("layer", "'../../../x'"), "layer4"),
    Case("load_flags:layer-traversal", flags(load_flags, "toyworld/town", "../../x"), E,
         ("layer", "'../../x'"), "layer4"),
    Case("stale_flags:layer-with-slash", flags(stale_flags, "toyworld/town", "a/b", "ProGAN:1"), E,
         ("layer", "'a/b'"), "layer4"),
    Case("flag_units:layer-empty", flags(flag_units, "toyworld/town", "", [1]), E, ("layer", "''"),
         "layer4"),
    Case("save_flags:layer-too-long", flags(save_flags, "toyworld/town", "l" * 300, [1]), E,
         ("layer", "at most 200"), "layer4"),
    Case("save_flags:layer-not-a-string", flags(save_flags, "toyworld/town", 4, [1]), E,
         ("layer", "4"), "layer4"),
    Case("save_flags:model-not-a-string", flags(save_flags, None, "layer4", [1]), E, ("model", "None"),
         "toyworld/town"),
    Case("load_flags:model-empty", flags(load_flags, "", "layer4"), E, ("model", "''"), "toyworld/town"),
    Case("save_flags:fingerprint-not-a-string", flags(save_flags, "toyworld/town", "layer4", [1], 5), E,
         ("fingerprint", "int"), "model_fingerprint"),
    Case("save_flags:by-not-a-string", flags(add=[1], by=7), E, ("by", "int"), "by='ann'"),
    # ------------------------------------------------------------------ flags: unit lists
    Case("save_flags:unit-string", flags(add=["3"]), E, ("add", "'3'"), "list of integers"),
    Case("save_flags:unit-fraction", flags(add=[1.7]), E, ("add", "1.7"), "list of integers"),
    Case("save_flags:unit-nan", flags(remove=[float("nan")]), E, ("remove", "nan"), "list of integers"),
    Case("save_flags:unit-negative", flags(add=[-1]), U, ("add", "-1", "'layer4'"), "0..n-1"),
    Case("save_flags:unit-out-of-range", flags(add=[600], n_units=512), U, ("add", "600", "512 units"),
         "within 0..511"),
    Case("save_flags:units-a-string", flags(units="3,5"), E, ("units", "str"), "list of integers"),
    Case("save_flags:units-a-dict", flags(units={3: True}), E, ("units", "dict"), "list of integers"),
    Case("save_flags:whole-set-and-changes", flags(units=[1], add=[2]), E, ("units", "add / remove"),
         "add=[...]"),
    Case("save_flags:add-and-remove-same", flags(add=[2], remove=[2]), E, ("[2]", "add and remove"),
         "in add or in remove"),
    Case("save_flags:n_units-zero", flags(add=[1], n_units=0), E, ("n_units", "0"), "number of units"),
    Case("flag_units:bool-unit", flags(flag_units, "toyworld/town", "layer4", [True]), E,
         ("units", "True"), "list of integers"),
    Case("unflag_units:unit-fraction", flags(unflag_units, "toyworld/town", "layer4", [2.5]), E,
         ("units", "2.5"), "list of integers"),
    # ------------------------------------------------------------------ unit FID: counts, before any pass
    Case("unit_fid:n_samples-zero", ufid(n_samples=0, top=2), E, ("n_samples", "got 0"), "n_samples=20000"),
    Case("unit_fid:n_samples-negative", ufid(n_samples=-1, top=2), E, ("n_samples", "-1"), "n_samples=20000"),
    Case("unit_fid:n_samples-huge", ufid(n_samples=10 ** 12), E, ("n_samples", "1,000,000"), "n_samples=20000"),
    Case("unit_fid:n_samples-fraction", ufid(n_samples=100.5, top=2), E, ("n_samples", "100.5"),
         "n_samples=20000"),
    Case("unit_fid:top-zero", ufid(n_samples=100, top=0), E, ("top", "got 0"), "top=1000"),
    Case("unit_fid:top-above-n_samples", ufid(n_samples=100, top=500), E, ("n_samples (100)", "top (500)"),
         "raise n_samples"),
    Case("unit_fid:batch_size-zero", ufid(n_samples=100, top=10, batch_size=0), E, ("batch_size", "got 0"),
         "batch_size=100"),
    Case("unit_fid:layer-traversal", ufid(layer="../x", n_samples=100, top=10), core.UnknownNameError,
         ("'../x'",), "available layers"),
    Case("unit_fid:real-mismatched", ufid(n_samples=100, top=10, real=(np.zeros(4), np.eye(3))), E,
         ("real", "(4,)", "(3, 3)"), "feature statistics"),
    Case("unit_fid:real-nan", ufid(n_samples=100, top=10, real=(np.full(8, np.nan), np.eye(8))), E,
         ("real", "NaN"), "feature statistics"),
    Case("unit_fid:cached-n_samples-zero", cufid(n_samples=0, top=2), E, ("n_samples",), "n_samples=20000"),
    Case("unit_fid:cached-top-one", cufid(n_samples=100, top=1), E, ("top", "got 1"), "top=1000"),
    Case("unit_fid:cached-seed-negative", cufid(n_samples=100, top=10, seed=-3), E, ("seed", "-3"), "seed=0"),
    # ------------------------------------------------------------------ repair: units and counts, before any pass
    Case("repair_table:units-empty", rtable([]), E, ("units", "empty"), "flag at least one unit"),
    Case("repair_table:units-none", rtable(None), E, ("units", "empty"), "flag at least one unit"),
    Case("repair_table:unit-string", rtable(["a"]), E, ("units", "'a'"), "list of integers"),
    Case("repair_table:unit-fraction", rtable([1.7]), E, ("units", "1.7"), "list of integers"),
    Case("repair_table:unit-nan", rtable([float("nan")]), E, ("units", "nan"), "list of integers"),
    Case("repair_table:unit-negative", rtable([-2]), U, ("units", "-2", "'layer4'"), "0..n-1"),
    Case("repair_table:unit-out-of-range", rtable([9999], n_units=512), U, ("units", "9999", "512 units"),
         "within 0..511"),
    Case("repair_table:unit-out-of-range-probed", rtable([9999]), U, ("units", "9999", "'layer4'"), "within 0..",
         work=True),
    Case("repair_table:n_candidates-zero", rtable([1], n_candidates=0), E, ("n_candidates", "got 0"),
         "n_candidates=10000"),
    Case("repair_table:n_candidates-huge", rtable([1], n_candidates=10 ** 9), E, ("n_candidates", "1,000,000"),
         "n_candidates=10000"),
    Case("repair_table:n_eval-negative", rtable([1], n_eval=-1), E, ("n_eval", "-1"), "n_eval=1000"),
    Case("repair_table:random_draws-zero", rtable([1], random_draws=0), E, ("random_draws", "got 0"),
         "random_draws=3"),
    Case("repair_table:n_units-fraction", rtable([1], n_units=2.5), E, ("n_units", "2.5"), "number of units"),
]

"""Every public entry point follows its model's device.

The models live on the CPU while the process's *default* device is ``meta`` (``torch.device`` as
a context manager): a tensor created anywhere in core without naming its device lands on the meta
device, where it cannot meet the model's tensors nor give back a number, so the entry point fails.
Passing here means each tensor follows its inputs or names its device, as it must on a GPU server
(where the default device stays the CPU and the models live on ``cuda``). A second test scans the
source for tensor factories that name no device."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core.engine import causal
from core.studies import context as ctx
from core.studies import evaluation, over_seeds, paint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models():
    G = core.load_generator("toyworld/town")
    seg = core.load_segmenter("toyworld")
    feats = core.load_features("toyworld")
    return G, seg, feats


def _on_meta(fn, *args, **kwargs):
    with torch.device("meta"):
        return fn(*args, **kwargs)


def test_the_default_device_trap_catches_an_unplaced_tensor(models):
    G, _, _ = models

    def careless(z):
        return G(z) + torch.zeros(1, 3, 1, 1)           # names no device

    z = torch.randn(2, G.z_dim)
    with pytest.raises((RuntimeError, NotImplementedError)):
        _on_meta(lambda: careless(z).sum().item())


def test_engine_entry_points_follow_the_model(models):
    G, seg, feats = models
    z = core.sampling.z_range(0, 0, 2, G.z_dim)
    res = _on_meta(core.dissect, G, seg, ["layer4", "layer6"], 8, batch_size=4, cache=False)
    assert np.isfinite(res.iou("layer4")).all() and res.units("layer4").shape[0] == 256
    k = _on_meta(core.insertion_constants, G, seg, "layer4", "door", n_samples=4, batch_size=4)
    assert np.isfinite(np.asarray(k)).all()
    mask = np.zeros((8, 8), np.float32)
    mask[3:5, 3:5] = 1
    edits = [core.Edit("layer4", [1, 2, 3], "insert", 2.0, mask), core.Edit("layer6", [4], "ablate")]
    img = _on_meta(core.generate, G, z, edits)
    assert img.device.type == "cpu" and torch.isfinite(img).all()
    eff = _on_meta(core.causal_effect, G, seg, "layer4", [1, 2], "door", 1.0, n_samples=4, batch_size=2)
    assert np.isfinite(eff["ace"])
    a = _on_meta(core.ace, G, seg, "layer4", "tree", n_steps=2, pool_size=4, dissect_samples=4)
    assert np.isfinite(a.alpha).all()
    a2 = _on_meta(core.ace, G, seg, "layer4", "tree", n_steps=2, pool_size=4, init="uniform", sampling="image")
    assert np.isfinite(a2.alpha).all()
    curve = _on_meta(core.ablation_curve, G, seg, "layer4", "tree", {"a": [1, 2, 3]}, counts=(1, 3), n_samples=4)
    assert curve.removed.notna().all()
    rows = _on_meta(core.context_study, G, seg, "layer4", [1, 2, 3], 2.0, "door", n_images=2, batch_size=2)
    assert len(rows)
    scales = _on_meta(causal.channel_scales, G, ["layer4", "layer6"], n_samples=4, batch_size=4)
    assert all(torch.isfinite(v).all() for v in scales.values())
    table, emap = _on_meta(core.trace_effect, G, core.Edit("layer4", [1, 2], "ablate"), z)
    assert np.isfinite(emap).all()
    rt = _on_meta(over_seeds.removal_table, {"town": G}, seg, "layer4", ["tree"], n_units=3, ace_steps=2,
                  n_samples=2, pool_size=4, init="uniform")
    assert rt.removed_percent.notna().all()


def test_repair_and_studies_follow_the_model(models):
    G, seg, feats = models
    real = _on_meta(evaluation.real_stats, feats, ["town"], 8, seed=1, batch=4).mean_cov()
    uf = _on_meta(core.unit_fid, G, "layer4", feats, real, n_samples=8, top=2, batch_size=4)
    assert np.isfinite(uf.fid).all()
    table, _ = _on_meta(core.repair_table, G, "layer4", feats, real, [1, 2], n_candidates=8, n_eval=4,
                        random_draws=1, batch_size=4)
    assert table.fid.notna().all()
    patches = _on_meta(evaluation.real_patches, "town", n=4, batch=4)
    q = _on_meta(evaluation.generator_quality, G, feats, real, patches, n=8, batch=4, n_swd=4)
    assert np.isfinite(q["fid"]) and np.isfinite(q["ms_swd"]["avg"])
    conf = _on_meta(evaluation.segmentation_confusion, seg, ["town"], n_per_scene=2)
    assert conf.sum() > 0
    classify = ctx.toyworld_classes(seg.labels)
    rows = _on_meta(core.context_study, G, seg, "layer4", [1, 2], 2.0, "door", n_images=2, batch_size=2,
                    classify=classify)
    assert len(rows)
    cells = paint.stroke_coverage(np.pad(np.ones((8, 8, 4), np.uint8) * 255, ((0, 56), (0, 56), (0, 0))), (8, 8))
    edits = paint.paint_edits("layer4", [1, 2], "add", np.ones(256), cells, 2.0)
    img = _on_meta(core.generate, G, core.sampling.z_range(0, 0, 1, G.z_dim), edits)
    assert torch.isfinite(img).all()
    strips = _on_meta(core.outputs.visualize.unit_strips, G, "layer4", [1, 5], np.zeros(2), np.arange(6).reshape(2, 3),
                      0, 2)
    assert sorted(strips) == [1, 5] and strips[1].dtype == np.uint8
    hist = _on_meta(core.outputs.visualize.activation_histograms, G, "layer4", n_samples=4, batch_size=4)
    assert hist[0].sum() == 4 * 8 * 8 * 256


def test_bases_follow_the_model(models):
    """Fitting, dissecting, editing, ACE and the splice in a learned basis (issue #19)."""
    from core.engine import bases
    G, seg, feats = models
    x = _on_meta(bases.layer_activations, G, "layer4", 4, batch_size=4)
    sae = _on_meta(bases.train_sae, x, 64, steps=3, batch_size=64)
    pca = _on_meta(bases.pca_basis, x)
    for b in (sae, pca):
        res = _on_meta(core.dissect, G, seg, ["layer4"], 4, batch_size=4, cache=False, basis=b)
        assert np.isfinite(res.iou("layer4")).all() and len(res.units("layer4")) == b.n_features
        img = _on_meta(core.generate, G, core.sampling.z_range(0, 0, 2, G.z_dim),
                       [core.Edit("layer4", [1, 2], "insert", 2.0, basis=b)])
        assert torch.isfinite(img).all()
    a = _on_meta(core.ace, G, seg, "layer4", "tree", n_steps=2, pool_size=4, dissect_samples=4, basis=sae)
    assert np.isfinite(a.alpha).all() and a.alpha.shape == (64,)
    k = _on_meta(core.insertion_constants, G, seg, "layer4", "door", n_samples=4, batch_size=4, basis=sae)
    assert k.shape == (64,)
    h = _on_meta(bases.basis_health, sae, x)
    assert np.isfinite(h["fvu"])
    img = _on_meta(bases.Spliced(G, "layer4", sae), core.sampling.z_range(0, 0, 2, G.z_dim))
    assert torch.isfinite(img).all()


# ----------------------------------------------------------------------------- the source scan

FACTORIES = {"zeros", "ones", "empty", "full", "arange", "linspace", "logspace", "tensor", "as_tensor", "rand",
             "randn", "randint", "randperm", "eye", "from_numpy"}

# Where core makes tensors on the CPU on purpose, and why. Anywhere else a tensor follows its
# inputs (``device=x.device``, ``*_like``) or the model (``device_of(model)``).
CPU_BY_DESIGN = {
    "core/engine/importance.py": "the variants' zeroing masks are built on the CPU and moved a chunk at a time; "
                                 "predictions, margins and balanced accuracies are CPU bookkeeping",
    "core/engine/omissions.py": "statistics read back from the cache are CPU tensors (moved to the images when "
                                "they accumulate); the label map is CPU bookkeeping",
    "core/studies/importance.py": "scene labels beside the CPU-rendered scenes",
    "core/studies/paint_real.py": "an uploaded photo is decoded on the CPU, and a scene read back from the cache "
                                  "is CPU tensors; invert_real moves both to the generator",
    "core/studies/probes.py": "probe images and their labels are rendered on the CPU (as toyworld renders); the "
                              "classifier dissection moves each batch to the model",
    "core/base/cache.py": "a result read back from the cache is a CPU tensor; its caller moves it",
    "core/toyworld.py": "the procedural world renders on the CPU; callers move the scenes",
    "core/base/sampling.py": "latent codes are drawn on the CPU so that sample i is the same on every device",
    "core/engine/tally.py": "finalisation (thresholds, I/H, labels) runs once per layer on float64 CPU copies; "
                            "interpolation matrices are built there and moved",
    "core/engine/dissection.py": "finalisation on the CPU; the pixel totals are CPU bookkeeping",
    "core/engine/causal/context.py": "sample numbers and per-position results of the context study are CPU "
                                     "bookkeeping",
    "core/engine/causal/locations.py": "sample numbers of ACE's location pool are CPU bookkeeping",
    "core/engine/swd.py": "seeded draws from a CPU generator (the same on every device), moved to the images",
    "core/training/loop.py": "labels beside the CPU-rendered training scenes",
    "core/base/validate.py": "argument checks read the caller's numbers on the CPU; the computation moves them",
    "core/studies/context.py": "context classes are read from CPU copies of the segmentations",
    "core/studies/evaluation.py": "a blur kernel built once and moved to the images",
    "core/studies/inversion.py": "a stored gallery's label maps are counted from numpy on the CPU (bookkeeping "
                                 "of a few scenes)",
    "core/studies/paint.py": "a drawing's coverage of the featuremap grid: numpy in, numpy out",
    "core/studies/image_folder.py": "a folder's images are decoded on the CPU (as toyworld renders); the split's "
                                    "permutation is seeded on the CPU so it is the same on every machine",
    "core/engine/rewrite.py": "users' masks become grid coverage on the CPU (moved to the featuremaps); a "
                              "rewrite's deltas are stored float32 on the CPU, so a model made from them is the "
                              "same in memory and reloaded",
    "core/studies/rewrite_rules.py": "choosing a request's regions reads the pool's segmentation as numpy on the CPU",
    "core/engine/bases.py": "a basis is stored and read back on the CPU and moved with Basis.to(); training "
                            "draws its shuffles from a seeded CPU generator (the same on every device)",
}
# Functions that build a module's buffers: they follow the device the module is built on.
BUILD_TIME = {("core/models/stylegan2.py", "_fir_kernel")}


def _violations(root=ROOT):
    out = []
    for path in sorted((root / "core").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text())
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and node.func.attr in FACTORIES):
                continue
            up, in_init = node, False
            while up in parents:
                up = parents[up]
                if isinstance(up, ast.FunctionDef) and (up.name == "__init__" or (rel, up.name) in BUILD_TIME):
                    in_init = True          # a module's parameters and buffers follow where it is built
                    break
            if in_init:
                continue
            kw = {k.arg: k.value for k in node.keywords}
            moved = isinstance(parents.get(node), ast.Attribute) and parents[node].attr == "to"
            if node.func.attr == "from_numpy":
                fixed = not moved
            elif "device" not in kw:
                fixed = None                 # names no device: follows whatever the default is
            else:
                d = kw["device"]
                fixed = isinstance(d, ast.Constant) and d.value == "cpu" and not moved   # on the CPU, then moved: fine
            if fixed is None:
                out.append(f"{rel}:{node.lineno}: torch.{node.func.attr}(...) names no device")
            elif fixed and rel not in CPU_BY_DESIGN:
                out.append(f"{rel}:{node.lineno}: torch.{node.func.attr}(...) on the CPU outside the places "
                           "that compute there by design")
    return sorted(out)


def test_every_tensor_in_core_names_its_device():
    bad = _violations()
    assert not bad, "\n".join(bad)


def test_the_scan_can_fail(tmp_path, monkeypatch):
    """The scan sees an unplaced factory and a fixed CPU one (a planted file under a core/ of its own: never
    in the repository's, where a parallel worker's scan would see it)."""
    planted = tmp_path / "core" / "_planted_device_scan.py"
    planted.parent.mkdir()
    planted.write_text("import torch\n\ndef f(x):\n    return x + torch.zeros(3) + torch.ones(3, device='cpu')\n")
    bad = [v for v in _violations(tmp_path) if "_planted_device_scan" in v]
    assert len(bad) == 2 and any("names no device" in b for b in bad) and any("by design" in b for b in bad)

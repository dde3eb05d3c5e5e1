"""Unit importance of classifiers (issue #36, PNAS 2020): a planted classifier against brute force, curves, cache,
bad input, the toyworld scene classifier and the CLI."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from core.base.errors import GanatomyError, InputError, ProtocolError, UnknownNameError
from core.engine.importance import UnitImportance, balanced_accuracy, unit_importance

K, U, S = 3, 5, 4          # planted classes, units (units 3 and 4 feed nothing), image side


class Planted(nn.Module):
    """Unit k = relu(channel k) (k < 3), units 3, 4 = relu(-channel 0), relu(-channel 1): no logit reads them.
    Logit k = 2 mean(unit k) - 1 for k < 3 and a constant 0 ("background", never a label): class k depends on
    unit k alone, and with unit k zeroed its images fall to the background."""

    def __init__(self, skip: bool = False):
        super().__init__()
        self.input_size = S
        self.skip = skip
        self.units = nn.Sequential(nn.Conv2d(3, U, 1, bias=False), nn.ReLU())
        w = torch.zeros(U, 3)
        w[0, 0] = w[1, 1] = w[2, 2] = 1
        w[3, 0] = w[4, 1] = -1
        self.fc = nn.Linear(U, K + 1)
        fc = torch.zeros(K + 1, U)
        fc[torch.arange(K), torch.arange(K)] = 2
        b = torch.tensor([-1.0, -1.0, -1.0, 0.0])
        with torch.no_grad():
            self.units[0].weight.copy_(w.view(U, 3, 1, 1))
            self.fc.weight.copy_(fc)
            self.fc.bias.copy_(b)

    def forward(self, x):
        out = self.fc(self.units(x).mean((2, 3)))
        if self.skip:                           # an earlier tensor used after the layer: the suffix path cannot run
            out = out + 0 * x.mean((1, 2, 3)).unsqueeze(1)
        return out


def planted_data(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    images = -torch.rand(n, 3, S, S, generator=g) * 0.5 - 0.5            # every channel negative
    images[torch.arange(n), labels] = torch.rand(n, S, S, generator=g) * 0.5 + 0.5   # the class's channel bright
    return images, labels


def brute_force(model, images, labels, units_zeroed):
    """Balanced accuracy per class (numpy), on a deep copy of the model whose conv rows are zeroed."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for u in units_zeroed:
            m.units[0].weight[u] = 0
        pred = m(images).argmax(1).numpy()
    y = labels.numpy()
    out = []
    for k in range(K + 1):
        pos, neg = y == k, y != k
        rec = (pred[pos] == k).mean() if pos.any() else np.nan
        tnr = (pred[neg] != k).mean() if neg.any() else np.nan
        out.append((rec + tnr) / 2)
    return np.array(out)


def test_balanced_accuracy_by_hand():
    pred = torch.tensor([0, 0, 1, 1, 2])
    labels = torch.tensor([0, 1, 1, 1, 2])
    ba = balanced_accuracy(pred, labels, 4)
    # class 0: recall 1/1, TNR 3/4; class 1: recall 2/3, TNR 2/2; class 2: 1, 1; class 3: no images
    np.testing.assert_allclose(ba[:3], [(1 + 0.75) / 2, (2 / 3 + 1) / 2, 1.0])
    assert np.isnan(ba[3])
    two = balanced_accuracy(torch.stack([pred, labels]), labels, 4)       # variants on a leading axis
    np.testing.assert_allclose(two[1, :3], [1, 1, 1])


@pytest.mark.parametrize("skip", [False, True])
def test_planted_units_against_brute_force(skip):
    model = Planted(skip).eval()
    images, labels = planted_data()
    res = unit_importance(model, "units", images, labels, top_n=3, draws=3, batch_size=7, cache=False)
    assert res.meta["path"] == ("full" if skip else "suffix")
    np.testing.assert_array_equal(res.base[:K], [1, 1, 1])
    assert np.isnan(res.base[K])                                          # the background has no images
    for u in range(U):
        np.testing.assert_array_equal(res.ablated[u], brute_force(model, images, labels, [u]))
    for k in range(K):                     # zeroing unit k destroys class k (to chance) and nothing else
        expect = np.ones(K)
        expect[k] = 0.5
        np.testing.assert_array_equal(res.ablated[k, :K], expect)
        assert res.ranking(k)[0] == k
        assert res.drop[k, k] == 0.5 and np.all(res.drop[np.arange(U) != k, k] == 0)
    np.testing.assert_array_equal(res.ablated[3:, :K], 1)
    np.testing.assert_array_equal(res.max_importance, [0.5, 0.5, 0.5, 0, 0])
    for u in range(U):                     # the margin: true-class logit minus the largest other, per class's images
        m = copy.deepcopy(model)
        with torch.no_grad():
            m.units[0].weight[u] = 0
            z = m(images)
        true = z[torch.arange(len(z)), labels]
        other = z.scatter(1, labels.view(-1, 1), float("-inf")).amax(1)
        expect = [float((true - other)[labels == k].double().mean()) for k in range(K)]
        np.testing.assert_allclose(res.margin_ablated[u, :K], expect, rtol=1e-6)
    np.testing.assert_allclose(res.margin_ablated[np.arange(K), np.arange(K)], -1)   # falls to the background
    assert np.isnan(res.margin_base[K]) and (res.max_margin_drop[:K] > 1).all() and (res.max_margin_drop[3:] == 0).all()
    # the curves: the class's top unit first, so N = 1 already drops it; random other units keep it
    for k in range(K):
        assert res.top_curve[k, 0] == 0.5
        np.testing.assert_array_equal(res.top_curve[k], [brute_force(model, images, labels, res.ranking(k)[:n + 1])[k]
                                                         for n in range(3)])
        assert not np.isin(res.random_units[k], res.ranking(k)[:3]).any()
    assert res.random_curve.shape == (K + 1, 3, 3)
    np.testing.assert_array_equal(res.random_curve[0, :, 0], 1)           # one random other unit: class 0 kept
    df = res.curves()
    assert set(df.columns) >= {"class", "n", "top", "random_mean"} and len(df) == (K + 1) * 3
    assert list(res.units().columns[:2]) == ["layer", "unit"]


def test_cache_hit_and_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    model = Planted().eval()
    images, labels = planted_data()
    assert unit_importance(model, "units", images, labels, top_n=2, draws=2, cached_only=True) is None   # miss
    a = unit_importance(model, "units", images, labels, top_n=2, draws=2)
    assert a.meta["cached"] is False
    b = unit_importance(model, "units", images, labels, top_n=2, draws=2, cached_only=True)             # hit
    assert isinstance(b, UnitImportance) and b.meta["cached"] is True
    np.testing.assert_array_equal(a.ablated, b.ablated)
    np.testing.assert_array_equal(a.random_curve, b.random_curve)
    other = labels.clone()
    other[0] = 1                                                      # other labels: another key
    assert unit_importance(model, "units", images, other, top_n=2, draws=2, cached_only=True) is None


def test_bad_input_is_refused():
    model = Planted().eval()
    images, labels = planted_data(6)
    with pytest.raises(UnknownNameError, match="unknown layer 'nope'.*available layers"):
        unit_importance(model, "nope", images, labels, cache=False)
    bad = labels.clone()
    bad[2] = 7
    with pytest.raises(InputError, match=r"labels: class index 7 is out of range 0 \.\. 3") as e:
        unit_importance(model, "units", images, bad, cache=False)
    assert e.value.fix
    with pytest.raises(ProtocolError, match="model: a classifier must be a torch.nn.Module") as e:
        unit_importance(object(), "units", images, labels, cache=False)
    assert "input_size" in e.value.fix
    with pytest.raises(InputError, match=r"images: need float images N x 3 x 4 x 4"):
        unit_importance(model, "units", images[:, :, :3, :3], labels, cache=False)
    with pytest.raises(InputError, match="labels: need 6 integer class indices"):
        unit_importance(model, "units", images, labels[:5], cache=False)
    with pytest.raises(GanatomyError, match="top_n"):
        unit_importance(model, "units", images, labels, top_n=0, cache=False)


def test_scene_classifier_is_the_feature_networks_head():
    import core
    from core.studies.importance import scene_images
    feats = core.load_features("toyworld")
    clf = core.load_classifier("toyworld-scenes")
    images, labels = scene_images(6, seed=3)
    assert images.shape == (6, 3, 128, 128) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    with torch.no_grad():
        np.testing.assert_allclose(clf(images), feats.heads(feats(images))[0], atol=1e-5)
    assert clf.classes == ["town", "room", "lake"] and clf.layer_names[-1] == "proj"


def test_cli_importance_json(tmp_path, monkeypatch, capsys):
    import core.cli
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    core.cli.main(["importance", "--model", "toyworld-scenes", "--layer", "proj", "--samples", "6", "--top-n", "2",
                   "--draws", "2", "--probes", "0", "--json", "--device", "cpu"])
    obj = json.loads(capsys.readouterr().out)
    r = obj["result"]
    assert obj["command"] == "importance" and r["layer"] == "proj" and r["classes"] == ["town", "room", "lake"]
    assert len(r["base"]) == 3 and all(0 <= x <= 1 for x in r["base"])
    assert len(r["units"]) == 256 and {"unit", "max_importance"} <= set(r["units"][0])
    assert len(r["curves"]) == 3 * 2
    with pytest.raises(SystemExit):
        core.cli.main(["importance", "--model", "toyworld-scenes", "--layer", "nope", "--samples", "3", "--json"])
    assert "unknown layer 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- multi-label (the presence head)

class TinyMulti(nn.Module):
    """Random 1x1 conv (6 units) + ReLU + pool + linear to 4 independent (multi-label) logits."""

    multilabel = True

    def __init__(self, skip: bool = False):
        super().__init__()
        self.input_size = S
        self.skip = skip
        g = torch.Generator().manual_seed(3)
        self.units = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU())
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        out = self.fc(self.units(x).mean((2, 3)))
        return out + 0 * x.mean((1, 2, 3)).unsqueeze(1) if self.skip else out


def multi_data(model, n=40):
    g = torch.Generator().manual_seed(5)
    images = torch.rand(n, 3, S, S, generator=g) * 2 - 1
    with torch.no_grad():
        model.fc.bias -= model(images).median(0).values + 1e-3          # each logit positive on about half
        y = (model(images) > 0).to(torch.uint8)
    flip = torch.rand(y.shape, generator=g) < 0.2                  # labels = decisions, 20% flipped
    return images, torch.where(flip, 1 - y, y)


def brute_multi(model, images, y, units_zeroed):
    """(BA, balanced signed margin) per class, numpy, from a full forward of a copy with conv rows zeroed."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for u in units_zeroed:
            m.units[0].weight[u] = 0
            m.units[0].bias[u] = 0
        z = m(images).double().numpy()
    y = y.numpy().astype(bool)
    ba, mg = [], []
    for k in range(z.shape[1]):
        p, q = y[:, k], ~y[:, k]
        ba.append((((z[p, k] > 0).mean()) + ((z[q, k] <= 0).mean())) / 2)
        mg.append((z[p, k].mean() + (-z[q, k]).mean()) / 2)
    return np.array(ba), np.array(mg)


@pytest.mark.parametrize("skip", [False, True])
def test_multilabel_against_brute_force(skip):
    model = TinyMulti(skip).eval()
    images, y = multi_data(model)
    res = unit_importance(model, "units", images, y, top_n=3, draws=2, batch_size=9, cache=False)
    assert res.meta["multilabel"] and res.meta["path"] == ("full" if skip else "suffix")
    b_ba, b_mg = brute_multi(model, images, y, [])
    np.testing.assert_allclose(res.base, b_ba)
    np.testing.assert_allclose(res.margin_base, b_mg, rtol=1e-5)
    assert 0.6 < res.base.mean() < 0.95                            # the planted 20% label noise
    for u in range(6):
        ba, mg = brute_multi(model, images, y, [u])
        np.testing.assert_allclose(res.ablated[u], ba)
        np.testing.assert_allclose(res.margin_ablated[u], mg, rtol=1e-5, atol=1e-6)
    assert (np.abs(res.drop) > 0).sum() >= 3                       # zeroing units moves decisions
    for k in range(4):
        for n in range(3):
            ba, mg = brute_multi(model, images, y, res.ranking(k)[:n + 1])
            assert res.top_curve[k, n] == pytest.approx(ba[k]) and res.margin_top[k, n] == pytest.approx(mg[k], 1e-5)
            ba, _ = brute_multi(model, images, y, res.random_units[k, 1, :n + 1])
            assert res.random_curve[k, 1, n] == pytest.approx(ba[k])
    single = unit_importance(model, "units", images, y.argmax(1), top_n=2, draws=1, multilabel=False, cache=False)
    assert not single.meta["multilabel"]                          # the same network as a one-of-K classifier
    with pytest.raises(InputError, match=r"labels: a multi-label classifier needs 40 rows of 0/1"):
        unit_importance(model, "units", images, y.argmax(1), cache=False)
    with pytest.raises(InputError, match=r"labels: 3 columns for the classifier's 4 classes"):
        unit_importance(model, "units", images, y[:, :3], cache=False)
    with pytest.raises(UnknownNameError, match="unknown layer 'fc7'"):
        unit_importance(model, "fc7", images, y, cache=False)


def test_presence_classifier_and_its_labels():
    import core
    from core import toyworld
    from core.studies.importance import labelled_images, presence_images
    clf = core.load_classifier("toyworld-presence")
    assert "toyworld-presence" in core.models.classifiers.list_classifiers()
    assert clf.multilabel and clf.classes == list(toyworld.LABELS[1:]) and clf.layer_names[-1] == "proj"
    images, pres = presence_images(6, seed=3)
    im, lab = toyworld.render("room", 2, seed=3, size=128)            # images 1 and 4 are room scenes 0 and 1
    np.testing.assert_array_equal(images[[1, 4]].numpy(), im.numpy())
    for j, i in enumerate((1, 4)):
        expect = [int((lab[j] == c).any()) for c in range(1, len(toyworld.LABELS))]
        assert pres[i].tolist() == expect
    feats = core.load_features("toyworld")
    with torch.no_grad():
        np.testing.assert_allclose(clf(images), feats.heads(feats(images))[1], atol=1e-5)
    assert labelled_images(clf, 6, 3)[1].shape == (6, 27)


def test_interval_over_seeds_and_relation_on_a_planted_table():
    import pandas as pd
    from scipy import stats as st

    from core.studies.importance import relation_over_seeds, seed_interval
    iv = seed_interval([0.1, 0.2, 0.3, float("nan")])
    half = st.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)                         # sd 0.1 over 3 seeds
    assert iv["mean"] == pytest.approx(0.2) and iv["low"] == pytest.approx(0.2 - half)
    assert iv["high"] == pytest.approx(0.2 + half) and iv["values"] == pytest.approx([0.1, 0.2, 0.3])
    assert np.isnan(seed_interval([0.5])["low"])
    rng = np.random.default_rng(0)
    imp = rng.permutation(40).astype(float)
    t = pd.DataFrame({"max_importance": imp, "max_margin_drop": -imp, "breadth": (imp >= 30) * 2 + (imp >= 20)})
    for s, shift in ((0, 0.0), (1, 0.1), (2, 0.2)):          # IoU rises with importance; the margin version falls
        t[f"iou_seed{s}"] = imp / 100 + shift
        t[f"detector_seed{s}"] = imp >= 30 - s                  # the broadest units are the detectors
    out = relation_over_seeds(t, [0, 1, 2], boots=20)
    assert out["max_importance"]["over_seeds"]["mean"] == pytest.approx(1.0)
    assert out["max_margin_drop"]["over_seeds"]["mean"] == pytest.approx(-1.0)
    assert out["max_importance"]["bootstrap_95"][1] == pytest.approx([1.0, 1.0])
    b = out["breadth"]
    assert (b["units_b0"], b["units_b1"], b["units_b2plus"]) == (20, 10, 10)
    assert b["det_b2plus"]["mean"] == 1.0 and b["det_b0"]["mean"] == 0.0
    assert b["det_b1"]["values"] == pytest.approx([0.0, 0.1, 0.2])
    assert b["spearman"]["mean"] > 0.8
    with pytest.raises(InputError, match="table: lacks columns iou_seed5"):
        relation_over_seeds(t, [5], boots=10)

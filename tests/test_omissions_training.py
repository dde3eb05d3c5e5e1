"""Which concepts arrive first during training (core.studies.comparisons.concept_arrival)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

import core
from core.base.errors import ArgumentTypeError
from core.studies.comparisons import concept_arrival, omissions_over_training


def _table(changes: dict[str, list[float]], steps=(100, 1000, 5000, 20000)) -> pd.DataFrame:
    rows = [{"model": f"m@{s}", "step": s, "label": lab, "real_area": 0.1, "generated_area": 0.1 * (1 + c),
             "relative_change": c, "judged": lab != "speck", "fsd": 0.0, "floor": 0.0}
            for lab, cs in changes.items() for s, c in zip(steps, cs)]
    return pd.DataFrame(rows)


def test_arrival_is_the_first_step_from_which_a_class_stays_within():
    t = _table({"sky": [0.1, 0.0, 0.0, 0.0],          # there from the start
                "door": [-1.0, -0.9, -0.2, -0.1],     # arrives at 5000
                "tree": [-1.0, -0.3, -0.7, -0.2],     # within at 1000, out again: arrives at 20000
                "plant": [-1.0, -1.0, -0.8, -0.6],    # never
                "speck": [-1.0, -1.0, -1.0, -1.0]})   # not judged at the end: not listed
    a = concept_arrival(t)
    assert a.label.tolist() == ["sky", "door", "tree", "plant"]
    got = dict(zip(a.label, a.arrival_step))
    assert got["sky"] == 100 and got["door"] == 5000 and got["tree"] == 20000 and math.isnan(got["plant"])
    assert a.set_index("label").loc["door", "first_change"] == -1.0
    assert a.set_index("label").loc["door", "final_change"] == pytest.approx(-0.1)
    # a wider band lets tree in at 1000 (every later change within 0.75)
    assert dict(zip(*concept_arrival(t, within=0.75)[["label", "arrival_step"]].T.values))["tree"] == 1000


def test_bad_table_and_nothing_stored(tmp_path, monkeypatch):
    with pytest.raises(ArgumentTypeError, match="table"):
        concept_arrival(pd.DataFrame({"x": [1]}))
    monkeypatch.setenv("GANATOMY_CACHE", str(tmp_path))
    assert omissions_over_training("toyworld/town", core.load_segmenter("toyworld"), 50, cached_only=True) is None

"""Bad-input cases already refused clearly before issue 18 (a seed for the table)."""
from __future__ import annotations

import core
from core.engine.intervention import Edit
from tests.badcases.common import Case, mask, segmenter, town, z

CASES = [
    Case("generate:unit-out-of-range", lambda: core.generate(town(), z(),
         [Edit("layer4", [9999], "ablate", 0.0, mask())]), core.UnitIndexError, ("9999", "layer4"), "valid: 0.."),
    Case("ace:unknown-concept", lambda: core.ace(town(), segmenter(), "layer4", "unicorn"),
         core.UnknownNameError, ("unicorn",), "the segmenter knows"),
]

"""The bad-input table (issue 18): every case is refused with a clear error, before any work.

The cases live in ``tests/badcases/*.py`` (see ``tests/badcases/common.py`` for what each case
asserts); this file collects them and checks the table's size."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import core
from tests.badcases import common

_MODULES = sorted(m.name for m in pkgutil.iter_modules([str(Path(common.__file__).parent)]) if m.name != "common")
CASES = [c for name in _MODULES for c in importlib.import_module(f"tests.badcases.{name}").CASES]


def test_table_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= 100, f"the bad-input table has {len(CASES)} cases; issue 18 asks for at least 100"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly(case):
    forwards = []
    handle = common.town().register_forward_pre_hook(lambda m, a: forwards.append(1))
    try:
        with pytest.raises(core.GanatomyError) as info:
            case.call()
    finally:
        handle.remove()
    e = info.value
    msg = str(e)
    assert isinstance(e, case.error), f"{type(e).__name__} (expected {case.error.__name__}): {msg}"
    for n in case.names:
        assert n in msg, f"the message does not name {n!r}: {msg}"
    assert case.fix.lower() in msg.lower(), f"the message does not give the fix ({case.fix!r}): {msg}"
    assert "Traceback" not in msg
    if not case.work:
        assert not forwards, f"the generator ran {len(forwards)} time(s) before the refusal: {msg}"
    torch.set_grad_enabled(True)

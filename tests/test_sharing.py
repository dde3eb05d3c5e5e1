"""Sessions sharing one device: long jobs take turns, what-ifs never wait, out of memory is a clear error."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from planted import ColorSegmenter, PlantedGenerator

from core.base import sharing
from core.base.errors import BudgetError, InputError
from core.base.sampling import z_range
from core.engine.dissection import dissect
from core.engine.intervention import Edit, generate


def test_long_jobs_take_turns_and_what_ifs_do_not_wait(monkeypatch):
    monkeypatch.setenv(sharing.CPU_JOBS_ENV, "1")
    G = PlantedGenerator()
    inside, release, waited, order = threading.Event(), threading.Event(), [], []

    @sharing.long_computation("a planted job")
    def job(model, name):
        order.append(("start", name))
        if name == "first":
            inside.set()
            assert release.wait(30)
        order.append(("end", name))

    first = threading.Thread(target=job, args=(G, "first"))
    first.start()
    assert inside.wait(30)
    assert sharing.busy("cpu") == 1
    # a what-if while the long job holds the turn: answered at once, the right image
    z = z_range(0, 0, 2, G.z_dim)
    img = generate(G, z, [Edit("units", [0])])
    with torch.no_grad():
        assert torch.equal(img, generate(G, z, [Edit("units", [0])]))

    def second():
        with sharing.long_job(torch.device("cpu"), "the second job", on_wait=waited.append):
            order.append(("start", "second"))

    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.3)
    assert ("start", "second") not in order and waited == [1]      # it waits for its turn
    release.set()
    first.join(30)
    t2.join(30)
    assert order == [("start", "first"), ("end", "first"), ("start", "second")]
    assert sharing.busy("cpu") == 0


def test_a_nested_long_job_runs_in_its_callers_turn(monkeypatch):
    monkeypatch.setenv(sharing.CPU_JOBS_ENV, "1")
    with sharing.long_job("cpu", "outer"):
        with sharing.long_job("cpu", "inner"):        # would deadlock if it asked for a second turn
            assert sharing.busy("cpu") == 2


def test_no_limit_on_the_cpu_by_default_and_a_bad_setting_is_named(monkeypatch):
    monkeypatch.delenv(sharing.CPU_JOBS_ENV, raising=False)
    monkeypatch.delenv(sharing.JOBS_ENV, raising=False)
    assert sharing.job_limit("cpu") == 0
    assert sharing.job_limit("cuda:0") == 1
    monkeypatch.setenv(sharing.JOBS_ENV, "two")
    with pytest.raises(InputError, match="GANATOMY_GPU_JOBS"):
        sharing.job_limit("cuda:1")


def test_out_of_memory_becomes_a_clear_error(monkeypatch):
    G, seg = PlantedGenerator(), ColorSegmenter()
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

    def boom(*a, **k):
        raise oom("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(seg, "segment", boom)
    with pytest.raises(BudgetError, match="a dissection ran out of memory on cpu") as e:
        dissect(G, seg, "units", 8, resolution=16, cache=False)
    assert "batch_size" in str(e.value) and "GANATOMY_GPU_JOBS" in str(e.value)
    assert sharing.busy("cpu") == 0                   # the turn is given back


def test_fit_batch_is_unchanged_on_the_cpu():
    assert sharing.fit_batch("cpu", 64, 1e12) == 64


def test_a_page_says_when_its_long_job_waits(monkeypatch):
    from dashboard.common import note_turn
    monkeypatch.setenv("GANATOMY_DEVICE", "cpu")
    monkeypatch.setenv(sharing.CPU_JOBS_ENV, "1")

    class Box:
        def __init__(self):
            self.lines = []

        def write(self, text):
            self.lines.append(text)

    free, busy = Box(), Box()
    note_turn(free)
    with sharing.long_job("cpu", "another session's dissection"):
        note_turn(busy)
    assert free.lines == []
    assert len(busy.lines) == 1 and "1 long job(s)" in busy.lines[0] and "GANATOMY_CPU_JOBS" in busy.lines[0]

import os
import pathlib

import pytest
import torch

# The dashboard computes with one intra-op thread per session (dashboard/common.py), and its
# import sets that for the whole process: in the test process, which runs one test at a time,
# every core of the machine may work on it (speed only; results are the same up to float order).
# Under pytest-xdist (``-n N``) the N workers share the cores: each gets its share of them.
_WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
_THREADS = max(1, min(os.cpu_count() or 1, 4) // _WORKERS)
os.environ.setdefault("GANATOMY_TORCH_THREADS", str(_THREADS))
if _WORKERS > 1:
    torch.set_num_threads(_THREADS)
# The results shipped with the zoo (core/weights/results) would answer many tests' "not computed
# yet" paths: tests see an empty cache unless they turn them on (tests/test_shipped_results.py,
# the fresh-clone browser test).
os.environ.setdefault("GANATOMY_SHIPPED_RESULTS", "0")


class _RunsCode:
    """Pickles to a call of Path.touch(marker): loading it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def code_running_checkpoint(tmp_path):
    """Factory: save ``state`` plus an object whose unpickling would run code. Returns
    (path, marker): the test asserts loading is refused and the marker never appears."""
    def make(state, name="evil.pt"):
        marker = tmp_path / f"{name}.ran"
        path = tmp_path / name
        torch.save({**state, "x": _RunsCode(str(marker))}, path)
        return path, marker
    return make

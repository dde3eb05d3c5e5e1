import pathlib

import pytest
import torch


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

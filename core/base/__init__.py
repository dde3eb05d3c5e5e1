"""Base floor: what every other floor stands on, importing nothing of core above it.

errors (the GanatomyError family), protocols (what a generator and a segmenter are), sampling
(deterministic codes), hooks (per-thread capture and edits), cache (the one cache path and the
atomic writes), checkpoints (safe loading), devices, packages (optional imports).
"""
from core.base import cache, checkpoints, devices, errors, hooks, packages, protocols, sampling, validate  # noqa: F401
from core.base.errors import *  # noqa: F401,F403
from core.base.errors import __all__ as _errors

__all__ = ["cache", "checkpoints", "devices", "errors", "hooks", "packages", "protocols", "sampling", "validate",
           *_errors]

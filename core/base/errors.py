"""One error family: everything GANatomy refuses on purpose is a :class:`GanatomyError`.

Each error says what was wrong and how to fix it (``str(e)``; the fix alone, where one is known,
is ``e.fix``). The subclasses also derive from the built-in exception a Python caller would
expect (``ValueError``, ``TypeError``, ``MemoryError``, ``OSError``), so ``except ValueError``
keeps working. The dashboard catches :class:`GanatomyError` by type and shows its message; any
other exception is a bug in GANatomy and is shown as one, with its traceback folded away.

    GanatomyError
    ├── InputError (ValueError)            an argument is out of range, unknown or malformed
    │   ├── UnknownNameError               a model, layer, concept or file name that does not exist
    │   └── UnitIndexError (IndexError)    a unit index outside the layer
    ├── ArgumentTypeError (TypeError)      an argument of the wrong type, or options that do not combine
    ├── ProtocolError (TypeError)          a model or segmenter does not meet core.base.protocols
    ├── CheckpointError (ValueError)       a weights file cannot be used (names the file and the fix)
    │   ├── MissingWeightsError            a known model's weights are not on this machine
    │   ├── MissingPackageError            an optional package a model needs is not installed
    │   └── DownloadError                  a requested download failed or did not verify
    ├── BudgetError (MemoryError)          a computation would not fit the memory it is allowed
    └── CacheError (OSError)               the on-disk cache cannot be written or read
"""
from __future__ import annotations

__all__ = ["GanatomyError", "InputError", "UnknownNameError", "UnitIndexError", "ArgumentTypeError", "ProtocolError",
           "CheckpointError", "MissingWeightsError", "MissingPackageError", "DownloadError", "BudgetError",
           "CacheError", "ConceptAbsentError"]


class GanatomyError(Exception):
    """Base of every error GANatomy raises on purpose. ``fix``: how to put it right (or "")."""

    def __init__(self, message: str = "", *, fix: str = ""):
        self.fix = fix
        super().__init__(f"{message} ({fix})" if fix and fix not in message else message)

    @property
    def message(self) -> str:
        return str(self)


class InputError(GanatomyError, ValueError):
    """An argument's value cannot be used: the message names the argument and the fix."""


class ConceptAbsentError(InputError):
    """The concept does not appear in the samples a measurement needs (e.g. a scene type without
    doors): a fact about the model, not a bug, so a table over generators shows it as a gap."""


class UnknownNameError(InputError):
    """A name (model, layer, concept, unit, file) that does not exist; the message lists the known ones."""


class UnitIndexError(InputError, IndexError):
    """Unit indices outside a layer; the message gives the valid range."""


class ArgumentTypeError(GanatomyError, TypeError):
    """An argument of the wrong type, or options that cannot be combined."""


class ProtocolError(GanatomyError, TypeError):
    """An object does not meet a GANatomy protocol (the message says what is expected)."""


class CheckpointError(GanatomyError, ValueError):
    """A checkpoint file cannot be used; the message names the file, the reason and the fix."""


class MissingWeightsError(CheckpointError):
    """A registry model's weights are not on this machine (the message says where to put them)."""


class MissingPackageError(CheckpointError):
    """An optional package a model needs is not installed (the message gives the pip command)."""


class DownloadError(CheckpointError):
    """A requested download failed or did not match its checksum (nothing was kept)."""


class BudgetError(GanatomyError, MemoryError):
    """A computation would need more memory than it is allowed; the message says what to lower."""


class CacheError(GanatomyError, OSError):
    """The result cache cannot be used (read-only, full, or corrupt beyond repair)."""

"""Optional packages: imported only when a model needs them; a missing one is named with its
``pip`` command."""
from __future__ import annotations

import importlib
import importlib.util

from core.base.errors import MissingPackageError

__all__ = ["require", "packages_ok", "MODULE_OF"]

MODULE_OF = {"pytorch-pretrained-biggan": "pytorch_pretrained_biggan", "transformers": "transformers",
             "huggingface_hub": "huggingface_hub", "safetensors": "safetensors"}   # pip name -> module


def require(module: str, pip: str, what: str):
    """Import an optional package, or raise :class:`MissingPackageError` naming the install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(
            f"{what} require the optional package `{pip}`, which cannot be imported here ({e}). "
            f"Install it with `pip install {pip}` (or every optional package: "
            "`pip install -r requirements-optional.txt`).") from None


def packages_ok(packages) -> bool:
    """Whether every pip package in ``packages`` can be imported (without importing it)."""
    try:
        return all(importlib.util.find_spec(MODULE_OF.get(p, p)) is not None for p in packages)
    except (ImportError, ValueError):       # a broken or blocked package counts as missing
        return False

"""Safe checkpoint loading: ``torch.load(weights_only=True)`` (or ``safetensors``) with errors
that name the file."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from core.base.errors import CheckpointError
from core.base.packages import require

__all__ = ["CheckpointError", "load_checkpoint", "load_state_into", "read_weights"]


def load_checkpoint(path: str | os.PathLike, map_location="cpu", safe_types: tuple = ()):
    """Load a checkpoint without executing code from it.

    Only tensors and plain containers are accepted (``weights_only=True``); a pickle that tries
    to build arbitrary objects is refused before anything from it runs. ``safe_types`` adds
    plain data classes that may be rebuilt too (e.g. ``argparse.Namespace``, which training
    scripts store as ``args``): they are instantiated and their ``__dict__`` filled, nothing else.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist: check the path, or put the "
                              "weights file there")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory; give the path of the weights file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes): the download or copy was "
                              "interrupted; fetch the file again")
    try:
        if safe_types:
            with torch.serialization.safe_globals(list(safe_types)):
                return torch.load(p, map_location=map_location, weights_only=True)
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {p} was refused: it holds Python objects other than tensors and plain "
            f"containers, and loading it could run code from the file ({_first_line(e)}). "
            "Re-save it as a plain state_dict (torch.save(model.state_dict(), path)) in a trusted "
            "environment.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"checkpoint {p} cannot be read, it looks truncated or is not a "
                              f"PyTorch file ({_first_line(e)}); fetch or save it again") from None


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def load_state_into(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Strictly load ``state`` into ``model``; on mismatch, name the file and the keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state)
                   if isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if extra:
            parts.append(f"unexpected keys {_few(extra)}")
        if shape:
            parts.append("mis-shaped keys " + _few(
                [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in shape]))
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: "
                              + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v
                           for k, v in state.items()})


def _few(keys, k=6):
    return ", ".join(keys[:k]) + (f" and {len(keys) - k} more" if len(keys) > k else "")


def read_weights(path: str | os.PathLike) -> dict:
    """A state dict from a ``.safetensors`` file or a torch file (``{"state_dict": ...}`` wrappers
    unwrapped), never executing code from it."""
    path = Path(path)
    if path.suffix == ".safetensors":
        st = require("safetensors.torch", "safetensors", f"reading {path}")
        try:
            return st.load_file(str(path))
        except Exception as e:    # safetensors raises its own error types for bad headers
            raise CheckpointError(f"checkpoint {path} cannot be read, it looks truncated or is not a "
                                  f"safetensors file ({_first_line(e)}); fetch or save it again") from None
    ck = load_checkpoint(path)
    if isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict):
        ck = ck["state_dict"]
    if not isinstance(ck, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ck).__name__}, not a state dict")
    return ck

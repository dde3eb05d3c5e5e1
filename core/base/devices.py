"""Where a model lives: the one helper every floor uses to follow a model's device."""
from __future__ import annotations

import torch

__all__ = ["module_device", "device_of"]


def module_device(obj) -> torch.device | None:
    """The device of a module's first parameter (or buffer); None for anything else, or a module
    that holds no tensors."""
    if isinstance(obj, torch.nn.Module):
        for p in obj.parameters():
            return p.device
        for b in obj.buffers():
            return b.device
    return None


def device_of(obj) -> torch.device:
    """:func:`module_device`, with the CPU where a model holds no tensors."""
    return module_device(obj) or torch.device("cpu")

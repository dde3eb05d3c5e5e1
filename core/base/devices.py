"""Where a model lives: the one helper every floor uses to follow a model's device."""
from __future__ import annotations

import os

import torch

from core.base.errors import InputError

__all__ = ["module_device", "device_of", "DEVICE_ENV", "server_device", "for_serving"]

DEVICE_ENV = "GANATOMY_DEVICE"
DEFAULT_DEVICE = "auto"    # the first CUDA device when the machine has one (benchmarks/gpu_check.sh measures it)


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


def server_device(value: str | None = None) -> torch.device:
    """The device a server places its shared models on: ``value``, else ``$GANATOMY_DEVICE``
    (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; default ``auto``). ``auto`` is the first CUDA
    device when there is one, else the CPU. A device this machine does not have is refused with
    what it has, before any model is loaded."""
    raw = os.environ.get(DEVICE_ENV, "") if value is None else value
    text = str(raw).strip().lower() or DEFAULT_DEVICE
    where = f"${DEVICE_ENV}" if value is None else "device"
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    have = "cpu" + (f", cuda:0..cuda:{n_cuda - 1}" if n_cuda else "")
    if text == "auto":
        return torch.device("cuda:0" if n_cuda else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{where}={raw!r} is not a device",
                         fix=f"use auto, cpu, cuda or cuda:N (this machine: {have})") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"{where}={raw!r}: GANatomy serves on the CPU or a CUDA device",
                         fix=f"use auto, cpu, cuda or cuda:N (this machine: {have})")
    if dev.type == "cuda":
        index = 0 if dev.index is None else dev.index
        if index >= n_cuda:
            raise InputError(f"{where}={raw!r}, but this machine has " + (f"{n_cuda} CUDA device(s)" if n_cuda else
                             "no CUDA device"), fix=f"use one it has ({have}), or auto")
        dev = torch.device("cuda", index)
    return dev


def for_serving(model, device=None):
    """``model`` made ready to be shared from ``device`` (default: its own): on a CUDA device its
    convolution weights go channels-last (the fast layout for cuDNN; the results are the same
    up to float rounding). Done once, before the model is shared: never on a shared model."""
    dev = torch.device(device) if device is not None else device_of(model)
    if isinstance(model, torch.nn.Module) and dev.type == "cuda":
        model = model.to(device=dev, memory_format=torch.channels_last)
    return model

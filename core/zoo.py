"""Registries of the shipped (and, later, user-registered) segmenters and feature networks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from . import nets
from .checkpoints import CheckpointError, load_checkpoint, load_state_into

WEIGHTS = Path(__file__).resolve().parent / "weights"

__all__ = ["load_segmenter", "load_features", "SEGMENTERS", "FEATURES", "WEIGHTS"]


def _load_toy(cls, filename: str, what: str, script: str):
    def load(device="cpu"):
        path = WEIGHTS / filename
        if not path.exists():
            raise CheckpointError(f"the shipped {what} weights {path} are missing: restore them "
                                  f"with `git checkout -- {path.relative_to(WEIGHTS.parents[1])}` "
                                  f"or retrain with `python {script}`")
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or "state_dict" not in ck:
            raise CheckpointError(f"{path} is not a GANatomy {what} file (no 'state_dict' entry)")
        model = cls()
        load_state_into(model, ck["state_dict"], path)
        model.meta = dict(ck.get("meta", {}))
        return model.to(device).eval().requires_grad_(False)
    return load


SEGMENTERS: dict[str, Callable] = {
    "toyworld": _load_toy(nets.ToySegmenter, "segmenter_toyworld.pt", "segmenter",
                          "scripts/train_segmenter.py"),
}
FEATURES: dict[str, Callable] = {
    "toyworld": _load_toy(nets.ToyFeatures, "features_toyworld.pt", "feature network",
                          "scripts/train_features.py"),
}


def _load(registry: dict, kind: str, name, device):
    if isinstance(name, (str, os.PathLike)) and str(name) in registry:
        return registry[str(name)](device=device)
    raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(sorted(registry))}")


def load_segmenter(name: str = "toyworld", device="cpu"):
    """A segmenter meeting :mod:`core.protocols` (``"toyworld"``: the shipped U-Net)."""
    return _load(SEGMENTERS, "segmenter", name, device)


def load_features(name: str = "toyworld", device="cpu"):
    """An image feature network for FID: ``net(images) -> N x D`` (``"toyworld"``: shipped)."""
    return _load(FEATURES, "feature network", name, device)

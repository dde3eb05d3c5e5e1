"""Comparisons built on dissection: layers, models (variants), scene types, training checkpoints."""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from .dissect import dissect
from .zoo import checkpoint_series, load_generator

__all__ = ["compare_models", "training_evolution"]


def compare_models(names: Sequence[str], segmenter, layers: Sequence[str], n_samples: int = 1000,
                   seed: int = 0, progress: Callable | None = None, **options) -> pd.DataFrame:
    """Dissect the same layers of several models: one row per (model, layer) with interpretable
    units, distinct concepts and mean IoU (the paper's Fig. 7 comparison and scene-type maps)."""
    rows = []
    for i, name in enumerate(names):
        G = load_generator(name)
        res = dissect(G, segmenter, list(layers), n_samples, seed=seed, **options)
        for row in res.summary().to_dict(orient="records"):
            rows.append({"model": name, **row})
        if progress:
            progress(i + 1, len(names))
    return pd.DataFrame(rows)


def training_evolution(name: str, segmenter, layers: Sequence[str], n_samples: int = 1000, seed: int = 0,
                       progress: Callable | None = None, **options) -> pd.DataFrame:
    """Interpretable units, distinct concepts and mean IoU per training checkpoint (S-6.6)."""
    series = checkpoint_series(name)
    df = compare_models([m for _, m in series], segmenter, layers, n_samples, seed, progress, **options)
    steps = {m: s for s, m in series}
    df.insert(1, "step", df.model.map(steps))
    return df

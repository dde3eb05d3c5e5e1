"""What every causal measurement starts from: the checked models, the size of the unit space,
insertion values and one-cell masks."""
from __future__ import annotations

import torch

from core.base.hooks import layer_units, resolve_layers
from core.base.protocols import check_generator, check_segmenter
from core.base.validate import check_values, concept_index
from core.engine.bases import check_basis

ROW_BYTES = 120        # a candidate cell or an insertion row kept as Python objects (estimate)


def n_units_of(generator, layer, basis=None) -> int:
    """The size of the space units index: the basis's features, else the layer's units."""
    if basis is not None:
        return check_basis(basis, layer_units(generator, layer), layer).n_features
    return layer_units(generator, layer)


def checked_models(generator, segmenter, layer, concept):
    """The checked models, layer name and concept index every causal measurement starts from."""
    check_generator(generator, probe=False)
    check_segmenter(segmenter)
    return resolve_layers(generator, [layer])[0], concept_index(segmenter, concept)


def unit_values(name, value, units, n_units) -> torch.Tensor:
    """Insertion values for ``units``: one number, one per unit, or one per unit of the layer
    (indexed here); finite."""
    v = check_values(name, value, allowed=(1, len(units), n_units),
                     what="a number, one value per unit or one per unit of the layer")
    return v if v.numel() in (1, len(units)) else v[units]


def cell_masks(cells, hw, dev) -> torch.Tensor:
    """One-cell masks [b, 1, h, w] for [(sample, y, x)]."""
    m = torch.zeros(len(cells), 1, *hw, device=dev)
    if cells:
        yx = torch.tensor([(j, y, x) for j, (_, y, x) in enumerate(cells)], device=dev)
        m[yx[:, 0], 0, yx[:, 1], yx[:, 2]] = 1.0          # one copy to the device, not one per cell
    return m

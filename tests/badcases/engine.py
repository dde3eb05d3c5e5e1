"""Bad inputs to the compute entry points: dissect and its options, Dissection.units, Edit and
generate, insertion constants, ACE and the other causal measurements, painting, the context study,
comparisons, evaluation, FID/MS-SWD and the outputs. Each is refused before any generator pass."""
from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

import core
from core.engine import swd
from core.engine.dissection import Dissection, DissectOptions
from core.engine.intervention import Edit
from core.outputs import report, visualize
from core.studies import comparisons, context, evaluation, paint
from core.studies import units as unit_choice
from tests.badcases.common import Case, mask, segmenter, town, z

E = core
NAN, INF = math.nan, math.inf
OUT = str(Path(tempfile.gettempdir()) / "ganatomy-badcases-out")    # written only if a case is not refused


@functools.cache
def dissection() -> Dissection:
    """A small made-up dissection of 'layer4' (4 units) with the toyworld labels: enough for the
    labelling options to be checked (no generator pass)."""
    labels = list(segmenter().labels)
    u, n = 4, len(labels)
    z2 = np.zeros((u, n))
    data = {"iou": z2, "iqr": z2, "iqr_iou_set": z2, "threshold": z2, "precision": z2, "iou_thr_set": z2,
            "ref_iqr": z2, "ref_iqr_iou_set": z2, "ref_iou_thr_set": z2, "ref_iou": z2, "ref_accuracy": z2,
            "ref_thresholds": z2, "top_values": np.zeros((u, 2)),
            "top_index": np.zeros((u, 2), int), "frequency": np.zeros(n), "quantiles": np.zeros((u, 9))}
    return Dissection(labels=labels, layers=["layer4"], n_samples=2, seed=0, options=DissectOptions(),
                      data={"layer4": data})


def dis(*a, **kw):
    return core.dissect(town(), segmenter(), *a, cache=False, **kw)


def units(**kw):
    return dissection().units("layer4", **kw)


def gen(edits, zz=None, **kw):
    return core.generate(town(), z() if zz is None else zz, edits, **kw)


def ace(**kw):
    return core.ace(town(), segmenter(), "layer4", "door", **kw)


def k_of(**kw):
    return core.insertion_constants(town(), segmenter(), kw.pop("layer", "layer4"), kw.pop("concept", "door"), **kw)


def curve(**kw):
    kw.setdefault("rankings", {"r": [1, 2, 3]})
    return core.ablation_curve(town(), segmenter(), kw.pop("layer", "layer4"), kw.pop("concept", "door"), **kw)


def effect(**kw):
    kw.setdefault("units", [1, 2])
    kw.setdefault("value", 1.0)
    return core.causal_effect(town(), segmenter(), "layer4", kw.pop("units"), kw.pop("concept", "door"),
                              kw.pop("value"), **kw)


def ctx(**kw):
    kw.setdefault("units", [1, 2])
    kw.setdefault("value", 1.0)
    return core.context_study(town(), segmenter(), "layer4", kw.pop("units"), kw.pop("value"), "door", **kw)


def painted(**kw):
    args = {"layer": "layer4", "units": [1, 2], "mode": "add", "k": np.ones(256), "cells": np.ones((8, 8))}
    args.update(kw)
    return paint.paint_edits(**args)


CASES = [
    # ---------------------------------------------------------------- dissect: layers
    Case("dissect:layers-unknown", lambda: dis(["layer99"], 10), E.UnknownNameError, ("layer99",),
         "available layers"),
    Case("dissect:layers-empty", lambda: dis([], 10), E.InputError, ("layers",), "give layers at least one"),
    Case("dissect:layers-duplicated", lambda: dis(["layer4", "layer4"], 10), E.InputError, ("layers", "layer4"),
         "give each layer once"),
    Case("dissect:layers-not-a-name", lambda: dis(4, 10), E.ArgumentTypeError, ("layers",), "e.g. layers="),
    Case("dissect:layers-not-str", lambda: dis([4], 10), E.UnknownNameError, ("4",), "available layers"),
    # ---------------------------------------------------------------- dissect: samples and batches
    Case("dissect:n_samples-zero", lambda: dis("layer4", 0), E.InputError, ("n_samples",), "n_samples >= 2"),
    Case("dissect:n_samples-negative", lambda: dis("layer4", -1), E.InputError, ("n_samples",), "n_samples >= 2"),
    Case("dissect:n_samples-one", lambda: dis("layer4", 1), E.InputError, ("n_samples",), "n_samples >= 2"),
    Case("dissect:n_samples-fraction", lambda: dis("layer4", 100.5), E.InputError, ("n_samples", "100.5"),
         "n_samples >= 2"),
    Case("dissect:n_samples-str", lambda: dis("layer4", "100"), E.ArgumentTypeError, ("n_samples",),
         "n_samples >= 2"),
    Case("dissect:n_samples-bool", lambda: dis("layer4", True), E.ArgumentTypeError, ("n_samples",),
         "n_samples >= 2"),
    Case("dissect:n_samples-none", lambda: dis("layer4", None), E.InputError, ("n_samples",), "n_samples >= 2"),
    Case("dissect:n_samples-nan", lambda: dis("layer4", NAN), E.InputError, ("n_samples",), "n_samples >= 2"),
    Case("dissect:n_samples-huge", lambda: dis("layer4", 10 ** 9), E.BudgetError, ("n_samples", "days", "images/s"),
         "lower n_samples"),
    Case("dissect:batch_size-zero", lambda: dis("layer4", 10, batch_size=0), E.InputError, ("batch_size",),
         "batch_size as a whole number >= 1"),
    Case("dissect:batch_size-negative", lambda: dis("layer4", 10, batch_size=-4), E.InputError, ("batch_size",),
         ">= 1"),
    Case("dissect:batch_size-fraction", lambda: dis("layer4", 10, batch_size=2.5), E.InputError, ("batch_size",),
         ">= 1"),
    Case("dissect:seed-fraction", lambda: dis("layer4", 10, seed=1.5), E.InputError, ("seed", "1.5"),
         "whole number"),
    Case("dissect:seed-str", lambda: dis("layer4", 10, seed="0"), E.ArgumentTypeError, ("seed",), "whole number"),
    Case("dissect:device-unknown", lambda: dis("layer4", 10, device="tpu9"), E.InputError, ("device", "tpu9"),
         "device='cpu'"),
    Case("dissect:progress-not-callable", lambda: dis("layer4", 10, progress=5), E.ArgumentTypeError,
         ("progress",), "as a function"),
    Case("dissect:generator-not-a-module", lambda: core.dissect("toyworld/town", segmenter(), "layer4", 10),
         E.ProtocolError, ("generator",), "torch.nn.Module"),
    Case("dissect:segmenter-without-labels", lambda: core.dissect(town(), object(), "layer4", 10),
         E.ProtocolError, ("segmenter", "labels"), "index 0 = unlabeled"),
    # ---------------------------------------------------------------- dissect: options
    Case("dissect:bins-zero", lambda: dis("layer4", 10, bins=0), E.InputError, ("bins",), ">= 1"),
    Case("dissect:bins-fraction", lambda: dis("layer4", 10, bins=12.5), E.InputError, ("bins",), ">= 1"),
    Case("dissect:bins-huge", lambda: dis("layer4", 10, bins=10 ** 9), E.BudgetError, ("histograms", "bins"),
         "lower bins="),
    Case("dissect:topk-negative", lambda: dis("layer4", 10, topk=-1), E.InputError, ("topk",), ">= 0"),
    Case("dissect:resolution-zero", lambda: dis("layer4", 10, resolution=0), E.InputError, ("resolution",),
         ">= 1"),
    Case("dissect:resolution-huge", lambda: dis("layer4", 10, resolution=100_000), E.BudgetError,
         ("resolution", "GB", "100000"), "lower resolution"),
    Case("dissect:resolution-fraction", lambda: dis("layer4", 10, resolution=32.5), E.InputError, ("resolution",),
         ">= 1"),
    Case("dissect:iou_threshold-nan", lambda: dis("layer4", 10, iou_threshold=NAN), E.InputError,
         ("iou_threshold", "nan"), "<= 1"),
    Case("dissect:iou_threshold-above-one", lambda: dis("layer4", 10, iou_threshold=5), E.InputError,
         ("iou_threshold",), "<= 1"),
    Case("dissect:iou_threshold-minus-inf", lambda: dis("layer4", 10, iou_threshold=-INF), E.InputError,
         ("iou_threshold",), "<= 1"),
    Case("dissect:iqr_threshold-inf", lambda: dis("layer4", 10, iqr_threshold=INF), E.InputError,
         ("iqr_threshold",), "<= 1"),
    Case("dissect:iqr_threshold-str", lambda: dis("layer4", 10, iqr_threshold="0.01"), E.ArgumentTypeError,
         ("iqr_threshold",), "finite number"),
    Case("dissect:min_frequency-negative", lambda: dis("layer4", 10, min_frequency=-1e-3), E.InputError,
         ("min_frequency",), "from 0 to 1"),
    Case("dissect:max_hist_bytes-zero", lambda: dis("layer4", 10, max_hist_bytes=0), E.InputError,
         ("max_hist_bytes",), ">= 1"),
    Case("dissect:parts-str", lambda: dis("layer4", 10, parts="yes"), E.ArgumentTypeError, ("parts",),
         "parts=True or parts=False"),
    Case("dissect:unknown-option", lambda: dis("layer4", 10, bin=3), E.UnknownNameError, ("bin",),
         "options are: resolution, bins"),
    Case("dissect:options-not-DissectOptions", lambda: dis("layer4", 10, options={"bins": 3}),
         E.ArgumentTypeError, ("options",), "core.DissectOptions"),
    Case("dissect:options-and-keywords", lambda: dis("layer4", 10, options=DissectOptions(), bins=3),
         E.ArgumentTypeError, ("options=",), "not both"),
    Case("DissectOptions:bins-negative", lambda: DissectOptions(bins=-5), E.InputError, ("bins", "-5"), ">= 1"),
    # ---------------------------------------------------------------- Dissection.units
    Case("units:labeling-unknown", lambda: units(labeling="best"), E.UnknownNameError, ("labeling", "best"),
         "'reference', 'max-iou'"),
    Case("units:pixel_accuracy-above-one", lambda: units(pixel_accuracy=75), E.InputError, ("pixel_accuracy",),
         "from 0 to 1"),
    Case("units:pixel_accuracy-nan", lambda: units(pixel_accuracy=NAN), E.InputError, ("pixel_accuracy",),
         "from 0 to 1"),
    Case("units:pixel_accuracy-with-max-iou", lambda: units(labeling="max-iou", pixel_accuracy=0.75), E.InputError,
         ("pixel_accuracy", "labeling='reference'"), "drop pixel_accuracy"),
    Case("units:concepts-unknown", lambda: units(concepts=["unicorn"]), E.UnknownNameError, ("concepts", "unicorn"),
         "give concepts from those labels"),
    Case("units:concepts-empty", lambda: units(concepts=[]), E.InputError, ("concepts",), "at least one name"),
    Case("units:layer-not-dissected", lambda: dissection().units("layer6"), E.UnknownNameError,
         ("layer6", "layer4"), "one of the dissected layers"),
    Case("units:exclude-out-of-range", lambda: units(exclude=[7]), E.UnitIndexError, ("exclude", "[7]"),
         "valid: 0..3"),
    Case("units:exclude-fraction", lambda: units(exclude=[1.7]), E.InputError, ("exclude", "1.7"), "not rounded"),
    # ---------------------------------------------------------------- Edit
    Case("Edit:mode-unknown", lambda: Edit("layer4", [1], "erase"), E.InputError, ("mode", "erase"),
         "mode='ablate' or mode='insert'"),
    Case("Edit:layer-not-str", lambda: Edit(4, [1]), E.ArgumentTypeError, ("layer",), "Edit('layer4'"),
    Case("Edit:units-string", lambda: Edit("layer4", "3"), E.InputError, ("units", "'3'"), "as ints"),
    Case("Edit:units-fraction", lambda: Edit("layer4", [1.7]), E.InputError, ("units", "1.7"), "not rounded"),
    Case("Edit:units-negative", lambda: Edit("layer4", [-1]), E.UnitIndexError, ("units", "-1"), "count from 0"),
    Case("Edit:units-empty", lambda: Edit("layer4", []), E.InputError, ("unit list", "layer4"),
         "at least one unit index"),
    Case("Edit:units-nan", lambda: Edit("layer4", [NAN]), E.InputError, ("units", "nan"), "not rounded"),
    Case("Edit:units-bool-mask", lambda: Edit("layer4", np.array([True, False])), E.InputError, ("units",),
         "np.nonzero(mask)[0]"),
    Case("Edit:insert-without-value", lambda: Edit("layer4", [1], "insert"), E.InputError, ("value=",),
         "insertion_constants"),
    Case("Edit:value-nan", lambda: Edit("layer4", [1], "insert", NAN), E.InputError, ("value", "NaN"),
         "finite numbers"),
    Case("Edit:value-inf", lambda: Edit("layer4", [1, 2], "insert", [1.0, INF]), E.InputError, ("value",),
         "finite numbers"),
    Case("Edit:value-wrong-length", lambda: Edit("layer4", [1, 2], "insert", [1.0, 2.0, 3.0]), E.InputError,
         ("value", "got 3"), "give value 1 or 2 values"),
    Case("Edit:value-str", lambda: Edit("layer4", [1], "insert", "big"), E.ArgumentTypeError, ("value",),
         "as numbers"),
    Case("Edit:mask-empty", lambda: Edit("layer4", [1], mask=torch.zeros(0, 0)), E.InputError, ("mask", "empty"),
         "at least one row"),
    Case("Edit:mask-nan", lambda: Edit("layer4", [1], mask=mask(value=NAN)), E.InputError, ("mask", "NaN"),
         "values in [0, 1]"),
    Case("Edit:mask-above-one", lambda: Edit("layer4", [1], mask=mask(value=2.0)), E.InputError, ("mask", "[0, 1]"),
         "clip mask"),
    Case("Edit:mask-negative", lambda: Edit("layer4", [1], mask=mask(value=-0.5)), E.InputError, ("mask",),
         "clip mask"),
    Case("Edit:mask-1d", lambda: Edit("layer4", [1], mask=torch.ones(8)), E.InputError, ("mask", "(8,)"),
         "one mask per sample"),
    Case("Edit:mask-two-channels", lambda: Edit("layer4", [1], mask=torch.ones(1, 2, 8, 8)), E.InputError,
         ("mask", "(1, 2, 8, 8)"), "one mask per sample"),
    Case("Edit:mask-str", lambda: Edit("layer4", [1], mask="all"), E.ArgumentTypeError, ("mask",), "as numbers"),
    Case("Edit:alpha-above-one", lambda: Edit("layer4", [1], alpha=5.0), E.InputError, ("alpha", "5"),
         "from 0 to 1"),
    Case("Edit:alpha-nan", lambda: Edit("layer4", [1], alpha=NAN), E.InputError, ("alpha",), "finite numbers"),
    Case("Edit:alpha-negative", lambda: Edit("layer4", [1, 2], alpha=[0.5, -0.5]), E.InputError, ("alpha",),
         "from 0 to 1"),
    Case("Edit:alpha-wrong-length", lambda: Edit("layer4", [1, 2], alpha=[0.5, 0.5, 0.5]), E.InputError,
         ("alpha", "got 3"), "1 or 2 values"),
    # ---------------------------------------------------------------- generate
    Case("generate:layer-unknown", lambda: gen([Edit("layer99", [1])]), E.UnknownNameError, ("layer99",),
         "available layers"),
    Case("generate:unit-out-of-range-layer2", lambda: gen([Edit("layer2", [200])]), E.UnitIndexError,
         ("200", "layer2", "128 units"), "valid: 0..127"),
    Case("generate:mask-wrong-batch", lambda: gen([Edit("layer4", [1], mask=torch.ones(3, 8, 8))], z(2)),
         E.InputError, ("mask", "N = 1 or 2"), "one mask per sample"),
    Case("generate:z-wrong-width", lambda: gen([], torch.zeros(2, 7)), E.InputError, ("z", "N x 128"),
         "one row of 128"),
    Case("generate:z-1d", lambda: gen([], torch.zeros(128)), E.InputError, ("z", "(128,)"), "one row of 128"),
    Case("generate:z-nan", lambda: gen([], torch.full((1, 128), NAN)), E.InputError, ("z", "NaN"), "finite"),
    Case("generate:z-integer", lambda: gen([], torch.zeros(1, 128, dtype=torch.long)), E.ArgumentTypeError,
         ("z", "int64"), "z.float()"),
    Case("generate:z-not-tensor", lambda: gen([], np.zeros((1, 128))), E.ArgumentTypeError, ("z", "ndarray"),
         "torch.randn"),
    Case("generate:z-no-rows", lambda: gen([], torch.zeros(0, 128)), E.InputError, ("z", "no rows"),
         "at least one sample"),
    Case("generate:edits-one-Edit", lambda: gen(Edit("layer4", [1])), E.ArgumentTypeError, ("edits",),
         "edits=[edit]"),
    Case("generate:edits-not-Edit", lambda: gen([{"layer": "layer4", "units": [1]}]), E.ArgumentTypeError,
         ("edits", "dict"), "core.Edit("),
    Case("generate:capture-unknown", lambda: gen([], capture=["layer42"]), E.UnknownNameError, ("layer42",),
         "available layers"),
    Case("generate:generator-not-a-module", lambda: core.generate("town", z()), E.ProtocolError, ("generator",),
         "torch.nn.Module"),
    # ---------------------------------------------------------------- insertion constants
    Case("insertion_constants:n_samples-zero", lambda: k_of(n_samples=0), E.InputError, ("n_samples",), ">= 1"),
    Case("insertion_constants:n_samples-fraction", lambda: k_of(n_samples=0.5), E.InputError, ("n_samples",),
         ">= 1"),
    Case("insertion_constants:n_samples-huge", lambda: k_of(n_samples=10 ** 9), E.BudgetError,
         ("n_samples", "days"), "lower n_samples"),
    Case("insertion_constants:batch_size-zero", lambda: k_of(batch_size=0), E.InputError, ("batch_size",), ">= 1"),
    Case("insertion_constants:seed-fraction", lambda: k_of(seed=0.5), E.InputError, ("seed",), "whole number"),
    Case("insertion_constants:layer-unknown", lambda: k_of(layer="layer0"), E.UnknownNameError, ("layer0",),
         "available layers"),
    Case("insertion_constants:concept-unknown", lambda: k_of(concept="unicorn"), E.UnknownNameError,
         ("concept", "unicorn"), "the segmenter knows"),
    Case("insertion_constants:concept-unlabeled", lambda: k_of(concept="-"), E.UnknownNameError, ("concept", "'-'"),
         "the segmenter knows"),
    Case("insertion_constants:n_samples-zero-uncached",
         lambda: core.insertion_constants(town(), segmenter(), "layer4", "door", n_samples=0, cache=False),
         E.InputError, ("n_samples",), ">= 1"),
    # ---------------------------------------------------------------- ACE
    Case("ace:n_steps-zero", lambda: ace(n_steps=0), E.InputError, ("n_steps",), ">= 1"),
    Case("ace:n_steps-negative", lambda: ace(n_steps=-1), E.InputError, ("n_steps",), ">= 1"),
    Case("ace:n_steps-fraction", lambda: ace(n_steps=1.5), E.InputError, ("n_steps",), ">= 1"),
    Case("ace:n_steps-huge", lambda: ace(n_steps=10 ** 8), E.BudgetError, ("n_steps", "days"), "lower n_steps"),
    Case("ace:batch_size-zero", lambda: ace(batch_size=0), E.InputError, ("batch_size",), ">= 1"),
    Case("ace:lr-nan", lambda: ace(lr=NAN), E.InputError, ("lr", "nan"), "> 0"),
    Case("ace:lr-zero", lambda: ace(lr=0), E.InputError, ("lr",), "> 0"),
    Case("ace:lr-negative", lambda: ace(lr=-0.01), E.InputError, ("lr",), "> 0"),
    Case("ace:l2-inf", lambda: ace(l2=INF), E.InputError, ("l2",), ">= 0"),
    Case("ace:sampling-unknown", lambda: ace(sampling="random"), E.UnknownNameError, ("sampling", "random"),
         "'paper', 'image'"),
    Case("ace:init-unknown", lambda: ace(init="random"), E.UnknownNameError, ("init", "random"),
         "'iou', 'uniform'"),
    Case("ace:init-wrong-length", lambda: ace(init=np.ones(3)), E.InputError, ("init", "256"), "give init 256"),
    Case("ace:pool_size-zero", lambda: ace(pool_size=0), E.InputError, ("pool_size",), ">= 1"),
    Case("ace:pool_size-huge", lambda: ace(pool_size=10 ** 9), E.BudgetError, ("pool_size", "days"),
         "lower pool_size"),
    Case("ace:top_n-zero", lambda: ace(top_n=0), E.InputError, ("top_n",), ">= 1"),
    Case("ace:dissect_samples-one", lambda: ace(dissect_samples=1), E.InputError, ("dissect_samples",), ">= 2"),
    Case("ace:k-wrong-length", lambda: ace(k=np.ones(5)), E.InputError, ("k", "got 5"), "give k 256"),
    Case("ace:k-nan", lambda: ace(k=np.full(256, NAN)), E.InputError, ("k", "NaN"), "finite numbers"),
    Case("ace:iou-wrong-length", lambda: ace(iou=np.ones(10)), E.InputError, ("iou", "256"), "give iou 256"),
    Case("ace:progress-not-callable", lambda: ace(progress="bar"), E.ArgumentTypeError, ("progress",),
         "as a function"),
    Case("ace:layer-unknown", lambda: core.ace(town(), segmenter(), "layer44", "door"), E.UnknownNameError,
         ("layer44",), "available layers"),
    Case("ace:n_steps-zero-cached", lambda: core.ace(town(), segmenter(), "layer4", "door", n_steps=0,
                                                      cached_only=True), E.InputError, ("n_steps",), ">= 1"),
    Case("ace:unknown-option", lambda: core.ace(town(), segmenter(), "layer4", "door", steps=3,
                                                cache=False), E.UnknownNameError, ("steps",),
         "options are: n_steps"),
    Case("ace:k_samples-zero", lambda: core.ace(town(), segmenter(), "layer4", "door", k_samples=0,
                                                cache=False), E.InputError, ("k_samples",), ">= 1"),
    Case("ace:cache-not-bool", lambda: core.ace(town(), segmenter(), "layer4", "door", cache="yes"),
         E.ArgumentTypeError, ("cache",), "True or False"),
    # ---------------------------------------------------------------- ablation curve, causal effect
    Case("ablation_curve:counts-empty", lambda: curve(counts=()), E.InputError, ("counts",), "(1, 5, 10)"),
    Case("ablation_curve:counts-zero", lambda: curve(counts=(0, 1)), E.InputError, ("counts",), ">= 1"),
    Case("ablation_curve:counts-fraction", lambda: curve(counts=(1.5,)), E.InputError, ("counts",), ">= 1"),
    Case("ablation_curve:rankings-empty", lambda: curve(rankings={}), E.InputError, ("rankings",),
         "at least one unit list"),
    Case("ablation_curve:rankings-list", lambda: curve(rankings=[1, 2]), E.ArgumentTypeError, ("rankings",),
         "rankings={'ace'"),
    Case("ablation_curve:ranking-out-of-range", lambda: curve(rankings={"ace": [1, 999]}), E.UnitIndexError,
         ("rankings['ace']", "999"), "valid: 0..255"),
    Case("ablation_curve:n_samples-zero", lambda: curve(n_samples=0), E.InputError, ("n_samples",), ">= 1"),
    Case("ablation_curve:batch_size-zero", lambda: curve(batch_size=0), E.InputError, ("batch_size",), ">= 1"),
    Case("ablation_curve:concept-unknown", lambda: curve(concept="dragon"), E.UnknownNameError, ("dragon",),
         "the segmenter knows"),
    Case("causal_effect:n_samples-zero", lambda: effect(n_samples=0), E.InputError, ("n_samples",), ">= 1"),
    Case("causal_effect:value-nan", lambda: effect(value=NAN), E.InputError, ("value", "NaN"), "finite numbers"),
    Case("causal_effect:value-wrong-length", lambda: effect(value=np.ones(5)), E.InputError, ("value", "got 5"),
         "1 or 2 or 256 values"),
    Case("causal_effect:units-empty", lambda: effect(units=[]), E.InputError, ("unit list", "layer4"),
         "at least one unit index"),
    Case("causal_effect:mask-nan", lambda: effect(mask=mask(value=NAN)), E.InputError, ("mask", "NaN"),
         "values in [0, 1]"),
    Case("causal_effect:batch_size-zero", lambda: effect(batch_size=0), E.InputError, ("batch_size",), ">= 1"),
    # ---------------------------------------------------------------- context study, tracing
    Case("context_study:brush-zero", lambda: ctx(brush=0), E.InputError, ("brush", "0"), "brush=1, 2"),
    Case("context_study:brush-fraction", lambda: ctx(brush=1.5), E.InputError, ("brush", "1.5"), "brush=1, 2"),
    Case("context_study:scale-nan", lambda: ctx(scale=NAN), E.InputError, ("scale", "nan"), "> 0"),
    Case("context_study:scale-negative", lambda: ctx(scale=-3), E.InputError, ("scale",), "> 0"),
    Case("context_study:n_images-zero", lambda: ctx(n_images=0), E.InputError, ("n_images",), ">= 1"),
    Case("context_study:value-inf", lambda: ctx(value=INF), E.InputError, ("value",), "finite numbers"),
    Case("context_study:units-out-of-range", lambda: ctx(units=[256]), E.UnitIndexError, ("256", "layer4"),
         "valid: 0..255"),
    Case("context_study:classify-not-callable", lambda: ctx(classify="majority"), E.ArgumentTypeError,
         ("classify",), "as a function"),
    Case("context_over_seeds:seeds-empty", lambda: context.context_over_seeds(
        town(), segmenter(), "layer4", [1], 1.0, "door", seeds=()), E.InputError, ("seeds",), "seeds=(4, 5, 6)"),
    Case("context_over_seeds:seeds-fraction", lambda: context.context_over_seeds(
        town(), segmenter(), "layer4", [1], 1.0, "door", seeds=(4.5,)), E.InputError, ("seeds", "4.5"),
         "whole number"),
    Case("unit_values:scale-str", lambda: context.unit_values(np.ones(8), [1], "big"), E.InputError,
         ("scale", "big"), "'p99'"),
    Case("unit_values:units-beyond-k", lambda: context.unit_values(np.ones(8), [9], 3.0), E.InputError,
         ("units", "[9]", "k has 8"), "give k for every unit"),
    Case("trace_effect:edit-not-Edit", lambda: core.trace_effect(town(), ("layer4", [1]), z()),
         E.ArgumentTypeError, ("edit",), "core.Edit("),
    Case("trace_effect:last-layer", lambda: core.trace_effect(town(), Edit("output_64x64", [0]), z()),
         E.InputError, ("output_64x64",), "edit an earlier layer"),
    Case("trace_effect:z-nan", lambda: core.trace_effect(town(), Edit("layer4", [1]), torch.full((1, 128), NAN)),
         E.InputError, ("z", "NaN"), "finite"),
    Case("trace_effect:scales-missing", lambda: core.trace_effect(town(), Edit("layer8", [1]), z(),
                                                                   scales={"layer9": torch.ones(16)}),
         E.InputError, ("scales", "layer10"), "channel_scales"),
    Case("channel_scales:n_samples-zero", lambda: core.engine.causal.channel_scales(town(), ["layer4"], 0),
         E.InputError, ("n_samples",), ">= 1"),
    # ---------------------------------------------------------------- painting
    Case("paint_edits:mode-unknown", lambda: painted(mode="erase"), E.UnknownNameError, ("mode", "erase"),
         "'add', 'remove'"),
    Case("paint_edits:scale-zero", lambda: painted(scale=0), E.InputError, ("scale",), "> 0"),
    Case("paint_edits:scale-nan", lambda: painted(scale=NAN), E.InputError, ("scale", "nan"), "> 0"),
    Case("paint_edits:cells-nan", lambda: painted(cells=np.full((8, 8), NAN)), E.InputError, ("cells", "NaN"),
         "values in [0, 1]"),
    Case("paint_edits:cells-outside-0-1", lambda: painted(cells=np.full((8, 8), 3.0)), E.InputError,
         ("cells", "[0, 1]"), "clip cells"),
    Case("paint_edits:cells-1d", lambda: painted(cells=np.ones(8)), E.InputError, ("cells", "(8,)"),
         "one mask per sample"),
    Case("paint_edits:cells-batch", lambda: painted(cells=np.ones((2, 8, 8))), E.InputError, ("cells",),
         "the painted cells of one image"),
    Case("paint_edits:units-empty", lambda: painted(units=[]), E.InputError, ("units",), "iou_units("),
    Case("paint_edits:units-fraction", lambda: painted(units=[1.7]), E.InputError, ("units", "1.7"), "not rounded"),
    Case("paint_edits:units-beyond-k", lambda: painted(k=np.ones(4), units=[1, 9]), E.UnitIndexError,
         ("units", "[9]", "k has 4"), "insertion_constants("),
    Case("paint_edits:k-nan", lambda: painted(k=np.full(256, NAN)), E.InputError, ("k", "NaN"), "finite numbers"),
    Case("stroke_coverage:paint-nan", lambda: paint.stroke_coverage(np.full((64, 64), NAN), (8, 8)), E.InputError,
         ("paint",), "clip paint"),
    Case("stroke_coverage:paint-outside-0-1", lambda: paint.stroke_coverage(np.full((64, 64), 2.0), (8, 8)),
         E.InputError, ("paint",), "clip paint"),
    Case("stroke_coverage:paint-empty", lambda: paint.stroke_coverage(np.zeros((0, 0)), (8, 8)), E.InputError,
         ("paint", "empty"), "drawing's pixels"),
    Case("stroke_coverage:grid-zero", lambda: paint.stroke_coverage(np.zeros((64, 64)), (0, 8)), E.InputError,
         ("grid rows",), ">= 1"),
    Case("stroke_coverage:grid-not-pair", lambda: paint.stroke_coverage(np.zeros((64, 64)), 8),
         E.ArgumentTypeError, ("grid",), "layer_grid("),
    Case("iou_units:n-zero", lambda: unit_choice.iou_units(dissection(), "layer4", "door", 0), E.InputError,
         ("n",), ">= 1"),
    Case("iou_units:concept-unknown", lambda: unit_choice.iou_units(dissection(), "layer4", "castle"),
         E.UnknownNameError, ("castle",), "one of those names"),
    # ---------------------------------------------------------------- comparisons, evaluation
    Case("compare_models:n_samples-zero", lambda: comparisons.compare_models(["toyworld/town"], segmenter(),
                                                                             ["layer4"], n_samples=0),
         E.InputError, ("n_samples",), ">= 2"),
    Case("compare_models:names-empty", lambda: comparisons.compare_models([], segmenter(), ["layer4"]),
         E.InputError, ("names",), "at least one model"),
    Case("compare_models:names-str", lambda: comparisons.compare_models("toyworld/town", segmenter(), ["layer4"]),
         E.ArgumentTypeError, ("names",), "wrap it in a list"),
    Case("dissect_models:n_samples-huge", lambda: comparisons.dissect_models(["a", "b"], segmenter(), ["layer4"],
                                                                             n_samples=10 ** 9),
         E.BudgetError, ("n_samples", "days"), "lower n_samples"),
    Case("concept_map:iou_threshold-nan", lambda: comparisons.concept_map({"town": dissection()}, iou_threshold=NAN),
         E.InputError, ("iou_threshold",), "<= 1"),
    Case("generator_quality:n-one", lambda: evaluation.generator_quality(town(), None, None, n=1), E.InputError,
         ("n",), "n as a whole number >= 2"),
    Case("generator_quality:n-huge", lambda: evaluation.generator_quality(town(), None, None, n=10 ** 9),
         E.BudgetError, ("n=", "days"), "lower n"),
    Case("generator_quality:batch-zero", lambda: evaluation.generator_quality(town(), None, None, n=10, batch=0),
         E.InputError, ("batch",), ">= 1"),
    Case("real_stats:scene-unknown", lambda: evaluation.real_stats(None, ["castle"], 10, 0), E.UnknownNameError,
         ("scene", "castle"), "'town', 'room', 'lake'"),
    Case("real_stats:n-zero", lambda: evaluation.real_stats(None, ["town"], 0, 0), E.InputError, ("n",), ">= 2"),
    Case("segmentation_confusion:n_per_scene-zero", lambda: evaluation.segmentation_confusion(
        segmenter(), n_per_scene=0), E.InputError, ("n_per_scene",), ">= 1"),
    Case("degrade:kind-unknown", lambda: evaluation.degrade(torch.zeros(1, 3, 8, 8), "sharpen", 1.0),
         E.UnknownNameError, ("kind", "sharpen"), "'blur', 'noise', 'color'"),
    Case("degrade:strength-nan", lambda: evaluation.degrade(torch.zeros(1, 3, 8, 8), "blur", NAN), E.InputError,
         ("strength",), "from 0 to 64"),
    Case("feature_stats:min_images-one", lambda: core.feature_stats(None, [], min_images=1), E.InputError,
         ("min_images",), ">= 2"),
    Case("PatchSet:patch-bigger-than-min_res", lambda: swd.PatchSet(patch=32, min_res=16), E.InputError,
         ("patch", "32"), "from 1 to 16"),
    Case("PatchSet:min_res-not-power-of-two", lambda: swd.PatchSet(min_res=12), E.InputError, ("min_res", "12"),
         "min_res=16"),
    Case("sliced_wasserstein:n_dirs-zero", lambda: swd.sliced_wasserstein(torch.zeros(4, 3), torch.zeros(4, 3),
                                                                           n_dirs=0), E.InputError, ("n_dirs",),
         ">= 1"),
    Case("generator_patches:n-zero", lambda: swd.generator_patches(town(), 0), E.InputError, ("n",), ">= 1"),
    # ---------------------------------------------------------------- outputs
    Case("write_outputs:out_dir-is-a-file", lambda: report.write_outputs(dissection(), __file__), E.InputError,
         ("out_dir", "is a file"), "new or existing directory"),
    Case("write_outputs:strip_units-negative", lambda: report.write_outputs(dissection(), OUT,
                                                                            strip_units=-1),
         E.InputError, ("strip_units",), ">= 0"),
    Case("write_outputs:unknown-option", lambda: report.write_outputs(dissection(), OUT, label="x"),
         E.UnknownNameError, ("label",), "options are: concepts"),
    Case("write_outputs:labeling-unknown", lambda: report.write_outputs(dissection(), OUT,
                                                                        labeling="best"),
         E.UnknownNameError, ("labeling", "best"), "'reference', 'max-iou'"),
    Case("write_outputs:categories-a-list", lambda: report.write_outputs(dissection(), OUT, categories=["door"]),
         E.ArgumentTypeError, ("categories", "list"), "label_categories"),
    Case("write_outputs:categories-unknown-label", lambda: report.write_outputs(dissection(), OUT,
                                                                              categories={"object": ["unicorn"]}),
         E.UnknownNameError, ("unicorn",), "give concepts from those labels"),
    Case("activation_histograms:bins-zero", lambda: visualize.activation_histograms(town(), "layer4", bins=0),
         E.InputError, ("bins",), "from 1 to 100000"),
    Case("activation_histograms:layer-unknown", lambda: visualize.activation_histograms(town(), "layer77"),
         E.UnknownNameError, ("layer77",), "available layers"),
    Case("png_bytes:scale-zero", lambda: visualize.png_bytes(np.zeros((4, 4, 3), np.uint8), 0), E.InputError,
         ("scale",), "from 1 to 64"),
    Case("z_range:seed-fraction", lambda: core.sampling.z_range(0.5, 0, 4, 128), E.InputError, ("seed", "0.5"),
         "whole number"),
]

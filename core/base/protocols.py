"""The protocols every GANatomy analysis accepts.

Anything that meets them works, including models written outside this repository.

**Generator** — a ``torch.nn.Module`` with an int attribute ``z_dim``; ``forward(z)`` with
``z`` of shape N x z_dim returns images N x 3 x H x W in [-1, 1]; its layers are addressed by
their ``named_modules()`` names (e.g. ``"layer4"``).

**Segmenter** — an object with ``labels: list[str]`` (index 0 = unlabeled);
``segment(images)`` returns a long tensor N x H' x W' (one label per pixel) or N x K x H' x W'
(K label channels per pixel, 0 = none, for multi-label segmenters); ``scores(images)`` returns
a float tensor N x len(labels) x H' x W' of differentiable per-label probabilities (used by
the causal-effect optimisation). Optional: ``stuff``, the labels of amorphous regions (sky,
road, wall...), which the concept maps can hide to show objects only.

**Classifier** — a ``torch.nn.Module`` with an int attribute ``input_size`` (the square image side it
takes); ``forward(images)`` with images N x 3 x input_size x input_size in [-1, 1] (as a generator
makes them; any normalisation of its own is inside the model) returns logits N x classes; its layers
are addressed by their ``named_modules()`` names. Optional: ``classes`` (class names), ``layer_names``.

**Probe set** — images with exact concept labels, what a classifier is dissected on: ``labels``
(concept names; index 0 = none, never a concept), ``size`` (image side), ``len(probe)`` images, and
``batch(start, stop)`` returning ``(images, labels)``: float images N x 3 x size x size in [-1, 1] and
an integer label tensor N x K x S x S (K label channels per pixel, 0 = none: an object, its parts, its
colour and the scene type can all cover one pixel, each concept at most once per pixel; N x S x S
for one channel) at the label resolution S. Optional: ``categories`` ({category: [labels]}),
``cache_key`` (its identity in the cache).

:func:`check_generator` and :func:`check_segmenter` validate an object and, with a probe,
its outputs, raising :class:`ProtocolError` with a message that says what was expected.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from core.base.devices import device_of
from core.base.errors import GanatomyError, ProtocolError

__all__ = ["call_generator", "Generator", "Segmenter", "Classifier", "ProbeSet", "ProtocolError", "check_generator",
           "check_segmenter", "check_classifier", "check_probe", "check_probe_batch",
           "check_segmentation", "check_finite", "model_name"]


@runtime_checkable
class Generator(Protocol):
    z_dim: int

    def forward(self, z: torch.Tensor) -> torch.Tensor: ...

    def named_modules(self): ...


@runtime_checkable
class Segmenter(Protocol):
    labels: list

    def segment(self, images: torch.Tensor) -> torch.Tensor: ...

    def scores(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Classifier(Protocol):
    input_size: int

    def forward(self, images: torch.Tensor) -> torch.Tensor: ...

    def named_modules(self): ...


@runtime_checkable
class ProbeSet(Protocol):
    labels: list
    size: int

    def __len__(self) -> int: ...

    def batch(self, start: int, stop: int): ...


def check_classifier(model) -> None:
    """Raise :class:`ProtocolError` unless ``model`` meets the classifier protocol (no forward run)."""
    if not isinstance(model, torch.nn.Module):
        raise ProtocolError(f"a classifier must be a torch.nn.Module, got {type(model).__name__}",
                            fix="wrap the network in a torch.nn.Module with an int attribute input_size")
    size = getattr(model, "input_size", None)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ProtocolError(f"a classifier needs a positive int attribute input_size (the image side it takes), "
                            f"got {size!r}", fix="set model.input_size, e.g. 224")


def check_probe(probe, size: int | None = None) -> None:
    """Raise :class:`ProtocolError` unless ``probe`` meets the probe-set protocol; with ``size``, its
    images must have that side (a classifier's ``input_size``)."""
    labels = getattr(probe, "labels", None)
    if not isinstance(labels, (list, tuple)) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise ProtocolError(f"a probe set needs `labels`: concept names with index 0 = none; got {labels!r:.80}")
    if not callable(getattr(probe, "batch", None)) or not callable(getattr(probe, "__len__", None)):
        raise ProtocolError("a probe set needs `batch(start, stop)` -> (images, masks) and `len(probe)`")
    side = getattr(probe, "size", None)
    if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
        raise ProtocolError(f"a probe set needs a positive int attribute size (its image side), got {side!r}")
    if size is not None and side != size:
        raise ProtocolError(f"the probe images are {side} x {side} but the classifier takes {size} x {size}",
                            fix=f"render the probe set at the network's input size ({size})")


def check_probe_batch(images, labels, n: int, n_labels: int, size: int) -> None:
    """Validate one ``probe.batch`` output of ``n`` images."""
    if not (isinstance(images, torch.Tensor) and images.is_floating_point()
            and tuple(images.shape) == (n, 3, size, size)):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ProtocolError(f"probe.batch must return float images ({n}, 3, {size}, {size}); got {got}")
    check_segmentation(labels, n, n_labels, what="probe.batch (its labels)")


def check_generator(gen, probe: bool = True, n: int = 2) -> None:
    """Raise :class:`ProtocolError` unless ``gen`` meets the generator protocol.

    With ``probe``, ``gen`` runs once on ``n`` fixed codes (drawn from their own seeded random
    generator, so the global random state is not consumed): the output must be float images
    N x 3 x H x W, all finite (NaN or inf means broken or overflowing weights)."""
    if not isinstance(gen, torch.nn.Module):
        raise ProtocolError(f"a generator must be a torch.nn.Module, got {type(gen).__name__}")
    z_dim = getattr(gen, "z_dim", None)
    if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim <= 0:
        raise ProtocolError(f"a generator needs a positive int attribute z_dim, got {z_dim!r}")
    if not probe:
        return
    with torch.no_grad():
        z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(0), device="cpu").to(device_of(gen))
        out = gen(z)
    if not (isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[0] == n
            and out.shape[1] == 3 and out.is_floating_point()):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ProtocolError(f"generator forward(z) must return float images N x 3 x H x W; "
                            f"for z of shape ({n}, {z_dim}) it returned {shape}")
    finite = torch.isfinite(out)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        nan = int(torch.isnan(out).sum())
        raise ProtocolError(f"generator forward(z) returned non-finite images: {bad:,} of {out.numel():,} "
                            f"values are NaN or inf ({nan:,} NaN) for z of shape ({n}, {z_dim}); its weights "
                            "overflow or are broken")


def model_name(model) -> str:
    """How a message names a model: its catalog name or file when it was loaded by GANatomy, else its class."""
    for attr in ("name", "source"):
        v = getattr(model, attr, None)
        if isinstance(v, str) and v:
            return v
    return type(model).__name__


def check_finite(generator, images: torch.Tensor, outputs: dict | None = None, *, seed: int | None = None,
                 indices=None) -> None:
    """Refuse (:class:`ProtocolError`) a batch whose images, or captured layer ``outputs``, hold NaN
    or inf: the message names the model, the samples (``indices`` of ``seed``, else positions in the
    batch) and the first layer that went non-finite, so nothing non-finite is counted, cached or
    drawn. One reduction per tensor (a host sync per batch on an accelerator). A batch that is not
    float images N x 3 x H x W (N: one per sample of ``indices``, when given) is refused first."""
    n = len(indices) if indices is not None else None
    if not (isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[1] == 3
            and images.is_floating_point() and (n is None or images.shape[0] == n)):
        got = (f"a {images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else f"a {type(images).__name__}")
        raise ProtocolError(f"generator {model_name(generator)} returned {got}" + (f" for {n} codes" if n else "")
                            + "; forward(z) must return float images N x 3 x H x W, one per code; nothing from this "
                              "batch was counted, cached or drawn",
                            fix="fix the model's forward (a fixed model gets fresh results)")
    bad = ~torch.isfinite(images.detach()).flatten(1).all(1)
    layers = []
    for name, out in (outputs or {}).items():
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            b = ~torch.isfinite(out.detach()).flatten(1).all(1)
            if bool(b.any()):
                layers.append(name)
                bad = bad | b.to(bad.device)
    if not bool(bad.any()):
        return
    rows = torch.nonzero(bad).view(-1).tolist()
    if indices is not None:
        idx = [int(indices[r]) for r in rows]
        which = (f"samples {', '.join(map(str, idx[:8]))}{' …' if len(idx) > 8 else ''} of seed {seed} "
                 f"(z = core.base.sampling.z_at({seed}, {idx[:8]}, {generator.z_dim}))")
    else:
        which = f"images {', '.join(map(str, rows[:8]))}{' …' if len(rows) > 8 else ''} of the batch"
    at = f" (first at layer {layers[0]!r})" if layers else ""
    raise ProtocolError(f"generator {model_name(generator)} returned NaN or inf for {which}{at}; nothing from this "
                        f"batch was counted, cached or drawn",
                        fix="the model overflows or is broken for these codes: fix its forward or weights (a fixed "
                            "model gets fresh results), or use other samples")


def check_segmentation(seg: torch.Tensor, n: int, n_labels: int, what="segment(images)") -> None:
    """Validate a ``segment`` output for a batch of ``n`` images."""
    if not isinstance(seg, torch.Tensor):
        raise ProtocolError(f"{what} must return a torch.Tensor, got {type(seg).__name__}")
    if seg.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ProtocolError(f"{what} must return an integer (long) label tensor N x H x W or "
                            f"N x K x H x W; got dtype {seg.dtype}")
    if seg.dim() not in (3, 4) or seg.shape[0] != n:
        raise ProtocolError(f"{what} must return N x H x W or N x K x H x W with N = {n}; "
                            f"got shape {tuple(seg.shape)}")
    if seg.numel() and (int(seg.min()) < 0 or int(seg.max()) >= n_labels):
        raise ProtocolError(f"{what} returned label indices outside [0, {n_labels - 1}] "
                            f"(len(labels) = {n_labels}): min {int(seg.min())}, max {int(seg.max())}")


def check_segmenter(seg, probe_images: torch.Tensor | None = None) -> None:
    """Raise :class:`ProtocolError` unless ``seg`` meets the segmenter protocol.

    With ``probe_images`` (N x 3 x H x W in [-1, 1]) the outputs are checked too.
    """
    labels = getattr(seg, "labels", None)
    if not isinstance(labels, (list, tuple)) or len(labels) < 2 or \
            not all(isinstance(x, str) for x in labels):
        raise ProtocolError("a segmenter needs `labels`: a list of label names with index 0 = "
                            f"unlabeled; got {labels!r:.80}")
    for name in ("segment", "scores"):
        if not callable(getattr(seg, name, None)):
            raise ProtocolError(f"a segmenter needs a callable `{name}(images)` method")
    if probe_images is None:
        return
    n = probe_images.shape[0]
    with torch.no_grad():
        s = seg.segment(probe_images)
        check_segmentation(s, n, len(labels))
        sc = seg.scores(probe_images)
    if not (isinstance(sc, torch.Tensor) and sc.is_floating_point() and sc.dim() == 4
            and sc.shape[0] == n and sc.shape[1] == len(labels)):
        shape = tuple(sc.shape) if isinstance(sc, torch.Tensor) else type(sc).__name__
        raise ProtocolError(f"scores(images) must return float N x {len(labels)} x H x W "
                            f"(one channel per label); got {shape}")


def call_generator(generator, z: torch.Tensor, *, seed: int | None = None, indices=None):
    """``generator(z)``, where an exception the model's own forward raises (not GANatomy's refusals,
    not running out of memory) becomes a :class:`ProtocolError` naming the model and the samples,
    so a page shows what failed and its fix, not "a bug in GANatomy"; nothing of the batch counts."""
    try:
        return generator(z)
    except (GanatomyError, MemoryError, torch.OutOfMemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of someone else's forward is reported as the model's
        which = (f"samples {indices[0]}..{indices[-1]} of seed {seed}" if indices is not None and len(indices)
                 else f"a batch of {len(z)} codes")
        raise ProtocolError(f"generator {model_name(generator)} failed on {which}: {type(e).__name__}: "
                            f"{str(e)[:200]}; nothing from this batch was counted, cached or drawn",
                            fix="fix the model's forward (a fixed model gets fresh results)") from e


"""Named hook points on a shared generator, safe for concurrent dashboard sessions.

A model held by ``st.cache_resource`` is shared by every session's thread. A forward hook
registered on one of its modules fires for *every* thread's forward pass, so an edit cannot
live on the module. Here each module gets at most one permanent, passive hook that looks up
the *calling thread's* current :class:`Trace`; a trace is entered for one call and only
affects forward passes run by the thread that entered it. The model itself is never mutated.

    with Trace(G, capture=["layer4", "layer6"], edits={"layer4": fn}) as tr:
        images = G(z)
    tr["layer4"]        # the (edited) output of layer4 for this call

``edits[name]`` is a function ``out -> new_out`` (see :mod:`core.engine.intervention`).
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable, Iterable

import torch
from torch import nn

from core.base.devices import device_of
from core.base.errors import UnknownNameError
from core.base.sampling import z_range

__all__ = ["Trace", "layer_names", "resolve_layers", "StopForward", "run_until", "layer_shape"]

_local = threading.local()
_install_lock = threading.Lock()
# model -> {layer name: hook handle}; weak so that dropping a model frees it
_installed: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (all requested layers captured)."""


def layer_names(model: nn.Module) -> list[str]:
    """The layers one can dissect or edit: ``model.layer_names`` when the model defines it
    (ProGAN: ``layer1 … layerN, output_RxR``), otherwise its top-level children."""
    names = getattr(model, "layer_names", None)
    if isinstance(names, (list, tuple)) and names:
        return list(names)
    return [n for n, _ in model.named_children()]


def resolve_layers(model: nn.Module, layers: Iterable[str] | str) -> list[str]:
    """Validate layer names; an unknown name raises ValueError listing the available layers."""
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise UnknownNameError(f"no layers given; available layers: {', '.join(layer_names(model))}")
    modules = dict(model.named_modules())
    bad = [x for x in layers if not isinstance(x, str) or x == "" or x not in modules]
    if bad:
        raise UnknownNameError(f"unknown layer{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                         f"available layers: {', '.join(layer_names(model))}")
    seen = []
    for x in layers:
        if x not in seen:
            seen.append(x)
    return seen


def _stack() -> list:
    st = getattr(_local, "stack", None)
    if st is None:
        st = _local.stack = []
    return st


def _make_hook(model_ref, name):
    def hook(module, inputs, output):
        st = getattr(_local, "stack", None)
        if not st:
            return None  # another thread's pass, or no trace: do nothing
        for tr in reversed(st):
            if tr.model_ref() is model_ref() and (name in tr.edits or name in tr.capture):
                return tr._fire(name, output)
        return None
    return hook


def _ensure_hooks(model: nn.Module, names: list[str]) -> None:
    with _install_lock:
        have = _installed.setdefault(model, {})
        modules = dict(model.named_modules())
        ref = weakref.ref(model)
        for n in names:
            if n not in have:
                have[n] = modules[n].register_forward_hook(_make_hook(ref, n))


class Trace:
    """Capture and/or edit named layer outputs for forward passes run by this thread.

    ``capture``: layer names whose outputs are recorded (``trace[name]``);
    ``edits``: {layer: fn(out) -> out} applied in this thread's passes only;
    ``detach``: store captured tensors detached (default) or keep the graph (optimisation);
    ``stop_after``: end the forward pass (``StopForward``) once every captured layer has fired —
    use :func:`run_until` to call the model in that mode.
    """

    def __init__(self, model: nn.Module, capture: Iterable[str] = (),
                 edits: dict[str, Callable] | None = None, detach: bool = True,
                 stop_after: bool = False):
        self.model_ref = weakref.ref(model)
        self.capture = resolve_layers(model, capture) if capture else []
        self.edits = dict(edits or {})
        if self.edits:
            resolve_layers(model, list(self.edits))
        self.detach = detach
        self.stop_after = stop_after
        self.outputs: dict[str, torch.Tensor] = {}
        _ensure_hooks(model, self.capture + [n for n in self.edits if n not in self.capture])

    def _fire(self, name, output):
        new = None
        if name in self.edits:
            new = self.edits[name](output)
            output = new
        if name in self.capture:
            self.outputs[name] = output.detach() if self.detach else output
            if self.stop_after and all(n in self.outputs for n in self.capture):
                raise StopForward
        return new

    def __getitem__(self, name):
        return self.outputs[name]

    def __enter__(self):
        _stack().append(self)
        return self

    def __exit__(self, *exc):
        st = _stack()
        if st and st[-1] is self:
            st.pop()
        elif self in st:
            st.remove(self)
        return False


def run_until(model: nn.Module, z: torch.Tensor, layers: Iterable[str],
              edits: dict[str, Callable] | None = None) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` for ``z``, running the generator only as far as needed."""
    with Trace(model, capture=layers, edits=edits, stop_after=True) as tr:
        try:
            model(z)
        except StopForward:
            pass
    return tr.outputs


_SHAPES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_shapes_lock = threading.Lock()


@torch.no_grad()
def layer_shape(model: nn.Module, layer: str) -> tuple[int, ...]:
    """The output shape of ``layer`` for one sample, without the batch axis ((units, rows,
    columns) for a featuremap): one probe per model and layer, remembered while the model lives."""
    with _shapes_lock:
        known = _SHAPES.setdefault(model, {})
        if layer in known:
            return known[layer]
    name = resolve_layers(model, [layer])[0]
    out = run_until(model, z_range(0, 0, 1, model.z_dim, device_of(model)), [name])
    shape = tuple(int(s) for s in out[name].shape[1:])
    with _shapes_lock:
        known[layer] = shape
    return shape

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

A layer's width (:func:`layer_units`) is read from its weights where its structure says it for
sure (one convolution followed by channel-wise modules, as in ProGAN), so that unit indices are
checked before any forward pass; otherwise one probe (:func:`layer_shape`) tells it.
"""
from __future__ import annotations

import copy
import hashlib
import threading
import weakref
from typing import Callable, Iterable

import torch
from torch import nn

from core.base.devices import device_of
from core.base.errors import ArgumentTypeError, UnknownNameError
from core.base.sampling import z_range

__all__ = ["Trace", "layer_names", "resolve_layers", "StopForward", "run_until", "layer_shape", "layer_units",
           "known_units", "private_copy", "weight_module", "with_delta", "expand_deltas"]

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
    """Validate layer names (a name or a list of names; repeats are dropped, order kept); an
    unknown name raises :class:`UnknownNameError` listing the available layers."""
    if isinstance(layers, str):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise ArgumentTypeError(f"layers must be a layer name or a list of names, got {type(layers).__name__} "
                                f"{layers!r:.40}", fix=f"e.g. layers=[{', '.join(map(repr, layer_names(model)[:2]))}]"
                                ) from None
    if not layers:
        raise UnknownNameError(f"no layers given; available layers: {', '.join(layer_names(model))}",
                               fix="give layers at least one layer name")
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
    hook._ganatomy_trace = True          # private_copy() drops these from a copy
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


# Modules that keep the number of channels (elementwise or per-channel): after a layer's one
# convolution, only these (or modules whose every parameter is one value per output channel) may
# follow for the layer's width to be read from its weights.
_KEEPS_CHANNELS = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Upsample, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU,
                   nn.SELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.ReLU6,
                   nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)
_CHANGES_CHANNELS = (nn.PixelShuffle, nn.PixelUnshuffle, nn.Flatten, nn.Unflatten, nn.Fold, nn.Unfold,
                     nn.ChannelShuffle)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _static_units(module: nn.Module) -> int | None:
    """The output width of ``module`` read from its weights, when its structure says it for sure:
    one convolution, only parameter-free modules before it, and after it only modules that keep
    the channels (activations, norms, per-channel scales and biases). None otherwise."""
    mods = list(module.modules())
    convs = [i for i, m in enumerate(mods) if isinstance(m, _CONVS)]
    if len(convs) != 1 or any(isinstance(m, _CHANGES_CHANNELS) for m in mods):
        return None
    i = convs[0]
    c = int(mods[i].out_channels)
    own = {id(p) for p in mods[i].parameters()}
    for j, m in enumerate(mods):
        if j == i or any(id(p) in own for p in m.parameters(recurse=False)):
            continue
        tensors = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        if j < i:
            if tensors:                              # a weighted module before the convolution
                return None
            continue
        if isinstance(m, _KEEPS_CHANNELS):
            continue
        per_channel = bool(tensors) and all(t.dim() == 1 and t.shape[0] == c for t in tensors)
        container = not tensors and any(True for _ in m.children())
        if not (per_channel or container):           # an unknown module that might change the width
            return None
    return c


def known_units(model: nn.Module, layer: str) -> int | None:
    """The number of units (channels) of ``layer`` when known without running the model: probed
    before (:func:`layer_shape`), or read from the layer's weights; None otherwise."""
    with _shapes_lock:
        shape = _SHAPES.get(model, {}).get(layer)
    if shape is not None:
        return shape[0]
    module = dict(model.named_modules()).get(layer)
    return None if module is None else _static_units(module)


def layer_units(model: nn.Module, layer: str) -> int:
    """The number of units (channels) of ``layer``: :func:`known_units`, else one probe
    (:func:`layer_shape`)."""
    n = known_units(model, layer)
    return n if n is not None else layer_shape(model, layer)[0]


# ----------------------------------------------------------------------------- new models from shared ones

def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` for one caller's own changes (a rewrite's weights, a fine-tune): the
    shared model is never touched, and the copy carries none of the shared model's trace hooks (a
    trace on it installs its own). Frozen and in eval mode."""
    copy_ = copy.deepcopy(model)
    for m in copy_.modules():
        for k in [k for k, h in m._forward_hooks.items() if getattr(h, "_ganatomy_trace", False)]:
            del m._forward_hooks[k]
    with _install_lock:
        _installed.pop(copy_, None)
    return copy_.eval().requires_grad_(False)


def weight_module(model: nn.Module, layer: str) -> tuple[str, nn.Module]:
    """(name, module) of the one convolution of ``layer`` (the layer itself or its only convolution):
    the weight a rewrite changes. A layer without one plain convolution is refused, saying why."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise UnknownNameError(f"layer {layer!r} is not a module of the model", fix="give one of its layer names")
    root = modules[layer]
    convs = [(f"{layer}.{n}" if n else layer, m) for n, m in root.named_modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if len(convs) != 1:
        what = "no convolution" if not convs else f"{len(convs)} convolutions ({', '.join(n for n, _ in convs[:4])})"
        raise ArgumentTypeError(f"layer {layer!r} has {what}; a rewrite changes a layer's one convolution weight",
                                fix="choose a layer made of one convolution (ProGAN's layer1 ... layerN)")
    name, m = convs[0]
    if m.groups != 1 or not isinstance(getattr(m, "weight", None), torch.Tensor):
        raise ArgumentTypeError(f"layer {layer!r}'s convolution is grouped or has no weight tensor",
                                fix="choose a layer with an ordinary convolution")
    return name, m


def expand_deltas(stored: dict) -> dict[str, torch.Tensor]:
    """Parameter deltas from their stored form: ``{param: delta}`` as they are, and a low-rank delta as
    ``{param + "#a": A, param + "#d": D, param + "#dim": i}`` (``delta = A x D`` on dimension ``i``:
    ``A`` holds the weight's components along the rows of ``D``)."""
    if not isinstance(stored, dict) or not stored:
        raise ArgumentTypeError("a rewrite's deltas must be a non-empty dict of tensors",
                                fix="load a rewrite saved by GANatomy (core.models.add_rewrite)")
    out = {}
    for k, v in stored.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ArgumentTypeError("a rewrite's deltas must map parameter names to tensors",
                                    fix="load a rewrite saved by GANatomy (core.models.add_rewrite)")
        if "#" not in k:
            out[k] = v
        elif k.endswith("#a"):
            p = k[:-2]
            d, dim = stored.get(p + "#d"), stored.get(p + "#dim")
            if not isinstance(d, torch.Tensor) or not isinstance(dim, torch.Tensor) or dim.numel() != 1 \
                    or d.dim() != 2 or int(dim) not in range(v.dim()) or v.shape[int(dim)] != d.shape[0]:
                raise ArgumentTypeError(f"the low-rank delta of {p} is incomplete or inconsistent",
                                        fix="load a rewrite saved by GANatomy (core.models.add_rewrite)")
            i = int(dim)
            out[p] = v.movedim(i, -1).matmul(d.to(v)).movedim(-1, i)
    return out


def with_delta(model: nn.Module, deltas: dict) -> nn.Module:
    """A new model: a private copy of ``model`` with ``W + delta`` for each parameter named in ``deltas``
    (a rewrite; ``model`` is unchanged). A model with its own ``cache_key`` gets one naming the deltas."""
    params = dict(model.named_parameters())
    if not isinstance(deltas, dict) or not deltas:
        raise ArgumentTypeError("deltas must be a non-empty dict {parameter name: delta}",
                                fix="apply a rewrite to the model it was made on")
    for name, delta in deltas.items():
        if name not in params:
            raise UnknownNameError(f"{name!r} is not a parameter of the model",
                                   fix="apply a rewrite to the model it was made on")
        w = params[name]
        if not isinstance(delta, torch.Tensor) or tuple(delta.shape) != tuple(w.shape) \
                or not torch.isfinite(delta).all():
            raise ArgumentTypeError(f"the delta for {name} must be finite, with the weight's shape {tuple(w.shape)}",
                                    fix="apply a rewrite to the model (and layer) it was made on")
    out = private_copy(model)
    mine = dict(out.named_parameters())
    h = hashlib.sha256()
    with torch.no_grad():
        for name in sorted(deltas):
            mine[name].copy_(params[name].detach() + deltas[name].to(params[name]))
            h.update(name.encode() + deltas[name].detach().float().cpu().contiguous().numpy().tobytes())
    key = getattr(model, "cache_key", None)
    if isinstance(key, str) and key:
        out.cache_key = f"{key}|delta:{h.hexdigest()[:16]}"
    return out

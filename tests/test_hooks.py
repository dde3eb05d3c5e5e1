"""Hook points: capture, per-thread edits on a shared model, early stop, clear errors."""
from __future__ import annotations

import threading

import pytest
import torch

import core
from core.base.hooks import Trace, resolve_layers, run_until


def model():
    torch.manual_seed(0)
    return core.ProGAN(16, (16, 12, 8)).eval().requires_grad_(False)


def test_capture_matches_manual_forward():
    G = model()
    z = torch.randn(3, 16)
    with Trace(G, capture=["layer3"]) as tr:
        G(z)
    x = z.view(3, -1, 1, 1)
    for name in ["layer1", "layer2", "layer3"]:
        x = getattr(G, name)(x)
    assert torch.equal(tr["layer3"], x)


def test_edits_are_per_thread_on_a_shared_model():
    """Two threads hammer one model at once: one ablates layer3, the other runs it plain.
    Neither ever sees the other's edit, and the model's weights never change."""
    G = model()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    z = torch.randn(4, 16)
    plain = G(z)
    with Trace(G, edits={"layer3": lambda out: torch.zeros_like(out)}):
        ablated = G(z)
    assert not torch.allclose(plain, ablated)
    barrier = threading.Barrier(2)
    errors = []

    def worker(edit):
        barrier.wait()
        for _ in range(60):
            if edit:
                with Trace(G, edits={"layer3": lambda out: torch.zeros_like(out)}):
                    out = G(z)
                ok = torch.equal(out, ablated)
            else:
                out = G(z)
                ok = torch.equal(out, plain)
            if not ok:
                errors.append("edit leaked" if not edit else "edit lost")

    threads = [threading.Thread(target=worker, args=(e,)) for e in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert len(G.layer3._forward_hooks) == 1          # one passive hook, however many traces


def test_nested_traces_and_exit_restore():
    G = model()
    z = torch.randn(2, 16)
    base = G(z)
    with Trace(G, capture=["layer2"]) as outer:
        with Trace(G, edits={"layer2": lambda o: o * 0}):
            G(z)
        G(z)
    assert torch.equal(G(z), base)
    assert outer["layer2"].abs().sum() > 0


def test_run_until_stops_early():
    G = model()
    calls = []
    G.output_16x16.register_forward_hook(lambda *a: calls.append(1))
    out = run_until(G, torch.randn(2, 16), ["layer2"])
    assert set(out) == {"layer2"} and calls == []


def test_unknown_layer_lists_available():
    G = model()
    with pytest.raises(ValueError, match=r"unknown layer 'layer42'; available layers: layer1, layer2, "
                                         r"layer3, layer4, layer5, layer6, output_16x16"):
        resolve_layers(G, ["layer42"])
    with pytest.raises(ValueError, match="unknown layer"):
        Trace(G, edits={"nope": lambda o: o})

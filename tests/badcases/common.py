"""The bad-input table's shared parts: a case, and the small models cases run against.

A :class:`Case` is one bad input to one public entry point. ``tests/test_bad_inputs.py`` runs
every case of every module here (``engine``, ``loaders``, ``flags``, ``cli``, ...) and asserts:

- the call raises a :class:`core.GanatomyError` of type ``error`` (no other exception, no result);
- the message names the argument (every string of ``names`` occurs in it);
- the message gives the fix (``fix`` occurs in it, case-insensitively);
- no generator forward pass ran before the refusal (``work=False``, the default: the check
  comes before any work starts).

A case module defines ``CASES = [Case(...), ...]``; calls are lambdas, so nothing runs at import.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from typing import Callable

import torch

import core


@dataclass(frozen=True)
class Case:
    id: str                               # unique, readable: "<entry point>:<what is bad>"
    call: Callable[[], object]
    error: type                           # a core.errors class (the most specific one expected)
    names: tuple[str, ...]                # the argument's name(s), as the message must say them
    fix: str                              # a piece of the fix, as the message must say it
    work: bool = False                    # True: the refusal may come after a generator pass
    tags: tuple[str, ...] = field(default_factory=tuple)


@functools.lru_cache(maxsize=None)
def town():
    """The shipped toyworld town generator (shared by the cases; never mutated)."""
    return core.load_generator("toyworld/town")


@functools.lru_cache(maxsize=None)
def segmenter():
    return core.load_segmenter("toyworld")


def mask(h=8, w=8, value=1.0):
    return torch.full((h, w), float(value))


def z(n=1, seed=0):
    """``n`` latents of the town generator."""
    return torch.randn(n, town().z_dim, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def environ(**env: str):
    """Environment variables set for the block, and restored (or removed) after it."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

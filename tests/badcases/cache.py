"""Bad-input cases of the cache path (issue 18, part 3): refused before anything is read or written."""
from __future__ import annotations

import numpy as np

import core
from core.base import cache
from tests.badcases.common import Case

_KEY = "0" * 24


def _compute():
    return np.ones(2)


def _encode(a):
    return {"a": a}, {}


def _decode(arrays, meta):
    return arrays["a"]


CASES = [
    Case("cached:kind-with-a-separator", lambda: cache.cached("../etc", _KEY, _compute, _encode, _decode),
         core.InputError, ("kind", "'../etc'"), "letters, digits"),
    Case("load:hidden-kind", lambda: cache.load(".quarantine", _KEY),
         core.InputError, ("kind", "'.quarantine'"), "not starting with '.'"),
    Case("cached:key-not-text", lambda: cache.cached("ace", 123, _compute, _encode, _decode),
         core.ArgumentTypeError, ("key", "int"), "make_key(...) gives a key"),
    Case("cached:compute-not-callable", lambda: cache.cached("ace", _KEY, np.ones(2), _encode, _decode),
         core.ArgumentTypeError, ("compute", "ndarray"), "pass a function as compute"),
    Case("save:object-array", lambda: cache.save("ace", _KEY, {"labels": np.array([object()], dtype=object)}, {}),
         core.ArgumentTypeError, ("'labels'", "object"), "np.asarray"),
    Case("save:meta-not-a-dict", lambda: cache.save("ace", _KEY, {"a": np.ones(2)}, ["layer4"]),
         core.ArgumentTypeError, ("meta", "list"), "encode the result as"),
    Case("make_key:object-without-stable-text", lambda: cache.make_key(kind="ace", model=object()),
         core.ArgumentTypeError, ("'model'", "object"), "model_fingerprint"),
    Case("make_key:shortened-array", lambda: cache.make_key(kind="ace", z=np.zeros(5000)),
         core.ArgumentTypeError, ("'z'", "5000"), "hashlib.sha256"),
]

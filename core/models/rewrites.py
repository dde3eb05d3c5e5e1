"""Rewritten generators as user models: a rewrite (:mod:`core.engine.rewrite`) is saved as a small file of
weight deltas beside the name of the model it was made on and the request that made it, registered with
its owner like an upload (:func:`add_rewrite`: the same name checks, owners, quota, trash and undo). It
then loads by name everywhere (``core.load_generator("lab/doors")``: the base model loaded, the deltas
added to a private copy; :func:`core.models.zoo.load_registered`), survives a restart, and cannot
replace another user's model. The shared base model is never changed.

    core.models.add_rewrite("lab/doors", "toyworld/town", rw.stored, request.to_json(),
                            layer="layer6", method="rank", added_by="ana")
"""
from __future__ import annotations

import io
import json

import torch

from core.base.cache import model_fingerprint
from core.base.errors import ArgumentTypeError, InputError
from core.base.hooks import expand_deltas, with_delta
from core.models import catalog
from core.models.zoo import load_generator
from core.userdata.models import check_added_by, check_free, check_switch, stage_upload, store_upload, timestamp

__all__ = ["add_rewrite", "REWRITE_ARCH", "MAX_REQUEST_CHARS"]

REWRITE_ARCH = "rewrite"
MAX_REQUEST_CHARS = 1 << 20


def add_rewrite(name: str, base: str, stored: dict, request: dict, *, layer: str, method: str,
                added_by: str = "", replace: bool = False, base_hash: str | None = None) -> dict:
    """Save a rewrite of generator ``base`` (a name: shipped, published or added) as the new model ``name``.

    ``stored``: the rewrite's deltas in their stored form (``Rewrite.stored``); ``request``: the request
    that made it (JSON-ready, kept with the entry so the rule can be reviewed and rerun). The deltas are
    checked against the base model first (each names one of its parameters, with its shape, finite), so a
    saved rewrite always loads. A ``name`` someone else owns is refused unless it is theirs to replace
    (``replace=True`` replaces only one's own, or as an admin). ``base_hash``: the cache fingerprint
    (``model_fingerprint``) of the model the rewrite was made on; the base loaded by name must have it
    (a rewrite made on one model is never saved as a rewrite of another). Returns the registry entry."""
    catalog._check_new_name(name)
    replace = check_switch(replace, "replace")
    added_by = check_added_by(added_by)
    if not isinstance(base, str) or not base.strip():
        raise ArgumentTypeError("base must be the name of the generator the rewrite was made on",
                                fix='e.g. base="toyworld/town"')
    if base == name:
        raise InputError(f"a rewrite cannot be saved under its own base's name {name!r}",
                         fix="choose a new name, e.g. '" + name + "-rewritten'")
    try:
        text = json.dumps(request)
    except (TypeError, ValueError):
        raise ArgumentTypeError("request must be JSON-ready (Request.to_json())",
                                fix="pass request.to_json()") from None
    if len(text) > MAX_REQUEST_CHARS:
        raise InputError(f"the request is {len(text):,} characters; at most {MAX_REQUEST_CHARS:,}",
                         fix="a request holds masks, not images")
    for what, v in (("layer", layer), ("method", method)):
        if not isinstance(v, str) or not v:
            raise ArgumentTypeError(f"{what} must be a non-empty string", fix=f"pass the rewrite's {what}")
    check_free(name, replace)
    model = load_generator(base)
    if base_hash is not None and model_fingerprint(model) != base_hash:
        raise InputError(f"this rewrite was made on another model than {base!r} (its weights differ)",
                         fix=f"run the request on {base!r} itself, or set the request's model to the one it ran on")
    with_delta(model, expand_deltas(stored))                          # refuses deltas that do not fit the base
    buf = io.BytesIO()
    torch.save({k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu()
                for k, v in stored.items()}, buf)
    entry = {"kind": "generator", "arch": REWRITE_ARCH, "base": base, "layer": layer, "method": method,
             "request": request, "options": {}, "added_by": added_by, "added_at": timestamp()}
    with stage_upload(buf.getvalue(), "rewrite.pt") as staged:
        return store_upload(name, staged, entry, replace)

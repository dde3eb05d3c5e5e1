"""Manual artifact flags: which units of a (model, layer) users have flagged as artifacts.

Flags are shared by everyone using the lab's cache: ``cache/flags/<model>__<layer>.json``
holds an append-only list of events, one per unit flagged or unflagged:

    {"format": 2, "model": "toyworld/town", "layer": "layer4",
     "events": [{"unit": 3, "action": "add", "by": "ann", "at": "2025-01-01T12:00:00+00:00",
                 "fingerprint": "ProGAN:1a2b…"}, ...]}

An unflag is an event too, and can be undone: :func:`recently_unflagged` lists the units whose flag
was removed (who had flagged them, who unflagged them, when), and :func:`undo_unflag` sets the flag
again in its owner's name (the owner, or an admin, may).

Each writer appends its own events under a lock (a thread lock and, across processes, a file
lock) and rewrites the file atomically, so two sessions never lose each other's flags; the
current set replays the events in order (the last event of a unit decides). Flags belong to
the weights they were set on (``fingerprint``): the weights flagged last are the current ones,
and the flags of earlier weights under the same name are reported as stale. Files of the first
format ({"units": [...], "fingerprint": ...}) are read as "add" events.

These are user data, not measurements: the engine never reads them (``core.engine.repair``
takes the units to ablate as an argument); pages and scripts read them here and pass them on.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from core.base.cache import atomic_write_text, cache_root, file_lock, safe_name
from core.base.errors import CacheError, InputError
from core.base.sharing import ADMINS_ENV, may_change
from core.base.validate import unit_set

__all__ = [
    "FLAGS_FORMAT",
    "flag_details",
    "flag_units",
    "load_flags",
    "save_flags",
    "recently_unflagged",
    "stale_flags",
    "undo_unflag",
    "unflag_units",
]


FLAGS_FORMAT = 2
MAX_NAME = 200                         # characters of a model or layer name in a flag file's name
_LAYER = re.compile(r"^[^\W_.][\w.\-]*$")
_COMPACT_AT = 5000                     # events; beyond, only each (weights, unit)'s last event is kept


def _check_model_name(model) -> str:
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model must be the model's name (a non-empty string), got {model!r}",
                         fix="pass the name the model was loaded by, e.g. 'toyworld/town'")
    if len(model) > 4 * MAX_NAME:
        raise InputError(f"model name {model[:40]!r}… is {len(model)} characters long; at most {4 * MAX_NAME}",
                         fix="pass the name the model was loaded by, e.g. 'toyworld/town'")
    return model


def _check_layer_name(layer) -> str:
    if not isinstance(layer, str) or not layer:
        raise InputError(f"layer must be a layer's name (a non-empty string), got {layer!r}",
                         fix="pass a layer name such as 'layer4'")
    if len(layer) > MAX_NAME or ".." in layer or not _LAYER.match(layer):
        shown = repr(layer[:60]) + ("…" if len(layer) > 60 else "")
        raise InputError(f"layer {shown} is not a layer name (letters, digits, '_', '.', '-'; no '/' or '..'; "
                         f"at most {MAX_NAME} characters)", fix="pass a layer name such as 'layer4'")
    return layer


def _check_text(value, what: str, fix: str, limit: int = MAX_NAME) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, got {type(value).__name__} {value!r}", fix=fix)
    if len(value) > limit:
        raise InputError(f"{what} is {len(value)} characters long; at most {limit}", fix=fix)
    return value




def _flag_path(model: str, layer: str):
    """The flag file of (model, layer): always inside ``cache/flags``, whatever the names."""
    return cache_root() / "flags" / f"{safe_name(_check_model_name(model))}__{safe_name(_check_layer_name(layer))}.json"


def _legacy_flag_path(model: str, layer: str):
    """Where the first format kept them (its names could collide: 'lab/x' and 'lab_x')."""
    safe = "".join(ch if ch.isalnum() or ch in "-_@." else "_" for ch in model)
    return cache_root() / "flags" / f"{safe}__{layer}.json"


def _events(d: dict) -> list[dict]:
    if isinstance(d.get("events"), list):
        return [e for e in d["events"] if isinstance(e, dict) and isinstance(e.get("unit"), int)
                and e.get("action") in ("add", "remove")]
    fp = d.get("fingerprint")            # the first format: the whole set, as "add" events
    return [{"unit": int(u), "action": "add", "by": "", "at": "", "fingerprint": fp}
            for u in d.get("units", []) if isinstance(u, int)]


def _read_events(model: str, layer: str) -> list[dict]:
    for p in (_flag_path(model, layer), _legacy_flag_path(model, layer)):
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):    # unreadable, or a legacy name too long for this system
            continue
        return _events(d) if isinstance(d, dict) else []
    return []


def _current_fingerprint(events: list[dict]) -> str | None:
    """The weights flagged last (None: no event names its weights)."""
    return next((e["fingerprint"] for e in reversed(events) if e.get("fingerprint")), None)


def _replay(events: list[dict], fingerprint: str | None) -> dict[int, dict]:
    """unit -> the event that flagged it, for the flags that apply to ``fingerprint``'s weights
    (those set on them and those set without a fingerprint)."""
    on: dict[int, dict] = {}
    for e in events:
        if e.get("fingerprint") and e["fingerprint"] != fingerprint:
            continue
        if e["action"] == "add":
            on[e["unit"]] = e
        else:
            on.pop(e["unit"], None)
    return on


def _applying(events: list[dict], fingerprint: str | None) -> dict[int, dict]:
    current = _current_fingerprint(events)
    if fingerprint and current and fingerprint != current:
        return {}                        # set on other weights: a unit number means nothing across trainings
    return _replay(events, current or fingerprint)


def load_flags(model: str, layer: str, fingerprint: str | None = None) -> list[int]:
    """Manually flagged artifact units of (model, layer): everyone's flags, merged per unit (see
    :func:`save_flags`). Given the loaded model's ``fingerprint``
    (:func:`core.base.cache.model_fingerprint`), flags saved for other weights under the same name
    (a retrained or re-shipped model) are not returned: a unit number means nothing across
    trainings (:func:`stale_flags` has them)."""
    return sorted(_applying(_read_events(model, layer), _check_text(fingerprint, "fingerprint", _FP_FIX, 1000)))


def flag_details(model: str, layer: str, fingerprint: str | None = None) -> dict[int, dict]:
    """The flagged units of :func:`load_flags`, each with who flagged it and when: unit -> {by, at}."""
    on = _applying(_read_events(model, layer), _check_text(fingerprint, "fingerprint", _FP_FIX, 1000))
    return {u: {"by": e.get("by") or "", "at": e.get("at") or ""} for u, e in sorted(on.items())}


def stale_flags(model: str, layer: str, fingerprint: str | None) -> list[int]:
    """The units flagged for other weights of ``model`` than those with ``fingerprint`` (else [])."""
    fingerprint = _check_text(fingerprint, "fingerprint", _FP_FIX, 1000)
    events = _read_events(model, layer)
    current = _current_fingerprint(events)
    if not fingerprint or not current or current == fingerprint:
        return []
    return sorted(_replay(events, current))


_FP_FIX = "pass core.base.cache.model_fingerprint(generator), or None"


def _flags_locked(path):
    """Held while a flag file is read and rewritten (one thread, one process at a time)."""
    return file_lock(path.with_name(f".{path.name}.lock"), "the flags folder",
                     "make the cache writable or set $GANATOMY_CACHE to a folder that is")


def _compact(events: list[dict]) -> list[dict]:
    """Only each (weights, unit)'s last event, in order: the same sets and the same current weights."""
    last = {(e.get("fingerprint"), e["unit"]): i for i, e in enumerate(events)}
    return [events[i] for i in sorted(last.values())]


def save_flags(model: str, layer: str, units: Sequence[int] | None = None, fingerprint: str | None = None, *,
               add: Sequence[int] = (), remove: Sequence[int] = (), by: str = "",
               n_units: int | None = None) -> list[int]:
    """Flag (``add``) or unflag (``remove``) units of (model, layer) for the lab (``cache/flags``),
    with the weights' ``fingerprint`` so that later weights under the same name do not inherit
    them, and ``by`` (who flagged: a display name). Only the units given change: everyone
    else's flags stay as they are, however many sessions save at once; a ``remove`` with ``by``
    (what sessions send) may unflag only ``by``'s own flags, unless ``by`` is an admin
    (``$GANATOMY_ADMINS``).

    ``units`` (the whole set) is for a script that owns the flags: the units not in it are
    unflagged, the others flagged. Sessions that share flags send only their changes
    (``add`` / ``remove``). ``n_units``: the layer's size, to refuse indices beyond it.
    Returns the flagged units of these weights after the change."""
    path = _flag_path(model, layer)
    fingerprint = _check_text(fingerprint, "fingerprint", _FP_FIX, 1000) or None
    by = _check_text(by, "by", "pass your display name, e.g. by='ann'")
    if n_units is not None and (isinstance(n_units, bool) or not isinstance(n_units, (int, np.integer))
                                or n_units < 1):
        raise InputError(f"n_units must be a positive integer (the layer's size), got {n_units!r}",
                         fix="pass the number of units of the layer, or leave n_units out")
    whole = None if units is None else unit_set(units, "units", layer, n_units)
    add = unit_set(add, "add", layer, n_units)
    remove = unit_set(remove, "remove", layer, n_units)
    if whole is not None and (add or remove):
        raise InputError("give the whole set (units) or the changes (add / remove), not both",
                         fix="pass add=[...] and remove=[...] only")
    if both := sorted(set(add) & set(remove)):
        raise InputError(f"units {both} are both in add and remove", fix="put each unit in add or in remove")
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with _flags_locked(path):
        events = _read_events(model, layer)
        current = _applying(events, fingerprint)
        if whole is not None:            # the whole set: what differs from these weights' flags
            on = set(_replay(events, fingerprint) if fingerprint else _applying(events, None))
            add, remove = sorted(set(whole) - on), sorted(on - set(whole))
        else:                            # a unit flagged already stays its flagger's (no second owner)
            add = [u for u in add if u not in current]
        if remove and by:                # a session unflags only its own flags (or an admin anyone's)
            theirs = {u: current[u].get("by") or "" for u in remove
                      if u in current and not may_change(current[u].get("by"), by)}
            if theirs:
                raise InputError(f"units {sorted(theirs)} were flagged by {', '.join(sorted(set(theirs.values())))}; "
                                 f"only who flagged a unit (or an admin, {ADMINS_ENV}) can unflag it; you are {by!r}",
                                 fix="ask who flagged them, or leave them flagged")
        new = ([{"unit": u, "action": "add", "by": by, "at": at, "fingerprint": fingerprint} for u in add]
               + [{"unit": u, "action": "remove", "by": by, "at": at, "fingerprint": fingerprint} for u in remove])
        events = _append(path, model, layer, events, new)
        return sorted(_applying(events, fingerprint))


def _append(path, model: str, layer: str, events: list[dict], new: list[dict]) -> list[dict]:
    """``events`` + ``new``, written (atomically, under the caller's lock) when there is anything new."""
    if new:
        events = events + new
        if len(events) > _COMPACT_AT:
            events = _compact(events)
        try:
            atomic_write_text(path, json.dumps({"format": FLAGS_FORMAT, "model": model, "layer": layer,
                                                "events": events}))
        except OSError as e:              # a full or read-only disk: said as such, the flags as they were
            raise CacheError(f"the flags of {model!r} at {layer!r} cannot be written in {path.parent} "
                             f"({e.strerror or e}); nothing changed",
                             fix="free some disk space, or set $GANATOMY_CACHE to a writable folder") from None
    return events


def _unflagged(events: list[dict], fingerprint: str | None) -> dict[int, tuple[dict, dict]]:
    """unit -> (the event that had flagged it, the event that unflagged it), for the units of these
    weights whose last event is an unflag of a flag (see :func:`_applying` for which weights)."""
    current = _current_fingerprint(events)
    if fingerprint and current and fingerprint != current:
        return {}
    fp = current or fingerprint
    on: dict[int, dict] = {}
    off: dict[int, tuple[dict, dict]] = {}
    for e in events:
        if e.get("fingerprint") and e["fingerprint"] != fp:
            continue
        if e["action"] == "add":
            on[e["unit"]] = e
            off.pop(e["unit"], None)
        elif e["unit"] in on:
            off[e["unit"]] = (on.pop(e["unit"]), e)
    return off


def recently_unflagged(model: str, layer: str, fingerprint: str | None = None, *, by: str | None = None,
                       limit: int = 20) -> list[dict]:
    """The units of (model, layer) whose flag was removed and not set again, newest first (at most
    ``limit``): unit, flagged_by, flagged_at, unflagged_by, unflagged_at, and may_undo (whether
    ``by`` may set it again: who had flagged it, or an admin; True without ``by``)."""
    off = _unflagged(_read_events(model, layer), _check_text(fingerprint, "fingerprint", _FP_FIX, 1000))
    rows = [{"unit": u, "flagged_by": a.get("by") or "", "flagged_at": a.get("at") or "",
             "unflagged_by": r.get("by") or "", "unflagged_at": r.get("at") or "",
             "may_undo": by is None or may_change(a.get("by"), by)} for u, (a, r) in off.items()]
    return sorted(rows, key=lambda r: (r["unflagged_at"], r["unit"]), reverse=True)[:max(int(limit), 0)]


def undo_unflag(model: str, layer: str, unit: int, fingerprint: str | None = None, *, by: str = "") -> list[int]:
    """Undo the unflag of ``unit``: it is flagged again in the name of who had flagged it (with
    ``by``, only they or an admin may). Refused when the unit is flagged now or was never unflagged.
    Returns the flagged units after it."""
    path = _flag_path(model, layer)
    fingerprint = _check_text(fingerprint, "fingerprint", _FP_FIX, 1000) or None
    by = _check_text(by, "by", "pass your display name, e.g. by='ann'")
    (unit,) = unit_set([unit], "unit", layer)
    with _flags_locked(path):
        events = _read_events(model, layer)
        off = _unflagged(events, fingerprint)
        if unit not in off:
            now = "flagged now" if unit in _applying(events, fingerprint) else "not unflagged"
            raise InputError(f"unit {unit} of {layer!r} is {now}: there is no unflag to undo",
                             fix="see recently_unflagged() (the Repair page lists them)")
        flagged, removed = off[unit]
        if by and not may_change(flagged.get("by"), by):
            raise InputError(f"unit {unit} was flagged by {flagged.get('by') or 'an unknown user'}: only they (or an "
                             f"admin, {ADMINS_ENV}) can undo its unflag; you are {by!r}", fix="ask who flagged it")
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        events = _append(path, model, layer, events, [{
            "unit": unit, "action": "add", "by": flagged.get("by") or "", "at": at,
            "fingerprint": removed.get("fingerprint") or flagged.get("fingerprint"), "undo_by": by}])
        return sorted(_applying(events, fingerprint))


def flag_units(model: str, layer: str, units: Sequence[int], fingerprint: str | None = None, *,
               by: str = "", n_units: int | None = None) -> list[int]:
    """Flag ``units`` (everyone else's flags stay); returns the flagged units after it."""
    _flag_path(model, layer)
    units = unit_set(units, "units", layer)
    return save_flags(model, layer, fingerprint=fingerprint, add=units, by=by, n_units=n_units)


def unflag_units(model: str, layer: str, units: Sequence[int], fingerprint: str | None = None, *,
                 by: str = "", n_units: int | None = None) -> list[int]:
    """Unflag ``units`` (everyone else's flags stay); returns the flagged units after it."""
    _flag_path(model, layer)
    units = unit_set(units, "units", layer)
    return save_flags(model, layer, fingerprint=fingerprint, remove=units, by=by, n_units=n_units)

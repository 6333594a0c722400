"""The ``limits`` part of the config document: validation, diff and merge.

In the document (``GET /_trimtab/config``) limits sit beside routes::

    "limits": {"per-key": {"route": "/search", "key": "header:x-api-key",
                           "rate": 5.0, "burst": 10, "mode": "shadow"}}

A patch sets ``limits.<name>`` to an object of fields to change (a new limit
needs ``route``, ``key``, ``rate`` and ``burst``; ``mode`` defaults to
``shadow``, so a new limit never refuses anyone until an operator says so), or
to ``null`` to delete it. Fields:

- ``route``: a known route template, or ``"*"`` for every route;
- ``key``: ``ip``, ``global``, ``header:<name>`` or ``jwt:<claim>`` (see :mod:`.ratelimit`);
- ``rate``: requests per second, a number in (0, 1,000,000];
- ``burst``: requests at once, an integer in 1..1,000,000;
- ``mode``: ``off``, ``shadow`` or ``enforce``.

At most :data:`MAX_LIMITS` limits, names of 1-64 characters ``[A-Za-z0-9_.-]``.
Being part of the config document, limits share its ETag/If-Match, journal,
revert and sharing between workers (:mod:`.config`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .params import shown
from .ratelimit import ANY_ROUTE, MODES, SHADOW, Limit

MAX_LIMITS = 64
MAX_RATE = 1_000_000.0
MAX_BURST = 1_000_000
LIMIT_FIELDS = ("route", "key", "rate", "burst", "mode")
_REQUIRED = ("route", "key", "rate", "burst")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")  # an HTTP header name (RFC 9110 token)
_CLAIM = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def validate_limits(section: Any, current: dict[str, dict[str, Any]],
                    known_routes: Iterable[str]) -> list[tuple[str, str]]:
    """Every problem in a patch's ``limits`` section as (field, message); empty when valid."""
    if not isinstance(section, dict):
        return [("limits", "must be an object of limit name → fields (or null to delete)")]
    errors: list[tuple[str, str]] = []
    after = set(current) | {n for n, v in section.items() if v is not None}
    after -= {n for n, v in section.items() if v is None}
    if len(after) > MAX_LIMITS:
        errors.append(("limits", f"at most {MAX_LIMITS} limits, this would make {len(after)}"))
    known = set(known_routes)
    for name, fields in section.items():
        where = f"limits[{shown(name)}]"
        if not _NAME.fullmatch(name):
            errors.append((where, "name must be 1-64 characters of A-Z a-z 0-9 _ . -"))
        elif fields is None:
            continue
        elif not isinstance(fields, dict):
            errors.append((where, "must be an object of fields, or null to delete the limit"))
        else:
            missing = [f for f in _REQUIRED if f not in fields] if name not in current else []
            if missing:
                errors.append((where, f"a new limit needs {', '.join(missing)}"))
            for key, value in fields.items():
                problem = _field_problem(key, value, known)
                if problem:
                    errors.append((f"{where}.{key[:40]}", problem))
    return errors


def _field_problem(key: str, value: Any, known: set[str]) -> str:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key == "rate":
        # A comparison, not math.isfinite(): exact for a 400-digit int, false for nan and inf.
        if not number or not 0 < value <= MAX_RATE:
            return f"must be a number of requests per second in (0, {MAX_RATE:g}], " \
                   f"got {shown(value)}"
    elif key == "burst":
        if not isinstance(value, int) or isinstance(value, bool) or \
                not 1 <= value <= MAX_BURST:
            return f"must be an integer in 1..{MAX_BURST}, got {shown(value)}"
    elif key == "mode":
        if value not in MODES:
            return f"must be one of {', '.join(MODES)}, got {shown(value)}"
    elif key == "route":
        if not isinstance(value, str) or (value != ANY_ROUTE and value not in known):
            return f"unknown route {shown(value)} (known: {ANY_ROUTE}, " \
                   f"{', '.join(sorted(known))})"
    elif key == "key":
        if not valid_key(value):
            return f"must be ip, global, header:<name> or jwt:<claim>, got {shown(value)}"
    else:
        return f"unknown field (allowed: {', '.join(LIMIT_FIELDS)})"
    return ""


def valid_key(value: Any) -> bool:
    """True for a key spec: ``ip``, ``global``, ``header:<name>`` or ``jwt:<claim>``."""
    if not isinstance(value, str):
        return False
    if value in ("ip", "global"):
        return True
    kind, _, arg = value.partition(":")
    return (kind == "header" and _TOKEN.fullmatch(arg) is not None) or \
        (kind == "jwt" and _CLAIM.fullmatch(arg) is not None)


def normalised(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored form of validated fields: rate a float, header names lower case."""
    out = dict(fields)
    if "rate" in out:
        out["rate"] = float(out["rate"])
    if isinstance(out.get("key"), str) and out["key"].startswith("header:"):
        out["key"] = out["key"].lower()
    return out


def diff_limits(current: dict[str, dict[str, Any]], section: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(old, new) for the parts of a valid ``limits`` patch that change something.

    A created limit is ``None`` in old and whole in new; a deleted one the reverse;
    so applying ``old`` as a patch (a revert) undoes either.
    """
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for name, fields in section.items():
        cur = current.get(name)
        if fields is None:
            if cur is not None:
                old[name], new[name] = dict(cur), None
        elif cur is None:
            old[name], new[name] = None, {"mode": SHADOW, **normalised(fields)}
        else:
            for key, value in normalised(fields).items():
                if cur.get(key) != value:
                    old.setdefault(name, {})[key] = cur.get(key)
                    new.setdefault(name, {})[key] = value
    return old, new


def merge_limits(current: dict[str, dict[str, Any]], new: dict[str, Any]) -> None:
    """Apply a diff's ``new`` side to the document's limits in place."""
    for name, fields in new.items():
        if fields is None:
            current.pop(name, None)
        elif name in current:
            current[name].update(fields)
        else:
            current[name] = dict(fields)


def limits_values_at(current: dict[str, dict[str, Any]], asked: dict[str, Any]
                     ) -> dict[str, Any]:
    """The current values of the limit fields named in ``asked`` (None: limit absent)."""
    out: dict[str, Any] = {}
    for name, fields in asked.items():
        cur = current.get(name)
        if cur is None or fields is None:
            out[name] = None if cur is None else dict(cur)
        else:
            out[name] = {k: cur.get(k) for k in fields}
    return out


def limits_of(section: Any) -> tuple[Limit, ...]:
    """The document's limits as :class:`Limit` values, by name.

    Raises ``ValueError`` for a limit PATCH would have refused (a hand-edited state
    file with a rate of 0 must not divide by zero on the request path): the config
    store then keeps the last good settings.
    """
    if not isinstance(section, dict):
        raise ValueError("limits must be an object")
    out = []
    for name, f in sorted(section.items()):
        if not isinstance(f, dict) or not isinstance(f.get("route"), str):
            raise ValueError(f"limits[{shown(name)}]: not a limit")
        for key in ("key", "rate", "burst", "mode"):
            problem = _field_problem(key, f.get(key, SHADOW if key == "mode" else None), set())
            if problem:
                raise ValueError(f"limits[{shown(name)}].{key}: {problem}")
        out.append(Limit(name, f["route"], f["key"], float(f["rate"]), int(f["burst"]),
                         f.get("mode", SHADOW)))
    return tuple(out)


def limit_fields(limit: Limit) -> dict[str, Any]:
    """A :class:`Limit` as document fields."""
    return {"route": limit.route, "key": limit.key, "rate": float(limit.rate),
            "burst": int(limit.burst), "mode": limit.mode}

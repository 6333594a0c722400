"""Rate limits in a snapshot: each agent's limits at one time, and the same limits at any
earlier time, worked back from the change journal.

An agent journals every limit change with the old values of what it changed (``old``:
``{"limits": {name: fields}}``, ``None`` for a limit it created), so applying the ``old``
of every accepted change after ``t``, newest first, gives the limits as they were at ``t``.
The export uses it to write the limits at the window's end (the cockpit may export a window
that ended before a later change); a reopened snapshot to show them at the replay clock.

A balancer's own limits (``GET /_trimtab/balancer/limits``) are journaled per limit
(``what`` = ``limits.<name>``, ``old`` the changed settings, ``None`` for a limit it
created): :func:`balancer_limits_at` works them back the same way. The HAProxy adapter's
re-apply after a reload journals map values (``{"mode": "2"}``), not settings: skipped,
so between a reload and its re-apply (the agent's interval) the limits read as re-applied.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ..control.types import LIMITS_PREFIX, limit_settings

# agent (target name) → limit name → settings (route, key, rate, burst, mode)
Limits = dict[str, dict[str, dict[str, Any]]]
FIELDS = ("route", "key", "rate", "burst", "mode")


def limits_of(configs: Mapping[str, Mapping[str, Any]]) -> Limits:
    """The ``limits`` section of each agent's config document (agents without one left out)."""
    out: Limits = {}
    for agent, doc in configs.items():
        section = doc.get("limits") if isinstance(doc, Mapping) else None
        if isinstance(section, Mapping):
            out[str(agent)] = {str(name): dict(fields) for name, fields in section.items()
                               if isinstance(fields, Mapping)}
    return out


def limits_at(limits: Limits, journal: Iterable[Any], t: float) -> Limits:
    """``limits`` (as they are after every change in ``journal``) as they were at ``t``.

    ``journal``: ``JournalRow``s or dicts with the same fields. Refused changes changed
    nothing and are skipped; so are rows that are not config changes.
    """
    return _undo(limits, [e for e in map(_entry, journal) if e is not None], t)


def balancer_limits_at(limits: Limits, journal: Iterable[Any], t: float) -> Limits:
    """Each balancer's ``limits`` (balancer → name → settings, as they are after every change
    in ``journal``) as they were at ``t``; only the balancers' ``limits.<name>`` entries
    count (an instance's config changes are its own: :func:`limits_at`)."""
    return _undo(limits, [e for e in map(_balancer_entry, journal) if e is not None], t)


def _undo(limits: Limits, entries: list[tuple[float, str, Mapping[str, Any]]],
          t: float) -> Limits:
    """``limits`` with the ``old`` sections of the entries after ``t`` applied, newest first."""
    out = copy.deepcopy(limits)
    later = [e for e in entries if e[0] > t]
    for _time, agent, section in sorted(later, key=lambda e: -e[0]):
        mine = out.setdefault(agent, {})
        for name, fields in section.items():
            if fields is None:  # created by the change: not there before it
                mine.pop(str(name), None)
            elif isinstance(fields, Mapping):
                mine.setdefault(str(name), {}).update(fields)
    return out


def _entry(row: Any) -> tuple[float, str, Mapping[str, Any]] | None:
    """(time, agent, old limits section) of an accepted limit change, else None."""
    get = _getter(row)
    old = get("old")
    if get("result") != "accepted" or not isinstance(old, Mapping) \
            or not isinstance(old.get("limits"), Mapping):
        return None
    return _timed(get, old["limits"])


def _balancer_entry(row: Any) -> tuple[float, str, Mapping[str, Any]] | None:
    """(time, balancer, {name: old settings}) of a balancer's accepted change of one limit
    (its settings: an HAProxy re-apply's map values are not), else None."""
    get = _getter(row)
    what, old, new = get("what"), get("old"), get("new")
    if get("result") != "accepted" or not isinstance(what, str) \
            or not what.startswith(LIMITS_PREFIX) \
            or not all(v is None or limit_settings(v) is not None for v in (old, new)):
        return None
    return _timed(get, {what.removeprefix(LIMITS_PREFIX): old})


def _getter(row: Any) -> Any:
    return row.get if isinstance(row, Mapping) else lambda k, d=None: getattr(row, k, d)


def _timed(get: Any, section: Mapping[str, Any]) -> tuple[float, str, Mapping[str, Any]] | None:
    source = get("source")
    agent = source if isinstance(source, str) else getattr(source, "name", "")
    try:
        return float(get("time")), str(agent), section
    except (TypeError, ValueError):
        return None

"""Rate limits in a snapshot: each agent's limits at one time, and the same limits at any
earlier time, worked back from the change journal.

An agent journals every limit change with the old values of what it changed (``old``:
``{"limits": {name: fields}}``, ``None`` for a limit it created), so applying the ``old``
of every accepted change after ``t``, newest first, gives the limits as they were at ``t``.
The export uses it to write the limits at the window's end (the cockpit may export a window
that ended before a later change); a reopened snapshot to show them at the replay clock.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

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
    out = copy.deepcopy(limits)
    later = [e for e in map(_entry, journal) if e is not None and e[0] > t]
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
    get = row.get if isinstance(row, Mapping) else lambda k, d=None: getattr(row, k, d)
    old = get("old")
    if get("result") != "accepted" or not isinstance(old, Mapping) \
            or not isinstance(old.get("limits"), Mapping):
        return None
    source = get("source")
    agent = source if isinstance(source, str) else getattr(source, "name", "")
    try:
        return float(get("time")), str(agent), old["limits"]
    except (TypeError, ValueError):
        return None

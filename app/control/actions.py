"""Journal rows grouped into actions, and the one-line label every marker and report uses.

One click in the cockpit can journal several rows: a fleet-wide change is one PATCH per
instance, and a balancer journals one row per server field. Charts, cards and the report
show one action per click, named by what it changed and every target it touched:
``TTL /search 10→60 s · api-1, api-2, api-3``. A rate limit change reads as an operator
says it, not as its config path: ``Limit per-key on /search: shadow → enforce · api-1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from trimtab.agent.ratelimit import ANY_ROUTE
from trimtab.agent.ratelimit_config import LIMIT_FIELDS

from ..model.before_after import TOGETHER
from . import types as ctl

MAX_NAMED = 3  # targets named in a marker's label; more read "api-1, api-2 +4 more"


def _value(v: object) -> str:
    """A journal value as a label shows it: 10.0 → 10, True → on."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "–" if v is None else str(v)


def _field(path: str) -> tuple[str, str]:
    """(what, unit) a field path reads as: routes./a.ttl → ("TTL /a", " s")."""
    parts = path.split(".")
    if parts[0] == "routes" and len(parts) >= 3:
        route, name = ".".join(parts[1:-1]), parts[-1]
        return ("TTL " + route, " s") if name == "ttl" else (f"{name} {route}", "")
    if parts[0] == "servers" and len(parts) == 3:
        return f"{parts[2]} {parts[1]}", ""
    return path, ""


def _changes_text(rows: list[ctl.JournalRow], routes: Mapping[str, str] | None = None) -> str:
    """The fields the rows changed, once each: 'TTL /a 10→60 s'; olds that differ are joined.
    Rate limit fields are said per limit (:func:`limit_texts`)."""
    olds: dict[str, list[str]] = {}
    news: dict[str, str] = {}
    for row in rows:
        for c in row.changes:
            if limit_field(c.path) is not None:
                continue
            seen = olds.setdefault(c.path, [])
            if _value(c.old) not in seen:
                seen.append(_value(c.old))
            news[c.path] = _value(c.new)
    parts = []
    for path in olds:
        what, unit = _field(path)
        parts.append(f"{what} {'/'.join(olds[path])}→{news[path]}{unit}")
    return ", ".join(parts + limit_texts([c for r in rows for c in r.changes], routes))


def limit_field(path: str) -> tuple[str, str] | None:
    """``(limit name, field)`` of a rate limit field path (``limits.per-key.mode``), else None.

    Limit names may hold dots: the field is the last part, the name all between.
    """
    parts = path.split(".")
    if parts[0] != "limits" or len(parts) < 3 or parts[-1] not in LIMIT_FIELDS:
        return None
    return ".".join(parts[1:-1]), parts[-1]


def limit_routes(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Limit name → its route, from each instance's config document (``/_trimtab/config``).

    A journal entry names only the fields it changed, so a mode change does not say which
    route the limit is on; the configs do. A limit on different routes on different
    instances gets none (a label would claim one of them).
    """
    seen: dict[str, set[str]] = {}
    for doc in configs.values():
        limits = doc.get("limits")
        for name, fields in (limits.items() if isinstance(limits, dict) else ()):
            if isinstance(fields, dict) and isinstance(fields.get("route"), str):
                seen.setdefault(name, set()).add(fields["route"])
    return {name: next(iter(r)) for name, r in seen.items() if len(r) == 1}


def _where(route: str) -> str:
    return "every route" if route == ANY_ROUTE else route


def _one_of(values: list[Any], unit: str = "") -> str:
    """The values a field had (several when instances differed): '5 or 4/s'."""
    return " or ".join(dict.fromkeys(_value(v) for v in values)) + unit


def limit_texts(changes: Iterable[ctl.FieldChange],
                routes: Mapping[str, str] | None = None) -> list[str]:
    """One phrase per rate limit the changes touched, as an operator says it:
    ``Limit per-key on /search: shadow → enforce``, ``Limit per-key: 5/s burst 10 → 2/s
    burst 5``, ``Limit per-key added on /search (shadow, 5/s burst 10, per ip)``,
    ``Limit per-key removed from /search``. ``routes`` (limit → route, see
    :func:`limit_routes`) names the route when the change itself does not.
    """
    olds: dict[str, dict[str, list[Any]]] = {}
    news: dict[str, dict[str, Any]] = {}
    for c in changes:
        found = limit_field(c.path)
        if found is None:
            continue
        name, field = found
        olds.setdefault(name, {}).setdefault(field, []).append(c.old)
        news.setdefault(name, {})[field] = c.new
    return [_limit_text(name, olds[name], news[name], (routes or {}).get(name))
            for name in olds]


def _limit_text(name: str, olds: dict[str, list[Any]], news: dict[str, Any],
                route: str | None) -> str:
    if all(v is None for v in news.values()):
        old_route = next((r for r in olds.get("route", ()) if r is not None), None)
        return f"Limit {name} removed" + (f" from {_where(old_route)}" if old_route else "")
    if all(v is None for values in olds.values() for v in values):
        return (f"Limit {name} added on {_where(str(news.get('route')))} "
                f"({news.get('mode', 'shadow')}, {_value(news.get('rate'))}/s burst "
                f"{_value(news.get('burst'))}, per {news.get('key')})")
    parts = []
    if "route" in news:
        parts.append(f"{_one_of([_where(r) for r in olds['route']])} → {_where(news['route'])}")
    rate, burst = ("rate" in news), ("burst" in news)
    if rate and burst:
        parts.append(f"{_one_of(olds['rate'], '/s')} burst {_one_of(olds['burst'])} → "
                     f"{_value(news['rate'])}/s burst {_value(news['burst'])}")
    elif rate:
        parts.append(f"{_one_of(olds['rate'], '/s')} → {_value(news['rate'])}/s")
    elif burst:
        parts.append(f"burst {_one_of(olds['burst'])} → {_value(news['burst'])}")
    if "key" in news:
        parts.append(f"per {_one_of(olds['key'])} → per {news['key']}")
    if "mode" in news:
        parts.append(f"{_one_of(olds['mode'])} → {news['mode']}")
    on = f" on {_where(route)}" if route is not None and "route" not in news else ""
    return f"Limit {name}{on}: {', '.join(parts)}"


def _names_text(rows: list[ctl.JournalRow]) -> str:
    # In natural order (api-2 before api-10), whatever order the fan-out's answers came in.
    names = sorted(dict.fromkeys(r.source.name for r in rows), key=_natural)
    if len(names) > MAX_NAMED:
        return ", ".join(names[:MAX_NAMED - 1]) + f" +{len(names) - MAX_NAMED + 1} more"
    return ", ".join(names)


def action_label(row: ctl.JournalRow, group: list[ctl.JournalRow] | None = None,
                 routes: Mapping[str, str] | None = None) -> str:
    """One line naming the change and every target it touched: 'TTL /a 10→60 s · api-1, api-2'.

    ``routes`` (limit name → route, :func:`limit_routes`) says which route a rate limit
    change was on when its journal entry does not name it (a mode or rate change).
    """
    rows = group or [row]
    return f"{_changes_text(rows, routes)} · {_names_text(rows)}"


def _signature(row: ctl.JournalRow) -> tuple:
    return tuple(sorted((c.path, repr(c.new)) for c in row.changes))


def _same_action(first: ctl.JournalRow, members: list[ctl.JournalRow],
                 row: ctl.JournalRow) -> bool:
    """Whether ``row`` belongs to the action ``first`` started.

    The same change fanned out by one click: the same fields set to the same values on
    other targets, or (a balancer journals one row per server field) other fields of the
    balancer; within TOGETHER seconds, by the same person, for the same reason. An
    instance journals one row per patch, so its second row, like a field set twice, is
    another action.
    """
    if row.time - first.time > TOGETHER or (row.who, row.reason) != (first.who, first.reason):
        return False
    mine = [m for m in members if m.source.name == row.source.name]
    if not mine:
        return _signature(row) == _signature(first)
    if row.source.kind != ctl.BALANCER:
        return False
    touched = {c.path for m in mine for c in m.changes}
    return not touched & {c.path for c in row.changes}


def group_changes(rows: Iterable[ctl.JournalRow]) -> list[list[ctl.JournalRow]]:
    """Accepted changes grouped into actions, oldest first (each group oldest row first)."""
    groups: list[list[ctl.JournalRow]] = []
    for row in sorted((r for r in rows if r.result == "accepted"),
                      key=lambda r: (r.time, r.source.name, r.id)):
        group = next((g for g in groups if _same_action(g[0], g, row)), None)
        if group is None:
            groups.append([row])
        else:
            group.append(row)
    return groups


def group_of(row: ctl.JournalRow, journal: Iterable[ctl.JournalRow]) -> list[ctl.JournalRow]:
    """The rows of the action ``row`` is part of (``row`` alone when it is not in ``journal``)."""
    key = _key(row)
    for group in group_changes([*journal, row]):
        if any(_key(r) == key for r in group):
            return list({_key(r): r for r in group}.values())
    return [row]


def _key(row: ctl.JournalRow) -> tuple[str, int]:
    return row.source.name, row.id


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key reading digit runs as numbers: api-2 before api-10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", name) if part)


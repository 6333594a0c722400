"""Journal rows grouped into actions, and the one-line label every marker and report uses.

One click in the cockpit can journal several rows: a fleet-wide change is one PATCH per
instance, and a balancer journals one row per server field. Charts, cards and the report
show one action per click, named by what it changed and every target it touched:
``TTL /search 10→60 s · api-1, api-2, api-3``.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def _changes_text(rows: list[ctl.JournalRow]) -> str:
    """The fields the rows changed, once each: 'TTL /a 10→60 s'; olds that differ are joined."""
    olds: dict[str, list[str]] = {}
    news: dict[str, str] = {}
    for row in rows:
        for c in row.changes:
            seen = olds.setdefault(c.path, [])
            if _value(c.old) not in seen:
                seen.append(_value(c.old))
            news[c.path] = _value(c.new)
    parts = []
    for path in olds:
        what, unit = _field(path)
        parts.append(f"{what} {'/'.join(olds[path])}→{news[path]}{unit}")
    return ", ".join(parts)


def _names_text(rows: list[ctl.JournalRow]) -> str:
    names = list(dict.fromkeys(r.source.name for r in rows))
    if len(names) > MAX_NAMED:
        return ", ".join(names[:MAX_NAMED - 1]) + f" +{len(names) - MAX_NAMED + 1} more"
    return ", ".join(names)


def action_label(row: ctl.JournalRow, group: list[ctl.JournalRow] | None = None) -> str:
    """One line naming the change and every target it touched: 'TTL /a 10→60 s · api-1, api-2'."""
    rows = group or [row]
    return f"{_changes_text(rows)} · {_names_text(rows)}"


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



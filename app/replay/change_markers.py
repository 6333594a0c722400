"""From journal rows to chart markers and before/after cards (Qt-free)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..control import types as ctl
from ..model.before_after import (
    DEFAULT_SETTLE,
    DEFAULT_WINDOW,
    TOGETHER,
    Comparison,
    bounding_changes,
    change_scope,
    compare_all,
    display_scale,
    format_value,
    kind_of,
)
from ..model.fleet import FleetModel

CARD_WINDOW = DEFAULT_WINDOW  # seconds judged on each side of the change
CARD_SETTLE = DEFAULT_SETTLE  # seconds right after the change left out
CARD_CHARTS = 12  # small charts at most (a weight change lists every route's p95 too)


MAX_NAMED = 3  # targets named in a marker's label; more read "api-1, api-2 +4 more"


def marker_key(row: ctl.JournalRow) -> str:
    return f"{row.source.name}#{row.id}"


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


def marker_label(row: ctl.JournalRow, group: list[ctl.JournalRow] | None = None) -> str:
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
    key = marker_key(row)
    for group in group_changes([*journal, row]):
        if any(marker_key(r) == key for r in group):
            return list({marker_key(r): r for r in group}.values())
    return [row]


def markers(rows: list[ctl.JournalRow]) -> list[tuple[str, float, str]]:
    """One marker per action (key and time of its first row), naming every target it touched.

    Accepted changes only: a refused change changed nothing on the charts.
    """
    return [(marker_key(g[0]), g[0].time, marker_label(g[0], g)) for g in group_changes(rows)]


@dataclass(frozen=True)
class CardChart:
    """One metric's small before/after chart, in the app's units, time relative to the change."""

    name: str
    times: np.ndarray  # seconds from the change
    values: np.ndarray  # ms, %, /s
    before: tuple[float, float]  # the windows judged, seconds from the change
    after: tuple[float, float]
    band: tuple[float, float]  # the normal band (NaN when not known yet)
    unit: str


@dataclass(frozen=True)
class CardContent:
    """What the card shows; rebuilt as data arrives (the card updates live)."""

    title: str
    subtitle: str
    rows: list[tuple[str, ...]]  # metric, before, after, change, normal before, verdict, data
    charts: list[CardChart]
    comparisons: dict[str, Comparison]


def _paths(row: ctl.JournalRow) -> list[str]:
    return [c.path for c in row.changes]


def bounds(row: ctl.JournalRow, journal: Iterable[ctl.JournalRow]
           ) -> tuple[float | None, float | None]:
    """(previous, next) accepted change to the same target as ``row`` (route or balancer)."""
    others = [(r.time, change_scope(_paths(r))) for r in journal if r.result == "accepted"]
    return bounding_changes(row.time, change_scope(_paths(row)), others)


def new_shares(model: FleetModel, row: ctl.JournalRow, journal: Iterable[ctl.JournalRow]
               ) -> dict[str, float]:
    """Each server's share under the weights ``row`` set (``"a share"`` → 0.75).

    The balancer journals one row per server field, a moment apart: the rows of the same
    action are taken together. Weights now are the model's; later changes are undone.
    """
    weights = {s.server: s.weight for s in model.share if math.isfinite(s.weight)}
    weight_rows = sorted((r for r in journal if r.result == "accepted"
                          and r.source.name == row.source.name), key=lambda r: -r.time)
    for r in weight_rows:  # newest first: undo what came after this action
        if r.time > row.time + TOGETHER:
            for c in r.changes:
                _set_weight(weights, c.path, c.old)
    for r in [row, *weight_rows]:
        if abs(r.time - row.time) <= TOGETHER:
            for c in r.changes:
                _set_weight(weights, c.path, c.new)
    total = sum(weights.values())
    if not any(c.path.endswith(".weight") for c in row.changes) or total <= 0:
        return {}
    return {f"{server} share": w / total for server, w in weights.items()}


def _set_weight(weights: dict[str, float], path: str, value: object) -> None:
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "servers" and parts[2] == "weight":
        try:
            weights[parts[1]] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass  # a refused or odd value: the weight stays as known


def _series_for(model: FleetModel, row: ctl.JournalRow, since: float) -> dict[str, tuple]:
    """The series a change can move: its route's latency/errors/hit ratio, or the shares."""
    routes = {c.path.split(".")[1] for c in row.changes if c.path.startswith("routes.")}
    out: dict[str, tuple] = {}
    if routes:
        for route in sorted(routes):
            for metric in ("p50", "p95", "p99", "error_ratio", "hit_ratio"):
                series = model.snapshot(metric, since, [route]).get(route)
                if series is not None:
                    out[f"{route} {metric}"] = series
        return out
    for server, series in sorted(model.snapshot("share", since).items()):
        out[f"{server} share"] = series
    for server, series in sorted(model.snapshot("lb_p95", since).items()):
        out[f"{server} p95"] = series
    for route, series in sorted(model.snapshot("p95", since).items()):
        out[f"{route} p95"] = series
    return out


def _chart(name: str, series: tuple, c: Comparison, t0: float) -> CardChart:
    times, values = (np.asarray(a, dtype=float) for a in series)
    keep = (times >= c.before_span[0] - 5.0) & (times <= max(c.after_span[1], t0) + 5.0)
    scale = display_scale(name)
    return CardChart(name, times[keep] - t0, values[keep] * scale,
                     (c.before_span[0] - t0, c.before_span[1] - t0),
                     (c.after_span[0] - t0, c.after_span[1] - t0),
                     (c.band[0] * scale, c.band[1] * scale), kind_of(name).unit)


def card(model: FleetModel, row: ctl.JournalRow, now: float | None = None,
         journal: Iterable[ctl.JournalRow] = ()) -> CardContent:
    """The before/after card of ``row``'s change at ``now``, judged by the one judge.

    ``journal``: the other changes known (the previous and next change to the same target
    bound the windows; a weight change's new shares are worked out from them).
    """
    now = time.time() if now is None else now
    journal = list(journal)
    previous, following = bounds(row, journal)
    since = row.time - CARD_WINDOW - 5.0
    if previous is not None:
        since = max(since, previous)
    series = _series_for(model, row, since)
    results = compare_all(series, row.time, window=CARD_WINDOW, settle=CARD_SETTLE, now=now,
                          previous_change=previous, next_change=following,
                          expected=new_shares(model, row, journal))
    rows = [(name, format_value(name, c.before), format_value(name, c.after), c.change_text,
             c.band_text, c.label, f"{c.n_before} / {c.n_after}")
            for name, c in results.items()]
    if not rows:
        rows.append(("(no series)", "–", "–", "–", "–",
                     "nothing was recorded around this change (no data from its routes/servers)",
                     "0 / 0"))
    # Shares and the changed route's metrics come first in the series, so they get charts.
    charts = [_chart(name, series[name], c, row.time)
              for name, c in list(results.items())[:CARD_CHARTS]]
    when = time.strftime("%H:%M:%S", time.localtime(row.time))
    title = f"Change {marker_key(row)} at {when}"
    label = marker_label(row, group_of(row, journal))
    return CardContent(title, _subtitle(row, label, results, now, previous, following), rows,
                       charts, results)


def _subtitle(row: ctl.JournalRow, label: str, results: dict[str, Comparison], now: float,
              previous: float | None, following: float | None) -> str:
    """What the card compares, and how much data each side holds right now."""
    head = f"{label} — by {row.who}, reason: {row.reason or '–'}."
    if not results:
        return head
    c = next(iter(results.values()))
    before = c.before_span[1] - c.before_span[0]
    since_change = now - row.time
    if since_change < CARD_SETTLE:
        after = (f"after: nothing yet — the first {CARD_SETTLE:.0f} s after the change are "
                 f"left out ({since_change:.0f} s so far)")
    else:
        held = max(x.window for x in results.values())
        after = (f"after: {held:.0f} s of {CARD_WINDOW:.0f} s held so far, from "
                 f"{CARD_SETTLE:.0f} s after the change")
        if following is not None and c.after_span[1] >= following:
            after += " (ends at the next change)"
    start = " (starts after the previous change settled)" if previous is not None else ""
    return (f"{head} Mean of {before:.0f} s before the change{start} vs {after}. "
            "Samples per side in the last column; latency in ms, ratios in %.")

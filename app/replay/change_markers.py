"""From journal rows to chart markers and before/after cards (Qt-free)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..control import types as ctl
from ..control.actions import action_label, group_changes, group_of, limit_routes
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
    limit_intent,
)
from ..model.fleet import FleetModel, split_limit_key
from ..model.keys import route_key
from ..slo.definition import SLO

CARD_WINDOW = DEFAULT_WINDOW  # seconds judged on each side of the change
CARD_SETTLE = DEFAULT_SETTLE  # seconds right after the change left out
CARD_CHARTS = 12  # small charts at most (a weight change lists every route's p95 too)


def marker_key(row: ctl.JournalRow) -> str:
    return f"{row.source.name}#{row.id}"


def markers(rows: list[ctl.JournalRow], routes: dict[str, str] | None = None
            ) -> list[tuple[str, float, str]]:
    """One marker per action (key and time of its first row), naming every target it touched.

    Accepted changes only: a refused change changed nothing on the charts. ``routes``
    (limit name → route, :func:`~trimtab.app.control.actions.limit_routes`) names the route
    of a rate limit change whose journal entry does not.
    """
    return [(marker_key(g[0]), g[0].time, action_label(g[0], g, routes))
            for g in group_changes(rows)]


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


def _route_keys(model: FleetModel, row: ctl.JournalRow) -> set[str]:
    """The model's keys of the routes ``row`` changed: the journal names the plain route; an
    instance of a service keys it ``service · route`` (app/model/keys.py)."""
    service = row.source.service or model.read(lambda m: m.services.get(row.source.name, ""))
    return {route_key(service, c.path.split(".")[1])
            for c in row.changes if c.path.startswith("routes.")}


def _series_for(model: FleetModel, row: ctl.JournalRow, since: float) -> dict[str, tuple]:
    """The series a change can move: its route's latency/errors/hit ratio, or the shares."""
    routes = _route_keys(model, row)
    limits = {c.path.split(".")[1] for c in row.changes if c.path.startswith("limits.")}
    out: dict[str, tuple] = {}
    if limits and not routes:
        return _limit_series(model, limits, since)
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


def _burn_series(model: FleetModel, row: ctl.JournalRow, since: float,
                 slos: list[SLO]) -> dict[str, tuple]:
    """``"<slo> burn"`` series of the SLOs the change can move (all for a balancer change)."""
    routes = _route_keys(model, row)
    chosen = [s.name for s in slos if not routes or any(s.matches(r) for r in routes)]
    if not chosen:
        return {}
    return {f"{name} burn": series
            for name, series in sorted(model.snapshot("burn", since, chosen).items())}


def _limit_series(model: FleetModel, limits: set[str], since: float) -> dict[str, tuple]:
    """A rate limit change: what its limits refused, would have, and let through, per route;
    then the latency and errors of those routes."""
    out: dict[str, tuple] = {}
    routes = set()
    for metric, word in (("limit_limited", "limited/s"), ("limit_shadow", "would-be-limited/s"),
                         ("limit_allowed", "allowed/s")):
        for key, series in sorted(model.snapshot(metric, since).items()):
            route, name = split_limit_key(key)
            if name in limits:
                out[f"{route} {name} {word}"] = series
                routes.add(route)
    for route in sorted(routes):
        for metric in ("p95", "error_ratio"):
            series = model.snapshot(metric, since, [route]).get(route)
            if series is not None:
                out[f"{route} {metric}"] = series
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
         journal: Iterable[ctl.JournalRow] = (), slos: Iterable[SLO] = ()) -> CardContent:
    """The before/after card of ``row``'s change at ``now``, judged by the one judge.

    ``journal``: the other changes known (the previous and next change to the same target
    bound the windows; a weight change's new shares are worked out from them).
    ``slos``: the SLOs whose live burn rate (the model's ``burn`` series) the card judges
    too: those on the changed routes, or every one for a balancer change.
    """
    now = time.time() if now is None else now
    journal = list(journal)
    previous, following = bounds(row, journal)
    since = row.time - CARD_WINDOW - 5.0
    if previous is not None:
        since = max(since, previous)
    series = _series_for(model, row, since)
    series.update(_burn_series(model, row, since, list(slos)))
    # A limit change meant its limited rates to move one way: "as intended" is that way.
    ways = limit_intent((c.path, c.old, c.new) for c in row.changes)
    intended = {name: way for name in series for limit, per in ways.items()
                for word, way in per.items() if name.endswith(f" {limit} {word}")}
    results = compare_all(series, row.time, window=CARD_WINDOW, settle=CARD_SETTLE, now=now,
                          previous_change=previous, next_change=following,
                          expected=new_shares(model, row, journal), intended=intended)
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
    label = action_label(row, group_of(row, journal),
                         limit_routes(model.read(lambda m: m.limit_configs())))
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

"""Figures a snapshot report shows: route quantiles from histogram buckets, request rates.

Follows Prometheus: a bucket's increase over a span is the sum of its
counter deltas (a drop is a reset: the increase is the new value); buckets
are summed across instances per ``(route, le)`` before
``histogram_quantile`` interpolates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from trimtab.collectors.promql import Quantile, histogram_quantile, le_value

HIST = "trimtab_http_request_duration_seconds_bucket"
REQUESTS = "trimtab_http_requests_total"
RATELIMIT = "trimtab_ratelimit_requests_total"
LIMIT_RESULTS = ("allowed", "limited", "shadow_limited")
_MAX_POINTS = 4000  # per series; "last" keeps counter increases exact between points


class SeriesSource(Protocol):
    """What the figures need: a Store or a Snapshot."""

    def query(self, name: str, matchers: dict[str, str] | None = None, *, start: float,
              end: float, max_points: int, target: str | None = None,
              agg: str = "last") -> Mapping[Any, tuple[np.ndarray, np.ndarray]]: ...


@dataclass(frozen=True)
class RouteLatency:
    """One route's quantile over a span, fleet-wide."""

    route: str
    quantile: Quantile
    requests: float  # observations in the span (the +Inf bucket's increase)


def increases(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time, increase since the previous sample) of a counter; NaN samples skipped."""
    keep = ~np.isnan(v)
    t, v = t[keep], v[keep]
    if len(v) < 2:
        return np.empty(0), np.empty(0)
    d = np.diff(v)
    return t[1:], np.where(d < 0, v[1:], d)


def bucket_increases(source: SeriesSource, start: float, end: float, edges: np.ndarray,
                     name: str = HIST) -> dict[str, dict[float, np.ndarray]]:
    """Per route, per bucket bound, the summed increase inside each ``edges`` interval."""
    steps = len(edges) - 1
    out: dict[str, dict[float, np.ndarray]] = {}
    for key, (t, v) in source.query(name, start=start, end=end, max_points=_MAX_POINTS).items():
        labels = dict(key.labels)
        if "le" not in labels:
            continue
        at, inc = increases(t, v)
        idx = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, steps - 1)
        per_le = out.setdefault(labels.get("route", "?"), {})
        acc = per_le.setdefault(le_value(labels["le"]), np.zeros(steps))
        np.add.at(acc, idx, inc)
    return out


def route_latencies(source: SeriesSource, start: float, end: float,
                    q: float = 0.95) -> list[RouteLatency]:
    """Every route's fleet-wide quantile over ``[start, end]``, slowest first."""
    found = bucket_increases(source, start, end, np.array([start, end]))
    out = []
    for route, per_le in found.items():
        est = histogram_quantile(q, [(le, float(c[0])) for le, c in per_le.items()])
        if est is not None:
            total = float(per_le.get(math.inf, np.zeros(1))[0])
            out.append(RouteLatency(route, est, total))
    return sorted(out, key=lambda r: (-r.quantile.value, r.route))


def latency_over_time(source: SeriesSource, start: float, end: float, steps: int = 60,
                      q: float = 0.95) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step mid-times and, per route plus ``"all routes"``, the quantile in each step (NaN: none)."""
    edges = np.linspace(start, end, steps + 1)
    found = bucket_increases(source, start, end, edges)
    total: dict[float, np.ndarray] = {}
    for per_le in found.values():
        for le, acc in per_le.items():
            total[le] = total.get(le, np.zeros(steps)) + acc
    curves = {}
    for route, per_le in [*found.items(), ("all routes", total)]:
        values = np.full(steps, np.nan)
        for i in range(steps):
            est = histogram_quantile(q, [(le, float(acc[i])) for le, acc in per_le.items()])
            if est is not None:
                values[i] = est.value
        curves[route] = values
    return (edges[:-1] + edges[1:]) / 2, curves


def request_rate(source: SeriesSource, start: float, end: float, steps: int = 60,
                 name: str = REQUESTS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step mid-times and requests/s per target in each step; NaN where the target has no
    samples (before its first, after its last, inside a gap longer than :data:`STALE`):
    no data is a gap on a chart, never 0 requests/s."""
    edges = np.linspace(start, end, steps + 1)
    width = (end - start) / steps
    out: dict[str, np.ndarray] = {}
    seen: dict[str, np.ndarray] = {}
    for key, (t, v) in source.query(name, start=start, end=end, max_points=_MAX_POINTS).items():
        at, inc = increases(t, v)
        idx = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, steps - 1)
        acc = out.setdefault(key.target, np.zeros(steps))
        np.add.at(acc, idx, inc / width)
        covered = seen.setdefault(key.target, np.zeros(steps, dtype=bool))
        covered |= _covered(edges, t[~np.isnan(v)])
    for target, acc in out.items():
        acc[~seen[target]] = np.nan
    return (edges[:-1] + edges[1:]) / 2, out


STALE = 300.0  # s: samples further apart than this leave a gap between them (Prometheus' lookback)


def _covered(edges: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Which steps between ``edges`` lie wholly within a series sampled at times ``t``.

    A step the series starts or ends inside holds part of a step's requests: shown as a
    rate over the whole step it would read as a dip, so it is left out too."""
    if not len(t):
        return np.zeros(len(edges) - 1, dtype=bool)
    covered = (edges[:-1] >= t[0]) & (edges[1:] <= t[-1])
    for i in np.flatnonzero(np.diff(t) > STALE):
        covered &= (edges[1:] <= t[i]) | (edges[:-1] >= t[i + 1])
    return covered


def limit_rates(source: SeriesSource, start: float, end: float, steps: int = 60
                ) -> tuple[np.ndarray, dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Step mid-times and, per ``(route, limit)``, each decision's requests/s per step summed
    over instances (``allowed``, ``limited``, ``shadow_limited``; NaN where no instance has
    samples of that limit). An empty dict: no limit decided anything in the window."""
    edges = np.linspace(start, end, steps + 1)
    width = (end - start) / steps
    out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    seen: dict[tuple[str, str], np.ndarray] = {}
    for key, (t, v) in source.query(RATELIMIT, start=start, end=end,
                                    max_points=_MAX_POINTS).items():
        labels = dict(key.labels)
        result = labels.get("result")
        if result not in LIMIT_RESULTS:
            continue
        which = (labels.get("route", "?"), labels.get("limit", "?"))
        at, inc = increases(t, v)
        idx = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, steps - 1)
        per = out.setdefault(which, {r: np.zeros(steps) for r in LIMIT_RESULTS})
        np.add.at(per[result], idx, inc / width)
        covered = seen.setdefault(which, np.zeros(steps, dtype=bool))
        covered |= _covered(edges, t[~np.isnan(v)])
    for which, per in out.items():
        for values in per.values():
            values[~seen[which]] = np.nan
    return (edges[:-1] + edges[1:]) / 2, out


def status_shares(source: SeriesSource, start: float, end: float, status: str = "429",
                  name: str = REQUESTS) -> dict[str, float]:
    """Per route, the share of its requests in ``[start, end]`` answered with ``status``
    (summed over instances; counter increases, resets understood); routes without requests
    left out."""
    part: dict[str, float] = {}
    whole: dict[str, float] = {}
    for key, (t, v) in source.query(name, start=start, end=end, max_points=_MAX_POINTS).items():
        labels = dict(key.labels)
        route = labels.get("route", "?")
        added = float(increases(t, v)[1].sum())
        whole[route] = whole.get(route, 0.0) + added
        if labels.get("status") == status:
            part[route] = part.get(route, 0.0) + added
    return {route: part.get(route, 0.0) / total for route, total in whole.items() if total > 0}

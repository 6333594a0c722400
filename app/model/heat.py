"""Latency heat series and bucket exemplars for the FleetModel (Qt-free, no locking here).

The model owns one :class:`HeatRing` per route and one :class:`ExemplarLog`; it calls
them under its lock. Each heat row holds, per latency bucket, the requests per second
that finished in that bucket over the model's rate window, summed over instances.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from trimtab.collectors.canonical import HIST_BUCKET
from trimtab.collectors.exposition import Exposition

EXEMPLARS_PER_ROUTE = 512  # newest distinct trace ids kept per route


def bucket_rates(cumulative: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(upper bounds, per-bucket values) from cumulative (le, value) pairs sorted by le.

    Cumulative sums of instances with different bucket layouts can dip; the running
    maximum is carried forward so no heatmap cell is ever negative (a display choice:
    ``histogram_quantile`` repairs dips the same way but leaves NaN counts in place).
    """
    bounds = np.array([le for le, _ in cumulative], dtype=float)
    counts = np.maximum.accumulate(np.array([c for _, c in cumulative], dtype=float))
    return bounds, np.diff(counts, prepend=0.0)


class HeatRing:
    """(t, one float32 value per bucket) rows of one route, oldest overwritten when full.

    Storage grows by doubling up to ``capacity`` rows (a route seen for a minute
    does not hold an hour of memory). When the route's bucket bounds change (an
    instance with another layout joins) the columns become the union of bounds;
    earlier rows read NaN (unknown) in the new columns.
    """

    __slots__ = ("_capacity", "_head", "_n", "_t", "_z", "bounds")

    def __init__(self, capacity: int, bounds: np.ndarray) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self.bounds = np.asarray(bounds, dtype=float)
        rows = min(capacity, 64)
        self._t = np.full(rows, np.nan)
        self._z = np.full((rows, len(self.bounds)), np.nan, dtype=np.float32)
        self._n = 0
        self._head = 0

    def __len__(self) -> int:
        return self._n

    def append(self, t: float, bounds: np.ndarray, values: np.ndarray) -> None:
        """Add the row at ``t``; ``values[i]`` belongs to ``bounds[i]`` (empty = a gap)."""
        if len(bounds) and not np.array_equal(bounds, self.bounds):
            self._rebound(np.union1d(self.bounds, bounds))
        if self._n == len(self._t) < self._capacity:  # never wrapped yet: grow in place
            self._grow(min(self._capacity, 2 * len(self._t)))
        row = np.full(len(self.bounds), np.nan, dtype=np.float32)
        if len(bounds):
            row[np.searchsorted(self.bounds, bounds)] = values
        self._t[self._head] = t
        self._z[self._head] = row
        self._head = (self._head + 1) % len(self._t)
        self._n = min(self._n + 1, len(self._t))

    def arrays(self, since: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chronological copies (t, bounds, z) of the rows at or after ``since``."""
        if self._n < len(self._t):
            t, z = self._t[: self._n], self._z[: self._n]
        else:
            order = np.r_[self._head : len(self._t), 0 : self._head]
            t, z = self._t[order], self._z[order]
        start = int(np.searchsorted(t, since)) if since is not None else 0
        return t[start:].copy(), self.bounds.copy(), z[start:].copy()

    def _grow(self, rows: int) -> None:
        t = np.full(rows, np.nan)
        z = np.full((rows, len(self.bounds)), np.nan, dtype=np.float32)
        t[: self._n], z[: self._n] = self._t[: self._n], self._z[: self._n]
        self._t, self._z = t, z
        self._head = self._n  # a full, never-wrapped buffer had its head back at 0

    def _rebound(self, bounds: np.ndarray) -> None:
        z = np.full((len(self._t), len(bounds)), np.nan, dtype=np.float32)
        z[:, np.searchsorted(bounds, self.bounds)] = self._z
        self._z, self.bounds = z, bounds


def bucket_exemplars(expo: Exposition, scraped_at: float) -> list[tuple[str, str, float, float]]:
    """(route, trace id, seconds, unix time) of every exemplar on a latency bucket.

    An exemplar without a timestamp is dated by the scrape that carried it.
    """
    out = []
    names, label_sets, _values, _stamps = expo.columns()
    for index, exemplar in expo.exemplars.items():
        if names[index] != HIST_BUCKET:
            continue
        trace_id = dict(exemplar.labels).get("trace_id")
        if not trace_id or not math.isfinite(exemplar.value):
            continue
        route = dict(label_sets[index]).get("route", "?")
        stamp = exemplar.timestamp if exemplar.timestamp is not None else scraped_at
        out.append((route, trace_id, exemplar.value, stamp))
    return out


class ExemplarLog:
    """The newest distinct exemplar trace ids per route, with their latency and time.

    A bucket's exemplar is repeated by every scrape until a newer request replaces
    it, so entries are keyed by trace id; at most ``per_route`` are kept per route.
    """

    def __init__(self, per_route: int = EXEMPLARS_PER_ROUTE) -> None:
        self.per_route = per_route
        self._routes: dict[str, dict[str, tuple[float, float]]] = {}

    def add(self, entries: Iterable[tuple[str, str, float, float]]) -> None:
        """Record (route, trace id, seconds, unix time) entries."""
        for route, trace_id, seconds, stamp in entries:
            log = self._routes.setdefault(route, {})
            if trace_id in log:
                continue
            log[trace_id] = (seconds, stamp)
            if len(log) > self.per_route:
                del log[next(iter(log))]  # dicts keep insertion order: the oldest goes

    def trace_ids(self, route: str, t0: float = -math.inf, t1: float = math.inf,
                  lo_s: float = -math.inf, hi_s: float = math.inf) -> list[str]:
        """Trace ids of ``route`` observed in ``[t0, t1]`` with latency in ``(lo_s, hi_s]``."""
        log = self._routes.get(route, {})
        return [trace_id for trace_id, (seconds, stamp) in log.items()
                if t0 <= stamp <= t1 and lo_s < seconds <= hi_s]

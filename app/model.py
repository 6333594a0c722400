"""FleetModel: the Qt-free live state the window draws from.

The collector thread calls :meth:`FleetModel.ingest` per scrape and
:meth:`FleetModel.tick` once per cycle; the GUI thread polls :attr:`version`
and copies what it draws under the same lock. No Qt here.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from trimtab.collectors.promql import Quantile, counter_delta, histogram_quantile, sum_buckets
from trimtab.collectors.scrape import ScrapeResult

from .ring import Ring
from .snapshot_extract import Counters, extract

QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class TargetHealth:
    name: str
    kind: str
    up: bool = False
    last_scrape: float = 0.0
    duration: float = 0.0
    error: str = "not scraped yet"
    samples: int = 0


@dataclass
class ShareRow:
    server: str
    weight: float
    expected: float
    observed: float


@dataclass
class FleetModel:
    """Per-target counter history plus derived series (quantiles, hit ratio, share)."""

    rate_window: float = 10.0
    stale_after: float = 5.0
    capacity: int = 3600
    version: int = 0
    health: dict[str, TargetHealth] = field(default_factory=dict)
    series: dict[tuple[str, str], Ring] = field(default_factory=dict)
    quantiles: dict[str, dict[float, Quantile]] = field(default_factory=dict)
    share: list[ShareRow] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _history: dict[str, deque[tuple[float, Counters]]] = field(default_factory=dict)

    def ingest(self, result: ScrapeResult) -> None:
        """Record one scrape (called from the collector thread)."""
        counters = extract(result.exposition) if result.exposition is not None else None
        with self.lock:
            h = self.health.setdefault(result.target.name,
                                       TargetHealth(result.target.name, result.target.kind))
            h.up, h.last_scrape, h.duration = result.up, result.timestamp, result.duration
            h.error = result.error
            h.samples = len(result.exposition.samples) if result.exposition else 0
            if counters is not None:
                hist = self._history.setdefault(result.target.name, deque(maxlen=600))
                hist.append((result.timestamp, counters))
            self.version += 1

    def tick(self, now: float) -> None:
        """Derive one point per series from the counter history (collector thread)."""
        with self.lock:
            pairs = list(self._window_pairs(now))
            self._derive_latency(now, pairs)
            self._derive_cache(now, pairs)
            self._derive_share(now, pairs)
            self.version += 1

    def _window_pairs(self, now: float) -> Iterable[tuple[Counters, Counters]]:
        """(oldest in window, newest) per fresh target; stale targets drop out (a gap)."""
        for hist in self._history.values():
            if len(hist) < 2 or now - hist[-1][0] > self.stale_after:
                continue
            newest_t, newest = hist[-1]
            oldest = next((c for t, c in hist if t >= newest_t - self.rate_window), None)
            if oldest is not None and oldest is not newest:
                yield oldest, newest

    def _append(self, metric: str, key: str, now: float, value: float) -> None:
        ring = self.series.get((metric, key))
        if ring is None:
            ring = self.series[(metric, key)] = Ring(self.capacity)
        ring.append(now, value)

    def _derive_latency(self, now: float, pairs: list[tuple[Counters, Counters]]) -> None:
        routes = {r for _, new in pairs for r in new.buckets} | {k for m, k in self.series if m == "p95"}
        self.quantiles = {}
        for route in sorted(routes):
            per_target = [_delta_map(old.buckets.get(route, {}), new.buckets.get(route, {}))
                          for old, new in pairs if route in new.buckets]
            summed = sum_buckets(per_target)
            results = {q: histogram_quantile(q, summed) for q in QUANTILES}
            self.quantiles[route] = {q: r for q, r in results.items() if r is not None}
            for q, r in results.items():
                self._append(f"p{round(q * 100)}", route, now, r.value if r else math.nan)
            reqs = sum(counter_delta(o.requests.get(route, 0.0), n.requests.get(route, 0.0))
                       for o, n in pairs)
            errs = sum(counter_delta(o.errors.get(route, 0.0), n.errors.get(route, 0.0))
                       for o, n in pairs)
            self._append("error_ratio", route, now, errs / reqs if reqs else math.nan)

    def _derive_cache(self, now: float, pairs: list[tuple[Counters, Counters]]) -> None:
        totals: dict[tuple[str, str], float] = {}
        for old, new in pairs:
            for key, value in new.cache.items():
                totals[key] = totals.get(key, 0.0) + counter_delta(old.cache.get(key, 0.0), value)
        routes = {r for r, _ in totals} | {k for m, k in self.series if m == "hit_ratio"}
        for route in sorted(routes):
            hits, misses = totals.get((route, "hit"), 0.0), totals.get((route, "miss"), 0.0)
            self._append("hit_ratio", route, now, hits / (hits + misses) if hits + misses else math.nan)

    def _derive_share(self, now: float, pairs: list[tuple[Counters, Counters]]) -> None:
        lb = [(o, n) for o, n in pairs if n.lb_requests]
        if not lb:
            for (metric, key) in list(self.series):
                if metric == "share":
                    self._append("share", key, now, math.nan)
            return
        old, new = lb[0]
        deltas = {s: counter_delta(old.lb_requests.get(s, 0.0), v) for s, v in new.lb_requests.items()}
        total = sum(deltas.values())
        self.share = [ShareRow(s, new.lb_weight.get(s, math.nan), new.lb_expected.get(s, math.nan),
                               deltas[s] / total if total else math.nan) for s in sorted(deltas)]
        for row in self.share:
            self._append("share", row.server, now, row.observed)

    def snapshot(self, metric: str) -> dict[str, tuple]:
        """Copies of every series of one metric, keyed by route or server (GUI thread)."""
        with self.lock:
            return {key: ring.arrays() for (m, key), ring in self.series.items() if m == metric}

    def read(self, fn: Callable[[FleetModel], object]) -> object:
        """Run ``fn`` under the lock, for consistent multi-field reads."""
        with self.lock:
            return fn(self)


def _delta_map(old: dict[float, float], new: dict[float, float]) -> dict[float, float]:
    return {le: counter_delta(old.get(le, 0.0), v) for le, v in new.items()}

"""Cheap per-route counters and a prometheus-client Collector that exports them.

The hot path (``observe``) is a dict lookup, a bisect and a few integer adds;
families are built fresh only when /metrics is scraped.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .buckets import LATENCY_BUCKETS


@dataclass
class _Hist:
    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class RouteMetrics:
    """Request, latency, in-flight and cache counters keyed by route."""

    prefix: str = "trimtab_http"
    route_label: str = "route"
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    in_flight: int = 0
    requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], _Hist] = field(default_factory=dict)
    cache: dict[tuple[str, str], int] = field(default_factory=dict)
    folded_routes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        key = (route, method)
        with self._lock:
            hist = self.latency.get(key)
            if hist is None:
                hist = self.latency[key] = _Hist([0] * (len(self.buckets) + 1))
            hist.counts[bisect_left(self.buckets, seconds)] += 1
            hist.total += seconds
            hist.count += 1
            rkey = (route, method, str(status))
            self.requests[rkey] = self.requests.get(rkey, 0) + 1

    def cache_result(self, route: str, result: str) -> None:
        """Count a cache ``hit``, ``miss`` or ``bypass`` for a route."""
        key = (route, result)
        with self._lock:
            self.cache[key] = self.cache.get(key, 0) + 1


class RouteMetricsCollector(Collector):
    """Yields fresh metric families from a :class:`RouteMetrics` on every scrape."""

    def __init__(self, metrics: RouteMetrics, instance: str, extras: bool = True) -> None:
        self._m = metrics
        self._instance = instance
        self._extras = extras  # cache, folding and identity families: API instances only

    def collect(self) -> Iterator:
        m = self._m
        p = m.prefix
        with m._lock:
            requests = dict(m.requests)
            latency = {k: (list(h.counts), h.total, h.count) for k, h in m.latency.items()}
            cache = dict(m.cache)
            in_flight = m.in_flight
            folded = m.folded_routes
        reqs = CounterMetricFamily(f"{p}_requests", "HTTP requests by route, method and status.",
                                   labels=[m.route_label, "method", "status"])
        for (route, method, status), n in sorted(requests.items()):
            reqs.add_metric([route, method, status], n)
        yield reqs
        hist = HistogramMetricFamily(f"{p}_request_duration_seconds",
                                     "HTTP request latency by route and method.",
                                     labels=[m.route_label, "method"], unit="seconds")
        bounds = [repr(b) for b in m.buckets] + ["+Inf"]
        for (route, method), (counts, total, count) in sorted(latency.items()):
            running, cumulative = 0, []
            for bound, n in zip(bounds, counts):
                running += n
                cumulative.append((bound, running))
            hist.add_metric([route, method], cumulative, total)
        yield hist
        flight = GaugeMetricFamily(f"{p}_requests_in_flight", "Requests being served now.")
        flight.add_metric([], in_flight)
        yield flight
        if not self._extras:
            return
        cache_fam = CounterMetricFamily("trimtab_cache_requests", "Response cache lookups by result.",
                                        labels=["route", "result"])
        for (route, result), n in sorted(cache.items()):
            cache_fam.add_metric([route, result], n)
        yield cache_fam
        fold = CounterMetricFamily("trimtab_routes_folded",
                                   "Requests whose route was folded into the overflow bucket.")
        fold.add_metric([], folded)
        yield fold
        info = GaugeMetricFamily("trimtab_agent_info", "Agent identity.", labels=["instance"])
        info.add_metric([self._instance], 1)
        yield info

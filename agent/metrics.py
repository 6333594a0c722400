"""Cheap per-route counters and a prometheus-client Collector that exports them.

The hot path (``observe``) is a dict lookup, a bisect and a few integer adds;
families are built fresh only when /metrics is scraped. In OpenMetrics mode
each latency bucket carries the trace id of the last request that fell in it
(an exemplar), so a slow bucket on a chart leads to a concrete trace.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from .buckets import LATENCY_BUCKETS

# Client-supplied methods are free text: anything else is folded so it cannot grow /metrics.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                           "CONNECT"})


# Response body bytes: powers of 4 from 64 B to 16 MiB, so a page that doubles in size or a
# body that compression shrinks moves a bucket, and an empty body (204, HEAD) sits in the first.
SIZE_BUCKETS: tuple[float, ...] = tuple(float(64 * 4**k) for k in range(10))


def method_label(method: str) -> str:
    """The method, or ``OTHER`` for anything non-standard."""
    return method if method in KNOWN_METHODS else "OTHER"


@dataclass
class _Hist:
    counts: list[int]
    total: float = 0.0
    count: int = 0
    exemplars: dict[int, tuple[str, float, float]] = field(default_factory=dict)

    def add(self, buckets: tuple[float, ...], value: float) -> int:
        """Count ``value`` in its bucket (``le`` semantics) and return the bucket's index."""
        index = bisect_left(buckets, value)
        self.counts[index] += 1
        self.total += value
        self.count += 1
        return index


@dataclass
class RouteMetrics:
    """Request, latency, response size, in-flight and cache counters keyed by route."""

    prefix: str = "trimtab_http"
    route_label: str = "route"
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    size_buckets: tuple[float, ...] = SIZE_BUCKETS
    in_flight: int = 0
    requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], _Hist] = field(default_factory=dict)
    # (route, method) -> response body bytes; only callers that see the body fill it.
    sizes: dict[tuple[str, str], _Hist] = field(default_factory=dict)
    cache: dict[tuple[str, str], int] = field(default_factory=dict)
    # (route, reason) -> bypasses: the breakdown of ``cache[(route, "bypass")]``.
    cache_bypass: dict[tuple[str, str], int] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)
    cache_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    folded_routes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, route: str, method: str, status: int, seconds: float,
                trace_id: str | None = None, body_bytes: int | None = None) -> None:
        """Record one finished request (``trace_id`` becomes the bucket's exemplar).

        ``body_bytes`` is the response body sent to the client (None: not known, not counted).
        """
        key = (route, method)
        with self._lock:
            hist = self.latency.get(key)
            if hist is None:
                hist = self.latency[key] = _Hist([0] * (len(self.buckets) + 1))
            index = hist.add(self.buckets, seconds)
            if body_bytes is not None:
                size = self.sizes.get(key)
                if size is None:
                    size = self.sizes[key] = _Hist([0] * (len(self.size_buckets) + 1))
                size.add(self.size_buckets, body_bytes)
            if trace_id is not None:
                hist.exemplars[index] = (trace_id, seconds, time.time())
            rkey = (route, method, str(status))
            self.requests[rkey] = self.requests.get(rkey, 0) + 1

    def cache_result(self, route: str, result: str, reason: str = "") -> None:
        """Count a cache ``hit``, ``miss``, ``error`` or ``bypass`` (and its reason) for a route."""
        key = (route, result)
        with self._lock:
            self.cache[key] = self.cache.get(key, 0) + 1
            if result == "bypass":
                why = (route, reason or "unknown")
                self.cache_bypass[why] = self.cache_bypass.get(why, 0) + 1

    def exception(self, route: str) -> None:
        """Count a request whose handler raised."""
        with self._lock:
            self.exceptions[route] = self.exceptions.get(route, 0) + 1

    def cache_error(self, store: str, op: str) -> None:
        """Count a failed or timed-out cache store operation (the request went to the origin)."""
        with self._lock:
            self.cache_errors[(store, op)] = self.cache_errors.get((store, op), 0) + 1


class RouteMetricsCollector(Collector):
    """Yields fresh metric families from a :class:`RouteMetrics` on every scrape."""

    def __init__(self, metrics: RouteMetrics, instance: str, extras: bool = True,
                 gauges: Callable[[], dict[str, tuple[str, float]]] | None = None,
                 counters: Callable[[], dict[str, tuple[str, float]]] | None = None,
                 source: Callable[[], RouteMetrics] | None = None) -> None:
        self._m = metrics
        self._source = source  # e.g. every worker's counters merged; default: ``metrics``
        self._instance = instance
        self._extras = extras  # cache, folding and identity families: API instances only
        self._gauges = gauges  # name -> (help, value), read at scrape time
        self._counters = counters

    def collect(self) -> Iterator:
        m = self._source() if self._source is not None else self._m
        p = m.prefix
        with m._lock:
            requests = dict(m.requests)
            latency = {k: (list(h.counts), h.total, dict(h.exemplars))
                       for k, h in m.latency.items()}
            sizes = {k: (list(h.counts), h.total) for k, h in m.sizes.items()}
            in_flight = m.in_flight
        reqs = CounterMetricFamily(f"{p}_requests", "HTTP requests by route, method and status.",
                                   labels=[m.route_label, "method", "status"])
        for (route, method, status), n in sorted(requests.items()):
            reqs.add_metric([route, method, status], n)
        yield reqs
        yield self._histogram(m, latency)
        flight = GaugeMetricFamily(f"{p}_requests_in_flight", "Requests being served now.")
        flight.add_metric([], in_flight)
        yield flight
        if self._extras:
            yield self._size_histogram(m, sizes)
            yield from self._extra_families(m)

    @staticmethod
    def _size_histogram(m: RouteMetrics,
                        sizes: dict[tuple[str, str], tuple[list[int], float]]
                        ) -> HistogramMetricFamily:
        hist = HistogramMetricFamily(f"{m.prefix}_response_size_bytes",
                                     "HTTP response body bytes sent, by route and method.",
                                     labels=[m.route_label, "method"], unit="bytes")
        bounds = [repr(b) for b in m.size_buckets] + ["+Inf"]
        for (route, method), (counts, total) in sorted(sizes.items()):
            running = 0
            cumulative = []
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, running))
            hist.add_metric([route, method], cumulative, total)
        return hist

    def _histogram(self, m: RouteMetrics, latency: dict) -> HistogramMetricFamily:
        hist = HistogramMetricFamily(f"{m.prefix}_request_duration_seconds",
                                     "HTTP request latency by route and method.",
                                     labels=[m.route_label, "method"], unit="seconds")
        bounds = [repr(b) for b in m.buckets] + ["+Inf"]
        for (route, method), (counts, total, exemplars) in sorted(latency.items()):
            running = 0
            cumulative: list[Any] = []  # (bound, count) or (bound, count, exemplar)
            for index, (bound, n) in enumerate(zip(bounds, counts, strict=True)):
                running += n
                ex = exemplars.get(index)
                if ex is None:
                    cumulative.append((bound, running))
                else:
                    cumulative.append((bound, running,
                                       Exemplar({"trace_id": ex[0]}, ex[1], ex[2])))
            hist.add_metric([route, method], cumulative, total)
        return hist

    def _extra_families(self, m: RouteMetrics) -> Iterator:
        with m._lock:
            cache, exceptions = dict(m.cache), dict(m.exceptions)
            bypass = dict(m.cache_bypass)
            errors, folded = dict(m.cache_errors), m.folded_routes
        cache_fam = CounterMetricFamily(
            "trimtab_cache_requests",
            "Response cache lookups by result; reason says why a bypass went to the origin.",
            labels=["route", "result", "reason"])
        for (route, result), n in sorted(cache.items()):
            if result != "bypass":
                cache_fam.add_metric([route, result, ""], n)
                continue
            # Bypasses split by reason; a count without one (a peer worker's snapshot from
            # before reasons existed) stays visible as "unknown".
            reasons = {why: k for (r, why), k in bypass.items() if r == route}
            rest = n - sum(reasons.values())
            if rest > 0:
                reasons["unknown"] = reasons.get("unknown", 0) + rest
            for why, k in sorted(reasons.items()):
                cache_fam.add_metric([route, result, why], k)
        yield cache_fam
        err_fam = CounterMetricFamily("trimtab_cache_errors",
                                      "Cache store operations that failed or timed out.",
                                      labels=["store", "op"])
        for (store, op), n in sorted(errors.items()):
            err_fam.add_metric([store, op], n)
        yield err_fam
        exc = CounterMetricFamily(f"{m.prefix}_exceptions", "Requests whose handler raised.",
                                  labels=[m.route_label])
        for route, n in sorted(exceptions.items()):
            exc.add_metric([route], n)
        yield exc
        fold = CounterMetricFamily("trimtab_routes_folded",
                                   "Requests whose route was folded into the overflow bucket.")
        fold.add_metric([], folded)
        yield fold
        for name, (help_text, value) in sorted((self._gauges() if self._gauges else {}).items()):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
        counters = self._counters() if self._counters else {}
        for name, (help_text, value) in sorted(counters.items()):
            counter = CounterMetricFamily(name, help_text)
            counter.add_metric([], value)
            yield counter
        info = GaugeMetricFamily("trimtab_agent_info", "Agent identity.", labels=["instance"])
        info.add_metric([self._instance], 1)
        yield info

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
from itertools import pairwise, repeat
from typing import Any, NamedTuple

import numpy as np
from trimtab.collectors.promql import Quantile, counter_delta, histogram_quantile, sum_buckets
from trimtab.collectors.scrape import ScrapeResult

from ..store.store import Row, Store
from .expiry import INSTANCE_SEP, drop, expired
from .extract import Counters, extract
from .heat import ExemplarLog, HeatRing, bucket_exemplars, heat_row
from .ring import Ring

QUANTILES = (0.5, 0.95, 0.99)
EXPIRE_EVERY = 60  # cycles between two looks for expired series


def level_name(q: float) -> str:
    """``0.95`` → ``"p95"``, ``0.999`` → ``"p99.9"``: the series name of a percentile."""
    return f"p{q * 100:.6g}"


class Pair(NamedTuple):
    """A target's counters at the start and end of the rate window."""

    old: Counters
    new: Counters
    seconds: float
    target: str = ""


@dataclass
class TargetHealth:
    name: str
    kind: str
    up: bool = False
    last_scrape: float = 0.0
    duration: float = 0.0
    error: str = "not scraped yet"
    samples: int = 0
    ok_scrapes: int = 0
    failed_scrapes: int = 0
    next_attempt: float = 0.0  # unix time of the engine's next try (later than usual when backing off)


@dataclass
class RouteStats:
    """One row of the slow-routes table: fleet-wide figures over the rate window."""

    route: str
    quantiles: dict[float, Quantile]
    rate: float  # requests per second, summed over instances
    error_ratio: float  # 5xx / all, NaN when idle

    @property
    def time_spent(self) -> float:
        """p95 × rate: seconds of handler time per second, the default ranking."""
        p95 = self.quantiles.get(0.95)
        return p95.value * self.rate if p95 is not None else 0.0


@dataclass
class ShareRow:
    """One backend server as the balancer reports it, with the observed share."""

    server: str
    weight: float
    expected: float
    observed: float
    state: str = "?"
    up: bool = True
    in_flight: float = 0.0
    error_rate: float = math.nan  # proxy errors per second
    p95: Quantile | None = None


@dataclass
class CacheRow:
    """Cache lookups of one route over the rate window, summed over instances (per second)."""

    route: str
    hits: float
    misses: float
    bypasses: float

    @property
    def hit_ratio(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else math.nan


@dataclass
class FleetModel:
    """Per-target counter history plus derived series (quantiles, hit ratio, share)."""

    rate_window: float = 10.0
    stale_after: float = 5.0
    capacity: int = 3600
    # Series of a route or server without one finite point for this long are dropped
    # (model_expiry.py); checked every EXPIRE_EVERY cycles. A replay keeps everything.
    expire_after: float = 3600.0
    version: int = 0  # bumped when derived series, traces or configs change
    health_version: int = 0  # bumped on every scrape (target health only)
    health: dict[str, TargetHealth] = field(default_factory=dict)
    series: dict[tuple[str, str], Ring] = field(default_factory=dict)
    heat_rings: dict[str, HeatRing] = field(default_factory=dict)  # route → latency heat rows
    exemplars: ExemplarLog = field(default_factory=ExemplarLog)
    routes: dict[str, RouteStats] = field(default_factory=dict)
    share: list[ShareRow] = field(default_factory=list)
    cache: list[CacheRow] = field(default_factory=list)
    traces: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5000))
    trace_errors: dict[str, str] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent → config document
    config_errors: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    store: Store | None = None  # when set, every cycle's raw samples are written to it
    store_error: str = ""
    # Rows for the next store cycle, per target: a target scraped twice between two ticks
    # keeps its newest scrape (a cycle holds one value per series; two would be refused).
    _pending: dict[str, list[Row]] = field(default_factory=dict)
    _points: list[tuple[str, str, float]] = field(default_factory=list)
    _heat_rows: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    _history: dict[str, deque[tuple[float, Counters]]] = field(default_factory=dict)
    _cycles: int = 0

    def ingest(self, result: ScrapeResult) -> None:
        """Record one scrape (called from the collector thread)."""
        counters = extract(result.exposition) if result.exposition is not None else None
        examples = (bucket_exemplars(result.exposition, result.timestamp)
                    if result.exposition is not None and result.exposition.exemplars else [])
        with self.lock:
            self.exemplars.add(examples)
            h = self.health.setdefault(result.target.name,
                                       TargetHealth(result.target.name, result.target.kind))
            h.up, h.last_scrape, h.duration = result.up, result.timestamp, result.duration
            h.error = result.error
            h.next_attempt = result.next_attempt
            columns = result.exposition.columns() if result.exposition is not None else None
            h.samples = len(columns[0]) if columns is not None else 0
            if result.up:
                h.ok_scrapes += 1
            else:
                h.failed_scrapes += 1
            if counters is not None:
                hist = self._history.setdefault(result.target.name, deque())
                hist.append((result.timestamp, counters))
                # Keep only what the rate window needs: old snapshots are millions of small
                # objects for the garbage collector to walk (history lives in the store).
                # Four kept at least: they tell the target's usual interval (_windows).
                window = self._windows(hist)[0]
                while len(hist) > 4 and hist[1][0] < result.timestamp - window - 1.0:
                    hist.popleft()
                if self.store is not None and columns is not None:
                    names, label_sets, values, _stamps = columns  # no Sample tuples built
                    self._pending[result.target.name] = list(
                        zip(repeat(result.target.name), names, label_sets, values))
            # Only health changed: derived series move once per cycle, in tick().
            self.health_version += 1

    def ingest_traces(self, target: str, traces: list[dict[str, Any]], error: str = "") -> None:
        """New traces from one agent, oldest first (collector thread); ``error`` when polling failed."""
        with self.lock:
            for trace in traces:
                trace.setdefault("instance", target)
                self.traces.append(trace)
            if error:
                self.trace_errors[target] = error
            else:
                self.trace_errors.pop(target, None)
            if traces or error:
                self.version += 1

    def ingest_config(self, target: str, doc: dict[str, Any] | None, error: str = "") -> None:
        """An agent's config document (collector thread); ``error`` when it could not be read."""
        with self.lock:
            if doc is not None:
                self.configs[target] = doc
                self.config_errors.pop(target, None)
            if error:
                self.config_errors[target] = error
            self.version += 1

    def ttls(self, route: str) -> dict[str, float]:
        """The TTL each agent currently has for ``route`` (agents without it are left out)."""
        with self.lock:
            out = {}
            for agent, doc in self.configs.items():
                entry = doc.get("routes", {}).get(route)
                if isinstance(entry, dict) and isinstance(entry.get("ttl"), int | float):
                    out[agent] = float(entry["ttl"])
            return out

    def query_traces(self, route: str | None = None, min_ms: float = 0.0, errors_only: bool = False,
                     limit: int = 500, max_ms: float = math.inf,
                     window: tuple[float, float] | None = None) -> list[dict[str, Any]]:
        """Newest first, filtered; a trace is an error when its status is 5xx.

        ``window`` = (t0, t1) keeps traces that ended in it (unix s): a histogram
        counts a request when it finishes, so this matches a heatmap cell.
        """
        out = []
        with self.lock:
            for trace in reversed(self.traces):
                if route and trace.get("route") != route:
                    continue
                duration = trace.get("duration_ms", 0.0)
                if not min_ms <= duration <= max_ms:
                    continue
                if window is not None and not (
                        window[0] <= trace.get("start", 0.0) + duration / 1000.0 <= window[1]):
                    continue
                if errors_only and int(trace.get("status", 0)) < 500:
                    continue
                out.append(trace)
                if len(out) >= limit:
                    break
        return out

    def forget(self, target: str) -> None:
        """Drop a removed target's health and history; its series end (a gap) from now on."""
        with self.lock:
            self.health.pop(target, None)
            self._history.pop(target, None)
            self.configs.pop(target, None)
            self.version += 1

    def tick(self, now: float) -> None:
        """Derive one point per series from the counter history (collector thread).

        The arithmetic runs outside the lock (history entries are never mutated and
        only this thread adds series), so the GUI thread never waits on it; the new
        points are appended under the lock in one short step.
        """
        with self.lock:
            pairs = list(self._window_pairs(now))
            pending, self._pending = self._pending, {}
        rows = [row for target_rows in pending.values() for row in target_rows]
        self._points, self._heat_rows = [], []
        self._derive_latency(now, pairs)
        self._derive_cache(now, pairs)
        self._derive_share(now, pairs)
        with self.lock:
            for metric, key, value in self._points:
                ring = self.series.get((metric, key))
                if ring is None:
                    ring = self.series[(metric, key)] = Ring(self.capacity)
                ring.append(now, value)
            for route, bounds, values in self._heat_rows:
                heat = self.heat_rings.get(route)
                if heat is None:
                    heat = self.heat_rings[route] = HeatRing(self.capacity, bounds)
                heat.append(now, bounds, values)
            self._cycles += 1
            if self._cycles % EXPIRE_EVERY == 0:
                drop(self.series, self.heat_rings, *expired(self.series, now, self.expire_after))
            self.version += 1
        self._persist(now, rows)

    def _persist(self, now: float, rows: list[Row]) -> None:
        """One store transaction per cycle, outside the model lock (the GUI never waits on disk)."""
        if self.store is None or not rows:
            return
        try:
            self.store.write_cycle(now, rows)
            self.store_error = ""
        except (ValueError, OSError) as exc:  # StoreError is a ValueError
            self.store_error = f"history not saved: {exc}"

    def _windows(self, hist: deque[tuple[float, Counters]]) -> tuple[float, float]:
        """(rate window, stale limit) for a target with this scrape history.

        At least two of its usual scrape intervals, so a target scraped every 15 s
        (Prometheus' default) has rates and is not stale between its scrapes. "Usual"
        is the shortest of its last few intervals: an outage must not widen the window
        (a rate across it would hide the outage).
        """
        if len(hist) < 2:
            return self.rate_window, self.stale_after
        times = [hist[i][0] for i in range(max(0, len(hist) - 4), len(hist))]
        interval = min(b - a for a, b in pairwise(times))
        return max(self.rate_window, 2.0 * interval), max(self.stale_after, 2.0 * interval)

    def _window_pairs(self, now: float) -> Iterable[Pair]:
        """(oldest in window, newest) per fresh target; stale targets drop out (a gap)."""
        for target, hist in self._history.items():
            window, stale_after = self._windows(hist)
            if len(hist) < 2 or now - hist[-1][0] > stale_after:
                continue
            newest_t, newest = hist[-1]
            oldest_t, oldest = next(((t, c) for t, c in hist if t >= newest_t - window),
                                    hist[-1])
            if oldest is not newest:
                yield Pair(oldest, newest, newest_t - oldest_t, target)

    def _append(self, metric: str, key: str, now: float, value: float) -> None:
        """Queue a point of this tick; :meth:`tick` appends them under the lock."""
        self._points.append((metric, key, value))

    def _derive_latency(self, now: float, pairs: list[Pair]) -> None:
        routes = {r for p in pairs for r in p.new.buckets} | {k for m, k in self.series if m == "p95"}
        stats: dict[str, RouteStats] = {}  # swapped in whole: readers never see it half built
        for route in sorted(routes):
            per_target = [_delta_map(p.old.buckets.get(route, {}), p.new.buckets.get(route, {}),
                                     p.new.reset_since(p.old, "buckets", route))
                          for p in pairs if route in p.new.buckets]
            summed = sum_buckets(per_target)
            results = {q: histogram_quantile(q, summed) for q in QUANTILES}
            seconds = [p.seconds for p in pairs if route in p.new.buckets]
            self._heat_rows.append((route, *heat_row(seconds, per_target)))
            self._derive_per_instance(now, route, [p for p in pairs if route in p.new.buckets],
                                      per_target)
            for q, r in results.items():
                self._append(f"p{round(q * 100)}", route, now, r.value if r else math.nan)
            resets = [p.new.reset_since(p.old, "requests", route) for p in pairs]
            req_deltas = [counter_delta(p.old.requests.get(route, 0.0),
                                        p.new.requests.get(route, 0.0), r)
                          for p, r in zip(pairs, resets)]
            reqs = sum(req_deltas)
            errs = sum(counter_delta(p.old.errors.get(route, 0.0), p.new.errors.get(route, 0.0), r)
                       for p, r in zip(pairs, resets))
            rate = sum(d / p.seconds for p, d in zip(pairs, req_deltas) if p.seconds > 0)
            error_ratio = errs / reqs if reqs else math.nan
            self._append("error_ratio", route, now, error_ratio)
            self._append("rate", route, now, rate)
            if any(r is not None for r in results.values()):
                stats[route] = RouteStats(
                    route, {q: r for q, r in results.items() if r is not None}, rate, error_ratio)
        self.routes = stats

    def _derive_per_instance(self, now: float, route: str, pairs: list[Pair],
                             deltas: list[dict[float, float]]) -> None:
        """Each instance's own p95 of ``route``: which instance makes the fleet slow."""
        for pair, buckets in zip(pairs, deltas):
            q = histogram_quantile(0.95, sorted(buckets.items()))
            self._append("p95_instance", f"{route}{INSTANCE_SEP}{pair.target}", now,
                         q.value if q else math.nan)

    def heat(self, route: str, since: float | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The latency heat series of ``route`` from ``since`` on (GUI thread).

        Returns ``(t, bounds, z)``: tick times (unix s), the buckets' upper bounds
        (seconds, ascending, the last one ``inf``) and ``z[len(t), len(bounds)]``
        float32 in **requests per second**: requests that finished in bucket
        ``(bounds[j-1], bounds[j]]`` (the first from 0) over the rate window ending
        at ``t[i]``, summed over instances. NaN = no data (no fresh instance served
        the route then, or the bucket did not exist yet). Unknown route: empty arrays.
        """
        with self.lock:
            ring = self.heat_rings.get(route)
            if ring is None:
                return np.empty(0), np.empty(0), np.empty((0, 0), dtype=np.float32)
            return ring.arrays(since)

    def exemplar_ids(self, route: str, t0: float = -math.inf, t1: float = math.inf,
                     lo_s: float = -math.inf, hi_s: float = math.inf) -> list[str]:
        """Trace ids the agents exposed as exemplars of ``route``'s latency buckets,
        observed in ``[t0, t1]`` with a latency in ``(lo_s, hi_s]`` seconds."""
        with self.lock:
            return self.exemplars.trace_ids(route, t0, t1, lo_s, hi_s)

    def instance_series(self, route: str, since: float | None = None) -> dict[str, tuple]:
        """p95 per instance of ``route``, keyed by instance (GUI thread)."""
        prefix = f"{route}{INSTANCE_SEP}"
        with self.lock:  # copy only this route's series, not every route's (5 of ~250)
            keys = [k for m, k in self.series if m == "p95_instance" and k.startswith(prefix)]
        return {key[len(prefix):]: series
                for key, series in self.snapshot("p95_instance", since, keys).items()}

    def _derive_cache(self, now: float, pairs: list[Pair]) -> None:
        rates: dict[tuple[str, str], float] = {}
        for old, new, seconds, _ in pairs:
            for key, value in new.cache.items():
                reset = new.reset_since(old, "cache", key)
                delta = counter_delta(old.cache.get(key, 0.0), value, reset)
                rates[key] = rates.get(key, 0.0) + (delta / seconds if seconds > 0 else 0.0)
        routes = {r for r, _ in rates} | {k for m, k in self.series if m == "hit_ratio"}
        self.cache = [CacheRow(r, rates.get((r, "hit"), 0.0), rates.get((r, "miss"), 0.0),
                               rates.get((r, "bypass"), 0.0)) for r in sorted(routes)]
        for row in self.cache:
            self._append("hit_ratio", row.route, now, row.hit_ratio)

    def _derive_share(self, now: float, pairs: list[Pair]) -> None:
        lb = [p for p in pairs if p.new.lb_requests]
        if not lb:
            for (metric, key) in list(self.series):
                if metric == "share":
                    self._append("share", key, now, math.nan)
            return
        old, new, seconds, _ = lb[0]
        deltas = {s: counter_delta(old.lb_requests.get(s, 0.0), v,
                                   new.reset_since(old, "lb_requests", s))
                  for s, v in new.lb_requests.items()}
        total = sum(deltas.values())
        self.share = [self._share_row(s, old, new, seconds, deltas[s] / total if total else math.nan)
                      for s in sorted(deltas)]
        for row in self.share:
            self._append("share", row.server, now, row.observed)
            self._append("lb_p95", row.server, now, row.p95.value if row.p95 else math.nan)

    @staticmethod
    def _share_row(server: str, old: Counters, new: Counters, seconds: float,
                   observed: float) -> ShareRow:
        errors = counter_delta(old.lb_errors.get(server, 0.0), new.lb_errors.get(server, 0.0),
                               new.reset_since(old, "lb_errors", server))
        buckets = _delta_map(old.lb_buckets.get(server, {}), new.lb_buckets.get(server, {}),
                             new.reset_since(old, "lb_buckets", server))
        expected = new.lb_expected.get(server)
        if expected is None:  # e.g. HAProxy's exporter: w / Σw over servers up and ready
            live = {s: w for s, w in new.lb_weight.items()
                    if new.lb_up.get(s, 1.0) == 1.0 and new.lb_state.get(s, "ready") == "ready"}
            total = sum(live.values())
            expected = live.get(server, 0.0) / total if total else math.nan
        return ShareRow(server, new.lb_weight.get(server, math.nan), expected, observed,
                        state=new.lb_state.get(server, "?"), up=new.lb_up.get(server, 1.0) == 1.0,
                        in_flight=new.lb_in_flight.get(server, 0.0),
                        error_rate=errors / seconds if seconds > 0 else math.nan,
                        p95=histogram_quantile(0.95, sorted(buckets.items())))

    def snapshot(self, metric: str, since: float | None = None,
                 keys: Iterable[str] | None = None) -> dict[str, tuple]:
        """Copies of the series of one metric keyed by route or server, from ``since`` on."""
        wanted = set(keys) if keys is not None else None
        with self.lock:
            out = {}
            for (m, key), ring in self.series.items():
                if m != metric or (wanted is not None and key not in wanted):
                    continue
                out[key] = ring.arrays(since)
            return out

    def read(self, fn: Callable[[FleetModel], object]) -> object:
        """Run ``fn`` under the lock, for consistent multi-field reads."""
        with self.lock:
            return fn(self)


def _delta_map(old: dict[float, float], new: dict[float, float],
               reset: bool = False) -> dict[float, float]:
    if reset:
        return dict(new)
    # counter_delta inlined: this runs per route × target × bucket every cycle (~25k times
    # with 50 targets) on the collector thread, which shares the GIL with the GUI.
    get = old.get
    return {le: v if v < (o := get(le, 0.0)) else v - o for le, v in new.items()}

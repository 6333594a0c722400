"""FleetModel: the Qt-free live state the window draws from.

The collector thread calls :meth:`FleetModel.ingest` per scrape and
:meth:`FleetModel.tick` once per cycle; the GUI thread polls :attr:`version`
and copies what it draws under the same lock. No Qt here.

Every derived series equals a PromQL expression evaluated at the tick time ``T``
(:meth:`FleetModel.promql` gives it): per series ``rate(x[W])`` exactly as Prometheus
computes it (``collectors.rates``: the samples in ``[T - W, T]``, extrapolation,
resets, a series needs two samples), then summed, then ratios and
``histogram_quantile``. Where trimtab differs on purpose: a target not scraped for
``stale_after`` drops out at once (Prometheus keeps its last samples in the range),
and a restart shown only by ``_created`` / ``process_start_time_seconds`` counts as
a reset (Prometheus sees none while the value has climbed back above the old one).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise, repeat
from typing import Any, NamedTuple, TypeVar

import numpy as np
from trimtab.collectors.canonical import (
    CACHE,
    HIST_BUCKET,
    LB_BUCKET,
    LB_REQUESTS,
    RATELIMIT,
    REQUESTS,
    SIZE_COUNT,
    SIZE_SUM,
)
from trimtab.collectors.exposition import Labels
from trimtab.collectors.promql import Quantile, histogram_quantile, histogram_quantiles, sum_buckets
from trimtab.collectors.rates import (
    LEFT_OPEN,
    extrapolated_rates,
    in_range,
    promql_duration,
    steady_rates,
    to_ms,
)
from trimtab.collectors.scrape import ScrapeResult

from ..store.store import Row, Store
from .expiry import INSTANCE_SEP, drop, expired
from .extract import STATUS_CLASSES, Counters, Group, Layout, bucket_plan, kind_plan, make_layout
from .extractor import Extractor
from .heat import ExemplarLog, HeatRing, bucket_exemplars, bucket_rates
from .keys import route_key, split_route_key
from .ring import Ring

T = TypeVar("T")  # what a FleetModel.read reader returns

QUANTILES = (0.5, 0.95, 0.99)
# Per-route request rate of each status class: series ``rate_2xx`` … ``rate_other``.
CLASS_SERIES = {cls: f"rate_{cls}" for cls in STATUS_CLASSES}
# The PromQL matchers on ``status`` of each class (extract.status_class, by first character).
_CLASS_MATCHERS = {"2xx": '=~"2.*"', "3xx": '=~"3.*"', "4xx": '=~"4.*",status!="429"',
                   "429": '="429"', "5xx": '=~"5.*"', "other": '!~"[2-5].*"'}
EXPIRE_EVERY = 60  # cycles between two looks for expired series
# Per route and limit, the rate of each rate-limit decision: series keyed limit_key(route, limit).
LIMIT_SERIES = {"allowed": "limit_allowed", "limited": "limit_limited",
                "shadow_limited": "limit_shadow"}
LIMIT_SEP = "\x00"  # between route and limit name in the keys of the LIMIT_SERIES


def limit_key(route: str, limit: str) -> str:
    """The series key of one limit on one route."""
    return f"{route}{LIMIT_SEP}{limit}"


def split_limit_key(key: str) -> tuple[str, str]:
    """``(route, limit)`` of a :func:`limit_key` (a limit name never holds the separator)."""
    route, _, limit = key.rpartition(LIMIT_SEP)
    return route, limit


def level_name(q: float) -> str:
    """``0.95`` → ``"p95"``, ``0.999`` → ``"p99.9"``: the series name of a percentile."""
    return f"p{q * 100:.6g}"


class TargetWindow:
    """One fresh target over the rate window ending at the evaluation time."""

    __slots__ = ("target", "newest", "layout", "values", "_rates")

    def __init__(self, target: str, newest: Counters, rates: dict[Group, float] | None = None,
                 layout: Layout | None = None, values: list[float] | None = None) -> None:
        self.target = target
        self.newest = newest  # its newest scrape in the window (gauges: weights, states)
        # When every group of ``layout`` has a rate: ``values[i]`` is that of
        # ``layout.keys[i]``, so one kind of group is read without walking them all.
        self.layout, self.values = layout, values
        self._rates = rates
        if rates is None and (layout is None or values is None):
            raise ValueError("a target window needs its rates or its layout and values")

    @property
    def rates(self) -> dict[Group, float]:
        """Σ of per-series rate(x[W]) by group; series with < 2 samples left out. Built on
        first read: hashing every group of every target each tick was a tenth of a tick,
        and the derivations read groups by kind (:meth:`of_kind`)."""
        if self._rates is None:
            assert self.layout is not None and self.values is not None
            self._rates = dict(zip(self.layout.keys, self.values))
        return self._rates

    def get(self, group: Group, default: float = 0.0) -> float:
        return self.rates.get(group, default)

    def of_kind(self, kind: str) -> Iterable[tuple[Group, float]]:
        """(group, rate) of the groups of one kind ("requests", "cache", ...), in key order."""
        if self.layout is not None and self.values is not None:
            keys, positions = kind_plan(self.layout).get(kind, ((), []))
            return zip(keys, map(self.values.__getitem__, positions))
        return [(group, value) for group, value in self.rates.items() if group[0] == kind]

    def buckets(self, kind: str) -> list[tuple[Hashable, tuple[Any, ...], tuple[float, ...]]]:
        """(key, its bounds, their rates) of the ``kind`` bucket groups, keys and bounds in
        key order (a key's bounds are distinct: they are distinct groups)."""
        if self.layout is not None and self.values is not None:
            values = self.values
            return [(key, les, get(values)) for key, les, get in bucket_plan(self.layout, kind)]
        out: dict[Hashable, dict[Any, float]] = {}
        for (_, key, le), value in self.of_kind(kind):
            out.setdefault(key, {})[le] = value
        return [(key, tuple(per), tuple(per.values())) for key, per in out.items()]


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
    url: str = ""  # what is scraped (the Fleet page's url column)
    # Unix time discovery saw it leave (0.0: present). A gone target is neither up nor down:
    # out of every fleet figure from then on, its series and stored history kept.
    gone: float = 0.0
    service: str = ""  # the service the target is an instance of ("" = the unnamed one)


@dataclass
class RouteStats:
    """One row of the slow-routes table: fleet-wide figures over the rate window."""

    route: str
    quantiles: dict[float, Quantile]
    rate: float  # requests per second, summed over instances
    error_ratio: float  # 5xx / all, NaN when idle
    # requests per second by status class (extract.STATUS_CLASSES); classes not seen left out
    status_rates: dict[str, float] = field(default_factory=dict)
    size_mean: float = math.nan  # response body bytes per response; NaN: not exported or idle

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
class LimitRow:
    """One rate limit on one route of one instance over the rate window (per second)."""

    route: str
    limit: str
    target: str
    allowed: float
    limited: float  # refused with a 429 (mode enforce)
    shadow_limited: float  # would have been refused (mode shadow); served


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
    departures: list[tuple[float, str]] = field(default_factory=list)  # (time, target) gone events
    series: dict[tuple[str, str], Ring] = field(default_factory=dict)
    heat_rings: dict[str, HeatRing] = field(default_factory=dict)  # route → latency heat rows
    exemplars: ExemplarLog = field(default_factory=ExemplarLog)
    routes: dict[str, RouteStats] = field(default_factory=dict)
    share: list[ShareRow] = field(default_factory=list)
    cache: list[CacheRow] = field(default_factory=list)
    limits: list[LimitRow] = field(default_factory=list)  # per (route, limit, instance)
    traces: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5000))
    trace_errors: dict[str, str] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent → config document
    # balancer → its rate limits (GET /_trimtab/balancer/limits: name → route, key, rate,
    # burst, mode), kept apart from the instances' configs: changed at the balancer's API
    balancer_limits: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)  # target → its service (keys.py)
    config_errors: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    store: Store | None = None  # when set, every cycle's raw samples are written to it
    store_error: str = ""
    # Why no scrape arrives (the scrape process died and is being started again); "" when fine.
    collector_error: str = ""
    # For the next store cycle, per target, its last scrape's names, label sets and values:
    # a target scraped twice between two ticks keeps its newest scrape (a cycle holds one
    # value per series; two would be refused).
    _pending: dict[str, tuple[Sequence[str], Sequence[Labels], Sequence[float]]] = field(
        default_factory=dict)
    _points: list[tuple[str, str, float]] = field(default_factory=list)
    _heat_rows: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    _latest_now: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    # Per target, the column plan of its last range whose series changed (see _union):
    # consecutive ticks see the same layouts, so the plan is worked out once, not per tick.
    _unions: dict[str, UnionPlan] = field(default_factory=dict)
    _history: dict[str, deque[tuple[float, Counters]]] = field(default_factory=dict)
    # Per target, the extraction plan of its current layout (extractor.py): the per-sample
    # decisions of extract() made once per layout, each scrape's values taken by numpy gathers.
    _extractors: dict[str, Extractor] = field(default_factory=dict)
    _cycles: int = 0
    # (oldest point of all series, (_cycles // EXPIRE_EVERY, series) when found): see
    # oldest_point.
    _oldest: tuple[float, tuple[int, int]] = (math.nan, (-1, -1))
    # The range [W] of the last tick: rate_window, or wider when a slow target needs it
    # (two of its scrape intervals); the one range every series of that tick used.
    window: float = 0.0
    # sum by (le) (rate(bucket[W])) per route of the last tick, for subclasses' extra levels.
    _route_buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # route → (tick, instance → p95) of the route's latest tick where any instance had a
    # finite p95: what the headline compares (see instance_latest). Swapped in whole.
    _instance_latest: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    # (route, target) → that target's own 5xx ratio at the last tick, swapped in whole.
    _instance_errors: dict[tuple[str, str], float] = field(default_factory=dict)
    # More series derived each tick from what the tick worked out (SLO burn rates,
    # app/slo/live.py): called on the collector thread after the model's own, with the
    # model and the tick time; each returns (metric, key, value) points for that tick.
    derivers: list[Callable[[FleetModel, float], Iterable[tuple[str, str, float]]]] = field(
        default_factory=list)

    def __post_init__(self) -> None:
        if not self.window:
            self.window = self.rate_window

    def ingest(self, result: ScrapeResult) -> None:
        """Record one scrape (called from the collector thread)."""
        service = result.target.service
        counters = None
        if result.exposition is not None:
            extractor = self._extractors.get(result.target.name)
            if extractor is None:
                extractor = self._extractors.setdefault(result.target.name, Extractor())
            counters = extractor.extract(result.exposition, service)
        examples = (bucket_exemplars(result.exposition, result.timestamp)
                    if result.exposition is not None and result.exposition.exemplars else [])
        if service:
            examples = [(route_key(service, route), *rest) for route, *rest in examples]
        with self.lock:
            if service:
                self.services[result.target.name] = service
            else:
                self.services.pop(result.target.name, None)
            h = self.health.setdefault(result.target.name,
                                       TargetHealth(result.target.name, result.target.kind))
            h.service = service
            if h.gone:
                if result.timestamp < h.gone:
                    return  # a scrape in flight when it left: it stays gone
                h.gone = 0.0  # the same name joined again
            self.exemplars.add(examples)
            h.up, h.last_scrape, h.duration = result.up, result.timestamp, result.duration
            h.url = result.target.url
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
                if hist:
                    _mark_if_steady(hist[-1][1], counters)
                hist.append((result.timestamp, counters))
                # Keep only what the rate window needs: old snapshots are millions of small
                # objects for the garbage collector to walk (history lives in the store).
                # Four kept at least: they tell the target's usual interval (_windows).
                window = max(self._windows(hist)[0], self.window)
                while len(hist) > 4 and hist[1][0] < result.timestamp - window - 1.0:
                    hist.popleft()
                if self.store is not None and columns is not None:
                    # The columns, not a row tuple per sample (made when the tick writes them):
                    # 200 targets' 2,000 tuples a second were young objects each collection
                    # on the GUI thread walked (issue 16).
                    names, label_sets, values, _stamps = columns  # no Sample tuples built
                    self._pending[result.target.name] = (names, label_sets, values)
            # Only health changed: derived series move once per cycle, in tick().
            self.health_version += 1

    def collector_status(self, text: str) -> None:
        """Why no scrape arrives ("" once scraping again): the scrape process's ``on_status``."""
        with self.lock:
            self.collector_error = text
            self.health_version += 1

    def ingest_traces(self, target: str, traces: list[dict[str, Any]], error: str = "") -> None:
        """New traces from one agent, oldest first (collector thread); ``error`` when polling failed."""
        with self.lock:
            service = self.services.get(target, "")
            for trace in traces:
                trace.setdefault("instance", target)
                route = trace.get("route")
                # keyed as its series; a replayed trace was keyed when it was recorded
                if service and isinstance(route, str) and split_route_key(route)[0] != service:
                    trace["route"] = route_key(service, route)
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

    def ingest_balancer_limits(self, target: str, doc: dict[str, Any] | None,
                               error: str = "") -> None:
        """A balancer's limits document (collector thread): None without an error is a
        balancer without limits; with one, the last limits read stay shown. An answer of
        another shape (not an object, or ``limits`` not one) is such an error, never a raise
        that would end the engine's polling."""
        if doc is not None and not (isinstance(doc, dict)
                                    and isinstance(doc.get("limits", {}), dict)):
            doc, error = None, "balancer limits: not a JSON object with a limits object"
        with self.lock:
            before = (self.balancer_limits.get(target), self.config_errors.get(target))
            if doc is not None:
                limits = doc.get("limits")
                self.balancer_limits[target] = {
                    str(n): {k: v for k, v in f.items() if k != "counts"}
                    for n, f in (limits.items() if isinstance(limits, dict) else ())
                    if isinstance(f, dict)}
                self.config_errors.pop(target, None)
            elif not error:
                self.balancer_limits.pop(target, None)
            if error:
                self.config_errors[target] = error
            if (self.balancer_limits.get(target), self.config_errors.get(target)) != before:
                self.version += 1  # polled every few seconds: views redraw on a change only

    def ttls(self, route: str) -> dict[str, float]:
        """The TTL each agent currently has for ``route`` (agents without it are left out).

        A route key of a service (``shop · /items/{id}``) reads only that service's agents.
        """
        service, plain = split_route_key(route)
        with self.lock:
            out = {}
            for agent, doc in self.configs.items():
                if self.services.get(agent, "") != service:
                    continue
                entry = doc.get("routes", {}).get(plain)
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
            self._unions.pop(target, None)
            self._extractors.pop(target, None)
            self.configs.pop(target, None)
            self.balancer_limits.pop(target, None)
            self.services.pop(target, None)
            self.version += 1

    def depart(self, target: str, when: float) -> None:
        """Discovery no longer lists ``target``: mark it gone at ``when`` (any thread).

        Unlike :meth:`forget`, its health row and series stay (shown as gone, its history
        kept); its scrapes leave the rate window at once, so it never counts as down nor in
        the fleet's rates and error ratio. ``departures`` gets the event for chart markers.
        """
        with self.lock:
            h = self.health.get(target)
            if h is None or h.gone:
                return
            h.gone = when
            self._history.pop(target, None)
            self._unions.pop(target, None)
            self._extractors.pop(target, None)
            self.departures.append((when, target))
            self.version += 1
            self.health_version += 1

    def tick(self, now: float) -> None:
        """Derive one point per series, evaluated at ``now`` (collector thread).

        ``now`` is the evaluation time ``T`` of every PromQL expression the series
        equal (:meth:`promql`): the live engine passes its clock, a replay the
        recorded cycle's time, a test any instant. Scrapes later than ``now`` are
        not used. The arithmetic runs outside the lock (history entries are never
        mutated and only this thread adds series), so the GUI thread never waits on
        it; the new points are appended under the lock in one short step.
        """
        with self.lock:
            window = self._fleet_window(now)
            # By target name: the sums over instances then add in one order, live or in a
            # replay (whose targets come sorted), to the last bit (see canonical_order).
            selected = sorted(self._select(now, window), key=_target_name)
            pending, self._pending = self._pending, {}
        self.window = window
        end_ms, range_ms = to_ms(now), to_ms(window)
        windows = [_target_window(target, entries, end_ms, range_ms, self._unions)
                   for target, entries in selected]
        self._points, self._heat_rows = [], []
        self._latest_now = dict(self._instance_latest)  # routes without a finite p95 keep theirs
        self._derive_latency(now, windows)
        self._derive_cache(now, windows)
        self._derive_limits(now, windows)
        self._derive_share(now, windows)
        for derive in list(self.derivers):
            self._points.extend(derive(self, now))
        # New series' rings are made before the lock: a first tick at 200 targets makes
        # ~12,000 of them (24,000 arrays allocated and filled), and the GUI thread waited
        # 300-500 ms on the lock while they were. Only this thread adds series.
        series = self.series
        fresh = {(metric, key): Ring(self.capacity) for metric, key, _ in self._points
                 if (metric, key) not in series}
        with self.lock:
            for metric, key, value in self._points:
                ring = series.get((metric, key))
                if ring is None:
                    ring = fresh.pop((metric, key), None)
                    series[(metric, key)] = ring = Ring(self.capacity) if ring is None else ring
                ring.append(now, value)
            for route, bounds, values in self._heat_rows:
                heat = self.heat_rings.get(route)
                if heat is None:
                    heat = self.heat_rings[route] = HeatRing(self.capacity, bounds)
                heat.append(now, bounds, values)
            self._instance_latest = self._latest_now
            self._cycles += 1
            if self._cycles % EXPIRE_EVERY == 0:
                drop(self.series, self.heat_rings, *expired(self.series, now, self.expire_after))
                # A route's entry is as old as its instances' newest p95: their series went.
                self._instance_latest = {
                    route: entry for route, entry in self._instance_latest.items()
                    if entry[0] >= now - self.expire_after}
            self.version += 1
        self._persist(now, pending)

    def _persist(self, now: float,
                 pending: dict[str, tuple[Sequence[str], Sequence[Labels], Sequence[float]]]) -> None:
        """One store transaction per cycle, outside the model lock (the GUI never waits on disk)."""
        if self.store is None or not any(len(names) for names, _, _ in pending.values()):
            return
        rows: Iterable[Row] = chain.from_iterable(
            zip(repeat(target), *columns) for target, columns in pending.items())
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
        # Whole seconds, so the range reads as PromQL writes it ([30s], not [30.004s]).
        widened = float(math.ceil(2.0 * interval - 1e-6))
        return max(self.rate_window, widened), max(self.stale_after, 2.0 * interval)

    def _fresh(self, now: float) -> Iterable[tuple[str, deque[tuple[float, Counters]], float]]:
        """(target, history, its own window) of targets not stale at ``now``."""
        for target, hist in self._history.items():
            window, stale_after = self._windows(hist)
            if len(hist) < 2 or now - hist[-1][0] > stale_after:
                continue  # stale targets drop out (a gap), as they always did
            yield target, hist, window

    def _fleet_window(self, now: float) -> float:
        """The one range [W] of this tick: the widest any fresh target needs.

        One range for all, so each series equals one PromQL expression; a slow target
        (scraped every 15 s, say) widens it for the whole fleet.
        """
        return max((w for _, _, w in self._fresh(now)), default=self.rate_window)

    def _select(self, now: float, window: float
                ) -> Iterable[tuple[str, list[tuple[float, Counters]]]]:
        """Per fresh target, its scrapes in the range ``[now - window, now]`` (Prometheus 2.x)."""
        end_ms, range_ms = to_ms(now), to_ms(window)
        for target, hist, _ in self._fresh(now):
            entries = [e for e in hist if in_range(to_ms(e[0]), end_ms, range_ms, LEFT_OPEN)]
            if len(entries) >= 2:  # one scrape: no series can have a rate
                yield target, entries

    def _append(self, metric: str, key: str, now: float, value: float) -> None:
        """Queue a point of this tick; :meth:`tick` appends them under the lock."""
        self._points.append((metric, key, value))

    def _derive_latency(self, now: float, windows: list[TargetWindow]) -> None:
        known = {k for m, k in self.series if m == "p95"}
        per_route = _bucket_columns(windows, "buckets")
        classes, sizes, self._instance_errors = _route_sums(windows)
        stats: dict[str, RouteStats] = {}  # swapped in whole: readers never see it half built
        self._route_buckets = {}
        for route in sorted(set(per_route) | known):
            instances = per_route.get(route, [])
            summed = _sum_columns(instances)
            self._route_buckets[route] = summed
            results = {q: histogram_quantile(q, summed) for q in QUANTILES}
            self._heat_rows.append((route, *bucket_rates(summed)))
            self._derive_per_instance(now, route, instances)
            for q, r in results.items():
                self._append(f"p{round(q * 100)}", route, now, r.value if r else math.nan)
            by_class = classes.get(route, {})
            rate = sum(by_class.values())
            error_ratio = by_class.get("5xx", 0.0) / rate if rate else math.nan
            self._append("error_ratio", route, now, error_ratio)
            self._append("rate", route, now, rate)
            self._derive_classes(now, route, by_class)
            size_sum, size_count = sizes.get(route, (math.nan, math.nan))
            size_mean = size_sum / size_count if size_count else math.nan
            if size_count == size_count or ("size_mean", route) in self.series:
                self._append("size_mean", route, now, size_mean)
            if any(r is not None for r in results.values()):
                stats[route] = RouteStats(
                    route, {q: r for q, r in results.items() if r is not None}, rate, error_ratio,
                    by_class, size_mean)
        self.routes = stats

    def _derive_classes(self, now: float, route: str, by_class: dict[str, float]) -> None:
        """One rate series per status class the route has answered with (only those: a ring
        per class and route that never occurs would be memory spent on nothing)."""
        for cls, metric in CLASS_SERIES.items():
            value = by_class.get(cls)
            if value is not None:
                self._append(metric, route, now, value)
            elif (metric, route) in self.series:  # seen before, none in this window
                self._append(metric, route, now, 0.0 if by_class else math.nan)

    def _derive_per_instance(self, now: float, route: str, instances: list[BucketColumns]) -> None:
        """Each instance's own p95 of ``route``: which instance makes the fleet slow."""
        if not instances:
            return
        first = instances[0][1]
        if all(les == first for _, les, _ in instances):
            # The usual case, one bucket layout on every instance: all their p95s in one go
            # (one call per instance was a fifth of a 200-target tick).
            order = sorted(range(len(first)), key=first.__getitem__)
            counts = np.array([values for _, _, values in instances], dtype=float)
            results = histogram_quantiles(0.95, [first[j] for j in order], counts[:, order])
        else:
            results = [histogram_quantile(0.95, sorted(zip(les, values)))
                       for _, les, values in instances]
        latest: dict[str, float] = {}
        for (target, _, _), q in zip(instances, results):
            value = q.value if q else math.nan
            self._append("p95_instance", f"{route}{INSTANCE_SEP}{target}", now, value)
            if math.isfinite(value):
                latest[target] = value
        if latest:
            self._latest_now[route] = (now, latest)

    def route_buckets(self) -> dict[str, list[tuple[float, float]]]:
        """``sum by (le) (rate(bucket[W]))`` per route key of this tick (collector thread: what a
        deriver reads; rebuilt by each tick's latency step, before the derivers run)."""
        return self._route_buckets

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

    def instance_error_ratio(self, route: str, instance: str) -> float:
        """``instance``'s own 5xx share of ``route`` at the last tick (a staged rollout's
        canary is judged by it, not by the route's fleet-wide ratio, which the healthy
        instances dilute); NaN when it served none of ``route`` in the window."""
        return self._instance_errors.get((route, instance), math.nan)

    def instance_series(self, route: str, since: float | None = None) -> dict[str, tuple]:
        """p95 per instance of ``route``, keyed by instance (GUI thread)."""
        prefix, keys = self._instance_keys(route)  # copy only this route's series (5 of ~250)
        return {key[len(prefix):]: series
                for key, series in self.snapshot("p95_instance", since, keys).items()}

    def _instance_keys(self, route: str) -> tuple[str, list[str]]:
        prefix = f"{route}{INSTANCE_SEP}"
        with self.lock:
            return prefix, [k for m, k in self.series if m == "p95_instance" and k.startswith(prefix)]

    def instance_latest(self, routes: Iterable[str], since: float | None = None
                        ) -> dict[str, dict[str, float]]:
        """route → instance → p95, for each of ``routes`` at its latest tick where any of
        its instances had a finite p95 (at or after ``since``), the instances with one then
        (GUI thread). That is: of the instances' newest finite ``p95_instance`` points, those
        at the newest time. Kept by each tick, so no look at every series (at 200 targets the
        16,000 p95 series were most of an Overview refresh's time)."""
        with self.lock:
            found = self._instance_latest
        out = {}
        for route in routes:
            t, values = found.get(route, (math.nan, {}))
            if values and (since is None or t >= since):
                out[route] = values
        return out

    def slowest_instances(self, route: str, n: int, since: float | None = None,
                          shown: Collection[str] = ()) -> tuple[dict[str, tuple], int]:
        """The p95 series of ``n`` of ``route``'s slowest instances by their newest p95 (GUI
        thread), keyed by instance, and how many instances that choice was made among.

        A chart of 200 instances' lines is a blur with a legend taller than the chart (and
        pyqtgraph lays a legend out in time quadratic in its entries: ~1 s for 200); the
        slow ones are what the operator looks for. With ``n`` or fewer instances, all of
        them (and their count). With more, only instances with a p95 at most ``stale_after``
        older than the route's newest compete: one that left keeps its series for a while,
        and its last p95 must not hold a place. Ties go by name.

        ``shown``: the instances drawn now. One of them keeps its place while it is still
        among the ``2 n`` slowest, so near-equal instances trading ranks do not swap lines
        and legend entries every scrape (unreadable, and each swap rebuilt a legend entry:
        the Routes page's slowest refreshes at 200 targets). The slowest is always in.
        """
        if n <= 0:
            raise ValueError(f"n must be a positive number of instances, not {n!r}")
        prefix, keys = self._instance_keys(route)
        if len(keys) > n:
            newest = self.last_points("p95_instance", since, keys)
            latest = max((t for t, _ in newest.values()), default=math.nan)
            keys = [k for k, (t, _) in newest.items() if t >= latest - self.stale_after]
            total = len(keys)
            ranked = sorted(keys, key=lambda k: (-newest[k][1], k))
            kept = [k for k in ranked[:2 * n] if k[len(prefix):] in shown][:n]
            if ranked and ranked[0] not in kept:
                kept = [ranked[0], *kept[:n - 1]]
            kept_set = set(kept)
            keys = kept + [k for k in ranked if k not in kept_set][:n - len(kept)]
        else:
            total = len(keys)
        return ({key[len(prefix):]: series
                 for key, series in self.snapshot("p95_instance", since, keys).items()}, total)

    def _derive_cache(self, now: float, windows: list[TargetWindow]) -> None:
        rates: dict[tuple[str, str], float] = {}
        for w in windows:
            for (_, key, _), value in w.of_kind("cache"):
                rates[key] = rates.get(key, 0.0) + value  # type: ignore[index]
        routes = {r for r, _ in rates} | {k for m, k in self.series if m == "hit_ratio"}
        self.cache = [CacheRow(r, rates.get((r, "hit"), 0.0), rates.get((r, "miss"), 0.0),
                               rates.get((r, "bypass"), 0.0)) for r in sorted(routes)]
        for row in self.cache:
            self._append("hit_ratio", row.route, now, row.hit_ratio)

    def _derive_limits(self, now: float, windows: list[TargetWindow]) -> None:
        """Rate limit decisions per route and limit: per instance (the table) and summed
        over instances (the series, one per decision)."""
        rows: list[LimitRow] = []
        sums: dict[tuple[str, str], dict[str, float]] = {}
        for w in windows:
            mine: dict[tuple[str, str], dict[str, float]] = {}
            for (_, key, result), value in w.of_kind("ratelimit"):
                mine.setdefault(key, {})[result] = value  # type: ignore[index]
            for (route, limit), per in sorted(mine.items()):
                rows.append(LimitRow(route, limit, w.target, per.get("allowed", 0.0),
                                     per.get("limited", 0.0), per.get("shadow_limited", 0.0)))
                total = sums.setdefault((route, limit), {})
                for result, value in per.items():
                    total[result] = total.get(result, 0.0) + value
        self.limits = rows
        known = {k for m, k in self.series if m == "limit_allowed"}
        # A limit gets series from its first decision on: the agent keeps exporting a
        # removed limit's counters, and re-adding it at rate 0 would undo its expiry.
        deciding = {limit_key(r, n) for (r, n), per in sums.items()
                    if any(v > 0 for v in per.values())}
        for key in sorted(known | deciding):
            per = sums.get(split_limit_key(key))
            for result, metric in LIMIT_SERIES.items():
                # No fresh instance reports the limit now: a gap, not a zero.
                self._append(metric, key, now, per.get(result, 0.0) if per else math.nan)

    def _derive_share(self, now: float, windows: list[TargetWindow]) -> None:
        lb = [w for w in windows if w.newest.lb_requests]
        if not lb:
            for (metric, key) in list(self.series):
                if metric == "share":
                    self._append("share", key, now, math.nan)
            return
        w = lb[0]
        rates = {s: w.rates[("lb_requests", s, None)] for s in w.newest.lb_requests
                 if ("lb_requests", s, None) in w.rates}
        total = sum(rates.values())
        buckets = dict(_bucket_rates([w], "lb_buckets"))
        self.share = [self._share_row(s, w, rates[s] / total if total and s in rates else math.nan,
                                      dict(buckets.get(s, [("", {})])[0][1]))
                      for s in sorted(w.newest.lb_requests)]
        for row in self.share:
            self._append("share", row.server, now, row.observed)
            self._append("lb_p95", row.server, now, row.p95.value if row.p95 else math.nan)

    @staticmethod
    def _share_row(server: str, w: TargetWindow, observed: float,
                   buckets: dict[float, float]) -> ShareRow:
        new = w.newest
        errors = w.rates.get(("lb_errors", server, None),
                             math.nan if server in new.lb_errors else 0.0)
        expected = new.lb_expected.get(server)
        if expected is None:  # e.g. HAProxy's exporter: w / Σw over servers up and ready
            live = {s: wt for s, wt in new.lb_weight.items()
                    if new.lb_up.get(s, 1.0) == 1.0 and new.lb_state.get(s, "ready") == "ready"}
            total = sum(live.values())
            expected = live.get(server, 0.0) / total if total else math.nan
        return ShareRow(server, new.lb_weight.get(server, math.nan), expected, observed,
                        state=new.lb_state.get(server, "?"), up=new.lb_up.get(server, 1.0) == 1.0,
                        in_flight=new.lb_in_flight.get(server, 0.0), error_rate=errors,
                        p95=histogram_quantile(0.95, sorted(buckets.items())))

    def promql(self, metric: str, key: str | None = None) -> str:
        """The PromQL expression a derived series equals, evaluated at the tick's time.

        ``metric`` is a series name (``rate``, ``error_ratio``, ``p50``/``p95``/``p99`` or
        any ``level_name``, ``p95_instance``, ``hit_ratio``, ``heat``, ``cache``, ``share``,
        ``lb_p95``, ``lb_error_rate``), ``key`` its route or server (``None``: every
        one, ``by`` the label). ``p95_instance`` keys are ``route<SEP>target`` and the
        target's name stands for the ``instance`` label. The range is the window the
        last tick used (wider than ``rate_window`` when a slow target widened it).
        ``share`` assumes one balancer (the model reads the first). ValueError for
        an unknown metric.
        """
        w = f"[{promql_duration(self.window)}]"
        if metric in LIMIT_SERIES.values():
            result = next(r for r, m in LIMIT_SERIES.items() if m == metric)
            route, limit = split_limit_key(key) if key is not None else (None, None)
            whole = _selector(RATELIMIT, route=route, limit=limit)
            part = _selector(RATELIMIT, {"result": ("=", result)}, route=route, limit=limit)
            # A limit that made no decision of this kind reads 0, as the model has it.
            return (f"sum by (route, limit) (rate({part}{w}))"
                    f" or sum by (route, limit) (rate({whole}{w})) * 0")
        if metric == "p95_instance":
            route, _, target = (key or "").partition(INSTANCE_SEP)
            service, route = split_route_key(route)
            sel = _selector(HIST_BUCKET, **{self._service_label(service): service or None},
                            route=route or None, instance=target or None)
            return (f"histogram_quantile(0.95, sum by (le, route, instance) "
                    f"(rate({sel}{w})))")
        route_metrics = {"rate", "error_ratio", "hit_ratio", "heat", "cache", "size_mean",
                         *CLASS_SERIES.values()}
        server_metrics = {"share", "lb_p95", "lb_error_rate"}
        if metric in route_metrics or _is_level(metric):
            by = "route"
        elif metric in server_metrics:
            by = "server"
        else:
            raise ValueError(f"no PromQL for {metric!r}: not a series this model derives")
        # A service's route key selects its job's series (Prometheus' job = the service),
        # or the series' own service label when no target is of that service (extract.py).
        service, plain = split_route_key(key) if key and by == "route" else ("", key)
        label = {self._service_label(service): service, by: plain} if service else {by: key}
        if _is_level(metric):
            q = _level_of(metric)
            return (f"histogram_quantile({q:g}, sum by (le, {by}) "
                    f"(rate({_selector(HIST_BUCKET, **label)}{w})))")
        if metric == "heat":  # cumulative; the chart shows each bucket's difference
            return f"sum by (le, route) (rate({_selector(HIST_BUCKET, **label)}{w}))"
        if metric == "cache":
            return f"sum by (route, result) (rate({_selector(CACHE, **label)}{w}))"
        if metric == "rate":
            return f"sum by (route) (rate({_selector(REQUESTS, **label)}{w}))"
        if metric.startswith("rate_"):
            whole = _selector(REQUESTS, **label)
            matchers = "status" + _CLASS_MATCHERS[metric[len("rate_"):]]
            part = f"{whole[:-1]},{matchers}}}" if whole.endswith("}") else f"{whole}{{{matchers}}}"
            # A route serving requests but none of this class reads 0, not "no value" (the
            # model keeps no series for a class a route never answered with at all).
            return (f"sum by (route) (rate({part}{w}))"
                    f" or sum by (route) (rate({whole}{w})) * 0")
        if metric == "size_mean":
            return (f"sum by (route) (rate({_selector(SIZE_SUM, **label)}{w}))"
                    f" / sum by (route) (rate({_selector(SIZE_COUNT, **label)}{w}))")
        if metric == "error_ratio":
            return _ratio(REQUESTS, label, w, {"status": ("=~", "5.*")}, {})
        if metric == "hit_ratio":
            return _ratio(CACHE, label, w, {"result": ("=", "hit")},
                          {"result": ("=~", "hit|miss")})
        if metric == "lb_p95":
            return (f"histogram_quantile(0.95, sum by (le, server) "
                    f"(rate({_selector(LB_BUCKET, **label)}{w})))")
        if metric == "lb_error_rate":
            return f"sum by (server) (rate({_selector('trimtab_balancer_errors_total', **label)}{w}))"
        return (f"sum by (server) (rate({_selector(LB_REQUESTS, **label)}{w}))"
                f" / scalar(sum(rate({LB_REQUESTS}{w})))")

    def _service_label(self, service: str) -> str:
        """``job`` for a targets' service, ``service`` for one only a series label names."""
        with self.lock:
            return "job" if service in self.services.values() else "service"

    def snapshot(self, metric: str, since: float | None = None,
                 keys: Iterable[str] | None = None) -> dict[str, tuple]:
        """Copies of the series of one metric keyed by route or server, from ``since`` on."""
        with self.lock:
            return {key: ring.arrays(since) for key, ring in self._rings(metric, keys)}

    def _rings(self, metric: str, keys: Iterable[str] | None) -> list[tuple[str, Ring]]:
        """(key, ring) of one metric's series, of ``keys`` only when given (looked up, not
        found by a scan of every series: a page asks for one route's few series, and 200
        targets hold thousands). Call under the lock."""
        if keys is None:
            return [(key, ring) for (m, key), ring in self.series.items() if m == metric]
        found = ((key, self.series.get((metric, key))) for key in dict.fromkeys(keys))
        return [(key, ring) for key, ring in found if ring is not None]

    def last_points(self, metric: str, since: float | None = None,
                    keys: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
        """Each series of one metric's newest finite point (time, value) from ``since`` on,
        keyed as :meth:`snapshot`; series without one are left out. No copies of the
        windows: one look at each ring's newest point in the usual case."""
        with self.lock:
            points = ((key, ring.last_finite(since)) for key, ring in self._rings(metric, keys))
            return {key: point for key, point in points if point is not None}

    def limit_configs(self) -> dict[str, dict[str, Any]]:
        """Every target's limits as config documents (``{"limits": ...}``): the instances'
        configs and each balancer's limits. Call under the lock (:meth:`read`)."""
        return {**self.configs, **{b: {"limits": limits}
                                   for b, limits in self.balancer_limits.items()}}

    def oldest_point(self) -> float:
        """The time of the oldest point any series holds, NaN with none (GUI thread).

        Found by looking at every series (~31,000 at 200 targets: ~9 ms of the GUI thread,
        once per step of the live window's edge), so it is looked for again only when the
        number of series changed (a replay's rewind drops some), while there is none, or
        once expiry may have dropped some (every EXPIRE_EVERY ticks). Between those it can
        only move later as full rings drop their oldest point, by less than the rings' span:
        a chart's left edge is what it sets, not a number anyone reads.
        """
        with self.lock:
            oldest, seen = self._oldest
            now = (self._cycles // EXPIRE_EVERY, len(self.series))
            if math.isnan(oldest) or now != seen:
                oldest = min((r.oldest() for r in self.series.values() if len(r)),
                             default=math.nan)
                self._oldest = (oldest, now)
            return oldest

    def read(self, fn: Callable[[FleetModel], T]) -> T:
        """Run ``fn`` under the lock, for consistent multi-field reads."""
        with self.lock:
            return fn(self)


def _target_window(target: str, entries: list[tuple[float, Counters]], end_ms: int,
                   range_ms: int, unions: dict[str, UnionPlan]) -> TargetWindow:
    """Per-series ``rate(x[W])`` of one target's scrapes in the range, summed by group."""
    counters = [c for _, c in entries]
    first = counters[0].layout
    if len(counters) >= 2 and first.series and all(
            c.__dict__.get(STEADY_AFTER) == id(p) for p, c in pairwise(counters)):
        # The usual tick: same series throughout, none reset (known since ingest), so the
        # two end scrapes give every rate, float for float as the full matrix would.
        rates = steady_rates(to_ms(entries[0][0]), to_ms(entries[-1][0]), len(counters),
                             counters[0].values, counters[-1].values, end_ms, range_ms)
        sums = np.bincount(first.index, weights=rates, minlength=len(first.keys)).tolist()
        return TargetWindow(target, counters[-1], None, first, sums)
    times = np.array([to_ms(t) for t, _ in entries], dtype=np.int64)
    present: np.ndarray | None = None
    if all(c.layout is first for c in counters):  # the usual case: the same series throughout
        layout = first
        values = (np.vstack([c.values for c in counters]) if layout.series
                  else np.empty((len(counters), 0)))
    else:  # a series appeared or vanished inside the range
        layout, values, present = _union(counters, target, unions)
    if not layout.series:
        return TargetWindow(target, counters[-1], {})
    rates, valid = extrapolated_rates(times, values, end_ms, range_ms, present,
                                      _known_resets(counters, layout))
    index = layout.index[valid]
    sums = np.bincount(index, weights=rates[valid], minlength=len(layout.keys))
    seen = np.bincount(index, minlength=len(layout.keys)) > 0
    if seen.all():  # the usual case: every group has a series with two samples
        values = sums.tolist()
        return TargetWindow(target, counters[-1], None, layout, values)
    return TargetWindow(target, counters[-1],
                        {layout.keys[g]: float(sums[g]) for g in np.flatnonzero(seen)})


def _target_name(selected: tuple[str, Any]) -> str:
    return selected[0]


STEADY_AFTER = "_steady_after"  # Counters.__dict__ key: id of the scrape it continues without reset


def _mark_if_steady(old: Counters, new: Counters) -> None:
    """Mark ``new`` as continuing ``old`` (the target's previous scrape) when a rate over the
    two needs no reset handling: the same series, no value lower than before and the same
    restart markers (``extrapolated_rates`` would find no drop and ``_known_resets`` none).
    One comparison per series per scrape, so the tick can skip the ``n × k`` reset scan."""
    if (new.layout is old.layout and new.layout.series and new.same_markers(old)
            and not np.less(new.values, old.values).any()):
        new.__dict__[STEADY_AFTER] = id(old)  # old stays alive while both are in a window
    else:  # never a stale mark, should a scrape ever be appended twice
        new.__dict__.pop(STEADY_AFTER, None)


class UnionPlan(NamedTuple):
    """How the scrapes of one range map onto the union of their series."""

    layouts: tuple[Layout, ...]  # the distinct layouts, in order of first appearance
    union: Layout
    columns: dict[int, np.ndarray]  # id(layout) -> its series' columns in ``union``


def _union(counters: list[Counters], target: str, unions: dict[str, UnionPlan]
           ) -> tuple[Layout, np.ndarray, np.ndarray]:
    """Every series any of the scrapes has, their values and where each was present.

    The column plan depends only on the distinct layouts, so it is kept per target in
    ``unions`` and reused while the range holds the same ones (a Python loop over every
    series of every scrape, each tick, was most of a 50-target cycle's CPU while series
    were appearing).
    """
    distinct = tuple({id(c.layout): c.layout for c in counters}.values())
    plan = unions.get(target)
    if plan is None or len(plan.layouts) != len(distinct) or any(
            a is not b for a, b in zip(plan.layouts, distinct)):
        plan = unions[target] = _plan(distinct)
    width = len(plan.union.series)
    values = np.zeros((len(counters), width))
    present = np.zeros((len(counters), width), dtype=bool)
    for i, c in enumerate(counters):
        cols = plan.columns[id(c.layout)]
        values[i, cols] = c.values
        present[i, cols] = True
    return plan.union, values, present


def _plan(distinct: tuple[Layout, ...]) -> UnionPlan:
    # dict/zip/map do the per-series work in C: this runs whenever a series appears.
    series = tuple(dict.fromkeys(chain.from_iterable(lay.series for lay in distinct)))
    group_of: dict[tuple[str, Any], Group] = {}
    for lay in distinct:
        group_of.update(zip(lay.series, lay.groups))
    position = dict(zip(series, range(len(series))))
    columns = {id(lay): np.fromiter(map(position.__getitem__, lay.series), dtype=np.intp,
                                    count=len(lay.series)) for lay in distinct}
    return UnionPlan(distinct, make_layout(series, list(map(group_of.__getitem__, series)),
                                           distinct[0].service), columns)


def _known_resets(counters: list[Counters], layout: Layout) -> np.ndarray | None:
    """Samples after a restart the values cannot show (``Counters.reset_since``), or None."""
    resets: np.ndarray | None = None
    columns: dict[tuple[str, Any], list[int]] | None = None
    for i in range(1, len(counters)):
        old, new = counters[i - 1], counters[i]
        if new.same_markers(old):  # old.start == new.start and old.created == new.created
            continue  # the usual case: nothing restarted
        if columns is None:
            columns = {}
            for j, group in enumerate(layout.groups):
                columns.setdefault(group[:2], []).append(j)
        for key, cols in columns.items():
            if new.reset_since(old, key[0], key[1]):
                if resets is None:
                    resets = np.zeros((len(counters), len(layout.groups)), dtype=bool)
                resets[i, cols] = True
    return resets


BucketColumns = tuple[str, tuple[float, ...], tuple[float, ...]]  # (target, bounds, their rates)


def _bucket_columns(windows: list[TargetWindow], kind: str) -> dict[str, list[BucketColumns]]:
    """key (route or server) → [(target, bounds, rates)] from the ``kind`` bucket groups,
    keys in first-seen order."""
    out: dict[str, list[BucketColumns]] = {}
    for w in windows:
        for key, les, values in w.buckets(kind):
            out.setdefault(key, []).append((w.target, les, values))  # type: ignore[arg-type]
    return out


def _bucket_rates(windows: list[TargetWindow], kind: str
                  ) -> dict[str, list[tuple[str, dict[float, float]]]]:
    """key (route or server) → [(target, {le: rate})] from the ``kind`` bucket groups."""
    return {key: [(target, dict(zip(les, values))) for target, les, values in per]
            for key, per in _bucket_columns(windows, kind).items()}


def _sum_columns(instances: list[BucketColumns]) -> list[tuple[float, float]]:
    """:func:`~trimtab.collectors.promql.sum_buckets` of the instances' buckets, the same
    floats: with one bounds tuple on all, its own fast path (each bound's rates added in
    instance order from 0.0) without building a dict per instance."""
    if instances and all(les == instances[0][1] for _, les, _ in instances):
        columns = zip(*(values for _, _, values in instances))
        return sorted(zip(instances[0][1], (sum(column, 0.0) for column in columns)))
    return sum_buckets([dict(zip(les, values)) for _, les, values in instances])


def _route_sums(windows: list[TargetWindow]
                ) -> tuple[dict[str, dict[str, float]], dict[str, tuple[float, float]],
                           dict[tuple[str, str], float]]:
    """(route → status class → requests/s, route → (body bytes/s, responses/s)), summed
    over targets, and (route, target) → that target's own 5xx ratio; one pass over the
    groups instead of a lookup per route and class."""
    classes: dict[str, dict[str, float]] = {}
    sizes: dict[str, list[float]] = {}
    own: dict[tuple[str, str], list[float]] = {}  # (route, target) → [5xx/s, all/s]
    for w in windows:
        for (_, key, sub), value in w.of_kind("requests"):
            per = classes.setdefault(key, {})  # type: ignore[arg-type]
            per[sub] = per.get(sub, 0.0) + value  # type: ignore[index]
            tally = own.setdefault((key, w.target), [0.0, 0.0])  # type: ignore[arg-type]
            tally[0] += value if sub == "5xx" else 0.0
            tally[1] += value
        for (_, key, sub), value in w.of_kind("sizes"):
            pair = sizes.setdefault(key, [0.0, 0.0])  # type: ignore[arg-type]
            pair[sub == "count"] += value
    errors = {k: (bad / total if total else math.nan) for k, (bad, total) in own.items()}
    return classes, {route: (pair[0], pair[1]) for route, pair in sizes.items()}, errors


def _is_level(metric: str) -> bool:
    try:
        _level_of(metric)
    except ValueError:
        return False
    return True


def _level_of(metric: str) -> float:
    """``"p95"`` → 0.95, ``"p99.9"`` → 0.999 (ValueError otherwise)."""
    if not metric.startswith("p") or metric == "p95_instance":
        raise ValueError(metric)
    q = round(float(metric[1:]) / 100.0, 10)
    if not 0.0 < q < 1.0:
        raise ValueError(metric)
    return q


def _quote(value: str) -> str:
    """A PromQL double-quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _selector(name: str, extra: dict[str, tuple[str, str]] | None = None,
              **labels: str | None) -> str:
    matchers = [f"{k}={_quote(v)}" for k, v in labels.items() if v is not None]
    matchers += [f"{k}{op}{_quote(v)}" for k, (op, v) in (extra or {}).items()]
    return f"{name}{{{','.join(matchers)}}}" if matchers else name


def _ratio(name: str, label: dict[str, str | None], w: str,
           part: dict[str, tuple[str, str]], whole: dict[str, tuple[str, str]]) -> str:
    """Σ rate(part) / Σ rate(whole) by route; a route without any ``part`` series reads 0
    (``or … * 0``), as the model has it, not "no value"."""
    part_sel, whole_sel = _selector(name, part, **label), _selector(name, whole, **label)
    return (f"sum by (route) (rate({part_sel}{w}) or rate({whole_sel}{w}) * 0)"
            f" / sum by (route) (rate({whole_sel}{w}))")

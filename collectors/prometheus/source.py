"""A Prometheus server as a data source: its targets' raw series as trimtab scrapes.

Instead of scraping every instance itself, trimtab asks a Prometheus server that
already does. What reaches the model is what a direct scrape would have given:

- one :class:`~trimtab.collectors.scrape.ScrapeResult` per Prometheus scrape of each
  target (``job``, ``instance`` label pair), stamped with the time Prometheus
  scraped it, holding the raw series the cockpit derives from (request counters,
  latency buckets, cache counters, balancer series, restart markers — canonical
  ``trimtab_`` names and every name the mapping tables translate);
- ``up`` and ``scrape_duration_seconds`` of that scrape as ``up`` and ``duration``;
  ``lastError`` from ``/api/v1/targets`` as the error text of a failed one;
- other instrumentations' names through the same mapping normaliser as
  :class:`~trimtab.collectors.scrape.ScrapeEngine` (detected once per target);
- one result for the Prometheus server itself (named after the source): up with
  the poll's duration, or down with the reason (unreachable, HTTP or query error).

Live (:class:`PromCollector`): every ``interval`` one range-selector query
(``{__name__=~"…"}[Ns]`` — raw samples with their scrape times, only the ones
newer than what was already handed on are emitted) and one ``/api/v1/targets``.
History (:meth:`PromSource.cycles`): one ``query_range`` on a grid from
:func:`~trimtab.collectors.prometheus.api.choose_step` (never above 11,000 points per
series), one :data:`Cycle` per grid time.

Staleness markers end a series, as in Prometheus. Over the HTTP API every NaN reads
``"NaN"`` (the marker's bit pattern is lost), so every NaN point is taken for a marker
and dropped: Prometheus' engine never returns markers (a NaN from it is a real value,
which only a gauge can carry, and an absent gauge reads as NaN in the model anyway),
and VictoriaMetrics stores no NaN but markers. A time left with no point at all is no
scrape: VictoriaMetrics may stamp the markers of a failed scrape 1 ms after its
``up = 0``, and such a marker-only "scrape" read as a successful one with NaN counters
would spoil every fleet-wide sum. ``up`` itself ends with a marker when a target is
removed; that is no failed scrape either.

Prometheus only returns what it scraped: at its scrape interval, with its
retention. The cockpit's rates use a 10 s window and call a target stale after
5 s, both widened per target to two of its scrape intervals (``FleetModel``), so
a 15 s interval works but shows only slower changes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from .. import canonical
from ..errors import http_status_error, one_line
from ..exposition import Exposition, Labels, Sample
from ..limits import backoff_delay, next_due
from ..loop_thread import LoopThread, cancel_all
from ..mappings import MappingTable, Normaliser, builtin_tables, for_exposition
from ..scrape import ScrapeResult, ScrapeTarget
from .api import PromAPI, PromAPIError, PromQueryError, Series, Step, SyncPromAPI, Target

_log = logging.getLogger(__name__)
Cycle = tuple[float, list[ScrapeResult]]
UP, DURATION = "up", "scrape_duration_seconds"
_LABEL_CACHE_LIMIT = 100_000


def wanted_names(tables: Sequence[MappingTable]) -> list[str]:
    """Sample names to ask for: canonical ones, plus what ``tables`` detect and translate."""
    names = dict.fromkeys((UP, DURATION, *canonical.ALL))
    for table in tables:
        names.update(dict.fromkeys(name for name, _label in table.detect))
        for rule in table.metrics:
            # Buckets are all the cockpit reads of a histogram (quantiles); _count/_sum are
            # asked for only when a rule names them itself (OpenTelemetry's request count).
            names[f"{rule.source}_bucket" if rule.kind == "histogram" else rule.source] = None
    return list(names)


def selector(names: Sequence[str], matchers: str = "") -> str:
    """``{__name__=~"a|b",<matchers>}``; ``matchers`` narrows it (``job="api"``)."""
    extra = f",{matchers.strip().strip(',')}" if matchers.strip() else ""
    return '{__name__=~"' + "|".join(names) + '"' + extra + "}"


@dataclass
class _Scrape:
    """One Prometheus scrape of one target, rebuilt from its stored series."""

    samples: list[Sample] = field(default_factory=list)
    up: float | None = None
    duration: float = 0.0


Key = tuple[str, str]  # (job, instance)


@dataclass
class _Converter:
    """Series → per-target scrapes → ScrapeResults; keeps per-target state between polls."""

    source: str
    base_url: str
    tables: Sequence[MappingTable]
    interval: float = 1.0
    # "job": each target's job label names its service (routes keyed "job · /route");
    # "": every target is of the one unnamed service, as a direct scrape without one.
    service_from: str = ""
    _normalisers: dict[Key, Normaliser | None] = field(default_factory=dict)
    _targets: dict[Key, ScrapeTarget] = field(default_factory=dict)
    _labels: dict[tuple[tuple[str, str], ...], Labels] = field(default_factory=dict)

    def group(self, series: Sequence[Series]) -> dict[Key, dict[float, _Scrape]]:
        """Points by target and scrape time (one Prometheus scrape stamps all its samples alike).

        NaN points are staleness markers and are left out; a time with only markers is none.
        """
        if len(self._labels) > _LABEL_CACHE_LIMIT:
            self._labels.clear()
        out: dict[Key, dict[float, _Scrape]] = {}
        for s in series:
            metric = dict(s.metric)
            name = metric.pop("__name__", "")
            key = (metric.pop("job", ""), metric.pop("instance", ""))
            items = tuple(sorted(metric.items()))
            # One tuple per series, the same every poll: the normaliser memoises by identity.
            labels = self._labels.setdefault(items, items)
            per_time = out.setdefault(key, {})
            stamps, values = s.timestamps, s.values
            ended = np.isnan(values)
            if ended.any():  # staleness markers: the series ended there, no sample (see module doc)
                stamps, values = stamps[~ended], values[~ended]
            for ts, value in zip(stamps.tolist(), values.tolist()):
                scrape = per_time.get(ts)
                if scrape is None:
                    scrape = per_time[ts] = _Scrape()
                if name == UP:
                    scrape.up = value
                elif name == DURATION:
                    scrape.duration = value
                else:
                    scrape.samples.append(Sample(name, labels, value))
        return out

    def result(self, key: Key, ts: float, scrape: _Scrape, health: Target | None) -> ScrapeResult:
        """The ScrapeResult of one scrape; ``health`` (from /targets) gives the error text."""
        up = scrape.up == 1.0 if scrape.up is not None else bool(scrape.samples)
        if not up:
            error = (health.last_error if health is not None and health.last_error
                     else "scrape failed (Prometheus: up = 0)")
            return ScrapeResult(self.target(key, health, None), ts, False, scrape.duration,
                                error=error)
        expo = self._normalise(key, Exposition(scrape.samples))
        return ScrapeResult(self.target(key, health, expo), ts, True, scrape.duration, expo)

    def target(self, key: Key, health: Target | None, expo: Exposition | None) -> ScrapeTarget:
        """A stable ScrapeTarget per (job, instance): named by instance, kind from its series."""
        known = self._targets.get(key)
        if known is not None:
            return known
        job, instance = key
        # Prefixed with the source's name: a bare "host:port" could be a directly scraped
        # target's name, or another Prometheus' (an HA pair); one model entry fed by two
        # sources would interleave scrapes out of order (false resets, rate spikes).
        taken = {t.name for t in self._targets.values()}
        name = f"{self.source}/{instance or job}"
        if name in taken:
            name = f"{self.source}/{job}/{instance}"
        kind = "instance"
        if expo is not None and any(s.name.startswith("trimtab_balancer_") for s in expo.samples):
            kind = "balancer"
        url = health.scrape_url if health is not None else f"{self.base_url}#{job}/{instance}"
        service = job if self.service_from == "job" else ""
        target = ScrapeTarget(name, url, kind, self.interval, self.interval * 0.8,
                              service=service)
        if expo is not None:  # decided on data; a first failed scrape is not the final word
            self._targets[key] = target
        return target

    def names(self) -> list[str]:
        """Names of the targets seen so far (for forgetting them all at once)."""
        return [t.name for t in self._targets.values()]

    def _normalise(self, key: Key, expo: Exposition) -> Exposition:
        if key not in self._normalisers:
            self._normalisers[key] = for_exposition(expo, self.tables)
        normaliser = self._normalisers[key]
        return normaliser.normalise(expo) if normaliser is not None else expo


def _health_by_key(targets: Sequence[Target]) -> dict[Key, Target]:
    return {(t.labels.get("job", ""), t.labels.get("instance", "")): t for t in targets}


class PromSource:
    """One Prometheus server's targets as trimtab scrapes (live polls and history)."""

    def __init__(self, url: str, name: str = "prometheus",
                 tables: Sequence[MappingTable] | None = None, matchers: str = "",
                 interval: float = 1.0, backfill: float = 15.0, timeout: float = 10.0,
                 headers: Mapping[str, str] | None = None, service_from: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Prometheus url: must be http(s)://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.name = name
        self.tables = list(builtin_tables() if tables is None else tables)
        self.query = selector(wanted_names(self.tables), matchers)
        self.interval = interval
        self.backfill = max(backfill, 2 * interval)
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.target = ScrapeTarget(name, self.url, "prometheus", interval, interval * 0.8)
        self.last_step: Step | None = None
        if service_from not in ("", "job"):
            raise ValueError(f"service_from: must be 'job' or empty, got {service_from!r}")
        self.service_from = service_from
        self._live = _Converter(name, self.url, self.tables, interval, service_from)
        self._last: dict[Key, float] = {}  # newest scrape time handed on, per target

    def api(self) -> PromAPI:
        """A client for this server (async; close it with ``aclose``)."""
        return PromAPI(self.url, timeout=self.timeout, headers=self.headers)

    def names(self) -> list[str]:
        """This source's own name and the targets it has reported."""
        return [self.name, *self._live.names()]

    async def poll(self, api: PromAPI, now: float | None = None) -> list[ScrapeResult]:
        """Scrapes Prometheus made since the last poll, oldest first, then the server's own row.

        Never raises for the server's faults: they become the server's row, down, with
        the reason; the targets' rows are then left as they were (not marked down).
        """
        now = time.time() if now is None else now
        t0 = time.perf_counter()
        window = self._window(now)
        try:
            health = _health_by_key(await api.targets())
            series = await api.query(f"{self.query}[{window}s]", now)
        except PromAPIError as exc:
            return [ScrapeResult(self.target, now, False, time.perf_counter() - t0,
                                 error=self._plain(exc))]
        results = []
        for key, per_time in self._live.group(series).items():
            last = self._last.get(key, -math.inf)
            for ts in sorted(t for t in per_time if t > last):
                results.append(self._live.result(key, ts, per_time[ts], health.get(key)))
                self._last[key] = ts
        results.sort(key=lambda r: r.timestamp)
        results.append(ScrapeResult(self.target, now, True, time.perf_counter() - t0))
        return results

    def _plain(self, exc: PromAPIError) -> str:
        """One line for the Fleet table: an HTTP error status without the page it came with."""
        if exc.status is not None and exc.status >= 400 and not isinstance(exc, PromQueryError):
            return f"{http_status_error(exc.status, '')} — no Prometheus API at {self.url}"
        return one_line(str(exc))

    def _window(self, now: float) -> int:
        """Seconds to look back: since the oldest newest-scrape still followed, within backfill."""
        followed = [t for t in self._last.values() if now - t <= self.backfill]
        since = min(followed) if followed else now - self.backfill
        return max(2, math.ceil(min(self.backfill, now - since + self.interval)))

    def cycles(self, start: float, end: float, points: int = 1000) -> Iterator[Cycle]:
        """History over [start, end] as cycles on the ``choose_step`` grid (at most 11,000).

        The query runs now (a bad URL, an unreachable server or a query error raises
        :class:`~trimtab.collectors.prometheus.api.PromAPIError` here, with the reason);
        the grid used is in :attr:`last_step`. Each cycle holds one result per target
        Prometheus had a value for at that time.
        """
        api = SyncPromAPI(self.url, timeout=self.timeout, headers=self.headers)
        answer = api.query_range(self.query, start, end, points)
        self.last_step = answer.step
        step = answer.step.step
        converter = _Converter(self.name, self.url, self.tables, step, self.service_from)
        grouped = converter.group(answer.series)
        by_time: dict[float, list[tuple[Key, _Scrape]]] = {}
        for key, per_time in grouped.items():
            for ts, scrape in per_time.items():
                by_time.setdefault(ts, []).append((key, scrape))
        return ((t, [converter.result(key, t, scrape, None) for key, scrape in by_time[t]])
                for t in sorted(by_time))


@dataclass
class PromCollector:
    """Polls a Prometheus server in a background thread, shaped like ScrapeEngine.

    ``sink`` gets every ScrapeResult, ``on_cycle(t)`` is called after each poll
    (leave it None when a ScrapeEngine already ticks the same model).
    """

    source: PromSource
    sink: Callable[[ScrapeResult], None]
    on_cycle: Callable[[float], None] | None = None
    _runner: LoopThread | None = None

    def start(self) -> PromCollector:
        """Start polling in the ``trimtab-prom-<source name>`` thread; returns self."""
        self._runner = LoopThread(f"trimtab-prom-{self.source.name}", self._main)
        self._runner.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (any thread); a poll in flight is cancelled."""
        if self._runner is not None:
            self._runner.stop(timeout)

    async def _main(self, stop: asyncio.Event) -> None:
        api = self.source.api()
        poller = asyncio.create_task(self._poll_loop(api))
        try:
            await stop.wait()
        finally:
            await cancel_all([poller])  # again and again if it loses its cancel
            await api.aclose()

    async def _poll_loop(self, api: PromAPI) -> None:
        loop = asyncio.get_running_loop()
        interval = self.source.interval
        next_at, failures = loop.time(), 0
        while True:
            now = time.time()
            try:
                results = await self.source.poll(api, now)
                # The server's own row is last: when it is down (unreachable, 404, 5xx) the
                # next poll backs off as a dead scrape target does (1, 1, 2, 4 … intervals).
                failures = 0 if results[-1].up else failures + 1
                next_at = next_due(next_at, loop.time(), interval,
                                   backoff_delay(interval, failures))
                results[-1].next_attempt = now + (next_at - loop.time())
                for result in results:
                    self.sink(result)
            except Exception:  # noqa: BLE001 - one bad series or model bug must not end polling
                _log.exception("Prometheus poll of %s failed; polling continues", self.source.name)
                next_at = next_due(next_at, loop.time(), interval, interval)
            if self.on_cycle is not None:
                try:
                    self.on_cycle(now)
                except Exception:  # noqa: BLE001 - a bug in one cycle must not stop every later one
                    _log.exception("Prometheus cycle callback failed; polling continues")
            # next_due skips missed ticks: never polls back to back after falling behind
            await asyncio.sleep(max(0.0, next_at - loop.time()))

"""The scrape engine: one worker thread, one asyncio loop, one shared httpx.AsyncClient.

Each target has its own task, so a hung target never delays the others; a
scrape never overlaps itself because each task awaits its own scrape (under a
per-target lock) before sleeping to the next tick; the timeout is always below
the interval and covers the whole body. Limits (scrape_limits) fail the whole
scrape, as in Prometheus; dead targets are retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from . import http1
from .errors import plain_error, refuse_non_metrics
from .exposition import Exposition, ParseError, TargetParser
from .limits import (
    LIMIT_DEFAULTS,
    Limits,
    SeriesChecker,
    backoff_delay,
    effective_body_limit,
    limit_problem,
    next_due,
    read_body,
)
from .loop_thread import LoopThread, cancel_all
from .mappings import MappingTable, Normaliser, for_exposition
from .origin_transport import OriginTransport

_log = logging.getLogger(__name__)
ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
# Like Prometheus: ask for gzip only; the body is decoded here, counting decoded bytes.
HEADERS = {"accept": ACCEPT, "accept-encoding": "gzip", "user-agent": "trimtab"}
SERVICE_MAX = 64  # characters of a service name: it prefixes every route it serves


def service_problem(service: str) -> str | None:
    """Why ``service`` cannot name a service (None: it can; ``""`` is the unnamed one).

    It prefixes route keys (``shop · /items/{id}``), so no ``·`` or ``/`` (they would
    make the key ambiguous), no control characters, no surrounding spaces, and short.
    """
    if not service:
        return None
    if not service.strip():
        return "service: must not be blank (leave it out for the unnamed service)"
    if len(service) > SERVICE_MAX:
        return f"service: at most {SERVICE_MAX} characters, got {len(service)}"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in service):
        return f"service: must not hold control characters, got {service!r}"
    if service != service.strip() or "·" in service or "/" in service:
        return f"service: no leading/trailing spaces, '·' or '/', got {service!r}"
    return None


@dataclass(frozen=True)
class ScrapeTarget:
    name: str
    url: str
    kind: str = "instance"  # "instance" | "balancer"
    interval: float = 1.0
    timeout: float = 0.8
    # A read token for the agent's /_trimtab/ API (traces); never printed, never saved.
    token: str = field(default="", repr=False, compare=False)
    # Prometheus sources behind auth: the NAME of an environment variable holding a bearer
    # token (the token itself never goes into the targets file).
    token_env: str = ""
    # The agent's control endpoint (scheme://host:port) when it is not on the scrape URL's
    # address (discovery's __trimtab_control_url__, or control_url in the targets file).
    control_url: str = ""
    # The service this target is an instance of ("": the one unnamed service); its routes'
    # keys are qualified with it (app.model.keys) so two services' /metrics stay apart.
    service: str = ""
    # A Prometheus source only: "job" = each of its targets' job label names their service.
    service_from: str = ""
    # Prometheus' per-target limits; 0 = no limit. Exceeding one fails the whole scrape.
    body_size_limit: int = LIMIT_DEFAULTS["body_size_limit"]
    sample_limit: int = LIMIT_DEFAULTS["sample_limit"]
    label_limit: int = LIMIT_DEFAULTS["label_limit"]
    label_name_length_limit: int = LIMIT_DEFAULTS["label_name_length_limit"]
    label_value_length_limit: int = LIMIT_DEFAULTS["label_value_length_limit"]

    @property
    def limits(self) -> Limits:
        """This target's limits as one value."""
        return Limits(self.body_size_limit, self.sample_limit, self.label_limit,
                      self.label_name_length_limit, self.label_value_length_limit)

    @property
    def agent_base(self) -> str:
        """``scheme://host:port`` of the agent serving this target."""
        if self.control_url:
            return self.control_url.rstrip("/")
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass
class ScrapeResult:
    target: ScrapeTarget
    timestamp: float
    up: bool
    duration: float
    exposition: Exposition | None = None
    error: str = ""
    # Unix time of the target's next attempt (set by the engine's loop; 0.0 = unknown). After
    # failures it carries the backoff: the UI shows "retrying in N s" from it.
    next_attempt: float = 0.0


@dataclass
class ScrapeEngine:
    """Scrapes ``targets`` in a background thread and hands each result to ``sink``."""

    targets: Sequence[ScrapeTarget]
    sink: Callable[[ScrapeResult], None]
    on_cycle: Callable[[float], None] | None = None
    on_traces: Callable[[str, list[dict[str, Any]], str], None] | None = None
    on_config: Callable[[str, dict[str, Any] | None, str], None] | None = None
    # A balancer's rate limits (GET /_trimtab/balancer/limits, read token), as on_config.
    on_balancer_limits: Callable[[str, dict[str, Any] | None, str], None] | None = None
    traces_interval: float = 2.0
    cycle_interval: float = 1.0
    max_body_bytes: int = 16 * 1024 * 1024
    # Mapping tables for foreign instrumentations (built-ins plus the user's); None: built-ins.
    mappings: Sequence[MappingTable] | None = None
    _runner: LoopThread | None = None
    _parsers: dict[str, TargetParser] = field(default_factory=dict)
    _normalisers: dict[str, Normaliser | None] = field(default_factory=dict)
    _checkers: dict[str, SeriesChecker] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Removed targets' tasks until they end, and the tasks that cancel them until then.
    _leaving: set[asyncio.Task[Any]] = field(default_factory=set)
    # Kept across remove/add of a name so a re-added target waits for a cancelled scrape.
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None
    _transport: OriginTransport | None = None
    _urls: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> scrape URL, agent base
    _closing: set[asyncio.Task[None]] = field(default_factory=set)  # pools being closed
    # Plain http:// scrapes bypass httpx (collectors.http1): each target's prepared request
    # (None: it needs httpx) and its kept-alive connection.
    _plain: dict[str, http1.Request | None] = field(default_factory=dict)
    _http1: http1.Http1Scraper = field(default_factory=http1.Http1Scraper)

    def start(self) -> ScrapeEngine:
        """Check every target, then start scraping in the ``trimtab-scrape`` thread; returns self."""
        for t in self.targets:
            _check(t)
        self._runner = LoopThread("trimtab-scrape", self._main)
        self._runner.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scraping (any thread; harmless before start and twice); scrapes in flight end."""
        if self._runner is not None:
            self._runner.stop(timeout)

    @property
    def _thread(self) -> threading.Thread | None:
        # The worker thread (benchmarks/fanout.py measures its CPU time).
        return self._runner.thread if self._runner is not None else None

    async def _main(self, stop: asyncio.Event) -> None:
        # One shared client, one pool per origin (see origin_transport): a shared pool's
        # bookkeeping grows with the square of the targets on every request.
        self._transport = OriginTransport(per_origin=max(64, len(self.targets) * 2))
        async with httpx.AsyncClient(transport=self._transport, headers=HEADERS) as client:
            self._client = client
            for target in self.targets:
                self._start_target(target)
            cycle = (asyncio.create_task(self._cycle_loop(stop)) if self.on_cycle is not None
                     else None)
            await stop.wait()
            await cancel_all([*self._tasks.values(), *self._leaving, *([cycle] if cycle else [])])
            self._http1.close_all()

    def add_target(self, target: ScrapeTarget) -> None:
        """Start scraping ``target`` (any thread); its name must be new."""
        _check(target)
        assert self._runner is not None and self._runner.loop is not None, \
            "start() the engine first"
        self._runner.call_soon(self._start_target, target)

    def remove_target(self, name: str, then: Callable[[], object] | None = None) -> None:
        """Stop scraping the target called ``name`` (any thread); ``then()`` runs on the
        engine's thread once it is stopped: no result of it reaches the sink after that."""
        assert self._runner is not None and self._runner.loop is not None, \
            "start() the engine first"
        self._runner.call_soon(self._stop_target, name)
        if then is not None:
            self._runner.call_soon(then)

    def _start_target(self, target: ScrapeTarget) -> None:
        assert self._client is not None
        if target.name in self._tasks:
            raise ValueError(f"target {target.name}: already scraped")
        self._tasks[target.name] = asyncio.create_task(self._target_loop(self._client, target))
        self._urls[target.name] = (target.url, target.agent_base)
        if target.token and target.kind == "instance" and self.on_traces is not None:
            self._tasks[f"{target.name}\x00traces"] = asyncio.create_task(
                self._traces_loop(self._client, target))
        if target.token and target.kind == "balancer" and self.on_balancer_limits is not None:
            # The slot an instance's traces loop has: stopped with the target (_stop_target).
            self._tasks[f"{target.name}\x00traces"] = asyncio.create_task(
                self._balancer_limits_loop(self._client, target))

    def _stop_target(self, name: str) -> None:
        for key in (name, f"{name}\x00traces"):
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()  # now: then() (remove_target) runs before the task's next step
                # Cancelled again until it ends (a lost cancel must not leave it scraping),
                # and waited for by stop() like the others.
                ender = asyncio.create_task(cancel_all([task]))
                for leaving in (task, ender):
                    self._leaving.add(leaving)
                    leaving.add_done_callback(self._leaving.discard)
        self._parsers.pop(name, None)
        self._normalisers.pop(name, None)
        self._checkers.pop(name, None)
        self._plain.pop(name, None)
        self._http1.close(name)
        gone = self._urls.pop(name, None)
        if gone is not None and self._transport is not None:
            in_use = {_origin(u) for urls in self._urls.values() for u in urls}
            for url in {u for u in gone if _origin(u) not in in_use}:  # its pool would idle forever
                task = asyncio.create_task(self._transport.forget(url))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _traces_loop(self, client: httpx.AsyncClient, target: ScrapeTarget) -> None:
        """Follow the agent's trace cursor and its config document (read token).

        New traces go to ``on_traces``; the config (TTLs per route) to ``on_config``
        when it changed (If-None-Match); failures go to both as error texts.
        """
        assert self.on_traces is not None
        cursor, etag = 0, ""
        base = target.agent_base
        headers = {"authorization": f"Bearer {target.token}"}
        while True:
            try:
                response = await client.get(f"{base}/_trimtab/traces", headers=headers,
                                            params={"since": cursor, "limit": 500},
                                            timeout=target.timeout)
                if response.status_code != 200:
                    raise ValueError(f"traces: HTTP {response.status_code}")
                body = response.json()
                cursor = int(body["next"])
                self.on_traces(target.name, list(body["traces"]), "")
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                self.on_traces(target.name, [], plain_error(exc))
            if self.on_config is not None:
                etag = await self._poll_config(client, target, headers, etag)
            await asyncio.sleep(self.traces_interval)

    async def _poll_config(self, client: httpx.AsyncClient, target: ScrapeTarget,
                           headers: dict[str, str], etag: str) -> str:
        assert self.on_config is not None
        try:
            response = await client.get(f"{target.agent_base}/_trimtab/config",
                                        headers={**headers, "if-none-match": etag} if etag else headers,
                                        timeout=target.timeout)
            if response.status_code == 304:
                return etag
            if response.status_code != 200:
                raise ValueError(f"config: HTTP {response.status_code}")
            self.on_config(target.name, response.json(), "")
            return response.headers.get("etag", "")
        except (httpx.HTTPError, ValueError) as exc:
            self.on_config(target.name, None, plain_error(exc))
            return ""

    async def _balancer_limits_loop(self, client: httpx.AsyncClient,
                                    target: ScrapeTarget) -> None:
        """Follow the balancer's rate limits (settings and counts) every traces interval.

        A balancer without limits (404: the HAProxy adapter without a limits map) is asked
        again only every minute; a failure goes to ``on_balancer_limits`` as an error text.
        """
        assert self.on_balancer_limits is not None
        headers = {"authorization": f"Bearer {target.token}"}
        while True:
            pause = self.traces_interval
            try:
                response = await client.get(f"{target.agent_base}/_trimtab/balancer/limits",
                                            headers=headers, timeout=target.timeout)
                if response.status_code == 404:
                    self.on_balancer_limits(target.name, None, "")
                    pause = max(pause, 60.0)
                elif response.status_code != 200:
                    raise ValueError(f"balancer limits: HTTP {response.status_code}")
                else:
                    doc = response.json()
                    if not isinstance(doc, dict):
                        raise ValueError("balancer limits: not a JSON object")
                    self.on_balancer_limits(target.name, doc, "")
            except (httpx.HTTPError, ValueError) as exc:
                self.on_balancer_limits(target.name, None, plain_error(exc))
            except Exception as exc:  # noqa: BLE001 -- a bad answer must not end the polling
                self.on_balancer_limits(target.name, None, f"balancer limits: {exc}")
            await asyncio.sleep(pause)

    async def _cycle_loop(self, stop: asyncio.Event) -> None:
        assert self.on_cycle is not None
        while not stop.is_set():
            await asyncio.sleep(self.cycle_interval)
            try:
                self.on_cycle(time.time())
            except Exception:  # noqa: BLE001 - a bug in one cycle must not stop every later one
                _log.exception("scrape cycle callback failed; collection continues")

    async def _target_loop(self, client: httpx.AsyncClient, target: ScrapeTarget) -> None:
        loop = asyncio.get_running_loop()
        # Like Prometheus, each target gets a stable offset within its interval so that many
        # targets are not scraped (and parsed) in one burst every tick.
        await asyncio.sleep(scrape_offset(target))
        lock = self._locks.setdefault(target.name, asyncio.Lock())
        due, failures = loop.time(), 0
        while True:
            async with lock:
                result = await self.scrape_once(client, target)
            failures = 0 if result.up else failures + 1  # one success resets the backoff
            now = loop.time()
            due = next_due(due, now, target.interval, backoff_delay(target.interval, failures))
            result.next_attempt = time.time() + (due - now)
            try:
                self.sink(result)
            except Exception:  # noqa: BLE001 - a sink bug must not end this target's scraping
                _log.exception("scrape sink failed for %s; scraping goes on", target.name)
            # Not held while this target sleeps: 200 targets' last scrapes (a list of 2,000
            # values each) were young objects that every collection walked (issue 16).
            del result
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def scrape_once(self, client: httpx.AsyncClient, target: ScrapeTarget) -> ScrapeResult:
        """One scrape, bounded by the target's timeout and the body size limit."""
        started = time.time()
        t0 = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for returns the fetch's result and
            # drops a cancel that comes as the fetch ends, and the target's loop went on
            # scraping after stop() (which then waited 5 s for it). No task per scrape either.
            async with asyncio.timeout(target.timeout):
                body, content_type = await self._fetch(client, target)
            parser = self._parsers.setdefault(target.name, TargetParser())
            raw = parser.parse(body, content_type)
            # Limits apply to what the target exposed, before any renaming; a refusal drops it all.
            self._checkers.setdefault(target.name, SeriesChecker()).check(raw, target.limits)
            exposition = self._normalise(target.name, raw)
        except (TimeoutError, httpx.HTTPError, OSError, ParseError, ValueError) as exc:
            error = plain_error(exc)  # "connection refused", not "All connection attempts failed"
            if isinstance(exc, asyncio.TimeoutError):
                error = f"timed out after {target.timeout:g} s"
            return ScrapeResult(target, started, False, time.perf_counter() - t0, error=error)
        return ScrapeResult(target, started, True, time.perf_counter() - t0, exposition)

    def _normalise(self, name: str, expo: Exposition) -> Exposition:
        """Map other instrumentations' names to trimtab's (detected once per target)."""
        if name not in self._normalisers:
            self._normalisers[name] = for_exposition(expo, self.mappings)
        normaliser = self._normalisers[name]
        return normaliser.normalise(expo) if normaliser is not None else expo

    async def _fetch(self, client: httpx.AsyncClient, target: ScrapeTarget) -> tuple[str, str]:
        """Body text and content type. Raw bytes are decoded here (not by httpx) so the
        limit counts decoded bytes during decompression; leaving the block early closes
        the connection (a half-read response is never returned to the pool)."""
        limit, limit_name = effective_body_limit(target.body_size_limit, self.max_body_bytes)
        if target.name not in self._plain:  # once per target: TLS, credentials or a proxy → httpx
            self._plain[target.name] = (http1.Request(target.url, HEADERS)
                                        if http1.plain_http(target.url) else None)
        request = self._plain[target.name]
        if request is not None:
            body, content_type = await self._http1.get(target.name, request, limit, limit_name)
            return body.decode("utf-8"), content_type
        async with client.stream("GET", target.url) as response:
            headers = response.headers
            refuse_non_metrics(response.status_code, headers.get("content-type", ""))
            body = await read_body(response.aiter_raw(), headers.get("content-encoding", ""),
                                   headers.get("content-length"), limit, limit_name)
            content_type = headers.get("content-type", "text/plain")
        return body.decode("utf-8"), content_type


def _origin(url: str) -> tuple[bytes, bytes, int | None]:
    """A URL's origin as :class:`OriginTransport` keys its pools (default ports as None)."""
    parsed = httpx.URL(url)
    return parsed.raw_scheme, parsed.raw_host, parsed.port


def _check(target: ScrapeTarget) -> None:
    if not 0 < target.timeout < target.interval:
        raise ValueError(f"target {target.name}: timeout {target.timeout} must be below "
                         f"interval {target.interval}")
    problem = limit_problem(target.limits._asdict())
    if problem is not None:
        raise ValueError(f"target {target.name}: {problem}")


def scrape_offset(target: ScrapeTarget) -> float:
    """A stable offset in ``[0, interval)`` derived from the target's name and URL."""
    digest = zlib.crc32(f"{target.name}\x00{target.url}".encode())
    return (digest / 2**32) * target.interval

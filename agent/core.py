"""What the agent does per instance and per request, whatever the server interface.

The ASGI middleware (:mod:`.middleware`) and the WSGI middleware (:mod:`.wsgi`) differ
only in how they read a request and write a response. Everything else lives here once:
the instance's state (metrics, route resolver, live config, journal, tokens, tracer,
what-if, response cache, control API, worker sharing) and the steps of one request —
begin (timing, trace span, in-flight), the TTL decision, admission (rate limits and other
gates), finish (metrics, what-if, trace, publishing for the other workers).

Admission differs by side on purpose: the WSGI middleware (a worker thread per request, no
event loop) decides rate limits with :meth:`AgentCore.admit`, which may block on the store;
the ASGI middleware awaits :meth:`AgentCore.admit_async`, so a slow Redis store makes the
request it decides wait, never the event loop and the other requests of the worker.

Requests are described ASGI-style (a ``scope`` mapping with ``method``, ``path``,
``root_path``, ``query_string``, ``headers``, ...): the WSGI side builds one from the
environ, so route resolution and cache keys are the same functions on both sides.

Multi-process servers (``uvicorn --workers N``, ``gunicorn -w N``) share the config and the
journal through files in the state dir, and every worker publishes its counters there so
that /metrics answers for the whole instance (:mod:`.worker_metrics`). The publishing file
is named after the process that serves, found at the first request, so an app built in a
parent before ``fork`` (``gunicorn --preload``) still counts each worker apart.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import time
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .auth import TokenAuth
from .cache import MemoryStore, Store
from .config import ConfigStore, Settings
from .control import ControlAPI
from .control_extras import add_extra_endpoints
from .journal import Journal
from .metrics import RouteMetrics, RouteMetricsCollector, method_label
from .ratelimit import Backend, answer_429
from .ratelimit_control import RateLimits
from .response_cache import ResponseCache
from .routes import RouteResolver
from .traces import RequestSpan, Tracer
from .whatif import WhatIf
from .worker_metrics import WorkerMetricsShare

STATE_DIR_ENV = "TRIMTAB_STATE_DIR"
CACHEABLE_METHODS = ("GET", "HEAD")
Scope = MutableMapping[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Refusal:
    """A response given instead of calling the app (e.g. 429 from a rate limit)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


# A gate sees (route, scope) before the app runs and refuses or lets the request through.
# Gates are synchronous and must not wait on I/O (the ASGI side runs them on its event loop).
Gate = Callable[[str, Scope], Refusal | None]
Header = tuple[bytes, bytes]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class RequestRun:
    """One request while it runs: what :meth:`AgentCore.finish` needs to record it."""

    method: str  # the metric label (non-standard methods folded)
    span: RequestSpan
    token: contextvars.Token[Any]
    start: float
    settings: Settings
    cacheable: bool
    result: str = "off"  # cache: off, hit, miss, bypass, error (the trace's "cache" field)


class AgentCore:
    """One instance's agent state and per-request steps; the base of both middlewares.

    ``framework_routes`` is a Starlette route table (ASGI); ``templates`` are route
    templates a framework declares some other way (Flask rules, Django URL patterns).
    Both, and ``patterns``, are declared routes: configurable, never folded.
    """

    def __init__(self, instance: str = "api", ttls: Mapping[str, float] | None = None,
                 patterns: tuple[str, ...] = (), max_routes: int = 200,
                 store: Store | None = None, tokens: TokenAuth | str | None = None,
                 state_dir: str | None = None, trace_capacity: int = 2048,
                 max_body: int = 64 * 1024, cache_timeout: float = 0.05,
                 framework_routes: Sequence[Any] | None = None,
                 templates: Iterable[str] = (), ratelimit_store: str | Backend | None = None
                 ) -> None:
        self.instance = instance
        self.metrics = RouteMetrics()
        self.resolver = RouteResolver(framework_routes, patterns, max_routes)
        state = state_dir if state_dir is not None else os.environ.get(STATE_DIR_ENV) or None
        self.state: Path | None = Path(state) if state else None
        self.safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", instance)
        self.store: Store = store or MemoryStore()
        self.config = ConfigStore(
            instance, dict(ttls or {}), [*self.resolver.templates, *templates],
            self.state / f"config-{self.safe_name}.json" if self.state else None,
            self.store.name)
        self.journal = Journal(self.state / f"journal-{self.safe_name}.jsonl"
                               if self.state else None)
        self.auth = tokens if isinstance(tokens, TokenAuth) else (
            TokenAuth.from_env() if tokens is None else TokenAuth.from_spec(tokens))
        self.tracer = Tracer(instance, trace_capacity)
        self.whatif = WhatIf()
        self.cache = ResponseCache(self.store, self.metrics, timeout=cache_timeout)
        self.control = ControlAPI(self.config, self.journal, self.auth, max_body)
        add_extra_endpoints(self.control, self.tracer, self.whatif, self.cache)
        if isinstance(self.store, MemoryStore):
            # Per-process store: replay purges other workers recorded in the shared file.
            memory = self.store
            self.config.on_purge = memory.drop_prefix
            self.control.health_extra = lambda: {"cache_entries": len(memory)}
        # Admission checks other than rate limits register here (see :meth:`admit`).
        self.gates: list[Gate] = []
        self._share: WorkerMetricsShare | None = None
        self._share_pid = 0
        self._flight = threading.Lock()  # WSGI servers may run requests in threads
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RouteMetricsCollector(
            self.metrics, instance, gauges=self._gauges, counters=self._counters,
            source=self._merged if self.state else None))
        # Rate limits (the config's ``limits``): store, counters, GET /_trimtab/limits, gate.
        self.ratelimits = RateLimits.for_agent(self.control, self.registry, instance,
                                               self.state, ratelimit_store)

    # ------------------------------------------------------------ sharing between workers

    @property
    def share(self) -> WorkerMetricsShare | None:
        """This process's publisher of counters (None without a state dir)."""
        if self.state is None:
            return None
        if self._share is None or self._share_pid != os.getpid():
            self._share = WorkerMetricsShare(self.state / "metrics", self.safe_name,
                                             self.metrics)
            self._share_pid = os.getpid()
        return self._share

    def _merged(self) -> RouteMetrics:
        share = self.share
        assert share is not None  # registered as the source only with a state dir
        return share.merged()

    def _gauges(self) -> dict[str, tuple[str, float]]:
        used = getattr(self.store, "bytes_used", None)
        if used is None:
            return {}
        return {"trimtab_cache_memory_bytes": ("Bytes held by the in-memory cache.", float(used))}

    def _counters(self) -> dict[str, tuple[str, float]]:
        return {"trimtab_control_unauthenticated": (
            "Control API requests refused with 401 (counted, not journaled).",
            float(self.control.unauthenticated))}

    def metrics_payload(self, accept: str) -> tuple[bytes, str]:
        """The /metrics body and its content type (OpenMetrics when ``accept`` asks for it)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # ------------------------------------------------------------ one request

    def begin(self, method: str, traceparent: bytes | None) -> RequestRun:
        """Start timing a request: its trace span becomes current, in-flight goes up."""
        settings = self.config.settings()
        label = method_label(method)
        span, token = self.tracer.begin(traceparent)
        with self._flight:
            self.metrics.in_flight += 1
        return RequestRun(label, span, token, time.perf_counter(), settings,
                          settings.enabled and label in CACHEABLE_METHODS)

    def ttl(self, run: RequestRun, route: str) -> float | None:
        """The TTL to serve ``route`` with from the cache, or None (not cacheable now)."""
        return run.settings.ttls.get(route) if run.cacheable else None

    def admit(self, run: RequestRun, route: str, scope: Scope
              ) -> tuple[Refusal | None, list[Header]]:
        """Admission without an event loop (WSGI): ``(refusal, [])`` or ``(None, headers)``.

        The first refusal of a registered gate, else the rate limits' (a 429). An allowed
        request gets the enforced limits' ``RateLimit-Policy``/``RateLimit`` headers to add
        to whatever answers it (the app or a cache hit); shadow limits add none. The store is
        asked with a blocking call (bounded by its timeout): right for a sync worker only.
        """
        for gate in self.gates:
            refusal = gate(route, scope)
            if refusal is not None:
                return refusal, []
        verdict = self.ratelimits.check_sync(run.settings.limits, route, scope)
        if verdict is None:
            return None, []
        if verdict.refuse:
            status, headers, body = answer_429(verdict)
            return Refusal(status, tuple(h for h in headers if h[0] != b"content-length"),
                           body), []
        return None, verdict.headers

    async def admit_async(self, run: RequestRun, route: str, scope: Scope, send: Send
                          ) -> tuple[Refusal | None, bool, Send]:
        """Admission on an event loop (ASGI): ``(refusal, answered, send')``.

        A gate's refusal is returned for the caller to send; a rate limit's 429 is sent
        here through ``send`` (``answered``). Otherwise ``send'`` adds the enforced limits'
        RateLimit headers to the response. The store is awaited: waiting on it suspends
        this request only.
        """
        for gate in self.gates:
            refusal = gate(route, scope)
            if refusal is not None:
                return refusal, False, send
        answered, send = await self.ratelimits.guard(run.settings.limits, route, scope, send)
        return None, answered, send

    def cached(self, run: RequestRun, route: str, result: str, reason: str = "") -> None:
        """Record what the response cache did for this request."""
        run.result = result
        self.metrics.cache_result(route, result, reason)

    def failed(self, route: str) -> None:
        """Record that the app raised while serving ``route``."""
        self.metrics.exception(route)

    def finish(self, run: RequestRun, route: str, status: int, scope: Scope,
               body_bytes: int | None) -> None:
        """Record a finished request: metrics, what-if, trace; publish for other workers.

        ``body_bytes`` is the response body handed to the server (0 for HEAD).
        """
        with self._flight:
            self.metrics.in_flight -= 1
        if run.cacheable:
            self.whatif.observe(route, whatif_key(scope), time.time())
        self.metrics.folded_routes = self.resolver.folded
        seconds = time.perf_counter() - run.start
        self.metrics.observe(route, run.method, status, seconds, run.span.trace_id,
                             body_bytes=body_bytes)
        self.tracer.end(run.span, run.token, route=route, method=run.method, status=status,
                        cache=run.result, seconds=seconds)
        share = self.share
        if share is not None:
            share.maybe_publish(time.monotonic())


def whatif_key(scope: Scope) -> str:
    """What the what-if simulation counts as one cache entry: path and raw query."""
    query = scope.get("query_string", b"")
    return f"{scope['path']}?{query.decode('latin-1')}" if query else scope["path"]


def run_now(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never waits on I/O to completion, without an event loop.

    The control API and the in-memory store are coroutines for the ASGI side, but they
    only ever await other such coroutines: a WSGI worker (no loop, maybe a thread of its
    own) runs them in one step. One that does suspend is a bug, reported as such.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a coroutine waited on I/O where none was expected (WSGI side)")

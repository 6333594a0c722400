"""A pure ASGI middleware: per-route metrics, traces, the response cache, and the control API.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it runs on every request
in front of production traffic and must add microseconds, not milliseconds.

Usage::

    app = TrimtabMiddleware(starlette_or_fastapi_app, instance="api-1",
                            ttls={"/products/{id}": 10.0},
                            tokens="alice:write:S1",      # default: $TRIMTAB_TOKENS
                            state_dir="/var/lib/trimtab") # default: $TRIMTAB_STATE_DIR

- ``/metrics`` (open, Prometheus text or OpenMetrics with trace-id exemplars).
- ``/_trimtab/...`` (token required): see :mod:`.control`, plus
  ``GET traces`` (:mod:`.traces`), ``GET cache/whatif?route=&ttls=``
  (:mod:`.whatif`) and ``POST cache/invalidate`` with ``{"route": ...}`` or
  ``{"prefix": ...}`` (journaled).
- With a ``state_dir`` the config and journal are files shared by every worker
  (``uvicorn --workers N``) and kept across restarts, cache invalidations are
  replayed by every worker's memory store, and /metrics sums every worker's
  counters (:mod:`.worker_metrics`). Without one they live in memory and a
  multi-process worker refuses to start (never silent divergence). Traces and
  what-if stay per worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .auth import TokenAuth
from .cache import MemoryStore, Store
from .config import ConfigStore, refuse_unshared_multiprocess
from .control import PREFIX, ControlAPI
from .control_extras import add_extra_endpoints
from .journal import Journal
from .metrics import RouteMetrics, RouteMetricsCollector, method_label
from .response_cache import ResponseCache
from .routes import RouteResolver
from .traces import Tracer
from .whatif import WhatIf
from .worker_metrics import WorkerMetricsShare

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
STATE_DIR_ENV = "TRIMTAB_STATE_DIR"


class _Exchange:
    """Watches one request's messages: status, body bytes, completion, client disconnect."""

    __slots__ = ("_receive", "_send", "body_bytes", "complete", "disconnected", "head",
                 "started", "status")

    def __init__(self, send: Send, receive: Receive, head: bool = False) -> None:
        self._send, self._receive = send, receive
        self.status, self.started, self.complete, self.disconnected = 500, False, False, False
        # Bytes handed to the server after any middleware inside us (compression included):
        # what leaves. A HEAD response has no body on the wire whatever the app passes on.
        self.head, self.body_bytes = head, 0

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status, self.started = message["status"], True
        elif kind == "http.response.body":
            if not self.head:
                self.body_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
        await self._send(message)

    async def receive(self) -> MutableMapping[str, Any]:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.disconnected = True
        return message


class TrimtabMiddleware:
    """Wraps an ASGI app; serves ``/metrics`` and ``/_trimtab/``; caches routes with a TTL."""

    def __init__(self, app: ASGIApp, instance: str = "api", ttls: dict[str, float] | None = None,
                 patterns: tuple[str, ...] = (), max_routes: int = 200,
                 store: Store | None = None, metrics_path: str = "/metrics",
                 tokens: TokenAuth | str | None = None, state_dir: str | None = None,
                 trace_capacity: int = 2048, max_body: int = 64 * 1024,
                 cache_timeout: float = 0.05) -> None:
        self.app = app
        self.instance = instance
        self.metrics_path = metrics_path
        self.metrics = RouteMetrics()
        self.resolver = RouteResolver(getattr(app, "routes", None), patterns, max_routes)
        state = state_dir if state_dir is not None else os.environ.get(STATE_DIR_ENV) or None
        refuse_unshared_multiprocess(state is not None)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance)
        self.store: Store = store or MemoryStore()
        self.config = ConfigStore(instance, dict(ttls or {}), self.resolver.templates,
                                  Path(state, f"config-{safe}.json") if state else None,
                                  self.store.name)
        self.journal = Journal(Path(state, f"journal-{safe}.jsonl") if state else None)
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
        # With a shared state dir, /metrics answers for every worker of this instance.
        self.share = WorkerMetricsShare(Path(state, "metrics"), safe, self.metrics) \
            if state else None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RouteMetricsCollector(
            self.metrics, instance, gauges=self._gauges, counters=self._counters,
            source=self.share.merged if self.share else None))

    def _gauges(self) -> dict[str, tuple[str, float]]:
        used = getattr(self.store, "bytes_used", None)
        if used is None:
            return {}
        return {"trimtab_cache_memory_bytes": ("Bytes held by the in-memory cache.", float(used))}

    def _counters(self) -> dict[str, tuple[str, float]]:
        return {"trimtab_control_unauthenticated": (
            "Control API requests refused with 401 (counted, not journaled).",
            float(self.control.unauthenticated))}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == self.metrics_path:
            await self._serve_metrics(scope, send)
        elif path.startswith(PREFIX):
            await self.control(scope, receive, send)  # type: ignore[arg-type]
        else:
            if not self.resolver.has_framework_routes:
                self._adopt_routes(scope)
            await self._handle(scope, receive, send)

    def _adopt_routes(self, scope: Scope) -> None:
        """Added with ``app.add_middleware``, we wrap an inner app: find the route table."""
        routes = getattr(scope.get("app"), "routes", None)
        if routes:
            self.resolver.adopt(routes)
            self.config.add_routes(self.resolver.templates)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        root_path = scope.get("root_path", "")  # a Mount extends it while routing
        settings = self.config.settings()
        method = method_label(scope["method"])
        span, token = self.tracer.begin(_header(scope, b"traceparent"))
        ex = _Exchange(send, receive, head=method == "HEAD")
        route: str | None = None
        result = "off"
        self.metrics.in_flight += 1
        cacheable = settings.enabled and method in ("GET", "HEAD")
        try:
            # Peek first: a request without a TTL must not take a slot under the route cap
            # before the app had a chance to name its route (resolve_after, below).
            if cacheable and settings.ttls.get(self.resolver.peek(scope)):
                route = self.resolver.resolve(scope)
                ttl = settings.ttls.get(route)  # none for <other>: a folded route is not cached
                if ttl:
                    result, reason = await self.cache.handle(
                        self.app, scope, ex.receive, ex.send, route, ttl,
                        route in settings.allow_auth, span)
                    self.metrics.cache_result(route, result, reason)
            if result == "off":
                await self._origin(scope, ex, span)
        except asyncio.CancelledError:
            ex.disconnected = True  # some servers cancel the app when the client goes away
            raise
        except Exception:
            route = route or self.resolver.resolve_after(scope, root_path)
            self.metrics.exception(route)
            raise
        finally:
            self.metrics.in_flight -= 1
            route = route or self.resolver.resolve_after(scope, root_path)
            if cacheable:
                self.whatif.observe(route, _whatif_key(scope), time.time())
            self.metrics.folded_routes = self.resolver.folded
            # 499 (nginx): the client went away before the response was complete.
            status = 499 if ex.disconnected else ex.status
            seconds = time.perf_counter() - start
            self.metrics.observe(route, method, status, seconds, span.trace_id,
                                 body_bytes=ex.body_bytes)
            self.tracer.end(span, token, route=route, method=method, status=status,
                            cache=result, seconds=seconds)
            if self.share is not None:
                self.share.maybe_publish(time.monotonic())

    async def _origin(self, scope: Scope, ex: _Exchange, span: Any) -> None:
        t0, wall = time.perf_counter(), time.time()
        try:
            await self.app(scope, ex.receive, ex.send)
        finally:
            span.child("handler", wall, time.perf_counter() - t0)

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        accept = (_header(scope, b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def _whatif_key(scope: Scope) -> str:
    query = scope.get("query_string", b"")
    return f"{scope['path']}?{query.decode('latin-1')}" if query else scope["path"]

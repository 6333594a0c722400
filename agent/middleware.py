"""A pure ASGI middleware: per-route metrics, the response cache, and /metrics.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it runs on every request
in front of production traffic and must add microseconds, not milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .cache import CachedResponse, MemoryStore, cache_key, request_bypasses, response_storable
from .metrics import RouteMetrics, RouteMetricsCollector
from .routes import RouteResolver

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TrimtabMiddleware:
    """Wraps an ASGI app; serves ``/metrics`` and caches routes that have a TTL."""

    def __init__(self, app: ASGIApp, instance: str = "api", ttls: dict[str, float] | None = None,
                 patterns: tuple[str, ...] = (), max_routes: int = 200,
                 store: MemoryStore | None = None, metrics_path: str = "/metrics") -> None:
        self.app = app
        self.instance = instance
        self.ttls: dict[str, float] = dict(ttls or {})
        self.store = store or MemoryStore()
        self.metrics = RouteMetrics()
        self.metrics_path = metrics_path
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RouteMetricsCollector(self.metrics, instance))
        self.resolver = RouteResolver(getattr(app, "routes", None), patterns, max_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.metrics_path:
            await self._serve_metrics(scope, send)
            return
        start = time.perf_counter()
        route = self.resolver.resolve(scope)
        self.metrics.folded_routes = self.resolver.folded
        status_box = [500]
        self.metrics.in_flight += 1
        try:
            ttl = self.ttls.get(route, 0.0)
            if ttl > 0 and scope["method"] in ("GET", "HEAD"):
                await self._cached(scope, receive, send, route, ttl, status_box)
            else:
                await self.app(scope, receive, _status_recorder(send, status_box))
        finally:
            self.metrics.in_flight -= 1
            self.metrics.observe(route, scope["method"], status_box[0], time.perf_counter() - start)

    async def _cached(self, scope: Scope, receive: Receive, send: Send, route: str, ttl: float,
                      status_box: list[int]) -> None:
        headers = dict(scope.get("headers") or ())
        if request_bypasses(headers):
            self.metrics.cache_result(route, "bypass")
            await self.app(scope, receive, _status_recorder(send, status_box))
            return
        host = headers.get(b"host", b"").decode("latin-1")
        key = cache_key(route, scope["method"], host, scope["path"], scope.get("query_string", b""))
        now = time.time()
        hit = self.store.get(key, now)
        if hit is not None:
            self.metrics.cache_result(route, "hit")
            status_box[0] = hit.status
            age = str(int(now - hit.stored_at)).encode()
            await send({"type": "http.response.start", "status": hit.status,
                        "headers": [*hit.headers, (b"age", age), (b"x-trimtab-cache", b"hit")]})
            await send({"type": "http.response.body", "body": hit.body})
            return
        self.metrics.cache_result(route, "miss")
        captured: dict[str, Any] = {"body": []}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers") or ())
                message = {**message, "headers": [*captured["headers"], (b"x-trimtab-cache", b"miss")]}
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._store(key, captured, ttl)
            await send(message)

        await self.app(scope, receive, capture)

    def _store(self, key: str, captured: dict[str, Any], ttl: float) -> None:
        status, headers = captured.get("status", 500), captured.get("headers", [])
        if not response_storable(status, headers):
            return
        now = time.time()
        self.store.put(key, CachedResponse(status, tuple(headers), b"".join(captured["body"]),
                                           now, now + ttl))

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        accept = dict(scope.get("headers") or ()).get(b"accept", b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode())]})
        await send({"type": "http.response.body", "body": body})


def _status_recorder(send: Send, status_box: list[int]) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status_box[0] = message["status"]
        await send(message)

    return wrapped

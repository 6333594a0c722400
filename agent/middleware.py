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
- Rate limits (the config's ``limits``, :mod:`.ratelimit_control`) are decided before
  the app runs and awaited: a slow Redis store holds the request it decides, never the
  event loop. A refusal is a 429; an allowed answer (from the app or the cache) carries
  the enforced limits' ``RateLimit-Policy``/``RateLimit`` headers; shadow limits add none.
- With a ``state_dir`` the config and journal are files shared by every worker
  (``uvicorn --workers N``) and kept across restarts, cache invalidations are
  replayed by every worker's memory store, and /metrics sums every worker's
  counters (:mod:`.worker_metrics`). Without one they live in memory and a
  multi-process worker refuses to start (never silent divergence). Traces and
  what-if stay per worker.

Everything but reading and writing ASGI messages is :class:`~.core.AgentCore`, shared
with the WSGI middleware (:mod:`.wsgi`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .auth import TokenAuth
from .cache import Store
from .config import refuse_unshared_multiprocess
from .control import PREFIX
from .core import AgentCore, Refusal
from .ratelimit import Backend

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


def routes_below(app: Any, depth: int = 16) -> Any:
    """The route table of the first app down the ``.app`` chain that has one.

    ``FastAPI.add_middleware(TrimtabMiddleware)`` wraps Starlette's exception middleware,
    not the router: the table is one or two ``.app`` hops below. Found here, the routes
    are known before the first request (a TTL for ``/items/{id}`` set right after start
    is not "unknown route").
    """
    for _ in range(depth):
        routes = getattr(app, "routes", None)
        if routes is not None:
            return routes
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class TrimtabMiddleware(AgentCore):
    """Wraps an ASGI app; serves ``/metrics`` and ``/_trimtab/``; caches routes with a TTL.

    The state and the per-request steps are :class:`~.core.AgentCore`'s (shared with the
    WSGI middleware); this class reads ASGI messages and writes them.
    """

    def __init__(self, app: ASGIApp, instance: str = "api", ttls: dict[str, float] | None = None,
                 patterns: tuple[str, ...] = (), max_routes: int = 200,
                 store: Store | None = None, metrics_path: str = "/metrics",
                 tokens: TokenAuth | str | None = None, state_dir: str | None = None,
                 trace_capacity: int = 2048, max_body: int = 64 * 1024,
                 cache_timeout: float = 0.05,
                 ratelimit_store: str | Backend | None = None) -> None:
        super().__init__(instance, ttls, patterns, max_routes, store, tokens, state_dir,
                         trace_capacity, max_body, cache_timeout,
                         framework_routes=routes_below(app),
                         ratelimit_store=ratelimit_store)
        refuse_unshared_multiprocess(self.state is not None)  # before serving anything
        self.app = app
        self.metrics_path = metrics_path

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
        root_path = scope.get("root_path", "")  # a Mount extends it while routing
        run = self.begin(scope["method"], _header(scope, b"traceparent"))
        ex = _Exchange(send, receive, head=run.method == "HEAD")
        route: str | None = None
        try:
            # Peek first: a request without a TTL must not take a slot under the route cap
            # before the app had a chance to name its route (resolve_after, below).
            peeked = self.resolver.peek(scope)
            # Awaited: a rate limit store that is slow to answer holds this request only.
            refusal, answered, send = await self.admit_async(run, peeked, scope, ex.send)
            if refusal is not None:
                await _send_refusal(ex.send, refusal)
                answered = True
            elif not answered and self.ttl(run, peeked):
                route = self.resolver.resolve(scope)
                ttl = self.ttl(run, route)  # none for <other>: a folded route is not cached
                if ttl:
                    # ``send`` adds the RateLimit headers outside the cache: a hit gets
                    # fresh ones, and what the cache keeps is the app's answer alone.
                    result, reason = await self.cache.handle(
                        self.app, scope, ex.receive, send, route, ttl,
                        route in run.settings.allow_auth, run.span)
                    self.cached(run, route, result, reason)
            if not answered and run.result == "off":
                await self._origin(scope, ex.receive, send, run.span)
        except asyncio.CancelledError:
            ex.disconnected = True  # some servers cancel the app when the client goes away
            raise
        except Exception:
            route = route or self.resolver.resolve_after(scope, root_path)
            self.failed(route)
            raise
        finally:
            route = route or self.resolver.resolve_after(scope, root_path)
            # 499 (nginx): the client went away before the response was complete.
            status = 499 if ex.disconnected else ex.status
            self.finish(run, route, status, scope, ex.body_bytes)

    async def _origin(self, scope: Scope, receive: Receive, send: Send, span: Any) -> None:
        t0, wall = time.perf_counter(), time.time()
        try:
            await self.app(scope, receive, send)
        finally:
            span.child("handler", wall, time.perf_counter() - t0)

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        body, content_type = self.metrics_payload(
            (_header(scope, b"accept") or b"").decode("latin-1"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _send_refusal(send: Send, refusal: Refusal) -> None:
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [*refusal.headers,
                            (b"content-length", str(len(refusal.body)).encode())]})
    await send({"type": "http.response.body", "body": refusal.body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


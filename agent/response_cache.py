"""Serving a request through the response cache, with a store that may fail.

A cache outage never becomes an API outage: every store call is bounded by
``timeout``; on an error or timeout the request goes to the origin, the error
is counted (``trimtab_cache_errors_total{store,op}``) and the store is skipped
for ``cooldown`` seconds so a dead Redis does not add its timeout to every
request. Stores (:class:`~.cache.MemoryStore`, :class:`~.redis_store.RedisStore`)
are in :mod:`.cache` and :mod:`.redis_store`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .cache import (
    REPEATED_HEADER,
    CachedResponse,
    HeaderMap,
    Store,
    bypass_reason,
    cache_directives,
    cache_key,
    has_credentials,
    header_map,
    repeated,
    response_storable,
    route_prefix,
    variant_key,
    vary_names,
)
from .metrics import RouteMetrics
from .traces import RequestSpan

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
# Lookup result for a request that repeats a header the stored response varies on.
_AMBIGUOUS = CachedResponse(0, (), b"", 0.0, 0.0)


@dataclass
class Lookup:
    """The cache's answer before the app runs.

    ``result`` is ``hit`` (``hit`` holds the entry), ``bypass`` (``reason`` says why: go
    to the origin, store nothing), or ``miss``/``error`` (go to the origin; ``ok`` says
    whether the store answered, so whether the response may be stored at ``base``).
    """

    result: str
    reason: str
    headers: HeaderMap
    base: str = ""
    with_creds: bool = False
    ok: bool = False
    hit: CachedResponse | None = field(default=None)


def hit_headers(hit: CachedResponse) -> list[tuple[bytes, bytes]]:
    """Response headers for a cache hit: the stored ones plus ``Age`` and the hit marker."""
    age = str(max(0, int(time.time() - hit.stored_at))).encode()
    return [*hit.headers, (b"age", age), (b"x-trimtab-cache", b"hit")]


def miss_headers(request: HeaderMap, response: list[tuple[bytes, bytes]]
                 ) -> list[tuple[bytes, bytes]] | None:
    """The origin's response headers marked as a miss; None when the response varies on a
    header the request repeats (no variant key can say which copy the app read)."""
    if repeated(request, vary_names(response)):
        return None
    return [*response, (b"x-trimtab-cache", b"miss")]


class ResponseCache:
    """Looks up, serves and stores responses for routes with a TTL."""

    def __init__(self, store: Store, metrics: RouteMetrics, timeout: float = 0.05,
                 cooldown: float = 1.0, max_entry_bytes: int = 1024 * 1024) -> None:
        self.store, self.metrics = store, metrics
        self.timeout, self.cooldown, self.max_entry_bytes = timeout, cooldown, max_entry_bytes
        self._down_until = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._bounded = store.name != "memory"  # in-process dict calls cannot hang

    async def handle(self, app: App, scope: MutableMapping[str, Any], receive: Receive, send: Send,
                     route: str, ttl: float, allow_auth: bool, span: RequestSpan
                     ) -> tuple[str, str]:
        """Serve one request; returns (result, reason): result is hit, miss, bypass or error,
        reason says why a bypass went to the origin (``""`` otherwise)."""
        found = await self.lookup(scope, route, allow_auth, span)
        if found.result == "bypass":
            await self._origin(app, scope, receive, send, span)
            return "bypass", found.reason
        if found.hit is not None:
            await send({"type": "http.response.start", "status": found.hit.status,
                        "headers": hit_headers(found.hit)})
            await send({"type": "http.response.body",
                        "body": b"" if scope["method"] == "HEAD" else found.hit.body})
            return "hit", ""
        captured = await self._origin_capture(app, scope, receive, send, span, found.headers)
        if captured is not None and captured.get("ambiguous"):
            return "bypass", REPEATED_HEADER
        if captured is not None:
            pending = self._store_later(found, captured.get("status", 500),
                                        captured.get("headers", []), b"".join(captured["body"]),
                                        ttl)
            if pending is not None:
                await pending
        return found.result, ""

    async def lookup(self, scope: MutableMapping[str, Any], route: str, allow_auth: bool,
                     span: RequestSpan) -> Lookup:
        """What the cache says about a request before the app runs (shared by ASGI and WSGI).

        ``scope`` is ASGI-shaped (method, scheme, server, root_path, path, raw_path,
        query_string, headers): :func:`~.cache.cache_key` reads those fields.
        """
        headers = header_map(scope.get("headers"))
        reason = bypass_reason(headers, allow_auth)
        if reason is not None:
            return Lookup("bypass", reason, headers)
        with_creds = has_credentials(headers)
        base = cache_key(route, scope, headers)
        t0, wall = time.perf_counter(), time.time()
        hit, ok = await self._lookup(base, headers, wall)
        if hit is _AMBIGUOUS:  # the stored response varies on a header this request repeats
            span.child("cache.lookup", wall, time.perf_counter() - t0, store=self.store.name,
                       result="bypass")
            return Lookup("bypass", REPEATED_HEADER, headers)
        span.child("cache.lookup", wall, time.perf_counter() - t0, store=self.store.name,
                   result="hit" if hit else ("miss" if ok else "error"))
        if hit is not None and (not with_creds or hit.shared_with_auth):
            return Lookup("hit", "", headers, hit=hit)
        return Lookup("miss" if ok else "error", "", headers, base, with_creds, ok)

    async def _lookup(self, base: str, headers: HeaderMap, now: float
                      ) -> tuple[CachedResponse | None, bool]:
        """(entry or None, store healthy); follows a Vary marker to the request's variant
        (:data:`_AMBIGUOUS` when the request repeats a Vary'd header)."""
        item = await self._call("get", self.store.get(base, now))
        if item is False:
            return None, False
        if item is None or not item.vary:
            return item, True
        if repeated(headers, item.vary):
            return _AMBIGUOUS, True
        variant = await self._call("get", self.store.get(variant_key(base, item.vary, headers),
                                                         now))
        return (None, False) if variant is False else (variant, True)

    async def _call(self, op: str, coro: Awaitable[Any]) -> Any:
        """Run a store call; False on error, timeout or while cooling down (never raises)."""
        if time.monotonic() < self._down_until:
            coro.close()  # type: ignore[attr-defined]
            self.metrics.cache_error(self.store.name, f"{op}_skipped")
            return False
        try:
            if not self._bounded:
                return await coro
            # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancel (a client that
            # went away) that comes as the store's answer does, and the request went on.
            async with asyncio.timeout(self.timeout):
                return await coro
        except Exception:  # noqa: BLE001 - any store failure must fall back to the origin
            self.metrics.cache_error(self.store.name, op)
            self._down_until = time.monotonic() + self.cooldown
            return False

    async def _origin(self, app: App, scope: MutableMapping[str, Any], receive: Receive, send: Send,
                      span: RequestSpan) -> None:
        t0, wall = time.perf_counter(), time.time()
        try:
            await app(scope, receive, send)
        finally:
            span.child("handler", wall, time.perf_counter() - t0)

    async def _origin_capture(self, app: App, scope: MutableMapping[str, Any], receive: Receive,
                              send: Send, span: RequestSpan, headers: HeaderMap
                              ) -> dict[str, Any] | None:
        """Call the app, forwarding its response and keeping a copy (None when too big).

        ``ambiguous`` is set (and nothing is kept) when the response varies on a header the
        request repeats: no variant key can say which copy the app read.
        """
        cap: dict[str, Any] = {"body": [], "size": 0, "complete": False, "ambiguous": False}

        async def capture(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cap["status"], cap["headers"] = message["status"], list(message.get("headers", ()))
                marked = miss_headers(headers, cap["headers"])
                if marked is None:
                    cap["ambiguous"], cap["body"] = True, None
                else:
                    message = {**message, "headers": marked}
            elif message["type"] == "http.response.body" and cap["body"] is not None:
                chunk = message.get("body", b"")
                cap["size"] += len(chunk)
                # A huge or endless stream is passed through, never buffered.
                if cap["size"] <= self.max_entry_bytes:
                    cap["body"].append(chunk)
                else:
                    cap["body"] = None
                cap["complete"] = not message.get("more_body", False)
            await send(message)

        await self._origin(app, scope, receive, capture, span)
        if cap["ambiguous"]:
            return cap
        return cap if cap["body"] is not None and cap["complete"] else None

    def _store_later(self, found: Lookup, status: int, resp_headers: list[tuple[bytes, bytes]],
                     body: bytes, ttl: float) -> Awaitable[None] | None:
        """Store a captured response: awaitable for in-process stores, a background task
        (the client already has its response) for remote ones."""
        put = self.store_call(found, status, resp_headers, body, ttl)
        if put is None or not self._bounded:
            return put  # in-process: store before returning
        task = asyncio.get_running_loop().create_task(put)  # type: ignore[arg-type]
        self._pending.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self._pending.discard)
        return None

    def store_call(self, found: Lookup, status: int, resp_headers: list[tuple[bytes, bytes]],
                   body: bytes, ttl: float) -> Coroutine[Any, Any, None] | None:
        """The store operation for a complete origin response, or None when it must not be
        stored (lookup failed, status, directives, credentials: RFC 9111 rules)."""
        if not found.ok or not response_storable(status, resp_headers):
            return None
        shared = bool(cache_directives(resp_headers) & {b"public", b"s-maxage"})
        if found.with_creds and not shared:
            return None  # RFC 9111 §3.5: a response to an authorised request needs public/s-maxage
        now = time.time()
        item = CachedResponse(status, tuple(resp_headers), body, now, now + ttl, (), shared)
        return self._put(found.base, found.headers, item, vary_names(resp_headers))

    async def _put(self, base: str, headers: HeaderMap, item: CachedResponse,
                   vary: tuple[bytes, ...]) -> None:
        if vary:
            marker = CachedResponse(0, (), b"", item.stored_at, item.expires_at, vary)
            if await self._call("put", self.store.put(base, marker)) is False:
                return
            await self._call("put", self.store.put(variant_key(base, vary, headers), item))
        else:
            await self._call("put", self.store.put(base, item))

    async def flush(self) -> None:
        """Wait for pending stores (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def invalidate(self, route: str | None = None, prefix: str | None = None) -> int:
        """Drop a route's entries or every key starting with ``prefix``; -1 if the store failed."""
        target = route_prefix(route) if route is not None else (prefix or "")
        self._down_until = 0.0  # an explicit operator action deserves a real attempt
        count = await self._call("invalidate", self.store.invalidate_prefix(target))
        return -1 if count is False else int(count)

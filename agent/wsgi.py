"""A WSGI middleware: the same metrics, traces, response cache and control API as the ASGI one.

Usage (any WSGI app; Flask and Django have helpers in :mod:`.flask` and :mod:`.django`
that also name the routes by the framework's own templates)::

    from trimtab.agent.wsgi import TrimtabWSGI
    application = TrimtabWSGI(wsgi_app, instance="api-1", ttls={"/items/{id}": 10.0},
                              patterns=("/items/{id}",), state_dir="/var/lib/trimtab")

Everything but reading the environ and writing the response is :class:`~.core.AgentCore`,
shared with :class:`~.middleware.TrimtabMiddleware`: the families on /metrics (names,
labels, buckets), the config document, the journal, the control API and the cache rules
are the same code. The request is described to the core as an ASGI-like scope built from
the environ (:func:`scope_of`).

Routes: a :class:`RouteSource` (the framework's route table) names a request by its
template before the app runs (the TTL decision needs it) and lists every template (so each
is configurable); without one, ``patterns`` or collapsed ids name it, as on the ASGI side.

Workers: ``gunicorn -w N`` forks N processes. With a state dir (``state_dir`` or
``$TRIMTAB_STATE_DIR``) they share config, journal, cache purges and /metrics as uvicorn
workers do. Without one, a request served by a multi-process server
(``wsgi.multiprocess``) fails loudly (500, logged) instead of letting workers diverge.

Rate limits: decided before the app with a blocking call to their store (a sync worker has
no event loop to hold; a Redis store is bounded by its timeout). A refusal is a 429; an
allowed answer, a cache hit included, carries the enforced limits' ``RateLimit-Policy`` and
``RateLimit`` headers (added to what the client gets, never to what the cache keeps).

The response cache's store: the in-memory one needs no event loop, so a sync worker looks
up and stores in-line; a remote one (:class:`~.redis_store.RedisStore`, shared by every
instance) runs on one event loop per worker process (:class:`StoreLoop`), each call bounded
by the cache's timeout, and a dead Redis sends requests to the origin as on the ASGI side.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from http import HTTPStatus
from typing import Any, Protocol, TypeVar

from .auth import TokenAuth
from .cache import MemoryStore, Store
from .control import PREFIX
from .core import AgentCore, Refusal, RequestRun, Scope, run_now
from .response_cache import Lookup, hit_headers, miss_headers
from .routes import UNMATCHED

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
# Set in the environ by a framework integration when the app caught a handler's exception
# itself (Flask, Django answer 500 without raising): counted as the ASGI side counts a raise.
FAILED_KEY = "trimtab.failed"
_T = TypeVar("_T")
MEMO_MAX = 4096  # (method, path) -> template memo, cleared when full (a flood stays bounded)


class RouteSource(Protocol):
    """A framework's route table as the WSGI middleware reads it."""

    def templates(self) -> list[str]:
        """Every route template the app declares (each becomes configurable)."""
        ...

    def match(self, environ: Environ) -> str | None:
        """The template of the route serving this request, None when none does (404)."""
        ...


class WSGIRefused(RuntimeError):
    """The agent refuses to serve (misconfiguration it must not hide)."""


class TrimtabWSGI(AgentCore):
    """Wraps a WSGI app; serves ``/metrics`` and ``/_trimtab/``; caches routes with a TTL."""

    def __init__(self, app: WSGIApp, instance: str = "api",
                 ttls: dict[str, float] | None = None, patterns: tuple[str, ...] = (),
                 max_routes: int = 200, store: Store | None = None,
                 metrics_path: str = "/metrics", tokens: TokenAuth | str | None = None,
                 state_dir: str | None = None, trace_capacity: int = 2048,
                 max_body: int = 64 * 1024, routes: RouteSource | None = None,
                 ratelimit_store: str | None = None, cache_timeout: float = 0.05) -> None:
        super().__init__(instance, ttls, patterns, max_routes, store, tokens, state_dir,
                         trace_capacity, max_body, cache_timeout,
                         templates=routes.templates() if routes is not None else (),
                         ratelimit_store=ratelimit_store)
        self.app = app
        self.metrics_path = metrics_path
        self.routes = routes
        self._memo: dict[tuple[str, str], str | None] = {}
        self._adopted = False
        # In-process stores finish at once; a remote one (Redis) needs an event loop.
        self.store_loop = None if isinstance(self.store, MemoryStore) else StoreLoop()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.state is None and environ.get("wsgi.multiprocess"):
            # Every path: a PATCH or a scrape answered by one worker would speak for one only.
            raise WSGIRefused(
                "trimtab: a multi-process WSGI server needs a shared state dir "
                "(state_dir= or TRIMTAB_STATE_DIR), or each worker would keep its own config")
        if not self._adopted:
            self._adopt_routes()
        path = environ.get("PATH_INFO", "") or "/"
        if path == self.metrics_path:
            return self._serve_metrics(environ, start_response)
        if path.startswith(PREFIX):
            return self._serve_control(environ, start_response)
        return self._handle(environ, start_response)

    def close(self) -> None:
        """Close a remote store and stop its event loop thread (a worker's exit, a test's end)."""
        if self.store_loop is not None:
            self.store_loop.stop(last=getattr(self.store, "close", None))

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a cache or control coroutine to completion from this (request) thread."""
        return run_now(coro) if self.store_loop is None else self.store_loop.run(coro)

    # ------------------------------------------------------------ routes

    def _adopt_routes(self) -> None:
        """At the first request, make every route the framework has by now configurable.

        An app factory registers blueprints after wrapping, and Django loads its URLconf
        lazily; by the first request the table is final (Flask refuses changes after it).
        """
        self._adopted = True
        if self.routes is not None:
            self.config.add_routes(self.routes.templates())

    def route_of(self, environ: Environ, scope: Scope) -> str:
        """The route name of a request, known before the app runs."""
        if self.routes is None:
            return self.resolver.resolve(scope)
        key = (scope["method"], scope["path"])
        if key in self._memo:
            template = self._memo[key]
        else:
            template = self.routes.match(environ)
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = template
        if template is None:
            return UNMATCHED
        return self.resolver.resolve_after({"route": _Template(template)})

    # ------------------------------------------------------------ one request

    def _handle(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        scope = scope_of(environ)
        run = self.begin(scope["method"], _traceparent(environ))
        route = UNMATCHED
        try:
            route = self.route_of(environ, scope)
            refusal, limit_headers = self.admit(run, route, scope)
            if refusal is not None:
                return self._refuse(run, route, scope, refusal, start_response)
            ttl = self.ttl(run, route) or 0.0
            found = None
            if ttl:
                found = self.run(self.cache.lookup(scope, route,
                                                   route in run.settings.allow_auth, run.span))
                if found.hit is not None:
                    return self._hit(run, route, scope, found, start_response, limit_headers)
            response = _Response(self, run, route, environ, scope, found, ttl, start_response,
                                 _str_headers(limit_headers))
            response.inner = self.app(environ, response.start_response)
            return response
        except Exception:
            self.failed(route)
            self.finish(run, route, 500, scope, 0)
            raise

    def _hit(self, run: RequestRun, route: str, scope: Scope, found: Lookup,
             start_response: StartResponse, limit_headers: list[tuple[bytes, bytes]]
             ) -> list[bytes]:
        assert found.hit is not None
        body = b"" if scope["method"] == "HEAD" else found.hit.body
        # The rate limits' headers are this request's, never part of the stored answer.
        start_response(_status_line(found.hit.status),
                       _str_headers([*hit_headers(found.hit), *limit_headers]))
        self.cached(run, route, "hit")
        self.finish(run, route, found.hit.status, scope, len(body))
        return [body]

    def _refuse(self, run: RequestRun, route: str, scope: Scope, refusal: Refusal,
                start_response: StartResponse) -> list[bytes]:
        headers = [*refusal.headers, (b"content-length", str(len(refusal.body)).encode())]
        start_response(_status_line(refusal.status), _str_headers(headers))
        body = b"" if scope["method"] == "HEAD" else refusal.body
        self.finish(run, route, refusal.status, scope, len(body))
        return [body]

    # ------------------------------------------------------------ agent endpoints

    def _serve_metrics(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        body, content_type = self.metrics_payload(environ.get("HTTP_ACCEPT", ""))
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def _serve_control(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        """The control API (async, shared with ASGI) run to completion in this thread."""
        scope = scope_of(environ)
        stream = environ.get("wsgi.input")
        out: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        async def receive() -> dict[str, Any]:
            # Bounded reads: the API counts and refuses past max_body itself.
            chunk = stream.read(64 * 1024) if stream is not None else b""
            return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"], out["headers"] = message["status"], message.get("headers", [])
            else:
                out["body"].append(message.get("body", b""))

        self.run(self.control(scope, receive, send))  # type: ignore[arg-type]
        start_response(_status_line(out["status"]), _str_headers(out["headers"]))
        return out["body"]


class _Response:
    """The app's response iterable, passed through; records the request when closed.

    WSGI servers iterate the body after ``__call__`` returned, then call ``close()``
    (PEP 3333): the request ends with its last byte, or at ``close()`` when the body was
    cut short. That is when it is timed, counted and traced, and a complete cacheable body
    stored.
    """

    def __init__(self, mw: TrimtabWSGI, run: RequestRun, route: str, environ: Environ,
                 scope: Scope, found: Lookup | None, ttl: float, server_start: StartResponse,
                 limit_headers: list[tuple[str, str]]) -> None:
        self.mw, self.run, self.route, self.scope = mw, run, route, scope
        self.limit_headers = limit_headers  # RateLimit headers of enforced limits, if any
        self.environ, self.server_start = environ, server_start
        # What the cache does with the response: (result, reason) to record, if it was asked.
        self.cache = (found.result, found.reason) if found is not None else None
        if found is not None and found.result == "bypass":
            found = None  # to the origin untouched: nothing marked, nothing kept
        self.found, self.ttl = found, ttl
        self.inner: Iterable[bytes] = ()
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.sent = 0
        self.complete = self.failed = self.closed = self.recorded = False
        self.keep: list[bytes] | None = [] if found is not None else None
        self.t0, self.wall = time.perf_counter(), time.time()

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        """Seen by the app as ``start_response``: notes the status, marks cache misses,
        adds the rate limits' headers (to what the client gets, not to what is cached)."""
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        if self.found is not None:
            marked = miss_headers(self.found.headers, self.headers)
            if marked is None:  # varies on a header the request repeats: neither kept nor hit
                self.keep, self.cache = None, ("bypass", "repeated_header")
            else:
                headers = _str_headers(marked)
        if self.limit_headers:
            headers = [*headers, *self.limit_headers]
        return self.server_start(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.inner:
                self._count(chunk)
                yield chunk
            self.complete = True
        except Exception:
            self.failed = True
            raise
        # Recorded as the last byte is handed over (close() follows; a server that forgets
        # to call it, against PEP 3333, must not leave the request in flight forever).
        self._record()

    def _count(self, chunk: bytes) -> None:
        if self.scope["method"] != "HEAD":
            self.sent += len(chunk)
        if self.keep is not None:
            self.keep.append(chunk)
            if self.sent > self.mw.cache.max_entry_bytes:
                self.keep = None  # a huge or endless body is passed through, never kept

    def close(self) -> None:
        """Close the app's iterable, then record the request if the body did not end."""
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self._record()

    def _record(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        mw, run, route = self.mw, self.run, self.route
        run.span.child("handler", self.wall, time.perf_counter() - self.t0)
        # The app raised through us, or the framework caught it and said so (its signal).
        if self.failed or self.environ.get(FAILED_KEY):
            mw.failed(route)
        if self.cache is not None:
            mw.cached(run, route, *self.cache)
        if self.complete and self.keep is not None and self.found is not None:
            put = mw.cache.store_call(self.found, self.status, self.headers,
                                      b"".join(self.keep), self.ttl)
            if put is not None and mw.store_loop is not None:
                mw.store_loop.submit(put)  # the client has its answer: store in the background
            elif put is not None:
                run_now(put)
        # Closed before the body was all sent and without an error: the client went away.
        status = self.status if self.complete or self.failed else 499
        mw.finish(run, route, status, self.scope, self.sent)


class StoreLoop:
    """One event loop in a daemon thread of this process, for a store that does real I/O.

    Request threads hand it the response cache's coroutines (each bounded by the cache's
    timeout) and wait for the result. Started at first use in the serving process: an app
    built before gunicorn forks (``--preload``) gets a loop per worker, not a dead thread.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started on first use."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=_serve_forever, args=(loop,),
                                                name="trimtab-wsgi-store", daemon=True)
                self._thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop()).result()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop without waiting (its failures are the cache's to count)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop())

    def stop(self, timeout: float = 5.0,
             last: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        """Let stores in flight finish (cancelled after ``timeout``), run ``last`` (closing
        the store), then stop the loop and its thread; harmless unstarted, or twice."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None or self._pid != os.getpid():
            return

        async def drain() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if last is not None:
                async with asyncio.timeout(timeout):  # not wait_for: it can drop a cancel (3.11)
                    await last()

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(2 * timeout + 1.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout)


def _serve_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


class _Template:
    """A framework's route as :meth:`RouteResolver.resolve_after` reads one."""

    __slots__ = ("path_format",)

    def __init__(self, template: str) -> None:
        self.path_format = template


def scope_of(environ: Environ) -> Scope:
    """An ASGI-shaped description of a WSGI request (what routes and cache keys read).

    Header names are lower-cased with dashes, as ASGI servers give them; the path is
    decoded as UTF-8 from the environ's latin-1 (PEP 3333) text. The header list is built
    on first use: most requests (no TTL, no rate limit) never read it.
    """
    raw_path = environ.get("PATH_INFO", "") or "/"
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    peer = environ.get("REMOTE_ADDR")
    return _Scope(environ, {
        "type": "http", "method": environ.get("REQUEST_METHOD", "GET"),
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "server": (environ.get("SERVER_NAME", ""), _port(environ.get("SERVER_PORT"))),
        "root_path": _text(environ.get("SCRIPT_NAME", "")), "path": _text(raw_path),
        "raw_path": (raw_uri.split("?", 1)[0] if raw_uri else raw_path).encode("latin-1"),
        "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
        # The peer as the server saw it (rate limits by ip); forwarded-for is not trusted.
        "client": (peer, _port(environ.get("REMOTE_PORT"))) if peer else None,
    })


class _Scope(dict[str, Any]):
    """A scope whose ``headers`` are made from the environ when first read."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Environ, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self._environ = environ

    def __missing__(self, key: str) -> Any:
        if key != "headers":
            raise KeyError(key)
        headers = self["headers"] = _headers(self._environ)
        return headers

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """``dict.get`` that builds the headers too (callers read ``scope.get("headers")``)."""
        return self[key] if key in self or key == "headers" else default


def _headers(environ: Environ) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower().encode("latin-1"),
                            str(value).encode("latin-1")))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").lower().encode("latin-1"),
                            str(value).encode("latin-1")))
    return headers


def _port(value: Any) -> int:
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else 0


def _text(wsgi_str: str) -> str:
    return wsgi_str.encode("latin-1").decode("utf-8", "replace")


def _traceparent(environ: Environ) -> bytes | None:
    value = environ.get("HTTP_TRACEPARENT")
    return value.encode("latin-1") if value is not None else None


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _str_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]



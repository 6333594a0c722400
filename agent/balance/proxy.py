"""The built-in balancer: an asyncio reverse proxy (served as an ASGI app by uvicorn).

- Policies: smooth weighted round robin (default), weighted least connections,
  consistent hashing on client IP (:mod:`.lb_policies`).
- Per-server state ready / drain / maint and weight, changed through the control
  API under ``/_trimtab/balancer`` (:mod:`.balance_control`); a change applies
  from the next request because picks read the live values.
- Optional active health checks (``health_path``) with rise/fall counts.
- W3C ``traceparent`` propagated; one span per proxied request (with a child for
  the upstream call), served from ``/_trimtab/traces`` (read token) in the same
  format as the agent middleware's traces (:mod:`.traces`).
- Rate limits (:mod:`.limits_builtin`) decided before a server is chosen: a refused
  request is answered 429 here and never forwarded; limits are read and changed
  under ``/_trimtab/balancer/limits`` (:mod:`.limits`).
- Metrics under ``/_trimtab/metrics`` (no token: the cockpit scrapes them), so
  they never collide with the proxied API's paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ..auth import READ, AuthError, TokenAuth
from ..journal import Journal
from ..metrics import RouteMetrics, RouteMetricsCollector
from ..params import BadNumber, is_uint, parse_finite, parse_uint, shown
from ..ratelimit import Backend as LimitStore
from ..ratelimit import send_429
from ..routes import collapse_ids
from ..traces import Tracer
from .control import ControlApp, error_body
from .limits import LimitsApi
from .limits_builtin import BuiltinLimits
from .policies import (
    STATES,
    BackendError,
    Server,
    ServerStatus,
    SmoothWeightedRoundRobin,
    check_state,
    check_weight,
    expected_share,
    make_policy,
)
from .pool import UpstreamError, UpstreamPool

__all__ = ["Balancer", "BuiltinBackend", "Server", "SmoothWeightedRoundRobin"]

HOP_HEADERS = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer",
               b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host",
               b"content-length", b"traceparent"}


class BalancerCollector(Collector):
    """Per-server families, built fresh on every scrape."""

    def __init__(self, balancer: Balancer) -> None:
        self._b = balancer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        servers = self._b.servers
        share = expected_share([s.status() for s in servers])
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "requests": CounterMetricFamily("trimtab_balancer_requests",
                                            "Requests sent to each server.", labels=["server"]),
            "errors": CounterMetricFamily("trimtab_balancer_errors",
                                          "Proxy errors (connect, timeout) per server.",
                                          labels=["server"]),
            "weight": GaugeMetricFamily("trimtab_balancer_server_weight", "Configured weight.",
                                        labels=["server"]),
            "expected": GaugeMetricFamily("trimtab_balancer_expected_share",
                                          "w / sum(w) over servers up and ready.",
                                          labels=["server"]),
            "flight": GaugeMetricFamily("trimtab_balancer_in_flight",
                                        "Requests in flight per server.", labels=["server"]),
            "up": GaugeMetricFamily("trimtab_balancer_server_up",
                                    "1 when the server passes health checks.", labels=["server"]),
            "state": GaugeMetricFamily("trimtab_balancer_server_state",
                                       "1 for the server's admin state.",
                                       labels=["server", "state"]),
        }
        for s in servers:
            fams["requests"].add_metric([s.name], s.requests)
            fams["errors"].add_metric([s.name], s.errors)
            fams["weight"].add_metric([s.name], s.weight)
            fams["expected"].add_metric([s.name], share[s.name])
            fams["flight"].add_metric([s.name], s.in_flight)
            fams["up"].add_metric([s.name], 1 if s.healthy else 0)
            for state in STATES:
                fams["state"].add_metric([s.name, state], 1 if s.state == state else 0)
        yield from fams.values()


class BuiltinBackend:
    """The control API's view of a :class:`Balancer` (in-process, on the event loop)."""

    target = "balancer"

    def __init__(self, balancer: Balancer) -> None:
        self._b = balancer
        self.policy = balancer.policy.name

    async def servers(self) -> list[ServerStatus]:
        """Live servers."""
        return [s.status() for s in self._b.servers]

    async def apply(self, server: str, field: str, value: Any) -> None:
        """Set weight or state; the next pick sees it."""
        target = next((s for s in self._b.servers if s.name == server), None)
        if target is None:
            raise BackendError(422, f"unknown server {server!r}")
        if field == "weight":
            target.weight = check_weight(value)
        else:
            target.state = check_state(value)

    async def reconcile(self) -> list[dict[str, Any]]:
        """Nothing to reconcile: the balancer's memory is the truth."""
        return []

    def extra(self) -> dict[str, Any]:
        """No back-end specific fields."""
        return {}


class Balancer:
    """ASGI reverse proxy in front of ``servers``."""

    def __init__(self, servers: Sequence[Server], timeout: float = 10.0, policy: str = "swrr",
                 health_path: str | None = None, health_interval: float = 1.0,
                 fall: int = 2, rise: int = 2, auth: TokenAuth | None = None,
                 journal: Journal | None = None, max_traces: int = 2048,
                 max_body: int = 16 * 1024 * 1024, limits: Mapping[str, Any] | None = None,
                 routes: Sequence[str] = (), ratelimit_store: str | LimitStore | None = None,
                 state_dir: str | None = None) -> None:
        """``limits``/``routes``/``ratelimit_store``/``state_dir``: see :mod:`.limits_builtin`."""
        self.servers = list(servers)
        if len({s.name for s in self.servers}) != len(self.servers) or not self.servers:
            raise ValueError("servers must be non-empty with unique names")
        self.policy = make_policy(policy)
        self.health_path, self.health_interval = health_path, health_interval
        self.fall, self.rise = fall, rise
        self._streak = {s.name: 0 for s in self.servers}  # +n passes / -n failures in a row
        self.latency = RouteMetrics(prefix="trimtab_balancer_upstream", route_label="server")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BalancerCollector(self))
        self.registry.register(RouteMetricsCollector(self.latency, "balancer", extras=False))
        self.ratelimits = BuiltinLimits(limits, routes, ratelimit_store, state_dir,
                                        self.registry)
        self.auth = auth if auth is not None else TokenAuth.from_env()
        self.control = ControlApp(BuiltinBackend(self), self.auth, journal or Journal(None),
                                  limits=LimitsApi(self.ratelimits))
        self.tracer = Tracer("balancer", max_traces)
        self.max_body = max_body  # bodies are buffered whole, so they are bounded
        self._pool = UpstreamPool(timeout=timeout)
        # Health probes are few; httpx is fine there and separate from the proxy's pool.
        self._client = httpx.AsyncClient(timeout=max(0.2, health_interval))
        self._health_task: asyncio.Task[None] | None = None

    @property
    def by_name(self) -> dict[str, Server]:
        """Servers keyed by name."""
        return {s.name: s for s in self.servers}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/_trimtab/metrics":
            accept = dict(scope.get("headers") or ()).get(b"accept", b"").decode("latin-1")
            encoder, ctype = choose_encoder(accept)
            await _respond(send, 200, encoder(self.registry), ctype.encode())
        elif path.startswith("/_trimtab/"):
            # The reserved prefix is never proxied: forwarding it would expose one back-end's
            # control API (config, journal, cache) through the public balancer port. The
            # token is checked before routing, so an anonymous caller learns no paths.
            try:
                self.auth.authenticate(scope["headers"], need=READ)
            except AuthError as err:
                await err.send(send)
                return
            if path.startswith("/_trimtab/balancer"):
                await self.control(scope, receive, send)
            elif path == "/_trimtab/traces":
                await self._traces(scope, send)
            else:
                body = error_body(404, "path", f"not a balancer endpoint: {shown(path, 200)}")
                await _respond(send, 404, json.dumps(body).encode(), b"application/json")
        else:
            # Limits first: a refused request costs no pick, no body read, no upstream call.
            verdict = await self.ratelimits.check(scope)
            if verdict is not None and verdict.refuse:
                await send_429(send, verdict)
                return
            client = (scope.get("client") or ("", 0))[0]
            server = self.policy.pick(self.servers, client)
            if server is None:
                await _respond(send, 503, b'{"error":"no server is ready"}', b"application/json")
                return
            await self._proxy(server, scope, receive, send,
                              verdict.headers if verdict is not None else [])

    async def _proxy(self, server: Server, scope: dict[str, Any], receive: Any, send: Any,
                     limit_headers: list[tuple[bytes, bytes]]) -> None:
        body = await _read_body(receive, self.max_body)
        if body is None:
            await _respond(send, 413, b'{"error":"request body too large"}', b"application/json")
            return
        incoming = next((v for k, v in scope["headers"] if k.lower() == b"traceparent"), None)
        span, token = self.tracer.begin(incoming)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_HEADERS]
        headers.append((b"traceparent", span.traceparent.encode()))
        query = scope["query_string"]
        target = scope.get("raw_path") or scope["path"].encode()
        target += b"?" + query if query else b""
        server.requests += 1
        server.in_flight += 1
        start, wall = time.perf_counter(), time.time()
        status = 502
        try:
            upstream = await self._pool.request(server.url, scope["method"],
                                                target.decode("latin-1"), headers, body)
            status = upstream.status
            await _respond(send, status, upstream.body, None,
                           [*upstream.headers, *limit_headers])
        except UpstreamError:
            server.errors += 1
            await _respond(send, 502, b'{"error":"upstream failed"}', b"application/json")
        finally:
            server.in_flight -= 1
            elapsed = time.perf_counter() - start
            self.latency.observe(server.name, scope["method"], status, elapsed, span.trace_id)
            span.child(f"upstream {server.name}", wall, elapsed, server=server.name,
                       url=server.url, status=status)
            self.tracer.end(span, token, route=collapse_ids(scope["path"]),
                            method=scope["method"], status=status, cache="off", seconds=elapsed)

    async def _traces(self, scope: dict[str, Any], send: Any) -> None:
        """``GET /_trimtab/traces?since=&min_ms=&route=&limit=``, as the agent serves them.

        The caller is authenticated (read) by :meth:`__call__` before it routes here.
        """
        query = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            since = parse_uint(query.get("since", ["0"])[0], "since")
            min_ms = parse_finite(query.get("min_ms", ["0"])[0], "min_ms")
            limit = parse_uint(query.get("limit", ["100"])[0], "limit")
            if not 1 <= limit <= 1000:
                raise BadNumber("limit", "must be between 1 and 1000")
        except BadNumber as err:
            body = json.dumps({**error_body(400, err.name, str(err)), "error": "bad_parameter"})
            await _respond(send, 400, body.encode(), b"application/json")
            return
        answer = self.tracer.query(since, min_ms, query.get("route", [None])[0], limit)
        await _respond(send, 200, json.dumps(answer).encode(), b"application/json")

    async def check_health(self) -> None:
        """One round of active checks; ``fall`` failures mark down, ``rise`` passes mark up."""
        assert self.health_path is not None
        results = await asyncio.gather(*(self._probe(s) for s in self.servers))
        for server, ok in zip(self.servers, results):
            streak = self._streak[server.name]
            streak = max(1, streak + 1) if ok else min(-1, streak - 1)
            self._streak[server.name] = streak
            if server.healthy and streak <= -self.fall:
                server.healthy = False
            elif not server.healthy and streak >= self.rise:
                server.healthy = True

    async def _probe(self, server: Server) -> bool:
        try:
            resp = await self._client.get(server.url + str(self.health_path))
            return 200 <= resp.status_code < 400
        except httpx.HTTPError:
            return False

    async def _health_loop(self) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(self.health_interval)

    async def start(self) -> None:
        """Start health checks (when configured) and the control API's sampler."""
        if self.health_path and self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop())
        await self.control.start()

    async def aclose(self) -> None:
        """Stop background work and close the upstream connection pool."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        await self.control.stop()
        await self._client.aclose()
        await self._pool.aclose()
        await self.ratelimits.aclose()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body (it is buffered), or None beyond ``limit`` bytes."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return body


async def _respond(send: Any, status: int, body: bytes, ctype: bytes | None,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    hdrs = list(headers or [])
    if ctype is not None:
        hdrs.append((b"content-type", ctype))
    if not any(k.lower() == b"content-length" for k, _ in hdrs):  # HEAD keeps the upstream's
        hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def parse_servers(specs: Sequence[str], weights: Sequence[str] = ()) -> list[Server]:
    """``NAME=URL`` specs plus optional ``NAME=W`` weights into servers (ValueError if bad)."""
    servers = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"server must be NAME=URL, got {spec!r}")
        servers.append(Server(name, url.rstrip("/")))
    by_name = {s.name: s for s in servers}
    for spec in weights:
        name, _, raw = spec.partition("=")
        if name not in by_name or not is_uint(raw, max_digits=4):
            raise ValueError(f"--weight must be NAME=W for a known server, got {spec!r}")
        by_name[name].weight = by_name[name].initial_weight = check_weight(int(raw))
    return servers


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m trimtab.agent.balance.proxy --port P [--policy ...] NAME=URL ...``.

    The same process as ``python -m trimtab.agent balance`` (one parser, one way to serve:
    bind guard, read timeouts, connection cap).
    """
    import sys

    from ..__main__ import main as agent_main

    agent_main(["balance", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()

"""The built-in balancer: an asyncio reverse proxy with smooth weighted round robin.

Served as an ASGI app by uvicorn. Its own metrics are under ``/_trimtab/metrics``
so they never collide with the API's paths it proxies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .metrics import RouteMetrics, RouteMetricsCollector

HOP_HEADERS = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer",
               b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host",
               b"content-length"}


@dataclass
class Server:
    name: str
    url: str
    weight: int = 1
    state: str = "ready"
    current: int = 0
    requests: int = 0
    errors: int = 0
    in_flight: int = 0


@dataclass
class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin over servers that are ready with weight > 0."""

    servers: list[Server] = field(default_factory=list)

    def pick(self) -> Server | None:
        live = [s for s in self.servers if s.state == "ready" and s.weight > 0]
        if not live:
            return None
        total = 0
        best = live[0]
        for server in live:
            server.current += server.weight
            total += server.weight
            if server.current > best.current:
                best = server
        best.current -= total
        return best

    def expected_share(self) -> dict[str, float]:
        live = [s for s in self.servers if s.state == "ready"]
        total = sum(s.weight for s in live)
        return {s.name: (s.weight / total if total and s in live else 0.0) for s in self.servers}


class BalancerCollector(Collector):
    def __init__(self, balancer: Balancer) -> None:
        self._b = balancer

    def collect(self) -> Iterator:
        servers = self._b.policy.servers
        share = self._b.policy.expected_share()
        reqs = CounterMetricFamily("trimtab_balancer_requests", "Requests sent to each server.",
                                   labels=["server"])
        errs = CounterMetricFamily("trimtab_balancer_errors", "Proxy errors per server.",
                                   labels=["server"])
        weight = GaugeMetricFamily("trimtab_balancer_server_weight", "Configured weight.",
                                   labels=["server"])
        expected = GaugeMetricFamily("trimtab_balancer_expected_share",
                                     "w / sum(w) over ready servers.", labels=["server"])
        flight = GaugeMetricFamily("trimtab_balancer_in_flight", "Requests in flight per server.",
                                   labels=["server"])
        for s in servers:
            reqs.add_metric([s.name], s.requests)
            errs.add_metric([s.name], s.errors)
            weight.add_metric([s.name], s.weight)
            expected.add_metric([s.name], share[s.name])
            flight.add_metric([s.name], s.in_flight)
        yield from (reqs, errs, weight, expected, flight)


class Balancer:
    """ASGI reverse proxy in front of ``servers``."""

    def __init__(self, servers: Sequence[Server], timeout: float = 10.0) -> None:
        self.policy = SmoothWeightedRoundRobin(list(servers))
        self.latency = RouteMetrics(prefix="trimtab_balancer_upstream", route_label="server")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BalancerCollector(self))
        self.registry.register(RouteMetricsCollector(self.latency, "balancer", extras=False))
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self._client = httpx.AsyncClient(timeout=timeout, limits=limits)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["path"] == "/_trimtab/metrics":
            accept = dict(scope.get("headers") or ()).get(b"accept", b"").decode("latin-1")
            encoder, ctype = choose_encoder(accept)
            await _respond(send, 200, encoder(self.registry), ctype.encode())
            return
        server = self.policy.pick()
        if server is None:
            await _respond(send, 503, b'{"error":"no server is ready"}', b"application/json")
            return
        await self._proxy(server, scope, receive, send)

    async def _proxy(self, server: Server, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_HEADERS]
        url = server.url + scope["path"] + (("?" + scope["query_string"].decode()) if scope["query_string"] else "")
        server.requests += 1
        server.in_flight += 1
        start = time.perf_counter()
        status = 502
        try:
            upstream = await self._client.request(scope["method"], url, headers=headers, content=body)
            status = upstream.status_code
            out = [(k.encode(), v.encode()) for k, v in upstream.headers.items()
                   if k.encode().lower() not in HOP_HEADERS]
            await _respond(send, status, upstream.content, None, out)
        except httpx.HTTPError:
            server.errors += 1
            await _respond(send, 502, b'{"error":"upstream failed"}', b"application/json")
        finally:
            server.in_flight -= 1
            self.latency.observe(server.name, scope["method"], status, time.perf_counter() - start)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Any, status: int, body: bytes, ctype: bytes | None,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    hdrs = list(headers or [])
    if ctype is not None:
        hdrs.append((b"content-type", ctype))
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})

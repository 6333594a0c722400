"""Traces: request spans with children, user spans, W3C traceparent, ring buffer, cursors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.traces import Tracer, current_traceparent, parse_traceparent, span

AUTH = {"authorization": "Bearer r-secret"}
INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def make_app(capacity: int = 2048) -> TrimtabMiddleware:
    async def work(request: Request) -> Response:
        with span("db.query", table="users"):
            await asyncio.sleep(float(request.query_params.get("s", "0")))
        # What user code would put on an outgoing call.
        return JSONResponse({"outgoing": current_traceparent()})

    app = Starlette(routes=[Route("/work", work), Route("/other", work)])
    return TrimtabMiddleware(app, instance="tr", tokens="bob:read:r-secret", state_dir=None,
                             trace_capacity=capacity, ttls={"/other": 60.0})


def run(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)

    return asyncio.run(main())


async def _traces(c: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    r = await c.get(f"/_trimtab/traces{query}", headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_request_span_with_children_and_propagation() -> None:
    async def body(c: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        out = (await c.get("/work", headers={"traceparent": INCOMING})).json()
        return out, (await _traces(c))["traces"][0]

    out, trace = run(make_app(), body)
    assert trace["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace["parent_id"] == "00f067aa0ba902b7"
    assert (trace["route"], trace["method"], trace["status"], trace["instance"],
            trace["cache"]) == ("/work", "GET", 200, "tr", "off")
    names = [child["name"] for child in trace["children"]]
    assert names == ["db.query", "handler"]
    assert trace["children"][0]["tags"] == {"table": "users"}
    # Outgoing calls continue the same trace with this request's span as parent.
    assert out["outgoing"] == f"00-{trace['trace_id']}-{trace['span_id']}-01"


def test_cache_lookup_is_a_child_span() -> None:
    async def body(c: httpx.AsyncClient) -> list[dict[str, Any]]:
        await c.get("/other")
        await c.get("/other")
        return (await _traces(c))["traces"]

    miss, hit = run(make_app(), body)
    assert [ch["name"] for ch in miss["children"]] == ["cache.lookup", "db.query", "handler"]
    assert miss["cache"] == "miss" and hit["cache"] == "hit"
    assert [ch["name"] for ch in hit["children"]] == ["cache.lookup"]


@pytest.mark.parametrize("header", [
    "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
])
def test_malformed_traceparent_starts_a_new_trace(header: str) -> None:
    async def body(c: httpx.AsyncClient) -> dict[str, Any]:
        await c.get("/work", headers={"traceparent": header})
        return (await _traces(c))["traces"][0]

    trace = run(make_app(), body)
    assert trace["parent_id"] is None and len(trace["trace_id"]) == 32
    assert trace["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert parse_traceparent(header) is None


def test_ring_buffer_is_bounded_and_reports_dropped() -> None:
    async def body(c: httpx.AsyncClient) -> dict[str, Any]:
        for _ in range(25):
            await c.get("/work")
        return await _traces(c, "?limit=1000")

    page = run(make_app(capacity=10), body)
    assert [t["cursor"] for t in page["traces"]] == list(range(16, 26))
    assert page["dropped"] == 15 and page["next"] == 25
    assert page["worker"] == os.getpid()


def test_cursor_pagination_and_filters() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        for i in range(6):
            await c.get("/work" if i % 2 else "/other", params={"s": "0.03" if i == 5 else "0"})
        first = await _traces(c, "?limit=4")
        assert [t["cursor"] for t in first["traces"]] == [1, 2, 3, 4] and first["next"] == 4
        rest = await _traces(c, f"?since={first['next']}&limit=4")
        assert [t["cursor"] for t in rest["traces"]] == [5, 6] and rest["next"] == 6
        assert (await _traces(c, "?since=6"))["traces"] == []
        routed = await _traces(c, "?route=/work")
        assert {t["route"] for t in routed["traces"]} == {"/work"} and routed["next"] == 6
        slow = await _traces(c, "?min_ms=25")
        assert [t["cursor"] for t in slow["traces"]] == [6]
        for bad in ("?limit=0", "?limit=abc", "?since=-1", "?min_ms=x", "?limit=5000"):
            r = await c.get(f"/_trimtab/traces{bad}", headers=AUTH)
            assert r.status_code == 400 and r.json()["error"] == "bad_parameter", bad

    run(make_app(), body)


def test_span_outside_a_request_is_a_no_op() -> None:
    tracer = Tracer("x", capacity=4)
    with tracer.span("idle"):
        pass
    assert tracer.query()["traces"] == [] and current_traceparent() is None

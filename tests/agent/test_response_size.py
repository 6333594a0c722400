"""Response size per route: ``trimtab_http_response_size_bytes{route,method}`` counts body bytes.

A real Starlette app behind the real middleware, in process: known body sizes
(pagination), a streamed body, HEAD (no body on the wire), a compressed body
(GZip inside the agent: the bytes that leave), a cache hit, and the worker merge.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from trimtab.agent.metrics import SIZE_BUCKETS
from trimtab.agent.middleware import TrimtabMiddleware

from tests.conftest import require_binary

TOKENS = "alice:write:w-secret"
NAME = "trimtab_http_response_size_bytes"
ITEM = b"item-0123456789\n"  # 16 bytes: a page of n items is 16 n bytes


async def _chunks() -> AsyncIterator[bytes]:
    for size in (1000, 2000, 3000):
        await asyncio.sleep(0)
        yield b"x" * size


def make_app(state_dir: str | None = None, **kwargs: Any) -> TrimtabMiddleware:
    """Routes with bodies of known size."""

    async def items(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "10"))
        return Response(ITEM * limit, media_type="text/plain")

    async def stream(request: Request) -> Response:
        return StreamingResponse(_chunks())

    async def empty(request: Request) -> Response:
        return Response(status_code=204)

    async def text(request: Request) -> Response:
        return PlainTextResponse("a" * 50_000)  # compresses to a few hundred bytes

    app = Starlette(routes=[Route("/items", items), Route("/stream", stream),
                            Route("/empty", empty), Route("/text", text)],
                    middleware=[Middleware(GZipMiddleware, minimum_size=500)])
    return TrimtabMiddleware(app, instance="t", tokens=TOKENS, state_dir=state_dir, **kwargs)


def run(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)

    return asyncio.run(main())


def histogram(text: str, route: str, method: str = "GET") -> dict[str, float]:
    """{"sum": .., "count": .., "<le>": cumulative} for one route's size histogram."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != NAME:
            continue
        for s in family.samples:
            if s.labels.get("route") != route or s.labels.get("method") != method:
                continue
            if s.name.endswith("_bucket"):
                out[s.labels["le"]] = s.value
            else:
                out[s.name.rsplit("_", 1)[-1]] = s.value
    return out


def exposition(app: TrimtabMiddleware) -> str:
    return prometheus_client.generate_latest(app.registry).decode()


def test_known_body_sizes_sum_and_fall_into_their_buckets() -> None:
    app = make_app()
    limits = (1, 10, 100, 1000)  # 16 B, 160 B, 1.6 KB, 16 KB: pagination moves the size

    async def body(c: httpx.AsyncClient) -> None:
        for limit in limits:
            r = await c.get(f"/items?limit={limit}", headers={"accept-encoding": "identity"})
            assert len(r.content) == 16 * limit

    run(app, body)
    h = histogram(exposition(app), "/items")
    assert h["count"] == 4
    assert h["sum"] == sum(16 * n for n in limits)
    assert h["+Inf"] == 4
    for bound in SIZE_BUCKETS:
        le = repr(float(bound))
        assert h[le] == sum(1 for n in limits if 16 * n <= bound), le


def test_streamed_body_counts_every_chunk_and_head_counts_zero() -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        plain = {"accept-encoding": "identity"}
        assert len((await c.get("/stream", headers=plain)).content) == 6000
        assert (await c.head("/items?limit=5")).status_code == 200
        assert (await c.get("/empty")).status_code == 204

    run(app, body)
    text = exposition(app)
    stream = histogram(text, "/stream")
    assert (stream["count"], stream["sum"]) == (1, 6000)
    head = histogram(text, "/items", "HEAD")
    # A HEAD response carries no body on the wire, whatever the app hands the server.
    assert (head["count"], head["sum"]) == (1, 0)
    empty = histogram(text, "/empty")
    assert (empty["count"], empty["sum"]) == (1, 0)


def test_compressed_body_counts_the_bytes_that_leave() -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> int:
        plain = await c.get("/text", headers={"accept-encoding": "identity"})
        packed = await c.get("/text", headers={"accept-encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        return len(plain.content)

    plain_size = run(app, body)
    h = histogram(exposition(app), "/text")
    assert h["count"] == 2
    assert plain_size == 50_000
    compressed = h["sum"] - plain_size
    assert 0 < compressed < 1000  # the gzip body, not the 50 KB it inflates to


def test_cache_hit_counts_the_cached_body() -> None:
    app = make_app(ttls={"/items": 30.0})

    async def body(c: httpx.AsyncClient) -> None:
        for _ in range(3):
            r = await c.get("/items?limit=7", headers={"accept-encoding": "identity"})
            assert len(r.content) == 112

    run(app, body)
    text = exposition(app)
    h = histogram(text, "/items")
    assert (h["count"], h["sum"]) == (3, 336)
    assert 'result="hit"' in text


def test_worker_share_merges_sizes(tmp_path: Path) -> None:
    app = make_app(state_dir=str(tmp_path))

    async def body(c: httpx.AsyncClient) -> str:
        await c.get("/items?limit=3", headers={"accept-encoding": "identity"})
        return (await c.get("/metrics")).text

    h = histogram(run(app, body), "/items")
    assert (h["count"], h["sum"]) == (1, 48)


def test_size_histogram_is_promtool_clean() -> None:
    promtool = require_binary("promtool")
    app = make_app()

    async def body(c: httpx.AsyncClient) -> str:
        for path in ("/items?limit=3", "/stream", "/empty", "/text", "/nope"):
            await c.get(path)
        await c.head("/items")
        return (await c.get("/metrics")).text

    text = run(app, body)
    assert f"# TYPE {NAME} histogram" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def uvicorn_factory() -> TrimtabMiddleware:
    """``uvicorn --factory tests.agent.test_response_size:uvicorn_factory``."""
    return make_app()

"""Instrumentation: routes, folding cap, exceptions, disconnects, streaming, exposition."""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from trimtab.agent.buckets import LATENCY_BUCKETS
from trimtab.agent.middleware import TrimtabMiddleware

from tests.conftest import require_binary
from tests.support import uvicorn_server

TOKENS = "alice:write:w-secret"


def run(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)

    return asyncio.run(main())


def samples(app: TrimtabMiddleware, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted labels: value} for one sample name, via the reference parser."""
    text = app.registry and __import__("prometheus_client").generate_latest(app.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def _slow_stream() -> AsyncIterator[bytes]:
    for i in range(3):
        await asyncio.sleep(0.05)
        yield f"chunk {i}\n".encode()


async def _long_stream() -> AsyncIterator[bytes]:
    for i in range(100_000):  # ~80 min: only a disconnect ends it within the test
        await asyncio.sleep(0.05)
        yield f"chunk {i}\n".encode()


async def _broken_stream() -> AsyncIterator[bytes]:
    yield b"first\n"
    raise RuntimeError("stream broke")


def make_app(**kwargs: Any) -> TrimtabMiddleware:
    """A Starlette app with the cases these tests need (also served by uvicorn below)."""

    async def user(request: Request) -> Response:
        return PlainTextResponse(f"user {request.path_params['uid']}")

    async def boom(request: Request) -> Response:
        raise ValueError("handler failed")

    async def stream(request: Request) -> Response:
        return StreamingResponse(_slow_stream())

    async def broken(request: Request) -> Response:
        return StreamingResponse(_broken_stream())

    async def long(request: Request) -> Response:
        return StreamingResponse(_long_stream())

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("s", "0.2")))
        return PlainTextResponse("slow")

    app = Starlette(routes=[Route("/users/{uid:int}", user), Route("/boom", boom),
                            Route("/stream", stream), Route("/broken", broken),
                            Route("/slow", slow),
                            Route("/long", long)])
    return TrimtabMiddleware(app, instance="t", tokens=TOKENS, state_dir=None, **kwargs)


def uvicorn_factory() -> TrimtabMiddleware:
    """``uvicorn --factory tests.agent.test_middleware:uvicorn_factory``."""
    return make_app()


def test_starlette_templates_and_unmatched_paths() -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        for uid in (1, 2, 3):
            assert (await c.get(f"/users/{uid}")).status_code == 200
        assert (await c.get("/wp-admin.php")).status_code == 404
        assert (await c.get("/users/abc")).status_code == 404  # int converter: no match

    run(app, body)
    reqs = samples(app, "trimtab_http_requests_total")
    assert reqs[(("method", "GET"), ("route", "/users/{uid}"), ("status", "200"))] == 3
    assert reqs[(("method", "GET"), ("route", "<unmatched>"), ("status", "404"))] == 2


@pytest.mark.parametrize("style", ["wrapped", "add_middleware"])
def test_fastapi_route_template_from_scope(style: str) -> None:
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    if style == "wrapped":
        app: Any = TrimtabMiddleware(api, instance="f", tokens=TOKENS, state_dir=None)
        mw = app
    else:
        api.add_middleware(TrimtabMiddleware, instance="f", tokens=TOKENS, state_dir=None)
        app = api

    async def body(c: httpx.AsyncClient) -> None:
        for item_id in ("a", "b", "some-slug"):  # not ids: only the template can group them
            assert (await c.get(f"/items/{item_id}")).status_code == 200

    run(app, body)
    if style == "add_middleware":
        mw = api.middleware_stack
        while not isinstance(mw, TrimtabMiddleware):
            mw = mw.app
    reqs = samples(mw, "trimtab_http_requests_total")
    assert reqs == {(("method", "GET"), ("route", "/items/{item_id}"), ("status", "200")): 3}


def test_plain_asgi_app_collapses_ids_and_uses_patterns() -> None:
    async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = TrimtabMiddleware(plain, tokens=TOKENS, state_dir=None, patterns=("/orgs/{org}",))
    paths = ["/orgs/acme", "/orgs/initech", "/a/123/b", "/a/9f1c2e4d5b6a7980/b",
             "/a/123e4567-e89b-12d3-a456-426614174000/b"]

    async def body(c: httpx.AsyncClient) -> None:
        for path in paths:
            await c.get(path)

    run(app, body)
    routes = {dict(k)["route"]: v for k, v in samples(app, "trimtab_http_requests_total").items()}
    # With patterns configured, anything else is unmatched (no id guessing).
    assert routes == {"/orgs/{org}": 2, "<unmatched>": 3}
    collapse = TrimtabMiddleware(plain, tokens=TOKENS, state_dir=None)
    run(collapse, body)
    routes = {dict(k)["route"] for k in samples(collapse, "trimtab_http_requests_total")}
    assert routes == {"/orgs/acme", "/orgs/initech", "/a/{id}/b"}


def test_flood_of_random_paths_grows_neither_memory_nor_metrics() -> None:
    async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = TrimtabMiddleware(plain, tokens=TOKENS, state_dir=None, max_routes=20)
    rng = random.Random(7)

    def flood(n: int) -> Callable[[httpx.AsyncClient], Awaitable[None]]:
        async def body(c: httpx.AsyncClient) -> None:
            for _ in range(n):
                word = "".join(rng.choice("abcdefghijklmnop") for _ in range(10))
                await c.request(rng.choice(["GET", "BREW", "PROPFIND"]), f"/{word}/x")
        return body

    def size() -> tuple[int, int]:
        text = __import__("prometheus_client").generate_latest(app.registry).decode()
        return len(text.splitlines()), len(app.resolver._known) + len(app.metrics.latency)

    run(app, flood(300))
    lines_300, state_300 = size()
    run(app, flood(1500))
    assert size() == (lines_300, state_300)
    assert len(app.resolver._known) == 20
    assert len(app.resolver._memo) <= 4096
    folded = samples(app, "trimtab_routes_folded_total")[()]
    assert folded == 1800 - samples_total_known(app)
    methods = {dict(k)["method"] for k in samples(app, "trimtab_http_requests_total")}
    assert methods <= {"GET", "OTHER"}


def samples_total_known(app: TrimtabMiddleware) -> float:
    return sum(v for k, v in samples(app, "trimtab_http_requests_total").items()
               if dict(k)["route"] != "<other>")


def test_exceptions_are_counted_with_status_500() -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        assert (await c.get("/boom")).status_code == 500
        broken = await c.get("/broken")  # raised after the 200 headers were sent
        assert broken.status_code == 200 and broken.text == "first\n"

    run(app, body)
    reqs = samples(app, "trimtab_http_requests_total")
    assert reqs[(("method", "GET"), ("route", "/boom"), ("status", "500"))] == 1
    assert reqs[(("method", "GET"), ("route", "/broken"), ("status", "200"))] == 1
    exc = samples(app, "trimtab_http_exceptions_total")
    assert exc == {(("route", "/boom"),): 1, (("route", "/broken"),): 1}
    assert samples(app, "trimtab_http_requests_in_flight") == {(): 0}


def test_disconnect_before_the_response_is_counted_as_499() -> None:
    app = make_app()
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def reader(scope: Any, rcv: Any, snd: Any) -> None:
            await rcv()  # sees the disconnect and gives up, as a handler reading a body would

        app.app = reader
        scope = {"type": "http", "method": "POST", "path": "/upload", "headers": [],
                 "query_string": b""}
        await app(scope, receive, send)

    asyncio.run(main())
    reqs = samples(app, "trimtab_http_requests_total")
    assert list(reqs.values()) == [1] and dict(next(iter(reqs)))["status"] == "499"


def test_streaming_duration_covers_the_whole_stream() -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/stream")
        assert r.text == "chunk 0\nchunk 1\nchunk 2\n"

    run(app, body)
    total = samples(app, "trimtab_http_request_duration_seconds_sum")
    assert total[(("method", "GET"), ("route", "/stream"))] >= 0.15  # three 50 ms sleeps


def test_buckets_locate_p99_within_25_percent() -> None:
    assert LATENCY_BUCKETS[0] <= 0.001 and LATENCY_BUCKETS[-1] >= 10.0
    for lo, hi in itertools.pairwise(LATENCY_BUCKETS):
        assert (hi - lo) / hi <= 0.25


def test_metrics_pass_promtool_and_openmetrics_has_trace_exemplars(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    app = make_app()

    async def body(c: httpx.AsyncClient) -> tuple[str, str, list[dict[str, Any]]]:
        for path in ("/users/1", "/boom", "/nope", "/stream"):
            await c.get(path)
        text = (await c.get("/metrics")).text
        om = await c.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        traces = (await c.get("/_trimtab/traces",
                              headers={"authorization": "Bearer w-secret"})).json()["traces"]
        return text, om.text, traces

    text, om, traces = run(app, body)
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert om.rstrip().endswith("# EOF")
    exemplars = [s.exemplar for f in om_parse(om) for s in f.samples if s.exemplar]
    trace_ids = {t["trace_id"] for t in traces}
    assert exemplars and {e.labels["trace_id"] for e in exemplars} <= trace_ids


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    with uvicorn_server("tests.agent.test_middleware:uvicorn_factory", tmp_path / "uvicorn.log",
                        factory=True) as url:
        yield url


def _scrape(url: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.name == "trimtab_http_requests_total":
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_real_server_client_disconnect_mid_stream_is_499(server: str) -> None:
    key = (("method", "GET"), ("route", "/long"), ("status", "499"))
    with httpx.Client(timeout=5.0) as client, client.stream("GET", f"{server}/long") as response:
        assert response.status_code == 200
        next(response.iter_raw())  # one chunk, then hang up (closing the stream)
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and key not in _scrape(server):
        time.sleep(0.1)
    assert _scrape(server)[key] == 1
    ok = httpx.get(f"{server}/stream", timeout=5.0)
    assert ok.status_code == 200 and _scrape(server)[
        (("method", "GET"), ("route", "/stream"), ("status", "200"))] == 1
    flight = httpx.get(f"{server}/metrics").text
    assert "trimtab_http_requests_in_flight 0.0" in flight


def test_worker_snapshots_sum_and_dead_workers_are_forgotten_at_start(tmp_path: Path) -> None:
    import json

    from trimtab.agent.metrics import RouteMetrics
    from trimtab.agent.worker_metrics import WorkerMetricsShare

    dead = tmp_path / "api-999999999.json"  # no such pid
    dead.write_text(json.dumps({"requests": [["/x", "GET", "200", 5]], "latency": [],
                                "cache": [], "exceptions": [], "cache_errors": [],
                                "folded": 0, "in_flight": 0}))
    mine, other = RouteMetrics(), RouteMetrics()
    share = WorkerMetricsShare(tmp_path, "api", mine)
    assert not dead.exists()
    peer = WorkerMetricsShare(tmp_path, "api", other)
    peer.path = tmp_path / "api-1.json"  # pid 1 always exists: a live peer worker
    mine.observe("/x", "GET", 200, 0.01, "a" * 32)
    other.observe("/x", "GET", 200, 0.02, "b" * 32)
    other.observe("/x", "GET", 500, 0.5, None)
    other.cache_result("/x", "hit")
    peer.publish()
    total = share.merged()
    assert total.requests == {("/x", "GET", "200"): 2, ("/x", "GET", "500"): 1}
    hist = total.latency[("/x", "GET")]
    assert hist.count == 3 and sum(hist.counts) == 3 and abs(hist.total - 0.53) < 1e-9
    assert {e[0] for e in hist.exemplars.values()} == {"a" * 32, "b" * 32}
    assert total.cache == {("/x", "hit"): 1}


@pytest.mark.parametrize("cache", [True, False])
def test_mounted_routes_keep_their_mount_prefix(cache: bool) -> None:
    from starlette.routing import Mount

    async def user(request: Request) -> Response:
        return PlainTextResponse("u")

    inner = [Route("/users/{uid}", user)]
    app = Starlette(routes=[Mount("/v1", routes=inner), Mount("/v2", routes=inner),
                            Route("/users/{uid}", user)])
    mw = TrimtabMiddleware(app, instance="m", tokens=TOKENS, state_dir=None)
    if not cache:
        mw.config.apply({"cache": {"enabled": False}}, None)

    async def body(c: httpx.AsyncClient) -> None:
        for path in ("/v1/users/1", "/v2/users/2", "/v2/users/3", "/users/4", "/v3/users/5"):
            await c.get(path)

    run(mw, body)
    routes = {dict(k)["route"]: v for k, v in samples(mw, "trimtab_http_requests_total").items()}
    assert routes == {"/v1/users/{uid}": 1, "/v2/users/{uid}": 2, "/users/{uid}": 1,
                      "<unmatched>": 1}
    assert "/v1/users/{uid}" in mw.config.known_routes


def test_add_middleware_on_fastapi_knows_the_routes_before_the_first_request() -> None:
    """``api.add_middleware(TrimtabMiddleware)``: a TTL for a templated route set as the very
    first request is accepted (the route table is found below Starlette's own middleware)."""
    import asyncio

    import httpx
    from fastapi import FastAPI
    from trimtab.agent.middleware import TrimtabMiddleware

    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    api.add_middleware(TrimtabMiddleware, instance="api-1", tokens="alice:write:w")
    auth = {"authorization": "Bearer w"}

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                     base_url="http://t") as c:
            etag = (await c.get("/_trimtab/config", headers=auth)).headers["etag"]
            r = await c.patch("/_trimtab/config", headers={**auth, "if-match": etag},
                              json={"routes": {"/items/{item_id}": {"ttl": 30}},
                                    "reason": "first thing after start"})
            assert r.status_code == 200, r.text
            first = await c.get("/items/7")
            second = await c.get("/items/7")
            assert (first.headers["x-trimtab-cache"], second.headers["x-trimtab-cache"]) == (
                "miss", "hit")

    asyncio.run(run())

"""The request-path guard in front of a real Starlette app, in process; metrics promtool-clean."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from trimtab.agent.ratelimit import ENFORCE, SHADOW, Limit
from trimtab.agent.ratelimit_control import RateLimits, make_backend
from trimtab.agent.ratelimit_store import FileBackend, MemoryBackend

from tests.conftest import require_binary


def guarded(limits: RateLimits, rules: tuple[Limit, ...], calls: list[str]) -> Any:
    async def item(request: Request) -> Response:
        calls.append(request.url.path)
        return PlainTextResponse("ok", headers={"x-app": "1"})

    app = Starlette(routes=[Route("/items/{i}", item)])

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        refused, send = await limits.guard(rules, "/items/{i}", scope, send)
        if not refused:
            await app(scope, receive, send)

    return asgi


def get(app: Any, n: int, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(f"/items/{i}", headers=headers) for i in range(n)]

    return asyncio.run(main())


def test_enforce_answers_429_without_calling_the_app() -> None:
    calls: list[str] = []
    limits = RateLimits(MemoryBackend())
    rule = Limit("per-ip", "/items/{i}", "ip", 0.001, 3, ENFORCE)
    replies = get(guarded(limits, (rule,), calls), 5)
    assert [r.status_code for r in replies] == [200, 200, 200, 429, 429]
    assert len(calls) == 3
    ok, refused = replies[0], replies[3]
    assert ok.headers["x-app"] == "1" and ok.headers["ratelimit"] == '"per-ip";r=2;t=1000'
    assert ok.headers["ratelimit-policy"] == '"per-ip";q=3;w=3000'
    assert refused.json() == {"error": "rate_limited", "limit": "per-ip", "retry_after": 1000}
    assert refused.headers["retry-after"] == "1000" and "x-app" not in refused.headers


def test_shadow_answers_exactly_as_without_limits() -> None:
    calls: list[str] = []
    shadow = RateLimits(MemoryBackend())
    rule = Limit("per-ip", "/items/{i}", "ip", 0.001, 1, SHADOW)
    with_shadow = get(guarded(shadow, (rule,), calls), 4)
    without = get(guarded(RateLimits(MemoryBackend()), (), calls), 4)
    assert [(r.status_code, r.headers.multi_items(), r.content) for r in with_shadow] == \
           [(r.status_code, r.headers.multi_items(), r.content) for r in without]
    assert len(calls) == 8
    assert shadow.metrics.decisions == {("/items/{i}", "per-ip", "allowed"): 1,
                                        ("/items/{i}", "per-ip", "shadow_limited"): 3}


def test_metrics_are_promtool_clean() -> None:
    registry = CollectorRegistry(auto_describe=False)
    limits = RateLimits(MemoryBackend(), registry)
    rules = (Limit("per-ip", "/items/{i}", "ip", 0.001, 1, ENFORCE),
             Limit("watch", "*", "global", 0.001, 1, SHADOW))
    get(guarded(limits, rules, []), 3)
    limits.metrics.store_error("redis")
    text = generate_latest(registry).decode()
    assert 'trimtab_ratelimit_requests_total{limit="per-ip",result="limited",route="/items/{i}"}' \
           ' 2.0' in text
    assert 'result="shadow_limited"' in text and 'trimtab_ratelimit_store_errors_total' in text
    check = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_store_choice(tmp_path: Any) -> None:
    assert make_backend(None, None, "api").name == "memory"
    assert isinstance(make_backend(None, str(tmp_path), "api 1"), FileBackend)
    assert make_backend("redis://127.0.0.1:1/0", None, "api").name == "redis"
    for bad in ("file", "mongodb://x", "memcached"):
        try:
            make_backend(bad, None, "api")
        except ValueError as err:
            assert "ratelimit store" in str(err)
        else:
            raise AssertionError(f"{bad} accepted")

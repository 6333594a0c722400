"""The request-path guard in front of a real Starlette app, in process; metrics promtool-clean."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
from pathlib import Path
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


def test_whole_seconds_stay_whole_whatever_the_clock_reads() -> None:
    # (16383.693775260499 + 1000) - 16383.693775260499 is 1000.0000000000018 in floats: the
    # headers said t=1001 for a 1,000 s refill (the test above failed 2 runs in 5 once).
    calls: list[str] = []
    limits = RateLimits(MemoryBackend(clock=lambda: 16383.693775260499))
    rule = Limit("per-ip", "/items/{i}", "ip", 0.001, 3, ENFORCE)
    replies = get(guarded(limits, (rule,), calls), 4)
    assert replies[0].headers["ratelimit"] == '"per-ip";r=2;t=1000'
    assert replies[3].headers["retry-after"] == "1000"


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


def _worker(directory: str) -> None:
    from trimtab.agent.ratelimit import RateLimitMetrics as Metrics
    from trimtab.agent.ratelimit_share import RateLimitShare as Share
    metrics = Metrics()
    for _ in range(3):
        metrics.count("/items/{i}", "per-ip", "limited")
    metrics.store_error("redis")
    Share(Path(directory), "api", metrics).publish()


def test_counters_of_every_worker_are_summed(tmp_path: Path) -> None:
    registry = CollectorRegistry(auto_describe=False)
    mine = RateLimits(MemoryBackend(), registry, tmp_path / "rl", "api")
    assert mine.share is not None
    mine.metrics.count("/items/{i}", "per-ip", "limited")
    mine.share.publish()  # this worker's first publish: snapshots of dead workers go
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_worker, args=(str(tmp_path / "rl"),))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    merged = mine.share.merged()
    assert merged.decisions == {("/items/{i}", "per-ip", "limited"): 4}
    assert merged.store_errors == {"redis": 1}
    text = generate_latest(registry).decode()
    assert 'result="limited",route="/items/{i}"} 4.0' in text

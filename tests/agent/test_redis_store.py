"""The Redis store against a real redis-server: sharing, SCAN invalidation, outages."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.procs import free_port, stop_all
from trimtab.agent.redis_store import RedisStore, glob_escape

from tests.conftest import require_binary

W = {"authorization": "Bearer w-secret"}


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("redis-server")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--enable-debug-command", "local",
                             "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, socket_timeout=1.0)
        deadline = time.monotonic() + 20.0
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_all([proc])


def make_app(url: str, instance: str, timeout: float = 0.05) -> TrimtabMiddleware:
    async def item(request: Request) -> Response:
        return PlainTextResponse(f"{request.url.path} from {instance}")

    app = Starlette(routes=[Route("/items/{i}", item), Route("/other/{i}", item)])
    return TrimtabMiddleware(app, instance=instance, tokens="alice:write:w-secret",
                             state_dir=None, store=RedisStore(url, timeout=timeout),
                             ttls={"/items/{i}": 60.0, "/other/{i}": 60.0},
                             cache_timeout=timeout)


def run(apps: list[TrimtabMiddleware],
        body: Callable[[list[httpx.AsyncClient]], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://api")
                   for a in apps]
        try:
            return await body(clients)
        finally:
            for client, app in zip(clients, apps, strict=True):
                await client.aclose()
                await app.cache.flush()
                await app.store.close()

    return asyncio.run(main())


async def _until_hit(c: httpx.AsyncClient, app: TrimtabMiddleware, path: str) -> httpx.Response:
    """The store is written in the background: poll until the entry is visible."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        await app.cache.flush()
        r = await c.get(path)
        if r.headers.get("x-trimtab-cache") == "hit":
            return r
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never became a hit")


def _errors(app: TrimtabMiddleware) -> dict[tuple[str, str], int]:
    return dict(app.metrics.cache_errors)


def test_entries_are_shared_between_instances(redis_url: str) -> None:
    a, b = make_app(redis_url, "api-1"), make_app(redis_url, "api-2")

    async def body(clients: list[httpx.AsyncClient]) -> None:
        first = await clients[0].get("/items/1")
        assert first.headers["x-trimtab-cache"] == "miss"
        await a.cache.flush()
        shared = await _until_hit(clients[1], b, "/items/1")
        assert shared.text == "/items/1 from api-1"

    run([a, b], body)
    ttl = redis.Redis.from_url(redis_url).pttl(
        next(iter(redis.Redis.from_url(redis_url).scan_iter("trimtab:*"))))
    assert 0 < ttl <= 60_000  # Redis expires entries by itself


def test_invalidate_route_uses_scan_never_keys(redis_url: str) -> None:
    app = make_app(redis_url, "api-1")
    raw = redis.Redis.from_url(redis_url)
    raw.config_resetstat()

    async def body(clients: list[httpx.AsyncClient]) -> None:
        c = clients[0]
        for i in range(30):
            await c.get(f"/items/{i}")
        await c.get("/other/1")
        await app.cache.flush()
        r = await c.post("/_trimtab/cache/invalidate", headers=W, json={"route": "/items/{i}"})
        assert r.status_code == 200 and r.json()["dropped"] == 30
        assert (await c.get("/items/3")).headers["x-trimtab-cache"] == "miss"
        assert (await c.get("/other/1")).headers["x-trimtab-cache"] == "hit"

    run([app], body)
    stats = raw.info("commandstats")
    assert "cmdstat_scan" in stats and "cmdstat_keys" not in stats


def test_glob_metacharacters_in_a_prefix_match_literally(redis_url: str) -> None:
    store_keys = ["a*b/1", "aXb/1", "a[b]/1"]
    raw = redis.Redis.from_url(redis_url)
    for key in store_keys:
        raw.set("trimtab:" + key, b"{}")

    async def main() -> int:
        store = RedisStore(redis_url)
        try:
            return await store.invalidate_prefix("a*b")
        finally:
            await store.close()

    assert asyncio.run(main()) == 1 and glob_escape("a*b") == "a\\*b"
    assert sorted(k.decode() for k in raw.scan_iter("trimtab:*")) == \
        ["trimtab:aXb/1", "trimtab:a[b]/1"]


def test_redis_down_goes_to_origin_and_counts_the_error(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = make_app(dead, "api-1")

    async def body(clients: list[httpx.AsyncClient]) -> None:
        for _ in range(3):
            r = await clients[0].get("/items/1")
            assert r.status_code == 200 and r.text == "/items/1 from api-1"

    run([app], body)
    errors = _errors(app)
    assert errors[("redis", "get")] == 1  # then the store is skipped during its cool-down
    assert errors[("redis", "get_skipped")] == 2
    assert app.metrics.cache[("/items/{i}", "error")] == 3


def test_redis_slow_is_bounded_by_the_timeout(redis_url: str) -> None:
    app = make_app(redis_url, "api-1", timeout=0.1)
    sleeper_done = threading.Event()

    def block_redis() -> None:
        try:
            redis.Redis.from_url(redis_url, socket_timeout=60).execute_command("DEBUG", "SLEEP",
                                                                               "4")
        except redis.RedisError:
            pass
        finally:
            sleeper_done.set()

    async def body(clients: list[httpx.AsyncClient]) -> None:
        thread = threading.Thread(target=block_redis, daemon=True)
        thread.start()
        await asyncio.sleep(0.3)  # let DEBUG SLEEP reach the server first
        r = await clients[0].get("/items/9")
        assert r.status_code == 200 and r.text == "/items/9 from api-1"
        # The answer came from the origin while Redis was still asleep.
        assert not sleeper_done.is_set()

    run([app], body)
    assert _errors(app)[("redis", "get")] == 1
    sleeper_done.wait(30)


def test_demo_app_uses_redis_from_the_environment(redis_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from trimtab.demo.app import build_app

    monkeypatch.setenv("TRIMTAB_REDIS_URL", redis_url)
    monkeypatch.delenv("TRIMTAB_STATE_DIR", raising=False)
    app = build_app("api-r", slowness=0.0, tokens="alice:write:w-secret")
    assert isinstance(app.store, RedisStore)

    async def body(clients: list[httpx.AsyncClient]) -> None:
        await clients[0].get("/products/7")
        await _until_hit(clients[0], app, "/products/7")
        health = (await clients[0].get("/_trimtab/config", headers=W)).json()
        assert health["cache"]["store"] == "redis"

    run([app], body)

"""GET /_trimtab/limits and the what-if endpoint in process (ASGI), and the 429 on WSGI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from trimtab.agent.flask import instrument
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.demo.app import build_app

from tests.agent.wsgi.apps import ITEMS_FLASK, flask_app

TOKENS = "alice:write:w-secret,bob:read:r-secret"
W = {"authorization": "Bearer w-secret"}
R = {"authorization": "Bearer r-secret"}
PRODUCTS = "/products/{id}"


def run(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app, client=("10.1.1.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)

    return asyncio.run(main())


@pytest.fixture()
def app() -> TrimtabMiddleware:
    return build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=None, seed=1)


async def set_limits(c: httpx.AsyncClient, limits: dict[str, Any]) -> None:
    etag = (await c.get("/_trimtab/config", headers=R)).headers["etag"]
    r = await c.patch("/_trimtab/config", json={"limits": limits},
                      headers={**W, "if-match": etag})
    assert r.status_code == 200, r.text


BAD_WHATIF = [
    ("", "route is required"),
    ("route=/products/{id}", "rate is required"),
    ("route=/products/{id}&rate=5", "burst is required"),
    ("route=/products/{id}&rate=0&burst=1", "rate must be"),
    ("route=/products/{id}&rate=nan&burst=1", "rate: must be a decimal"),
    ("route=/products/{id}&rate=1e999&burst=1", "rate: must be a finite"),
    ("route=/products/{id}&rate=5&burst=0", "burst must be"),
    ("route=/products/{id}&rate=5&burst=1.5", "burst: must be a non-negative integer"),
    ("route=/products/{id}&rate=5&burst=99999999", "burst must be"),
    ("route=/products/{id}&rate=5&burst=1&minutes=11", "minutes must be"),
    ("route=/products/{id}&rate=5&burst=1&key=cookie:x", "key must be"),
]


@pytest.mark.parametrize(("query", "message"), BAD_WHATIF)
def test_whatif_bad_parameters_are_400_naming_them(app: TrimtabMiddleware, query: str,
                                                   message: str) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        await c.get("/products/1")
        r = await c.get(f"/_trimtab/limits/whatif?{query}", headers=R)
        assert r.status_code == 400 and message in r.json()["message"], r.text

    run(app, body)


def test_whatif_unknown_route_and_unrecorded_key_are_404(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        await c.get("/products/1")
        r = await c.get("/_trimtab/limits/whatif?route=/nope&rate=1&burst=1", headers=R)
        assert r.status_code == 404 and r.json()["routes"] == [PRODUCTS]
        r = await c.get(f"/_trimtab/limits/whatif?route={PRODUCTS}&rate=1&burst=1"
                        "&key=header:x-api-key", headers=R)
        assert r.status_code == 404 and r.json()["keys"] == ["ip", "global"]
        assert (await c.get("/_trimtab/limits/nope", headers=R)).status_code == 404
        assert (await c.get("/_trimtab/limits/whatif")).status_code == 401

    run(app, body)


def test_limits_read_and_whatif_match_what_enforce_then_does(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        await set_limits(c, {"watch": {"route": PRODUCTS, "key": "header:x-api-key",
                                       "rate": 100, "burst": 100, "mode": "off"}})
        for i in range(30):
            await c.get(f"/products/{i}", headers={"x-api-key": "greedy" if i % 3 else "calm"})
        r = await c.get(f"/_trimtab/limits/whatif?route={PRODUCTS}&key=header:X-Api-Key"
                        "&rate=0.001&burst=5", headers=R)
        answer = r.json()
        assert r.status_code == 200, r.text
        assert (answer["requests"], answer["limited"], answer["keys"]) == (30, 20, 2)
        assert answer["top_limited"][0]["limited"] == 15 and "greedy" not in r.text
        await set_limits(c, {"watch": {"rate": 0.001, "burst": 5, "mode": "enforce"}})
        codes = [(await c.get(f"/products/{i}", headers={"x-api-key": k})).status_code
                 for i, k in enumerate(["greedy"] * 20 + ["calm"] * 10)]
        assert codes.count(429) == 20  # same load again: what the what-if predicted
        assert app.metrics.requests[(PRODUCTS, "GET", "429")] == 20  # under the route
        r = await c.get("/_trimtab/limits", headers=R)
        assert r.status_code == 200 and r.headers["etag"].startswith('"')
        read = r.json()
        assert read["store"] == "memory" and read["store_errors"] == 0
        assert read["limits"]["watch"]["mode"] == "enforce"
        assert read["limits"]["watch"]["counts"] == {
            PRODUCTS: {"allowed": 10, "limited": 20, "shadow_limited": 0}}

    run(app, body)


def test_wsgi_answers_429_before_the_view() -> None:
    app = flask_app()
    calls: list[int] = []
    app.before_request(lambda: calls.append(1) and None)
    agent = instrument(app, instance="wsgi-rl", tokens=TOKENS, state_dir=None)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://api") as c:
        etag = c.get("/_trimtab/config", headers=R).headers["etag"]
        r = c.patch("/_trimtab/config", headers={**W, "if-match": etag}, json={"limits": {
            "per-ip": {"route": ITEMS_FLASK, "key": "ip", "rate": 0.001, "burst": 2,
                       "mode": "enforce"}}})
        assert r.status_code == 200, r.text
        replies = [c.get(f"/items/{i}") for i in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 429, 429]
    assert len(calls) == 2
    assert replies[2].headers["retry-after"] == "1000"
    assert replies[2].headers["ratelimit"] == '"per-ip";r=0;t=2000'
    assert replies[2].json()["limit"] == "per-ip"
    assert agent.metrics.requests[(ITEMS_FLASK, "GET", "429")] == 2

"""The response cache (in-memory store): RFC 9111 safety, Vary, poisoning, invalidation, what-if."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from trimtab.agent.cache import CachedResponse, MemoryStore
from trimtab.agent.middleware import TrimtabMiddleware

from tests.conftest import require_binary

W = {"authorization": "Bearer w-secret"}
R = {"authorization": "Bearer r-secret"}
ROUTES = ["/plain", "/cookie", "/private", "/nostore", "/varyall", "/lang", "/host", "/public",
          "/missing", "/big", "/n/{n}"]


def make_app(store: MemoryStore | None = None, ttl: float = 60.0) -> TrimtabMiddleware:
    counter = {"calls": 0}

    async def handler(request: Request) -> Response:
        counter["calls"] += 1
        path, n = request.url.path, counter["calls"]
        headers: dict[str, str] = {}
        body = f"{path} #{n}"
        if path == "/cookie":
            headers["set-cookie"] = "sid=1"
        elif path == "/private":
            headers["cache-control"] = "private, max-age=60"
        elif path == "/nostore":
            headers["cache-control"] = "no-store"
        elif path == "/varyall":
            headers["vary"] = "*"
        elif path == "/lang":
            headers["vary"] = "Accept-Language"
            body = f"lang={request.headers.get('accept-language')} #{n}"
        elif path == "/host":
            # An app behind a proxy that builds links from X-Forwarded-Host: the classic poison.
            body = f"link=https://{request.headers.get('x-forwarded-host', 'good.example')}/ #{n}"
        elif path == "/public":
            headers["cache-control"] = "public, max-age=60"
        elif path == "/missing":
            return PlainTextResponse("nope", status_code=404)
        elif path == "/big":
            body = "x" * 2_000_000
        return PlainTextResponse(body, headers=headers)

    app = Starlette(routes=[Route(r, handler) for r in ROUTES])
    mw = TrimtabMiddleware(app, instance="c", tokens="alice:write:w-secret,bob:read:r-secret",
                           state_dir=None, store=store, ttls={r: ttl for r in ROUTES})
    mw.calls = counter
    return mw


def run(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await body(client)

    return asyncio.run(main())


async def twice(c: httpx.AsyncClient, path: str, **kw: Any) -> tuple[httpx.Response, ...]:
    first = await c.get(path, **kw)
    c.cookies.clear()  # httpx would replay a Set-Cookie, which is a different (bypass) case
    return first, await c.get(path, **kw)


def test_plain_response_is_stored_and_served() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        first, second = await twice(c, "/plain")
        assert first.headers["x-trimtab-cache"] == "miss"
        assert second.headers["x-trimtab-cache"] == "hit" and second.text == first.text
        assert "age" in second.headers
        head = await c.head("/plain")
        assert head.status_code == 200 and head.content == b""

    run(make_app(), body)


@pytest.mark.parametrize("path", ["/cookie", "/private", "/nostore", "/varyall", "/missing",
                                  "/big"])
def test_unsafe_or_unsuitable_responses_are_never_stored(path: str) -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        first, second = await twice(c, path)
        assert second.headers["x-trimtab-cache"] == "miss"
        assert first.content == second.content or path != "/big"

    run(app, body)
    assert app.calls["calls"] == 2  # the origin answered twice


@pytest.mark.parametrize("creds", [{"authorization": "Bearer user"}, {"cookie": "sid=2"}])
def test_credentials_bypass_the_shared_cache_unless_opted_in(creds: dict[str, str]) -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        await c.get("/public")  # stored, anonymous
        r = await c.get("/public", headers=creds)
        assert "x-trimtab-cache" not in r.headers  # bypass: origin, nothing stored or served
        etag = (await c.get("/_trimtab/config", headers=R)).headers["etag"]
        patch = {"routes": {"/public": {"allow_auth": True}, "/plain": {"allow_auth": True}}}
        ok = await c.patch("/_trimtab/config", headers={**W, "if-match": etag}, json=patch)
        assert ok.status_code == 200
        # Opted in: a `public` entry may be served to a request with credentials ...
        assert (await c.get("/public", headers=creds)).headers["x-trimtab-cache"] == "hit"
        # ... but a response without public/s-maxage is never stored for or served to one.
        await c.get("/plain")
        r1, r2 = await twice(c, "/plain", headers=creds)
        assert r1.headers["x-trimtab-cache"] == r2.headers["x-trimtab-cache"] == "miss"

    run(app, body)


def test_vary_keeps_variants_apart() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        en1, en2 = await twice(c, "/lang", headers={"accept-language": "en"})
        fr1, fr2 = await twice(c, "/lang", headers={"accept-language": "fr"})
        assert en1.text.startswith("lang=en") and en2.text == en1.text
        assert fr1.text.startswith("lang=fr") and fr2.text == fr1.text
        assert fr1.headers["x-trimtab-cache"] == "miss" and fr2.headers["x-trimtab-cache"] == "hit"

    run(make_app(), body)


def test_forwarded_host_cannot_poison_what_others_are_served() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        evil = await c.get("/host", headers={"x-forwarded-host": "evil.example"})
        assert "evil.example" in evil.text  # the attacker sees their own reflection ...
        again = await c.get("/host", headers={"x-forwarded-host": "evil.example"})
        assert again.headers["x-trimtab-cache"] == "hit"  # ... even from the cache
        for _ in range(2):
            victim = await c.get("/host")
            assert "good.example" in victim.text and "evil" not in victim.text
        other = await c.get("/host", headers={"x-original-url": "/admin"})
        assert "x-trimtab-cache" not in other.headers  # a rewrite header: not cached at all

    run(make_app(), body)


def test_key_is_the_raw_query_in_order_and_keeps_host() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        await c.get("/plain?a=1&b=2")
        assert (await c.get("/plain?a=1&b=2")).headers["x-trimtab-cache"] == "hit"
        # Reordered, repeated or differently encoded parameters are other requests: an app may
        # read the last value, the order, or request.url (see test_cache_differential.py).
        for other in ("/plain?b=2&a=1", "/plain?a=1&b=3", "/plain?a=%31&b=2", "/plain?a=1&b=2&"):
            assert (await c.get(other)).headers["x-trimtab-cache"] == "miss", other
        other_host = await c.get("/plain?a=1&b=2", headers={"host": "other.example"})
        assert other_host.headers["x-trimtab-cache"] == "miss"

    run(make_app(), body)


def test_entries_expire_after_their_ttl() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        await c.get("/plain")
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if (await c.get("/plain")).headers["x-trimtab-cache"] == "miss":
                return
            await asyncio.sleep(0.02)
        raise AssertionError("entry never expired")

    run(make_app(ttl=0.1), body)


def test_memory_store_stays_under_its_byte_bound() -> None:
    store = MemoryStore(max_bytes=10_000)

    async def fill() -> None:
        for i in range(100):
            now = time.time()
            await store.put(f"k{i}", CachedResponse(200, (), b"x" * 500, now, now + 60))
        assert store.bytes_used <= 10_000 and len(store) < 100
        assert await store.get("k99", time.time()) is not None  # newest kept
        assert await store.get("k0", time.time()) is None       # oldest evicted

    asyncio.run(fill())


def test_invalidate_by_route_and_prefix_is_journaled() -> None:
    app = make_app()

    async def body(c: httpx.AsyncClient) -> None:
        for path in ("/plain", "/public", "/n/1", "/n/2"):
            await c.get(path)
        r = await c.post("/_trimtab/cache/invalidate", headers=W,
                         json={"route": "/n/{n}", "reason": "bad data"})
        assert r.status_code == 200 and r.json()["dropped"] == 2
        assert (await c.get("/n/1")).headers["x-trimtab-cache"] == "miss"
        assert (await c.get("/plain")).headers["x-trimtab-cache"] == "hit"
        r = await c.post("/_trimtab/cache/invalidate", headers=W, json={"prefix": "/pl"})
        assert r.json()["dropped"] == 1
        assert (await c.get("/plain")).headers["x-trimtab-cache"] == "miss"
        for bad in ({"route": "/nope"}, {"route": "/plain", "prefix": "/"}, {}, {"x": 1}, [1]):
            r = await c.post("/_trimtab/cache/invalidate", headers=W, json=bad)
            assert r.status_code == 422, bad
        assert (await c.post("/_trimtab/cache/invalidate", headers=R,
                             json={"route": "/plain"})).status_code == 403
        assert (await c.get("/public")).headers["x-trimtab-cache"] == "hit"  # untouched

    run(app, body)
    entries = app.journal.list()
    assert [(e.what, e.result) for e in entries][:2] == [("cache.invalidate", "accepted")] * 2
    assert entries[0].reason == "bad data" and entries[0].new == {"route": "/n/{n}"}
    assert [e.result for e in entries[2:]] == ["refused"] * 6


def test_ttl_change_applies_live() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        etag = (await c.get("/_trimtab/config", headers=R)).headers["etag"]
        r = await c.patch("/_trimtab/config", headers={**W, "if-match": etag},
                          json={"routes": {"/plain": {"ttl": 0}}})
        assert r.status_code == 200
        first, second = await twice(c, "/plain")
        assert "x-trimtab-cache" not in second.headers and first.text != second.text
        etag = r.headers["etag"]
        r = await c.patch("/_trimtab/config", headers={**W, "if-match": etag},
                          json={"cache": {"enabled": False}})
        assert r.status_code == 200
        assert "x-trimtab-cache" not in (await c.get("/public")).headers

    run(make_app(), body)


def test_whatif_predicts_hit_ratio_per_ttl() -> None:
    app = make_app()
    # Synthetic traffic with known timing: key k re-read every 10 s, 6 times.
    for k in range(3):
        for t in range(6):
            app.whatif.observe("/n/{n}", f"/n/{k}", 1000.0 + 10.0 * t)

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/_trimtab/cache/whatif?route=/n/{n}&ttls=5,10,15,30,60", headers=R)
        assert r.status_code == 200, r.text
        got = {cand["ttl"]: cand["hit_ratio"] for cand in r.json()["candidates"]}
        # TTL 5 / 10: every read misses (10 s is not < 10 s). TTL 15: store, hit, store, hit ...
        # TTL 30: store then 2 hits, repeat. TTL 60: one store, 5 hits.
        assert got == {5: 0.0, 10: 0.0, 15: 0.5, 30: round(4 / 6, 4), 60: round(5 / 6, 4)}
        assert r.json()["requests"] == 18 and r.json()["current_ttl"] == 60.0
        assert (await c.get("/_trimtab/cache/whatif?route=/never", headers=R)).status_code == 404
        assert (await c.get("/_trimtab/cache/whatif", headers=R)).status_code == 400
        for bad in ("abc", "-1", "1e9"):
            r = await c.get(f"/_trimtab/cache/whatif?route=/n/{{n}}&ttls={bad}", headers=R)
            assert r.status_code == 400, bad

    run(app, body)


def test_whatif_learns_from_live_traffic_and_stays_bounded() -> None:
    app = make_app()
    app.whatif.max_keys = 50

    async def body(c: httpx.AsyncClient) -> None:
        for i in range(200):
            await c.get(f"/n/{i}")
        for _ in range(3):
            await c.get("/n/1")
        answer = (await c.get("/_trimtab/cache/whatif?route=/n/{n}", headers=R)).json()
        assert answer["requests"] == 203
        assert len(app.whatif._keys) <= 50

    run(app, body)


def test_ambiguous_requests_go_to_the_origin_and_are_counted_by_reason() -> None:
    app = make_app()
    xfh = "x-forwarded-host"

    async def body(c: httpx.AsyncClient) -> str:
        # The app reads the first copy (evil), a key built from the last one saw none at all.
        evil = await c.get("/host", headers=[(xfh, "evil.example"), (xfh, "")])
        assert "evil.example" in evil.text and "x-trimtab-cache" not in evil.headers
        victim = await c.get("/host")
        assert victim.headers["x-trimtab-cache"] == "miss" and "evil" not in victim.text
        assert "x-trimtab-cache" not in (await c.get("/host", headers={"x-host": "e"})).headers
        assert "x-trimtab-cache" not in (await c.get("/plain", headers={"X-Original-URL": "/a"})
                                         ).headers
        await c.get("/plain")
        ranged = await c.get("/plain", headers={"range": "bytes=0-3"})
        assert "x-trimtab-cache" not in ranged.headers
        await c.get("/plain", headers={"cookie": "sid=1"})
        await c.get("/lang", headers={"accept-language": "en"})  # stores the variant marker
        both = await c.get("/lang", headers=[("accept-language", "fr"), ("accept-language", "en")])
        assert both.text.startswith("lang=fr") and "x-trimtab-cache" not in both.headers
        return (await c.get("/metrics")).text

    text = run(app, body)
    counted = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "trimtab_cache_requests_total":
                counted[(s.labels["route"], s.labels["result"], s.labels.get("reason", ""))] = \
                    s.value
    assert counted == {
        ("/host", "bypass", "repeated_header"): 1, ("/host", "miss", ""): 1,
        ("/host", "bypass", "unkeyed_header"): 1, ("/plain", "bypass", "unkeyed_header"): 1,
        ("/plain", "miss", ""): 1, ("/plain", "bypass", "range"): 1,
        ("/plain", "bypass", "credentials"): 1, ("/lang", "miss", ""): 1,
        ("/lang", "bypass", "repeated_header"): 1}
    promtool = require_binary("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_bypass_reasons_add_up_in_the_cockpits_counters() -> None:
    """Several reason series for one route: the cockpit sums them (it used to keep the last)."""
    from trimtab.app.model.extract import extract
    from trimtab.collectors.exposition import parse

    app = make_app()

    async def body(c: httpx.AsyncClient) -> str:
        await c.get("/plain", headers={"range": "bytes=0-1"})
        await c.get("/plain", headers={"cookie": "a=1"})
        await c.get("/plain", headers={"x-host": "e"})
        await c.get("/plain")
        return (await c.get("/metrics")).text

    counters = extract(parse(run(app, body)))
    assert counters.cache[("/plain", "bypass")] == 3 and counters.cache[("/plain", "miss")] == 1


def test_credentials_and_repeats_are_found_whatever_the_header_name_case() -> None:
    from trimtab.agent.cache import bypass_reason, has_credentials, header_map

    assert has_credentials(header_map([(b"Authorization", b"Bearer x")]))
    assert has_credentials(header_map([(b"COOKIE", b"a=1"), (b"cookie", b"b=2")]))
    assert bypass_reason(header_map([(b"Cookie", b"a=1")]), allow_auth=False) == "credentials"
    twice = [(b"X-Forwarded-Host", b"evil"), (b"x-forwarded-host", b"good")]
    assert bypass_reason(header_map(twice), allow_auth=False) == "repeated_header"
    assert bypass_reason(header_map([(b"X-Original-URL", b"/a")]), False) == "unkeyed_header"
    assert bypass_reason(header_map([(b"host", b"api"), (b"x-forwarded-host", b"")]), False) \
        is None


def test_bypass_reasons_survive_the_worker_merge(tmp_path: Any) -> None:
    from trimtab.agent.metrics import RouteMetrics
    from trimtab.agent.worker_metrics import WorkerMetricsShare

    mine, other = RouteMetrics(), RouteMetrics()
    share = WorkerMetricsShare(tmp_path, "api", mine)
    peer = WorkerMetricsShare(tmp_path, "api", other)
    peer.path = tmp_path / "api-1.json"  # pid 1 always exists: a live peer worker
    mine.cache_result("/x", "bypass", "range")
    other.cache_result("/x", "bypass", "range")
    other.cache_result("/x", "bypass", "repeated_header")
    peer.publish()
    total = share.merged()
    assert total.cache == {("/x", "bypass"): 3}
    assert total.cache_bypass == {("/x", "range"): 2, ("/x", "repeated_header"): 1}

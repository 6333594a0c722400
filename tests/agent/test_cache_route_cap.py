"""The route cap folds unknown paths only: a route the framework names always gets its own slot.

An app whose route table the agent cannot see up front (here: a Starlette app behind a plain ASGI
wrapper, so there is neither ``app.routes`` nor ``scope["app"]`` when the agent runs) used to have
its cap filled first come, first served by junk paths, after which its real routes folded into
``<other>`` and lost their metrics, TTLs and what-if.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.routes import OTHER, RouteResolver


def wrapped_app() -> Any:
    async def item(request: Request) -> Response:
        return PlainTextResponse(f"item {request.path_params.get('item_id')}")

    inner = Starlette(routes=[Route("/items/{item_id}", item), Route("/health", item)])

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:  # hides the route table
        await inner(scope, receive, send)

    return wrapper


def routes_counted(app: TrimtabMiddleware) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(app.registry).decode()):
        for s in family.samples:
            if s.name == "trimtab_http_requests_total":
                out[s.labels["route"]] = out.get(s.labels["route"], 0) + s.value
    return out


def test_junk_paths_cannot_take_the_slots_of_framework_routes() -> None:
    app = TrimtabMiddleware(wrapped_app(), instance="cap", tokens="a:write:w-secret",
                            state_dir=None, max_routes=20)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            for i in range(50):  # the cap (20) is full of junk before any real route is seen
                assert (await c.get(f"/junk-{i}/x")).status_code == 404
            for item_id in ("a", "b", "some-slug"):
                assert (await c.get(f"/items/{item_id}")).status_code == 200
            await c.get("/health")
            for i in range(50, 60):
                await c.get(f"/junk-{i}/x")

    asyncio.run(main())
    counted = routes_counted(app)
    assert counted["/items/{item_id}"] == 3 and counted["/health"] == 1
    assert counted[OTHER] == 40  # 30 junk paths after the cap of 20, then 10 more
    assert len([r for r in counted if r.startswith("/junk-")]) == 20
    assert app.resolver.folded == 40


def test_resolver_declared_templates_never_fold() -> None:
    resolver = RouteResolver(max_routes=2)
    plain = [resolver.resolve({"type": "http", "method": "GET", "path": f"/p{i}"})
             for i in range(5)]
    assert plain == ["/p0", "/p1", OTHER, OTHER, OTHER]
    # A template the framework reports after routing is declared, whatever the cap says.
    route = Route("/late/{x}", lambda r: None)
    scope = {"type": "http", "method": "GET", "path": "/late/1", "route": route}
    assert resolver.resolve_after(scope) == "/late/{x}"
    assert resolver.folded == 3
    # Configured patterns are declared too, even more of them than the cap.
    many = RouteResolver(patterns=[f"/v{i}/{{id}}" for i in range(5)], max_routes=2)
    got = [many.resolve({"type": "http", "method": "GET", "path": f"/v{i}/7"}) for i in range(5)]
    assert got == [f"/v{i}/{{id}}" for i in range(5)] and many.folded == 0

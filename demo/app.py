"""The demo API: three routes of different cost, instrumented by the trimtab middleware."""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from trimtab.agent.auth import TokenAuth
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.redis_store import RedisStore

PRODUCTS_ROUTE = "/products/{id}"
SEARCH_ROUTE = "/search"
# The demo fleet's instances start with this limit (TRIMTAB_DEMO_LIMIT=1, set by DemoFleet):
# per API key on /search, in shadow mode, at a rate the load generator's greedy client
# exceeds on each instance (~5.6 requests/s of its ~17 at 100 requests/s) and the others
# (~0.6/s each) do not reach, even in a chance burst of ten. The margin holds on a host so
# loaded that the generator sends a third of its rate (greedy ~1.9/s per instance): a
# machine shared with a CI run did that to the earlier 2/s limit and a 5× greedy client.
# Shadow: counted as would-be-limited, nobody refused.
DEMO_LIMIT_NAME = "per-key-search"
DEMO_LIMIT = {"route": SEARCH_ROUTE, "key": "header:x-api-key", "rate": 1.0, "burst": 10,
              "mode": "shadow"}
DEMO_LIMIT_ENV = "TRIMTAB_DEMO_LIMIT"


def build_app(instance: str, slowness: float = 1.0, product_ttl: float = 10.0,
              seed: int | None = None, tokens: TokenAuth | str | None = None,
              state_dir: str | None = None, redis_url: str | None = None,
              demo_limit: bool | None = None, **middleware: Any) -> TrimtabMiddleware:
    """An API instance; ``slowness`` multiplies every handler's cost.

    ``tokens`` defaults to ``$TRIMTAB_TOKENS``, ``state_dir`` to
    ``$TRIMTAB_STATE_DIR`` and ``redis_url`` (a shared Redis response store
    instead of the in-memory LRU) to ``$TRIMTAB_REDIS_URL`` and ``demo_limit`` (start with
    :data:`DEMO_LIMIT` when the config has no limit yet) to ``$TRIMTAB_DEMO_LIMIT`` = ``1``;
    other keywords go to :class:`TrimtabMiddleware`.
    """
    rng = random.Random(seed)

    async def product(request: Request) -> Response:
        await asyncio.sleep(0.012 * slowness * rng.uniform(0.7, 1.4))
        pid = request.path_params["id"]
        body = json.dumps({"id": pid, "name": f"product {pid}", "instance": instance})
        return Response(body, media_type="application/json",
                        headers={"cache-control": "public, max-age=60"})

    async def search(request: Request) -> Response:
        # Log-normal with a heavy tail: median ~35 ms, p99 several hundred ms.
        await asyncio.sleep(min(2.0, 0.035 * slowness * rng.lognormvariate(0.0, 0.8)))
        query = request.query_params.get("q", "")
        return JSONResponse({"q": query, "hits": rng.randint(0, 50), "instance": instance})

    async def orders(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(0.02 * slowness * rng.uniform(0.6, 1.6))
        if rng.random() < 0.01:
            return JSONResponse({"error": "payment declined"}, status_code=502)
        return JSONResponse({"order": rng.randint(1, 10**9), "instance": instance}, status_code=201)

    app = Starlette(routes=[
        Route("/products/{id}", product, methods=["GET"]),
        Route("/search", search, methods=["GET"]),
        Route("/orders", orders, methods=["POST"]),
    ])
    redis_url = redis_url if redis_url is not None else os.environ.get("TRIMTAB_REDIS_URL")
    if redis_url and "store" not in middleware:
        middleware["store"] = RedisStore(redis_url)
    agent = TrimtabMiddleware(app, instance=instance, ttls={PRODUCTS_ROUTE: product_ttl},
                              tokens=tokens, state_dir=state_dir, **middleware)
    if demo_limit is None:
        demo_limit = os.environ.get(DEMO_LIMIT_ENV) == "1"
    if demo_limit and not agent.config.document()[0].get("limits"):
        # A starting value like the TTLs above, not an operator's change: set without a
        # journal entry, and only on a config that has no limit yet (a state dir kept from
        # an earlier run, where the operator may have removed it, is left as it is).
        agent.config.apply({"limits": {DEMO_LIMIT_NAME: dict(DEMO_LIMIT)}}, None)
    return agent


def app_from_env() -> TrimtabMiddleware:
    """Factory for ``uvicorn --factory trimtab.demo.app:app_from_env --workers N``.

    Reads ``TRIMTAB_INSTANCE`` (default ``api``), ``TRIMTAB_SLOWNESS``,
    ``TRIMTAB_PRODUCT_TTL``, plus the tokens and state dir variables.
    """
    return build_app(os.environ.get("TRIMTAB_INSTANCE", "api"),
                     slowness=float(os.environ.get("TRIMTAB_SLOWNESS", "1.0")),
                     product_ttl=float(os.environ.get("TRIMTAB_PRODUCT_TTL", "10.0")))

"""A Starlette app behind the agent, its rate limits in Redis, for uvicorn ``--factory``.

Configured by the environment: ``TRIMTAB_TOKENS``, ``TRIMTAB_STATE_DIR`` (optional),
``LIVE_REDIS`` (the Redis URL) and ``LIVE_REDIS_TIMEOUT`` (seconds the limiter waits on
Redis before failing open; a test that makes Redis slow sets it far above the delay, so
that a request really waits on Redis). Answers name the worker process that ran the app.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.ratelimit_store import RedisBackend


async def item(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid(), "item": request.path_params["i"]})


def app() -> TrimtabMiddleware:
    """The agent-wrapped app (uvicorn ``--factory``)."""
    inner = Starlette(routes=[Route("/items/{i}", item), Route("/other/{i}", item)])
    backend = RedisBackend(os.environ["LIVE_REDIS"],
                           timeout=float(os.environ.get("LIVE_REDIS_TIMEOUT", "0.05")))
    return TrimtabMiddleware(inner, instance=os.environ.get("LIVE_INSTANCE", "live-redis"),
                             ratelimit_store=backend)

"""A tiny Starlette app behind the agent for the live rate limit tests (uvicorn --factory).

Configured by the environment the test starts uvicorn with: ``TRIMTAB_TOKENS``,
``TRIMTAB_STATE_DIR`` (optional), ``TRIMTAB_RATELIMIT_STORE`` (optional) and
``LIVE_INSTANCE``. Answers name the worker process that ran the app.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware


async def item(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid(), "item": request.path_params["i"]})


def app() -> TrimtabMiddleware:
    """The agent-wrapped app (uvicorn ``--factory``)."""
    inner = Starlette(routes=[Route("/items/{i}", item), Route("/other/{i}", item)])
    return TrimtabMiddleware(inner, instance=os.environ.get("LIVE_INSTANCE", "live"))

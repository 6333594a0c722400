"""The routes every test app serves (Starlette handlers, so all frameworks share them)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def user(request: Request) -> Response:
    """Sleeps ``?ms=`` milliseconds (default 0) so the test knows the latency."""
    await asyncio.sleep(float(request.query_params.get("ms", "0")) / 1000)
    return JSONResponse({"id": request.path_params["uid"]})


async def fail(request: Request) -> Response:
    """Always 503 (a server error without a traceback in the log)."""
    return JSONResponse({"error": "unavailable"}, status_code=503)


ROUTES = [Route("/users/{uid}", user), Route("/fail", fail)]

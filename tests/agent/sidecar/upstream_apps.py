"""Upstreams for the sidecar tests that nginx cannot play: a slow one and a stream held open
until the test lets it go (the flag file named in ``STREAM_FLAG``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


async def slow(request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.query_params.get("s", "5")))
    return JSONResponse({"slow": True})


async def stream(request: Request) -> StreamingResponse:
    flag = Path(os.environ["STREAM_FLAG"])

    async def chunks():
        yield b"data: first\n\n"
        for _ in range(600):  # at most 60 s: the test lets it go at once
            if flag.exists():
                break
            await asyncio.sleep(0.1)
        yield b"data: second\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "headers": dict(request.headers)})


app = Starlette(routes=[Route("/slow", slow), Route("/stream", stream),
                        Route("/echo", echo, methods=["POST", "GET"])])

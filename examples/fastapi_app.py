"""A small FastAPI API instrumented by the trimtab agent (ASGI), served by uvicorn.

Run it (from the repository root; two workers sharing config and journal)::

    TRIMTAB_TOKENS=alice:write:change-me TRIMTAB_STATE_DIR=/tmp/trimtab-fastapi uvicorn --app-dir examples --workers 2 --port 8000 fastapi_app:app

Then ``curl 127.0.0.1:8000/items/7``, ``curl 127.0.0.1:8000/metrics`` and
``curl -H 'authorization: Bearer change-me' 127.0.0.1:8000/_trimtab/config``. Watch it
from the cockpit with a targets file naming ``http://127.0.0.1:8000/metrics``.

The agent's part is the last two lines: everything above is a plain FastAPI app. Routes are
named by FastAPI's own templates (``/items/{id}``), read from ``api.routes``.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, Response

api = FastAPI(title="shop")


@api.get("/items/{id}")
async def item(id: int, response: Response) -> dict[str, object]:  # noqa: A002 - the path names it
    await asyncio.sleep(0.01)  # a database read, say
    response.headers["Cache-Control"] = "public, max-age=60"  # cacheable by the agent
    return {"id": id, "name": f"item {id}", "worker": os.getpid()}


@api.get("/search")
async def search(q: str = "") -> dict[str, object]:
    return {"q": q, "hits": 3, "worker": os.getpid()}


@api.post("/orders", status_code=201)
async def order(items: list[int] | None = None) -> dict[str, object]:
    return {"order": 1, "items": items or []}


from trimtab.agent.middleware import TrimtabMiddleware  # noqa: E402 - the agent's part, kept apart

app = TrimtabMiddleware(api, instance="api-1")

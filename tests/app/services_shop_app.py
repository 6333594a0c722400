"""A second service for the service-dimension tests: FastAPI + prometheus-fastapi-instrumentator
serving the demo's route names (``/products/{id}``, ``/search``) with its own latencies."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Path
from prometheus_fastapi_instrumentator import Instrumentator

app = FastAPI()


@app.get("/products/{id}")  # the demo's name of the route, template and all
async def product(pid: str = Path(alias="id")) -> dict[str, str]:
    """Slower than the demo's product route (300 ms), so the two rows differ."""
    await asyncio.sleep(0.3)
    return {"id": pid, "service": "shop"}


@app.get("/search")
async def search(q: str = "") -> dict[str, str]:
    return {"q": q, "service": "shop"}


Instrumentator().instrument(app).expose(app)

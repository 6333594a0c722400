"""Per-request overhead of the trimtab middleware vs. the usual FastAPI instrumentations.

The same trivial FastAPI endpoint (``GET /items/{item_id}``) is called in process
(the ASGI callable, no HTTP, no httpx) as:

- bare FastAPI,
- trimtab middleware with the cache disabled (metrics + traces + route resolution),
- trimtab middleware with the cache enabled but no TTL on the route (adds what-if tracking),
- prometheus-fastapi-instrumentator,
- starlette_exporter.

Time is this process's CPU time (``time.process_time_ns``), so minutes when a
busy shared machine runs someone else are not charged to a variant. Rounds
are interleaved and each variant's figure is its fastest round (the least
disturbed); the median is printed too. The last line is the ratio of the
µs trimtab (cache disabled) adds to what the instrumentator adds: goal ≤ 0.5.

Run: ``.venv/bin/python benchmarks/agent_overhead.py [--requests 3000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from starlette_exporter import PrometheusMiddleware
from trimtab.agent.middleware import TrimtabMiddleware


def _fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return app


def _trimtab(cache: bool) -> FastAPI:
    app = _fastapi()
    app.add_middleware(TrimtabMiddleware, instance="bench", tokens="b:read:bench-token",
                       state_dir=None)
    app.state.trimtab_cache = cache
    return app


def _instrumentator() -> FastAPI:
    app = _fastapi()
    Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


def _starlette_exporter() -> FastAPI:
    app = _fastapi()
    app.add_middleware(PrometheusMiddleware, app_name="bench", group_paths=True)
    return app


VARIANTS: dict[str, Callable[[], FastAPI]] = {
    "bare": _fastapi,
    "trimtab (cache disabled)": lambda: _trimtab(cache=False),
    "trimtab (cache on, no TTL: what-if)": lambda: _trimtab(cache=True),
    "prometheus-fastapi-instrumentator": _instrumentator,
    "starlette_exporter": _starlette_exporter,
}


async def _one_round(app: Any, requests: int) -> float:
    """Mean CPU seconds per request over ``requests`` sequential in-process calls."""
    body_message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return body_message

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.process_time_ns()
    for i in range(requests):
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": f"/items/{i % 50}", "raw_path": f"/items/{i % 50}".encode(),
                 "root_path": "", "query_string": b"",
                 "headers": [(b"host", b"bench"), (b"user-agent", b"bench"),
                             (b"accept", b"*/*")],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
        await app(scope, receive, send)
    return (time.process_time_ns() - start) / 1e9 / requests


async def _disable_cache(app: FastAPI) -> None:
    """Build the middleware stack once, then switch the cache off through the config store."""
    await _one_round(app, 1)
    layer: Any = app.middleware_stack
    while not isinstance(layer, TrimtabMiddleware):
        layer = layer.app
    if not app.state.trimtab_cache:
        layer.config.apply({"cache": {"enabled": False}}, None)


async def main(requests: int, rounds: int) -> None:
    apps = {name: make() for name, make in VARIANTS.items()}
    for app in apps.values():
        if hasattr(app.state, "trimtab_cache"):
            await _disable_cache(app)
        await _one_round(app, 500)  # warm-up: imports, caches, lazy stacks
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            samples[name].append(await _one_round(app, requests))
    per_request = {name: min(values) * 1e6 for name, values in samples.items()}
    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    bare = per_request["bare"]
    print(f"{'FastAPI endpoint, variant':40s} {'µs/req':>8s} {'added':>7s} {'median added':>13s}")
    for name, micros in per_request.items():
        print(f"{name:40s} {micros:8.1f} {micros - bare:7.1f} "
              f"{medians[name] - medians['bare']:13.1f}")
    added_trimtab = per_request["trimtab (cache disabled)"] - bare
    added_instr = per_request["prometheus-fastapi-instrumentator"] - bare
    print(f"ratio trimtab / instrumentator (µs added per request): "
          f"{added_trimtab / added_instr:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))

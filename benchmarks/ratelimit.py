"""µs a rate limit adds per request: trimtab's limiter vs slowapi, memory and Redis storage.

The same trivial FastAPI endpoint (``GET /items/{item_id}``) is called in process
(the ASGI callable, no HTTP) as:

- bare FastAPI, and slowapi (its pure-ASGI middleware, a default limit on every route,
  keyed by client address) with memory storage and with a real ``redis-server``;
- the trimtab middleware without limits, and with one enforced per-IP limit on the
  route, memory store and the same Redis: with its default leases (a busy key spends
  tokens Redis granted in batches, see ``agent/ratelimit_store.py``), and with leases off
  (``TRIMTAB_RATELIMIT_LEASE=0``: one round trip per request, as slowapi makes).

Limits are far above the load, so every request is decided and allowed: the figure is
the cost of a decision. Before timing, a copy of each limited variant with a limit of 1
per second is driven to prove it really refuses (a limiter that decides nothing costs nothing).

Added time: slowapi's is its time minus bare FastAPI's; trimtab's limiter's is its time
minus trimtab without limits (the middleware's own metrics and traces are
``benchmarks/agent_overhead.py``'s subject). CPU time of this process, fastest of
interleaved rounds, as in ``agent_overhead.py``. Redis time spent in the server is not
this process's CPU time for either. The last line is the worse of the two ratios
(memory, Redis with the default leases) of trimtab's added µs to slowapi's: goal ≤ 0.5;
the line before it gives the Redis ratio with leases off too.

Run: ``.venv/bin/python benchmarks/ratelimit.py [--requests 3000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware
from slowapi.util import get_remote_address
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.procs import free_port, stop_all
from trimtab.agent.ratelimit_store import RedisBackend

ROUTE = "/items/{item_id}"


def _fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return app


def _slowapi(storage: str, per_second: int) -> FastAPI:
    app = _fastapi()
    app.state.limiter = Limiter(key_func=get_remote_address, storage_uri=storage,
                                default_limits=[f"{per_second}/second"])
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    app.add_middleware(SlowAPIASGIMiddleware)
    return app


def _trimtab(store: str | RedisBackend | None, rate: float | None) -> Any:
    layer = TrimtabMiddleware(_fastapi(), instance="bench", tokens="b:write:bench-token",
                              state_dir=None, ratelimit_store=store or "memory")
    layer.config.apply({"cache": {"enabled": False}}, None)
    if rate is not None:
        layer.config.apply({"limits": {"per-ip": {"route": ROUTE, "key": "ip", "rate": rate,
                                                  "burst": int(rate), "mode": "enforce"}}},
                           None)
    return layer


async def _one_round(app: Any, requests: int) -> tuple[float, dict[int, int]]:
    """Mean CPU seconds per request over ``requests`` sequential calls, and the statuses."""
    body_message = {"type": "http.request", "body": b"", "more_body": False}
    statuses: dict[int, int] = {}

    async def receive() -> dict[str, Any]:
        return body_message

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

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
    return (time.process_time_ns() - start) / 1e9 / requests, statuses


def _redis_server(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", directory],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                stop_all([proc])
                raise
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


async def _prove_they_limit(url: str) -> None:
    """Each limited variant, with a limit of 1 per second, refuses most of 200 requests.

    (slowapi keys a default limit by URL path as well as by client: 50 paths, 50 passes.)
    """
    checks: dict[str, Callable[[], Any]] = {
        "slowapi memory": lambda: _slowapi("memory://", 1),
        "slowapi redis": lambda: _slowapi(url, 1),
        "trimtab memory": lambda: _trimtab("memory", 1.0),
        "trimtab redis": lambda: _trimtab(url, 1.0),
        "trimtab redis, no lease": lambda: _trimtab(RedisBackend(url, lease=0.0), 1.0),
    }
    for name, make in checks.items():
        _, statuses = await _one_round(make(), 200)
        if statuses.get(429, 0) < 150:
            raise SystemExit(f"{name} did not limit: {statuses}")
    redis.Redis.from_url(url).flushall()


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _redis_server(tmp)
        try:
            await _prove_they_limit(url)
            huge = 10**6  # the largest rate and burst trimtab accepts
            apps = {
                "bare FastAPI": _fastapi(),
                "slowapi, memory": _slowapi("memory://", huge),
                "slowapi, Redis": _slowapi(url, huge),
                "trimtab, no limit": _trimtab(None, None),
                "trimtab limit, memory": _trimtab("memory", float(huge)),
                "trimtab limit, Redis": _trimtab(url, float(huge)),
                "trimtab limit, Redis, no lease": _trimtab(RedisBackend(url, lease=0.0),
                                                           float(huge)),
            }
            for app in apps.values():
                await _one_round(app, 300)  # warm-up: lazy stacks, connections
            samples: dict[str, list[float]] = {name: [] for name in apps}
            for _ in range(rounds):
                for name, app in apps.items():
                    seconds, statuses = await _one_round(app, requests)
                    if set(statuses) != {200}:
                        raise SystemExit(f"{name}: unexpected statuses {statuses}")
                    samples[name].append(seconds)
        finally:
            stop_all([proc])
    us = {name: min(values) * 1e6 for name, values in samples.items()}
    added = {
        "slowapi, memory": us["slowapi, memory"] - us["bare FastAPI"],
        "slowapi, Redis": us["slowapi, Redis"] - us["bare FastAPI"],
        "trimtab limit, memory": us["trimtab limit, memory"] - us["trimtab, no limit"],
        "trimtab limit, Redis": us["trimtab limit, Redis"] - us["trimtab, no limit"],
        "trimtab limit, Redis, no lease":
            us["trimtab limit, Redis, no lease"] - us["trimtab, no limit"],
    }
    print(f"{'variant':32s} {'µs/req':>8s} {'limiter adds':>13s}")
    for name, micros in us.items():
        extra = f"{added[name]:13.1f}" if name in added else ""
        print(f"{name:32s} {micros:8.1f} {extra}")
    memory = added["trimtab limit, memory"] / added["slowapi, memory"]
    remote = added["trimtab limit, Redis"] / added["slowapi, Redis"]
    exact = added["trimtab limit, Redis, no lease"] / added["slowapi, Redis"]
    print(f"ratio trimtab / slowapi, memory: {memory:.2f}; Redis: {remote:.2f} "
          f"(leases off: {exact:.2f})")
    print(f"ratio trimtab / slowapi (µs a limit adds per request, worse of the two): "
          f"{max(memory, remote):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))

"""The floor under ``benchmarks/ratelimit.py``'s Redis figure: what one Redis round trip costs.

In the setting of ``ratelimit.py`` (one request of the trimtab app with a memory limit, in
process, then one Redis call, over and over), the CPU µs each kind of call adds to the
request:

- a decision through the ASGI path (:meth:`RedisBackend.decide`, ``agent/resp.py``);
- a bare ``PING`` through ``agent/resp.py``, and through redis-py's blocking client (the
  cheapest round trip Python can make: one send, one blocking recv);
- a decision through the blocking path (:meth:`RedisBackend.decide_sync`, redis-py);
- ``await asyncio.sleep(0)`` (one event-loop turn, no I/O).

If a bare blocking ``PING`` adds about as much as a decision, the rest of a decision is
not the client's code but the round trip itself (system calls, the wake-up, caches the
wait lets go cold), which any Redis-backed limiter pays once per request, slowapi too.
CPU time of this process, fastest of interleaved rounds.

Run: ``.venv/bin/python benchmarks/ratelimit_floor.py [--requests 2000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
from trimtab.agent.procs import stop_all
from trimtab.agent.ratelimit_store import RedisBackend
from trimtab.agent.resp import RespClient

sys.path.insert(0, str(Path(__file__).parent))
from ratelimit import _one_round, _redis_server, _trimtab  # noqa: E402


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _redis_server(tmp)
        try:
            app = _trimtab("memory", 1e6)
            backend = RedisBackend(url)
            client = RespClient(url, 0.25)
            blocking = redis.Redis.from_url(url)

            async def nothing() -> None:
                pass

            async def decide() -> None:
                assert await backend.decide("k", 1e6, 10**6) is not None

            async def ping() -> None:
                await client.call(b"PING")

            async def blocking_ping() -> None:
                blocking.ping()

            async def decide_sync() -> None:
                assert backend.decide_sync("k", 1e6, 10**6) is not None

            async def turn() -> None:
                await asyncio.sleep(0)

            steps: dict[str, Callable[[], Awaitable[None]]] = {
                "request alone": nothing,
                "+ decide (agent/resp.py)": decide,
                "+ PING (agent/resp.py)": ping,
                "+ PING (redis-py, blocking)": blocking_ping,
                "+ decide_sync (redis-py)": decide_sync,
                "+ one loop turn": turn,
            }
            await _one_round(app, 300)
            for step in steps.values():
                for _ in range(300):
                    await step()
            samples: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(rounds):
                for name, step in steps.items():
                    start = time.process_time_ns()
                    for _ in range(requests):
                        await _one_round(app, 1)
                        await step()
                    samples[name].append((time.process_time_ns() - start) / requests / 1e3)
            await client.close()
            await backend.close()
            blocking.close()
        finally:
            stop_all([proc])
    base = min(samples["request alone"])
    print(f"{'step':30s} {'µs/req':>8s} {'adds':>7s}")
    for name, values in samples.items():
        print(f"{name:30s} {min(values):8.1f} {min(values) - base:+7.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))

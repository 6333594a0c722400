"""A process serving N fake-but-realistic /metrics targets, one loopback port each.

Each port serves expositions of a real TrimtabMiddleware registry fed with
observations. They are generated up front (VERSIONS per target, served in turn),
so the farm itself costs next to no CPU while the cockpit under test runs: the
counters climb for VERSIONS scrapes, then start again (a counter reset, which
the cockpit must handle anyway). Prints the ports as one line, then serves
until killed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys

from prometheus_client.exposition import generate_latest
from trimtab.agent.middleware import TrimtabMiddleware

ROUTES = [f"/svc/{i}/items/{{id}}" for i in range(10)]


async def _noop(scope, receive, send) -> None:  # pragma: no cover - never called
    raise AssertionError


def _feed(mw: TrimtabMiddleware, rng: random.Random) -> None:
    for route in ROUTES:
        for _ in range(rng.randint(1, 20)):
            mw.metrics.observe(route, "GET", 200 if rng.random() > 0.02 else 500,
                               rng.lognormvariate(-3.0, 0.7))


VERSIONS = 30


async def main(n: int) -> None:
    rng = random.Random(7)
    servers, ports = [], []
    for i in range(n):
        mw = TrimtabMiddleware(_noop, instance=f"farm-{i}")
        bodies = []
        for _ in range(VERSIONS):
            _feed(mw, rng)
            bodies.append(generate_latest(mw.registry))
        turn = itertools.count()

        async def handle(reader, writer, bodies=bodies, turn=turn) -> None:
            try:
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                body = bodies[next(turn) % VERSIONS]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    print(" ".join(map(str, ports)), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""Open-loop traffic generator for the demo: ~N requests/s with a Zipf-like product mix."""

from __future__ import annotations

import asyncio
import itertools
import random

import httpx


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    """Popularity of item k proportional to 1 / k**s: a few products get most views."""
    return [1.0 / (k ** s) for k in range(1, n + 1)]


class TrafficGenerator:
    """Sends a route mix at a fixed rate, never waiting for slow answers (open loop)."""

    def __init__(self, base_url: str, rps: float = 100.0, products: int = 500,
                 seed: int | None = None, max_in_flight: int = 200) -> None:
        self.base_url = base_url.rstrip("/")
        self.rps = rps
        self._rng = random.Random(seed)
        self._ids = list(range(1, products + 1))
        self._cum = list(itertools.accumulate(zipf_weights(products)))
        self._sem = asyncio.Semaphore(max_in_flight)
        self.sent = 0
        self.failed = 0

    def next_request(self) -> tuple[str, str]:
        roll = self._rng.random()
        if roll < 0.6:
            pid = self._rng.choices(self._ids, cum_weights=self._cum)[0]
            return "GET", f"/products/{pid}"
        if roll < 0.85:
            return "GET", f"/search?q=term{self._rng.randint(1, 40)}"
        return "POST", "/orders"

    async def run(self, duration: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
            tasks: set[asyncio.Task[None]] = set()
            for n in itertools.count():
                due = start + n / self.rps
                if duration is not None and due - start > duration:
                    break
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._sem.acquire()
                task = asyncio.create_task(self._one(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, client: httpx.AsyncClient) -> None:
        method, path = self.next_request()
        try:
            if method == "POST":
                await client.post(path, json={"sku": self._rng.randint(1, 999), "qty": 1})
            else:
                await client.get(path)
            self.sent += 1
        except httpx.HTTPError:
            self.failed += 1
        finally:
            self._sem.release()

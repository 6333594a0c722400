"""Open-loop traffic generator for the demo: ~N requests/s with a Zipf-like product mix.

Every request carries an API key (``x-api-key``): a few ordinary clients and one greedy
one sending :data:`GREEDY_FACTOR` times as many requests as each of the others, so the
demo's rate limit (:data:`trimtab.demo.app.DEMO_LIMIT`) has someone to catch.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import httpx

API_KEY_HEADER = "x-api-key"
CLIENT_KEYS = ("client-a", "client-b", "client-c", "client-d", "client-e")
GREEDY_KEY = "greedy-bot"
GREEDY_FACTOR = 10  # the greedy client sends this many times as much as each other client


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
        self._keys = [*CLIENT_KEYS, GREEDY_KEY]
        self._key_cum = list(itertools.accumulate([1.0] * len(CLIENT_KEYS) + [GREEDY_FACTOR]))
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

    def next_key(self) -> str:
        """The API key of the next request: the greedy client's twice as often as the five
        others' together."""
        return self._rng.choices(self._keys, cum_weights=self._key_cum)[0]

    async def _one(self, client: httpx.AsyncClient) -> None:
        method, path = self.next_request()
        headers = {API_KEY_HEADER: self.next_key()}
        try:
            if method == "POST":
                await client.post(path, json={"sku": self._rng.randint(1, 999), "qty": 1},
                                  headers=headers)
            else:
                await client.get(path, headers=headers)
            self.sent += 1
        except httpx.HTTPError:
            self.failed += 1
        finally:
            self._sem.release()

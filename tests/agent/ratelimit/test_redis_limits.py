"""The Redis rate limit store against a real redis-server: atomic, shared, fails open."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import redis
from trimtab.agent.procs import free_port
from trimtab.agent.ratelimit import ENFORCE, Limit, Limiter
from trimtab.agent.ratelimit_store import RedisBackend

from tests.agent.test_redis_store import redis_url  # noqa: F401  (the redis-server fixture)
from tests.support import poll


def hammer(url: str, key: str, rate: float, burst: int, n: int,
           log: list[tuple[float, float, bool]]) -> None:
    """``n`` decisions in a row from one instance (its own loop and connection)."""
    async def run() -> None:
        backend = RedisBackend(url, timeout=2.0)
        for _ in range(n):
            sent = time.time()
            decision = await backend.decide(key, rate, burst)
            assert decision is not None, "store failed during the test"
            log.append((sent, time.time(), decision.allowed))
        await backend.close()

    asyncio.run(run())


def run_instances(url: str, key: str, rate: float, burst: int, n: int, instances: int = 2
                  ) -> list[tuple[float, float, bool]]:
    log: list[tuple[float, float, bool]] = []
    threads = [threading.Thread(target=hammer, args=(url, key, rate, burst, n, log))
               for _ in range(instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(log) == n * instances
    return log


def test_two_instances_share_one_bucket_exactly(redis_url: str) -> None:  # noqa: F811
    # 1,600 decisions from 4 instances on one key; refill is one per 1,000 s: exactly the burst.
    log = run_instances(redis_url, "exact", 0.001, 250, 400, instances=4)
    assert sum(allowed for _, _, allowed in log) == 250


def test_allowed_equals_rate_times_t_plus_burst_within_one(redis_url: str) -> None:  # noqa: F811
    rate, burst = 40.0, 60  # tolerance 1.5 s: a pause shorter than that loses no refill
    log = run_instances(redis_url, "rated", rate, burst, 600)
    allowed = sum(ok for _, _, ok in log)
    start, end = min(s for s, _, _ in log), max(d for _, d, _ in log)
    first_done = min(d for _, d, _ in log)
    last_refused = max(s for s, _, ok in log if not ok)
    # GCRA: never more than burst + rate * elapsed; and a refusal sent at time s proves the
    # bucket was drained up to s (the first decision happened before first_done).
    assert allowed <= burst + rate * (end - start) + 1
    assert allowed >= burst + rate * (last_refused - first_done) - 1


def test_a_raised_limit_judges_a_drained_client_by_the_new_limit(redis_url: str) -> None:  # noqa: F811
    # Drained at 1 request/10 s (its stored time ~30 s ahead), then raised to 100/s: the
    # client must pass within a few new intervals, not after the old limit's 30 s. The
    # sync client shares the script, so both paths are checked.
    async def run() -> None:
        backend = RedisBackend(redis_url, timeout=2.0)
        try:
            seen = [(await backend.decide("raised", 0.1, 3)) for _ in range(5)]
            assert [d is not None and d.allowed for d in seen] == [True] * 3 + [False] * 2
            first = await backend.decide("raised", 100.0, 3)
            assert first is not None and first.retry_after <= 0.011, first
            await asyncio.sleep(0.05)
            later = await backend.decide("raised", 100.0, 3)
            assert later is not None and later.allowed, later
        finally:
            await backend.close()

    asyncio.run(run())
    sync = RedisBackend(redis_url, timeout=2.0)
    assert [sync.decide_sync("raised-sync", 0.1, 3).allowed for _ in range(4)] == \
        [True] * 3 + [False]
    sync.decide_sync("raised-sync", 100.0, 3)
    time.sleep(0.05)
    assert sync.decide_sync("raised-sync", 100.0, 3).allowed


def test_slow_redis_fails_open_within_the_timeout_then_skips(redis_url: str) -> None:  # noqa: F811
    admin = redis.Redis.from_url(redis_url)
    backend = RedisBackend(redis_url, timeout=0.05, cooldown=30.0)
    limiter = Limiter(backend)
    lim = Limit("g", "*", "global", 0.001, 1, ENFORCE)
    scope = {"type": "http", "client": ("1.2.3.4", 1), "headers": []}

    async def run() -> list[bool]:
        first = await limiter.check([lim], "/x", scope)
        assert first is not None and not first.refuse
        sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "1"))
        sleeper.start()
        await asyncio.sleep(0.2)  # let DEBUG SLEEP take Redis
        refused = []
        for _ in range(5):  # Redis is stuck: every answer lets the request through
            verdict = await limiter.check([lim], "/x", scope)
            assert verdict is not None
            refused.append(verdict.refuse)
        sleeper.join()
        await backend.close()
        return refused

    assert asyncio.run(run()) == [False] * 5
    _, errors = limiter.metrics.snapshot()
    assert errors == {"redis": 5}
    admin.close()


def test_unreachable_and_killed_redis_fail_open(redis_url: str) -> None:  # noqa: F811
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.05, cooldown=0.0)
    assert asyncio.run(dead.decide("k", 1.0, 1)) is None
    backend = RedisBackend(redis_url, timeout=0.05, cooldown=0.0)

    async def run() -> tuple[bool, object]:
        before = await backend.decide("k", 0.001, 1)
        try:
            redis.Redis.from_url(redis_url).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # SHUTDOWN answers by closing the connection
        after = await backend.decide("k", 0.001, 1)
        return bool(before and before.allowed), after

    allowed_before, after = asyncio.run(run())
    assert allowed_before and after is None


def test_sync_client_shares_the_bucket_with_async_instances(redis_url: str) -> None:  # noqa: F811
    sync = RedisBackend(redis_url, timeout=2.0)
    allowed = [bool(d and d.allowed) for d in (sync.decide_sync("mixed", 0.001, 3)
                                                for _ in range(2))]
    log = run_instances(redis_url, "mixed", 0.001, 3, 5, instances=1)
    assert allowed == [True, True] and sum(ok for _, _, ok in log) == 1
    asyncio.run(sync.close())


def test_loops_taking_turns_keep_one_connection_each(redis_url: str) -> None:  # noqa: F811
    # Two event loops deciding in turn through one backend (an embedding that runs a loop
    # per thread): each keeps its own connection; a new one per switch piled them up.
    admin = redis.Redis.from_url(redis_url)
    before = len(admin.client_list())
    backend = RedisBackend(redis_url, timeout=2.0, lease=0.0)
    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        allowed = [loops[i % 2].run_until_complete(backend.decide("turns", 0.001, 30))
                   for i in range(20)]
        assert all(d is not None and d.allowed for d in allowed)
        assert len(admin.client_list()) - before == 2
        for loop in loops:
            loop.run_until_complete(backend.close())
        assert poll(lambda: len(admin.client_list()), lambda n: n == before) == before
    finally:
        for loop in loops:
            loop.close()
        admin.close()


def test_a_loop_per_decision_leaves_no_connections_behind(redis_url: str) -> None:  # noqa: F811
    # asyncio.run per call (a script, a test, a sync wrapper): each run's loop is closed
    # after it; its client must not be kept (nor its connection open) by the backend.
    admin = redis.Redis.from_url(redis_url)
    before = len(admin.client_list())
    backend = RedisBackend(redis_url, timeout=2.0, lease=0.0)
    try:
        for _ in range(20):
            decision = asyncio.run(backend.decide("runs", 0.001, 30))
            assert decision is not None and decision.allowed
        gc.collect()
        assert len(backend._clients) <= 1
        assert poll(lambda: len(admin.client_list()) - before, lambda n: n <= 1) <= 1
    finally:
        admin.close()

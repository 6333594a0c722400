"""The ASGI agent decides rate limits without blocking its event loop (issue 18).

A real uvicorn worker whose limits live in a real redis-server: while Redis is stuck
(``DEBUG SLEEP`` from another client), a request on a limited route waits for it, and a
request of the same worker to a route without a limit, or a scrape of /metrics, is answered
in the meantime. The sync gate used to ask Redis with a blocking call on the event loop,
which stalled every other request of the worker until Redis answered.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from trimtab.agent.procs import stop_all, wait_http

from tests.agent.ratelimit.test_limits_live import TOKENS, R, W
from tests.agent.test_redis_store import redis_url  # noqa: F401  (the redis-server fixture)
from tests.support import start_uvicorn

APP = "tests.agent.ratelimit.redis_live_app:app"
ITEMS = "/items/{i}"


@contextmanager
def redis_agent(tmp_path: Path, url: str, timeout: float, name: str = "slow") -> Iterator[str]:
    """One uvicorn worker, limits in Redis; yields its base URL."""
    env = {**os.environ, "TRIMTAB_TOKENS": TOKENS, "LIVE_INSTANCE": name,
           "LIVE_REDIS": url, "LIVE_REDIS_TIMEOUT": str(timeout)}
    env.pop("TRIMTAB_STATE_DIR", None)
    env.pop("TRIMTAB_RATELIMIT_STORE", None)
    proc, port = start_uvicorn(APP, tmp_path / f"{name}.log", factory=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/metrics", proc)
        yield base
    finally:
        stop_all([proc])


def put_limits(base: str, limits: dict[str, object]) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        etag = c.get("/_trimtab/config", headers=R).headers["etag"]
        r = c.patch("/_trimtab/config", json={"limits": limits, "reason": "test"},
                    headers={**W, "if-match": etag})
        assert r.status_code == 200, r.text


def redis_is_asleep(url: str) -> bool:
    """True when Redis does not answer a PING within 0.2 s (DEBUG SLEEP holds it)."""
    probe = redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    try:
        probe.ping()
        return False
    except redis.TimeoutError:
        return True
    finally:
        probe.close()


@pytest.mark.slow
def test_a_slow_redis_stalls_only_the_request_it_decides(
        tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    # The limiter waits up to 60 s on Redis: the limited request really waits for it.
    with redis_agent(tmp_path, redis_url, timeout=60.0) as base:
        put_limits(base, {"per-ip": {"route": ITEMS, "key": "ip", "rate": 1000,
                                     "burst": 1000, "mode": "enforce"}})
        with httpx.Client(base_url=base, timeout=60) as c:  # Redis connected, all warm
            assert c.get("/items/0").status_code == 200
            assert c.get("/other/0").status_code == 200
        admin = redis.Redis.from_url(redis_url)
        events: list[str] = []
        lock = threading.Lock()

        def note(what: str) -> None:
            with lock:
                events.append(what)

        def sleep_redis() -> None:
            admin.execute_command("DEBUG", "SLEEP", "4")
            note("redis awake")

        def limited() -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                r = c.get("/items/1")
            note(f"limited {r.status_code}")

        sleeper = threading.Thread(target=sleep_redis)
        sleeper.start()
        while not redis_is_asleep(redis_url):  # bounded: DEBUG SLEEP starts at once
            time.sleep(0.02)
        waiting = threading.Thread(target=limited)
        waiting.start()
        time.sleep(0.3)  # the limited request reaches the worker and waits on Redis
        # The same worker, meanwhile: a route without a limit, and a scrape.
        with httpx.Client(base_url=base, timeout=120) as c:
            other = c.get("/other/2")
            note(f"unlimited {other.status_code}")
            scrape = c.get("/metrics")
            note(f"metrics {scrape.status_code}")
        waiting.join(timeout=180)
        sleeper.join(timeout=180)
        admin.close()
    assert "limited 200" in events, events
    # Answered while the limited request still waited on Redis, not after it.
    assert events.index("unlimited 200") < events.index("limited 200"), events
    assert events.index("metrics 200") < events.index("limited 200"), events

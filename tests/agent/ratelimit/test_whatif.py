"""The rate limit what-if: replaying recorded arrivals equals what the limiter decides."""

from __future__ import annotations

import random
from typing import Any

from trimtab.agent.ratelimit import ENFORCE, OFF, Limit, Limiter
from trimtab.agent.ratelimit_store import MemoryBackend
from trimtab.agent.ratelimit_whatif import ArrivalLog


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def scope(ip: str, api_key: str | None = None) -> dict[str, Any]:
    headers = [(b"x-api-key", api_key.encode())] if api_key else []
    return {"type": "http", "client": (ip, 1), "headers": headers}


def test_prediction_equals_what_enforce_decides_on_the_same_arrivals() -> None:
    rng = random.Random(7)
    clock = Clock()
    log = ArrivalLog()
    limiter = Limiter(MemoryBackend(clock=clock))
    proposed = Limit("p", "/search", "ip", 2.0, 5, ENFORCE)
    refused = 0
    for _ in range(3000):
        clock.now += rng.expovariate(20.0)
        ip = rng.choice(["10.0.0.1"] * 6 + ["10.0.0.2", "10.0.0.3", "10.0.0.4"])
        sc = scope(ip)
        log.observe("/search", (), sc, clock.now)
        verdict = limiter.check_sync([proposed], "/search", sc)
        refused += bool(verdict and verdict.refuse)
    answer = log.predict("/search", "ip", 2.0, 5, 600.0, clock.now)
    assert answer is not None
    assert answer["requests"] == 3000 and answer["limited"] == refused > 0
    assert answer["top_limited"][0]["key"] == "10.0.0.1" and answer["keys"] == 4
    glob = log.predict("/search", "global", 2.0, 5, 600.0, clock.now)
    assert glob is not None and glob["keys"] == 1 and glob["limited"] > refused


def test_header_keys_are_recorded_once_a_limit_names_them_and_shown_opaque() -> None:
    log = ArrivalLog()
    watch = (Limit("watch", "/search", "header:x-api-key", 1.0, 1, OFF),)
    log.observe("/search", (), scope("1.1.1.1", "sk_live_SECRET"), 1.0)
    assert log.predict("/search", "header:x-api-key", 1.0, 1, 60, 2.0) is None
    for t in range(10):
        log.observe("/search", watch, scope("1.1.1.1", "sk_live_SECRET"), 2.0 + t / 100)
    answer = log.predict("/search", "header:x-api-key", 1.0, 1, 60, 3.0)
    assert answer is not None and answer["limited"] == 9
    shown = answer["top_limited"][0]["key"]
    assert "SECRET" not in shown and shown.startswith("#") and len(shown) == 9
    assert log.specs("/search") == ["header:x-api-key", "ip", "global"]


def test_memory_is_bounded_in_count_and_age() -> None:
    log = ArrivalLog(max_arrivals=1000, window=60.0)
    for i in range(5000):
        log.observe(f"/r{i % 3}", (), scope(f"10.0.{i % 7}.1"), i / 100)
    assert len(log) == 1000
    log.observe("/r0", (), scope("10.9.9.9"), 200.0)  # 150 s later: all but this one are old
    answer = log.predict("/r0", "ip", 1.0, 1, 600, 200.0)  # a prediction trims by age first
    assert answer is not None and answer["requests"] == 1
    assert len(log) == 1 and log.routes() == ["/r0"]
    for i in range(256):  # so do arrivals, every 256
        log.observe("/r1", (), scope("10.0.0.1"), 300.0 + i / 1000)
    assert log.routes() == ["/r1"] and len(log) == 256

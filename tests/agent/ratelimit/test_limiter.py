"""GCRA decisions, client keys, modes and the 429 answer, in process (no store but memory)."""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import re
from pathlib import Path
from typing import Any

import pytest
from trimtab.agent.ratelimit import (
    ENFORCE,
    LIMITED,
    OFF,
    SHADOW,
    SHADOW_LIMITED,
    Limit,
    Limiter,
    client_key,
    gcra,
    storage_key,
)
from trimtab.agent.ratelimit_store import FileBackend, MemoryBackend


class FakeClock:
    """Time the test moves by hand, so counts are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scope(headers: dict[str, str] | None = None, ip: str = "10.0.0.1") -> dict[str, Any]:
    return {"type": "http", "client": (ip, 5000),
            "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"Bearer {part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_gcra_burst_then_one_per_interval() -> None:
    tat, allowed = None, 0
    for _ in range(20):  # all at one instant: exactly the burst passes
        decision, new = gcra(tat, 0.0, rate=2.0, burst=5)
        if decision.allowed:
            allowed, tat = allowed + 1, new
        else:
            assert new is None and decision.retry_after > 0
    assert allowed == 5
    decision, _ = gcra(tat, 0.49, 2.0, 5)
    assert not decision.allowed and decision.retry_after == pytest.approx(0.01)
    decision, _ = gcra(tat, 0.5, 2.0, 5)
    assert decision.allowed and decision.remaining == 0


@pytest.mark.parametrize("now", [0.0, 16383.693775260499, 1_765_000_000.123456])
def test_a_burst_at_one_instant_passes_whole_whatever_the_clock_reads(now: float) -> None:
    # At 16383.693775260499, (now + 1000) + 1000 - now is 2000.0000000000018 > 2000: the
    # third of a burst of 3 was refused, for 1.8e-12 s.
    tat, allowed = None, 0
    for _ in range(5):
        decision, new = gcra(tat, now, rate=0.001, burst=3)
        if decision.allowed:
            allowed, tat = allowed + 1, new
    assert allowed == 3


@pytest.mark.parametrize(("rate", "burst"), [(200_000.0, 1), (150_000.0, 5), (1e6, 1000),
                                           (100_000.0, 1)])
def test_high_rates_are_enforced_at_a_unix_clock(rate: float, burst: int, tmp_path: Path) -> None:
    # The float-noise allowance once grew with the clock (7 µs at time.time()), beyond a
    # 200,000/s limit's 5 µs interval: every request passed, in memory and in the file store.
    # At 1,000,000/s a unix clock's resolution (0.24 µs) makes each 1 µs step 0.95 µs, so
    # the burst comes out a few % larger: the limit still holds, not to the request.
    now = 1_765_000_000.123456
    most = burst if rate < 1e6 else int(burst * 1.06)
    tat, allowed = None, 0
    for _ in range(3 * burst + 10):
        decision, new = gcra(tat, now, rate, burst)
        if decision.allowed:
            allowed, tat = allowed + 1, new
    assert burst <= allowed <= most
    backend = FileBackend(tmp_path / "rl.bin", clock=lambda: now)
    allowed = sum(backend.decide_sync("k", rate, burst).allowed for _ in range(3 * burst + 10))
    assert burst <= allowed <= most


def test_raising_a_limit_frees_a_drained_client_within_one_new_interval() -> None:
    # Drained at 1 request/10 s (burst 3): the stored time is ~30 s ahead. Raised to 100/s,
    # the client must not wait out the old limit's 30 s: the new limit judges it.
    tat = None
    for _ in range(3):
        decision, tat = gcra(tat, 0.0, rate=0.1, burst=3)
        assert decision.allowed
    assert not gcra(tat, 0.0, 0.1, 3)[0].allowed
    # Its first request meets an empty bucket under the new limit (capped and stored)...
    refused, stored = gcra(tat, 0.0, rate=100.0, burst=3)
    assert not refused.allowed and refused.retry_after == pytest.approx(0.01)
    assert stored == pytest.approx(0.03)
    # ...which refills at the new rate: one interval later it passes.
    allowed, new = gcra(stored, 0.01, rate=100.0, burst=3)
    assert allowed.allowed and new == pytest.approx(0.04)


def test_a_constant_limit_is_unchanged_by_the_cap() -> None:
    # The cap is a no-op while the limit stays the same: every stored time is at most
    # burst intervals ahead.
    tat, allowed = None, 0
    for i in range(2000):
        decision, new = gcra(tat, i * 0.013, rate=50.0, burst=7)
        if decision.allowed:
            allowed, tat = allowed + 1, new
    assert allowed == 7 + int(50.0 * 1999 * 0.013)


def test_memory_backend_honours_a_raised_limit_within_one_interval() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    assert sum(backend.decide_sync("k", 0.1, 3).allowed for _ in range(10)) == 3
    clock.now += 0.02
    assert not backend.decide_sync("k", 100.0, 3).allowed  # empty under the new limit
    clock.now += 0.01
    assert backend.decide_sync("k", 100.0, 3).allowed  # not 30 s later


def test_memory_backend_allows_rate_times_t_plus_burst_exactly() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    allowed = 0
    for i in range(1000):  # one request every 10 ms from t=0 to t=9.99 s, rate 3/s, burst 4
        clock.now = 1000.0 + i / 100
        allowed += backend.decide_sync("k", 3.0, 4).allowed
    assert allowed == 4 + 29  # the burst, then one per 1/3 s: floor(3 * 9.99) refills


def test_memory_backend_stays_bounded_under_a_key_flood() -> None:
    clock = FakeClock()
    backend = MemoryBackend(max_keys=100, clock=clock)
    for i in range(10_000):
        backend.decide_sync(f"key-{i}", 1.0, 1)
    assert len(backend) == 100


@pytest.mark.parametrize(("spec", "headers", "ip", "expected"), [
    ("ip", {}, "192.0.2.7", "192.0.2.7"),
    ("global", {"x-api-key": "a"}, "1.1.1.1", ""),
    ("header:x-api-key", {"X-Api-Key": "secret-1"}, "1.1.1.1", "secret-1"),
    ("header:x-api-key", {}, "1.1.1.1", "-"),
    ("jwt:sub", {"authorization": jwt({"sub": "alice"})}, "1.1.1.1", "alice"),
    ("jwt:sub", {"authorization": jwt({"other": 1})}, "1.1.1.1", "-"),
    ("jwt:sub", {"authorization": "Bearer not.a-jwt!.x"}, "1.1.1.1", "-"),
    ("jwt:sub", {"authorization": "Basic YWxpY2U6cHc="}, "1.1.1.1", "-"),
    ("jwt:sub", {"authorization": jwt([1, 2])}, "1.1.1.1", "-"),  # type: ignore[arg-type]
    ("jwt:sub", {"authorization": "Bearer a." + base64.urlsafe_b64encode(
        b'{"sub": ' + b"9" * 5000 + b"}").decode().rstrip("=") + ".c"}, "1.1.1.1", "-"),
    ("jwt:sub", {"authorization": "Bearer a." + base64.urlsafe_b64encode(
        b"[" * 9000).decode().rstrip("=") + ".c"}, "1.1.1.1", "-"),
])
def test_client_key(spec: str, headers: dict[str, str], ip: str, expected: str) -> None:
    assert client_key(spec, scope(headers, ip)) == expected


def test_storage_key_never_holds_the_key_value() -> None:
    key = storage_key(Limit("per-key", "/a", "header:x-api-key", 1.0, 1), "sk_live_SECRET")
    assert "SECRET" not in key and key.startswith("per-key:")


def decide(limiter: Limiter, limits: list[Limit], route: str, sc: dict[str, Any]) -> Any:
    return asyncio.run(limiter.check(limits, route, sc))


def test_shadow_never_refuses_adds_nothing_and_counts_what_enforce_refuses() -> None:
    clock = FakeClock()
    shadow = Limiter(MemoryBackend(clock=clock))
    enforce = Limiter(MemoryBackend(clock=clock))
    lim = Limit("per-ip", "/search", "ip", 1.0, 3, SHADOW)
    refused = 0
    for i in range(50):
        sc = scope(ip=f"10.0.0.{i % 2}")
        verdict = decide(shadow, [lim], "/search", sc)
        assert not verdict.refuse and verdict.headers == []
        refused += decide(enforce, [Limit(**{**lim.__dict__, "mode": ENFORCE})], "/search",
                          sc).refuse
        clock.now += 0.1
    would = shadow.metrics.decisions[("/search", "per-ip", SHADOW_LIMITED)]
    assert would == refused == enforce.metrics.decisions[("/search", "per-ip", LIMITED)]
    assert refused > 0


def test_off_and_other_routes_are_not_evaluated() -> None:
    limiter = Limiter(MemoryBackend())
    limits = [Limit("a", "/a", "ip", 1.0, 1, OFF), Limit("b", "/b", "ip", 1.0, 1, ENFORCE)]
    for _ in range(5):
        assert decide(limiter, limits, "/a", scope()) is None
    assert limiter.metrics.decisions == {}


SF_ITEM = re.compile(r'"([A-Za-z0-9_.-]+)"((?:;[a-z]+=[0-9]+)+)')


def params(member: str) -> tuple[str, dict[str, int]]:
    match = SF_ITEM.fullmatch(member.strip())
    assert match, member
    pairs = (p.split("=") for p in match.group(2).split(";")[1:])
    return match.group(1), {k: int(v) for k, v in pairs}


def test_strictest_enforced_limit_answers_with_ietf_headers() -> None:
    clock = FakeClock()
    limiter = Limiter(MemoryBackend(clock=clock))
    limits = [Limit("route-wide", "*", "global", 100.0, 50, ENFORCE),
              Limit("per-key", "/search", "header:x-api-key", 0.5, 2, ENFORCE)]
    sc = scope({"x-api-key": "k1"})
    first = decide(limiter, limits, "/search", sc)
    assert not first.refuse
    headers = dict(first.headers)
    policy = [params(m) for m in headers[b"ratelimit-policy"].decode().split(",")]
    assert policy == [("route-wide", {"q": 50, "w": 1}), ("per-key", {"q": 2, "w": 4})]
    assert params(headers[b"ratelimit"].decode()) == ("per-key", {"r": 1, "t": 2})
    decide(limiter, limits, "/search", sc)
    third = decide(limiter, limits, "/search", sc)
    assert third.refuse and third.limit == "per-key" and third.retry_after == 2
    headers = dict(third.headers)
    assert headers[b"retry-after"] == b"2"
    assert params(headers[b"ratelimit"].decode()) == ("per-key", {"r": 0, "t": 4})
    # another key still passes: the per-key limit splits by key
    assert not decide(limiter, limits, "/search", scope({"x-api-key": "k2"})).refuse


def _hammer(path: str, n: int, out: Any) -> None:
    backend = FileBackend(path, slots=1024)
    out.put(sum(backend.decide_sync("one-key", 0.001, 300).allowed for _ in range(n)))


def test_file_backend_is_atomic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "rl.bin")
    FileBackend(path, slots=1024)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(path, 400, out)) for _ in range(3)]
    for p in procs:
        p.start()
    try:
        total = sum(out.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert total == 300  # 1,200 requests, burst 300, next refill in 1,000 s


def test_file_backend_stays_bounded_and_remembers_live_keys(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = FileBackend(tmp_path / "rl.bin", slots=64, clock=clock)
    assert backend.decide_sync("hot", 0.001, 1).allowed
    for i in range(30):
        backend.decide_sync(f"k{i}", 1000.0, 1)
        clock.now += 0.01  # those buckets are full again: their slots are free
    assert not backend.decide_sync("hot", 0.001, 1).allowed
    assert (tmp_path / "rl.bin").stat().st_size == 64 * 16

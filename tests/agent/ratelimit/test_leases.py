"""Redis leases: hot keys spend tokens taken in batches, refusals are remembered, never extra."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis
from trimtab.agent.ratelimit import Decision
from trimtab.agent.ratelimit_control import make_backend
from trimtab.agent.ratelimit_store import Leases, RedisBackend

from tests.agent.test_redis_store import redis_url  # noqa: F401  (the redis-server fixture)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def granted(leases: Leases, key: str, rate: float, burst: int, n: int,
            remaining: int = 50, reset: float = 0.5, sent: float | None = None,
            want: int | None = None) -> Decision:
    """What the backend does with Redis's answer of ``n`` tokens to an ask of ``want`` (by
    default ``n``, at least one) sent at ``sent``."""
    return leases.record(key, rate, burst, n,
                         Decision(n > 0, 0.0 if n else 0.25, reset, remaining),
                         leases.clock() if sent is None else sent,
                         max(1, n) if want is None else want)


def test_a_key_spending_its_lease_in_time_asks_for_twice_as_many_up_to_the_cap() -> None:
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    rate, burst = 1000.0, 1000  # cap: min(burst // 2, rate * 0.05) = 50
    sizes = []
    for _ in range(8):
        held, want = leases.take("k", rate, burst)
        assert held is None
        sizes.append(want)
        first = granted(leases, "k", rate, burst, want)
        assert first.allowed and first.remaining == 50 + want - 1
        for spent in range(want - 1):  # the rest of the lease, without Redis
            held, again = leases.take("k", rate, burst)
            assert held is not None and held.allowed and again == 0
            assert held.remaining == 50 + want - 2 - spent
        clock.now += 0.001
    assert sizes == [1, 2, 4, 8, 16, 32, 50, 50]


def test_a_lease_left_unspent_expires_and_the_next_asks_for_what_was_spent() -> None:
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    leases.take("k", 1000.0, 1000)
    granted(leases, "k", 1000.0, 1000, 16)
    for _ in range(5):
        assert leases.take("k", 1000.0, 1000)[0] is not None
    clock.now += 0.051  # 10 tokens left: dropped, never spent
    held, want = leases.take("k", 1000.0, 1000)
    assert held is None and want == 6


def test_a_refusal_is_remembered_until_its_retry_after_then_asks_for_one() -> None:
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    refused = granted(leases, "k", 1000.0, 1000, 0)
    assert not refused.allowed
    held, want = leases.take("k", 1000.0, 1000)
    assert held is not None and not held.allowed and want == 0
    assert held.retry_after == pytest.approx(0.25)
    clock.now += 0.2
    held, _ = leases.take("k", 1000.0, 1000)
    assert held is not None and held.retry_after == pytest.approx(0.05)
    clock.now += 0.051
    assert leases.take("k", 1000.0, 1000) == (None, 1)


def test_requests_arriving_while_a_batch_is_asked_for_ask_for_one_each() -> None:
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    leases.take("k", 1000.0, 1000)
    granted(leases, "k", 1000.0, 1000, 1)
    clock.now += 0.001
    assert leases.take("k", 1000.0, 1000) == (None, 2)  # the batch, in flight
    assert leases.take("k", 1000.0, 1000) == (None, 1)  # meanwhile: one each
    assert leases.take("k", 1000.0, 1000) == (None, 1)
    granted(leases, "k", 1000.0, 1000, 1)  # a single token's answer lands first:
    assert leases.take("k", 1000.0, 1000) == (None, 1)  # the batch is still being asked for
    granted(leases, "k", 1000.0, 1000, 2)
    held, _ = leases.take("k", 1000.0, 1000)
    assert held is not None and held.allowed
    granted(leases, "k", 1000.0, 1000, 1, want=1)  # a late single never shrinks the batch
    while (ask := leases.take("k", 1000.0, 1000))[0] is not None:
        pass
    assert ask == (None, 4)  # the batch of 2 spent in time: twice as many


def test_a_refusal_caused_by_our_own_concurrent_grant_spends_the_held_tokens() -> None:
    # Two asks in flight: the first took the bucket's last 4 tokens, so Redis refused the
    # second. The 3 held tokens are this instance's: the second request gets one of them.
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    granted(leases, "k", 1000.0, 1000, 4, remaining=0)
    second = granted(leases, "k", 1000.0, 1000, 0, remaining=0)
    assert second.allowed and second.remaining == 2
    assert [leases.take("k", 1000.0, 1000)[0].allowed for _ in range(2)] == [True, True]
    refused = granted(leases, "k", 1000.0, 1000, 0)  # nothing held now: a real refusal
    assert not refused.allowed


def test_lease_and_refusal_times_count_from_when_the_ask_was_sent() -> None:
    # A slow answer (200 ms): the lease expires 50 ms after the ask, not after the answer,
    # and a 250 ms refusal ends 250 ms after the ask.
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    sent = clock.now
    clock.now += 0.2
    granted(leases, "k", 1000.0, 1000, 8, sent=sent)
    assert leases.take("k", 1000.0, 1000)[0] is None  # already past sent + 50 ms
    sent = clock.now
    clock.now += 0.2
    granted(leases, "r", 1000.0, 1000, 0, sent=sent)
    clock.now += 0.051
    assert leases.take("r", 1000.0, 1000) == (None, 1)


def test_a_changed_limit_finds_no_lease_and_no_refusal() -> None:
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    granted(leases, "k", 1000.0, 1000, 8)
    assert leases.take("k", 2000.0, 1000) == (None, 1)
    granted(leases, "r", 1000.0, 1000, 0)
    assert leases.take("r", 1000.0, 999) == (None, 1)


@pytest.mark.parametrize(("rate", "burst", "cap"), [
    (39.0, 1000, 1),  # rate * lease under 2: every request asks Redis
    (0.001, 500, 1),
    (1000.0, 1, 1),  # burst 1: half of it is nothing
    (1000.0, 9, 4),
    (100.0, 1000, 5),
])
def test_a_lease_never_holds_more_than_rate_times_lease_or_half_the_burst(
        rate: float, burst: int, cap: int) -> None:
    clock = Clock()
    leases = Leases(0.05, clock=clock)
    wants = []
    for _ in range(300):  # a busy key: every ask answered in full before the next request
        held, want = leases.take("k", rate, burst)
        if held is None:
            wants.append(want)
            granted(leases, "k", rate, burst, want)
    assert max(wants) == cap


def test_leases_off_hold_nothing() -> None:
    leases = Leases(0.0)
    decision = Decision(True, 0.0, 0.1, 3)
    assert leases.record("k", 1000.0, 1000, 1, decision, 0.0) is decision
    assert leases.take("k", 1000.0, 1000) == (None, 1) and len(leases) == 0


def test_held_keys_are_bounded_expired_first() -> None:
    clock = Clock()
    leases = Leases(0.05, max_keys=100, clock=clock)
    for i in range(100):
        granted(leases, f"old{i}", 1000.0, 1000, 4)
    clock.now += 1.0  # all expired
    granted(leases, "live", 1000.0, 1000, 4)
    assert len(leases) == 1
    for i in range(99):
        granted(leases, f"new{i}", 1000.0, 1000, 4)
    granted(leases, "over", 1000.0, 1000, 4)  # full of live leases: all dropped first
    assert len(leases) == 1 and leases.take("new0", 1000.0, 1000)[0] is None
    assert leases.take("over", 1000.0, 1000)[0] is not None


@pytest.mark.parametrize("value", ["-0.1", "nan", "2", "fast", "inf"])
def test_a_bad_lease_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch,
                                                value: str) -> None:
    monkeypatch.setenv("TRIMTAB_RATELIMIT_LEASE", value)
    with pytest.raises(ValueError, match="TRIMTAB_RATELIMIT_LEASE"):
        make_backend("redis://127.0.0.1:1/0", None, "api")


def test_the_lease_setting_reaches_the_redis_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIMTAB_RATELIMIT_LEASE", "0")
    backend = make_backend("redis://127.0.0.1:1/0", None, "api")
    assert isinstance(backend, RedisBackend) and backend.leases.seconds == 0.0
    monkeypatch.delenv("TRIMTAB_RATELIMIT_LEASE")
    backend = make_backend("redis://127.0.0.1:1/0", None, "api")
    assert isinstance(backend, RedisBackend) and backend.leases.seconds == 0.05


def _evalsha_calls(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + \
        int(stats.get("cmdstat_eval", {}).get("calls", 0))


def test_a_hot_key_asks_redis_a_fraction_of_its_requests(redis_url: str) -> None:  # noqa: F811
    # The benchmark's case: a limit far above the load, one busy key.
    async def run(backend: RedisBackend) -> list[Decision | None]:
        try:
            return [await backend.decide("hot", 100_000.0, 100_000) for _ in range(3000)]
        finally:
            await backend.close()

    before = _evalsha_calls(redis_url)
    decisions = asyncio.run(run(RedisBackend(redis_url, timeout=2.0)))
    leased = _evalsha_calls(redis_url) - before
    assert all(d is not None and d.allowed for d in decisions)
    assert leased <= 300, leased  # a round trip per lease, not per request
    off = asyncio.run(run(RedisBackend(redis_url, timeout=2.0, lease=0.0)))
    assert all(d is not None and d.allowed for d in off)
    assert _evalsha_calls(redis_url) - before - leased == 3000  # off: one each


def test_two_leasing_instances_stay_within_the_global_limit(redis_url: str) -> None:  # noqa: F811
    # 400/s with a burst of 40: leases of up to 20 tokens. Two instances hammer one key for
    # about 1.5 s. Leased tokens are taken from the shared bucket when granted and spent
    # within 50 ms, so the fleet admits no more than burst + rate * (elapsed + lease), and
    # wastes little: at least 95 % of what one exact bucket would admit over the run.
    rate, burst, lease = 400.0, 40, 0.05
    runs: list[tuple[float, float, int, int]] = []  # first, last decision time; sent, allowed

    def instance() -> None:
        async def run() -> None:
            backend = RedisBackend(redis_url, timeout=2.0, lease=lease)
            stop = time.time() + 1.5
            first, sent, allowed = time.time(), 0, 0
            while (now := time.time()) < stop:
                decision = await backend.decide("shared", rate, burst)
                assert decision is not None, "store failed during the test"
                sent, allowed = sent + 1, allowed + decision.allowed
            runs.append((first, now, sent, allowed))
            await backend.close()

        asyncio.run(run())

    before = _evalsha_calls(redis_url)
    threads = [threading.Thread(target=instance) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(runs) == 2
    calls = _evalsha_calls(redis_url) - before
    start, end = min(r[0] for r in runs), max(r[1] for r in runs)
    sent, allowed = sum(r[2] for r in runs), sum(r[3] for r in runs)
    exact = burst + rate * (end - start)
    assert allowed <= burst + rate * (end - start + lease) + 1, (allowed, exact)
    assert allowed >= 0.95 * exact, (allowed, exact)
    assert calls < sent / 2, (calls, sent)  # refusals remembered, leases spent


def test_the_script_grants_what_was_wanted_and_fits_never_more(redis_url: str) -> None:  # noqa: F811
    # No refill to speak of (1 per 1,000 s), a burst of 10: wants of 4, 4, 4, 1.
    async def run() -> list[tuple[int, int]]:
        backend = RedisBackend(redis_url, timeout=2.0, lease=0.0)
        client = backend._client_for(asyncio.get_running_loop())
        got = []
        try:
            for want in (4, 4, 4, 1):
                reply = await backend._evalsha(client, b"trimtab:rl:fit", 0.001, 10, want)
                got.append((int(reply[0]), int(reply[3])))
        finally:
            await backend.close()
        return got

    assert asyncio.run(run()) == [(4, 6), (4, 2), (2, 0), (0, 0)]


def test_concurrent_requests_of_a_hot_key_are_not_refused_by_each_others_batches(
        redis_url: str) -> None:  # noqa: F811
    # 1,000/s with a burst of 100: after a warm-up that grows the batches, 30 requests at
    # once all fit in the bucket and must all pass (each taking a batch of 32 drained it
    # after three and refused the rest, their tokens wasted).
    async def run() -> list[bool]:
        backend = RedisBackend(redis_url, timeout=2.0)
        try:
            for _ in range(5):
                await backend.decide("burst", 1000.0, 100)
            await asyncio.sleep(0.2)  # the bucket refills; the lease expires
            decisions = await asyncio.gather(*(backend.decide("burst", 1000.0, 100)
                                               for _ in range(30)))
            return [d is not None and d.allowed for d in decisions]
        finally:
            await backend.close()

    assert asyncio.run(run()) == [True] * 30

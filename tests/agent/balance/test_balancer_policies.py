"""Picking policies of the built-in balancer: exact, deterministic properties."""

from __future__ import annotations

import collections

import pytest
from trimtab.agent.balance.policies import (
    ConsistentHash,
    InvalidInput,
    LeastConnections,
    Server,
    ServerStatus,
    ShareWindow,
    SmoothWeightedRoundRobin,
    expected_share,
    guard_rail,
    make_policy,
)


def name(server: Server | None) -> str:
    assert server is not None
    return server.name


def servers(**weights: int) -> list[Server]:
    return [Server(name, f"http://{name}", weight=w) for name, w in weights.items()]


def test_swrr_matches_nginx_sequence_and_exact_split() -> None:
    pool = servers(a=5, b=1, c=1)
    policy = SmoothWeightedRoundRobin()
    assert [name(policy.pick(pool)) for _ in range(7)] == list("aabacaa")
    pool = servers(s1=3, s2=1)
    counts = collections.Counter(name(policy.pick(pool)) for _ in range(2000))
    assert counts == {"s1": 1500, "s2": 500}


def test_weight_and_state_changes_apply_from_the_next_pick() -> None:
    pool = servers(s1=1, s2=1)
    policy = SmoothWeightedRoundRobin()
    policy.pick(pool)
    pool[1].state = "drain"
    assert {name(policy.pick(pool)) for _ in range(10)} == {"s1"}
    pool[1].state = "ready"
    pool[0].weight = 0
    assert {name(policy.pick(pool)) for _ in range(10)} == {"s2"}
    pool[1].healthy = False
    assert policy.pick(pool) is None
    pool[0].weight, pool[1].state, pool[1].healthy = 1, "maint", True
    assert name(policy.pick(pool)) == "s1"


def test_leastconn_prefers_fewest_in_flight_per_weight_and_rotates_ties() -> None:
    pool = servers(s1=1, s2=2, s3=1)
    policy = LeastConnections()
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 3, 4, 5
    assert name(policy.pick(pool)) == "s2"  # 4/2 < 3/1
    pool[1].in_flight = 6  # 6/2 == 3/1: a tie between s1 and s2, shared 1:2 by weight
    ties = collections.Counter(name(policy.pick(pool)) for _ in range(30))
    assert ties == {"s1": 10, "s2": 20}
    pool[0].state = "drain"
    assert name(policy.pick(pool)) == "s2"


def clients(n: int) -> list[str]:
    return [f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(n)]


def test_iphash_is_sticky_and_spreads_by_weight() -> None:
    pool = servers(s1=3, s2=1)
    policy = ConsistentHash()
    first = {ip: name(policy.pick(pool, ip)) for ip in clients(8000)}
    again = {ip: name(policy.pick(pool, ip)) for ip in clients(8000)}
    assert first == again
    share = collections.Counter(first.values())["s1"] / 8000
    assert 0.70 <= share <= 0.80


def test_iphash_is_stable_across_weight_changes_and_failures() -> None:
    pool = servers(s1=2, s2=2, s3=2)
    policy = ConsistentHash()
    ips = clients(5000)
    before = {ip: name(policy.pick(pool, ip)) for ip in ips}
    pool[2].weight = 4
    after = {ip: name(policy.pick(pool, ip)) for ip in ips}
    moved = [ip for ip in ips if before[ip] != after[ip]]
    assert moved and all(after[ip] == "s3" for ip in moved)  # only towards the heavier server
    pool[0].state = "drain"
    drained = {ip: name(policy.pick(pool, ip)) for ip in ips}
    assert all(drained[ip] == after[ip] for ip in ips if after[ip] != "s1")
    assert "s1" not in drained.values()


def test_expected_share_counts_only_ready_and_up() -> None:
    pool = servers(s1=3, s2=1, s3=4)
    pool[2].state = "drain"
    assert expected_share([s.status() for s in pool]) == {"s1": 0.75, "s2": 0.25, "s3": 0.0}
    pool[1].healthy = False
    assert expected_share([s.status() for s in pool]) == {"s1": 1.0, "s2": 0.0, "s3": 0.0}


@pytest.mark.parametrize("weight", [9000, -1, "abc", 1.5, True])
def test_server_refuses_bad_weight(weight: object) -> None:
    with pytest.raises(InvalidInput, match="weight"):
        Server("s1", "http://x", weight=weight)
    with pytest.raises(InvalidInput, match="policy"):
        make_policy("random")


def test_observed_share_uses_only_the_window() -> None:
    window = ShareWindow(horizon=100.0)
    window.add({"s1": 0, "s2": 0}, now=0.0)
    window.add({"s1": 50, "s2": 50}, now=10.0)  # 50/50 long ago
    window.add({"s1": 80, "s2": 60}, now=20.0)
    window.add({"s1": 110, "s2": 70}, now=30.0)  # 3:1 in the last 20 s
    assert window.observed(25.0, now=30.0) == {"s1": 0.75, "s2": 0.25}
    assert window.observed(100.0, now=30.0) == {"s1": 110 / 180, "s2": 70 / 180}
    window.add({"s1": 110, "s2": 70}, now=200.0)  # horizon drops the old samples
    assert window.observed(5.0, now=200.0) == {"s1": None, "s2": None}  # no traffic: unknown


def test_guard_rail_refuses_only_what_the_change_makes_worse() -> None:
    def st(name: str, weight: int, state: str = "ready", up: bool = True) -> ServerStatus:
        return ServerStatus(name, weight, state, up, 0)

    before = [st("a", 1), st("b", 1, up=False)]
    assert "every weight" in str(guard_rail(before, [st("a", 0), st("b", 0, up=False)]))
    assert "last" in str(guard_rail(before, [st("a", 1, "drain"), st("b", 1, up=False)]))
    assert guard_rail(before, [st("a", 2), st("b", 1, "maint", up=False)]) is None
    dark = [st("a", 1, "maint"), st("b", 1, "drain")]
    assert guard_rail(dark, [st("a", 1, "maint"), st("b", 1, "maint")]) is None

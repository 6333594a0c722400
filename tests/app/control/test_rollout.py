"""Staged rollout driving real agents (demo fleet) with an injected clock."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from trimtab.agent.procs import free_port
from trimtab.app.control.client import ControlClient
from trimtab.app.control.rollout import (
    ABORTED,
    DONE,
    FAILED,
    PARTIAL,
    ROLLED_BACK,
    WATCHING,
    Gates,
    Rollout,
)
from trimtab.app.control.types import APPLIED, SKIPPED, UNCHANGED, Agent, ChangeResult
from trimtab.demo.app import DEMO_LIMIT_NAME
from trimtab.demo.fleet import DemoFleet

ROUTE = "/search"


class Clock:
    """A clock the test moves by hand (the rollout only reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    fleet = DemoFleet(rps=5)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def instances(fleet: DemoFleet) -> list[Agent]:
    return [Agent.from_target(t) for t in fleet.targets if t.kind == "instance"]


@pytest.fixture
def client(fleet: DemoFleet, instances: list[Agent]) -> Iterator[ControlClient]:
    since = time.time()
    with ControlClient(fleet.write_token) as c:
        try:
            yield c
        finally:
            report = c.revert_since(instances, since, "test cleanup")
            assert all(o.status in (APPLIED, UNCHANGED) or (o.status == SKIPPED and r.what == "cache.invalidate")
                       for r, o in report), report
            assert set(route_ttls(c, instances).values()) == {0.0}


def route_ttls(client: ControlClient, agents: list[Agent]) -> dict[str, float | None]:
    return {a.name: client.read_config(a).ttl(ROUTE) for a in agents}


def make(client: ControlClient, canary: Agent, rest: list[Agent], clock: Clock,
         gates: Gates | None = None) -> Rollout:
    # The ghost (nothing listens) gets a made-up ETag: the call must fail on the network.
    etags = {a: client.read_config(a).etag if a.name != "ghost" else '"1-x"'
             for a in [canary, *rest]}

    def apply(targets: list[Agent]) -> ChangeResult:
        return client.set_ttl(targets, ROUTE, 15.0, "staged", etags)
    return Rollout(canary, rest, apply, client.rollback,
                   gates or Gates(p95_max_ms=500, p95_ratio_max=1.5, error_rate_max=0.02),
                   watch_seconds=120, baseline_p95_ms=100, clock=clock)


def test_gates_hold_then_the_rest_gets_it(client: ControlClient, instances: list[Agent]) -> None:
    clock = Clock()
    rollout = make(client, instances[0], instances[1:], clock)
    assert rollout.start() == WATCHING
    assert route_ttls(client, instances) == {"api-1": 15.0, "api-2": 0.0, "api-3": 0.0}
    for _ in range(3):
        clock.now += 30
        assert rollout.observe(120.0, 0.001) == WATCHING
    assert rollout.advance() == WATCHING and rollout.remaining == pytest.approx(30)
    clock.now += 30
    assert rollout.advance() == DONE
    assert set(route_ttls(client, instances).values()) == {15.0}
    assert "applied to api-2, api-3" in rollout.events[-1].message


def test_failing_gate_reverts_the_canary_and_says_so(client: ControlClient,
                                                     instances: list[Agent]) -> None:
    clock = Clock()
    rollout = make(client, instances[0], instances[1:], clock)
    rollout.start()
    rollout.observe(120.0, 0.0)
    clock.now += 10
    assert rollout.observe(180.0, 0.0) == ROLLED_BACK  # 1.8 × baseline > 1.5
    message = rollout.events[-1].message
    assert "p95 180.0 ms > 1.5 × baseline 100.0 ms" in message
    assert "reverted automatically" in message
    assert set(route_ttls(client, instances).values()) == {0.0}
    assert rollout.advance() == ROLLED_BACK  # nothing more happens


def test_error_rate_gate(client: ControlClient, instances: list[Agent]) -> None:
    rollout = make(client, instances[0], instances[1:], Clock())
    rollout.start()
    assert rollout.observe(90.0, 0.05) == ROLLED_BACK
    assert "error rate 5.00% > 2.00%" in rollout.events[-1].message


def test_burn_rate_gate_reverts_a_canary_burning_its_slo(client: ControlClient,
                                                        instances: list[Agent]) -> None:
    """'Abort if the fast burn exceeds 14.4× on the canary' (issue 19), on real agents."""
    gates = Gates(p95_max_ms=500, error_rate_max=0.02, burn_max=14.4)
    rollout = make(client, instances[0], instances[1:], Clock(), gates)
    rollout.start()
    assert rollout.observe(90.0, 0.0, burn=None) == WATCHING  # no SLO on the route
    assert rollout.observe(90.0, 0.0, burn=float("nan")) == WATCHING  # no traffic yet
    assert rollout.observe(90.0, 0.0, burn=14.4) == WATCHING  # at the limit holds
    assert rollout.observe(90.0, 0.0, burn=20.0) == ROLLED_BACK
    assert "SLO burn rate 20× > 14.4×" in rollout.events[-1].message
    assert set(route_ttls(client, instances).values()) == {0.0}


def test_too_few_numbers_keep_watching(client: ControlClient, instances: list[Agent]) -> None:
    clock = Clock()
    rollout = make(client, instances[0], instances[1:], clock)
    rollout.start()
    rollout.observe(float("nan"), 0.0)  # no traffic in the window: not a pass
    rollout.observe(100.0, 0.0)
    clock.now += 500
    assert rollout.advance() == WATCHING
    assert "only 1 of 3 samples" in rollout.events[-1].message
    assert route_ttls(client, instances[1:]) == {"api-2": 0.0, "api-3": 0.0}
    assert rollout.abort("operator stopped it") == ABORTED
    assert set(route_ttls(client, instances).values()) == {0.0}


def test_unreachable_canary_fails_without_touching_the_rest(
        client: ControlClient, instances: list[Agent]) -> None:
    ghost = Agent("ghost", f"http://127.0.0.1:{free_port()}")
    rollout = Rollout(ghost, instances, lambda ts: client.set_ttl(ts, ROUTE, 15.0, "x",
                                                                  {ghost: '"1-x"'}),
                      client.rollback, Gates(), 60, clock=Clock())
    assert rollout.start() == FAILED
    assert "ghost: unreachable" in rollout.events[-1].message
    assert set(route_ttls(client, instances).values()) == {0.0}


def test_rest_partly_unreachable_is_partial(client: ControlClient,
                                            instances: list[Agent]) -> None:
    clock = Clock()
    ghost = Agent("ghost", f"http://127.0.0.1:{free_port()}")
    rollout = make(client, instances[0], [instances[1], ghost], clock)
    rollout.start()
    for _ in range(3):
        rollout.observe(100.0, 0.0)
    clock.now += 120
    assert rollout.advance() == PARTIAL
    assert "ghost: unreachable" in rollout.events[-1].message
    assert rollout.rest_result is not None
    assert rollout.rest_result.with_status(APPLIED) == [instances[1]]


def test_gates_check_is_pure() -> None:
    gates = Gates(p95_max_ms=300, error_rate_max=0.01)
    assert gates.check(299, 0.01, None) is None
    assert gates.check(301, 0.0, None) == "p95 301.0 ms > 300 ms"
    assert Gates(p95_ratio_max=2).check(500, 0.5, None) is None  # no baseline: not checked


def limit_modes(client: ControlClient, agents: list[Agent]) -> dict[str, str]:
    return {a.name: client.read_config(a).limits()[DEMO_LIMIT_NAME].mode for a in agents}


def test_429_share_gate_reverts_a_limit_change_on_the_canary_only(
        client: ControlClient, instances: list[Agent]) -> None:
    """A rate limit change staged like a TTL one (issue 18): the canary's share of the route
    refused with 429 is a gate; above it, only the canary had the change, and it is undone."""
    etags = {a: client.read_config(a).etag for a in instances}
    rollout = Rollout(
        instances[0], instances[1:],
        lambda ts: client.set_limit(ts, DEMO_LIMIT_NAME, {"mode": "enforce"}, "staged",
                                    {a: etags[a] for a in ts}),
        client.rollback, Gates(error_rate_max=0.02, refused_max=0.10), 120, clock=Clock())
    assert rollout.start() == WATCHING
    assert limit_modes(client, instances) == {"api-1": "enforce", "api-2": "shadow",
                                              "api-3": "shadow"}
    assert rollout.observe(90.0, 0.0, refused=None) == WATCHING  # no limit decided yet
    assert rollout.observe(90.0, 0.0, refused=float("nan")) == WATCHING
    assert rollout.observe(90.0, 0.0, refused=0.10) == WATCHING  # at the gate holds
    assert rollout.samples == 3
    assert rollout.observe(90.0, 0.0, refused=0.45) == ROLLED_BACK
    assert "429 share 45.0% > 10.0%" in rollout.events[-1].message
    assert "canary reverted automatically" in rollout.events[-1].message
    assert set(limit_modes(client, instances).values()) == {"shadow"}


def test_the_refused_gate_is_pure() -> None:
    gates = Gates(refused_max=0.05)
    assert gates.check_refused(0.05) is None and gates.check_refused(None) is None
    assert gates.check_refused(float("nan")) is None  # the limit decided nothing
    assert gates.check_refused(0.051) == "429 share 5.1% > 5.0%"
    assert Gates().check_refused(1.0) is None  # no gate

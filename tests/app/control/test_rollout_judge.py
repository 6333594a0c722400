"""Staged-rollout gates on the judge's verdicts (the card's judge), on a clock the test moves."""

from __future__ import annotations

import numpy as np
from trimtab.app.control.rollout import DONE, ROLLED_BACK, WATCHING, Gates, Rollout
from trimtab.app.control.types import APPLIED, Agent, ChangeResult, Outcome
from trimtab.app.model.before_after import compare_all

CANARY, REST = Agent("api-1", "http://127.0.0.1:1"), Agent("api-2", "http://127.0.0.1:2")
CHANGE = 10_000.0


class Clock:
    def __init__(self) -> None:
        self.now = CHANGE

    def __call__(self) -> float:
        return self.now


class Fleet:
    """Records what the rollout applied and reverted (the change is two callables)."""

    def __init__(self) -> None:
        self.applied: list[list[str]] = []
        self.reverted = 0

    def apply(self, agents: list[Agent]) -> ChangeResult:
        self.applied.append([a.name for a in agents])
        return ChangeResult("ttl 30", {a: Outcome(a, APPLIED) for a in agents})

    def rollback(self, result: ChangeResult) -> ChangeResult:
        self.reverted += 1
        return ChangeResult("revert", {a: Outcome(a, APPLIED) for a in result.outcomes})


def judged(p95_after: float, hits_after: float, now: float) -> dict:
    t = np.arange(CHANGE - 200, now, 1.0)
    rng = np.random.default_rng(1)
    p95 = np.where(t < CHANGE, 0.2185, p95_after) + rng.normal(0, 0.003, t.size)
    hits = np.where(t < CHANGE, 0.30, hits_after) + rng.normal(0, 0.01, t.size)
    return compare_all({"/r p95": (t, p95), "/r hit_ratio": (t, hits)}, CHANGE, now=now)


def rollout(fleet: Fleet, clock: Clock) -> Rollout:
    r = Rollout(CANARY, [REST], fleet.apply, fleet.rollback, Gates(), watch_seconds=60,
                clock=clock, min_samples=2)
    r.start()
    return r


def test_a_46_percent_p95_drop_passes_the_gate_and_the_rest_gets_it() -> None:
    fleet, clock = Fleet(), Clock()
    r = rollout(fleet, clock)
    assert r.observe_judged(judged(0.118, 0.6, CHANGE + 10)) == WATCHING  # settling: no count
    assert r.samples == 0
    for s in (30, 45):
        assert r.observe_judged(judged(0.118, 0.6, CHANGE + s)) == WATCHING
    clock.now = CHANGE + 61
    assert r.advance() == DONE and fleet.applied == [["api-1"], ["api-2"]]


def test_a_p95_judged_worse_reverts_the_canary_with_the_verdict() -> None:
    fleet, clock = Fleet(), Clock()
    r = rollout(fleet, clock)
    assert r.observe_judged(judged(0.40, 0.3, CHANGE + 40)) == ROLLED_BACK
    assert fleet.reverted == 1 and fleet.applied == [["api-1"]]
    message = r.events[-1].message
    assert "judged worse on api-1" in message and "/r p95" in message
    assert "worse (beyond the normal spread)" in message and " ms" in message


def test_hit_ratio_down_is_worse_and_up_is_not() -> None:
    assert Gates.check_judged(judged(0.2185, 0.1, CHANGE + 60)) is not None
    assert Gates.check_judged(judged(0.2185, 0.6, CHANGE + 60)) is None


def test_numbers_and_verdicts_together_count_once_and_the_judge_can_fail_them() -> None:
    fleet, clock = Fleet(), Clock()
    r = rollout(fleet, clock)
    assert r.observe(130.0, 0.0, judged(0.13, 0.3, CHANGE + 5)) == WATCHING  # judge: no data
    assert r.samples == 1
    # The numbers pass the (unset) thresholds, the judge sees p95 double: reverted.
    assert r.observe(400.0, 0.0, judged(0.40, 0.3, CHANGE + 40)) == ROLLED_BACK
    assert "judged worse on api-1" in r.events[-1].message

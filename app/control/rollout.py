"""Staged rollout: apply a change to one canary, watch it against gates, then the rest.

Qt-free and clock-injectable. The caller owns the numbers: it evaluates the
canary's p95 and error rate from its model and passes them to
:meth:`Rollout.observe`; the rollout only compares them with the gates and
acts. The change itself is two callables (apply to some targets, roll back a
result), so the same machine drives a TTL or a balancer change::

    rollout = Rollout(canary, rest,
                      apply=lambda ts: client.set_ttl(ts, route, 30, why, etags),
                      rollback=client.rollback,
                      gates=Gates(p95_max_ms=500, error_rate_max=0.01),
                      watch_seconds=300)
    rollout.start()                       # canary only
    rollout.observe(p95_ms, error_rate,   # every refresh, from the model's numbers,
                    compare_all(canary_series, change_time, now=now))  # and the judge's verdicts
    rollout.advance()                     # after the watch: the rest (or still waiting)

States: ``pending`` → ``watching`` → ``done``; a failing gate reverts the canary
automatically → ``rolled_back`` (the event says which gate and the numbers).
``failed`` = the canary change itself did not apply (nothing to undo beyond what
did); ``partial`` = the rest was applied only in part (see :attr:`Rollout.rest_result`:
retry or roll back); ``revert_failed`` = a gate failed and the automatic revert did
not fully succeed. Every transition is an :class:`Event` in :attr:`Rollout.events`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..model.before_after import AWAY, UNKNOWN, WORSE, Comparison
from .types import APPLIED, UNCHANGED, Agent, ChangeResult

PENDING, WATCHING, DONE, ROLLED_BACK = "pending", "watching", "done", "rolled_back"
FAILED, PARTIAL, REVERT_FAILED, ABORTED = "failed", "partial", "revert_failed", "aborted"
FINAL = (DONE, ROLLED_BACK, FAILED, PARTIAL, REVERT_FAILED, ABORTED)


@dataclass(frozen=True)
class Gates:
    """Limits the canary must stay within while watched (None = not checked).

    ``p95_ratio_max`` is relative to ``baseline_p95_ms`` given to the rollout (the
    canary's p95 before the change), e.g. 1.2 = at most 20 % slower. ``burn_max`` is
    the canary's error-budget burn rate over the SLO's short window (the workbook's
    fast burn pages at 14.4): "abort if the canary burns faster than this".
    ``refused_max`` is the share (0..1) of the canary's requests on the route refused
    with 429 by the rate limit being changed: "abort if the canary turns away more than
    this" (a rate limit change; 429s are not errors, so the error gate never sees them).
    """

    p95_max_ms: float | None = None
    p95_ratio_max: float | None = None
    error_rate_max: float | None = None
    burn_max: float | None = None
    refused_max: float | None = None

    def check_refused(self, share: float | None) -> str | None:
        """Why the canary's 429 share fails the gate, or None (no gate, or NaN/None: the
        limit decided nothing, so it refused nobody)."""
        if self.refused_max is None or share is None or math.isnan(share):
            return None
        if share > self.refused_max:
            return f"429 share {share:.1%} > {self.refused_max:.1%}"
        return None

    def check_burn(self, burn: float | None) -> str | None:
        """Why the canary's burn rate fails the gate, or None (no SLO or no traffic: None)."""
        if self.burn_max is None or burn is None or math.isnan(burn):
            return None
        if burn > self.burn_max:
            return f"SLO burn rate {burn:.3g}× > {self.burn_max:g}×"
        return None

    def check(self, p95_ms: float, error_rate: float, baseline_p95_ms: float | None
              ) -> str | None:
        """Why these numbers fail a gate, or None when they pass."""
        if self.p95_max_ms is not None and p95_ms > self.p95_max_ms:
            return f"p95 {p95_ms:.1f} ms > {self.p95_max_ms:g} ms"
        if self.p95_ratio_max is not None and baseline_p95_ms:
            limit = baseline_p95_ms * self.p95_ratio_max
            if p95_ms > limit:
                return (f"p95 {p95_ms:.1f} ms > {self.p95_ratio_max:g} × baseline "
                        f"{baseline_p95_ms:.1f} ms")
        if self.error_rate_max is not None and error_rate > self.error_rate_max:
            return f"error rate {error_rate:.2%} > {self.error_rate_max:.2%}"
        return None

    @staticmethod
    def check_judged(comparisons: Mapping[str, Comparison]) -> str | None:
        """Why the judge's verdicts fail the canary, or None when they pass.

        The same judge as the before/after card and the report (``before_after.compare``):
        a metric beyond its normal spread the wrong way (latency or errors up, hit ratio
        down: "worse"; a share moving away from the new weights) fails; "better", "as
        intended", "changed" and "within the normal spread" pass.
        """
        bad = [c for c in comparisons.values() if c.direction in (WORSE, AWAY)]
        return "; ".join(c.verdict for c in bad) or None


@dataclass(frozen=True)
class Event:
    """One step of the rollout, for the GUI's log."""

    time: float
    state: str
    message: str


@dataclass
class Rollout:
    """Canary first, gates while watching, automatic revert on a failing gate."""

    canary: Agent
    rest: Sequence[Agent]
    apply: Callable[[list[Agent]], ChangeResult]
    rollback: Callable[[ChangeResult], ChangeResult]
    gates: Gates
    watch_seconds: float
    baseline_p95_ms: float | None = None
    min_samples: int = 3  # a watch with fewer numbers than this proves nothing
    clock: Callable[[], float] = time.monotonic
    state: str = PENDING
    events: list[Event] = field(default_factory=list)
    canary_result: ChangeResult | None = None
    rest_result: ChangeResult | None = None
    revert_result: ChangeResult | None = None
    samples: int = 0
    _watch_start: float = 0.0

    def _to(self, state: str, message: str) -> str:
        self.state = state
        self.events.append(Event(self.clock(), state, message))
        return state

    def start(self) -> str:
        """Apply the change to the canary only, and start watching it."""
        if self.state != PENDING:
            raise RuntimeError(f"rollout already {self.state}")
        result = self.canary_result = self.apply([self.canary])
        outcome = result.outcomes.get(self.canary)
        if outcome is None or outcome.status not in (APPLIED, UNCHANGED):
            why = outcome.message if outcome is not None else "no answer"
            status = outcome.status if outcome is not None else "missing"
            return self._to(FAILED, f"canary {self.canary.name}: {status}: {why}; "
                            "nothing else was changed")
        self._watch_start = self.clock()
        return self._to(WATCHING, f"applied to canary {self.canary.name}; watching "
                        f"{self.watch_seconds:g} s")

    @property
    def remaining(self) -> float:
        """Seconds left in the watch (0 when over or not watching)."""
        if self.state != WATCHING:
            return 0.0
        return max(0.0, self._watch_start + self.watch_seconds - self.clock())

    def observe(self, p95_ms: float, error_rate: float,
                judged: Mapping[str, Comparison] | None = None,
                burn: float | None = None, refused: float | None = None) -> str:
        """Check the canary's current numbers; a failing gate reverts the canary now.

        NaN (no traffic in the caller's window) is not a pass: it is not counted.
        ``judged``: the judge's verdicts on the canary's series since the change, checked
        too (:meth:`Gates.check_judged`); verdicts without enough data yet fail nothing.
        ``burn``: the canary's SLO burn rate (:meth:`Gates.check_burn`).
        ``refused``: the canary's 429 share of the route (:meth:`Gates.check_refused`).
        """
        if self.state != WATCHING:
            return self.state
        if math.isnan(p95_ms) or math.isnan(error_rate):
            return self.state
        self.samples += 1
        failed = (self.gates.check(p95_ms, error_rate, self.baseline_p95_ms)
                  or self.gates.check_burn(burn) or self.gates.check_refused(refused))
        if failed is not None:
            return self._revert_canary(f"gate failed on {self.canary.name}: {failed}")
        worse = self.gates.check_judged(judged or {})
        if worse is not None:
            return self._revert_canary(f"judged worse on {self.canary.name}: {worse}")
        return self.state

    def observe_judged(self, comparisons: Mapping[str, Comparison]) -> str:
        """Check the canary by the judge's verdicts (the card's, for the canary's series
        since the change); a metric judged worse reverts the canary now.

        Verdicts without enough data yet prove nothing: they are not counted as a pass.
        """
        if self.state != WATCHING:
            return self.state
        if not comparisons or any(c.direction == UNKNOWN for c in comparisons.values()):
            return self.state
        self.samples += 1
        failed = self.gates.check_judged(comparisons)
        if failed is None:
            return self.state
        return self._revert_canary(f"judged worse on {self.canary.name}: {failed}")

    def advance(self) -> str:
        """After the watch with enough passing numbers, apply the change to the rest."""
        if self.state != WATCHING or self.remaining > 0:
            return self.state
        if self.samples < self.min_samples:
            self.events.append(Event(self.clock(), WATCHING,
                                     f"watch over but only {self.samples} of "
                                     f"{self.min_samples} samples: still watching"))
            return self.state
        if not self.rest:
            return self._to(DONE, "gates held; no other targets")
        result = self.rest_result = self.apply(list(self.rest))
        if result.ok:
            return self._to(DONE, f"gates held for {self.watch_seconds:g} s; applied to "
                            f"{', '.join(a.name for a in self.rest)}")
        bad = [f"{a.name}: {o.status}" for a, o in result.outcomes.items()
               if o.status not in (APPLIED, UNCHANGED)]
        return self._to(PARTIAL, "applied to the rest only in part (" + "; ".join(bad) +
                        "): retry or roll back")

    def abort(self, reason: str) -> str:
        """Stop by hand while watching: revert the canary."""
        if self.state != WATCHING:
            return self.state
        state = self._revert_canary(f"aborted: {reason}")
        return self._to(ABORTED, self.events[-1].message) if state == ROLLED_BACK else state

    def _revert_canary(self, why: str) -> str:
        assert self.canary_result is not None
        result = self.revert_result = self.rollback(self.canary_result)
        bad = [f"{a.name}: {o.status}: {o.message}" for a, o in result.outcomes.items()
               if o.status not in (APPLIED, UNCHANGED)]
        if bad:
            return self._to(REVERT_FAILED, f"{why}; automatic revert FAILED ({'; '.join(bad)})")
        return self._to(ROLLED_BACK, f"{why}; canary reverted automatically")

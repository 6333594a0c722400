"""The keys each rate limit refused most (or would have, in shadow mode), from real decisions.

Per limit, a bounded heavy-hitter tally (the space-saving algorithm of Metwally et al.):
at most :data:`CAPACITY` keys are counted; a refusal of a key not counted while the tally
is full takes the place of the least-counted key and inherits its count, so a key's count
is at most that inherited amount too high (``error`` in the answer) and every key refused
more often than 1/CAPACITY of the time is always listed. Two tallies rotate every
``span / 2`` seconds and an answer adds the current one to the previous: it covers between
``span / 2`` and ``span`` seconds, said as ``top_keys_seconds``, and a client that stopped
sending leaves the list within ``span``.

Memory: 2 tallies × CAPACITY keys × up to :data:`MAX_LIMITS` limits, each entry a short
string and three ints (about 3 MB at the worst, nothing without refusals). Only refusals
are counted: an allowed request does no work here.

Key values are shown as the what-if shows them (:mod:`.ratelimit_whatif`): an IP or a JWT
claim as it is, a header value (an API key: a secret) only as ``#`` and 8 hex digits,
stable within the process. Per worker process: under several workers, each answers for
the requests it decided.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .ratelimit import Limit, Scope, client_key
from .ratelimit_config import MAX_LIMITS

CAPACITY = 50  # keys counted per limit and tally
SHOWN = 20  # keys in an answer
SPAN = 600.0  # seconds: an answer covers between half of it and all of it

__all__ = ["CAPACITY", "MAX_LIMITS", "SHOWN", "SPAN", "TopKeys", "shown_key"]


def shown_key(spec: str, scope: Scope) -> str:
    """The client key of ``scope`` for ``spec`` as it may be shown (never a header value)."""
    value = client_key(spec, scope)
    if spec.startswith("header:"):
        return f"#{hash(value) & 0xFFFFFFFF:08x}"
    return value


class _Tally:
    """Space-saving counts of one limit: key → [limited, shadow_limited, error]."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, key: str, shadow: bool) -> None:
        entry = self.counts.get(key)
        if entry is None:
            inherited = 0
            if len(self.counts) >= CAPACITY:  # replace the least counted (rare: a new key)
                low = min(self.counts, key=lambda k: sum(self.counts[k][:2]))
                inherited = sum(self.counts.pop(low)[:2])
            entry = self.counts[key] = [0, 0, inherited]
            entry[1 if shadow else 0] += inherited  # the inherited count, on this side
        entry[1 if shadow else 0] += 1


class TopKeys:
    """The tallies of every limit; :meth:`refused` on each refusal, :meth:`top` to read."""

    def __init__(self, span: float = SPAN, clock: Callable[[], float] = time.monotonic) -> None:
        self.span, self.clock = span, clock
        self._lock = threading.Lock()
        self._current: dict[str, _Tally] = {}
        self._previous: dict[str, _Tally] = {}
        self._started = self._previous_started = clock()

    def refused(self, limit: Limit, scope: Scope) -> None:
        """Count one refusal (enforce) or would-be refusal (shadow) of ``limit``."""
        key = shown_key(limit.key, scope)
        with self._lock:
            self._rotate()
            tally = self._current.get(limit.name)
            if tally is None:
                tally = self._current[limit.name] = _Tally()
            tally.add(key, limit.mode == "shadow")

    def top(self, name: str, n: int = SHOWN) -> list[dict[str, Any]]:
        """The ``n`` keys of limit ``name`` refused most, most first."""
        with self._lock:
            self._rotate()
            merged: dict[str, list[int]] = {}
            for tallies in (self._previous, self._current):
                tally = tallies.get(name)
                for key, (limited, shadow, error) in (tally.counts.items() if tally else ()):
                    entry = merged.setdefault(key, [0, 0, 0])
                    entry[0] += limited
                    entry[1] += shadow
                    entry[2] += error
        ranked = sorted(merged.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))[:n]
        return [{"key": key, "limited": limited, "shadow_limited": shadow, "error": error}
                for key, (limited, shadow, error) in ranked]

    def seconds(self) -> float:
        """The span the answers cover now (from the previous tally's start)."""
        with self._lock:
            self._rotate()
            return round(self.clock() - self._previous_started, 3)

    def forget(self, names: set[str]) -> None:
        """Drop the tallies of limits no longer configured."""
        with self._lock:
            for tallies in (self._current, self._previous):
                for name in set(tallies) - names:
                    del tallies[name]

    def _rotate(self) -> None:
        now = self.clock()
        if now - self._started >= self.span / 2:
            # Two rotations' worth of silence leaves nothing behind.
            stale = now - self._started >= self.span
            self._previous = {} if stale else self._current
            self._previous_started = now if stale else self._started
            self._current, self._started = {}, now

"""What a proposed rate limit would have done to the recent traffic of a route.

Every request's arrival time is kept per route and client key, for the key
kinds that can be asked about: the client IP always, and the key of every
limit configured for the route (in any mode, ``off`` included: adding a limit
as ``off`` is how to start recording a header or JWT-claim key). A question
"rate R, burst B, key K on route X over the last N minutes" is answered by
replaying those arrivals through GCRA, each key starting with a full bucket.

Bounds: at most ``max_arrivals`` arrivals in all (default 100,000, about 10 MB)
and none older than ``window`` seconds (default 600): the oldest go first.
Per worker process, like the cache what-if: under ``uvicorn --workers N`` each
worker answers for the traffic it served.

Key values: an IP or a JWT claim (a user id) is shown as it is; a header value
(an API key: a secret) only as an opaque id, ``#`` and 8 hex digits, the same
id as the top limited keys give it (:class:`~.ratelimit_topkeys.KeyIds`: one per value in
every worker of an instance with a state dir).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .ratelimit import NO_KEY, Limit, Scope, client_key, gcra
from .ratelimit_topkeys import KeyIds

MAX_SHOWN_KEYS = 10


class ArrivalLog:
    """Recent arrivals per (route, key kind), bounded in count and age."""

    def __init__(self, max_arrivals: int = 100_000, window: float = 600.0,
                 ids: Callable[[str], str] | None = None) -> None:
        self.max_arrivals, self.window = max_arrivals, window
        self.ids = ids if ids is not None else KeyIds()
        self._log: dict[tuple[str, str], deque[tuple[float, str]]] = {}
        self._order: deque[tuple[str, str]] = deque()  # which series each arrival went to
        self._lock = threading.Lock()
        # Per route, where one arrival goes: (key spec, series, its deque). Rebuilt when
        # the limits change (the config hands out a new tuple then), so the request path
        # does no set algebra and no lookups; a series' deque lives as long as the log.
        self._limits: tuple[Limit, ...] | None = None
        self._plans: dict[str, tuple[tuple[str, tuple[str, str], deque[tuple[float, str]]],
                                     ...]] = {}
        self._since_trim = 0

    def __len__(self) -> int:
        return len(self._order)

    def observe(self, route: str, limits: tuple[Limit, ...], scope: Scope, now: float) -> None:
        """Record one arrival on ``route`` under the IP and every limit key of the route."""
        if limits is not self._limits:
            self._limits, self._plans = limits, {}
        plan = self._plans.get(route)
        if plan is None:
            plan = self._plan(route, limits)
        with self._lock:
            for spec, series, arrivals in plan:
                if spec == "ip":  # the common case, inlined: it runs on every request
                    client = scope.get("client")
                    value = str(client[0]) if client else NO_KEY
                elif spec.startswith("header:"):  # an API key is a secret: an opaque id
                    value = self.ids(client_key(spec, scope))
                else:
                    value = client_key(spec, scope)
                arrivals.append((now, value))
                self._order.append(series)
            # Over the cap: trim now; by age: every 256 arrivals is enough, since a
            # prediction trims first (its answer never reaches past the window).
            self._since_trim += 1
            if len(self._order) > self.max_arrivals or self._since_trim >= 256:
                self._since_trim = 0
                self._trim(now)

    def _plan(self, route: str, limits: tuple[Limit, ...]
              ) -> tuple[tuple[str, tuple[str, str], deque[tuple[float, str]]], ...]:
        specs = {"ip"} | {lim.key for lim in limits
                          if lim.route == route or lim.route == "*"} - {"global"}
        with self._lock:
            plan = tuple((spec, (route, spec), self._log.setdefault((route, spec), deque()))
                         for spec in sorted(specs))
        self._plans[route] = plan
        return plan

    def routes(self) -> list[str]:
        """Routes with recorded arrivals."""
        with self._lock:
            return sorted({route for (route, _), arrivals in self._log.items() if arrivals})

    def specs(self, route: str) -> list[str]:
        """Key kinds recorded for ``route`` (``global`` whenever any is)."""
        with self._lock:
            found = sorted(spec for (r, spec), arrivals in self._log.items()
                           if r == route and arrivals)
        return [*found, "global"] if found else []

    def predict(self, route: str, key: str, rate: float, burst: int, seconds: float,
                now: float) -> dict[str, Any] | None:
        """Replay the last ``seconds`` of ``route`` under the proposed limit; None: no record."""
        with self._lock:
            self._trim(now)
            series = self._log.get((route, "ip" if key == "global" else key)) or None
            arrivals = [(t, "" if key == "global" else k) for t, k in series or ()
                        if t >= now - seconds]
        if series is None:
            return None
        state: dict[str, float | None] = {}
        sent: dict[str, int] = {}
        refused: dict[str, int] = {}
        for t, k in arrivals:
            decision, tat = gcra(state.get(k), t, rate, burst)
            sent[k] = sent.get(k, 0) + 1
            if decision.allowed:
                state[k] = tat
            else:
                refused[k] = refused.get(k, 0) + 1
        total, limited = len(arrivals), sum(refused.values())
        top = sorted(refused.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_SHOWN_KEYS]
        return {"route": route, "key": key, "rate": rate, "burst": burst,
                "seconds": min(seconds, now - arrivals[0][0]) if arrivals else 0.0,
                "requests": total, "limited": limited,
                "limited_share": limited / total if total else 0.0,
                "keys": len(sent), "limited_keys": len(refused),
                "top_limited": [{"key": k, "requests": sent[k], "limited": n} for k, n in top]}

    def _trim(self, now: float) -> None:
        cutoff = now - self.window
        while self._order:
            series = self._order[0]
            arrivals = self._log[series]
            if len(self._order) <= self.max_arrivals and arrivals[0][0] >= cutoff:
                break
            self._order.popleft()
            arrivals.popleft()  # an emptied series stays: a plan holds it

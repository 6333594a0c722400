"""Cache what-if: predicted hit ratio per route for candidate TTLs, from real traffic.

For every GET/HEAD request while the cache is enabled, :meth:`WhatIf.observe`
replays the access against a simulated cache for each TTL of a fixed grid:
per tracked key it remembers when each simulated entry was stored, so the
prediction is exact for "entry expires TTL seconds after it was stored" —
not the optimistic "refreshed on every access" that raw re-access intervals
would give. Memory is bounded: at most ``max_keys`` keys are tracked (least
recently seen dropped; a dropped key's next access counts as a miss, so the
prediction errs low) and at most ``max_routes`` routes.

``predict(route, ttls)`` answers for any TTL: grid points exactly, others by
linear interpolation between neighbours (flagged ``"interpolated": true``).
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

GRID: tuple[float, ...] = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 86400)
_NEVER = -1e18


@dataclass
class _Route:
    requests: int = 0
    hits: list[int] = field(default_factory=lambda: [0] * len(GRID))
    since: float = 0.0


class WhatIf:
    """Simulates the cache per route for each TTL in :data:`GRID`."""

    def __init__(self, max_keys: int = 16384, max_routes: int = 64) -> None:
        self.max_keys, self.max_routes = max_keys, max_routes
        self._keys: OrderedDict[tuple[str, str], array] = OrderedDict()
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()

    def observe(self, route: str, key: str, now: float) -> None:
        """One access to ``key`` of ``route`` at ``now``."""
        with self._lock:
            stats = self._routes.get(route)
            if stats is None:
                if len(self._routes) >= self.max_routes:
                    return
                stats = self._routes[route] = _Route(since=now)
            stats.requests += 1
            slot = (route, key)
            stored = self._keys.get(slot)
            if stored is None:
                stored = self._keys[slot] = array("d", [_NEVER] * len(GRID))
                if len(self._keys) > self.max_keys:
                    self._keys.popitem(last=False)
            else:
                self._keys.move_to_end(slot)
            hits = stats.hits
            for i, ttl in enumerate(GRID):
                if now - stored[i] < ttl:
                    hits[i] += 1
                else:
                    stored[i] = now

    def routes(self) -> list[str]:
        """Routes with observations."""
        with self._lock:
            return sorted(self._routes)

    def predict(self, route: str, ttls: list[float] | None = None) -> dict[str, Any] | None:
        """Predicted hit ratios for ``ttls`` (default: the grid); None for an unseen route."""
        with self._lock:
            stats = self._routes.get(route)
            if stats is None:
                return None
            requests, hits, since = stats.requests, list(stats.hits), stats.since
        ratios = [h / requests if requests else 0.0 for h in hits]
        out = []
        for ttl in (ttls if ttls is not None else list(GRID)):
            ratio, exact = _at(ttl, ratios)
            out.append({"ttl": ttl, "hit_ratio": round(ratio, 4), "interpolated": not exact})
        return {"route": route, "requests": requests, "since": since, "candidates": out,
                "model": "per-key simulation; TTL counted from store time; no eviction"}


def _at(ttl: float, ratios: list[float]) -> tuple[float, bool]:
    if ttl <= 0:
        return 0.0, True
    i = bisect_left(GRID, ttl)
    if i < len(GRID) and GRID[i] == ttl:
        return ratios[i], True
    if i == 0:
        return ratios[0] * ttl / GRID[0], False
    if i == len(GRID):
        return ratios[-1], False
    lo, hi = GRID[i - 1], GRID[i]
    frac = (ttl - lo) / (hi - lo)
    return ratios[i - 1] + frac * (ratios[i] - ratios[i - 1]), False

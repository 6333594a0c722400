"""Fixed-capacity numpy ring buffers for time series."""

from __future__ import annotations

import math

import numpy as np


class Ring:
    """Append-only (t, v) buffer that overwrites its oldest points when full."""

    __slots__ = ("_head", "_n", "_t", "_v")

    def __init__(self, capacity: int = 3600) -> None:
        self._t = np.full(capacity, np.nan)
        self._v = np.full(capacity, np.nan)
        self._n = 0
        self._head = 0

    def append(self, t: float, v: float) -> None:
        self._t[self._head] = t
        self._v[self._head] = v
        self._head = (self._head + 1) % len(self._t)
        self._n = min(self._n + 1, len(self._t))

    def __len__(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        return len(self._t)

    def oldest(self) -> float:
        """Time of the oldest point held (NaN when empty)."""
        if self._n == 0:
            return float("nan")
        return float(self._t[0] if self._n < len(self._t) else self._t[self._head])

    def arrays(self, since: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Chronological copies of the times and values (only ``t >= since`` when given).

        Only the wanted points are copied: a chart of the last 5 minutes does not pay
        for an hour of history.
        """
        if self._n < len(self._t):
            parts = [(self._t[: self._n], self._v[: self._n])]
        else:  # full: oldest at head
            parts = [(self._t[self._head:], self._v[self._head:]),
                     (self._t[: self._head], self._v[: self._head])]
        if since is not None:
            parts = [(t[start:], v[start:]) for t, v in parts
                     if (start := int(np.searchsorted(t, since))) < len(t)]
        if not parts:
            return np.empty(0), np.empty(0)
        if len(parts) == 1:
            return parts[0][0].copy(), parts[0][1].copy()
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def last_finite(self, since: float | None = None) -> tuple[float, float] | None:
        """(time, value) of the newest point with a finite value (at ``t >= since`` when
        given), None without one. The newest point is looked at alone first (the usual
        case), so reading it costs no copy of the window."""
        if self._n == 0:
            return None
        i = self._head - 1
        t, v = float(self._t[i]), float(self._v[i])
        if since is not None and t < since:
            return None
        if math.isfinite(v):
            return t, v
        times, values = self.arrays(since)
        finite = np.flatnonzero(np.isfinite(values))
        if not finite.size:
            return None
        return float(times[finite[-1]]), float(values[finite[-1]])

    def last(self) -> float:
        return float(self._v[self._head - 1]) if self._n else float("nan")

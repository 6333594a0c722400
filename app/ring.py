"""Fixed-capacity numpy ring buffers for time series."""

from __future__ import annotations

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

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Chronological copies of the times and values."""
        if self._n < len(self._t):
            return self._t[: self._n].copy(), self._v[: self._n].copy()
        order = np.r_[self._head : len(self._t), 0 : self._head]
        return self._t[order], self._v[order]

    def last(self) -> float:
        return float(self._v[self._head - 1]) if self._n else float("nan")

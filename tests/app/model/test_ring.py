"""Ring buffers: the newest finite point without copying the window."""

from __future__ import annotations

import math
import random

import numpy as np
from trimtab.app.model.ring import Ring


def reference(ring: Ring, since: float | None) -> tuple[float, float] | None:
    """The newest finite point from the chronological copy (what readers did before)."""
    t, v = ring.arrays(since)
    finite = np.flatnonzero(np.isfinite(v))
    return None if not finite.size else (float(t[finite[-1]]), float(v[finite[-1]]))


def test_the_newest_finite_point_equals_the_one_read_from_a_copy() -> None:
    """NaN and ±Inf tails, a wrapped ring, ``since`` before, inside and after the points."""
    rng = random.Random(1)
    for _ in range(500):
        ring = Ring(capacity=rng.randint(1, 12))
        for i in range(rng.randint(0, 30)):
            ring.append(100.0 + i, rng.choice([1.5, 2.0, math.nan, math.inf, -math.inf, 0.0]))
        for since in (None, 90.0, 100.0 + rng.randint(0, 30), 200.0):
            assert ring.last_finite(since) == reference(ring, since)
    assert Ring().last_finite() is None

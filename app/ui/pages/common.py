"""Helpers the pages share: how many routes a chart shows, percent series, sort keys."""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

TOP_ROUTES = 10  # at most this many curves per chart


def percent_series(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple]:
    """Ratio series (0–1) as percent series (0–100)."""
    return {k: (t, v * 100.0) for k, (t, v) in series.items()}


def sort_key(value: float) -> float:
    """A table cell's sort value: NaN (no data) sorts below every number."""
    return -1.0 if math.isnan(value) else value


def top_n(scores: dict[str, float], n: int, shown: Collection[str] = ()) -> list[str]:
    """The ``n`` highest-scoring keys, exactly ``n`` even when scores tie at the cut-off.

    Ties go to a key already ``shown`` (a chart's legend does not flap between two
    equal routes every refresh), then to the name, so the choice is deterministic.
    NaN scores rank last.
    """
    ranked = sorted(scores, key=lambda k: (-sort_key(scores[k]), k not in shown, k))
    return ranked[:n]

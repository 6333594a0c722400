"""Before/after comparison of matched windows around a change (the card behind a marker).

Given a metric's samples (times and values: a p50/p95/p99 series, an error
rate, a hit ratio, a server's share...) and the change time:

- Windows. ``before`` = [t - W, t); ``after`` = [t + settle, t + settle + W).
  The settle period right after the change is excluded (caches refill,
  connections drain). When ``now`` cuts the after window short, both windows
  shrink to the same length L, so they stay matched.
- Levels. The mean of each window's finite samples (NaN = gap, ignored).
- Normal spread. The before window is cut into ``sub_windows`` equal parts and
  each part's mean is taken. The normal band is the wider of
  [min, max] of those part means and before-mean ± ``k`` × their standard
  deviation. The after mean is *beyond normal spread* when it lies outside it.
- Why this method. Latency series are autocorrelated, so the textbook standard
  error of a mean is far too small and flags every wiggle. The part means
  show how much a window's level wanders on its own before the change; each
  part is shorter than the window, so its mean wanders more than a whole
  window's does: the band errs wide, i.e. towards "not shown to differ".
- Not enough data (fewer than ``min_parts`` parts with samples, or no after
  sample): ``beyond`` is None and the verdict says so; nothing is guessed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Direction of "better" per metric name; None = neither (e.g. a share just moves).
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "p50": False, "p95": False, "p99": False, "error_rate": False, "hit_ratio": True,
    "share": None,
}
Series = tuple[npt.ArrayLike, npt.ArrayLike]


@dataclass(frozen=True)
class Comparison:
    """One metric before vs after a change."""

    metric: str
    before: float  # mean over the before window (NaN when empty)
    after: float
    delta: float  # after - before
    delta_pct: float | None  # relative to before; None when before is 0 or NaN
    spread: float  # standard deviation of the before window's part means
    band: tuple[float, float]  # normal range of the level before the change
    n_before: int
    n_after: int
    window: float  # the matched length actually used (seconds)
    beyond: bool | None  # None: not enough data to say
    direction: str  # better | worse | changed | within spread | unknown
    verdict: str


def matched_windows(change_time: float, window: float, settle: float,
                    now: float | None = None) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(before, after)`` as half-open ``(start, end)`` pairs of equal length."""
    if window <= 0 or settle < 0:
        raise ValueError("window must be > 0 and settle >= 0")
    length = window
    if now is not None:
        length = max(0.0, min(window, now - (change_time + settle)))
    return ((change_time - length, change_time),
            (change_time + settle, change_time + settle + length))


def _in(times: np.ndarray, values: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    mask = (times >= span[0]) & (times < span[1]) & np.isfinite(values)
    return values[mask]


def _part_means(times: np.ndarray, values: np.ndarray, span: tuple[float, float],
                parts: int) -> list[float]:
    edges = np.linspace(span[0], span[1], parts + 1)
    means = []
    for start, end in itertools.pairwise(edges):
        inside = _in(times, values, (float(start), float(end)))
        if inside.size:
            means.append(float(inside.mean()))
    return means


def compare(times: npt.ArrayLike, values: npt.ArrayLike, change_time: float, *,
            window: float, settle: float, metric: str = "", now: float | None = None,
            sub_windows: int = 6, k: float = 2.0, min_parts: int = 3) -> Comparison:
    """Compare one metric's level after the change with its normal spread before it."""
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.shape != v.shape:
        raise ValueError(f"times and values differ in shape: {t.shape} vs {v.shape}")
    before_span, after_span = matched_windows(change_time, window, settle, now)
    length = before_span[1] - before_span[0]
    before, after = _in(t, v, before_span), _in(t, v, after_span)
    parts = _part_means(t, v, before_span, sub_windows) if length > 0 else []
    b_mean = float(before.mean()) if before.size else math.nan
    a_mean = float(after.mean()) if after.size else math.nan
    delta = a_mean - b_mean
    pct = delta / b_mean if b_mean and math.isfinite(b_mean) else None
    spread = float(np.std(parts, ddof=1)) if len(parts) >= 2 else math.nan
    if len(parts) < min_parts or not after.size:
        band = (math.nan, math.nan)
        beyond = None
    else:
        band = (min(min(parts), b_mean - k * spread), max(max(parts), b_mean + k * spread))
        beyond = not band[0] <= a_mean <= band[1]
    direction = _direction(metric, delta, beyond)
    return Comparison(metric, b_mean, a_mean, delta, pct, spread, band, int(before.size),
                      int(after.size), length, beyond, direction,
                      _verdict(metric, b_mean, a_mean, pct, band, beyond, direction,
                               len(parts), min_parts))


def compare_all(series: Mapping[str, Series], change_time: float, *, window: float,
                settle: float, now: float | None = None, sub_windows: int = 6,
                k: float = 2.0) -> dict[str, Comparison]:
    """:func:`compare` for each named series (e.g. p50, p95, p99, error_rate, hit_ratio)."""
    return {name: compare(ts, vs, change_time, window=window, settle=settle, metric=name,
                          now=now, sub_windows=sub_windows, k=k)
            for name, (ts, vs) in series.items()}


def _direction(metric: str, delta: float, beyond: bool | None) -> str:
    if beyond is None:
        return "unknown"
    if not beyond:
        return "within spread"
    higher = HIGHER_IS_BETTER.get(metric.split(".")[-1])
    if higher is None:
        return "changed"
    return "better" if (delta > 0) == higher else "worse"


def _verdict(metric: str, before: float, after: float, pct: float | None,
             band: tuple[float, float], beyond: bool | None, direction: str,
             parts: int, min_parts: int) -> str:
    name = metric or "value"
    if beyond is None:
        return (f"{name}: not enough data to compare ({parts} of {min_parts} before-parts "
                "with samples, or no sample after the settle period)")
    change = f" ({pct:+.1%})" if pct is not None else ""
    text = f"{name}: {before:.4g} → {after:.4g}{change}; normal before: {band[0]:.4g}–{band[1]:.4g}"
    if beyond:
        return f"{text}; beyond the normal spread ({direction})"
    return f"{text}; within the normal spread: not shown to differ"

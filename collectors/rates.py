"""``rate()`` / ``increase()`` over a range ``[W]`` exactly as Prometheus evaluates them.

Pure functions (numpy and the standard library only) for the live model and its tests.

Which samples a range selector takes (``x[W]`` evaluated at time ``T``, in integer
milliseconds as Prometheus stores them):

- Prometheus 2.x (the apt binary here is 2.42) takes ``[T - W, T]``: **both ends
  included** (``matrixIterSlice`` keeps ``t >= mint``). A sample exactly ``W`` before
  ``T`` counts, so at 1 s scrapes and whole-second ``T`` a ``[10s]`` range holds 11.
- Prometheus 3.0 made the range left-open, ``(T - W, T]`` (10 samples in that case).

:data:`LEFT_OPEN` follows the installed binary (2.42: ``False``); every function takes
``left_open`` to evaluate the 3.x way. Extrapolation measures from ``T - W`` in both.

The arithmetic is ``extrapolatedRate`` of promql/functions.go (2.42), float for float:

- a series needs at least two samples in the range, else it has no value (dropped);
- a series that first appears inside the range starts at its first sample there;
- a value lower than the previous one is a counter reset: the previous value is added;
- the first and last samples are extrapolated to the range's ends when they are
  closer to them than 1.1 average sample intervals, else by half an interval;
- a counter is never extrapolated below zero: the start extrapolation stops where
  the line through the samples reaches zero (``durationToZero``);
- ``rate`` divides the extrapolated increase by the range ``W``, not by the time
  the samples span.

One addition Prometheus does not have: ``resets`` marks samples known to follow a
restart that the values alone cannot show (a changed ``_created`` or process start
time, the counter already back above its old value). Such a sample is treated as
a reset too. Without it the result is Prometheus' to the last bit of arithmetic order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEFT_OPEN = False  # Prometheus 2.42 (the apt binary): [T - W, T]; 3.x: (T - W, T]


def to_ms(t: float) -> int:
    """Unix seconds → integer milliseconds, the resolution Prometheus stores and evaluates at."""
    return round(t * 1000.0)


def range_seconds(range_ms: int) -> float:
    """``time.Duration.Seconds()`` of a range given in milliseconds (Go's exact arithmetic)."""
    return float(range_ms // 1000) + float(range_ms % 1000 * 1_000_000) / 1e9


def in_range(t_ms: int, end_ms: int, range_ms: int, left_open: bool = LEFT_OPEN) -> bool:
    """Whether a sample at ``t_ms`` is selected by ``x[range]`` evaluated at ``end_ms``."""
    start = end_ms - range_ms
    return (start < t_ms if left_open else start <= t_ms) and t_ms <= end_ms


def window_slice(times_ms: Sequence[int], end_ms: int, range_ms: int,
                 left_open: bool = LEFT_OPEN) -> slice:
    """The indices of ascending ``times_ms`` that ``x[range]`` at ``end_ms`` selects."""
    start = end_ms - range_ms
    lo = int(np.searchsorted(times_ms, start, side="right" if left_open else "left"))
    hi = int(np.searchsorted(times_ms, end_ms, side="right"))
    return slice(lo, max(lo, hi))


def promql_duration(seconds: float) -> str:
    """A range as PromQL writes it: ``10s``, ``1m30s`` stays ``90s``, ``2500ms``."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a range must be a positive number of seconds, not {seconds!r}")
    ms = to_ms(seconds)
    if ms <= 0:
        raise ValueError(f"a range must be at least 1 ms, not {seconds!r} s")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def extrapolated_rate(samples: Sequence[tuple[int, float]], end_ms: int, range_ms: int,
                      is_counter: bool = True, is_rate: bool = True,
                      resets: Sequence[bool] | None = None) -> float | None:
    """``rate`` (``is_rate``) or ``increase`` of one series, None where Prometheus has no value.

    ``samples`` are the (ms, value) pairs the range selected (see :func:`window_slice`),
    oldest first; ``resets[i]`` (optional) marks sample ``i`` as following a known restart.
    A line-by-line copy of ``extrapolatedRate``: the reference the vectorised
    :func:`extrapolated_rates` is tested against.
    """
    if len(samples) < 2:
        return None
    first_t, first_v = samples[0]
    last_t, last_v = samples[-1]
    result = last_v - first_v
    prev = first_v
    for i, (_, v) in enumerate(samples[1:], start=1):
        if is_counter and (v < prev or (resets is not None and resets[i])):
            result += prev
        prev = v
    range_start = end_ms - range_ms
    duration_to_start = (first_t - range_start) / 1000
    duration_to_end = (end_ms - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (len(samples) - 1)
    if is_counter and result > 0 and first_v >= 0:
        duration_to_zero = sampled * (first_v / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    threshold = average * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else average / 2
    interval += duration_to_end if duration_to_end < threshold else average / 2
    result = result * (interval / sampled)
    if is_rate:
        result = result / range_seconds(range_ms)
    return result


def extrapolated_rates(times_ms: np.ndarray, values: np.ndarray, end_ms: int, range_ms: int,
                       present: np.ndarray | None = None, resets: np.ndarray | None = None,
                       is_counter: bool = True, is_rate: bool = True
                       ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`extrapolated_rate` of many series of one target at once.

    ``times_ms[n]`` are the target's scrape times in the range (ascending, already
    selected), ``values[n, k]`` its ``k`` series at them, ``present[n, k]`` (default
    all) whether series ``j`` had a sample in scrape ``i`` (a series that appears
    or vanishes inside the range), ``resets[n, k]`` known restarts (see the module
    doc). Returns ``(rates[k], valid[k])``: ``valid`` is False (and the rate NaN)
    where a series has fewer than two samples, i.e. Prometheus drops it.
    """
    t = np.asarray(times_ms, dtype=np.int64)
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[0] != t.shape[0]:
        raise ValueError(f"values must be (len(times_ms), k), got {v.shape} for {t.shape[0]} times")
    n, k = v.shape
    m = np.ones((n, k), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    if m.shape != v.shape:
        raise ValueError(f"present must have the shape of values {v.shape}, got {m.shape}")
    count = m.sum(axis=0)
    valid = count >= 2
    out = np.full(k, np.nan)
    if n < 2 or not valid.any():
        return out, valid
    cols = np.arange(k)
    rows = np.arange(n)[:, None]
    first_i = np.argmax(m, axis=0)
    last_i = n - 1 - np.argmax(m[::-1], axis=0)
    first_v, last_v = v[first_i, cols], v[last_i, cols]
    result = last_v - first_v
    if is_counter:
        # The previous *present* sample of each sample (a series may skip a scrape).
        seen = np.maximum.accumulate(np.where(m, rows, -1), axis=0)
        prev_i = np.vstack([np.full((1, k), -1), seen[:-1]])
        prev_v = v[np.maximum(prev_i, 0), cols]
        drop = m & (prev_i >= 0) & (v < prev_v)
        if resets is not None:
            drop |= m & (prev_i >= 0) & np.asarray(resets, dtype=bool)
        for i in np.flatnonzero(drop.any(axis=1)):  # in sample order, as Prometheus adds them
            result = result + np.where(drop[i], prev_v[i], 0.0)
    first_t, last_t = t[first_i], t[last_i]
    range_start = end_ms - range_ms
    with np.errstate(divide="ignore", invalid="ignore"):
        to_start = (first_t - range_start) / 1000
        to_end = (end_ms - last_t) / 1000
        sampled = (last_t - first_t) / 1000
        average = sampled / np.maximum(count - 1, 1)
        if is_counter:
            to_zero = sampled * (first_v / result)
            use_zero = (result > 0) & (first_v >= 0) & (to_zero < to_start)
            to_start = np.where(use_zero, to_zero, to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval = interval + np.where(to_end < threshold, to_end, average / 2)
        rates = result * (interval / sampled)
        if is_rate:
            rates = rates / range_seconds(range_ms)
    out[valid] = rates[valid]
    return out, valid


def steady_rates(first_t: int, last_t: int, n: int, first_v: np.ndarray, last_v: np.ndarray,
                 end_ms: int, range_ms: int) -> np.ndarray:
    """Counter ``rate`` of ``k`` series known to have no reset in the range: every series has
    a sample in each of the ``n >= 2`` scrapes (the first at ``first_t``, the last at
    ``last_t``, values ``first_v[k]`` and ``last_v[k]``) and no value is lower than the one
    before it (nor follows a known restart).

    :func:`extrapolated_rates` of that case, float for float, without the ``n × k`` work: it
    needs only the two end scrapes. The live model knows the case from its ingest (each scrape
    compared once with the one before), which is nearly every tick of a steady fleet.
    """
    if n < 2:
        raise ValueError(f"a rate needs two scrapes, got {n}")
    first_v = np.asarray(first_v, dtype=float)
    last_v = np.asarray(last_v, dtype=float)
    result = last_v - first_v
    range_start = end_ms - range_ms
    # The same int64 → float64 steps as extrapolated_rates' arrays take, so equal bits.
    to_start = np.float64((np.int64(first_t) - range_start) / 1000)
    to_end = np.float64((end_ms - np.int64(last_t)) / 1000)
    sampled = np.float64((np.int64(last_t) - np.int64(first_t)) / 1000)
    average = sampled / np.int64(n - 1)
    threshold = average * 1.1
    with np.errstate(divide="ignore", invalid="ignore"):
        to_zero = sampled * (first_v / result)
        use_zero = (result > 0) & (first_v >= 0) & (to_zero < to_start)
        starts = np.where(use_zero, to_zero, to_start)
        interval = sampled + np.where(starts < threshold, starts, average / 2)
        interval = interval + (to_end if to_end < threshold else average / 2)
        rates = result * (interval / sampled)
        return rates / range_seconds(range_ms)

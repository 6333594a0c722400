"""Prometheus semantics trimtab copies exactly: counter deltas with resets, histogram_quantile."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Quantile:
    """A quantile estimate with the bucket bounds the true value lies between."""

    value: float
    lower: float
    upper: float
    in_inf_bucket: bool = False  # the rank fell in +Inf: ``value`` is a lower bound


def counter_delta(old: float, new: float) -> float:
    """Increase of a counter between two scrapes; a drop means a reset (count from zero)."""
    return new if new < old else new - old


def le_value(le: str) -> float:
    """Normalise a bucket bound: "1", "1.0" and "1e0" are the same bucket."""
    return float(le)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> Quantile | None:
    """Prometheus' ``histogram_quantile`` over (upper bound, cumulative count) pairs.

    Returns None when there is nothing to estimate (fewer than two buckets, no
    +Inf bucket or zero observations) — Prometheus returns NaN there.
    """
    if len(buckets) < 2 or math.isnan(q):
        return None
    ordered = sorted(buckets)
    if not math.isinf(ordered[-1][0]):
        return None
    counts = _monotonic([c for _, c in ordered])
    total = counts[-1]
    if total <= 0:
        return None
    if q < 0:
        return Quantile(-math.inf, -math.inf, -math.inf)
    if q > 1:
        return Quantile(math.inf, math.inf, math.inf, True)
    rank = q * total
    idx = next(i for i, c in enumerate(counts) if c >= rank)
    if idx == len(ordered) - 1:
        top = ordered[-2][0]
        return Quantile(top, top, math.inf, True)
    upper = ordered[idx][0]
    if idx == 0 and upper <= 0:
        return Quantile(upper, upper, upper)
    lower = 0.0 if idx == 0 else ordered[idx - 1][0]
    before = 0.0 if idx == 0 else counts[idx - 1]
    in_bucket = counts[idx] - before
    value = upper if in_bucket == 0 else lower + (upper - lower) * (rank - before) / in_bucket
    return Quantile(value, lower, upper)


def _monotonic(counts: list[float]) -> list[float]:
    """Prometheus fixes buckets that decrease (float noise) by carrying the maximum forward."""
    out, peak = [], 0.0
    for c in counts:
        peak = max(peak, c)
        out.append(peak)
    return out


def sum_buckets(per_target: Sequence[Mapping[float, float]]) -> list[tuple[float, float]]:
    """``sum by (le)`` of bucket rates across instances."""
    total: dict[float, float] = {}
    for buckets in per_target:
        for le, v in buckets.items():
            total[le] = total.get(le, 0.0) + v
    return sorted(total.items())

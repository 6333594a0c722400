"""Prometheus semantics trimtab copies exactly: counter deltas with resets, histogram_quantile."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from .exposition import parse_number


@dataclass(frozen=True)
class Quantile:
    """A quantile estimate with the bucket bounds the true value lies between."""

    value: float
    lower: float
    upper: float
    in_inf_bucket: bool = False  # the rank fell in +Inf: ``value`` is a lower bound


def counter_delta(old: float, new: float, reset: bool = False) -> float:
    """Increase of a counter between two scrapes.

    A drop means a reset: the counter restarted from zero, so the increase is
    ``new`` (never negative), as Prometheus' ``rate``/``increase`` count it.
    ``reset=True`` says the caller saw a restart another way (a changed
    ``_created`` or ``process_start_time_seconds``; see :func:`restarted`),
    which also catches a restart that climbed back above the old value.
    """
    return new if reset or new < old else new - old


def restarted(old_start: float | None, new_start: float | None) -> bool:
    """Whether a ``_created`` / ``process_start_time_seconds`` value shows a restart."""
    return old_start is not None and new_start is not None and new_start != old_start


def le_value(le: str) -> float:
    """Normalise a bucket bound: "1", "1.0" and "1e0" are the same bucket; "+Inf" is infinity."""
    value = parse_number(le)
    if math.isnan(value):
        raise ValueError(f"a bucket bound cannot be NaN: {le!r}")
    return value


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> Quantile | None:
    """Prometheus' ``histogram_quantile`` over (upper bound, cumulative count) pairs.

    Follows promql/quantile.go ``bucketQuantile``: buckets sorted, equal bounds
    merged, counts forced monotonic, linear interpolation inside the bucket
    that holds the rank (the first bucket's lower bound taken as 0). Returns
    None where Prometheus returns NaN: NaN ``q``, no +Inf bucket, fewer than two
    buckets, zero observations, or an empty bucket holding rank 0.
    """
    if math.isnan(q):
        return None
    ordered = _coalesce(sorted(buckets))
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [le for le, _ in ordered]
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
        return Quantile(bounds[-2], bounds[-2], math.inf, True)
    upper = bounds[idx]
    if idx == 0 and upper <= 0:
        return Quantile(upper, -math.inf, upper)
    lower = 0.0 if idx == 0 else bounds[idx - 1]
    before = 0.0 if idx == 0 else counts[idx - 1]
    in_bucket = counts[idx] - before
    if in_bucket == 0:  # only when rank is 0 and the first bucket is empty: 0/0 in Prometheus
        return None
    return Quantile(lower + (upper - lower) * (rank - before) / in_bucket, lower, upper)


def _coalesce(ordered: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Buckets with the same bound (say "1" and "1.0" from two exporters) add up."""
    if len({le for le, _ in ordered}) == len(ordered):  # the usual case: nothing to merge
        return ordered
    out: list[tuple[float, float]] = []
    for le, count in ordered:
        if out and out[-1][0] == le:
            out[-1] = (le, out[-1][1] + count)
        else:
            out.append((le, count))
    return out


def _monotonic(counts: list[float]) -> list[float]:
    """Prometheus fixes buckets that decrease (float noise) by carrying the maximum forward."""
    # max(peak, c) keeps the running peak, as a loop from -inf would, at C speed (the
    # cockpit runs this for every route and instance each cycle on the collector thread).
    return list(accumulate(counts, max, initial=-math.inf))[1:]


def sum_buckets(per_target: Sequence[Mapping[float, float]]) -> list[tuple[float, float]]:
    """``sum by (le)`` of bucket rates across instances (bounds already normalised floats)."""
    if per_target:
        # The usual case, every instance exposing the same bounds in the same order: add up
        # columns in C instead of one dict update per bucket (50 targets × 10 routes a cycle).
        first = list(per_target[0])
        if all(list(buckets) == first for buckets in per_target):
            columns = zip(*(buckets.values() for buckets in per_target))
            return sorted(zip(first, (sum(column, 0.0) for column in columns)))
    total: dict[float, float] = {}
    for buckets in per_target:
        for le, v in buckets.items():
            total[le] = total.get(le, 0.0) + v
    return sorted(total.items())

"""Prometheus semantics trimtab copies exactly: counter deltas with resets, histogram_quantile."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from operator import itemgetter

import numpy as np

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


class BucketFix(Enum):
    """How ``histogram_quantile`` repairs bucket counts that do not rise, by Prometheus version.

    ``ENVELOPE`` (Prometheus up to 2.48, so Debian 12's apt 2.42): ``ensureMonotonic``
    carries a running maximum forward and lifts every count below it. A NaN count is
    left where it is and does not move the maximum; a NaN *first* count makes the
    maximum NaN, and then nothing at all is lifted.

    ``IGNORE_SMALL_DELTAS`` (2.49 onward, prometheus/prometheus#13153; current main's
    ``ensureMonotonicAndIgnoreSmallDeltas``): a step whose relative size is below
    1e-12 (``almost.Equal``) is flattened in either direction, then decreases are
    lifted to the last accepted count. A NaN is "accepted", so the count after it is
    compared with NaN and never lifted.
    """

    ENVELOPE = "envelope"
    IGNORE_SMALL_DELTAS = "ignore-small-deltas"


# The binary trimtab is checked against (tests/collectors/prometheus/
# test_promql_differential.py) is Debian 12's prometheus 2.42.
DEFAULT_BUCKET_FIX = BucketFix.ENVELOPE
SMALL_DELTA_TOLERANCE = 1e-12  # promql/quantile.go smallDeltaTolerance (2.49+)
_MIN_NORMAL = sys.float_info.min  # Go: math.Float64frombits(0x0010000000000000)
_MAX_FLOAT = sys.float_info.max
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?")


def bucket_fix_for_version(version: str) -> BucketFix:
    """The :class:`BucketFix` of a Prometheus version string ("2.42.0+ds", "3.5.0").

    Raises ValueError for anything that is not a version number.
    """
    found = _VERSION.fullmatch(version)
    if found is None:
        raise ValueError(f"not a Prometheus version: {version!r}")
    major, minor = int(found[1]), int(found[2])
    return BucketFix.ENVELOPE if (major, minor) < (2, 49) else BucketFix.IGNORE_SMALL_DELTAS


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]], *,
                       fix: BucketFix = DEFAULT_BUCKET_FIX) -> Quantile | None:
    """Prometheus' ``histogram_quantile`` over (upper bound, cumulative count) pairs.

    Step by step as promql/quantile.go ``bucketQuantile`` (read at current main,
    where it is ``BucketQuantile``; 2.42's differs only in the count repair, see
    :class:`BucketFix`), so the value is the same float64, bit for bit:

    1. q NaN: None (NaN). q < 0: -Inf; q > 1: +Inf, before the buckets are looked at,
       so also when there is nothing to estimate.
    2. Sort by bound; no +Inf bucket: None. Equal bounds ("1" and "1.0") add up.
    3. Repair the counts (``fix``). NaN counts stay in place.
    4. Fewer than two buckets or a total of exactly 0: None.
    5. rank = q * total; Go's ``sort.Search`` over all but the +Inf bucket for the
       first count >= rank (a binary search: with NaN or dips it lands where
       Prometheus' does, not necessarily on the first such bucket).
    6. In +Inf: the second highest bound, flagged. In a first bucket bounded at or
       below 0: that bound. Else start + (end - start) * (rank' / count') with the
       previous bucket subtracted, in that order of operations (another order is an
       ulp off). A NaN result (0/0, NaN counts) is None.

    ``lower``/``upper`` are the bounds of the bucket the search chose (lower 0 for
    the first, -Inf for one bounded at or below 0); with NaN or dips left in the
    counts the value may fall outside them, exactly as Prometheus' does.

    Not reproducible: with three or more series of one bound, Go adds them in the
    order its unstable sort leaves them; here they add in input order.

    Raises ValueError for a NaN bound (trimtab's ``le_value`` never produces one).
    The caller's sequence is not modified.
    """
    if any(math.isnan(le) for le, _ in buckets):
        raise ValueError("a bucket bound cannot be NaN")
    if math.isnan(q):
        return None
    if q < 0:
        return Quantile(-math.inf, -math.inf, -math.inf)
    if q > 1:
        return Quantile(math.inf, math.inf, math.inf, True)
    if not buckets:  # Prometheus outputs no sample for a group without series
        return None
    ordered = _coalesce(sorted(buckets, key=itemgetter(0)))
    if not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return None
    bounds = [le for le, _ in ordered]
    counts = [c for _, c in ordered]
    if fix is BucketFix.ENVELOPE:
        _envelope(counts)
    else:
        _ignore_small_deltas(counts, SMALL_DELTA_TOLERANCE)
    if len(ordered) < 2:
        return None
    total = counts[-1]
    if total == 0:
        return None
    rank = q * total
    b = _search(counts, rank)
    if b == len(ordered) - 1:
        return Quantile(bounds[-2], bounds[-2], math.inf, True)
    end = bounds[b]
    if b == 0 and end <= 0:
        return Quantile(end, -math.inf, end)
    start, count = 0.0, counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    value = start + (end - start) * _divide(rank, count)
    return None if math.isnan(value) else Quantile(value, start, end)


def histogram_quantiles(q: float, bounds: Sequence[float], counts: np.ndarray, *,
                        fix: BucketFix = DEFAULT_BUCKET_FIX) -> list[Quantile | None]:
    """:func:`histogram_quantile` of ``q`` over each row of ``counts`` (``counts[i, j]`` is
    histogram ``i``'s cumulative count at ``bounds[j]``), the same :class:`Quantile`, bit for
    bit, as one call per row.

    For many histograms of one shape at once (each instance's p95 of a route, every tick):
    with ascending distinct bounds ending at +Inf, ``ENVELOPE`` repair and finite counts,
    the repair is a running maximum, Go's ``sort.Search`` over counts that now rise is the
    number of counts below the rank, and ``bucketQuantile``'s arithmetic runs in the same
    order on whole columns. Rows with a NaN or infinite count, and every other shape, take
    :func:`histogram_quantile` itself.
    """
    bounds = [float(b) for b in bounds]
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[1] != len(bounds):
        raise ValueError(f"counts must be (histograms, {len(bounds)}), got {counts.shape}")
    if not (fix is BucketFix.ENVELOPE and len(bounds) >= 2 and not math.isnan(q) and 0 <= q <= 1
            and bounds[-1] == math.inf and all(a < b for a, b in pairwise(bounds))):
        return [histogram_quantile(q, list(zip(bounds, row)), fix=fix) for row in counts.tolist()]
    out: list[Quantile | None] = [None] * counts.shape[0]
    finite = np.isfinite(counts).all(axis=1)
    for i in np.flatnonzero(~finite).tolist():
        out[i] = histogram_quantile(q, list(zip(bounds, counts[i].tolist())), fix=fix)
    rows = np.flatnonzero(finite)
    if not len(rows):
        return out
    fixed = np.maximum.accumulate(counts[rows], axis=1)  # _envelope, without NaN to keep
    total = fixed[:, -1]
    rank = q * total
    b = (fixed[:, :-1] < rank[:, None]).sum(axis=1)  # sort.Search over rising counts
    last = len(bounds) - 1
    at = np.arange(len(rows))
    edges = np.array(bounds)
    end = edges[np.minimum(b, last - 1)]
    after = b > 0
    below = fixed[at, np.maximum(b - 1, 0)]
    start = np.where(after, edges[np.maximum(b - 1, 0)], 0.0)
    count = np.where(after, fixed[at, b] - below, fixed[at, b])
    rank = np.where(after, rank - below, rank)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = start + (end - start) * (rank / count)
    second = bounds[-2]
    for i, bi, v, lo, hi, t in zip(rows.tolist(), b.tolist(), value.tolist(), start.tolist(),
                                   end.tolist(), total.tolist()):
        if t == 0:
            continue
        if bi == last:
            out[i] = Quantile(second, second, math.inf, True)
        elif bi == 0 and hi <= 0:
            out[i] = Quantile(hi, -math.inf, hi)
        elif v == v:  # NaN (0/0) has no value
            out[i] = Quantile(v, lo, hi)
    return out


def _divide(a: float, b: float) -> float:
    """IEEE 754 division as Go does it: x/0 is ±Inf, 0/0 NaN (Python would raise)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _search(counts: list[float], rank: float) -> int:
    """Go's ``sort.Search(len(counts)-1, counts[i] >= rank)``, probe for probe.

    A plain left-to-right scan would differ once NaN or a dip breaks the order.
    """
    lo, hi = 0, len(counts) - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if counts[mid] >= rank:
            hi = mid
        else:
            lo = mid + 1
    return lo


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


def _envelope(counts: list[float]) -> None:
    """2.42's ``ensureMonotonic``, in place: lift counts below the running maximum.

    Comparisons with NaN are false, so a NaN count stays and does not become the
    maximum, unless it is the first, which then freezes the maximum at NaN.
    """
    peak = counts[0]
    for i in range(1, len(counts)):
        if counts[i] > peak:
            peak = counts[i]
        elif counts[i] < peak:
            counts[i] = peak


def _ignore_small_deltas(counts: list[float], tolerance: float) -> None:
    """2.49+'s ``ensureMonotonicAndIgnoreSmallDeltas``, in place.

    ``prev`` is the last count accepted: a flattened or lifted one does not move it,
    anything else (a NaN too, as NaN < prev is false) becomes it.
    """
    prev = counts[0]
    for i in range(1, len(counts)):
        curr = counts[i]
        if curr == prev:
            continue
        if _almost_equal(prev, curr, tolerance) or curr < prev:
            counts[i] = prev
            continue
        prev = curr


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus' util/almost.Equal (its StaleNaN case aside: no scrape yields one)."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    # A NaN abs_sum (one side NaN) stays NaN through min(), as through Go's math.Min.
    return diff / min(abs_sum, _MAX_FLOAT) < epsilon


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

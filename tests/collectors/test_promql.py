"""histogram_quantile, counter resets and cross-instance sums, checked against Prometheus' numbers."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from trimtab.collectors.exposition import parse
from trimtab.collectors.promql import (
    BucketFix,
    Quantile,
    bucket_fix_for_version,
    counter_delta,
    histogram_quantile,
    histogram_quantiles,
    le_value,
    restarted,
    sum_buckets,
)

INF = math.inf
NAN = math.nan
BOUNDS = (0.2, 0.3, 0.45)  # the bucket layout of Prometheus' documented check values


def _scrape_buckets(observations: list[float]) -> dict[float, float]:
    """Observe with prometheus_client, expose, parse with trimtab: le → cumulative count."""
    registry = CollectorRegistry()
    latency = Histogram("latency_seconds", "Latency", buckets=BOUNDS, registry=registry)
    for value in observations:
        latency.observe(value)
    expo = parse(generate_latest(registry).decode())
    return {le_value(dict(s.labels)["le"]): s.value for s in expo.samples if s.name == "latency_seconds_bucket"}


@pytest.mark.parametrize(("observed", "expected", "lower", "upper"), [
    (0.22, 0.295, 0.2, 0.3),
    (0.32, 0.4425, 0.3, 0.45),
])
def test_documented_check_values(observed: float, expected: float, lower: float, upper: float) -> None:
    buckets = sorted(_scrape_buckets([observed] * 40).items())
    result = histogram_quantile(0.95, buckets)
    assert result is not None
    assert result.value == pytest.approx(expected, abs=1e-12)
    assert (result.lower, result.upper, result.in_inf_bucket) == (lower, upper, False)
    assert result.lower <= observed <= result.upper  # the true value lies between the bounds


def test_rank_in_the_inf_bucket_gives_the_top_finite_bound_flagged() -> None:
    buckets = sorted(_scrape_buckets([0.1] * 10 + [2.0] * 90).items())
    assert histogram_quantile(0.95, buckets) == Quantile(0.45, 0.45, INF, True)
    assert histogram_quantile(0.05, buckets) == Quantile(0.1, 0.0, 0.2)


@pytest.mark.parametrize(("q", "expected"), [
    (-0.1, Quantile(-INF, -INF, -INF)),
    (1.5, Quantile(INF, INF, INF, True)),
    (float("nan"), None),
    (0.0, None),  # rank 0 in an empty first bucket: Prometheus computes 0/0 = NaN
])
def test_out_of_range_q_as_prometheus(q: float, expected: Quantile | None) -> None:
    assert histogram_quantile(q, [(0.2, 0.0), (0.3, 10.0), (INF, 10.0)]) == expected


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (-0.1, [(0.1, 0.0), (INF, 0.0)], Quantile(-INF, -INF, -INF)),  # no observations
    (1.1, [(INF, 10.0)], Quantile(INF, INF, INF, True)),            # only a +Inf bucket
    (-0.5, [(0.1, 1.0), (0.2, 2.0)], Quantile(-INF, -INF, -INF)),   # no +Inf bucket
    (1.5, [(0.1, 1.0)], Quantile(INF, INF, INF, True)),             # one bucket, not +Inf
    (1.5, [(0.1, 1.0), (INF, NAN)], Quantile(INF, INF, INF, True)),  # NaN total
])
def test_q_outside_0_1_is_infinite_before_the_buckets_are_looked_at(
        q: float, buckets: list[tuple[float, float]], expected: Quantile) -> None:
    """bucketQuantile checks q before anything else, so ±Inf even with nothing to estimate."""
    assert histogram_quantile(q, buckets) == expected


def test_nan_counts_stay_where_they_are() -> None:
    """Prometheus' fix-up never replaces a NaN count; its binary search then skips past it."""
    # NaN total: rank NaN, no count is >= NaN, the search ends in +Inf.
    assert histogram_quantile(0.5, [(0.1, 5.0), (0.2, 10.0), (INF, NAN)]) == Quantile(
        0.2, 0.2, INF, True)
    # rank 2: the search probes the NaN bucket (not >= 2) and moves right, past the 5.
    assert histogram_quantile(0.1, [(0.1, 5.0), (0.2, NAN), (INF, 20.0)]) == Quantile(
        0.2, 0.2, INF, True)
    # Interpolating against a NaN neighbour is NaN: None, as for every NaN answer.
    assert histogram_quantile(0.4, [(0.1, 5.0), (0.2, NAN), (0.3, 3.0), (INF, 10.0)]) is None


def test_interpolation_rounds_in_prometheus_order() -> None:
    """start + (end-start)*(rank/count): one ulp below (end-start)*rank/count here."""
    result = histogram_quantile(0.95, [(0.01, 48.0), (0.025, 78.0), (INF, 78.0)])
    assert result is not None
    assert result.value == 0.023049999999999998 and (result.lower, result.upper) == (0.01, 0.025)


def test_small_delta_fix_of_prometheus_2_49() -> None:
    """2.49+ ignores relative steps up to 1e-12 in either direction; 2.42 only lifts decreases."""
    buckets = [(1.0, 1e12), (2.0, 1e12 + 0.25), (INF, 2e12)]
    q = (1e12 + 0.1) / 2e12
    envelope = histogram_quantile(q, buckets, fix=BucketFix.ENVELOPE)
    assert envelope is not None and (envelope.lower, envelope.upper) == (1.0, 2.0)
    assert histogram_quantile(q, buckets, fix=BucketFix.IGNORE_SMALL_DELTAS) == Quantile(
        2.0, 2.0, INF, True)
    assert histogram_quantile(q, buckets) == envelope  # the default follows Debian 12's 2.42


def test_nan_interrupts_the_running_maximum_only_from_2_49() -> None:
    """2.42 keeps the maximum across a NaN; 2.49+ compares with the NaN and lets a dip stay."""
    buckets = [(0.1, 5.0), (0.2, NAN), (0.3, 3.0), (INF, 10.0)]
    assert histogram_quantile(0.4, buckets, fix=BucketFix.ENVELOPE) is None  # 3 lifted to 5
    assert histogram_quantile(0.4, buckets, fix=BucketFix.IGNORE_SMALL_DELTAS) == Quantile(
        0.3, 0.3, INF, True)
    # A NaN first bucket: 2.42's maximum starts as NaN and never moves, so nothing is lifted.
    # rank 5: the search probes index 2 first: 3 (2.42) moves right, 6 (2.49+) moves left.
    dip = [(0.1, NAN), (0.2, 6.0), (0.3, 3.0), (0.4, 4.0), (INF, 10.0)]
    assert histogram_quantile(0.5, dip, fix=BucketFix.ENVELOPE) == Quantile(0.4, 0.4, INF, True)
    assert histogram_quantile(0.5, dip, fix=BucketFix.IGNORE_SMALL_DELTAS) is None  # 6 - NaN


@pytest.mark.parametrize(("version", "fix"), [
    ("2.42.0+ds", BucketFix.ENVELOPE), ("2.48.1", BucketFix.ENVELOPE),
    ("2.49.0", BucketFix.IGNORE_SMALL_DELTAS), ("3.5.0", BucketFix.IGNORE_SMALL_DELTAS),
])
def test_fix_for_a_prometheus_version(version: str, fix: BucketFix) -> None:
    assert bucket_fix_for_version(version) is fix


@pytest.mark.parametrize("version", ["", "two", "2", "v2.49.0", "2.x.1"])
def test_unreadable_versions_are_refused(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        bucket_fix_for_version(version)


def test_a_nan_bound_is_refused_and_the_input_left_alone() -> None:
    buckets = [(INF, 3.0), (NAN, 1.0), (0.1, 2.0)]
    with pytest.raises(ValueError, match="NaN"):
        histogram_quantile(0.5, buckets)
    assert buckets[0] == (INF, 3.0) and len(buckets) == 3


def test_division_by_zero_is_ieee_as_in_go() -> None:
    """x/0 is ±Inf and 0/0 NaN in Go; Python would raise ZeroDivisionError."""
    # 2.49+: the NaN resets the accepted count, so -10 stays; rank -5 lands in the empty
    # first bucket: 0 + 0.1 * (-5/0) = -Inf.
    buckets = [(0.1, 0.0), (0.2, 0.0), (0.3, NAN), (INF, -10.0)]
    assert histogram_quantile(0.5, buckets, fix=BucketFix.IGNORE_SMALL_DELTAS) == Quantile(
        -INF, 0.0, 0.1)
    assert histogram_quantile(0.5, buckets, fix=BucketFix.ENVELOPE) is None  # -10 lifted: total 0
    assert histogram_quantile(0.0, [(0.1, 0.0), (INF, 4.0)]) is None  # 0 * (0/0)


def test_the_callers_buckets_are_not_modified() -> None:
    buckets = [(INF, 10.0), (0.3, 9.0), (0.2, 1.0), (0.3, 1.0)]
    before = list(buckets)
    assert histogram_quantile(0.5, buckets) is not None
    assert buckets == before


@pytest.mark.parametrize("buckets", [
    [],
    [(INF, 10.0)],                        # fewer than two buckets
    [(0.2, 1.0), (0.3, 2.0)],             # no +Inf bucket
    [(0.2, 0.0), (0.3, 0.0), (INF, 0.0)],  # no observations
])
def test_nothing_to_estimate_is_none(buckets: list[tuple[float, float]]) -> None:
    assert histogram_quantile(0.5, buckets) is None


def test_unsorted_duplicate_and_non_monotonic_buckets_are_repaired_as_prometheus_does() -> None:
    messy = [(INF, 100.0), (0.3, 99.0), (0.2, 0.0), (0.3, 1.0), (0.45, 99.999999)]
    # 0.3 appears twice (coalesced: 100), 0.45 dips below it (forced up to 100).
    assert histogram_quantile(0.5, messy) == Quantile(0.25, 0.2, 0.3)


def test_first_bucket_at_or_below_zero_returns_its_bound() -> None:
    result = histogram_quantile(0.1, [(-1.0, 5.0), (0.0, 8.0), (INF, 10.0)])
    assert result == Quantile(-1.0, -INF, -1.0)


def test_le_normalisation() -> None:
    assert le_value("1") == le_value("1.0") == le_value("1e0") == 1.0
    assert le_value("+Inf") == le_value("Inf") == INF
    for bad in ("NaN", "1_0", "one", " 1", ""):
        with pytest.raises(ValueError):
            le_value(bad)


def test_counter_delta_and_resets() -> None:
    assert counter_delta(10.0, 15.0) == 5.0
    assert counter_delta(10.0, 3.0) == 3.0  # dropped: restarted from zero, never negative
    assert counter_delta(10.0, 12.0, reset=True) == 12.0  # restarted and climbed past the old value
    assert restarted(1700000000.0, 1700000500.0)
    assert not restarted(1700000000.0, 1700000000.0)
    assert not restarted(None, 1700000000.0)


def test_quantile_of_bucket_rates_summed_across_instances() -> None:
    """Two instances; one restarts between scrapes. Rates per bucket, summed, then interpolated."""
    a_old, a_new = _scrape_buckets([0.22] * 50), _scrape_buckets([0.22] * 150)
    b_old = _scrape_buckets([0.32] * 500)  # before its restart
    b_new = _scrape_buckets([0.32] * 100)  # after: every bucket dropped
    rates = [{le: counter_delta(old[le], new[le]) for le in new} for old, new in ((a_old, a_new), (b_old, b_new))]
    summed = sum_buckets(rates)
    assert summed == [(0.2, 0.0), (0.3, 100.0), (0.45, 200.0), (INF, 200.0)]
    median, p95 = histogram_quantile(0.5, summed), histogram_quantile(0.95, summed)
    assert median is not None and p95 is not None
    assert (median.value, median.lower, median.upper) == (pytest.approx(0.3), 0.2, 0.3)
    assert (p95.value, p95.lower, p95.upper) == (pytest.approx(0.435), 0.3, 0.45)


def test_bounds_spelled_differently_by_two_exporters_are_one_bucket() -> None:
    one = {le_value("1"): 4.0, le_value("+Inf"): 4.0}
    other = {le_value("1.0"): 6.0, le_value("Inf"): 8.0}
    assert sum_buckets([one, other]) == [(1.0, 10.0), (INF, 12.0)]


def _bits(x: Quantile | None) -> tuple[object, ...] | None:
    """A quantile's fields with NaN comparable and the sign of zero kept."""
    if x is None:
        return None
    return tuple("nan" if v != v else (v, math.copysign(1.0, v))
                 for v in (x.value, x.lower, x.upper)) + (x.in_inf_bucket,)


def test_many_histograms_at_once_equal_one_call_each_bit_for_bit() -> None:
    """histogram_quantiles (each instance's p95 of a route in one go) against the scalar
    function the Prometheus differential test proves: dips, NaN, ±Inf and -0.0 counts, no
    +Inf bucket, bounds at or below 0, one bucket, q outside [0, 1] and NaN, both repairs."""
    rng = random.Random(3)
    compared = 0
    for _ in range(1500):
        bounds = sorted({rng.choice([-1.0, 0.0, 0.005, 0.1, 0.25, 0.5, 1.0, 2.5, 1e9])
                         for _ in range(rng.randint(1, 10))})
        if rng.random() < 0.9:
            bounds.append(INF)
        rows = []
        for _ in range(rng.randint(1, 6)):
            count, row = 0.0, []
            for _ in bounds:
                count += rng.choice([0.0, 0.0, 1.0, 0.3, 1e-13, rng.uniform(0, 50)])
                row.append(count)
            if rng.random() < 0.3:
                j = rng.randrange(len(row))
                row[j] = rng.choice([row[j] - rng.uniform(0, 5), 0.0, -0.0, NAN, INF])
            rows.append(row)
        for q in (-0.5, 0.0, 0.01, 0.5, 0.95, 0.99, 1.0, 1.5, NAN, rng.random()):
            for fix in BucketFix:
                many = histogram_quantiles(q, bounds, np.array(rows), fix=fix)
                for row, got in zip(rows, many):
                    assert _bits(got) == _bits(histogram_quantile(q, list(zip(bounds, row)),
                                                                  fix=fix)), (q, bounds, row)
                    compared += 1
    assert compared > 50_000
    with pytest.raises(ValueError, match="counts must be"):
        histogram_quantiles(0.5, [0.1, INF], np.zeros((2, 3)))

"""SLIs from buckets: exact at a bound, interpolated between two with the range it can
carry, and a warning (never a silent guess) where the histogram cannot answer."""

from __future__ import annotations

import math

import pytest
from trimtab.app.slo.sli import availability_sli, latency_sli

INF = math.inf
BUCKETS = [(0.1, 50.0), (0.25, 90.0), (0.5, 98.0), (INF, 100.0)]


def test_exact_at_a_bucket_bound() -> None:
    r = latency_sli(BUCKETS, 0.25)
    assert (r.good, r.low, r.high, r.exact, r.warning) == (0.9, 0.9, 0.9, True, "")
    assert r.bad == pytest.approx(0.1) and r.uncertainty == 0.0
    # 0.30000000000000004 is the bound 0.3: float noise must not turn exact into interpolated.
    assert latency_sli([(0.3, 9.0), (INF, 10.0)], 0.1 + 0.2).exact


def test_between_bounds_interpolated_with_its_range() -> None:
    r = latency_sli(reversed(BUCKETS), 0.175)  # halfway between 0.1 and 0.25
    assert not r.exact and r.bound_s == (0.1, 0.25)
    assert (r.low, r.high) == (0.5, 0.9)
    assert r.good == pytest.approx(0.7)
    assert "interpolated between le=0.1 and le=0.25: 50–90 %" in r.describe()


def test_first_bucket_starts_at_zero() -> None:
    r = latency_sli(BUCKETS, 0.05)
    assert (r.low, r.high, r.bound_s) == (0.0, 0.5, (0.0, 0.1)) and r.good == pytest.approx(0.25)
    assert r.warning == ""


def test_seconds_buckets_for_a_millisecond_api_warn() -> None:
    r = latency_sli([(0.5, 100.0), (1.0, 100.0), (INF, 100.0)], 0.05)
    assert "first bucket" in r.warning and "too coarse" in r.warning
    assert (r.low, r.high) == (0.0, 1.0)


def test_beyond_the_largest_bucket_says_at_least() -> None:
    r = latency_sli(BUCKETS, 2.0)
    assert r.good == 0.98 and (r.low, r.high) == (0.98, 1.0)
    assert "beyond the largest finite bucket (500 ms)" in r.warning and "at least 98 %" in r.warning


@pytest.mark.parametrize(("buckets", "warning"), [
    ([(0.1, 5.0)], "no +Inf"),
    ([(INF, 10.0)], "only a +Inf"),
])
def test_histograms_that_cannot_answer(buckets: list, warning: str) -> None:
    r = latency_sli(buckets, 0.1)
    assert warning in r.warning and math.isnan(r.good)


def test_no_traffic_is_nan_not_a_perfect_score() -> None:
    r = latency_sli([(0.1, 0.0), (INF, 0.0)], 0.1)
    assert math.isnan(r.good) and r.describe() == "no traffic"
    assert math.isnan(availability_sli(0.0, 0.0).good)
    empty = latency_sli([], 0.1)  # no series in the window at all
    assert math.isnan(empty.good) and empty.warning == ""


def test_availability() -> None:
    assert availability_sli(1.0, 1000.0).good == pytest.approx(0.999)
    assert availability_sli(1.0, 1000.0).describe() == "99.9 %"
    assert availability_sli(5.0, 1.0).good == 0.0  # extrapolation noise never goes below 0

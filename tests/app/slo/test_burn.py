"""Burn rates and budgets from raw samples, worked by hand."""

from __future__ import annotations

import math

import pytest
from trimtab.app.slo.burn import (
    FAST,
    WORKBOOK_ALERTS,
    AlertState,
    budget_remaining,
    burn_rate,
    error_ratio,
    summed_rate,
)
from trimtab.app.slo.definition import SLO

LATENCY = SLO("search-latency", "/search", "latency", 0.99, threshold_s=0.25)
AVAIL = SLO("orders-ok", "/orders", "availability", 0.999)


def counter(per_s: float, start: float = 0.0, seconds: int = 60) -> list[tuple[int, float]]:
    """A counter scraped every second from t=0 that grows by ``per_s`` per second."""
    return [(i * 1000, start + per_s * i) for i in range(seconds + 1)]


def test_the_workbook_table() -> None:
    assert [(a.long_s, a.short_s, a.factor) for a in WORKBOOK_ALERTS] == [
        (3600, 300, 14.4), (21600, 1800, 6), (86400, 7200, 3), (259200, 21600, 1)]
    assert FAST.budget_spent == pytest.approx(0.02)  # 2 % of a 30-day budget in an hour
    assert WORKBOOK_ALERTS[1].budget_spent == pytest.approx(0.05)


def test_burn_and_budget() -> None:
    assert burn_rate(0.01, AVAIL) == pytest.approx(10.0)
    assert budget_remaining(0.0005, AVAIL) == pytest.approx(0.5)
    assert budget_remaining(0.002, AVAIL) == pytest.approx(-1.0)  # overspent: said, not clipped
    assert math.isnan(burn_rate(math.nan, AVAIL))


def test_latency_error_ratio_from_bucket_series() -> None:
    # Two instances; per second 100 requests of which 97 at or under 0.25 s.
    buckets = {0.1: [counter(30.0), counter(30.0)], 0.25: [counter(48.5), counter(48.5)],
               math.inf: [counter(50.0), counter(50.0)]}
    ratio = error_ratio(LATENCY, 60_000, 30_000, buckets=buckets)
    assert ratio == pytest.approx(0.03)
    assert burn_rate(ratio, LATENCY) == pytest.approx(3.0)


def test_availability_ratio_and_no_bad_series_is_zero() -> None:
    requests = {"200": [counter(99.0)], "502": [counter(0.5)], "503": [counter(0.5)],
                "404": [counter(3.0)]}
    assert error_ratio(AVAIL, 60_000, 30_000, requests=requests) == pytest.approx(1.0 / 103.0)
    assert error_ratio(AVAIL, 60_000, 30_000, requests={"200": [counter(5.0)]}) == 0.0
    assert math.isnan(error_ratio(AVAIL, 60_000, 30_000, requests={}))
    assert math.isnan(error_ratio(AVAIL, 60_000, 30_000, requests={"200": [counter(0.0)]}))


def test_a_counter_reset_inside_the_window_is_not_a_drop() -> None:
    series = counter(10.0, seconds=30) + [(31_000 + i * 1000, 10.0 * i) for i in range(30)]
    assert summed_rate([series], 60_000, 20_000) == pytest.approx(10.0, rel=0.06)
    assert summed_rate([[(0, 1.0)]], 60_000, 20_000) is None  # one sample: no rate


def test_alert_fires_only_when_both_windows_burn() -> None:
    assert AlertState(FAST, 15.0, 20.0).firing
    assert not AlertState(FAST, 15.0, 2.0).firing  # recovered: the short window resets it
    assert not AlertState(FAST, 2.0, 20.0).firing  # a blip: the long window is not sure

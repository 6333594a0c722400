"""One formatting rule for durations, rates and ranges (issue 20.9, 21.6): inputs → strings."""

from __future__ import annotations

import math

import pytest
from trimtab.app.model import format as fmt
from trimtab.collectors.promql import Quantile


@pytest.mark.parametrize(("seconds", "text"), [
    (0.000807, "807 µs"),
    (0.0000004, "0.400 µs"),
    (0.0, "0 s"),
    (0.00999, "9.99 ms"),
    (0.0123, "12.3 ms"),
    (0.1834, "183 ms"),
    (0.4291666666666675, "429 ms"),
    (0.9996, "1.00 s"),  # rounds into the next unit instead of reading "1000 ms"
    (1.0, "1.00 s"),
    (6.167, "6.17 s"),
    (75.0, "75.0 s"),
    (600.0, "10.0 min"),
    (-0.002, "-2.00 ms"),
    (math.nan, "–"),
    (math.inf, "∞"),
])
def test_duration(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(("q", "text"), [
    # the bounds carry their unit: "807 µs (0–1)" under a "ms" header read as 0–1 µs
    (Quantile(0.000807, 0.0, 0.001), "807 µs (0–1 ms)"),
    (Quantile(0.18, 0.15, 0.2), "180 ms (150–200 ms)"),
    (Quantile(0.0042, 0.0025, 0.005), "4.20 ms (2.5–5 ms)"),
    (Quantile(1.7, 1.0, 2.5), "1.70 s (1–2.5 s)"),
    (Quantile(0.9, 0.5, 1.0), "900 ms (0.5–1 s)"),  # the bounds' unit follows the upper one
    (Quantile(10.0, 10.0, math.inf, True), "≥ 10.0 s (+Inf bucket)"),
    (None, "–"),
])
def test_quantile_bounds_in_the_estimates_unit(q: Quantile | None, text: str) -> None:
    assert fmt.quantile(q) == text


@pytest.mark.parametrize(("per_second", "text"), [
    (0.0, "0.0/s"), (0.04, "0.04/s"), (0.004, "0.004/s"), (2.36, "2.4/s"), (24.9, "24.9/s"),
    (1234.5, "1,234.5/s"),
    (math.nan, "–"),
])
def test_rate(per_second: float, text: str) -> None:
    assert fmt.rate(per_second) == text


@pytest.mark.parametrize(("busy", "text"), [
    # p95 × rate in seconds per second, 3 significant digits like every other figure
    (6.167, "6.17 s/s"),
    (0.0123, "0.0123 s/s"),
    (math.nan, "–"),
])
def test_time_spent(busy: float, text: str) -> None:
    assert fmt.time_spent(busy) == text
    assert "handler" in fmt.TIME_SPENT_HELP  # the header's tooltip says what it means

"""rate()/increase() as Prometheus evaluates them: hand-worked cases and scalar = vectorised.

Every expected value is worked out by hand from ``extrapolatedRate`` (promql/functions.go).
The end-to-end proof against a real Prometheus is tests/app/model/test_prometheus_equality.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from trimtab.collectors.rates import (
    extrapolated_rate,
    extrapolated_rates,
    in_range,
    promql_duration,
    range_seconds,
    steady_rates,
    window_slice,
)

T = 1_000_000  # evaluation time, ms


def test_a_full_window_of_1_s_scrapes_is_the_plain_slope() -> None:
    # 11 samples at 1 s, T-10 s .. T, +10 per second: nothing to extrapolate.
    samples = [(T - 10_000 + 1000 * i, 500.0 + 10 * i) for i in range(11)]
    assert extrapolated_rate(samples, T, 10_000) == 10.0
    assert extrapolated_rate(samples, T, 10_000, is_rate=False) == 100.0


def test_the_range_is_left_closed_as_in_prometheus_2() -> None:
    times = [T - 10_000 + 1000 * i for i in range(11)]
    assert in_range(T - 10_000, T, 10_000) and in_range(T, T, 10_000)
    assert not in_range(T - 10_001, T, 10_000) and not in_range(T + 1, T, 10_000)
    assert window_slice(times, T, 10_000) == slice(0, 11)  # 11 samples in [10s]
    # Prometheus 3.x: (T - W, T], ten samples.
    assert not in_range(T - 10_000, T, 10_000, left_open=True)
    assert window_slice(times, T, 10_000, left_open=True) == slice(1, 11)
    assert window_slice(times, T - 500, 10_000) == slice(0, 10)  # [T-10.5 s, T-0.5 s]


def test_fewer_than_two_samples_has_no_value() -> None:
    assert extrapolated_rate([], T, 10_000) is None
    assert extrapolated_rate([(T, 5.0)], T, 10_000) is None


def test_extrapolation_to_the_ends_and_half_an_interval_beyond_the_threshold() -> None:
    # Samples at T-8.5 s .. T-0.5 s (9 samples, 1 s apart), 100 → 180.
    samples = [(T - 8_500 + 1000 * i, 100.0 + 10 * i) for i in range(9)]
    # to start 1.5 s ≥ 1.1 s: + 0.5 s; to end 0.5 s < 1.1 s: + 0.5 s. 80 · 9/8 / 10.
    assert extrapolated_rate(samples, T, 10_000) == pytest.approx(80 * 9 / 8 / 10, rel=1e-15)


def test_a_counter_is_not_extrapolated_below_zero() -> None:
    # Appears inside the window at value 2 and reaches 22 ten... two seconds later:
    # zero is 0.2 s before its first sample, so the start extrapolates 0.2 s, not 1.1.
    samples = [(T - 2_000, 2.0), (T - 1_000, 12.0), (T, 22.0)]
    assert extrapolated_rate(samples, T, 10_000, is_rate=False) == pytest.approx(
        20 * (2.0 + 0.2) / 2.0, rel=1e-15)


def test_a_drop_is_a_reset_and_a_known_restart_counts_too() -> None:
    samples = [(T - 2_000, 10.0), (T - 1_000, 20.0), (T, 5.0)]  # restarted, now at 5
    # increase = 5 − 10 + 20 = 15; start: zero 2 · 10/15 = 1.33 s back, ≥ 1.1 → + 0.5 s.
    assert extrapolated_rate(samples, T, 10_000, is_rate=False) == pytest.approx(15 * 2.5 / 2)
    climbed = [(T - 2_000, 10.0), (T - 1_000, 20.0), (T, 25.0)]  # restart already past 20
    assert extrapolated_rate(climbed, T, 10_000, is_rate=False, resets=[False, False, True]) \
        == pytest.approx(35 * (2 + 2 * 10 / 35) / 2)  # zero 0.57 s back: extrapolated to it


def test_vectorised_equals_the_line_by_line_copy() -> None:
    """Random windows: gaps, series appearing late, drops, known resets, odd end times."""
    rng = random.Random(7)
    for _ in range(300):
        n, k = rng.randint(1, 14), rng.randint(1, 6)
        times = sorted(rng.sample(range(T - 12_000, T + 1), n))
        end, rng_ms = T, rng.choice([10_000, 10_500, 3_000, 15_000])
        values = np.array([[rng.choice([0.0, rng.uniform(0, 1e6)]) for _ in range(k)]
                           for _ in range(n)])
        present = np.array([[rng.random() > 0.2 for _ in range(k)] for _ in range(n)])
        resets = np.array([[rng.random() > 0.9 for _ in range(k)] for _ in range(n)])
        rates, valid = extrapolated_rates(np.array(times), values, end, rng_ms, present, resets)
        for j in range(k):
            rows = [i for i in range(n) if present[i, j]]
            want = extrapolated_rate([(times[i], values[i, j]) for i in rows], end, rng_ms,
                                     resets=[bool(resets[i, j]) for i in rows])
            assert valid[j] == (want is not None)
            if want is not None:
                assert rates[j] == pytest.approx(want, rel=1e-12, abs=1e-12)
            else:
                assert np.isnan(rates[j])


def test_the_steady_case_from_the_two_end_scrapes_equals_the_full_matrix_bit_for_bit() -> None:
    """No reset in the range: the ends alone give extrapolated_rates' very floats, including
    NaN values, flat series (0 increase), a negative or huge first value, scrapes off the
    second and ranges the samples do not fill."""
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(2000):
        n, k = int(rng.integers(2, 16)), int(rng.integers(1, 40))
        step = int(rng.choice([1000, 997, 250, 15_000]))
        times = 1_700_000_000_000 + np.cumsum(rng.integers(step - 40, step + 40, n))
        steps = rng.choice([0.0, 1.0, 0.5, 3.0, 1e-9], size=(n, k)) * rng.integers(0, 5, (n, k))
        values = rng.choice([0.0, 5.0, -3.0, 1e12, np.nan], size=k) + np.cumsum(steps, axis=0)
        end = int(times[-1] + rng.integers(0, 3000))
        rng_ms = int(rng.choice([10_000, 11_000, 30_000, 60_000]))
        keep = times >= end - rng_ms
        if keep.sum() < 2:
            continue
        times, values = times[keep], values[keep]
        full, valid = extrapolated_rates(times, values, end, rng_ms)
        ends = steady_rates(int(times[0]), int(times[-1]), len(times), values[0], values[-1],
                            end, rng_ms)
        assert valid.all()
        assert np.array_equal(full, ends, equal_nan=True)
        checked += k
    assert checked > 10_000
    with pytest.raises(ValueError, match="two scrapes"):
        steady_rates(T, T, 1, np.zeros(1), np.zeros(1), T, 10_000)


def test_bad_shapes_and_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="values must be"):
        extrapolated_rates(np.array([1, 2]), np.zeros((3, 1)), T, 10_000)
    with pytest.raises(ValueError, match="present must"):
        extrapolated_rates(np.array([1, 2]), np.zeros((2, 1)), T, 10_000, np.ones((2, 2)))
    for bad in (0.0, -1.0, float("nan"), float("inf"), 0.0001):
        with pytest.raises(ValueError, match="range must"):
            promql_duration(bad)


def test_durations_as_promql_writes_them() -> None:
    assert promql_duration(10.0) == "10s" and promql_duration(90.0) == "90s"
    assert promql_duration(2.5) == "2500ms"
    assert range_seconds(10_000) == 10.0 and range_seconds(2_500) == 2.5

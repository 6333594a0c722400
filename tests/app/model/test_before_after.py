"""Before/after comparison on deterministic series (a pure function of arrays)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trimtab.app.model.before_after import compare, compare_all, matched_windows

CHANGE = 10_000.0


def series(before_level: float, after_level: float, noise: float, settle_spike: float = 0.0,
           seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """One sample per second for 10 min around CHANGE; a spike may fill the settle period."""
    rng = np.random.default_rng(seed)
    times = np.arange(CHANGE - 600, CHANGE + 600, 1.0)
    values = np.where(times < CHANGE, before_level, after_level) + rng.normal(0, noise, times.size)
    values[(times >= CHANGE) & (times < CHANGE + 30)] += settle_spike
    return times, values


def test_matched_windows_exclude_settle_and_shrink_together() -> None:
    assert matched_windows(CHANGE, 300, 30) == ((CHANGE - 300, CHANGE),
                                                (CHANGE + 30, CHANGE + 330))
    # Only 100 s of data after the settle period: both windows are 100 s.
    assert matched_windows(CHANGE, 300, 30, now=CHANGE + 130) == ((CHANGE - 100, CHANGE),
                                                                  (CHANGE + 30, CHANGE + 130))
    with pytest.raises(ValueError):
        matched_windows(CHANGE, 0, 30)


def test_a_clear_rise_in_p95_is_beyond_spread_and_worse() -> None:
    t, v = series(200.0, 260.0, noise=10.0)
    result = compare(t, v, CHANGE, window=300, settle=30, metric="p95")
    assert result.beyond is True and result.direction == "worse"
    assert result.before == pytest.approx(200, abs=3) and result.after == pytest.approx(260, abs=3)
    assert result.delta_pct == pytest.approx(0.3, abs=0.03)
    assert "beyond the normal spread (worse)" in result.verdict
    assert result.n_before == 300 and result.n_after == 300


def test_a_change_inside_the_noise_is_not_claimed() -> None:
    t, v = series(200.0, 201.0, noise=10.0)
    result = compare(t, v, CHANGE, window=300, settle=30, metric="p95")
    assert result.beyond is False and result.direction == "within spread"
    assert result.band[0] <= result.after <= result.band[1]
    assert "not shown to differ" in result.verdict


def test_settle_period_is_excluded() -> None:
    t, v = series(200.0, 200.0, noise=5.0, settle_spike=5000.0)
    result = compare(t, v, CHANGE, window=300, settle=30, metric="p99")
    assert result.beyond is False and result.after == pytest.approx(200, abs=3)
    spiked = compare(t, v, CHANGE, window=300, settle=0, metric="p99")
    assert spiked.beyond is True  # the same data, settle not excluded: the spike shows


def test_higher_hit_ratio_is_better_and_share_just_changed() -> None:
    t, v = series(0.30, 0.60, noise=0.02)
    assert compare(t, v, CHANGE, window=300, settle=30, metric="hit_ratio").direction == "better"
    assert compare(t, v, CHANGE, window=300, settle=30, metric="share").direction == "changed"


def test_gaps_are_ignored_and_too_little_data_says_so() -> None:
    t, v = series(0.01, 0.05, noise=0.001)
    v[(t >= CHANGE - 300) & (t < CHANGE - 200)] = np.nan  # scrape gaps: 2 of 6 parts empty
    result = compare(t, v, CHANGE, window=300, settle=30, metric="error_rate")
    assert result.n_before == 200 and result.beyond is True and result.direction == "worse"
    empty = compare(t[t < CHANGE], v[t < CHANGE], CHANGE, window=300, settle=30,
                    metric="error_rate")
    assert empty.beyond is None and math.isnan(empty.after)
    assert "not enough data" in empty.verdict
    sparse = compare(np.array([CHANGE - 10, CHANGE + 40]), np.array([1.0, 2.0]), CHANGE,
                     window=300, settle=30)
    assert sparse.beyond is None and "1 of 3" in sparse.verdict


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        compare([1.0, 2.0], [1.0], CHANGE, window=10, settle=0)


def test_compare_all_names_each_metric() -> None:
    p95 = series(200.0, 150.0, noise=5.0)
    hits = series(0.5, 0.5, noise=0.01, seed=3)
    cards = compare_all({"p95": p95, "hit_ratio": hits}, CHANGE, window=300, settle=30)
    assert cards["p95"].direction == "better"
    assert cards["hit_ratio"].direction == "within spread"

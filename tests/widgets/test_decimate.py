"""Decimation to pixel columns keeps spikes, gaps and the visible x range."""

from __future__ import annotations

import numpy as np
import pytest
from trimtab.widgets.decimate import decimate, visible_slice

HOUR = np.arange(3600, dtype=float)


def strokes(d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, low, high) of each vertical stroke of a pairs result."""
    x, y = d.x.reshape(-1, 2), d.y.reshape(-1, 2)
    vertical = x[:, 0] == x[:, 1]
    return x[vertical, 0], y[vertical].min(axis=1), y[vertical].max(axis=1)


def test_one_sample_spike_in_3600_survives() -> None:
    v = np.full(3600, 0.2)
    v[1234] = 9.0
    d = decimate(HOUR, v, 0.0, 3600.0, 500)
    assert d.connect == "pairs"
    assert len(d) <= 2 * 502  # one stroke per column (+ the two outside the view)
    assert d.y.max() == 9.0 and d.y.min() == 0.2
    x, _, high = strokes(d)
    spike_x = x[high == 9.0]
    assert len(spike_x) == 1 and abs(spike_x[0] - 1234) <= 3600 / 500  # in its own column


def test_nan_gap_stays_a_gap() -> None:
    v = np.ones(3600)
    v[1000:1500] = np.nan  # a stale stretch: the target was down
    d = decimate(HOUR, v, 0.0, 3600.0, 400)
    assert np.isfinite(d.x).all() and np.isfinite(d.y).all()
    x = d.x.reshape(-1, 2)
    inside = (x > 1000 + 9) & (x < 1500 - 9)  # columns (9 s wide) wholly in the gap
    assert not inside.any()
    # no stroke spans the gap either
    assert not ((x[:, 0] < 1000) & (x[:, 1] > 1500)).any()
    assert x.min() < 1000 and x.max() > 1500  # drawn on both sides


def test_x_range_covered_and_columns_cover_the_view() -> None:
    v = np.sin(HOUR / 100.0)
    d = decimate(HOUR, v, 600.5, 3000.5, 240)
    x, _, _ = strokes(d)
    inside = x[(x > 600.5) & (x < 3000.5)]
    assert len(inside) == 240  # every column has its stroke
    assert (d.x.min(), d.x.max()) == (600.0, 3001.0)  # the line leaves the view at both edges
    assert np.all(np.diff(d.x[0::2]) > 0)  # left to right


def test_neighbouring_strokes_touch_like_the_raw_line() -> None:
    v = np.where(HOUR < 1800, 0.0, 1.0)  # a step: the raw line jumps between two columns
    d = decimate(HOUR, v, 0.0, 3600.0, 100)
    _, low, high = strokes(d)
    assert ((low == 0.0) & (high == 1.0)).sum() == 1  # the step is drawn, once


def test_pause_without_nan_is_bridged() -> None:
    t = np.r_[np.arange(0.0, 1000.0), np.arange(2000.0, 3600.0)]  # no samples 1000..2000
    d = decimate(t, np.ones(len(t)), 0.0, 3600.0, 200)
    x = d.x.reshape(-1, 2)
    assert ((x[:, 0] < 1000) & (x[:, 1] > 2000)).sum() == 1  # one slanted stroke over the pause


def test_few_points_pass_through_with_their_nans() -> None:
    t, v = HOUR[:100], np.r_[np.ones(50), np.nan, np.ones(49)]
    d = decimate(t, v, 0.0, 3600.0, 1000)
    assert d.connect == "finite"
    assert np.array_equal(d.x, t) and np.array_equal(d.y, v, equal_nan=True)


def test_visible_slice_keeps_one_sample_outside_each_edge() -> None:
    s = visible_slice(HOUR, 100.5, 200.5)
    assert (HOUR[s][0], HOUR[s][-1]) == (100.0, 201.0)
    s = visible_slice(HOUR, 100.0, 200.0)  # samples on the edges are the ones kept
    assert (HOUR[s][0], HOUR[s][-1]) == (100.0, 200.0)
    assert visible_slice(HOUR, -5.0, 10.0).start == 0


@pytest.mark.parametrize(("t", "v", "x0", "x1", "columns", "message"), [
    (HOUR, HOUR[:10], 0.0, 1.0, 10, "differ in length"),
    (HOUR, HOUR, 5.0, 5.0, 10, "x1 > x0"),
    (HOUR, HOUR, 0.0, 5.0, 0, "columns >= 1"),
])
def test_bad_input_is_refused(t, v, x0, x1, columns, message) -> None:
    with pytest.raises(ValueError, match=message):
        decimate(t, v, x0, x1, columns)



def test_many_series_at_once_equal_one_at_a_time() -> None:
    from trimtab.widgets.decimate import decimate_many

    rng = np.random.default_rng(7)
    t = 1_700_000_000.0 + np.arange(4000, dtype=float)
    t[3005:] += 50.0  # a pause in scraping, several columns wide
    values = [rng.uniform(0, 1, 4000) for _ in range(4)]
    values[1][2000:2100] = np.nan  # a gap in one series only
    values[2][:] = np.nan  # a series that never had a sample in view
    x0, x1, columns = t[0] + 300.5, t[0] + 4060.0, 517
    together = decimate_many(t, values, x0, x1, columns)
    for v, d in zip(values, together):
        alone = decimate(t, v, x0, x1, columns)
        assert d.connect == alone.connect == "pairs"
        assert np.array_equal(d.x, alone.x) and np.array_equal(d.y, alone.y)
    assert len(together[2]) == 0
    slanted = together[0].x[0::2] != together[0].x[1::2]
    assert slanted.sum() == 1  # the pause
    with pytest.raises(ValueError, match="as many as times"):
        decimate_many(t, [values[0][:10]], x0, x1, columns)

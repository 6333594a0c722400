"""TimeSeriesView's decimation keeps spikes and gaps."""

from __future__ import annotations

import numpy as np

from trimtab.widgets.timeseries import peak_decimate


def test_decimation_keeps_each_bins_extremes() -> None:
    t = np.arange(10_000, dtype=float)
    v = np.zeros(10_000)
    v[5_123] = 99.0  # one spike must survive
    v[7_000] = -3.0
    dt, dv = peak_decimate(t, v, 100)
    assert len(dt) == len(dv) == 200
    assert dv.max() == 99.0 and dv.min() == -3.0
    assert np.all(np.diff(dt) >= 0)


def test_all_nan_bins_stay_gaps_and_short_series_pass_through() -> None:
    t = np.arange(1_000, dtype=float)
    v = np.ones(1_000)
    v[100:300] = np.nan
    _, dv = peak_decimate(t, v, 50)
    assert np.isnan(dv).sum() >= 2 * 8  # bins fully inside the gap
    same_t, same_v = peak_decimate(t[:50], v[:50], 50)
    assert np.array_equal(same_t, t[:50]) and np.array_equal(same_v, v[:50], equal_nan=True)

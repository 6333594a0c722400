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


def test_export_png_svg_csv(qtbot, tmp_path) -> None:
    import csv

    import pytest
    from PySide6.QtGui import QImage
    from trimtab.widgets.timeseries import TimeSeriesView

    view = TimeSeriesView("p95", "latency", "s", "empty")
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    view.set_series({"/a": (np.array([1.0, 2.0, 3.0]), np.array([0.1, np.nan, 0.3])),
                     "/b": (np.array([2.0]), np.array([0.5]))})
    view.export(str(tmp_path / "c.png"))
    assert not QImage(str(tmp_path / "c.png")).isNull()
    view.export(str(tmp_path / "c.svg"))
    assert "<svg" in (tmp_path / "c.svg").read_text()
    view.export(str(tmp_path / "c.csv"))
    rows = list(csv.reader((tmp_path / "c.csv").open()))
    assert rows == [["time", "/a", "/b"], ["1.000", "0.1", ""], ["2.000", "", "0.5"],
                    ["3.000", "0.3", ""]]
    with pytest.raises(ValueError, match="png, .svg or .csv"):
        view.export(str(tmp_path / "c.gif"))

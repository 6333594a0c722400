"""One colour per entity on every chart; axes that never double a prefix or draw float
noise (issue 20.8, 20.9, 21.5, 21.6). Real widgets, offscreen."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from trimtab.widgets.axis import padded_range, value_text
from trimtab.widgets.palette import SERIES_COLOURS, Palette
from trimtab.widgets.timeseries import TimeSeriesView
from trimtab.widgets.timeseries_layer import _dashed_path
from trimtab.widgets.waterfall import WaterfallView

ROUTES = [f"/route/{i}" for i in range(30)]


def test_a_key_keeps_its_style_whatever_order_charts_ask() -> None:
    palette = Palette()
    first = {key: palette.style(key) for key in ROUTES}
    for key in reversed(ROUTES):
        assert palette.style(key) == first[key]
    # the first keys get the most distinct colours (Okabe–Ito), in the order first drawn
    fresh = Palette()
    assert [fresh.colour(k) for k in ("api-1", "api-2", "/search")] == list(SERIES_COLOURS[:3])


def test_distinct_keys_get_distinct_colours_until_the_colours_run_out() -> None:
    palette = Palette()
    colours = [palette.colour(key) for key in ROUTES[:len(SERIES_COLOURS)]]
    assert len(set(colours)) == len(SERIES_COLOURS)  # 11 routes, 11 colours: none shared
    styles = [palette.style(key) for key in ROUTES]
    assert len(set(styles)) == len(ROUTES)  # beyond: (colour, width) pairs stay distinct


def test_percentiles_and_status_classes_are_grey_never_an_entity_colour() -> None:
    palette = Palette()
    for key in ("p50", "p95", "p99", "p99.9", "2xx", "429", "5xx"):
        assert palette.colour(key) not in SERIES_COLOURS
    # and they take no colour away from the routes
    assert len({palette.colour(k) for k in ROUTES[:len(SERIES_COLOURS)]}) == len(SERIES_COLOURS)


def test_two_charts_sharing_a_palette_draw_a_route_in_one_colour(qtbot) -> None:
    palette = Palette()
    a = TimeSeriesView("a", "p95 latency", "s", "empty", palette=palette)
    b = TimeSeriesView("b", "hit ratio (%)", "", "empty", y_range=(0, 100))
    qtbot.addWidget(a)
    qtbot.addWidget(b)
    t = np.arange(10.0)
    a.set_series({"/orders": (t, t * 0 + 0.1), "/search": (t, t * 0 + 0.2)})
    b.set_series({"/search": (t, t * 0 + 50.0)})  # its own palette: first key, some colour
    b.set_palette(palette)
    pen = {chart: {k: c.opts["pen"].color().name().upper() for k, c in chart.curves.items()}
           for chart in (a, b)}
    assert pen[a]["/search"] == pen[b]["/search"] == palette.colour("/search")
    assert pen[a]["/orders"] != pen[a]["/search"]
    # the stroke layer draws with that colour too, not only the legend
    assert b.layer._pens["/search"].color().name().upper() == palette.colour("/search")


@pytest.mark.parametrize("lo, hi", [(0.4291666666666675, 0.4291666666666676), (0.0, 1e-13)])
def test_min_span(lo: float, hi: float) -> None:
    lo2, hi2 = padded_range(lo, hi, floor=1e-3)
    assert lo2 <= lo and hi2 >= hi and hi2 - lo2 >= max(0.04 * hi, 1e-3) * 0.999
    assert (lo2 + hi2) / 2 == pytest.approx((lo + hi) / 2)


def test_wide_range_left_alone() -> None:
    assert padded_range(0.1, 0.9, floor=1e-3) == (0.1, 0.9)


@pytest.mark.parametrize("value, units, text", [
    (0.4291666666666675, "s", "429 ms"), (0.000807, "s", "0.807 ms"), (1.5, "s", "1500 ms"),
    (33.33333333, "", "33.3"), (float("nan"), "s", "–")])
def test_readout_text(value: float, units: str, text: str) -> None:
    assert value_text(value, units) == text


def test_near_constant_series_is_drawn_flat_with_round_ticks(qtbot) -> None:
    view = TimeSeriesView("p95", "p95 latency", "s", "empty")
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    t = np.arange(60.0)
    wobble = 0.4291666666666675 + 1e-16 * (t % 2)  # 1e-13 ms: float noise, not a signal
    view.set_series({"/r": (t, wobble)})
    vb = view.plot.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: vb.viewRange()[1][1] - vb.viewRange()[1][0] > 0.01, timeout=5000)
    y0, y1 = vb.viewRange()[1]
    assert y1 - y0 >= 0.04 * 0.429 * 0.99 and y0 < 0.4291 < y1
    axis = view.plot.getAxis("left")
    ticks = [v for level in axis.tickValues(y0 * 1e3, y1 * 1e3, 300) for v in level[1]]
    labels = axis.tickStrings(ticks, 1.0, ticks[1] - ticks[0])
    assert all(len(label.split(".")[-1]) <= 1 or "." not in label for label in labels), labels


def test_latency_axis_is_always_ms_never_a_doubled_prefix(qtbot) -> None:
    view = TimeSeriesView("p95", "p95 latency", "s", "empty")
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    axis = view.plot.getAxis("left")
    t = np.arange(10.0)
    for level in (0.0005, 0.2, 3.0):  # µs, ms and s ranges: pyqtgraph flipped ms ↔ s here
        view.set_series({"/r": (t, t * 0 + level)})
        qtbot.waitUntil(lambda level=level: view.plot.getPlotItem().getViewBox()
                        .viewRange()[1][0] < level < view.plot.getPlotItem().getViewBox()
                        .viewRange()[1][1], timeout=5000)
        assert "(ms)" in axis.labelString() and "mms" not in axis.labelString()
        assert "(s)" not in axis.labelString()


def test_waterfall_axis_reads_ms_not_mms(qtbot) -> None:
    view = WaterfallView()
    qtbot.addWidget(view)
    view.set_spans("GET /search", [("GET /search", 0.0, 0.5), ("db", 0.1, 0.2)])  # under 1 ms
    label = view.plot.getAxis("bottom").labelString()
    assert "(ms)" in label and "mms" not in label


def test_percentiles_differ_by_line_style() -> None:
    palette = Palette()
    styles = {key: palette.style(key) for key in ("p50", "p95", "p99")}
    assert len({s.dash for s in styles.values()}) == 3
    assert len({s.colour for s in styles.values()}) == 1


def test_three_share_lines_at_a_third_are_told_apart_by_dashes(qtbot) -> None:
    view = TimeSeriesView("share", "share (%)", "", "empty", y_range=(0, 100))
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    t = np.arange(120.0)
    rng = np.random.default_rng(3)
    shares = {f"api-{i}": (t, 33.3 + rng.normal(0, 0.3, len(t))) for i in (1, 2, 3)}
    shares["api-4"] = (t, t * 0 + 80.0)  # far from the others: stays solid
    view.set_series(shares)
    dashes = {k: c.opts["pen"].style() for k, c in view.curves.items()}
    assert dashes["api-1"] == Qt.PenStyle.SolidLine  # the first keeps its solid line
    assert dashes["api-2"] != Qt.PenStyle.SolidLine and dashes["api-3"] != Qt.PenStyle.SolidLine
    assert dashes["api-2"] != dashes["api-3"]
    assert dashes["api-4"] == Qt.PenStyle.SolidLine
    # the stroke layer draws those dashes, not only the legend
    assert view.layer._pens["api-2"].style() == dashes["api-2"]
    # colours stay the entity's: a dash is added, the colour is not changed
    assert view.curves["api-2"].opts["pen"].color().name().upper() == view.palette.colour("api-2")


def test_a_dashed_curve_is_one_path_so_its_pattern_runs_on() -> None:
    # Drawn as one line per pixel column, each segment restarted the dash at "on": solid.
    x = np.arange(50.0)
    segs = np.column_stack([x[:-1], x[:-1] * 0, x[1:], x[1:] * 0])
    path = _dashed_path(segs, 1.0, 1.0, 0.0, 0.0)
    assert len(path.toSubpathPolygons()) == 1
    gap = np.delete(segs, 20, axis=0)  # a NaN gap in the data splits the curve in two
    assert len(_dashed_path(gap, 1.0, 1.0, 0.0, 0.0).toSubpathPolygons()) == 2


def test_a_flat_zero_error_ratio_is_not_drawn_on_a_negative_axis(qtbot) -> None:
    view = TimeSeriesView("errors", "errors (%)", "", "empty")
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    t = np.arange(30.0)
    view.set_series({"5xx %": (t, t * 0.0)})
    vb = view.plot.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: vb.viewRange()[1][1] >= 0.99, timeout=5000)
    y0, y1 = vb.viewRange()[1]
    assert y0 >= 0.0 and y1 - y0 >= 0.99  # one percentage point at least, from 0


@pytest.mark.parametrize("label, units, column", [
    ("p95 latency", "s", "/a (s)"),  # seconds, as the model holds them; the axis shows ms
    ("hit ratio (%)", "", "/a (%)"),
    ("requests", "", "/a"),
])
def test_csv_columns_say_their_unit(qtbot, tmp_path, label: str, units: str, column: str) -> None:
    import csv

    view = TimeSeriesView("chart", label, units, "empty")
    qtbot.addWidget(view)
    view.set_series({"/a": (np.array([1.0, 2.0]), np.array([0.25, 0.5]))})
    view.export(str(tmp_path / "c.csv"))
    rows = list(csv.reader((tmp_path / "c.csv").open()))
    assert rows[0] == ["time (unix s)", column]
    assert rows[1] == ["1.000", "0.25"]

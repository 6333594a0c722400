"""The Slow routes heatmap on the real demo fleet, and the jump from a cell or a chart
point to the Traces page (real window, offscreen, pytest-qt)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from trimtab.agent.buckets import LATENCY_BUCKETS
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.traces import EXEMPLAR_COLUMN

ROUTE = "/search"


@pytest.fixture()
def window(qtbot, model: FleetModel) -> Iterator:
    from trimtab.app.ui.window import MainWindow

    def some_history() -> None:
        assert len(model.heat(ROUTE)[0]) >= 3

    qtbot.waitUntil(some_history, timeout=30_000)
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    win.tabs.setCurrentWidget(win.routes)
    try:
        qtbot.waitUntil(lambda: win.routes.table.select_key(ROUTE), timeout=20_000)
        yield win
    finally:
        win.close()


def jump(qtbot, win, click) -> tuple:
    """Run ``click``; the window itself follows the page's request to the Traces tab."""
    with qtbot.waitSignal(win.routes.traces_window_requested, timeout=5_000) as blocker:
        click()
    assert win.tabs.currentWidget() is win.traces  # MainWindow.show_trace_window did it
    return tuple(blocker.args)


def listed(win) -> list[dict]:
    return list(win.traces._by_key.values())


def test_heatmap_holds_the_selected_routes_bucket_rates(qtbot, window, model: FleetModel) -> None:
    heat = window.routes.heatmap
    qtbot.waitUntil(lambda: heat.point_count() > 3 * len(heat.bounds), timeout=20_000)
    assert heat.bounds.tolist() == [*LATENCY_BUCKETS, math.inf]
    t, _, z = model.heat(ROUTE)
    rate_t, rate = model.snapshot("rate", None, [ROUTE])[ROUTE]
    # The buckets of a tick add up to the route's request rate of that tick. Not to the
    # digit: the request rate sums rate() over the per-status series, and a status series
    # first seen inside the window (the demo's occasional 500) is extrapolated by
    # Prometheus's first-sample rule, while the histogram's +Inf bucket has no such start
    # (CI saw 15.04 against 14.85). Prometheus gives the same two numbers.
    i = int(np.searchsorted(rate_t, t[-1]))
    assert float(np.nansum(z[-1])) == pytest.approx(rate[i], rel=0.05)
    assert rate[i] > 0
    # What the view holds: the cell under a point is that tick's bucket (hi bound inclusive).
    i = drawn_tick(heat, len(heat.t) - 1)
    x, _ = heat.cell_centre(i, 10)
    cell = heat.cell_at(x, float(np.log10(LATENCY_BUCKETS[10])))
    assert cell is not None and (cell.lo_s, cell.hi_s) == LATENCY_BUCKETS[9:11]
    assert (cell.t0, cell.t1) == (heat.t[i - 1], heat.t[i]) and cell.value == heat.z[i, 10]


def drawn_tick(heat, i: int) -> int:
    """``i``, or the nearest earlier tick with a column of its own (jitter can make two
    ticks share one; the view then shows the nearer)."""
    while heat.cell_centre(i, 0) is None:
        i -= 1
    return i


def busiest_cell(heat, age_s: float = 4.0) -> tuple[float, float]:
    """Data coordinates (time, log10 s) of the fullest bucket of a tick ``age_s`` old
    (its traces have been polled by then), as the view holds it."""
    i = drawn_tick(heat, int(np.searchsorted(heat.t, heat.t[-1] - age_s)))
    return heat.cell_centre(i, int(np.nanargmax(heat.z[i, :-1])))


def test_cell_click_lists_only_that_routes_traces_in_window_and_range(qtbot, window,
                                                                      model: FleetModel) -> None:
    heat = window.routes.heatmap
    qtbot.waitUntil(lambda: len(heat.t) > 8, timeout=30_000)
    x, y = busiest_cell(heat)
    route, min_ms, max_ms, t0, t1 = jump(qtbot, window, lambda: heat.click_at(x, y))
    cell = heat.cell_at(x, y)
    assert cell is not None and route == ROUTE
    assert (min_ms, max_ms) == (cell.lo_s * 1000, cell.hi_s * 1000)
    assert t1 == cell.t1 and t0 == pytest.approx(t1 - model.rate_window)
    assert window.tabs.currentWidget() is window.traces
    assert window.traces.time_window == (t0, t1)
    qtbot.waitUntil(lambda: window.traces.table.rowCount() > 0, timeout=10_000)
    for trace in listed(window):
        assert trace["route"] == ROUTE
        assert min_ms <= trace["duration_ms"] <= round(max_ms, 2) + 0.01  # spin box: 2 decimals
        assert t0 <= trace["start"] + trace["duration_ms"] / 1000 <= t1
    everything = model.query_traces(ROUTE)
    assert len(everything) > len(listed(window))  # the filter did narrow the list
    window.traces.set_time_window(None)  # "Any time" keeps route and range
    assert window.traces.table.rowCount() >= len(listed(window)) > 0


def test_exemplar_traces_are_marked_and_listed_first(qtbot, window, model: FleetModel) -> None:
    heat = window.routes.heatmap
    qtbot.waitUntil(lambda: len(heat.t) > 8, timeout=30_000)

    def exemplar_with_trace() -> tuple[str, float, float]:
        polled = {t["trace_id"] for t in model.query_traces(ROUTE)}
        log = model.read(lambda m: dict(m.exemplars._routes.get(ROUTE, {})))
        found = [(tid, s, at) for tid, (s, at) in log.items()
                 if tid in polled and at < heat.t[-1] - 1.0]
        assert found
        return found[-1]

    qtbot.waitUntil(lambda: bool(exemplar_with_trace()), timeout=20_000)
    trace_id, seconds, stamp = exemplar_with_trace()
    # The first drawn tick after the exemplar: its rate window holds that request.
    i = int(np.searchsorted(heat.t, stamp))
    while heat.cell_centre(i, 0) is None:
        i += 1
    x, y = heat.cell_centre(i, int(np.searchsorted(heat.bounds, seconds)))
    jump(qtbot, window, lambda: heat.click_at(x, y))
    assert trace_id in window.traces.exemplar_ids
    marks = window.traces.table.column_texts(EXEMPLAR_COLUMN)
    assert marks[0] == "★ exemplar"
    assert marks == sorted(marks, key=lambda m: m != "★ exemplar")  # all marked ones on top
    ids = window.traces.table.column_texts(EXEMPLAR_COLUMN - 1)
    assert trace_id in ids[: marks.count("★ exemplar")]


def test_p95_point_click_lists_traces_at_least_that_slow(qtbot, window, model: FleetModel) -> None:
    chart = window.routes.percentiles
    qtbot.waitUntil(lambda: chart.point_count() > 10, timeout=30_000)
    t, p95 = chart.data["p95"]
    x, y = float(t[-4]), float(np.nanmax(p95[-4:-3]))
    route, min_ms, max_ms, t0, t1 = jump(qtbot, window, lambda: chart.pointClicked.emit(x, y))
    assert (route, min_ms, max_ms) == (ROUTE, pytest.approx(y * 1000), math.inf)
    assert t0 == pytest.approx(x - model.rate_window) and t1 == pytest.approx(x + 1.0)
    qtbot.waitUntil(lambda: window.traces.table.rowCount() > 0, timeout=10_000)
    assert window.traces.max_ms.value() == 0  # "no limit"
    for trace in listed(window):
        assert trace["route"] == ROUTE and trace["duration_ms"] >= round(min_ms, 2) - 0.01
        assert t0 <= trace["start"] + trace["duration_ms"] / 1000 <= t1


# The widget alone, on hand-made arrays (no fleet).

def geometric_view(qtbot):
    from trimtab.widgets.heatmap import HeatmapView

    view = HeatmapView("heat", "Select a route.")
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    bounds = np.array([0.001 * 2 ** k for k in range(8)] + [math.inf])  # 1 ms … 128 ms, +Inf
    t = 1000.0 + np.arange(20.0)
    z = np.zeros((20, len(bounds)), dtype=np.float32)
    z[:, 3] = 5.0  # every tick: 5 req/s in (4, 8] ms
    z[7] = np.nan  # a tick with no data
    view.set_heat(t, bounds, z)
    view.set_x_window(t[0] - 1, t[-1])
    return view, t, bounds, z


def test_cells_map_to_ticks_and_buckets(qtbot) -> None:
    from trimtab.widgets.heatmap import bucket_label, describe

    view, t, bounds, _ = geometric_view(qtbot)
    assert view.point_count() == 19 * len(bounds)  # the NaN tick holds nothing
    cell = view.cell_at(t[5] - 0.5, math.log10(0.006))
    assert cell is not None and (cell.t0, cell.t1) == (t[4], t[5])
    assert (cell.lo_s, cell.hi_s, cell.value) == (0.004, 0.008, 5.0)
    assert describe(cell).endswith(" · 4–8 ms · 5 req/s")
    assert math.isnan(view.cell_at(t[7] - 0.5, math.log10(0.006)).value)
    assert view.cell_at(t[-1] + 5, math.log10(0.006)) is None  # after the last tick
    top = view.cell_at(t[0], math.log10(0.2))  # the +Inf bucket is drawn above 128 ms
    assert top is not None and math.isinf(top.hi_s) and bucket_label(top.lo_s, top.hi_s) == "> 128 ms"
    assert bucket_label(0.8, 1.25) == "800 ms–1.25 s" and bucket_label(1.0, 2.5) == "1–2.5 s"


def test_a_real_mouse_click_on_a_cell_emits_its_bounds(qtbot) -> None:
    from PySide6.QtCore import QPointF, Qt

    view, t, _, _ = geometric_view(qtbot)
    vb = view.plot.getPlotItem().getViewBox()
    scene_pos = vb.mapViewToScene(QPointF(t[10] - 0.5, math.log10(0.006)))
    pos = view.plot.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.cellClicked, timeout=2_000) as blocker:
        qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [t[9], t[10], 0.004, 0.008]


def test_jittered_ticks_fill_their_columns_and_a_pause_is_a_gap(qtbot) -> None:
    from trimtab.widgets.heatmap import HeatmapView

    view = HeatmapView("heat", "empty")
    qtbot.addWidget(view)
    t = 100.0 + np.array([0, 1, 2.45, 3, 4, 5, 15, 16])  # a late tick, then 10 s paused
    z = np.arange(len(t), dtype=np.float32)[:, None] + np.ones((1, 2), dtype=np.float32)
    view.set_heat(t, np.array([0.1, math.inf]), z)
    assert all(view.cell_centre(i, 0) is not None for i in range(len(t)))  # every tick drawn
    assert [view.cell_at(x, -1.1).value for x in (101.5, 102.5, 103.5)] == [3.0, 4.0, 5.0]
    assert view.cell_at(110.0, -1.1) is None  # the pause
    image = view.image.image
    assert np.isnan(image[8:14]).all() and np.isfinite(image[:6]).all()


def test_non_geometric_bounds_keep_a_true_log_axis(qtbot) -> None:
    from trimtab.widgets.heatmap import HeatmapView

    view = HeatmapView("heat", "empty")
    qtbot.addWidget(view)
    bounds = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 1.0, math.inf])  # uneven, in log terms
    z = np.arange(2 * len(bounds), dtype=np.float32).reshape(2, -1) + 1
    view.set_heat(np.array([10.0, 11.0]), bounds, z)
    image = view.image.image
    assert image.shape[0] == 2 and image.shape[1] > len(bounds)  # spread over log rows
    # Every bucket gets rows in proportion to its log width: (0.1, 1] is a whole decade.
    rows = view._row_map
    assert (rows == 5).sum() > 3 * (rows == 1).sum()
    cell = view.cell_at(10.5, math.log10(0.3))
    assert (cell.lo_s, cell.hi_s, cell.value) == (0.1, 1.0, z[1, 5])


def test_empty_states_and_csv_export(qtbot, tmp_path) -> None:
    from trimtab.widgets.heatmap import HeatmapView

    view = HeatmapView("heat", "Select a route.")
    qtbot.addWidget(view)
    view.show()
    view.set_heat(np.empty(0), np.empty(0), np.empty((0, 0), dtype=np.float32))
    assert not view._empty.isHidden() and view._empty.text() == "Select a route."
    assert view.cell_at(0.0, 0.0) is None
    bounds = np.array([0.1, math.inf])
    view.set_heat(np.array([5.0, 6.0]), bounds, np.zeros((2, 2), dtype=np.float32))
    assert not view._empty.isHidden() and "No requests" in view._empty.text()
    view.set_heat(np.array([5.0, 6.0]), bounds, np.array([[1, 0], [np.nan, 2]], dtype=np.float32))
    assert view._empty.isHidden() and view.image.isVisible()
    view.export(str(tmp_path / "heat.csv"))
    assert (tmp_path / "heat.csv").read_text().splitlines() == [
        "time,le=0.1,le=inf", "5.000,1,0", "6.000,,2"]
    with pytest.raises(ValueError, match="use .png"):
        view.export(str(tmp_path / "heat.bmp"))

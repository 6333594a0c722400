"""TimeSeriesView.pointClicked: a left click on the plot gives its data coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from trimtab.widgets.timeseries import TimeSeriesView


@pytest.fixture
def view(qtbot) -> TimeSeriesView:
    chart = TimeSeriesView("p95", "latency", "s", "empty")
    qtbot.addWidget(chart)
    chart.resize(600, 400)
    chart.show()
    qtbot.waitExposed(chart)
    chart.set_series({"/a": (np.arange(0.0, 101.0), np.linspace(0.0, 1.0, 101))})
    chart.plot.setXRange(0, 100, padding=0)
    chart.plot.setYRange(0, 1, padding=0)
    return chart


def widget_pos(view: TimeSeriesView, x: float, y: float) -> QPoint:
    """Pixel in the plot's viewport showing data point (x, y)."""
    scene = view.plot.getPlotItem().getViewBox().mapViewToScene(QPointF(x, y))
    return view.plot.mapFromScene(scene)


def test_left_click_emits_data_coordinates(qtbot, view: TimeSeriesView) -> None:
    with qtbot.waitSignal(view.pointClicked, timeout=2000) as blocker:
        QTest.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier, widget_pos(view, 40.0, 0.25))
    x, y = blocker.args
    px_x = 100 / view.plot.getPlotItem().getViewBox().width()  # one pixel in data units
    assert abs(x - 40.0) <= 2 * px_x
    assert abs(y - 0.25) <= 0.02


def test_right_click_axis_click_and_drag_do_not_emit(qtbot, view: TimeSeriesView) -> None:
    got: list[tuple[float, float]] = []
    view.pointClicked.connect(lambda x, y: got.append((x, y)))
    viewport = view.plot.viewport()
    plot_area = view.plot.getPlotItem().getViewBox().sceneBoundingRect()
    # the tick labels under the plot (the axis' own rect spans the grid lines too)
    axis_pos = view.plot.mapFromScene(QPointF(plot_area.center().x(), plot_area.bottom() + 12))
    QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, axis_pos)
    start, end = widget_pos(view, 30.0, 0.5), widget_pos(view, 60.0, 0.5)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 11):  # a pan: the press moves well past the drag distance
        QTest.mouseMove(viewport, start + (end - start) * step / 10)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    qtbot.wait(50)
    assert view.x_window() != (0.0, 100.0)  # the drag did pan, so it reached the plot
    QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     widget_pos(view, 40.0, 0.5))  # sanity: a plain click still emits
    assert len(got) == 1


def test_click_on_a_marker_is_a_marker_click_not_a_point(qtbot, view: TimeSeriesView) -> None:
    points: list[tuple[float, float]] = []
    view.pointClicked.connect(lambda x, y: points.append((x, y)))
    view.set_markers([("c1", 50.0, "ttl 10→300")])
    with qtbot.waitSignal(view.marker_clicked, timeout=2000) as blocker:
        QTest.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier, widget_pos(view, 50.0, 0.3))
    assert blocker.args == ["c1"]
    assert points == []

"""Copy as PromQL on a time-series chart: the curve under a right-click, every curve
elsewhere, the legend, Ctrl+Shift+C, the tooltip, and a curve with no PromQL equivalent.
Real widgets offscreen, real mouse events, the real clipboard."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QToolTip
from trimtab.widgets.promql_menu import MENU_TEXT, NoPromql, PromqlViewBox
from trimtab.widgets.timeseries import TimeSeriesView

EXPR = {"/a": 'sum by (route) (rate(x{route="/a"}[10s]))',
        "<other>": 'sum by (route) (rate(x{route="<other>"}[10s]))'}


@pytest.fixture
def view(qtbot) -> TimeSeriesView:
    chart = TimeSeriesView("rate", "requests", "/s", "empty")
    qtbot.addWidget(chart)
    chart.resize(700, 420)
    chart.show()
    qtbot.waitExposed(chart)
    t = np.arange(0.0, 101.0)
    chart.set_series({"/a": (t, np.full(101, 20.0)), "<other>": (t, np.full(101, 80.0))})
    chart.plot.setXRange(0, 100, padding=0)
    chart.plot.setYRange(0, 100, padding=0)
    chart.set_promql(lambda key: EXPR.get(key))
    QGuiApplication.clipboard().setText("before")
    return chart


def _pos(view: TimeSeriesView, x: float, y: float) -> QPoint:
    scene = view.plot.getPlotItem().getViewBox().mapViewToScene(QPointF(x, y))
    return view.plot.mapFromScene(scene)


def _right_click(qtbot, view: TimeSeriesView, where: QPoint) -> PromqlViewBox:
    vb = view.plot.getPlotItem().getViewBox()
    QTest.mouseClick(view.plot.viewport(), Qt.MouseButton.RightButton,
                     Qt.KeyboardModifier.NoModifier, where)
    qtbot.waitUntil(lambda: vb.menu is not None and vb.menu.isVisible(), timeout=5000)
    assert isinstance(vb, PromqlViewBox) and vb.copy_action is not None
    return vb


def _close(vb: PromqlViewBox) -> None:
    vb.menu.hide()


def test_right_click_on_a_curve_copies_that_curve(qtbot, view: TimeSeriesView) -> None:
    vb = _right_click(qtbot, view, _pos(view, 60.0, 80.5))
    try:
        assert vb.copy_action.text() == f"{MENU_TEXT}: <other>"
        assert vb.copy_action.isEnabled() and vb.copy_action.isVisible()
        assert vb.menu.actions()[0] is vb.copy_action  # first, above pyqtgraph's entries
        vb.copy_action.trigger()
    finally:
        _close(vb)
    assert QGuiApplication.clipboard().text() == EXPR["<other>"]


def test_right_click_between_curves_copies_all_with_names(qtbot, view: TimeSeriesView) -> None:
    vb = _right_click(qtbot, view, _pos(view, 60.0, 50.0))
    try:
        assert vb.copy_action.text() == f"{MENU_TEXT} (all 2 curves)"
        vb.copy_action.trigger()
    finally:
        _close(vb)
    assert QGuiApplication.clipboard().text() == (
        f"# /a\n{EXPR['/a']}\n# <other>\n{EXPR['<other>']}")


def test_right_click_on_a_legend_name_copies_that_curve(qtbot, view: TimeSeriesView) -> None:
    label = next(label for _, label in view.legend.items if label.text == "/a")
    where = view.plot.mapFromScene(label.sceneBoundingRect().center())
    vb = _right_click(qtbot, view, where)
    try:
        assert vb.copy_action.text() == f"{MENU_TEXT}: /a"
        vb.copy_action.trigger()
    finally:
        _close(vb)
    assert QGuiApplication.clipboard().text() == EXPR["/a"]


def test_a_hidden_curve_is_left_out_of_all(view: TimeSeriesView) -> None:
    view.curves["<other>"].setVisible(False)
    assert view.promql_text() == EXPR["/a"]


def test_ctrl_shift_c_on_the_focused_chart_copies_every_curve(qtbot, view: TimeSeriesView) -> None:
    view.activateWindow()
    view.plot.setFocus()
    qtbot.waitUntil(view.plot.hasFocus, timeout=5000)
    QTest.keyClick(view.plot, Qt.Key.Key_C,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() != "before", timeout=5000)
    assert QGuiApplication.clipboard().text() == view.promql_text()
    assert EXPR["/a"] in QGuiApplication.clipboard().text()


def test_title_hover_shows_every_expression_escaped(qtbot, view: TimeSeriesView) -> None:
    title = view.plot.getPlotItem().titleLabel.sceneBoundingRect().center()
    at = view.plot.mapFromScene(title)
    event = QHelpEvent(QEvent.Type.ToolTip, at, view.plot.viewport().mapToGlobal(at))
    QApplication.sendEvent(view.plot.viewport(), event)
    text = QToolTip.text()
    QToolTip.hideText()
    # rich text: the route <other> is escaped, or Qt would take it for a tag and hide it
    assert "route=&quot;&lt;other&gt;&quot;" in text
    assert "route=&quot;/a&quot;" in text


def test_a_curve_without_promql_says_why_and_copies_nothing(qtbot,
                                                            view: TimeSeriesView) -> None:
    view.set_promql(lambda key: NoPromql("judged against the normal spread")
                    if key == "/a" else EXPR.get(key))
    vb = _right_click(qtbot, view, _pos(view, 60.0, 20.0))
    try:
        assert vb.copy_action.text() == ("No PromQL for /a: judged against the normal spread")
        assert not vb.copy_action.isEnabled()
    finally:
        _close(vb)
    assert QGuiApplication.clipboard().text() == "before"
    assert view.promql_text() == ("# /a: no PromQL equivalent (judged against the normal "
                                  f"spread)\n# <other>\n{EXPR['<other>']}")


def test_a_chart_without_promql_keeps_pyqtgraphs_menu_only(qtbot, view: TimeSeriesView) -> None:
    view.set_promql(None)
    vb = _right_click(qtbot, view, _pos(view, 60.0, 20.0))
    try:
        assert not vb.copy_action.isVisible()
    finally:
        _close(vb)
    assert view.copy_promql() == ""
    assert QGuiApplication.clipboard().text() == "before"


def test_a_gap_under_the_cursor_is_no_curve(view: TimeSeriesView) -> None:
    t = np.arange(0.0, 101.0)
    v = np.full(101, 20.0)
    v[50:60] = np.nan
    view.set_series({"/a": (t, v)}, keep_gone=False)
    scene = view.plot.getPlotItem().getViewBox().mapViewToScene(QPointF(55.0, 20.0))
    assert view.curve_at(scene) is None
    scene = view.plot.getPlotItem().getViewBox().mapViewToScene(QPointF(30.0, 20.0))
    assert view.curve_at(scene) == "/a"


def test_a_legend_shows_a_route_that_looks_like_a_tag(view: TimeSeriesView) -> None:
    # pyqtgraph's labels are rich text: "<other>" (the agent's fold) was drawn as nothing
    label = next(label for sample, label in view.legend.items
                 if sample.item is view.curves["<other>"])
    assert label.item.toPlainText() == "<other>"
    scene = label.sceneBoundingRect().center()
    assert view.curve_at(scene) == "<other>"

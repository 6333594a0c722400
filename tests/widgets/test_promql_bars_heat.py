"""Copy as PromQL on the share bars (the bar under a right-click, else every bar) and on the
latency heatmap (its one expression, or why there is none). Real widgets, real clipboard."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QToolTip
from trimtab.widgets.heatmap import HeatmapView
from trimtab.widgets.promql_menu import MENU_TEXT, Answer, NoPromql, PromqlViewBox
from trimtab.widgets.share import ShareBarsView


def bar_promql(server: str, kind: str) -> Answer:
    if kind == "expected":
        return f'trimtab_balancer_expected_share{{server="{server}"}}'
    return f'share{{server="{server}"}}'


def _right_click(qtbot, plot, where: QPoint) -> PromqlViewBox:
    vb = plot.getPlotItem().getViewBox()
    QTest.mouseClick(plot.viewport(), Qt.MouseButton.RightButton,
                     Qt.KeyboardModifier.NoModifier, where)
    qtbot.waitUntil(lambda: vb.menu is not None and vb.menu.isVisible(), timeout=5000)
    return vb


def _at(plot, x: float, y: float) -> QPoint:
    return plot.mapFromScene(plot.getPlotItem().getViewBox().mapViewToScene(QPointF(x, y)))


@pytest.fixture
def bars(qtbot) -> ShareBarsView:
    view = ShareBarsView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_rows([("api-1", 0.5, 0.4), ("api-2", 0.5, 0.6)])
    view.set_promql(bar_promql)
    QGuiApplication.clipboard().setText("before")
    return view


def test_right_click_on_a_bar_copies_that_bar(qtbot, bars: ShareBarsView) -> None:
    vb = _right_click(qtbot, bars.plot, _at(bars.plot, 1.19, 30.0))
    try:
        assert vb.copy_action.text() == f"{MENU_TEXT}: api-2 observed"
        vb.copy_action.trigger()
    finally:
        vb.menu.hide()
    assert QGuiApplication.clipboard().text() == 'share{server="api-2"}'


def test_right_click_between_bars_copies_every_bar(qtbot, bars: ShareBarsView) -> None:
    vb = _right_click(qtbot, bars.plot, _at(bars.plot, 0.5, 30.0))
    try:
        assert vb.copy_action.text() == f"{MENU_TEXT} (all 4 curves)"
        vb.copy_action.trigger()
    finally:
        vb.menu.hide()
    lines = QGuiApplication.clipboard().text().splitlines()
    assert lines[0] == "# api-1 expected"
    assert lines[1] == 'trimtab_balancer_expected_share{server="api-1"}'
    assert lines[-2:] == ["# api-2 observed", 'share{server="api-2"}']


def test_hover_on_a_bar_names_its_expression(bars: ShareBarsView) -> None:
    at = _at(bars.plot, -0.19, 20.0)  # api-1's expected bar
    QApplication.sendEvent(bars.plot.viewport(), QHelpEvent(
        QEvent.Type.ToolTip, at, bars.plot.viewport().mapToGlobal(at)))
    text = QToolTip.text()
    QToolTip.hideText()
    assert "trimtab_balancer_expected_share{server=&quot;api-1&quot;}" in text
    assert "api-2" not in text


@pytest.fixture
def heat(qtbot) -> HeatmapView:
    view = HeatmapView("heat", "empty")
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    t = np.arange(100.0, 160.0)
    bounds = np.array([0.01, 0.1, 1.0, np.inf])
    view.set_heat(t, bounds, np.ones((len(t), len(bounds)), dtype=np.float32))
    view.set_x_window(100.0, 160.0)
    QGuiApplication.clipboard().setText("before")
    return view


def test_heatmap_copies_its_expression_from_a_cell(qtbot, heat: HeatmapView) -> None:
    expr = 'sum by (le, route) (rate(b{route="/a"}[10s]))'
    heat.set_promql(lambda: expr, "cells are the differences of neighbouring buckets")
    x, y = heat.cell_centre(30, 1)
    vb = _right_click(qtbot, heat.plot, _at(heat.plot, x, y))
    try:
        assert vb.copy_action.text() == MENU_TEXT and vb.copy_action.isEnabled()
        vb.copy_action.trigger()
    finally:
        vb.menu.hide()
    assert QGuiApplication.clipboard().text() == expr


def test_heatmap_without_an_equivalent_says_why(qtbot, heat: HeatmapView) -> None:
    heat.set_promql(lambda: NoPromql("a replayed snapshot"))
    x, y = heat.cell_centre(30, 1)
    vb = _right_click(qtbot, heat.plot, _at(heat.plot, x, y))
    try:
        assert vb.copy_action.text() == "No PromQL for this heatmap: a replayed snapshot"
        assert not vb.copy_action.isEnabled()
    finally:
        vb.menu.hide()
    assert heat.copy_promql() == ""
    assert QGuiApplication.clipboard().text() == "before"

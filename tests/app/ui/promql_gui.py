"""Test helpers: "Copy as PromQL" driven the way an operator does it (a right-click, a
context menu, Ctrl+Shift+C), read back from the real clipboard."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QContextMenuEvent, QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

SENTINEL = "(nothing copied yet)"


def _copied(qtbot, act) -> str:
    """Run ``act``, then the clipboard's new text (it must change)."""
    QGuiApplication.clipboard().setText(SENTINEL)
    act()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() != SENTINEL, timeout=10_000)
    return QGuiApplication.clipboard().text()


def legend_copy(qtbot, chart: TimeSeriesView, name: str) -> str:
    """Right-click the legend entry ``name`` and choose its Copy as PromQL."""
    label = chart.legend_label(name)
    where = chart.plot.mapFromScene(label.sceneBoundingRect().center())
    vb = chart.plot.getPlotItem().getViewBox()

    def act() -> None:
        QTest.mouseClick(chart.plot.viewport(), Qt.MouseButton.RightButton,
                         Qt.KeyboardModifier.NoModifier, where)
        qtbot.waitUntil(lambda: vb.menu is not None and vb.menu.isVisible(), timeout=10_000)
        try:
            assert vb.copy_action.text().endswith(f": {name}"), vb.copy_action.text()
            vb.copy_action.trigger()
        finally:
            vb.menu.hide()

    return _copied(qtbot, act)


def shortcut_copy(qtbot, widget) -> str:
    """Focus ``widget`` and press Ctrl+Shift+C."""
    def act() -> None:
        widget.activateWindow()
        widget.setFocus()
        qtbot.waitUntil(widget.hasFocus, timeout=10_000)
        QTest.keyClick(widget, Qt.Key.Key_C,
                       Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)

    return _copied(qtbot, act)


def cell_copy(qtbot, table: SortableTable, key: str, header: str) -> str:
    """Open the context menu on the cell of row ``key``, column ``header``; copy."""
    row = table.keys().index(key)
    column = table.source.headers.index(header)
    index = table.proxy.index(row, column)
    table.scrollTo(index)
    pos: QPoint = table.visualRect(index).center()

    def act() -> None:
        table.promql_menu = None
        QApplication.sendEvent(table.viewport(), QContextMenuEvent(
            QContextMenuEvent.Reason.Mouse, pos, table.viewport().mapToGlobal(pos)))
        qtbot.waitUntil(lambda: table.promql_menu is not None, timeout=10_000)
        menu = table.promql_menu
        try:
            action = menu.actions()[0]
            assert action.isEnabled(), action.text()
            action.trigger()
        finally:
            menu.close()

    return _copied(qtbot, act)


def curves_of(text: str) -> dict[str, str]:
    """``# name`` / expression pairs of an "all curves" copy, by name."""
    lines = text.splitlines()
    assert len(lines) % 2 == 0 and all(line.startswith("# ") for line in lines[::2]), text
    return {name[2:]: expr for name, expr in zip(lines[::2], lines[1::2])}

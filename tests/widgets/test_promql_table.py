"""Copy as PromQL on a table: a header's tooltip names the column's expression, a cell's
context menu copies it with the row's route in the matcher (whatever the sort order),
Ctrl+Shift+C copies the current cell, and a number without an equivalent says why."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QContextMenuEvent, QGuiApplication, QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QToolTip
from trimtab.widgets.promql_menu import MENU_TEXT, Answer, NoPromql
from trimtab.widgets.table import SortableTable

HEADERS = ("route", "req/s", "verdict")


def promql(key: str | None, header: str) -> Answer:
    if header == "req/s":
        sel = "x" if key is None else f'x{{route="{key}"}}'
        return f"sum by (route) (rate({sel}[10s]))"
    if header == "verdict":
        return NoPromql("a judgement against the normal spread")
    return None


@pytest.fixture
def table(qtbot) -> SortableTable:
    view = SortableTable(HEADERS, tooltips={"req/s": "Requests per second"})
    qtbot.addWidget(view)
    view.resize(600, 300)
    view.show()
    qtbot.waitExposed(view)
    view.set_rows([("/a", [("/a", "/a"), ("1.0", 1.0), ("ok", "ok")]),
                   ("<other>", [("<other>", "<other>"), ("9.0", 9.0), ("ok", "ok")])])
    view.sortItems(1, Qt.SortOrder.DescendingOrder)  # <other> first
    view.set_promql(promql)
    QGuiApplication.clipboard().setText("before")
    return view


def _cell_pos(table: SortableTable, row: int, column: int) -> QPoint:
    return table.visualRect(table.proxy.index(row, column)).center()


def _context_menu(qtbot, table: SortableTable, row: int, column: int) -> None:
    table.promql_menu = None
    pos = _cell_pos(table, row, column)
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos,
                              table.viewport().mapToGlobal(pos))
    QApplication.sendEvent(table.viewport(), event)


def test_cell_menu_copies_the_rows_expression_in_sorted_order(qtbot,
                                                             table: SortableTable) -> None:
    _context_menu(qtbot, table, 0, 1)
    qtbot.waitUntil(lambda: table.promql_menu is not None and table.promql_menu.isVisible(),
                    timeout=5000)
    action = table.promql_menu.actions()[0]
    assert action.text() == f"{MENU_TEXT}: req/s of <other>"
    action.trigger()
    table.promql_menu.close()
    assert QGuiApplication.clipboard().text() == (
        'sum by (route) (rate(x{route="<other>"}[10s]))')


def test_a_number_without_promql_says_why_and_copies_nothing(qtbot,
                                                            table: SortableTable) -> None:
    _context_menu(qtbot, table, 1, 2)
    qtbot.waitUntil(lambda: table.promql_menu is not None, timeout=5000)
    action = table.promql_menu.actions()[0]
    assert action.text() == ("No PromQL for verdict of /a: a judgement against the normal "
                             "spread")
    assert not action.isEnabled()
    table.promql_menu.close()
    assert QGuiApplication.clipboard().text() == "before"


def test_a_plain_fact_column_has_no_menu(qtbot, table: SortableTable) -> None:
    _context_menu(qtbot, table, 0, 0)
    qtbot.wait(50)
    assert table.promql_menu is None


def test_header_tooltip_gives_meaning_and_the_columns_expression(table: SortableTable) -> None:
    header = table.horizontalHeader()
    at = QPoint(header.sectionViewportPosition(1) + 5, header.height() // 2)
    QApplication.sendEvent(header.viewport(), QHelpEvent(
        QEvent.Type.ToolTip, at, header.viewport().mapToGlobal(at)))
    text = QToolTip.text()
    QToolTip.hideText()
    assert "Requests per second" in text
    assert "sum by (route) (rate(x[10s]))" in text
    assert table.column_tooltip(2).count("no PromQL equivalent") == 1
    assert table.column_tooltip(0) == ""  # the route column: a name, not a number


def test_ctrl_shift_c_copies_the_current_cell(qtbot, table: SortableTable) -> None:
    table.setCurrentIndex(table.proxy.index(1, 1))
    table.setFocus()
    qtbot.waitUntil(table.hasFocus, timeout=5000)
    QTest.keyClick(table, Qt.Key.Key_C,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() != "before", timeout=5000)
    assert QGuiApplication.clipboard().text() == 'sum by (route) (rate(x{route="/a"}[10s]))'


def test_without_promql_nothing_is_offered(qtbot, table: SortableTable) -> None:
    table.set_promql(None)
    _context_menu(qtbot, table, 0, 1)
    qtbot.wait(50)
    assert table.promql_menu is None
    assert table.column_tooltip(1) == ""
    table.setCurrentIndex(table.proxy.index(0, 1))
    assert table.copy_promql() == ""
    assert QGuiApplication.clipboard().text() == "before"

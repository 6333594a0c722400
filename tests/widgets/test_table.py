"""SortableTable: cells, sorting, selection and tint across refreshes (real Qt, offscreen)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from trimtab.widgets.table import HIGHLIGHT, SortableTable


def rows(values: dict[str, float]) -> list[tuple[str, list[tuple[str, float | str]]]]:
    return [(k, [(k, k), (f"{v:.1f} ms", v)]) for k, v in values.items()]


def make(qtbot) -> SortableTable:
    table = SortableTable(("route", "p95"))
    qtbot.addWidget(table)
    table.sortItems(1, Qt.SortOrder.DescendingOrder)
    return table


def foreground(table: SortableTable, row: int) -> object:
    return table.proxy.index(row, 0).data(Qt.ItemDataRole.ForegroundRole)


def test_rows_are_sorted_by_key_not_text_and_resorted_when_values_change(qtbot) -> None:
    table = make(qtbot)
    table.set_rows(rows({"/a": 9.0, "/b": 100.0, "/c": 20.0}))
    assert table.column_texts(0) == ["/b", "/c", "/a"]  # "9.0" > "100.0" as text; not as keys
    table.set_rows(rows({"/a": 300.0, "/b": 100.0, "/c": 20.0}))  # same keys: cells updated
    assert table.column_texts(0) == ["/a", "/b", "/c"]
    assert table.column_texts(1) == ["300.0 ms", "100.0 ms", "20.0 ms"]


def test_selection_follows_its_row_through_resorts_and_new_rows(qtbot) -> None:
    table = make(qtbot)
    table.set_rows(rows({"/a": 1.0, "/b": 2.0}))
    assert table.select_key("/a")
    with qtbot.assertNotEmitted(table.row_selected, wait=0):
        table.set_rows(rows({"/a": 5.0, "/b": 2.0}))  # /a moves to the top, still selected
    assert table.selected_key() == "/a"
    table.set_rows(rows({"/a": 5.0, "/b": 2.0, "/new": 50.0}))  # rebuilt: a row appeared
    assert table.selected_key() == "/a"
    assert table.rowCount() == 3


def test_highlight_is_set_and_cleared(qtbot) -> None:
    table = make(qtbot)
    table.set_rows(rows({"/a": 1.0, "/b": 2.0}), highlight={"/a"})
    assert foreground(table, 1) == HIGHLIGHT and foreground(table, 0) is None
    table.set_rows(rows({"/a": 1.0, "/b": 2.0}), highlight={"/b"})  # values same, tint moves
    assert foreground(table, 0) == HIGHLIGHT and foreground(table, 1) is None


def test_empty_rows_clear_the_table(qtbot) -> None:
    table = make(qtbot)
    table.set_rows(rows({"/a": 1.0}))
    table.set_rows([])
    assert table.rowCount() == 0 and table.selected_key() is None


def test_new_headers_drop_the_rows_and_sort_by_the_given_column(qtbot) -> None:
    table = make(qtbot)
    table.set_rows(rows({"/a": 1.0, "/b": 2.0}))
    table.set_headers(("route", "p50", "p99"), 2)
    assert table.rowCount() == 0
    assert [table.model().headerData(c, Qt.Orientation.Horizontal) for c in range(3)] == [
        "route", "p50", "p99"]
    table.set_rows([(k, [(k, k), ("1", 1.0), (str(v), v)]) for k, v in (("/a", 3.0), ("/b", 7.0))])
    assert table.column_texts(0) == ["/b", "/a"]


def test_natural_key_orders_numbers_by_value() -> None:
    from trimtab.widgets.table import natural_key

    names = ["api-10", "api-2", "api-1", "api-3"]
    assert sorted(names, key=natural_key) == ["api-1", "api-2", "api-3", "api-10"]
    assert sorted(["b", "A", "a"], key=natural_key) == ["A", "a", "b"]  # stable, case-aware


def test_headers_are_never_elided_and_carry_their_full_meaning(qtbot) -> None:
    headers = ("server", "proxy errors/s", "p95 via balancer")
    tips = {"proxy errors/s": "Requests the balancer failed to proxy, per second"}
    table = SortableTable(headers, tooltips=tips)
    qtbot.addWidget(table)
    table.resize(200, 200)  # far narrower than the headers: they scroll, never shrink
    table.show()
    header = table.horizontalHeader()
    # before any row and after rows narrower than the headers
    for _ in range(2):
        for i in range(len(headers)):
            assert header.sectionSize(i) >= header.sectionSizeHint(i), headers[i]
        table.set_rows([("a", [("a", "a"), ("1", 1.0), ("2", 2.0)])])
    tip = table.model().headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert tip == tips["proxy errors/s"]
    # a header without an explicit tooltip still names itself in full
    assert table.model().headerData(2, Qt.Orientation.Horizontal,
                                    Qt.ItemDataRole.ToolTipRole) == "p95 via balancer"


def test_a_column_widens_when_its_text_grows_and_never_wraps(qtbot) -> None:
    table = SortableTable(("server", "p95", "errors/s"))  # p95 not last: the last stretches
    qtbot.addWidget(table)
    table.show()
    table.set_rows([("a", [("api-1", "api-1"), ("–", -1.0), ("0/s", 0.0)])])  # sized once
    narrow = table.columnWidth(1)
    table.set_rows([("a", [("api-1", "api-1"), ("80.4 ms (69.4–86.7 ms)", 80.4), ("0/s", 0.0)])])
    metrics = table.fontMetrics()
    assert table.columnWidth(1) > narrow
    assert table.columnWidth(1) >= metrics.horizontalAdvance("80.4 ms (69.4–86.7 ms)")
    assert not table.wordWrap()  # a cell is one line: never "80.4 ms (69.4–86.7" / "ms)"

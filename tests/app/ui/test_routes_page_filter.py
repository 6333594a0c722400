"""The route filter every route table can carry (widgets.table.TableFilter), on real widgets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSettings
from trimtab.widgets.table import SortableTable, TableFilter

ROUTES = ("/search", "/products/{id}", "/orders", "/api/v1/search/suggest", "/a[1]")


@pytest.fixture(autouse=True)
def _forget_filters() -> Iterator[None]:
    """Filters are remembered in the settings, which every test of this process shares: a
    text left behind would filter another test's tables."""
    QSettings("trimtab", "trimtab").remove("filter")
    yield
    QSettings("trimtab", "trimtab").remove("filter")


def _table(qtbot) -> SortableTable:
    table = SortableTable(("route", "rate"))
    qtbot.addWidget(table)
    table.set_rows([(r, [(r, r), ("1/s", float(i))]) for i, r in enumerate(ROUTES)])
    return table


def _shown(table: SortableTable) -> set[str]:
    return set(table.column_texts(0))


def test_substring_is_case_insensitive_and_clearing_restores(qtbot) -> None:
    table = _table(qtbot)
    box = TableFilter(table)
    qtbot.addWidget(box)
    qtbot.keyClicks(box.edit, "search")
    assert _shown(table) == {"/search", "/api/v1/search/suggest"}
    assert box.count.text() == "2 of 5 routes"
    box.edit.setText("SEARCH")
    assert _shown(table) == {"/search", "/api/v1/search/suggest"}
    box.edit.clear()
    assert _shown(table) == set(ROUTES)
    assert box.count.text() == ""  # nothing hidden: nothing to say


def test_glob_matches_the_whole_route_across_slashes(qtbot) -> None:
    table = _table(qtbot)
    box = TableFilter(table)
    qtbot.addWidget(box)
    box.edit.setText("/api/*")
    assert _shown(table) == {"/api/v1/search/suggest"}
    box.edit.setText("/?rders")
    assert _shown(table) == {"/orders"}
    box.edit.setText("*{id}")
    assert _shown(table) == {"/products/{id}"}


def test_an_unusable_glob_is_taken_literally_and_says_so(qtbot) -> None:
    table = _table(qtbot)
    box = TableFilter(table)
    qtbot.addWidget(box)
    box.edit.setText("[1")  # an unclosed class: not a glob, searched as text
    assert _shown(table) == {"/a[1]"}
    assert "as text" in box.edit.toolTip()
    box.edit.setText("nothing-like-this")
    assert _shown(table) == set()
    assert box.count.text() == "0 of 5 routes"


def test_rows_arriving_later_are_filtered_too(qtbot) -> None:
    table = _table(qtbot)
    box = TableFilter(table)
    qtbot.addWidget(box)
    box.edit.setText("search")
    table.set_rows([(r, [(r, r), ("1/s", 1.0)]) for r in (*ROUTES, "/search/v2")])
    assert _shown(table) == {"/search", "/api/v1/search/suggest", "/search/v2"}
    assert box.count.text() == "3 of 6 routes"


def test_the_text_is_remembered_per_page(qtbot) -> None:
    first, other = _table(qtbot), _table(qtbot)
    box = TableFilter(first, remember_as="routes")
    qtbot.addWidget(box)
    box.edit.setText("orders")
    cache_box = TableFilter(other, remember_as="cache")  # another page keeps its own
    qtbot.addWidget(cache_box)
    assert cache_box.edit.text() == ""
    again = _table(qtbot)
    reopened = TableFilter(again, remember_as="routes")  # e.g. the next start of the app
    qtbot.addWidget(reopened)
    assert reopened.edit.text() == "orders"
    assert _shown(again) == {"/orders"}

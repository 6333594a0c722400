"""A read-only, sortable table fed with rows of (text, sort key) cells."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

Cell = tuple[str, float | str]  # (display text, sort key)
ROW_KEY_ROLE = Qt.ItemDataRole.UserRole + 1


class _Item(QTableWidgetItem):
    """Sorts by the numeric/string key, not by the display text ("180 ms" < "90 ms" is wrong)."""

    def __init__(self, text: str, key: float | str) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        other_key = getattr(other, "key", other.text())
        if isinstance(self.key, str) or isinstance(other_key, str):
            return str(self.key) < str(other_key)
        return self.key < other_key


class SortableTable(QTableWidget):
    """Rows keep their selection across refreshes; ``row_selected`` emits the row's key."""

    row_selected = Signal(str)

    def __init__(self, headers: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(0, len(headers), parent)
        self.setHorizontalHeaderLabels(list(headers))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setSortingEnabled(True)
        self.itemSelectionChanged.connect(self._emit_selection)
        self.rows: list[tuple[str, list[Cell]]] = []

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]],
                 highlight: set[str] | None = None) -> None:
        """Replace the content; ``rows`` = (row key, cells); keys in ``highlight`` are tinted."""
        selected = self.selected_key()
        self.rows = [(key, list(cells)) for key, cells in rows]
        sort_col = self.horizontalHeader().sortIndicatorSection()
        order = self.horizontalHeader().sortIndicatorOrder()
        self.setSortingEnabled(False)
        self.blockSignals(True)
        self.setRowCount(len(rows))
        for r, (key, cells) in enumerate(self.rows):
            for c, (text, sort_key) in enumerate(cells):
                item = _Item(text, sort_key)
                item.setData(ROW_KEY_ROLE, key)
                if highlight and key in highlight:
                    item.setForeground(QColor("#D55E00"))
                self.setItem(r, c, item)
        self.setSortingEnabled(True)
        self.sortItems(sort_col, order)
        if selected is not None:
            self.select_key(selected)
        self.blockSignals(False)

    def selected_key(self) -> str | None:
        items = self.selectedItems()
        return items[0].data(ROW_KEY_ROLE) if items else None

    def select_key(self, key: str) -> bool:
        for r in range(self.rowCount()):
            item = self.item(r, 0)
            if item is not None and item.data(ROW_KEY_ROLE) == key:
                self.selectRow(r)
                return True
        return False

    def column_texts(self, column: int) -> list[str]:
        """Display texts of one column in the current (sorted) order."""
        return [self.item(r, column).text() for r in range(self.rowCount())]

    def _emit_selection(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.row_selected.emit(key)

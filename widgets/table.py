"""A read-only, sortable table fed with rows of (text, sort key) cells.

Model/view with a C++ sort proxy: sorting and refreshes stay cheap with many rows
(a QTableWidget with Python ``__lt__`` items took ~0.5 s per refresh at 50 rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

Cell = tuple[str, float | str]  # (display text, sort key)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_KEY_ROLE = Qt.ItemDataRole.UserRole + 2
HIGHLIGHT = QColor("#D55E00")


class RowsModel(QAbstractTableModel):
    """Plain rows; an update with the same row keys only signals ``dataChanged``."""

    def __init__(self, headers: Sequence[str]) -> None:
        super().__init__()
        self.headers = list(headers)
        self.rows: list[tuple[str, list[Cell]]] = []
        self.highlight: set[str] = set()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.headers[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        key, cells = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cells[index.column()][0]
        if role == SORT_ROLE:
            return cells[index.column()][1]
        if role == ROW_KEY_ROLE:
            return key
        if role == Qt.ItemDataRole.ForegroundRole and key in self.highlight:
            return HIGHLIGHT
        return None

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]], highlight: set[str]) -> None:
        new = [(key, list(cells)) for key, cells in rows]
        same_keys = [k for k, _ in new] == [k for k, _ in self.rows]
        if same_keys and new:
            self.rows, self.highlight = new, set(highlight)
            self.dataChanged.emit(self.index(0, 0), self.index(len(new) - 1, len(self.headers) - 1))
            return
        self.beginResetModel()
        self.rows, self.highlight = new, set(highlight)
        self.endResetModel()


class SortableTable(QTableView):
    """Rows keep their selection across refreshes; ``row_selected`` emits the row's key."""

    row_selected = Signal(str)

    def __init__(self, headers: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = RowsModel(headers)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setDynamicSortFilter(True)
        self.setModel(self.proxy)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        self.setSortingEnabled(True)
        self.selectionModel().selectionChanged.connect(self._emit_selection)
        self._sized = False

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]],
                 highlight: set[str] | None = None) -> None:
        """Replace the content; ``rows`` = (row key, cells); keys in ``highlight`` are tinted."""
        selected = self.selected_key()
        self.source.set_rows(rows, highlight or set())
        if selected is not None and self.selected_key() != selected:
            self.select_key(selected)
        if rows and not self._sized:  # size columns once: per-refresh sizing is costly
            self.resizeColumnsToContents()
            self._sized = True

    def rowCount(self) -> int:
        return self.proxy.rowCount()

    def sortItems(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.sortByColumn(column, order)

    def selected_key(self) -> str | None:
        rows = self.selectionModel().selectedRows()
        return rows[0].data(ROW_KEY_ROLE) if rows else None

    def select_key(self, key: str) -> bool:
        for r in range(self.proxy.rowCount()):
            if self.proxy.index(r, 0).data(ROW_KEY_ROLE) == key:
                self.selectRow(r)
                return True
        return False

    def column_texts(self, column: int) -> list[str]:
        """Display texts of one column in the current (sorted) order."""
        return [self.proxy.index(r, column).data() for r in range(self.proxy.rowCount())]

    def _emit_selection(self, *_: object) -> None:
        key = self.selected_key()
        if key is not None:
            self.row_selected.emit(key)

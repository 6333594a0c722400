"""A read-only, sortable table fed with rows of (text, sort key) cells.

The cells live in a QStandardItemModel and are sorted by a C++ proxy, so painting and
sorting never call back into Python: with a Python ``QAbstractTableModel`` every paint
asked Python for ~8 roles per visible cell and the proxy asked for ``rowCount`` ~500
times per refresh, about a third of a page's refresh time (``benchmarks/render.py``).
A refresh writes only the cells whose text or key changed, with the model's signals
held, then announces them in one ``dataChanged`` so the proxy re-sorts once.
(A QTableWidget with Python ``__lt__`` items took ~0.5 s per refresh at 50 rows.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPoint,
    QRegularExpression,
    QSettings,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QHelpEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QTableView,
    QToolTip,
    QWidget,
)

from .promql_menu import (
    CellPromql,
    add_copy_shortcut,
    copy_to_clipboard,
    joined,
    menu_label,
    tooltip_html,
)

Cell = tuple[str, float | str]  # (display text, sort key)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_KEY_ROLE = Qt.ItemDataRole.UserRole + 2
HIGHLIGHT = QColor("#D55E00")
_DISPLAY = Qt.ItemDataRole.DisplayRole
_FOREGROUND = Qt.ItemDataRole.ForegroundRole
_DIGITS = re.compile(r"\d+")


def natural_key(text: str) -> str:
    """A sort key ordering the numbers inside names by value: api-2 before api-10.

    Digit runs are zero-padded, so the key stays a string (a cell's sort key is one value)
    and compares the way a person reads the names.
    """
    return _DIGITS.sub(lambda m: m.group().zfill(20), text)


class RowsModel(QStandardItemModel):
    """Rows of cells keyed by a row key; the Python side keeps what it last wrote."""

    def __init__(self, headers: Sequence[str], tooltips: Mapping[str, str] | None = None) -> None:
        super().__init__(0, len(headers))
        self.headers: list[str] = []
        self.rows: list[tuple[str, list[Cell]]] = []
        self.highlight: set[str] = set()
        self._label(headers, tooltips)

    def _label(self, headers: Sequence[str], tooltips: Mapping[str, str] | None) -> None:
        """Header texts, each with a tooltip: its full meaning, else the text itself (a
        header too long for its column is still readable on hover)."""
        self.headers = list(headers)
        self.setColumnCount(len(self.headers))
        self.setHorizontalHeaderLabels(self.headers)
        for i, text in enumerate(self.headers):
            self.setHeaderData(i, Qt.Orientation.Horizontal, (tooltips or {}).get(text, text),
                               Qt.ItemDataRole.ToolTipRole)

    def set_headers(self, headers: Sequence[str], tooltips: Mapping[str, str] | None = None
                    ) -> None:
        """New columns; the rows are dropped (their cells no longer fit)."""
        self.clear()
        self._label(headers, tooltips)
        self.rows, self.highlight = [], set()

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]], highlight: set[str]) -> None:
        new = [(key, list(cells)) for key, cells in rows]
        if not new and not self.rows:
            return
        if [k for k, _ in new] != [k for k, _ in self.rows] or not new:
            self._rebuild(new, highlight)
            return
        changed = False
        self.blockSignals(True)  # one dataChanged below instead of one per cell
        try:
            for r, ((key, cells), (_, old)) in enumerate(zip(new, self.rows)):
                tint = key in highlight
                retint = tint != (key in self.highlight)
                for c, cell in enumerate(cells):
                    if cell != old[c] or retint:
                        _write(self.item(r, c), cell, tint)
                        changed = True
        finally:
            self.blockSignals(False)
        self.rows, self.highlight = new, set(highlight)
        if changed:
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(new) - 1, len(self.headers) - 1))

    def _rebuild(self, rows: list[tuple[str, list[Cell]]], highlight: set[str]) -> None:
        """Rows appeared, left or moved: replace them all (rare; one model reset)."""
        self.beginResetModel()
        self.blockSignals(True)
        try:
            self.setRowCount(0)
            for key, cells in rows:
                items = [QStandardItem() for _ in cells]
                for item, cell in zip(items, cells):
                    item.setData(key, ROW_KEY_ROLE)
                    _write(item, cell, key in highlight)
                self.appendRow(items)
        finally:
            self.blockSignals(False)
        self.rows, self.highlight = rows, set(highlight)
        self.endResetModel()


def _write(item: QStandardItem, cell: Cell, tint: bool) -> None:
    item.setData(cell[0], _DISPLAY)
    item.setData(cell[1], SORT_ROLE)
    item.setData(HIGHLIGHT if tint else None, _FOREGROUND)


class SortableTable(QTableView):
    """Rows keep their selection across refreshes; ``row_selected`` emits the row's key.

    Every column is at least as wide as its header (a narrow table scrolls sideways
    rather than eliding "proxy errors" to "proxy er…"), and each header's tooltip gives
    its full meaning (``tooltips``: header text → explanation).
    """

    row_selected = Signal(str)

    def __init__(self, headers: Sequence[str], parent: QWidget | None = None,
                 tooltips: Mapping[str, str] | None = None) -> None:
        super().__init__(parent)
        self.source = RowsModel(headers, tooltips)
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
        self.setWordWrap(False)  # one line per cell: a grown value widens its column instead
        self._sized = False
        self._fitted: list[int] = []  # per column: the longest text its width was fitted to
        self.fit_headers()
        self._promql: CellPromql | None = None
        self.promql_menu: QMenu | None = None  # the last "Copy as PromQL" menu shown
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._cell_menu)
        header = self.horizontalHeader()
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._header_menu)
        header.viewport().installEventFilter(self)  # header tooltips name the column's PromQL
        add_copy_shortcut(self, self.copy_promql)

    def set_promql(self, promql: CellPromql | None) -> None:
        """What each derived number equals: ``promql(row key, header)`` gives a cell's
        expression (its route or backend in the label matcher), ``promql(None, header)``
        the column's for every row (``by`` the label); None for a column of plain facts."""
        self._promql = promql

    def promql_text(self, index: QModelIndex | None = None) -> str:
        """The expression of the cell at ``index`` (a proxy index; default: the current
        cell), or "" when it has none."""
        index = self.currentIndex() if index is None else index
        if self._promql is None or not index.isValid():
            return ""
        answer = self._promql(index.data(ROW_KEY_ROLE), self.source.headers[index.column()])
        return answer if isinstance(answer, str) else ""

    def copy_promql(self) -> str:
        """Copy the current cell's expression (Ctrl+Shift+C); "" when it has none."""
        text = self.promql_text()
        if text:
            copy_to_clipboard(text)
        return text

    def column_tooltip(self, column: int) -> str:
        """A header's tooltip: its meaning, then the PromQL of the column (or why none)."""
        if not 0 <= column < len(self.source.headers):
            return ""
        header = self.source.headers[column]
        meaning = self.source.headerData(column, Qt.Orientation.Horizontal,
                                         Qt.ItemDataRole.ToolTipRole) or header
        answer = self._promql(None, header) if self._promql is not None else None
        if answer is None:
            return ""
        return tooltip_html([("", answer)], str(meaning))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        # the type first: every paint and mouse move of the header passes here
        if event.type() == QEvent.Type.ToolTip and watched is self.horizontalHeader().viewport():
            assert isinstance(event, QHelpEvent)
            header = self.horizontalHeader()
            text = self.column_tooltip(header.logicalIndexAt(event.pos()))
            if text:
                QToolTip.showText(event.globalPos(), text, header.viewport())
                return True
        return super().eventFilter(watched, event)

    def _menu(self, label: str, enabled: bool, text: str, at: QPoint) -> None:
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        action = menu.addAction(label)
        action.setEnabled(enabled)
        action.triggered.connect(lambda: copy_to_clipboard(text))
        self.promql_menu = menu
        menu.popup(at)

    def _cell_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if self._promql is None or not index.isValid():
            return
        header = self.source.headers[index.column()]
        key = index.data(ROW_KEY_ROLE)
        answer = self._promql(key, header)
        if answer is None:
            return
        label, enabled = menu_label(f"{header} of {key}", answer, 1)
        self._menu(label, enabled, answer if isinstance(answer, str) else "",
                   self.viewport().mapToGlobal(pos))

    def _header_menu(self, pos: QPoint) -> None:
        header = self.horizontalHeader()
        column = header.logicalIndexAt(pos)
        if self._promql is None or not 0 <= column < len(self.source.headers):
            return
        name = self.source.headers[column]
        answer = self._promql(None, name)
        if answer is None:
            return
        label, enabled = menu_label(f"{name} (every row)", answer, 1)
        self._menu(label, enabled, joined([(name, answer)]) if enabled else "",
                   header.viewport().mapToGlobal(pos))

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]],
                 highlight: set[str] | None = None) -> None:
        """Replace the content; ``rows`` = (row key, cells); keys in ``highlight`` are tinted."""
        selected = self.selected_key()
        self.source.set_rows(rows, highlight or set())
        if selected is not None and self.selected_key() != selected:
            self.select_key(selected)
        if not rows:
            return
        longest = [max(len(cells[c][0]) for _, cells in rows) for c in range(len(rows[0][1]))]
        if not self._sized:  # size columns once: per-refresh sizing is costly
            self.resizeColumnsToContents()
            self.fit_headers()
            self._sized, self._fitted = True, longest
            return
        # A text longer than any the column was fitted to ("–" became "80.4 ms (69–87 ms)"):
        # widen that column only; comparing lengths costs far less than measuring.
        for c, n in enumerate(longest):
            if c < len(self._fitted) and n > self._fitted[c]:
                self._fitted[c] = n
                if self.columnWidth(c) < self.sizeHintForColumn(c):
                    self.resizeColumnToContents(c)

    def fit_headers(self) -> None:
        """Widen every column narrower than its header text (and sort arrow)."""
        header = self.horizontalHeader()
        for i in range(self.source.columnCount()):
            wanted = header.sectionSizeHint(i)
            if header.sectionSize(i) < wanted:
                header.resizeSection(i, wanted)

    def set_headers(self, headers: Sequence[str], sort_column: int,
                    order: Qt.SortOrder = Qt.SortOrder.DescendingOrder,
                    tooltips: Mapping[str, str] | None = None) -> None:
        """New columns (the rows are dropped until the next ``set_rows``), sorted by
        ``sort_column``; the columns are sized to their content again."""
        self.source.set_headers(headers, tooltips)
        self.sortItems(sort_column, order)
        self._sized, self._fitted = False, []
        self.fit_headers()

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

    def keys(self) -> list[str]:
        """Row keys in the current (sorted) order."""
        return [self.proxy.index(r, 0).data(ROW_KEY_ROLE) for r in range(self.proxy.rowCount())]

    def column_texts(self, column: int) -> list[str]:
        """Display texts of one column in the current (sorted) order."""
        return [self.proxy.index(r, column).data() for r in range(self.proxy.rowCount())]

    def _emit_selection(self, *_: object) -> None:
        key = self.selected_key()
        if key is not None:
            self.row_selected.emit(key)


_GLOB_CHARS = frozenset("*?[")
_CASELESS = QRegularExpression.PatternOption.CaseInsensitiveOption


def filter_expression(text: str) -> tuple[QRegularExpression, bool]:
    """(the expression a row key must match, whether ``text`` was read as a glob).

    Plain text matches anywhere, ignoring case (``search`` finds ``/api/search/suggest``);
    text with ``*``, ``?`` or ``[`` is a glob over the whole key, where ``*`` crosses ``/``
    (``/api/*`` finds every route under /api). A glob Qt cannot read (``[1``) is searched
    as plain text instead, so typing never hides every row by accident.
    """
    if _GLOB_CHARS & set(text):
        pattern = QRegularExpression.wildcardToRegularExpression(
            text, QRegularExpression.WildcardConversionOption.NonPathWildcardConversion)
        glob = QRegularExpression(pattern, _CASELESS)
        if glob.isValid():
            return glob, True
    return QRegularExpression(QRegularExpression.escape(text), _CASELESS), False


class TableFilter(QWidget):
    """A filter box for a :class:`SortableTable`'s rows (matched on the row key, the route).

    The matching runs in the table's C++ proxy, so it costs no Python per row and rows that
    arrive later are filtered too. With ``remember_as`` the text is kept in the user's
    settings under that name (one per page) and restored when the page is built again.
    """

    def __init__(self, table: SortableTable, remember_as: str | None = None,
                 noun: str = "routes", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = table
        self._key = f"filter/{remember_as}" if remember_as else None
        self._noun = noun
        self.edit = QLineEdit()
        self.edit.setClearButtonEnabled(True)
        self.edit.setPlaceholderText(f"Filter {noun}: text, or a glob such as /api/*")
        self.count = QLabel("")
        # Room for "120 of 250 routes" from the start: the box does not jump while typing.
        self.count.setMinimumWidth(self.count.fontMetrics().horizontalAdvance(
            f"0000 of 0000 {noun}"))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.count)
        proxy = table.proxy
        proxy.setFilterRole(ROW_KEY_ROLE)
        proxy.setFilterKeyColumn(0)
        for signal in (proxy.rowsInserted, proxy.rowsRemoved, proxy.modelReset,
                       proxy.layoutChanged):
            signal.connect(self._count)
        self.edit.textChanged.connect(self._apply)
        if self._key is not None:
            self.edit.setText(str(QSettings("trimtab", "trimtab").value(self._key, "") or ""))
        self._apply(self.edit.text())

    def _apply(self, text: str) -> None:
        expression, glob = filter_expression(text)
        self.table.proxy.setFilterRegularExpression(expression)
        if not text:
            tip = "Shows every row"
        elif glob:
            tip = f"Glob over the whole {self._noun[:-1]}: * any text, ? one character"
        elif _GLOB_CHARS & set(text):
            tip = "Not a glob this can read (an unclosed [ ?): searched as text"
        else:
            tip = "Rows whose name contains this text (any case); * or ? make it a glob"
        self.edit.setToolTip(tip)
        if self._key is not None:
            QSettings("trimtab", "trimtab").setValue(self._key, text)
        self._count()

    def _count(self, *_: object) -> None:
        shown, total = self.table.proxy.rowCount(), self.table.source.rowCount()
        self.count.setText(f"{shown} of {total} {self._noun}" if self.edit.text() else "")

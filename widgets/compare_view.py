"""Compare two windows: a table of per-route figures with deltas and an overlaid p95 chart;
and the dialog asking which range of history to open."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from .table import Cell, SortableTable
from .timeseries import TimeSeriesView

HISTORY_RANGES = (("last 1 h", 3600), ("last 6 h", 6 * 3600), ("last 24 h", 86400),
                  ("from … to …", 0))


class CompareView(QDialog):
    """Rows are given ready to show; ``route_selected`` asks the owner for that route's overlay."""

    route_selected = Signal(str)

    def __init__(self, title: str, headers: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(1200, 760)
        self.caption = QLabel(title)
        self.caption.setWordWrap(True)
        self.table = SortableTable(headers)
        self.table.row_selected.connect(self.route_selected)
        self.overlay = TimeSeriesView("p95 of the selected route, window B aligned on window A",
                                      "p95 latency", "s", "Select a route to overlay its p95.")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.overlay)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(split, 1)

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]],
                 highlight: set[str] | None = None) -> None:
        self.table.set_rows(rows, highlight)
        if rows and self.table.selected_key() is None:
            self.table.selectRow(0)

    def set_overlay(self, title: str, series: dict[str, tuple[np.ndarray, np.ndarray]],
                    start: float, end: float) -> None:
        self.overlay.plot.setTitle(title)
        self.overlay.set_series(series)
        self.overlay.set_x_window(start, end)


class RangeDialog(QDialog):
    """Asks for a history range: last 1 / 6 / 24 h, or from … to … (local time)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open history")
        self.choice = QComboBox()
        for label, seconds in HISTORY_RANGES:
            self.choice.addItem(label, seconds)
        now = QDateTime.currentDateTime()
        self.start = QDateTimeEdit(now.addSecs(-3600))
        self.end = QDateTimeEdit(now)
        for edit in (self.start, self.end):
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setCalendarPopup(True)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d9534f")
        self.choice.currentIndexChanged.connect(self._sync)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Range:", self.choice)
        form.addRow("From:", self.start)
        form.addRow("To:", self.end)
        form.addRow(self.error)
        form.addRow(buttons)
        self._sync()

    def range(self, now: float | None = None) -> tuple[float, float]:
        """(start, end) in unix seconds."""
        seconds = int(self.choice.currentData())
        if seconds:
            end = time.time() if now is None else now
            return end - seconds, end
        return (float(self.start.dateTime().toSecsSinceEpoch()),
                float(self.end.dateTime().toSecsSinceEpoch()))

    def _sync(self, *_: object) -> None:
        custom = not self.choice.currentData()
        self.start.setEnabled(custom)
        self.end.setEnabled(custom)

    def _check(self) -> None:
        start, end = self.range()
        if start >= end:
            self.error.setText("“From” must be before “To”.")
            return
        self.accept()

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

from .range_fields import RangeFields
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


class RangeDialog(RangeFields, QDialog):
    """Asks for a history range: last 1 / 6 / 24 h, or from … to … (local time); and, given
    several ``sources`` (the history database, Prometheus servers), which one to read."""

    def __init__(self, parent: QWidget | None = None, sources: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open history")
        self.sources = QComboBox()
        self.sources.addItems(list(sources))
        self._build_range(HISTORY_RANGES, 3600)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d9534f")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        if len(sources) > 1:
            form.addRow("From:", self.sources)
        form.addRow("Range:", self.choice)
        form.addRow("From:", self.start)
        form.addRow("To:", self.end)
        form.addRow(self.error)
        form.addRow(buttons)

    def _check(self) -> None:
        problem = self._range_problem()
        if problem:
            self.error.setText(problem)
            return
        self.accept()


class TwoRangesDialog(QDialog):
    """Asks for two ranges (A and B) inside a recording's window ``[start, end]`` (unix s).

    Defaults: A the first half, B the second. Open is refused with a message while a range
    is empty, reversed or outside the window.
    """

    def __init__(self, start: float, end: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare two ranges")
        self.bounds = (float(start), float(end))
        middle = start + (end - start) / 2
        self.edits = [self._edit(t) for t in (start, middle, middle, end)]
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d9534f")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(QLabel(f"Recording: {_when(start)} – {_when(end)}"))
        for label, edit in zip(("A from:", "A to:", "B from:", "B to:"), self.edits):
            form.addRow(label, edit)
        form.addRow(self.error)
        form.addRow(buttons)

    def _edit(self, t: float) -> QDateTimeEdit:
        edit = QDateTimeEdit(QDateTime.fromSecsSinceEpoch(round(t)))
        edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
        return edit

    def set_ranges(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        for edit, t in zip(self.edits, (*a, *b)):
            edit.setDateTime(QDateTime.fromSecsSinceEpoch(round(t)))

    def ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((A start, A end), (B start, B end)) in unix seconds (whole seconds)."""
        t = [float(e.dateTime().toSecsSinceEpoch()) for e in self.edits]
        return (t[0], t[1]), (t[2], t[3])

    def problem(self) -> str:
        """Why the ranges cannot be compared, or "" when they can."""
        lo, hi = int(self.bounds[0]), int(self.bounds[1]) + 1  # edits hold whole seconds
        for name, (a, b) in zip("AB", self.ranges()):
            if a >= b:
                return f"Range {name}: “from” must be before “to”."
            if a < lo or b > hi:
                return f"Range {name} must lie inside the recording ({_when(lo)} – {_when(hi)})."
        return ""

    def _check(self) -> None:
        text = self.problem()
        self.error.setText(text)
        if not text:
            self.accept()


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

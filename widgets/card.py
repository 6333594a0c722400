"""The before/after card of one change: a verdict per metric and a small chart each.

The card renders what it is given and is given it again as data arrives
(:meth:`ChangeCard.set_content`): it updates live, it never judges anything itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from .promql_menu import Answer, NoPromql
from .table import SortableTable

CARD_HEADERS = ("metric", "before", "after", "change", "normal before", "verdict",
                "samples before / after")
CHART_COLUMNS = 3
BEFORE_FILL = QColor(90, 140, 220, 40)
AFTER_FILL = QColor(60, 170, 90, 40)
BAND_PEN = pg.mkPen((90, 140, 220), width=1, style=Qt.PenStyle.DashLine)
# What the judged columns are, said where "Copy as PromQL" would give an expression.
JUDGED = {
    "before": "the mean of the metric's points in the window before the change",
    "after": "the mean of the metric's points in the window after the change",
    "change": "after ÷ before",
    "normal before": "the spread of the metric's points before the change",
    "verdict": "the before/after judge: the change weighed against the normal spread and "
               "the route's SLO",
}


def _judged(_row: str | None, header: str) -> Answer:
    reason = JUDGED.get(header)
    return NoPromql(reason) if reason is not None else None


class CardChartData(Protocol):
    """One metric's series around the change (times in seconds from it, app units)."""

    name: str
    times: np.ndarray
    values: np.ndarray
    before: tuple[float, float]
    after: tuple[float, float]
    band: tuple[float, float]
    unit: str


class MiniChart(pg.PlotWidget):
    """A small chart: the curve, the before and after windows shaded, the normal band dashed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(260, 150)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", "s from the change")
        self.curve = self.plot([], [], pen=pg.mkPen((220, 120, 40), width=1.5))
        self.before = pg.LinearRegionItem(brush=BEFORE_FILL, movable=False,
                                          pen=pg.mkPen(None))
        self.after = pg.LinearRegionItem(brush=AFTER_FILL, movable=False, pen=pg.mkPen(None))
        self.change = pg.InfiniteLine(0.0, angle=90, pen=pg.mkPen((120, 120, 120), width=1))
        self.band = [pg.PlotDataItem([], [], pen=BAND_PEN) for _ in range(2)]
        for item in (self.before, self.after, self.change, *self.band):
            self.addItem(item)

    def show_data(self, data: CardChartData) -> None:
        """Draw ``data`` (replaces whatever was drawn)."""
        self.setTitle(f"{data.name} ({data.unit})" if data.unit else data.name, size="9pt")
        finite = np.isfinite(data.values)
        self.curve.setData(data.times, data.values, connect=finite)
        self.before.setRegion(data.before)
        self.after.setRegion(data.after)
        for line, level in zip(self.band, data.band):
            if math.isfinite(level):
                line.setData([data.before[0], data.after[1]], [level, level])
            else:
                line.setData([], [])


class ChangeCard(QDialog):
    """Rows are (metric, before, after, change, normal range, verdict, samples) texts."""

    def __init__(self, title: str, subtitle: str, rows: Sequence[tuple[str, ...]],
                 parent: QWidget | None = None,
                 charts: Sequence[CardChartData] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(1100, 640)
        self.table = SortableTable(CARD_HEADERS)
        self.table.set_promql(_judged)  # judged numbers: no PromQL, and the tooltip says so
        self.subtitle = QLabel()
        self.subtitle.setWordWrap(True)
        self.charts: list[MiniChart] = []
        grid_host = QWidget()
        self._grid = QGridLayout(grid_host)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(grid_host)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(scroll)
        split.setSizes([200, 400])  # the table holds a few rows; the charts need the room
        buttons = self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.subtitle)
        layout.addWidget(split, 1)
        layout.addWidget(buttons)
        self.set_content(subtitle, rows, charts)

    def set_content(self, subtitle: str, rows: Sequence[tuple[str, ...]],
                    charts: Sequence[CardChartData] = ()) -> None:
        """Show new figures (called again as data arrives; the sort order stays)."""
        self.subtitle.setText(subtitle)
        self.table.set_rows([(r[0], [(text, text) for text in r]) for r in rows])
        self.table.resizeColumnsToContents()  # "not enough data yet" → "218.5 ms" etc.
        while len(self.charts) < len(charts):  # charts are made once and reused
            chart = MiniChart()
            index = len(self.charts)
            self._grid.addWidget(chart, index // CHART_COLUMNS, index % CHART_COLUMNS)
            self.charts.append(chart)
        for index, chart in enumerate(self.charts):
            chart.setVisible(index < len(charts))
            if index < len(charts):
                chart.show_data(charts[index])

    def add_action(self, text: str, slot: Callable[[], object]) -> QPushButton:
        """A button beside Close (e.g. "Compare before / after this change")."""
        button = self.buttons.addButton(text, QDialogButtonBox.ButtonRole.ActionRole)
        button.clicked.connect(lambda: slot())
        return button

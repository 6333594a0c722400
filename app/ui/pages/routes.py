"""The Slow routes page: per-route quantiles from histogram buckets, and the selected route over
time. GUI thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.heatmap import HeatmapView
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import QUANTILES, FleetModel, level_name
from .common import percent_series

ROUTE_HEADERS = ("route", "p50 (bucket, ms)", "p95 (bucket, ms)", "p99 (bucket, ms)", "rate",
                 "errors", "time spent (p95 × rate)")


class RoutesPage(QWidget):
    """The slow-routes table, ranked by time spent; the selected route's percentiles, latency
    heatmap, p95 per instance and errors over time.

    A click on a heatmap cell or on the latency charts asks for that route's traces in
    that time and latency range (``traces_window_requested``).
    """

    traces_requested = Signal(str, float)  # route, minimum duration in ms
    # route, min ms, max ms (inf = no limit), time window start and end (unix s)
    traces_window_requested = Signal(str, float, float, float, float)

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.traces_button = QPushButton("Example traces of this route (≥ p95)")
        self.traces_button.setToolTip("Open the Traces page filtered to the selected route's "
                                      "requests at least as slow as its p95")
        self.traces_button.clicked.connect(self._ask_traces)
        self.table = SortableTable(ROUTE_HEADERS)
        self.table.sortItems(len(ROUTE_HEADERS) - 1, Qt.SortOrder.DescendingOrder)
        self.table.row_selected.connect(self.select_route)
        self.selected: str | None = None
        self.levels: tuple[float, ...] = QUANTILES  # the percentiles in the table and chart
        # Where a newly selected route's charts start; a replay window reads its own clock.
        self.since: Callable[[], float] = lambda: time.time() - 900
        self.percentiles = TimeSeriesView("Percentiles of the selected route", "latency", "s",
                                          "Select a route in the table to see its percentiles.")
        self.errors = TimeSeriesView("Error ratio (5xx) of the selected route", "errors (%)", "",
                                     "Select a route in the table.", y_range=(0, 100))
        self.instances = TimeSeriesView("p95 per instance of the selected route", "p95 latency",
                                        "s", "Select a route in the table.")
        self.heatmap = HeatmapView("Latency heatmap of the selected route (click a cell for "
                                   "its traces)",
                                   "Select a route in the table to see its latency buckets.")
        self.heatmap.cellClicked.connect(self._heat_cell_clicked)
        for chart in (self.percentiles, self.instances):
            chart.pointClicked.connect(self._latency_point_clicked)
        self.hint = QLabel("No routes yet: no target has served a request. Start the demo "
                           "(trimtab demo) or add a target.")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        for pair in ((self.percentiles, self.heatmap), (self.instances, self.errors)):
            row = QSplitter(Qt.Orientation.Horizontal)
            for chart in pair:
                row.addWidget(chart)
            split.addWidget(row)
        split.setSizes([200, 300, 260])
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.traces_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(split, 1)
        self.charts = [self.percentiles, self.heatmap, self.instances, self.errors]

    @Slot(float, float, float, float)
    def _heat_cell_clicked(self, t0: float, t1: float, lo_s: float, hi_s: float) -> None:
        """A cell counts the requests that ended in the rate window before its tick,
        so the traces asked for are those of the whole window, not just the drawn slice."""
        if self.selected is not None:
            start = min(t0, t1 - self.model.rate_window)
            self.traces_window_requested.emit(self.selected, lo_s * 1000.0, hi_s * 1000.0,
                                              start, t1)

    @Slot(float, float)
    def _latency_point_clicked(self, t: float, seconds: float) -> None:
        """Traces at least as slow as the clicked latency, in the rate window the point
        was computed over (plus a second for the click's imprecision)."""
        if self.selected is not None:
            self.traces_window_requested.emit(self.selected, max(0.0, seconds) * 1000.0,
                                              math.inf, t - self.model.rate_window, t + 1.0)

    @Slot()
    def _ask_traces(self) -> None:
        if self.selected is None:
            return
        stats = self.model.read(lambda m: m.routes.get(self.selected))
        p95 = stats.quantiles.get(0.95) if stats is not None else None
        self.traces_requested.emit(self.selected, p95.value * 1000.0 if p95 else 0.0)

    @Slot(str)
    def select_route(self, route: str) -> None:
        self.selected = route
        self.percentiles.plot.setTitle(f"Percentiles of {route}")
        self.errors.plot.setTitle(f"Error ratio (5xx) of {route}")
        self.instances.plot.setTitle(f"p95 per instance of {route}")
        self.heatmap.plot.setTitle(f"Latency heatmap of {route} (click a cell for its traces)")
        self.refresh(self.since())

    def refresh(self, since: float) -> None:
        stats = self.model.read(lambda m: list(m.routes.values()))
        rows = []
        for s in stats:
            cells = [(s.route, s.route)]
            for level in self.levels:
                est = s.quantiles.get(level)
                cells.append((fmt.quantile(est), est.value if est else -1.0))
            cells += [(fmt.rate(s.rate), s.rate),
                      (fmt.percent(s.error_ratio), -1.0 if math.isnan(s.error_ratio) else s.error_ratio),
                      (f"{s.time_spent:.3f} s/s", s.time_spent)]
            rows.append((s.route, cells))
        self.table.set_rows(rows)
        self.hint.setVisible(not rows)
        if self.selected is None and rows:
            self.table.selectRow(0)  # the most expensive route, so the charts are never idle
        if self.selected is None:
            return
        names = [level_name(q) for q in self.levels]
        found = {n: self.model.snapshot(n, since, [self.selected]).get(self.selected) for n in names}
        # keep_gone=False: percentiles dropped from the levels leave the legend too.
        self.percentiles.set_series({k: v for k, v in found.items() if v is not None},
                                    keep_gone=False)
        self.instances.set_series(self.model.instance_series(self.selected, since))
        self.heatmap.set_heat(*self.model.heat(self.selected, since),
                              empty_text="No latency buckets of this route yet: its histogram "
                                         "needs two scrapes.")
        err = self.model.snapshot("error_ratio", since, [self.selected])
        self.errors.set_series(percent_series({"5xx %": err[self.selected]} if err else {}))

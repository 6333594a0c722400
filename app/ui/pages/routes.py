"""The Slow routes page: per-route quantiles from histogram buckets, status classes and
response size, and the selected route over time. GUI thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.heatmap import HeatmapView
from trimtab.widgets.table import ROW_KEY_ROLE, Cell, SortableTable, TableFilter
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import (
    CLASS_SERIES,
    QUANTILES,
    STATUS_CLASSES,
    FleetModel,
    RouteStats,
    level_name,
)
from . import promql
from .common import percent_series

# The status classes that get a column (``other``, 1xx and odd labels, is rare: chart only).
TABLE_CLASSES = ("2xx", "3xx", "4xx", "429", "5xx")
# The route every series without a route label folds into (extract: ``lab.get("route", "?")``).
UNLABELLED = "?"
# The instances chart draws at most this many (the slowest by their newest p95): 200 lines
# are a blur under a legend taller than the chart, and slow to lay out.
INSTANCE_LINES = 5
# Rows that stand for many paths (the agent's names in agent/routes.py): (what the row says
# after its rate, short enough for the column; the full reason, in a note above the table).
FOLDS = {
    UNLABELLED: ("folded: no http.route label (see README)",
                 "Route ? holds every request whose instrumentation sends no http.route label "
                 "(e.g. plain OpenTelemetry ASGI/WSGI middleware): all its paths land in one "
                 "row. The README's instrumentation table gives the fix for each framework."),
    "<other>": ("folded: over the agent's route cap",
                "Route <other> holds the routes beyond the agent's max_routes cap: name them "
                "with patterns= or raise the cap."),
    "<unmatched>": ("unmatched: no route matched",
                    "Route <unmatched> holds paths no route of the app matched (404s, "
                    "scanners)."),
}


def route_headers(levels: Sequence[float]) -> tuple[str, ...]:
    """The slow-routes table's headers for ``levels`` (fractions)."""
    return ("route", *(f"{level_name(q)} (bucket)" for q in levels), "req/s",
            *TABLE_CLASSES, "size (mean)", "time spent (p95 × rate)")


ROUTE_HEADERS = route_headers(QUANTILES)
HEADER_TIPS = {
    "req/s": "Requests per second, summed over instances, over the rate window",
    **{cls: f"Share of the route's requests answered {cls}" for cls in TABLE_CLASSES},
    "4xx": "Share of the route's requests answered 4xx other than 429",
    "429": "Share of the route's requests refused as rate limited (429)",
    "5xx": "Share of the route's requests answered 5xx (server errors)",
    "size (mean)": "Mean response body per response, in bytes (the agent counts what it "
                   "sends: after compression; HEAD counts 0)",
    "time spent (p95 × rate)": "p95 × requests per second: seconds of handler time per "
                               "second, the default ranking",
}


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
        self.table = SortableTable(ROUTE_HEADERS, tooltips=HEADER_TIPS)
        self.table.sortItems(len(ROUTE_HEADERS) - 1, Qt.SortOrder.DescendingOrder)
        self.table.row_selected.connect(self.select_route)
        self.filter = TableFilter(self.table, remember_as="routes")
        self.selected: str | None = None
        self._instances_title = ""
        self._instances_of: str | None = None  # the route the instances chart was drawn for
        self.levels: tuple[float, ...] = QUANTILES  # the percentiles in the table and chart
        # Where a newly selected route's charts start; a replay window reads its own clock.
        self.since: Callable[[], float] = lambda: time.time() - 900
        self.percentiles = TimeSeriesView("Percentiles of the selected route", "latency", "s",
                                          "Select a route in the table to see its percentiles.")
        # Scaled to the data: a 0.4 % error ratio drawn on 0–100 % is a flat line at zero.
        self.errors = TimeSeriesView("Error ratio (5xx) of the selected route", "errors (%)", "",
                                     "Select a route in the table.")
        # Never below 0 % and at least one percentage point tall: a route without errors is
        # a line at the bottom, not float noise around zero drawn as a wave.
        self.errors.plot.getPlotItem().getViewBox().setLimits(yMin=0.0, minYRange=1.0)
        self.statuses = TimeSeriesView("Requests per second (all, and by status class) of the "
                                       "selected route", "requests", "/s",
                                       "Select a route in the table.")
        self.sizes = TimeSeriesView("Mean response size of the selected route", "body", "B",
                                    "Select a route in the table. Needs the trimtab agent's "
                                    "response size histogram.")
        self.instances = TimeSeriesView("p95 per instance of the selected route", "p95 latency",
                                        "s", "Select a route in the table.")
        self.heatmap = HeatmapView("Latency heatmap of the selected route",
                                   "Select a route in the table to see its latency buckets.")
        self.heatmap.setToolTip("Click a cell for the traces of that time slice and latency "
                                "range")
        self.heatmap.cellClicked.connect(self._heat_cell_clicked)
        for chart in (self.percentiles, self.instances):
            chart.pointClicked.connect(self._latency_point_clicked)
        self.hint = QLabel("No routes yet: no target has served a request. Start the demo "
                           "(trimtab demo) or add a target.")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        for trio in ((self.percentiles, self.heatmap, self.instances),
                     (self.statuses, self.errors, self.sizes)):
            row = QSplitter(Qt.Orientation.Horizontal)
            for chart in trio:
                row.addWidget(chart)
            split.addWidget(row)
        split.setSizes([220, 260, 260])
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.traces_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        self.fold_note = QLabel("")
        self.fold_note.setWordWrap(True)
        self.fold_note.setVisible(False)
        layout.addWidget(self.fold_note)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.charts = [self.percentiles, self.heatmap, self.instances, self.statuses,
                       self.errors, self.sizes]
        self._wire_promql()

    def _wire_promql(self) -> None:
        """"Copy as PromQL" on the table and on the selected route's charts."""
        self.table.set_promql(promql.route_cell(self.model, TABLE_CLASSES))
        charts = promql.selected_route_charts(self.model, lambda: self.selected)
        self.percentiles.set_promql(charts["percentiles"])
        self.instances.set_promql(charts["instances"], "The instance label stands for the "
                                  "target's name in the cockpit.")
        self.statuses.set_promql(charts["statuses"])
        self.errors.set_promql(charts["errors"], promql.PERCENT_LEAD)
        self.sizes.set_promql(charts["sizes"])
        self.heatmap.set_promql(
            lambda: promql.series(self.model, "heat", self.selected)
            if self.selected is not None else None,
            "Cumulative buckets (le): each cell is the difference of two neighbouring ones.")

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

    def _instances_shown(self) -> set[str]:
        """The instances the instances chart draws for the selected route (none just after
        a route was chosen: another route's slowest have no claim on this one's chart)."""
        if self._instances_of != self.selected:
            self._instances_of = self.selected
            return set()
        return set(self.instances.data)

    @Slot(str)
    def select_route(self, route: str) -> None:
        self.selected = route
        self._instances_of = None  # the instances chart starts over, by rank only
        self.percentiles.plot.setTitle(f"Percentiles of {route}")
        self.errors.plot.setTitle(f"Error ratio (5xx) of {route}")
        self.statuses.plot.setTitle(f"Requests per second of {route}, by status class")
        self.sizes.plot.setTitle(f"Mean response size of {route}")
        self._instances_title = f"p95 per instance of {route}"
        self.instances.plot.setTitle(self._instances_title)
        self.heatmap.plot.setTitle(f"Latency heatmap of {route}")
        self.refresh(self.since())

    def _row(self, s: RouteStats) -> list[Cell]:
        name = s.route
        fold = FOLDS.get(s.route)
        if fold is not None:  # say why one row carries many paths (issue 21.4)
            name = f"{s.route} — {fmt.rate(s.rate)} {fold[0]}"
        cells: list[Cell] = [(name, s.route)]
        for level in self.levels:
            est = s.quantiles.get(level)
            cells.append((fmt.quantile(est), est.value if est else -1.0))
        cells.append((fmt.rate(s.rate), s.rate))
        for cls in TABLE_CLASSES:
            part = s.status_rates.get(cls, 0.0) / s.rate if s.rate else math.nan
            cells.append((fmt.percent(part), -1.0 if math.isnan(part) else part))
        cells += [(byte_size(s.size_mean), -1.0 if math.isnan(s.size_mean) else s.size_mean),
                  (fmt.time_spent(s.time_spent), s.time_spent)]
        return cells

    def refresh(self, since: float) -> None:
        stats = self.model.read(lambda m: list(m.routes.values()))
        rows = [(s.route, self._row(s)) for s in stats]
        self.table.set_rows(rows)
        self.hint.setVisible(not rows)
        notes = [FOLDS[s.route][1] for s in stats if s.route in FOLDS]
        self.fold_note.setText(" ".join(notes))
        self.fold_note.setVisible(bool(notes))
        if self.selected is None and self.table.rowCount():
            # The most expensive route, so the charts are never idle; not the fold of
            # many paths when a real route is there (it says nothing about one path).
            keys = [self.table.proxy.index(r, 0).data(ROW_KEY_ROLE)
                    for r in range(self.table.rowCount())]
            self.table.selectRow(next((i for i, k in enumerate(keys) if k not in FOLDS), 0))
        if self.selected is None:
            return
        names = [level_name(q) for q in self.levels]
        found = {n: self.model.snapshot(n, since, [self.selected]).get(self.selected) for n in names}
        # keep_gone=False: percentiles dropped from the levels leave the legend too.
        self.percentiles.set_series({k: v for k, v in found.items() if v is not None},
                                    keep_gone=False)
        # The lines drawn now keep their places while still among the slowest: no swap of
        # lines and legend entries every scrape between instances of near-equal p95.
        slowest, total = self.model.slowest_instances(self.selected, INSTANCE_LINES, since,
                                                      shown=self._instances_shown())
        # Short: the route is in every other chart's title.
        if total <= INSTANCE_LINES:
            title = f"p95 per instance of {self.selected}"
        elif total <= 2 * INSTANCE_LINES:  # any of them may keep its place
            title = f"p95 per instance: {INSTANCE_LINES} of {total}, the slowest among them"
        else:
            title = (f"p95 per instance: {INSTANCE_LINES} of the {2 * INSTANCE_LINES} slowest "
                     f"of {total}")
        if title != self._instances_title:  # a title change re-lays the plot out
            self._instances_title = title
            self.instances.plot.setTitle(title)
        # Of many instances, the slowest few: one leaving them leaves the legend too.
        self.instances.set_series(slowest, keep_gone=total <= INSTANCE_LINES)
        self.heatmap.set_heat(*self.model.heat(self.selected, since),
                              empty_text="No latency buckets of this route yet: its histogram "
                                         "needs two scrapes.")
        err = self.model.snapshot("error_ratio", since, [self.selected])
        self.errors.set_series(percent_series({"5xx %": err[self.selected]} if err else {}))
        by_class = {cls: self.model.snapshot(CLASS_SERIES[cls], since, [self.selected])
                    for cls in STATUS_CLASSES}
        rates = {cls: found[self.selected] for cls, found in by_class.items()
                 if self.selected in found}
        total = self.model.snapshot("rate", since, [self.selected])
        if total:
            rates["all"] = total[self.selected]  # the route's request rate over time
        # keep_gone=False: a route without 3xx has no 3xx entry in the legend.
        self.statuses.set_series(rates, keep_gone=False)
        size = self.model.snapshot("size_mean", since, [self.selected])
        self.sizes.set_series({"bytes per response": size[self.selected]} if size else {},
                              keep_gone=False)


def byte_size(n: float) -> str:
    """``1536.0`` → ``"1.5 KiB"``: a body size in the unit that keeps the number short."""
    if math.isnan(n):
        return "–"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    raise AssertionError("unreachable")

"""The window's pages: each wires part of the FleetModel to thin widgets (GUI thread)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.heatmap import HeatmapView
from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.table import SortableTable
from trimtab.widgets.target_dialog import TargetDialog
from trimtab.widgets.timeseries import TimeSeriesView

from . import format as fmt
from .model import QUANTILES, FleetModel, TargetHealth, level_name
from .settings import describe_retention, human_size
from .store import Store
from .target_manager import TargetManager
from .targets import KINDS, TargetsError

TOP_ROUTES = 10


def _top_routes(model: FleetModel) -> tuple[list[str], list[str]]:
    """Routes ranked by time spent, and cached routes ranked by lookups (under the lock)."""
    by_time = sorted(model.routes.values(), key=lambda s: s.time_spent, reverse=True)
    by_lookups = sorted(model.cache, key=lambda c: c.hits + c.misses, reverse=True)
    return ([s.route for s in by_time[:TOP_ROUTES]],
            [c.route for c in by_lookups[:TOP_ROUTES]])


def _percent(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple]:
    return {k: (t, v * 100.0) for k, (t, v) in series.items()}


class OverviewPage(QWidget):
    """p95 per route, hit ratio per route, share over time, expected vs observed share."""

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.latency = TimeSeriesView(f"p95 latency, top {TOP_ROUTES} routes by time spent "
                                      "(fleet, rate window ≥ 10 s)",
                                      "p95 latency", "s",
                                      "No latency data yet: waiting for the first two scrapes.")
        self.hit_ratio = TimeSeriesView(f"Cache hit ratio, top {TOP_ROUTES} cached routes by lookups",
                                        "hit ratio (%)", "",
                                        "No cache lookups yet: only routes with a TTL are cached.",
                                        y_range=(0, 100))
        self.share_time = TimeSeriesView("Request share per backend over time", "share (%)", "",
                                         "No balancer data yet.", y_range=(0, 100))
        self.share_bars = ShareBarsView()
        grid = QGridLayout(self)
        grid.addWidget(self.latency, 0, 0)
        grid.addWidget(self.hit_ratio, 0, 1)
        grid.addWidget(self.share_time, 1, 0)
        grid.addWidget(self.share_bars, 1, 1)
        self.charts = [self.latency, self.hit_ratio, self.share_time]

    def refresh(self, since: float) -> None:
        # At most TOP_ROUTES curves per chart: 50 tangled lines help nobody (the Slow routes
        # page lists them all) and each curve costs paint time.
        top, cached = self.model.read(_top_routes)  # type: ignore[misc]
        self.latency.set_series(self.model.snapshot("p95", since, top))
        self.hit_ratio.set_series(_percent(self.model.snapshot("hit_ratio", since, cached)))
        self.share_time.set_series(_percent(self.model.snapshot("share", since)))
        rows = self.model.read(lambda m: [(r.server, r.expected, r.observed) for r in m.share])
        self.share_bars.set_rows(rows)  # type: ignore[arg-type]


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
        p95 = stats.quantiles.get(0.95) if stats is not None else None  # type: ignore[attr-defined]
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
        for s in stats:  # type: ignore[attr-defined]
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
        self.errors.set_series(_percent({"5xx %": err[self.selected]} if err else {}))


FLEET_HEADERS = ("target", "kind", "state", "last scrape", "scrape duration", "samples",
                 "failed scrapes", "error")


class FleetPage(QWidget):
    """Targets with up/down, last scrape, scrape duration and the error text; add / remove."""

    def __init__(self, model: FleetModel, manager: TargetManager | None = None) -> None:
        super().__init__()
        self.model = model
        self.manager = manager
        self.clock: Callable[[], float] = time.time  # "now" for "last scrape … ago"
        self.table = SortableTable(FLEET_HEADERS)
        self.hint = QLabel("No targets yet: add one (Add target…) or start the demo (trimtab demo).")
        self.add_button = QPushButton("Add target…")
        self.remove_button = QPushButton("Remove selected")
        self.add_button.clicked.connect(self.ask_add)
        self.remove_button.clicked.connect(self.remove_selected)
        where = (f"Targets file: {manager.path}" if manager is not None
                 else "Demo fleet: targets come from the demo and are not saved.")
        self.config_label = QLabel(where)
        self.config_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # The store's size and the retention in force (hidden without a store).
        self.history_label = QLabel(history_text(model.store) if model.store else "")
        self.history_label.setVisible(model.store is not None)
        for button in (self.add_button, self.remove_button):
            button.setEnabled(manager is not None)
            if manager is None:
                button.setToolTip("The demo's targets are fixed; run `trimtab` to manage targets.")
        row = QHBoxLayout()
        row.addWidget(self.config_label, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.history_label)
        layout.addWidget(self.hint)
        layout.addWidget(self.table, 1)
        self.charts: list[TimeSeriesView] = []

    @Slot()
    def ask_add(self) -> None:
        """Ask for a target until it is valid or the user cancels."""
        assert self.manager is not None
        dialog = TargetDialog(KINDS, self)
        while dialog.exec():
            name, url, kind, interval = dialog.values()
            try:
                self.manager.add(name, url, kind, interval, token_env=dialog.token_variable())
                return
            except TargetsError as exc:
                dialog.show_error(str(exc))

    @Slot()
    def remove_selected(self) -> None:
        name = self.table.selected_key()
        if self.manager is None or name is None:
            return
        try:
            self.manager.remove(name)
        except TargetsError as exc:
            QMessageBox.warning(self, "Remove target", str(exc))

    def refresh(self, since: float) -> None:
        now = self.clock()
        health = self.model.read(lambda m: list(m.health.values()))
        rows, down = [], set()
        for h in health:  # type: ignore[attr-defined]
            if not h.up:
                down.add(h.name)
            rows.append((h.name, fleet_cells(h, now)))
        self.table.set_rows(rows, highlight=down)
        self.hint.setVisible(not rows)
        if self.model.store is not None:
            self.history_label.setText(history_text(self.model.store))


def history_text(store: Store) -> str:
    """The Fleet page's history line: size on disk as last measured (no I/O), retention."""
    size = store.footprint()
    where = ("size not measured yet" if size is None else
             f"{human_size(size.file + size.wal)} on disk (file + WAL)")
    return f"History: {where} · keeps {describe_retention(store.retention)}"


def fleet_cells(h: TargetHealth, now: float) -> list[tuple[str, float | str]]:
    """One Fleet row at ``now``; a target never scraped says so, not "56 years ago"."""
    if h.last_scrape > 0:
        ago: tuple[str, float | str] = (fmt.ago(now - h.last_scrape), now - h.last_scrape)
    else:
        ago = ("never", math.inf)
    return [(h.name, h.name), (h.kind, h.kind), ("up" if h.up else "DOWN", int(h.up)), ago,
            (fmt.duration(h.duration), h.duration), (str(h.samples), h.samples),
            (f"{h.failed_scrapes} of {h.ok_scrapes + h.failed_scrapes}", h.failed_scrapes),
            (_error_text(h, now), h.error or "")]


def _error_text(h: TargetHealth, now: float) -> str:
    """The scrape error, plus when a backed-off target is tried next (a dead target is
    retried at 1, 2, 4 … intervals, so "DOWN" alone would look like it is being hammered)."""
    wait = h.next_attempt - now
    if h.up or not h.error or wait < 1.5:
        return h.error or ""
    return f"{h.error} · retrying in {wait:.0f} s"

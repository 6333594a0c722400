"""The traces page: a filtered list of recent requests and the waterfall of the selected one."""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView
from trimtab.widgets.waterfall import Span, WaterfallView

from ...model import format as fmt
from ...model.fleet import FleetModel
from . import promql

TRACE_HEADERS = ("time", "route", "method", "status", "duration", "instance", "cache", "trace id",
                 "exemplar")
EXEMPLAR_COLUMN = len(TRACE_HEADERS) - 1
DURATION_COLUMN = TRACE_HEADERS.index("duration")
TRACE_TIPS = {
    "time": "When the request started (local time)",
    "duration": "How long the request took at the instance",
    "cache": "hit, miss or bypass of the response cache",
    "exemplar": "★: the trace an instance attached to a latency bucket (an exemplar) of the "
                "chosen route; listed first after a jump from a chart",
}
EXEMPLAR_FIRST = 1e12  # added to an exemplar's sort key (ms): exemplars first, then slowest
ALL_ROUTES = "all routes"
NO_TRACES = ("No traces yet: traces come from trimtab agents that the cockpit can read with a "
             "token (the demo's agents are set up for it).")


def _clock(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix)) + f".{int(unix % 1 * 1000):03d}"


def _sort_ms(trace: dict[str, Any]) -> float:
    """A trace's duration as a sort key; an unknown (NaN) one sorts below every other."""
    ms = float(trace["duration_ms"])
    return -1.0 if math.isnan(ms) else ms


def spans_of(trace: dict[str, Any]) -> list[Span]:
    """The request span, then its children, as (label, start offset ms, duration ms)."""
    start = float(trace["start"])
    spans: list[Span] = [(f"{trace.get('method', '')} {trace.get('route', '')}".strip(), 0.0,
                          float(trace["duration_ms"]))]
    for child in trace.get("children", []):
        offset = (float(child.get("start", start)) - start) * 1000.0
        spans.append((str(child.get("name", "span")), max(0.0, offset), float(child["duration_ms"])))
    return spans


class TracesPage(QWidget):
    """Traces from every agent, filtered by route, duration range, errors and time window.

    Traces whose id an agent exposed as a latency-bucket exemplar (of the chosen
    route, window and duration range) are marked and listed first.
    """

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.route = QComboBox()
        self.route.addItem(ALL_ROUTES)
        self.min_ms = QDoubleSpinBox()
        self.min_ms.setRange(0, 600_000)
        self.min_ms.setSuffix(" ms")
        self.min_ms.setToolTip("Only traces at least this slow")
        self.max_ms = QDoubleSpinBox()
        self.max_ms.setRange(0, 600_000)
        self.max_ms.setSuffix(" ms")
        self.max_ms.setSpecialValueText("no limit")  # shown for 0
        self.max_ms.setToolTip("Only traces at most this slow (0 = no limit)")
        self.errors_only = QCheckBox("errors only (5xx)")
        self.time_window: tuple[float, float] | None = None
        self.window_label = QLabel("")
        self.clear_window = QPushButton("Any time")
        self.clear_window.setToolTip("Drop the time window (keep the other filters)")
        self.clear_window.clicked.connect(lambda: self.set_time_window(None))
        for control in (self.route.currentIndexChanged, self.min_ms.valueChanged,
                        self.max_ms.valueChanged, self.errors_only.toggled):
            control.connect(self._filters_changed)
        self.table = SortableTable(TRACE_HEADERS, tooltips=TRACE_TIPS)
        # Slowest first; exemplars first while there are some, until the operator sorts.
        self._auto_sort = True
        self.table.sortItems(DURATION_COLUMN, Qt.SortOrder.DescendingOrder)
        self.table.horizontalHeader().sectionClicked.connect(self._sorted_by_hand)
        self.table.row_selected.connect(self.show_trace)
        self.table.set_promql(promql.trace_cell)  # a trace is one request: no PromQL
        self.waterfall = WaterfallView()
        self.hint = QLabel(NO_TRACES)
        self.hint.setWordWrap(True)
        filters = QHBoxLayout()
        for widget in (QLabel("Route:"), self.route, QLabel("at least:"), self.min_ms,
                       QLabel("at most:"), self.max_ms, self.errors_only, self.window_label,
                       self.clear_window):
            filters.addWidget(widget)
        filters.addStretch(1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.waterfall)
        split.setSizes([450, 300])
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.hint)
        layout.addWidget(split, 1)
        self.charts: list[TimeSeriesView] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self.exemplar_ids: set[str] = set()
        self.set_time_window(None)

    def filter_to(self, route: str, min_ms: float = 0.0, max_ms: float = math.inf,
                  window: tuple[float, float] | None = None) -> None:
        """Show traces of ``route`` between ``min_ms`` and ``max_ms`` that ended in
        ``window`` (unix s); the jump from a slow route, a chart point or a heatmap cell.
        Filters not given are cleared."""
        if self.route.findText(route) < 0:
            self.route.addItem(route)
        self.route.setCurrentText(route)
        self.min_ms.setValue(min_ms)
        self.max_ms.setValue(max_ms if math.isfinite(max_ms) else 0.0)
        self._auto_sort = True  # a jump shows its exemplars first again
        self.set_time_window(window)

    @Slot(int)
    def _sorted_by_hand(self, _column: int) -> None:
        """The operator chose a sort: keep it, whatever the filters bring."""
        self._auto_sort = False

    def set_time_window(self, window: tuple[float, float] | None) -> None:
        """Keep only traces that ended in ``window`` (None: any time)."""
        self.time_window = window
        self.clear_window.setVisible(window is not None)
        self.window_label.setVisible(window is not None)
        if window is not None:
            self.window_label.setText(f"ended {_clock(window[0])[:8]}–{_clock(window[1])[:8]}")
        self.refresh(time.time())

    @Slot()
    def _filters_changed(self, *_: object) -> None:
        self.refresh(time.time())

    def refresh(self, since: float) -> None:
        route = self.route.currentText()
        route_or_none = None if route == ALL_ROUTES else route
        max_ms = self.max_ms.value() or math.inf
        traces = self.model.query_traces(route_or_none, self.min_ms.value(),
                                         self.errors_only.isChecked(), max_ms=max_ms,
                                         window=self.time_window)
        self._sync_routes()
        self.exemplar_ids = self._exemplars(route_or_none, max_ms)
        # Exemplars first in the source order too, so the (stable) sort keeps them on top.
        traces.sort(key=lambda t: t["trace_id"] not in self.exemplar_ids)
        self._by_key = {f"{t['instance']}/{t['trace_id']}/{t['span_id']}": t for t in traces}
        self.table.set_rows([(key, [
            (_clock(t["start"]), t["start"]),
            (t.get("route", ""), t.get("route", "")), (t.get("method", ""), t.get("method", "")),
            (str(t.get("status", "")), int(t.get("status", 0))),
            (fmt.duration(t["duration_ms"] / 1000.0), _sort_ms(t)),
            (t["instance"], t["instance"]), (t.get("cache", ""), t.get("cache", "")),
            (t["trace_id"], t["trace_id"]),
            ("★ exemplar" if t["trace_id"] in self.exemplar_ids else "",
             EXEMPLAR_FIRST * (t["trace_id"] in self.exemplar_ids) + _sort_ms(t))])
            for key, t in self._by_key.items()],
            highlight={k for k, t in self._by_key.items() if int(t.get("status", 0)) >= 500})
        if self._auto_sort:
            marked = any(t["trace_id"] in self.exemplar_ids for t in traces)
            self.table.sortItems(EXEMPLAR_COLUMN if marked else DURATION_COLUMN,
                                 Qt.SortOrder.DescendingOrder)
        if self.table.selected_key() is None and traces:
            self.table.selectRow(0)  # so the waterfall is never empty while traces exist
        errors = self.model.read(lambda m: dict(m.trace_errors))
        self.hint.setVisible(not traces)
        narrowed = self.time_window is not None or self.max_ms.value() or self.min_ms.value()
        self.hint.setText(NO_TRACES if not narrowed else (
            "No traces match these filters: the cockpit keeps the newest "
            f"{self.model.traces.maxlen} traces from the agents. Try “Any time” or a wider "
            "duration range."))
        if errors:
            self.hint.setText("Traces unavailable from " + "; ".join(
                f"{k}: {v}" for k, v in sorted(errors.items())))

    def _exemplars(self, route: str | None, max_ms: float) -> set[str]:
        """Exemplar trace ids of ``route`` in the current time window and duration range."""
        if route is None:
            return set()
        t0, t1 = self.time_window if self.time_window is not None else (-math.inf, math.inf)
        return set(self.model.exemplar_ids(route, t0, t1, self.min_ms.value() / 1000.0,
                                           max_ms / 1000.0))

    def _sync_routes(self) -> None:
        known = {self.route.itemText(i) for i in range(self.route.count())}
        routes = self.model.read(lambda m: sorted(m.routes))
        for route in routes:
            if route not in known:
                self.route.addItem(route)

    @Slot(str)
    def show_trace(self, key: str) -> None:
        trace = self._by_key.get(key)
        if trace is None:
            return
        dur = trace["duration_ms"]
        title = (f"{trace.get('method', '')} {trace.get('route', '')} · {trace.get('status', '')}"
                 f" · {fmt.duration(dur / 1000.0) if not math.isnan(dur) else '–'}"
                 f" · {trace['instance']} · trace {trace['trace_id'][:12]}…")
        self.waterfall.set_spans(title, spans_of(trace))

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
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView
from trimtab.widgets.waterfall import Span, WaterfallView

from . import format as fmt
from .model import FleetModel

TRACE_HEADERS = ("time", "route", "method", "status", "duration", "instance", "cache", "trace id")
ALL_ROUTES = "all routes"


def _clock(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix)) + f".{int(unix % 1 * 1000):03d}"


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
    """Traces from every agent, filtered by route, minimum duration and errors."""

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.route = QComboBox()
        self.route.addItem(ALL_ROUTES)
        self.min_ms = QDoubleSpinBox()
        self.min_ms.setRange(0, 600_000)
        self.min_ms.setSuffix(" ms")
        self.min_ms.setToolTip("Only traces at least this slow")
        self.errors_only = QCheckBox("errors only (5xx)")
        for control in (self.route.currentIndexChanged, self.min_ms.valueChanged,
                        self.errors_only.toggled):
            control.connect(self._filters_changed)
        self.table = SortableTable(TRACE_HEADERS)
        self.table.sortItems(0, Qt.SortOrder.DescendingOrder)
        self.table.row_selected.connect(self.show_trace)
        self.waterfall = WaterfallView()
        self.hint = QLabel("No traces yet: traces come from trimtab agents that the cockpit "
                           "can read with a token (the demo's agents are set up for it).")
        self.hint.setWordWrap(True)
        filters = QHBoxLayout()
        for widget in (QLabel("Route:"), self.route, QLabel("at least:"), self.min_ms,
                       self.errors_only):
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

    def filter_to(self, route: str, min_ms: float = 0.0) -> None:
        """Show traces of ``route`` at least ``min_ms`` slow (the jump from a slow route)."""
        if self.route.findText(route) < 0:
            self.route.addItem(route)
        self.route.setCurrentText(route)
        self.min_ms.setValue(min_ms)

    @Slot()
    def _filters_changed(self, *_: object) -> None:
        self.refresh(time.time())

    def refresh(self, since: float) -> None:
        route = self.route.currentText()
        traces = self.model.query_traces(None if route == ALL_ROUTES else route,
                                         self.min_ms.value(), self.errors_only.isChecked())
        self._sync_routes()
        self._by_key = {f"{t['instance']}/{t['trace_id']}/{t['span_id']}": t for t in traces}
        self.table.set_rows([(key, [
            (_clock(t["start"]), t["start"]),
            (t.get("route", ""), t.get("route", "")), (t.get("method", ""), t.get("method", "")),
            (str(t.get("status", "")), int(t.get("status", 0))),
            (fmt.duration(t["duration_ms"] / 1000.0), t["duration_ms"]),
            (t["instance"], t["instance"]), (t.get("cache", ""), t.get("cache", "")),
            (t["trace_id"], t["trace_id"])]) for key, t in self._by_key.items()],
            highlight={k for k, t in self._by_key.items() if int(t.get("status", 0)) >= 500})
        if self.table.selected_key() is None and traces:
            self.table.selectRow(0)  # so the waterfall is never empty while traces exist
        errors = self.model.read(lambda m: dict(m.trace_errors))
        self.hint.setVisible(not traces)
        if errors:
            self.hint.setText("Traces unavailable from " + "; ".join(
                f"{k}: {v}" for k, v in sorted(errors.items())))  # type: ignore[attr-defined]

    def _sync_routes(self) -> None:
        known = {self.route.itemText(i) for i in range(self.route.count())}
        routes = self.model.read(lambda m: sorted(m.routes))
        for route in routes:  # type: ignore[attr-defined]
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

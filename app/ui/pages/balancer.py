"""The Balancer page: weights, states, expected and observed share now and over time. GUI thread."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.table import SortableTable, natural_key
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel
from . import promql
from .common import percent_series, sort_key

# Short headers so every column fits beside the bars on a 1,366 px screen; the tooltips
# carry the full meaning.
BALANCER_HEADERS = ("server", "state", "health", "weight", "expected", "observed",
                    "in flight", "p95", "errors/s")
BALANCER_TIPS = {
    "server": "Backend server, as the balancer names it",
    "state": "ready, drain (no new sessions) or maint (out of rotation)",
    "health": "The balancer's health check: up or DOWN",
    "weight": "The server's weight; its expected share is weight / Σ weights of ready servers",
    "expected": "Expected share of requests: weight / Σ weights",
    "observed": "Observed share of requests over the last 10 s",
    "in flight": "Requests the balancer is proxying to the server right now",
    "p95": "95th percentile latency of requests through the balancer to this server, with "
           "the histogram bucket bounds it lies between",
    "errors/s": "Requests the balancer failed to proxy to this server, per second",
}
NO_DATA = "No balancer data yet."
NO_LATENCY_HISTOGRAM = ("No latency per backend from this balancer: HAProxy's exporter has no "
                        "latency histogram (the share and the table need none). The built-in "
                        "balancer reports one.")


class BalancerPage(QWidget):
    """Per server: expected vs observed share, state, weight, in-flight, latency; share over time."""

    weights_requested = Signal()

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.change_button = QPushButton("Change weights / drain / maint…")
        self.change_button.setEnabled(False)
        self.change_button.setToolTip("Disabled: no control token")
        self.change_button.clicked.connect(self.weights_requested)
        self.table = SortableTable(BALANCER_HEADERS, tooltips=BALANCER_TIPS)
        self.table.sortItems(0, Qt.SortOrder.AscendingOrder)  # api-1, api-2, api-3 as the bars
        self.bars = ShareBarsView()
        self.share_time = TimeSeriesView("Request share per backend over time", "share (%)", "",
                                         NO_DATA, y_range=(0, 100))
        self.latency = TimeSeriesView("p95 latency per backend (through the balancer)",
                                      "p95 latency", "s", NO_DATA)
        self.hint = QLabel("No balancer target yet: start the demo or add the balancer's "
                           "/_trimtab/metrics as a target.")
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.table)
        top.addWidget(self.bars)
        top.setStretchFactor(0, 3)  # the table first: its columns must all show
        top.setStretchFactor(1, 2)
        top.setSizes([820, 480])
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.share_time)
        bottom.addWidget(self.latency)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.change_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(split, 1)
        self.charts = [self.share_time, self.latency]
        self.table.set_promql(promql.balancer_cell(model))
        self.bars.set_promql(promql.share_bar(model), promql.EXPECTED_LEAD)
        self.share_time.set_promql(promql.by_route(model, "share"), promql.PERCENT_LEAD)
        self.latency.set_promql(promql.by_route(model, "lb_p95"))

    def latency_empty_text(self) -> str:
        """What the p95 chart says while it has nothing to draw."""
        return self.latency.empty_hint()

    def refresh(self, since: float) -> None:
        # One order everywhere: the table, the bars and the legends read api-1, api-2, api-3.
        rows = sorted(self.model.read(lambda m: list(m.share)), key=lambda r: natural_key(r.server))
        self.table.set_rows([(r.server, [
            (r.server, natural_key(r.server)), (r.state, r.state), ("up" if r.up else "DOWN", int(r.up)),
            (f"{r.weight:g}", sort_key(r.weight)), (fmt.percent(r.expected), sort_key(r.expected)),
            (fmt.percent(r.observed), sort_key(r.observed)), (f"{r.in_flight:g}", r.in_flight),
            (fmt.quantile(r.p95), r.p95.value if r.p95 else -1.0),
            (fmt.rate(r.error_rate), sort_key(r.error_rate))])
            for r in rows], highlight={r.server for r in rows if not r.up})
        self.bars.set_rows([(r.server, r.expected, r.observed) for r in rows])
        self.hint.setVisible(not rows)
        self.share_time.set_series(percent_series(self.model.snapshot("share", since)))
        latency = self.model.snapshot("lb_p95", since)
        # Traffic measured (an observed share) but no p95 anywhere: the balancer exports no
        # latency histogram (HAProxy's exporter), which no amount of waiting changes. (The
        # built-in balancer's buckets get their rates in the same scrape as its requests.)
        measured = any(not math.isnan(r.observed) for r in rows)
        no_latency = all(r.p95 is None for r in rows) and not any(
            np.isfinite(v).any() for _, v in latency.values())
        self.latency.set_empty_hint(NO_LATENCY_HISTOGRAM if measured and no_latency
                                    else NO_DATA)
        self.latency.set_series(latency)

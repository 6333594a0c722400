"""The Balancer page: weights, states, expected and observed share now and over time. GUI thread."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel
from .common import percent_series, sort_key

BALANCER_HEADERS = ("server", "state", "health", "weight", "expected share", "observed share",
                    "in flight", "p95 via balancer", "proxy errors")


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
        self.table = SortableTable(BALANCER_HEADERS)
        self.bars = ShareBarsView()
        self.share_time = TimeSeriesView("Request share per backend over time", "share (%)", "",
                                         "No balancer data yet.", y_range=(0, 100))
        self.latency = TimeSeriesView("p95 latency per backend (through the balancer)",
                                      "p95 latency", "s", "No balancer data yet.")
        self.hint = QLabel("No balancer target yet: start the demo or add the balancer's "
                           "/_trimtab/metrics as a target.")
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.table)
        top.addWidget(self.bars)
        top.setSizes([760, 540])
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

    def refresh(self, since: float) -> None:
        rows = self.model.read(lambda m: list(m.share))
        self.table.set_rows([(r.server, [
            (r.server, r.server), (r.state, r.state), ("up" if r.up else "DOWN", int(r.up)),
            (f"{r.weight:g}", sort_key(r.weight)), (fmt.percent(r.expected), sort_key(r.expected)),
            (fmt.percent(r.observed), sort_key(r.observed)), (f"{r.in_flight:g}", r.in_flight),
            (fmt.quantile(r.p95), r.p95.value if r.p95 else -1.0),
            (fmt.rate(r.error_rate), sort_key(r.error_rate))])
            for r in rows], highlight={r.server for r in rows if not r.up})
        self.bars.set_rows([(r.server, r.expected, r.observed) for r in rows])
        self.hint.setVisible(not rows)
        self.share_time.set_series(percent_series(self.model.snapshot("share", since)))
        self.latency.set_series(self.model.snapshot("lb_p95", since))

"""The Overview page: fleet-wide latency, rate, hit ratio and balancer share at a glance. GUI
thread.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QGridLayout,
    QWidget,
)
from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.timeseries import TimeSeriesView

from ...model.fleet import FleetModel
from .common import TOP_ROUTES, percent_series


def _top_routes(model: FleetModel) -> tuple[list[str], list[str]]:
    """Routes ranked by time spent, and cached routes ranked by lookups (under the lock)."""
    by_time = sorted(model.routes.values(), key=lambda s: s.time_spent, reverse=True)
    by_lookups = sorted(model.cache, key=lambda c: c.hits + c.misses, reverse=True)
    return ([s.route for s in by_time[:TOP_ROUTES]],
            [c.route for c in by_lookups[:TOP_ROUTES]])


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
        top, cached = self.model.read(_top_routes)
        self.latency.set_series(self.model.snapshot("p95", since, top))
        self.hit_ratio.set_series(percent_series(self.model.snapshot("hit_ratio", since, cached)))
        self.share_time.set_series(percent_series(self.model.snapshot("share", since)))
        rows = self.model.read(lambda m: [(r.server, r.expected, r.observed) for r in m.share])
        self.share_bars.set_rows(rows)

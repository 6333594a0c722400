"""The Overview page: a headline in words, then fleet-wide latency, rate, hit ratio and
balancer share at a glance. GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget
from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.timeseries import TimeSeriesView

from ...model.fleet import FleetModel
from ...model.headline import Headline, headline
from . import promql
from .common import TOP_ROUTES, percent_series, top_n


def _top_routes(model: FleetModel, shown: set[str], shown_cached: set[str]
                ) -> tuple[list[str], list[str]]:
    """Routes ranked by time spent, and cached routes ranked by lookups (under the lock)."""
    by_time = top_n({s.route: s.time_spent for s in model.routes.values()}, TOP_ROUTES, shown)
    by_lookups = top_n({c.route: c.hits + c.misses for c in model.cache}, TOP_ROUTES,
                       shown_cached)
    return by_time, by_lookups


class OverviewPage(QWidget):
    """The headline, p95 per route, hit ratio per route, share over time, expected vs observed."""

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        # The problem in words first: an operator reads a sentence faster than four charts.
        self.headline = QLabel(Headline(None, None, 0, 0.0, float("nan")).text())
        self.headline.setObjectName("headline")
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a strip set off from the charts, in the platform's colours (light or dark desktop)
        self.headline.setStyleSheet("QLabel#headline { padding: 6px 10px; border-radius: 4px;"
                                    " background: palette(alternate-base); }")
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.headline.setFont(font)
        self._facts = Headline(None, None, 0, 0.0, float("nan"))
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
        grid = QGridLayout()
        grid.addWidget(self.latency, 0, 0)
        grid.addWidget(self.hit_ratio, 0, 1)
        grid.addWidget(self.share_time, 1, 0)
        grid.addWidget(self.share_bars, 1, 1)
        # Equal rows and columns, whichever charts show their empty-state line.
        for i in (0, 1):
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.headline)
        layout.addLayout(grid, 1)
        self.charts = [self.latency, self.hit_ratio, self.share_time]
        # "Copy as PromQL": each curve's expression, for Grafana or the Prometheus UI.
        self.latency.set_promql(promql.by_route(model, "p95"),
                                "Fleet p95 per route: histogram_quantile over the buckets "
                                "summed across instances.")
        self.hit_ratio.set_promql(promql.by_route(model, "hit_ratio"), promql.PERCENT_LEAD)
        self.share_time.set_promql(promql.by_route(model, "share"), promql.PERCENT_LEAD)
        self.share_bars.set_promql(promql.share_bar(model), promql.EXPECTED_LEAD)

    def headline_facts(self) -> Headline:
        """What the headline strip says, as data (its text is ``headline.text()``)."""
        return self._facts

    def refresh(self, since: float) -> None:
        # At most TOP_ROUTES curves per chart: 50 tangled lines help nobody (the Slow routes
        # page lists them all) and each curve costs paint time.
        top, cached = self.model.read(
            lambda m: _top_routes(m, set(self.latency.data), set(self.hit_ratio.data)))
        # keep_gone=False: a route that left the top N leaves the legend (it listed 11).
        self.latency.set_series(self.model.snapshot("p95", since, top), keep_gone=False)
        self.hit_ratio.set_series(percent_series(self.model.snapshot("hit_ratio", since, cached)),
                                  keep_gone=False)
        self.share_time.set_series(percent_series(self.model.snapshot("share", since)))
        rows = self.model.read(lambda m: [(r.server, r.expected, r.observed) for r in m.share])
        self.share_bars.set_rows(rows)
        # The headline reads each instance's last p95: the last half minute is enough to
        # copy (the live window may hold an hour of it).
        ends = [float(t[-1]) for t, _ in self.latency.data.values() if len(t)]
        self._facts = headline(self.model, max([since, *(end - 30.0 for end in ends)]))
        text = self._facts.text()
        if text != self.headline.text():  # a relayout per refresh costs paint time
            self.headline.setText(text)

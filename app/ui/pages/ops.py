"""Cache and balancer pages (GUI thread): tables of the current figures plus charts over time."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget
from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel
from .common import TOP_ROUTES, _percent


def _num(value: float) -> float:
    return -1.0 if math.isnan(value) else value


CACHE_HEADERS = ("route", "TTL (per instance)", "hit ratio", "hits", "misses", "bypasses")


NO_TTL = "unknown (no read token)"


def ttl_text(ttls: dict[str, float], unknown: str = NO_TTL) -> tuple[str, bool]:
    """``"10 s"`` when every instance agrees, else each value with its instances; flag
    disagreement. ``unknown`` when no instance's config was read."""
    if not ttls:
        return unknown, False
    groups: dict[float, list[str]] = {}
    for agent, ttl in sorted(ttls.items()):
        groups.setdefault(ttl, []).append(agent)
    if len(groups) == 1:
        ttl = next(iter(groups))
        return ("off" if ttl == 0 else f"{ttl:g} s"), False
    return " · ".join(f"{'off' if t == 0 else f'{t:g} s'} on {', '.join(a)}"
                      for t, a in sorted(groups.items())), True


class CachePage(QWidget):
    """Hit ratio per route over time and the lookups behind it (hits / misses / bypasses)."""

    ttl_requested = Signal(str)  # route
    invalidate_requested = Signal(str)  # route

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.ttl_unknown = NO_TTL  # the TTL cell when no config was read (a replay says why)
        self.change_button = QPushButton("Change TTL of the selected route…")
        self.change_button.setEnabled(False)
        self.change_button.setToolTip("Disabled: no control token")
        self.change_button.clicked.connect(self._ask_ttl)
        self.invalidate_button = QPushButton("Invalidate the selected route…")
        self.invalidate_button.setEnabled(False)
        self.invalidate_button.setToolTip("Disabled: no control token")
        self.invalidate_button.clicked.connect(
            lambda: self._selected_route() and self.invalidate_requested.emit(self._selected_route()))
        self.table = SortableTable(CACHE_HEADERS)
        self.table.sortItems(3, Qt.SortOrder.DescendingOrder)
        self.table.row_selected.connect(self._route_selected)
        self._since: float | None = None
        self._title = ""
        self.hit_ratio = TimeSeriesView("Cache hit ratio per route", "hit ratio (%)", "",
                                        "No cache lookups yet: only routes with a TTL are cached.",
                                        y_range=(0, 100))
        self.hint = QLabel("No cached routes yet. A route is cached once its TTL is above zero; "
                           "bypasses are requests with Authorization or Cookie headers. "
                           "Instances whose TTLs disagree are shown in orange.")
        self.hint.setWordWrap(True)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.hit_ratio)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.invalidate_button)
        buttons.addWidget(self.change_button)
        layout.addLayout(buttons)
        layout.addWidget(split, 1)
        self.charts = [self.hit_ratio]

    def _selected_route(self) -> str | None:
        route = self.table.selected_key()
        if route is None and self.table.rowCount():
            route = self.table.column_texts(0)[0]
        return route

    def _ask_ttl(self) -> None:
        route = self._selected_route()
        if route is not None:
            self.ttl_requested.emit(route)

    def refresh(self, since: float) -> None:
        rows = self.model.read(lambda m: list(m.cache))
        table, disagree = [], set()
        for r in rows:  # type: ignore[attr-defined]
            ttl, split = ttl_text(self.model.ttls(r.route), self.ttl_unknown)
            if split:
                disagree.add(r.route)
            table.append((r.route, [
                (r.route, r.route), (ttl, ttl), (fmt.percent(r.hit_ratio), _num(r.hit_ratio)),
                (fmt.rate(r.hits), r.hits), (fmt.rate(r.misses), r.misses),
                (fmt.rate(r.bypasses), r.bypasses)]))
        self.table.set_rows(table, highlight=disagree)
        self.hint.setVisible(not rows)
        self._since = since
        self._chart(rows)  # type: ignore[arg-type]

    def _route_selected(self, _route: str) -> None:
        """The selected route joins the chart at once, not at the next scrape."""
        if self._since is not None:
            self._chart(self.model.read(lambda m: list(m.cache)))  # type: ignore[arg-type]

    def _chart(self, rows: list) -> None:
        """Hit ratio of the routes with the most lookups, plus the selected one.

        Fifty hit-ratio curves are a tangle nobody can read (and each costs paint
        time): the chart shows the busiest routes, the table lists them all.
        """
        assert self._since is not None
        busiest = sorted(rows, key=lambda r: r.hits + r.misses, reverse=True)[:TOP_ROUTES]
        keys = [r.route for r in busiest]
        selected = self.table.selected_key()
        if selected is not None and selected not in keys:
            keys.append(selected)
        title = ("Cache hit ratio per route" if len(rows) <= TOP_ROUTES else
                 f"Cache hit ratio, top {len(busiest)} of {len(rows)} cached routes by lookups"
                 + (" + the selected route" if len(keys) > len(busiest) else ""))
        if title != self._title:  # a new title re-lays out the plot
            self._title = title
            self.hit_ratio.plot.setTitle(title)
        # a route that left the top N (or was deselected) leaves the legend too
        self.hit_ratio.set_series(_percent(self.model.snapshot("hit_ratio", self._since, keys)),
                                  keep_gone=False)


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
            (f"{r.weight:g}", _num(r.weight)), (fmt.percent(r.expected), _num(r.expected)),
            (fmt.percent(r.observed), _num(r.observed)), (f"{r.in_flight:g}", r.in_flight),
            (fmt.quantile(r.p95), r.p95.value if r.p95 else -1.0),
            (fmt.rate(r.error_rate), _num(r.error_rate))])
            for r in rows], highlight={r.server for r in rows if not r.up})  # type: ignore[attr-defined]
        self.bars.set_rows([(r.server, r.expected, r.observed) for r in rows])  # type: ignore[attr-defined]
        self.hint.setVisible(not rows)
        self.share_time.set_series(_percent(self.model.snapshot("share", since)))
        self.latency.set_series(self.model.snapshot("lb_p95", since))

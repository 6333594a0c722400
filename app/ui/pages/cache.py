"""The Cache page: per-route TTLs and hit ratios now, and the hit ratio over time. GUI thread."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel
from .common import TOP_ROUTES, percent_series, sort_key

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
        for r in rows:
            ttl, split = ttl_text(self.model.ttls(r.route), self.ttl_unknown)
            if split:
                disagree.add(r.route)
            table.append((r.route, [
                (r.route, r.route), (ttl, ttl), (fmt.percent(r.hit_ratio), sort_key(r.hit_ratio)),
                (fmt.rate(r.hits), r.hits), (fmt.rate(r.misses), r.misses),
                (fmt.rate(r.bypasses), r.bypasses)]))
        self.table.set_rows(table, highlight=disagree)
        self.hint.setVisible(not rows)
        self._since = since
        self._chart(rows)

    def _route_selected(self, _route: str) -> None:
        """The selected route joins the chart at once, not at the next scrape."""
        if self._since is not None:
            self._chart(self.model.read(lambda m: list(m.cache)))

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
        self.hit_ratio.set_series(percent_series(self.model.snapshot("hit_ratio", self._since, keys)),
                                  keep_gone=False)

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
from trimtab.widgets.table import SortableTable, TableFilter
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel
from . import promql
from .common import TOP_ROUTES, percent_series, sort_key

CACHE_HEADERS = ("route", "TTL (per instance)", "hit ratio", "hits/s", "misses/s", "bypasses/s")
CACHE_TIPS = {
    "TTL (per instance)": "How long a response stays cached; one value when every instance "
                          "agrees, else each value with its instances (shown in orange)",
    "hit ratio": "hits / (hits + misses) over the rate window, all instances",
    "hits/s": "Cache lookups answered from the cache, per second (all instances)",
    "misses/s": "Cache lookups that went to the handler, per second (all instances)",
    "bypasses/s": "Requests that skipped the cache (Authorization or Cookie headers), per second",
}

NO_TTL = "unknown (no read token)"
NOT_CACHED = "not cached (TTL 0)"
SELECT_FIRST = "Select a route in the table first"


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
        return (NOT_CACHED if ttl == 0 else f"{ttl:g} s"), False
    return " · ".join(f"{'off' if t == 0 else f'{t:g} s'} on {', '.join(a)}"
                      for t, a in sorted(groups.items())), True


class CachePage(QWidget):
    """Hit ratio per route over time and the lookups behind it (hits / misses / bypasses).

    The table lists every known route, the uncached ones marked so; the change buttons act
    on the selected route only (never on whichever row happens to be first).
    """

    ttl_requested = Signal(str)  # route
    invalidate_requested = Signal(str)  # route

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.ttl_unknown = NO_TTL  # the TTL cell when no config was read (a replay says why)
        self.can_write, self._write_reason = False, "no control token"
        self.change_button = QPushButton("Change TTL of the selected route…")
        self.change_button.clicked.connect(self._ask_ttl)
        self.invalidate_button = QPushButton("Invalidate the selected route…")
        self.invalidate_button.clicked.connect(self._ask_invalidate)
        self.table = SortableTable(CACHE_HEADERS, tooltips=CACHE_TIPS)
        self.table.sortItems(3, Qt.SortOrder.DescendingOrder)
        self.table.row_selected.connect(self._route_selected)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.filter = TableFilter(self.table, remember_as="cache")
        self._update_buttons()
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
        buttons.addWidget(self.filter, 1)
        buttons.addWidget(self.invalidate_button)
        buttons.addWidget(self.change_button)
        layout.addLayout(buttons)
        layout.addWidget(split, 1)
        self.charts = [self.hit_ratio]
        self.table.set_promql(promql.cache_cell(model))
        self.hit_ratio.set_promql(promql.by_route(model, "hit_ratio"), promql.PERCENT_LEAD)

    def set_write_access(self, can_write: bool, reason: str) -> None:
        """Whether the token may change things (``reason`` says why not)."""
        self.can_write, self._write_reason = can_write, reason
        self._update_buttons()

    def _update_buttons(self, *_: object) -> None:
        """Enabled with write access and a selected route; otherwise the tooltip says why."""
        route = self.table.selected_key()
        for button, verb in ((self.change_button, "Change the TTL of"),
                             (self.invalidate_button, "Drop the cached entries of")):
            button.setEnabled(self.can_write and route is not None)
            button.setToolTip(f"Disabled: {self._write_reason}" if not self.can_write else
                              f"Disabled: {SELECT_FIRST}" if route is None else
                              f"{verb} {route}")

    def _ask_ttl(self) -> None:
        route = self.table.selected_key()
        if route is not None:
            self.ttl_requested.emit(route)

    def _ask_invalidate(self) -> None:
        route = self.table.selected_key()
        if route is not None:
            self.invalidate_requested.emit(route)

    def refresh(self, since: float) -> None:
        rows = self.model.read(lambda m: list(m.cache))
        looked_up = {r.route for r in rows}
        configured = self.model.read(lambda m: any(bool(doc) for doc in m.configs.values()))
        # Every route the fleet served, not only the cached ones: a route without lookups
        # is uncached, and saying so answers "why is /search not here?".
        known = sorted(self.model.read(lambda m: set(m.routes)) - looked_up)
        table, disagree = [], set()
        for r in rows:
            ttl, split = ttl_text(self.model.ttls(r.route), self.ttl_unknown)
            if split:
                disagree.add(r.route)
            table.append((r.route, [
                (r.route, r.route), (ttl, ttl), (fmt.percent(r.hit_ratio), sort_key(r.hit_ratio)),
                (fmt.rate(r.hits), r.hits), (fmt.rate(r.misses), r.misses),
                (fmt.rate(r.bypasses), r.bypasses)]))
        for route in known:
            ttls = self.model.ttls(route)
            # An instance whose config was read and names no TTL for the route caches nothing.
            ttl, split = (ttl_text(ttls, self.ttl_unknown) if ttls else
                          (NOT_CACHED if configured else self.ttl_unknown, False))
            if split:
                disagree.add(route)
            table.append((route, [(route, route), (ttl, ttl), ("–", -1.0), ("–", -1.0),
                                  ("–", -1.0), ("–", -1.0)]))
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

"""Pages of a replay window that read the replay clock and the chosen percentiles (GUI thread).

The live pages read the wall clock (``time.time()``) for "last scrape … ago"
and for the charts of a newly selected route, and show p50/p95/p99. In a replay
window "now" is the replay clock, and the operator may pick other percentiles
(recomputed from the raw buckets by :class:`~trimtab.app.replay_model.ReplayModel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, Slot

from . import format as fmt
from .model import QUANTILES, FleetModel, TargetHealth
from .pages import FleetPage, RoutesPage, _percent
from .replay_model import level_name
from .target_manager import TargetManager


def route_headers(levels: Sequence[float]) -> tuple[str, ...]:
    """The slow-routes table's headers for ``levels`` (fractions)."""
    return ("route", *(f"{level_name(q)} (bucket, ms)" for q in levels), "rate", "errors",
            "time spent (p95 × rate)")


class ReplayRoutesPage(RoutesPage):
    """Slow routes at the replay clock, with the percentiles in ``levels``."""

    def __init__(self, model: FleetModel) -> None:
        super().__init__(model)
        self.levels: tuple[float, ...] = QUANTILES
        self.since: Callable[[], float] = lambda: -math.inf  # set by the window: clock − range

    def set_levels(self, levels: Sequence[float]) -> None:
        """New columns and curves (the model must already derive these levels)."""
        self.levels = tuple(levels)
        source = self.table.source
        source.beginResetModel()
        source.headers = list(route_headers(self.levels))
        source.rows = []
        source.endResetModel()
        self.table.sortItems(len(source.headers) - 1, Qt.SortOrder.DescendingOrder)
        self.table._sized = False  # size the new columns to their content once

    @Slot(str)
    def select_route(self, route: str) -> None:
        """As the live page, but the charts are filled from the replay clock's window at once."""
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
                      (fmt.percent(s.error_ratio),
                       -1.0 if math.isnan(s.error_ratio) else s.error_ratio),
                      (f"{s.time_spent:.3f} s/s", s.time_spent)]
            rows.append((s.route, cells))
        self.table.set_rows(rows)
        self.hint.setVisible(not rows)
        if self.selected is None and rows:
            self.table.selectRow(0)
        if self.selected is None:
            return
        series = {}
        for q in self.levels:
            found = self.model.snapshot(level_name(q), since, [self.selected]).get(self.selected)
            if found is not None:
                series[level_name(q)] = found
        self.percentiles.set_series(series, keep_gone=False)  # levels dropped leave the legend
        self.instances.set_series(self.model.instance_series(self.selected, since))
        self.heatmap.set_heat(*self.model.heat(self.selected, since))
        err = self.model.snapshot("error_ratio", since, [self.selected])
        self.errors.set_series(_percent({"5xx %": err[self.selected]} if err else {}))


class ReplayFleetPage(FleetPage):
    """Targets as recorded, with "last scrape … ago" counted from the replay clock."""

    def __init__(self, model: FleetModel, manager: TargetManager | None = None) -> None:
        super().__init__(model, manager)
        self.clock: Callable[[], float] = lambda: math.inf  # set by the window

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


def fleet_cells(h: TargetHealth, now: float) -> list[tuple[str, float | str]]:
    """One Fleet row at replay time ``now``; a target never scraped says so, not "56 years ago"."""
    if h.last_scrape > 0:
        ago: tuple[str, float | str] = (fmt.ago(now - h.last_scrape), now - h.last_scrape)
    else:
        ago = ("never", math.inf)
    return [(h.name, h.name), (h.kind, h.kind), ("up" if h.up else "DOWN", int(h.up)), ago,
            (fmt.duration(h.duration), h.duration), (str(h.samples), h.samples),
            (f"{h.failed_scrapes} of {h.ok_scrapes + h.failed_scrapes}", h.failed_scrapes),
            (h.error or "", h.error or "")]

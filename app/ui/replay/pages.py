"""Pages of a replay window: the live pages, pointed at the replay clock and able to change
their percentiles (recomputed from the raw buckets by
:class:`~trimtab.app.replay.model.ReplayModel`). GUI thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ...model.fleet import FleetModel
from ...targets.manager import TargetManager
from ..pages.fleet import FleetPage
from ..pages.routes import RoutesPage, route_headers


class ReplayRoutesPage(RoutesPage):
    """Slow routes at the replay clock, with the percentiles in ``levels``."""

    def __init__(self, model: FleetModel) -> None:
        super().__init__(model)
        self.since: Callable[[], float] = lambda: -math.inf  # set by the window: clock − range

    def set_levels(self, levels: Sequence[float]) -> None:
        """New columns and curves (the model must already derive these levels)."""
        self.levels = tuple(levels)
        headers = route_headers(self.levels)
        self.table.set_headers(headers, len(headers) - 1)


class ReplayFleetPage(FleetPage):
    """Targets as recorded, with "last scrape … ago" counted from the replay clock."""

    def __init__(self, model: FleetModel, manager: TargetManager | None = None) -> None:
        super().__init__(model, manager)
        self.clock: Callable[[], float] = lambda: math.inf  # set by the window

"""Rate limits in a replay: each instance's limits as they were at the replay clock (Qt-free).

A snapshot holds the limits at its window's end and the change journal of the window;
the Limits page reads them from the model's config documents. After every seek,
:class:`RecordedLimits` puts the limits of that moment there (the changes after the clock
undone, see :func:`trimtab.app.snapshot.limits.limits_at`), so the page's table and charts
show the limits the fleet had then; and each balancer's own limits in the model's
``balancer_limits`` (:func:`~trimtab.app.snapshot.limits.balancer_limits_at`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.fleet import FleetModel
from ..snapshot.limits import Limits, balancer_limits_at, limits_at


@dataclass
class RecordedLimits:
    """The limits at the window's end (the instances' and the balancers' own) and the
    journal that leads there."""

    at_end: Limits
    journal: Sequence[Any] = field(default_factory=list)
    balancers_at_end: Limits = field(default_factory=dict)

    @classmethod
    def from_source(cls, source: Any, journal: Sequence[Any]) -> RecordedLimits | None:
        """From a snapshot's ``limits_by_agent()`` and ``balancer_limits_by_name()``; None
        for a source without limits (a store, or a snapshot written before limits were
        kept, with no limit changes). A damaged limits part raises ``SnapshotError``."""
        reads = [getattr(source, name, None) for name in ("limits_by_agent",
                                                          "balancer_limits_by_name")]
        at_end, balancers = (read() if read is not None else {} for read in reads)
        start = float("-inf")  # anything a change touched
        changed = [*limits_at({}, journal, start).values(),
                   *balancer_limits_at({}, journal, start).values()]
        if not at_end and not balancers and not any(changed):
            return None
        return cls(at_end, list(journal), balancers)

    def apply(self, model: FleetModel, t: float) -> None:
        """Set each instance's ``limits`` in ``model.configs``, and each balancer's in
        ``model.balancer_limits``, to what they were at ``t``."""
        limits = limits_at(self.at_end, self.journal, t)
        balancers = balancer_limits_at(self.balancers_at_end, self.journal, t)
        with model.lock:
            for agent, named in limits.items():
                doc = dict(model.configs.get(agent) or {})
                doc["limits"] = named
                model.configs[agent] = doc
            model.balancer_limits.update(balancers)
            model.version += 1

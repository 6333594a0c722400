"""Rate limits in a replay: each instance's limits as they were at the replay clock (Qt-free).

A snapshot holds the limits at its window's end and the change journal of the window;
the Limits page reads them from the model's config documents. After every seek,
:class:`RecordedLimits` puts the limits of that moment there (the changes after the clock
undone, see :func:`trimtab.app.snapshot.limits.limits_at`), so the page's table and charts
show the limits the fleet had then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.fleet import FleetModel
from ..snapshot.limits import Limits, limits_at


@dataclass
class RecordedLimits:
    """The limits at the window's end and the journal that leads there."""

    at_end: Limits
    journal: Sequence[Any] = field(default_factory=list)

    @classmethod
    def from_source(cls, source: Any, journal: Sequence[Any]) -> RecordedLimits | None:
        """From a snapshot's ``limits_by_agent()``; None for a source without limits (a
        store, or a snapshot written before limits were kept, with no limit changes)."""
        read = getattr(source, "limits_by_agent", None)
        at_end: Limits = read() if read is not None else {}
        changed = limits_at({}, journal, float("-inf"))  # anything a change touched
        if not at_end and not any(changed.values()):
            return None
        return cls(at_end, list(journal))

    def apply(self, model: FleetModel, t: float) -> None:
        """Set each instance's ``limits`` in ``model.configs`` to what it was at ``t``."""
        limits = limits_at(self.at_end, self.journal, t)
        with model.lock:
            for agent, named in limits.items():
                doc = dict(model.configs.get(agent) or {})
                doc["limits"] = named
                model.configs[agent] = doc
            model.version += 1

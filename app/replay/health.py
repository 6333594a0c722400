"""Target health in a replay: what the recording says, at the replay clock (Qt-free).

A store keeps the samples of successful scrapes only, so a replayed model would
see every target as up whenever it had samples and would never hear of a
target that stopped answering. :class:`RecordedHealth` corrects that after
every seek: a target with no samples for longer than its stale limit before
the clock is down ("no samples recorded since …"), a target known to the
snapshot but never sampled in the window is down from the start, and once the
clock reaches the moment the snapshot recorded health (export time, or the
window's end) the recorded state — up/down, error text, scrape duration,
samples and scrape counts — is shown as it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..model.fleet import FleetModel, TargetHealth

NEVER = "no samples recorded in this window"


@dataclass
class Recorded:
    """One target's health as the snapshot stored it, and its scrape interval."""

    name: str
    kind: str
    interval: float | None
    health: dict[str, Any]
    service: str = ""

    @property
    def at(self) -> float:
        """When the health was recorded (0 when the snapshot does not say)."""
        value = self.health.get("last_scrape")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


@dataclass
class RecordedHealth:
    """Applies recorded and derived health to a replayed model at its clock."""

    targets: dict[str, Recorded] = field(default_factory=dict)
    resolution: float = 0.0  # seconds per replayed cycle (0: every stored cycle)

    @classmethod
    def from_source(cls, source: Any, resolution: float = 0.0) -> RecordedHealth:
        """From a snapshot's ``target_info()``; a store (no such method) gives derived health only."""
        info = getattr(source, "target_info", None)
        found: Iterable[Any] = info() if info is not None else ()
        return cls({t.name: Recorded(t.name, t.kind, t.interval, dict(t.health),
                                     str(getattr(t, "service", "") or "")) for t in found},
                   resolution)

    def stale_limit(self, model: FleetModel, name: str) -> float:
        """Seconds without samples after which a target counts as down (two intervals at least)."""
        rec = self.targets.get(name)
        interval = rec.interval if rec is not None and rec.interval else 0.0
        return max(model.stale_after, 2.0 * interval, 2.0 * self.resolution)

    def apply(self, model: FleetModel, clock: float, start: float, end: float) -> None:
        """Rewrite ``model.health`` for the replay clock ``clock`` of window ``[start, end]``."""
        with model.lock:
            for name, rec in self.targets.items():
                if name not in model.health:
                    model.health[name] = TargetHealth(name, rec.kind, error=NEVER,
                                                      service=rec.service)
            for name, h in model.health.items():
                rec = self.targets.get(name)
                if rec is not None and rec.service:
                    h.service = rec.service
                if rec is not None and rec.health and (clock >= end or start <= rec.at <= clock):
                    _recorded(h, rec)
                    continue
                if rec is not None and rec.health.get("duration") is not None:
                    h.duration = float(rec.health["duration"])  # per-cycle durations are not stored
                if h.last_scrape <= 0.0:
                    h.up, h.error = False, NEVER
                elif clock - h.last_scrape > self.stale_limit(model, name):
                    h.up = False
                    h.error = f"no samples recorded since {_hms(h.last_scrape)}"
                else:
                    h.up, h.error = True, ""
            model.health_version += 1


def _recorded(h: TargetHealth, rec: Recorded) -> None:
    """The stored row, field by field (a missing field keeps the replayed value)."""
    stored = rec.health
    h.up = bool(stored.get("up"))
    h.error = str(stored.get("error") or "")
    if rec.at:
        h.last_scrape = rec.at
    for name in ("duration", "samples", "ok_scrapes", "failed_scrapes", "gone"):
        value = stored.get(name)
        if value is not None:
            setattr(h, name, type(getattr(h, name))(value))


def _hms(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix))

"""History from a Prometheus server, replayed like a snapshot (Qt-free).

``History…`` over a Prometheus source asks it once for the range
(:meth:`PromSource.cycles`: one ``query_range``, the step sized to the chart's
width and never above 11,000 points per series) and keeps the answer in a
:class:`MemorySource` — the same ``series``/``query``/``target_info`` interface
as a store or a snapshot — so the replayer, the scrubber, re-aggregation and
the compare dialogs work on it unchanged. The replay model's rate window and
stale limit are widened to the step by :meth:`Replayer.for_window` (a grid
of 15 s points would otherwise be all "stale").
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from trimtab.collectors.prometheus.api import PromAPIError
from trimtab.collectors.prometheus.source import Cycle, PromSource
from trimtab.collectors.scrape import ScrapeTarget

from ..snapshot.open import TargetInfo
from ..store.store import SeriesKey
from .replayer import Replayer, ReplayError, check_window
from .session import ReplaySession

MIN_POINTS, MAX_POINTS = 50, 11_000


@dataclass
class MemorySource:
    """Cycles held in memory, read through the store's query interface."""

    path: str  # where the data came from (error messages name it)
    points: dict[SeriesKey, tuple[list[float], list[float]]] = field(default_factory=dict)
    targets: dict[str, ScrapeTarget] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)  # newest result per target

    @classmethod
    def from_cycles(cls, cycles: Iterable[Cycle], path: str) -> MemorySource:
        """Every sample of every result; a failed result only updates its target's health."""
        source = cls(path)
        for t, results in cycles:
            for result in results:
                name = result.target.name
                source.targets[name] = result.target
                h = source.health.setdefault(name, {"ok_scrapes": 0, "failed_scrapes": 0})
                h.update(up=result.up, last_scrape=t, duration=result.duration,
                         error=result.error, samples=0)
                h["ok_scrapes" if result.up else "failed_scrapes"] += 1
                if result.exposition is None:
                    continue
                samples = result.exposition.samples
                h["samples"] = len(samples)
                for s in samples:
                    times, values = source.points.setdefault(
                        SeriesKey(name, s.name, tuple(sorted(s.labels))), ([], []))
                    times.append(t)
                    values.append(s.value)
        return source

    def series(self, name_prefix: str = "", target: str | None = None) -> list[SeriesKey]:
        return sorted(k for k in self.points if k.name.startswith(name_prefix)
                      and (target is None or k.target == target))

    def query(self, name: str, matchers: dict[str, str] | None = None, *, start: float,
              end: float, max_points: int, target: str | None = None,
              agg: str = "last") -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]:
        """Points of ``name`` in ``[start, end]``; over ``max_points``, the last of each slot."""
        out = {}
        for key, (times, values) in self.points.items():
            if key.name != name or (target is not None and key.target != target):
                continue
            labels = dict(key.labels)
            if matchers and any(labels.get(k) != v for k, v in matchers.items()):
                continue
            t, v = np.asarray(times), np.asarray(values)
            keep = (t >= start) & (t <= end)
            t, v = t[keep], v[keep]
            if len(t) > max_points > 0:
                slot = np.floor((t - start) / ((end - start) / max_points)).astype(np.int64)
                last = np.r_[slot[1:] != slot[:-1], True]
                t, v = t[last], v[last]
            if len(t):
                out[key] = (t, v)
        return out

    def target_info(self) -> list[TargetInfo]:
        """Targets as Prometheus reported them, with their newest health in the range."""
        return [TargetInfo(t.name, t.url, t.kind, t.interval, t.timeout,
                           dict(self.health.get(name, {})))
                for name, t in sorted(self.targets.items())]

    def close(self) -> None:
        self.points.clear()


def chart_points(width_px: int) -> int:
    """Points per series for a chart ``width_px`` wide: one per pixel column, within limits."""
    return max(MIN_POINTS, min(MAX_POINTS, int(width_px)))


def prom_session(source: PromSource, start: float, end: float, points: int,
                 journal: Iterable[Any] = ()) -> ReplaySession:
    """Ask ``source`` for ``[start, end]`` and replay it; ReplayError says why not (a server
    that is down, a query Prometheus refused, a range it holds nothing for)."""
    start, end = check_window(start, end)
    try:
        memory = MemorySource.from_cycles(source.cycles(start, end, chart_points(points)),
                                          f"Prometheus {source.name} ({source.url})")
    except PromAPIError as exc:
        raise ReplayError(f"Prometheus {source.name} ({source.url}): {exc}") from None
    step = source.last_step.step if source.last_step is not None else 0.0
    replayer = Replayer.for_window(memory, start, end)
    title = (f"Prometheus {source.name} {_local(start)} – {_local(end)}, step {step:g} s "
             "— read-only")
    return ReplaySession(title, replayer, [r for r in journal if start <= r.time <= end], "",
                         memory, owns_source=True)


def _local(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))

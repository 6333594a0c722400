"""Replay: stored raw samples back into cycles, and a FleetModel driven by a virtual clock.

The live model writes every sample of every scrape to the store once per cycle,
stamped with the cycle's time (``FleetModel.tick`` → ``Store.write_cycle``).
:func:`cycles_from` turns a window of those raw samples (from a
:class:`~trimtab.app.store.store.Store` or a :class:`~trimtab.app.snapshot.open.Snapshot`)
back into one :class:`ScrapeResult` per target per cycle, so a fresh model fed
from them derives the same series the live one did. :class:`Replayer` feeds a
model up to a virtual clock, seeks back through cheap checkpoints and steps
forward. Qt-free.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from trimtab.collectors.exposition import Exposition, Sample
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

from ..model.fleet import FleetModel, TargetHealth
from ..store.store import SeriesKey
from .health import RecordedHealth
from .limits import RecordedLimits
from .model import ReplayModel

Cycle = tuple[float, list[ScrapeResult]]
Progress = Callable[[float], None]  # fraction of the work done, 0..1
CHUNK_SECONDS = 60.0  # raw samples are read this many seconds at a time (memory stays flat)
CHECKPOINT_EVERY = 30  # cycles between checkpoints: a seek replays at most this many
MAX_CYCLES = 7200  # a longer window is replayed at a coarser step (bounded time and memory)


class ReplayError(ValueError):
    """The window cannot be replayed (bad bounds, or no raw samples in it)."""


class Source(Protocol):
    """What :func:`cycles_from` reads: ``Store`` and ``Snapshot`` both provide it."""

    def series(self, name_prefix: str = "", target: str | None = None) -> list[SeriesKey]: ...

    def query(self, name: str, matchers: dict[str, str] | None = None, *, start: float,
              end: float, max_points: int, target: str | None = None,
              agg: str = "last") -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]: ...


def check_window(start: float, end: float) -> tuple[float, float]:
    """``(start, end)`` as floats; a non-finite bound or ``start >= end`` is a ReplayError."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ReplayError(f"window {name} must be a finite number, got {value!r}")
    if start > end:
        raise ReplayError(f"window start {start} is after its end {end}")
    if start == end:
        raise ReplayError("the window is empty (start equals end)")
    return float(start), float(end)


def cycles_from(source: Source, start: float, end: float) -> Iterator[Cycle]:
    """Every stored cycle with ``start <= t <= end``, oldest first, one result per target.

    Raises :class:`ReplayError` right away (not on first iteration) for bad
    bounds or when the window holds no raw samples.
    """
    start, end = check_window(start, end)
    cycles = iter_cycles(source, start, end)
    first = next(cycles, None)
    if first is None:
        where = getattr(source, "path", "the source")
        raise ReplayError(f"no raw samples between {start:.0f} and {end:.0f} in {where}")
    return itertools.chain([first], cycles)


def iter_cycles(source: Source, start: float, end: float, chunk: float = CHUNK_SECONDS,
                resolution: float = 0.0) -> Iterator[Cycle]:
    """The cycles of ``[start, end]`` without the emptiness check, read ``chunk`` s at a time.

    With ``resolution`` (seconds) only the newest cycle of each step of that
    length is given: counters are cumulative, so rates over the longer steps
    stay exact; a long range is replayed in bounded time and memory.
    """
    chunk = max(chunk, resolution * 64)
    names = sorted({k.name for k in source.series()})
    targets = _targets(source)
    a = start
    while a <= end:
        b = min(a + chunk, end)
        last = b >= end
        grouped = _read_chunk(source, names, a, b, last, resolution)
        for t in sorted(grouped):
            yield t, [_result(targets, name, t, samples)
                      for name, samples in sorted(grouped[t].items())]
        if last:
            return
        a = b


def _read_chunk(source: Source, names: list[str], a: float, b: float, last: bool,
                resolution: float) -> dict[float, dict[str, list[Sample]]]:
    """Samples of ``[a, b)`` (``[a, b]`` for the last chunk) by cycle time, then target.

    With a ``resolution`` each step keeps every series' newest sample, all
    stamped with the step's newest time (a series the store returns raw, having
    fewer points than steps, must not add partial cycles of its own).
    """
    steps = max(1, round((b - a) / resolution)) if resolution > 0 else 2**62
    slots: dict[float, dict[tuple[str, str, Any], float]] = {}
    newest: dict[float, float] = {}
    for name in names:
        for key, (times, values) in source.query(name, start=a, end=b, max_points=steps).items():
            for ti, vi in zip(times.tolist(), values.tolist()):
                if ti >= b and not last:  # b belongs to the next chunk, except at the very end
                    continue
                slot = float(min(steps - 1, int((ti - a) // resolution))) if resolution > 0 \
                    else ti
                slots.setdefault(slot, {})[(key.target, key.name, key.labels)] = vi
                newest[slot] = max(newest.get(slot, ti), ti)
    grouped: dict[float, dict[str, list[Sample]]] = {}
    for slot, samples in slots.items():
        per_target = grouped.setdefault(newest[slot], {})
        for (target, name, labels), value in samples.items():
            per_target.setdefault(target, []).append(Sample(name, labels, value))
    return grouped


def _cycle_step(source: Source, start: float, end: float, probes: int = 8) -> float:
    """The smallest gap between cycles, from a few series (cheap); ReplayError when none has data.

    A series that skipped cycles overstates the gap; the rings are then too small to
    rewind by truncation and the replayer falls back to replaying from the start.
    """
    gaps: list[float] = []
    seen = 0
    for key in source.series():
        found = source.query(key.name, dict(key.labels), start=start, end=end, max_points=2**62,
                             target=key.target).get(key)
        if found is not None and len(found[0]):
            seen += 1
            gaps.extend(np.diff(found[0]).tolist())
            if seen >= probes:
                break
    if not seen:
        where = getattr(source, "path", "the source")
        raise ReplayError(f"no raw samples between {start:.0f} and {end:.0f} in {where}")
    return min(gaps, default=1.0)


def _targets(source: Source) -> dict[str, ScrapeTarget]:
    """Targets as the source knows them (a snapshot keeps url and kind; a store only names)."""
    info = getattr(source, "target_info", None)
    known = ({t.name: ScrapeTarget(t.name, t.url, t.kind, service=getattr(t, "service", ""))
              for t in info()} if info else {})
    balancers = {k.target for k in source.series("trimtab_balancer_requests_total")}
    for key in source.series():
        if key.target not in known:
            kind = "balancer" if key.target in balancers else "instance"
            known[key.target] = ScrapeTarget(key.target, f"stored:{key.target}", kind)
    return known


def _result(targets: dict[str, ScrapeTarget], name: str, t: float,
            samples: list[Sample]) -> ScrapeResult:
    target = targets.get(name) or ScrapeTarget(name, f"stored:{name}")
    return ScrapeResult(target, t, True, 0.0, Exposition(samples=samples))


def replay(cycles: Iterable[Cycle], model: FleetModel, until: float | None = None) -> int:
    """Feed ``cycles`` into ``model`` (ingest each result, then tick), stopping after ``until``.

    Returns the number of cycles fed. This is exactly what the scrape engine
    does live (``sink`` per result, ``on_cycle`` per cycle).
    """
    fed = 0
    for t, results in cycles:
        if until is not None and t > until:
            break
        for result in results:
            model.ingest(result)
        model.tick(t)
        fed += 1
    return fed


@dataclass
class Checkpoint:
    """The model right after the cycle at ``t``: enough to rewind to it without replaying."""

    t: float
    lengths: dict[tuple[str, str], int]
    history: dict[str, deque[Any]]
    health: dict[str, TargetHealth]
    # routes, share, cache and the instances' latest p95 (each replaced whole on every tick)
    tables: tuple[Any, Any, Any, Any]
    heat: dict[str, int] = field(default_factory=dict)  # heat rows per route


@dataclass
class Replayer:
    """Drives ``model`` through ``[start, end]`` of ``source`` by a virtual clock.

    ``clock`` is the virtual time: every cycle up to it has been fed. :meth:`seek` moves it
    anywhere in the window (rewinding to the nearest checkpoint, then
    replaying at most ``CHECKPOINT_EVERY`` cycles); :meth:`step` moves it
    forward. Not thread-safe: call it from one thread (the model itself may be
    read from any thread, under its lock, as the window does).
    """

    source: Source
    start: float
    end: float
    model: FleetModel = field(default_factory=FleetModel)
    traces: Sequence[dict[str, Any]] = ()
    clock: float = -math.inf
    checkpoint_every: int = CHECKPOINT_EVERY
    resolution: float = 0.0  # seconds per replayed cycle; 0: every stored cycle
    recorded: RecordedHealth | None = None  # target health as the source recorded it
    limits: RecordedLimits | None = None  # rate limits as the source recorded them
    checkpoints: list[Checkpoint] = field(default_factory=list)
    _since_checkpoint: int = 0
    _trace_times: list[float] = field(default_factory=list)
    _traces_fed: int = 0

    def __post_init__(self) -> None:
        self.start, self.end = check_window(self.start, self.end)
        self.traces = sorted(self.traces, key=lambda tr: float(tr.get("start", 0.0)))
        self._trace_times = [float(tr.get("start", 0.0)) for tr in self.traces]
        self.checkpoints = [self._checkpoint(-math.inf)]

    @classmethod
    def for_window(cls, source: Source, start: float, end: float,
                   traces: Sequence[dict[str, Any]] = (), max_cycles: int = MAX_CYCLES) -> Replayer:
        """A replayer with a fresh model whose rings hold the whole window without wrapping.

        A window of more than ``max_cycles`` cycles is replayed at a coarser
        ``resolution`` (one cycle per step, the rate window widened to two
        steps). Raises :class:`ReplayError` when the window holds no raw samples.
        """
        start, end = check_window(start, end)
        step = max(_cycle_step(source, start, end), 0.05)
        resolution = 0.0
        if (end - start) / step > max_cycles:
            resolution = step = (end - start) / max_cycles
        model = ReplayModel(capacity=int((end - start) / step * 1.25) + 64,
                           # widened to the step: a coarse grid (Prometheus' step, or a
                           # long window's resolution) must not read as all stale
                           rate_window=max(10.0, 2.0 * step),
                           stale_after=max(5.0, 1.5 * step))
        return cls(source, start, end, model, traces, resolution=resolution,
                   recorded=RecordedHealth.from_source(source, resolution))

    def seek(self, t: float, progress: Progress | None = None) -> float:
        """Move the clock to ``t`` (clamped to the window); returns the new clock.

        Rewinds to the newest checkpoint at or before ``t`` when ``t`` is behind
        the clock (or a checkpoint lies between the clock and ``t``), then
        replays the cycles up to ``t``.
        """
        t = min(max(float(t), self.start), self.end)
        best = self.checkpoints[bisect.bisect_right([c.t for c in self.checkpoints], t) - 1]
        if t < self.clock or best.t > self.clock:
            self._restore(best)
        self._feed(t, progress)
        self.clock = t
        if self.recorded is not None:  # stored samples alone would show every target up
            self.recorded.apply(self.model, t, self.start, self.end)
        if self.limits is not None:  # the samples hold decisions, not the limits themselves
            self.limits.apply(self.model, t)
        return t

    def step(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` of replay time (stops at the window's end)."""
        now = max(self.clock, self.start)
        return self.seek(now + seconds)

    def set_quantiles(self, levels: Sequence[float], progress: Progress | None = None) -> float:
        """Derive ``levels`` (fractions) from the raw buckets: the window is replayed again
        from its start up to the clock (the live three percentiles always stay)."""
        if not isinstance(self.model, ReplayModel):
            raise ReplayError("this replay's model has fixed percentiles")
        clock = self.clock
        self.model.quantiles = tuple(levels)
        self.checkpoints = [self.checkpoints[0]]
        self._restore(self.checkpoints[0])
        return self.seek(clock, progress)

    @property
    def at_end(self) -> bool:
        return self.clock >= self.end

    def _feed(self, until: float, progress: Progress | None) -> None:
        after = self.clock
        if until <= after:
            return
        span = until - max(after, self.start)
        for t, results in iter_cycles(self.source, max(after, self.start), until,
                                      resolution=self.resolution):
            if t <= after:
                continue
            self._feed_traces(t)
            for result in results:
                self.model.ingest(result)
            self.model.tick(t)
            self.clock = t
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.checkpoint_every and self._wrapped() is False \
                    and t > self.checkpoints[-1].t:
                self.checkpoints.append(self._checkpoint(t))
            if progress is not None and span > 0:
                progress(min(1.0, (t - max(after, self.start)) / span))
        self._feed_traces(until)

    def _feed_traces(self, until: float) -> None:
        """Traces that started by ``until`` go into the model (their instance as recorded)."""
        upto = bisect.bisect_right(self._trace_times, until)
        if upto > self._traces_fed:
            for trace in self.traces[self._traces_fed:upto]:
                self.model.ingest_traces(str(trace.get("instance", "?")), [dict(trace)])
            self._traces_fed = upto

    def _wrapped(self) -> bool:
        """Whether a ring overflowed (then rewinding by truncation is impossible)."""
        return any(len(r) >= self.model.capacity for r in self.model.series.values())

    def _checkpoint(self, t: float) -> Checkpoint:
        self._since_checkpoint = 0
        m = self.model
        with m.lock:
            return Checkpoint(
                t, {k: len(r) for k, r in m.series.items()},
                {k: deque(h) for k, h in m._history.items()},  # entries are never mutated
                copy.deepcopy(m.health), (m.routes, m.share, m.cache, m._instance_latest),
                {route: len(ring) for route, ring in m.heat_rings.items()})

    def _restore(self, cp: Checkpoint) -> None:
        """Rewind the model in place (the window's pages keep their reference to it)."""
        m = self.model
        if self._wrapped():  # cannot truncate a wrapped ring: start again from nothing
            cp = self.checkpoints[0]
            self.checkpoints = [cp]
        with m.lock:
            for key in list(m.series):
                n = cp.lengths.get(key)
                if n is None:
                    del m.series[key]
                else:
                    _truncate(m.series[key], n)
            for route in list(m.heat_rings):  # heat rows of the future go too
                n = cp.heat.get(route)
                if n is None:
                    del m.heat_rings[route]
                else:
                    _truncate(m.heat_rings[route], n)
            m._history = {k: deque(h) for k, h in cp.history.items()}
            m.health = copy.deepcopy(cp.health)
            m.routes, m.share, m.cache, m._instance_latest = cp.tables
            m.traces.clear()
            m.version += 1
            m.health_version += 1
        self.clock = cp.t
        self._traces_fed = 0
        self._feed_traces(cp.t)
        self._since_checkpoint = 0


def _truncate(ring: Any, n: int) -> None:
    """Keep a ring's first ``n`` points; valid only while it never wrapped (checked by caller)."""
    ring._n = ring._head = n

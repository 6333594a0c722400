"""Compare two windows (two ranges of one source, or two snapshots): per-route figures and deltas.

A window's figures come from every target's bucket, request and cache increases
over the whole window, summed scrape to scrape with the model's reset rules (a
counter going down, or ``process_start_time_seconds`` / ``_created`` moving), so
p50/p95/p99 follow ``histogram_quantile`` over the window. Qt-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from trimtab.collectors.promql import Quantile, counter_delta, histogram_quantile, sum_buckets

from ..model import format as fmt
from ..model.extract import Counters, extract
from ..model.fleet import QUANTILES
from .replayer import Replayer, ReplayError, Source, check_window, iter_cycles

FIGURES = ("p50", "p95", "p99", "rate", "error_ratio", "hit_ratio")


@dataclass(frozen=True)
class RouteFigures:
    """One route over a whole window, summed over instances (latency in seconds)."""

    route: str
    quantiles: dict[float, Quantile]
    rate: float  # requests per second
    error_ratio: float  # 5xx / all, NaN when idle
    hit_ratio: float  # NaN when not cached

    def value(self, figure: str) -> float:
        """One of :data:`FIGURES` as a float (NaN when unknown)."""
        if figure.startswith("p"):
            q = self.quantiles.get(int(figure[1:]) / 100)
            return q.value if q is not None else math.nan
        return float(getattr(self, figure))


@dataclass(frozen=True)
class WindowFigures:
    label: str
    start: float
    end: float
    routes: dict[str, RouteFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class CompareRow:
    """A route in A and/or B; ``delta[figure]`` is B − A (NaN when either side lacks it)."""

    route: str
    a: RouteFigures | None
    b: RouteFigures | None

    def delta(self, figure: str) -> float:
        if self.a is None or self.b is None:
            return math.nan
        return self.b.value(figure) - self.a.value(figure)

    def ratio(self, figure: str) -> float:
        """B / A (NaN when A is 0 or missing): "+25 %" reads better than a delta of latency."""
        if self.a is None or self.b is None or not self.a.value(figure):
            return math.nan
        return self.b.value(figure) / self.a.value(figure)


def window_figures(source: Source, start: float, end: float, label: str = "") -> WindowFigures:
    """Per-route figures of ``[start, end]``; :class:`ReplayError` when it holds no samples.

    Counter deltas are summed scrape to scrape (as Prometheus' ``increase()``), so a
    restart inside the window loses nothing: first-and-last alone kept only what came
    after the restart (half the rate for a restart halfway through).
    """
    start, end = check_window(start, end)
    totals = _Totals()
    previous: dict[str, Counters] = {}
    first_t = last_t = math.nan
    for t, results in iter_cycles(source, start, end):
        for result in results:
            if result.exposition is None:
                continue
            counters = extract(result.exposition)
            old = previous.get(result.target.name)
            if old is not None:
                totals.add(old, counters)
            previous[result.target.name] = counters
        first_t = t if math.isnan(first_t) else first_t
        last_t = t
    if math.isnan(first_t):
        where = getattr(source, "path", "the source")
        raise ReplayError(f"no raw samples between {start:.0f} and {end:.0f} in {where}")
    return WindowFigures(label, start, end, totals.figures(last_t - first_t))


@dataclass
class _Totals:
    """Bucket, request, error and cache increases over a window, summed over targets."""

    buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    requests: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    cache: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, old: Counters, new: Counters) -> None:
        """One target's increase from one scrape to the next (a reset counts from zero)."""
        for route, bounds in new.buckets.items():
            reset = new.reset_since(old, "buckets", route)
            mine, before = self.buckets.setdefault(route, {}), old.buckets.get(route, {})
            for le, v in bounds.items():
                mine[le] = mine.get(le, 0.0) + counter_delta(before.get(le, 0.0), v, reset)
        for route, v in new.requests.items():
            reset = new.reset_since(old, "requests", route)
            self.requests[route] = (self.requests.get(route, 0.0)
                                    + counter_delta(old.requests.get(route, 0.0), v, reset))
            self.errors[route] = (self.errors.get(route, 0.0)
                                  + counter_delta(old.errors.get(route, 0.0),
                                                  new.errors.get(route, 0.0), reset))
        for key, v in new.cache.items():
            reset = new.reset_since(old, "cache", key)
            self.cache[key] = self.cache.get(key, 0.0) + counter_delta(old.cache.get(key, 0.0),
                                                                       v, reset)

    def figures(self, seconds: float) -> dict[str, RouteFigures]:
        out = {}
        for route, bounds in self.buckets.items():
            summed = sum_buckets([bounds])
            quantiles = {q: r for q in QUANTILES
                         if (r := histogram_quantile(q, summed)) is not None}
            if not quantiles:
                continue
            reqs = self.requests.get(route, 0.0)
            hits, misses = self.cache.get((route, "hit"), 0.0), self.cache.get((route, "miss"), 0.0)
            out[route] = RouteFigures(
                route, quantiles, reqs / seconds if seconds > 0 else math.nan,
                self.errors.get(route, 0.0) / reqs if reqs else math.nan,
                hits / (hits + misses) if hits + misses else math.nan)
        return out


def compare(a: WindowFigures, b: WindowFigures) -> list[CompareRow]:
    """One row per route of either window, slowest p95 of A first."""
    names = set(a.routes) | set(b.routes)
    rows = [CompareRow(r, a.routes.get(r), b.routes.get(r)) for r in names]

    def key(row: CompareRow) -> tuple[float, str]:
        p95 = row.a.value("p95") if row.a else math.nan
        return (-p95 if not math.isnan(p95) else math.inf, row.route)

    return sorted(rows, key=key)


def p95_overlay(source: Source, start: float, end: float,
                progress: Callable[[float], None] | None = None
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """p95 per route over the window, times as seconds from ``start`` (to overlay two windows)."""
    replayer = Replayer.for_window(source, start, end)
    replayer.seek(end, progress)
    return {route: (t - replayer.start, v)
            for route, (t, v) in replayer.model.snapshot("p95").items()}


@dataclass(frozen=True)
class Comparison:
    """Everything the compare view shows: both windows' figures, rows and p95 overlays."""

    a: WindowFigures
    b: WindowFigures
    rows: list[CompareRow]
    overlay_a: dict[str, tuple[np.ndarray, np.ndarray]]
    overlay_b: dict[str, tuple[np.ndarray, np.ndarray]]


def compare_sources(source_a: Source, window_a: tuple[float, float], source_b: Source,
                    window_b: tuple[float, float], labels: tuple[str, str] = ("A", "B"),
                    progress: Callable[[float], None] | None = None) -> Comparison:
    """Figures, rows and overlays of two windows (of one source, or of two snapshots)."""
    a = window_figures(source_a, *window_a, labels[0])
    b = window_figures(source_b, *window_b, labels[1])
    overlay_a = p95_overlay(source_a, *window_a,
                            (lambda f: progress(f / 2)) if progress else None)
    overlay_b = p95_overlay(source_b, *window_b,
                            (lambda f: progress(0.5 + f / 2)) if progress else None)
    return Comparison(a, b, compare(a, b), overlay_a, overlay_b)


COMPARE_HEADERS = ("route", "p50 A", "p50 B", "p95 A", "p95 B", "p95 B vs A", "p99 A", "p99 B",
                   "rate A", "rate B", "errors A", "errors B", "hit ratio A", "hit ratio B")


def compare_cells(row: CompareRow) -> list[tuple[str, float | str]]:
    """Table cells of one compared route: each figure for A and B, and p95 B relative to A."""
    cells: list[tuple[str, float | str]] = [(row.route, row.route)]

    def both(figure: str, text: Callable[[Any], str]) -> None:
        for side in (row.a, row.b):
            value = side.value(figure) if side else float("nan")
            shown = (fmt.quantile(side.quantiles.get(int(figure[1:]) / 100)) if side
                     and figure.startswith("p") else text(value))
            cells.append((shown, -1.0 if math.isnan(value) else value))

    for figure in ("p50", "p95"):
        both(figure, fmt.duration)
    ratio = row.ratio("p95")
    cells.append(("–" if math.isnan(ratio) else f"{(ratio - 1) * 100:+.0f} %",
                  -1e9 if math.isnan(ratio) else ratio))
    both("p99", fmt.duration)
    both("rate", fmt.rate)
    both("error_ratio", fmt.percent)
    both("hit_ratio", fmt.percent)
    return cells


def change_windows(t: float, start: float, end: float, settle: float = 15.0,
                   longest: float = 600.0) -> tuple[tuple[float, float], tuple[float, float]]:
    """Before/after windows of a change at ``t`` inside ``[start, end]``: the same length on
    both sides (at most ``longest``), the ``settle`` seconds right after the change left out
    (caches fill, weights settle), as the before/after card does. ValueError when the
    recording holds no room on one side.
    """
    check_window(start, end)
    if not start <= t <= end:
        raise ValueError(f"the change at {t:.0f} is outside the window {start:.0f}–{end:.0f}")
    length = min(t - start, end - (t + settle), longest)
    if length <= 1.0:
        raise ValueError("the recording has no room for a before/after comparison around "
                         f"this change ({t - start:.0f} s before it, "
                         f"{max(0.0, end - t - settle):.0f} s after the first {settle:.0f} s)")
    return (t - length, t), (t + settle, t + settle + length)

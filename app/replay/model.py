"""A FleetModel for replay windows whose percentiles are chosen by the operator (Qt-free).

The live model derives p50/p95/p99 (``model.QUANTILES``). A replay re-derives
every point from the stored raw buckets, so it can give any other percentile
exactly as the live one would have: :class:`ReplayModel` adds the extra levels
in ``quantiles`` (same ``histogram_quantile`` over the same summed bucket
rates) to each tick, and into each route's :class:`RouteStats`. The live
model is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from trimtab.collectors.promql import histogram_quantile

from ..model.fleet import QUANTILES, FleetModel, TargetWindow, level_name

MAX_LEVELS = 6  # columns and curves a page can show legibly


def parse_levels(text: str) -> tuple[float, ...]:
    """``"p50, p90, 99.9"`` → ``(0.5, 0.9, 0.999)``; ValueError naming the bad item.

    Each item is a percentile in (0, 100), with or without a leading ``p``.
    """
    levels: list[float] = []
    for item in (part.strip() for part in text.replace(";", ",").split(",")):
        if not item:
            continue
        number = item[1:] if item[:1] in "pP" else item
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"{item!r} is not a percentile (write e.g. p90 or 99.9)") from None
        if not 0.0 < value < 100.0 or not math.isfinite(value):
            raise ValueError(f"{item!r} is outside (0, 100)")
        level = round(value / 100.0, 10)  # 99.9 / 100 is 0.9990000000000001; the key is 0.999
        if level not in levels:
            levels.append(level)
    if not levels:
        raise ValueError("give at least one percentile (e.g. p50, p90, p99.9)")
    if len(levels) > MAX_LEVELS:
        raise ValueError(f"at most {MAX_LEVELS} percentiles at a time, got {len(levels)}")
    return tuple(sorted(levels))


@dataclass
class ReplayModel(FleetModel):
    """FleetModel plus any percentiles in ``quantiles`` (the live three are always derived)."""

    quantiles: tuple[float, ...] = QUANTILES
    # A replay covers a chosen range and rewinds by truncating rings: nothing expires.
    expire_after: float = math.inf

    def _derive_latency(self, now: float, windows: list[TargetWindow]) -> None:
        super()._derive_latency(now, windows)
        extra = [q for q in self.quantiles if q not in QUANTILES]
        if not extra:
            return
        for route in sorted(self._latency_routes(extra)):
            summed = self._route_buckets.get(route, [])  # sum by (le) (rate(bucket[W]))
            stats = self.routes.get(route)
            for q in extra:
                result = histogram_quantile(q, summed)
                self._append(level_name(q), route, now, result.value if result else math.nan)
                if stats is not None and result is not None:
                    stats.quantiles[q] = result  # a fresh object of this tick: not shared yet

    def _latency_routes(self, extra: Iterable[float]) -> set[str]:
        names = {level_name(q) for q in extra}
        return set(self._route_buckets) | {k for m, k in self.series if m in names}

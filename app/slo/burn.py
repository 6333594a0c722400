"""Burn rates and error budgets, as the SRE workbook defines them, from raw samples.

The *error ratio* over a window ``W`` at time ``T`` is
``Σ rate(bad[W]) / Σ rate(total[W])`` — for a latency SLO ``bad`` is "total minus
the bucket at the threshold" — evaluated exactly as Prometheus evaluates those
``rate``s (:mod:`trimtab.collectors.rates`), so :mod:`.rules` exported to a real
Prometheus give the same numbers. The *burn rate* is that ratio over the budget
``1 - objective``: 1 spends the budget exactly over the SLO window, 14.4 spends 2 %
of a 30-day budget in one hour.

Alerts follow the workbook's multi-window, multi-burn-rate table: a long window to
be sure and a short one (1/12 of it) to reset fast; both must burn faster than the
factor.

Samples come from wherever the caller has them (the live model's scrapes, the
history store, a Prometheus source): per series, ``(ms, value)`` pairs oldest first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trimtab.collectors.rates import LEFT_OPEN, extrapolated_rate, window_slice

from .definition import SLO
from .sli import latency_sli

Samples = Sequence[tuple[int, float]]  # (unix ms, counter value), oldest first


@dataclass(frozen=True)
class BurnAlert:
    """One row of the workbook's table: page (or ticket) when both windows burn > ``factor``."""

    long_s: float
    short_s: float
    factor: float
    severity: str  # "page" or "ticket"

    @property
    def budget_spent(self) -> float:
        """Share of a 30-day budget spent when the long window fires: factor × long / 30 d."""
        return self.factor * self.long_s / (30 * 86400.0)


# SRE workbook, chapter 5 ("Alerting on SLOs"), table 5-8.
WORKBOOK_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert(3600.0, 300.0, 14.4, "page"),
    BurnAlert(6 * 3600.0, 1800.0, 6.0, "page"),
    BurnAlert(86400.0, 2 * 3600.0, 3.0, "ticket"),
    BurnAlert(3 * 86400.0, 6 * 3600.0, 1.0, "ticket"),
)
FAST = WORKBOOK_ALERTS[0]


def burn_rate(error_ratio: float, slo: SLO) -> float:
    """How many times faster than "exactly on budget" the errors come (NaN without traffic)."""
    return error_ratio / slo.budget if math.isfinite(error_ratio) else math.nan


def budget_remaining(error_ratio_over_window: float, slo: SLO) -> float:
    """Share of the error budget left after the SLO window's error ratio (negative = overspent)."""
    if not math.isfinite(error_ratio_over_window):
        return math.nan
    return 1.0 - error_ratio_over_window / slo.budget


def summed_rate(series: Sequence[Samples], end_ms: int, range_ms: int,
                left_open: bool = LEFT_OPEN) -> float | None:
    """``sum(rate(x[range]))`` at ``end_ms`` over the given series; None when none has a value."""
    total: float | None = None
    for samples in series:
        times = [t for t, _ in samples]
        chosen = samples[window_slice(times, end_ms, range_ms, left_open)]
        r = extrapolated_rate(list(chosen), end_ms, range_ms)
        if r is not None:
            total = r if total is None else total + r
    return total


def error_ratio(slo: SLO, end_ms: int, range_ms: int, *,
                buckets: Mapping[float, Sequence[Samples]] | None = None,
                requests: Mapping[str, Sequence[Samples]] | None = None) -> float:
    """The SLO's error ratio over ``[end - range, end]``; NaN when there was no traffic.

    Latency SLOs read ``buckets`` (``le`` → the matching routes' bucket series;
    ``inf`` must be there), availability SLOs ``requests`` (status → series).
    Between two bounds a latency threshold is interpolated (:func:`.sli.latency_sli`),
    the way :func:`.rules.error_ratio_expr` writes it in PromQL.
    """
    if slo.kind == "latency":
        if not buckets:
            return math.nan
        assert slo.threshold_s is not None
        summed = {le: summed_rate(series, end_ms, range_ms) for le, series in buckets.items()}
        pairs = [(le, v) for le, v in summed.items() if v is not None]
        reading = latency_sli(pairs, slo.threshold_s)
        return reading.bad if math.isfinite(reading.good) else math.nan
    if not requests:
        return math.nan
    all_series = [s for series in requests.values() for s in series]
    total = summed_rate(all_series, end_ms, range_ms)
    if total is None or total <= 0:
        return math.nan
    bad_series = [s for status, series in requests.items() if slo.is_bad_status(status)
                  for s in series]
    bad = summed_rate(bad_series, end_ms, range_ms) or 0.0
    return bad / total


@dataclass(frozen=True)
class AlertState:
    """One workbook row evaluated: the two windows' burn rates and whether it fires."""

    alert: BurnAlert
    long_burn: float
    short_burn: float

    @property
    def firing(self) -> bool:
        return self.long_burn > self.alert.factor and self.short_burn > self.alert.factor

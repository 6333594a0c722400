"""Human formatting of the model's numbers for the views (Qt-free, unit-tested)."""

from __future__ import annotations

import math

from trimtab.collectors.promql import Quantile

# (unit, seconds per unit, at or above this many seconds); the largest that fits is used
_UNITS = (("min", 60.0, 100.0), ("s", 1.0, 1.0), ("ms", 1e-3, 1e-3), ("µs", 1e-6, 0.0))

TIME_SPENT_HELP = ("handler time per second of wall time (p95 × requests/s, seconds per "
                   "second): about how many handlers are busy at once at the p95; "
                   "the routes worth speeding up first")


def _sig3(value: float) -> str:
    """Three significant digits without an exponent: ``807``, ``4.20``, ``0.0123``."""
    rounded = float(f"{value:.3g}")
    if rounded == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{digits}f}"


def _unit(seconds: float) -> tuple[str, float]:
    """The unit a duration is shown in: the largest it reaches once rounded to three
    significant digits, so 0.9996 s reads "1.00 s", never "1000 ms"."""
    magnitude = abs(seconds)
    for name, scale, floor in _UNITS:
        if float(f"{magnitude / scale:.3g}") * scale >= floor:
            return name, scale
    return _UNITS[-1][:2]


def duration(seconds: float) -> str:
    """A duration in the unit that keeps it short, three significant digits.

    ``0.000807`` → ``"807 µs"``, ``0.0042`` → ``"4.20 ms"``, ``0.1834`` → ``"183 ms"``,
    ``6.167`` → ``"6.17 s"``, ``600`` → ``"10.0 min"``. The one rule every table, card
    and headline uses (charts label their axis in ms, see widgets/timeseries.py).
    """
    if math.isnan(seconds):
        return "–"
    if math.isinf(seconds):
        return "∞" if seconds > 0 else "-∞"
    if seconds == 0:
        return "0 s"
    name, scale = _unit(seconds)
    return f"{_sig3(seconds / scale)} {name}"


def duration_range(lower: float, upper: float) -> str:
    """Two bounds in one unit, the upper one's: ``"0–1 ms"``, ``"0.5–1 s"``."""
    name, scale = _unit(upper) if upper else _unit(lower)
    return f"{_bound(lower / scale)}–{_bound(upper / scale)} {name}"


def _bound(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def quantile(q: Quantile | None) -> str:
    """``"180 ms (150–200 ms)"``: the estimate and the bucket bounds the true value lies in.

    In the +Inf bucket the estimate is only a lower bound: ``"≥ 10.0 s (+Inf bucket)"``.
    """
    if q is None:
        return "–"
    if q.in_inf_bucket:
        return f"≥ {duration(q.value)} (+Inf bucket)"
    return f"{duration(q.value)} ({duration_range(q.lower, q.upper)})"


def time_spent(seconds_per_second: float) -> str:
    """p95 × rate: ``6.167`` → ``"6.17 s/s"`` (what it means: :data:`TIME_SPENT_HELP`)."""
    if math.isnan(seconds_per_second):
        return "–"
    return f"{_sig3(seconds_per_second)} s/s"


def percent(ratio: float) -> str:
    if math.isnan(ratio):
        return "–"
    return f"{ratio * 100:.1f} %"


def rate(per_second: float) -> str:
    """Requests per second: one decimal (``"24.9/s"``, ``"1,234.5/s"``); below 0.1 two
    significant digits, so a trickle is not shown as ``"0.0/s"``."""
    if math.isnan(per_second):
        return "–"
    if 0 < abs(per_second) < 0.1:
        return f"{per_second:.2g}/s"
    return f"{per_second:,.1f}/s"


def ago(seconds: float) -> str:
    if seconds < 0 or math.isnan(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    return f"{seconds / 60:.0f} min ago"

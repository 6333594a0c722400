"""Human formatting of the model's numbers for the views (Qt-free, unit-tested)."""

from __future__ import annotations

import math

from trimtab.collectors.promql import Quantile


def duration(seconds: float) -> str:
    """``0.1834`` → ``"183 ms"``; picks µs / ms / s so the number stays short."""
    if math.isnan(seconds):
        return "–"
    if math.isinf(seconds):
        return "∞"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        ms = seconds * 1e3
        return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def _bound(seconds: float) -> str:
    if math.isinf(seconds):
        return "+Inf"
    ms = seconds * 1e3
    if ms < 10:
        return f"{ms:.3g}"
    return f"{ms:.0f}"


def quantile(q: Quantile | None) -> str:
    """``"180 ms (150–200)"``: the estimate and the bucket bounds (ms) the true value lies in.

    In the +Inf bucket the estimate is only a lower bound: ``"≥ 10.0 s (+Inf bucket)"``.
    """
    if q is None:
        return "–"
    if q.in_inf_bucket:
        return f"≥ {duration(q.value)} (+Inf bucket)"
    return f"{duration(q.value)} ({_bound(q.lower)}–{_bound(q.upper)})"


def percent(ratio: float) -> str:
    if math.isnan(ratio):
        return "–"
    return f"{ratio * 100:.1f} %"


def rate(per_second: float) -> str:
    if math.isnan(per_second):
        return "–"
    return f"{per_second:.1f}/s"


def ago(seconds: float) -> str:
    if seconds < 0 or math.isnan(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    return f"{seconds / 60:.0f} min ago"

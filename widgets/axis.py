"""Pure helpers for chart axes (no Qt): a y range that never zooms into float noise, and
value text for a chart's readout. The app's tables format with ``app/model/format.py``;
widgets cannot import the app, so the few rules an axis needs live here."""

from __future__ import annotations

import math

# An auto-ranged y axis spans at least this fraction of the value it shows: a series
# that is constant but for a 1e-13 wobble is drawn flat, not as a full-height zigzag.
MIN_RELATIVE_SPAN = 0.04


def padded_range(lo: float, hi: float, floor: float) -> tuple[float, float]:
    """``[lo, hi]`` widened around its middle to at least ``MIN_RELATIVE_SPAN`` of the
    larger magnitude and at least ``floor`` (data units); a wider range is returned as is."""
    span = max(MIN_RELATIVE_SPAN * max(abs(lo), abs(hi)), floor)
    if hi - lo >= span:
        return lo, hi
    middle = (lo + hi) / 2.0
    return middle - span / 2.0, middle + span / 2.0


def value_text(value: float, units: str) -> str:
    """A readout value: three significant digits and the unit; seconds are shown in ms
    (the unit of every latency axis), so the readout never flips between ms and s."""
    if math.isnan(value):
        return "–"
    if units == "s":
        value, units = value * 1e3, "ms"
    rounded = float(f"{value:.3g}")
    digits = 0 if rounded == 0 else max(0, 2 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{digits}f}" + (f" {units}" if units else "")

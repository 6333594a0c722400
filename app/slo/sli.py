"""The share of good requests, from histogram buckets and status counts, honestly.

A latency SLI is "requests at or under the threshold / all requests". A histogram
knows that share exactly only at its bucket bounds. Between two bounds the share is
interpolated linearly, as ``histogram_quantile`` assumes, and the reading carries the
two shares the truth lies between (the bounds' own counts). Beyond the largest finite
bound, or below the first bound when every request landed in the first bucket (the
"seconds buckets for a millisecond API" trap), the histogram cannot answer: the
reading says so in ``warning`` instead of passing off a guess as a measurement.

Inputs are cumulative ``(le, value)`` pairs (counts or per-second rates: the ratio is
the same), sorted or not, ``+Inf`` included, as ``sum by (le)`` gives them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .definition import format_seconds

# A threshold within this relative distance of a bound is that bound (0.3 vs 0.30000000000000004).
_SAME_BOUND = 1e-9


@dataclass(frozen=True)
class SLIReading:
    """One SLI value with what the histogram can vouch for.

    ``good`` is the best estimate of the good share (NaN when there was no traffic);
    the truth lies in ``[low, high]``; ``exact`` when the threshold is a bucket bound;
    ``bound_s`` is the bucket bound used (the threshold itself when exact, else the
    bounds that bracket it as ``(lower, upper)``); ``warning`` is set when the
    histogram cannot answer this SLO.
    """

    good: float
    low: float
    high: float
    exact: bool
    bound_s: tuple[float, float]
    warning: str = ""

    @property
    def bad(self) -> float:
        """The share that missed: ``1 - good``."""
        return 1.0 - self.good

    @property
    def uncertainty(self) -> float:
        """How far apart the shares are that the truth lies between (0 when exact)."""
        return self.high - self.low

    def describe(self) -> str:
        """``99.12 % (exact at le=0.25)`` or ``98.7 % (interpolated, 97.9–99.4 %)``."""
        if math.isnan(self.good):
            return "no traffic"
        if self.exact and math.isnan(self.bound_s[1]):  # from status counts: no buckets
            return f"{self.good * 100:.4g} %"
        if self.exact:
            return f"{self.good * 100:.4g} % (exact at le={self.bound_s[1]:g})"
        if math.isnan(self.bound_s[1]):  # evaluated elsewhere (a Prometheus server)
            return f"{self.good * 100:.4g} % (interpolated between bucket bounds)"
        return (f"{self.good * 100:.4g} % (interpolated between le={self.bound_s[0]:g} and "
                f"le={self.bound_s[1]:g}: {self.low * 100:.4g}–{self.high * 100:.4g} %)")


def latency_sli(buckets: Iterable[tuple[float, float]], threshold_s: float) -> SLIReading:
    """The share of requests at or under ``threshold_s`` seconds."""
    pairs = sorted((float(le), float(v)) for le, v in buckets)
    if not pairs:  # no series had two samples in the window: no traffic seen, not a bad histogram
        return SLIReading(math.nan, math.nan, math.nan, False, (math.nan, math.nan), "")
    if pairs[-1][0] != math.inf:
        return SLIReading(math.nan, math.nan, math.nan, False, (math.nan, math.nan),
                          "no +Inf bucket: the histogram has no total to divide by")
    total = pairs[-1][1]
    finite = [(le, v) for le, v in pairs if le != math.inf]
    if not math.isfinite(total) or total <= 0:
        return SLIReading(math.nan, math.nan, math.nan, False, (math.nan, math.nan), "")
    if not finite:
        return SLIReading(math.nan, 0.0, 1.0, False, (0.0, math.inf),
                          "only a +Inf bucket: the histogram cannot say how fast anything was")
    largest, below_largest = finite[-1]
    if threshold_s > largest * (1 + _SAME_BOUND):
        low = min(below_largest / total, 1.0)
        return SLIReading(low, low, 1.0, False, (largest, math.inf),
                          f"threshold {format_seconds(threshold_s)} is beyond the largest "
                          f"finite bucket ({format_seconds(largest)}): only "
                          f"'at least {low * 100:.4g} %' can be said")
    lower_le, lower_v = 0.0, 0.0
    for le, v in finite:
        if abs(le - threshold_s) <= _SAME_BOUND * max(le, threshold_s):
            share = min(v / total, 1.0)
            return SLIReading(share, share, share, True, (le, le))
        if le > threshold_s:
            low, high = min(lower_v / total, 1.0), min(v / total, 1.0)
            fraction = (threshold_s - lower_le) / (le - lower_le)
            good = low + (high - low) * fraction
            warning = ""
            if lower_le == 0.0 and v >= total:
                warning = (f"every request is in the first bucket (0–{format_seconds(le)}), "
                           f"wider than the {format_seconds(threshold_s)} threshold: the "
                           "buckets are too coarse for this API (add smaller bounds)")
            return SLIReading(good, low, high, False, (lower_le, le), warning)
        lower_le, lower_v = le, v
    raise AssertionError("unreachable: threshold ≤ the largest finite bound")


def availability_sli(bad: float, total: float) -> SLIReading:
    """The share of requests that did not break the SLO (counts or rates)."""
    if not (math.isfinite(total) and total > 0) or not math.isfinite(bad):
        return SLIReading(math.nan, math.nan, math.nan, True, (math.nan, math.nan), "")
    good = 1.0 - min(max(bad, 0.0) / total, 1.0)
    return SLIReading(good, good, good, True, (math.nan, math.nan))

"""SLO burn rates in the live model: one ``burn`` point per SLO per tick.

Registered as a :attr:`FleetModel.derivers` entry, it reads what the tick just worked out
— the fleet's ``sum by (le)`` bucket rates per route and the per-route request rates by
status class — over the model's rate window ``[W]``, and turns them into the SLO's error
ratio over its budget. Charts and the before/after card then judge the burn like any
other series (``"<slo> burn"``: lower is better).

This is the short-window view (``[W]``, 10 s by default). The workbook's windows and the
budget over days come from the history store (:mod:`.track`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from trimtab.collectors.promql import sum_buckets

from ..model.fleet import FleetModel
from .definition import SLO
from .sli import latency_sli

METRIC = "burn"
# The model's status classes (extract.STATUS_CLASSES) a bad status can be read from;
# a single code other than 429 (say 503) is not in the live model: only the store knows it.
_CLASS_OF = {"5xx": ("5xx",), "4xx": ("4xx", "429"), "429": ("429",), "3xx": ("3xx",),
             "2xx": ("2xx",), "1xx": ("other",)}


def live_error_ratio(model: FleetModel, slo: SLO) -> float:
    """The SLO's error ratio over this tick's window; NaN without traffic (collector thread)."""
    if slo.kind == "latency":
        assert slo.threshold_s is not None
        buckets = model.route_buckets()
        chosen = [dict(pairs) for key, pairs in buckets.items() if slo.matches(key) and pairs]
        if not chosen:
            return math.nan
        reading = latency_sli(sum_buckets(chosen), slo.threshold_s)
        return reading.bad if math.isfinite(reading.good) else math.nan
    classes = [c for status in slo.bad_statuses for c in _CLASS_OF.get(status, ())]
    if len(classes) < len(slo.bad_statuses):  # a single code the classes cannot show
        return math.nan
    rows = [r for key, r in model.routes.items() if slo.matches(key)]
    total = sum(r.rate for r in rows)
    if not rows or total <= 0:
        return math.nan
    bad = sum(r.status_rates.get(c, 0.0) for r in rows for c in set(classes))
    return bad / total


def burn_deriver(slos: Callable[[], Sequence[SLO]]
                 ) -> Callable[[FleetModel, float], list[tuple[str, str, float]]]:
    """A :attr:`FleetModel.derivers` entry: ``("burn", slo.name, burn)`` per SLO ``slos()``
    gives at that tick (the list may change between ticks: the SLO page edits it)."""
    def derive(model: FleetModel, now: float) -> list[tuple[str, str, float]]:
        points = []
        for slo in list(slos()):
            ratio = live_error_ratio(model, slo)
            points.append((METRIC, slo.name, ratio / slo.budget if math.isfinite(ratio)
                           else math.nan))
        return points

    return derive

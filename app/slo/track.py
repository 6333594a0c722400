"""Every SLO evaluated at one instant: SLI now, burn rate per workbook window, budget left.

The samples come from the history store (raw scrapes for hours, 1-minute and 10-minute
rollups for days and weeks) through :class:`StoreSource`; the arithmetic is
:func:`.burn.error_ratio`, the one the exported rules are proven equal to. A window
longer than the history behind it is evaluated over what there is and says how much
that was (``covered_s``), never passed off as the whole window.

Qt-free; the SLO page runs :func:`evaluate` off the GUI thread (store reads can take
a moment for a 28-day budget).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from trimtab.collectors.canonical import HIST_BUCKET, REQUESTS
from trimtab.collectors.prometheus.api import SyncPromAPI

from ..model.extract import series_service
from ..model.keys import route_key
from ..store.store import SeriesKey, Store
from . import rules
from .burn import WORKBOOK_ALERTS, BurnAlert, Samples, burn_rate, error_ratio
from .definition import SLO
from .sli import SLIReading, availability_sli, latency_sli

# Points per series per window read from the store: enough that a window's range holds
# a sample near each end (rates stay exact between "last" points), few enough to be quick.
POINTS_PER_WINDOW = 720


class SampleSource(Protocol):
    """Raw counter samples of the series an SLO reads, for ``[start, end]`` (unix s)."""

    def series(self, name: str, slo: SLO, start: float, end: float
               ) -> dict[SeriesKey, Samples]: ...

    def oldest(self) -> float | None: ...


class StoreSource:
    """Samples from the cockpit's history store; ``targets`` keeps only those instances
    (a canary's own burn rate during a staged rollout).

    ``services`` (target → its service, :attr:`FleetModel.services`) keys each stored
    series' route as the cockpit does, so an SLO with a service reads only that service's
    instances. Without it the stored routes are matched plain (the caller has picked the
    instances, as a canary's burn does).
    """

    def __init__(self, store: Store, targets: Iterable[str] | None = None,
                 services: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.targets = frozenset(targets) if targets is not None else None
        self.services = dict(services) if services is not None else None

    def series(self, name: str, slo: SLO, start: float, end: float
               ) -> dict[SeriesKey, Samples]:
        matchers = None if "*" in slo.route else {"route": slo.route}
        found = self.store.query(name, matchers, start=start, end=end,
                                 max_points=POINTS_PER_WINDOW)
        out: dict[SeriesKey, Samples] = {}
        for key, (t, v) in found.items():
            if self.targets is not None and key.target not in self.targets:
                continue
            labels = dict(key.labels)
            route = labels.get("route", "")
            if self.services is None:
                covered = slo.matches(route_key(slo.service, route))
            else:  # keyed as the model keys it (the series' own service label first)
                service = series_service(labels, self.services.get(key.target, ""))
                covered = slo.matches(route_key(service, route))
            if covered:
                out[key] = [(round(float(a) * 1000), float(b)) for a, b in zip(t, v, strict=True)]
        return out

    def oldest(self) -> float | None:
        return self.store.first_time()


class PrometheusSource:
    """Error ratios evaluated by a Prometheus-compatible server, for windows longer than the
    cockpit's history (28 days of raw samples are the server's to hold, not this process's).

    It asks for the very expressions the exported rules record (:func:`.rules.error_ratio_expr`,
    proven equal to the cockpit's arithmetic on the same samples), so the figures agree.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.api = SyncPromAPI(url, timeout=timeout, headers=dict(headers or {}))

    def error_ratio(self, slo: SLO, at: float, window_s: float) -> float:
        """The SLO's error ratio over ``[at - window_s, at]``; NaN when the server has none.

        PromAPIError (down, refused query) propagates: the page says why, not "no traffic".
        """
        found = self.api.query(rules.error_ratio_expr(slo, window_s), at)
        values = [float(s.values[-1]) for s in found if len(s.values)]
        return values[0] if values else math.nan

    def series(self, name: str, slo: SLO, start: float, end: float
               ) -> dict[SeriesKey, Samples]:
        raise NotImplementedError("a Prometheus source answers error ratios, not samples")

    def oldest(self) -> float | None:
        return 0.0  # the server's retention is not known here: windows are taken as covered


@dataclass(frozen=True)
class WindowBurn:
    """One workbook row at one instant."""

    alert: BurnAlert
    long_burn: float
    short_burn: float
    covered_s: float  # history behind the long window (== long_s when it is full)

    @property
    def firing(self) -> bool:
        return self.long_burn > self.alert.factor and self.short_burn > self.alert.factor


@dataclass(frozen=True)
class SloStatus:
    """One SLO at one instant, as the SLO page and the report show it."""

    slo: SLO
    at: float
    sli: SLIReading  # over ``sli_window_s`` ending at ``at``
    sli_window_s: float
    error_ratio: float  # over the budget window
    budget_remaining: float  # share of the budget left (negative: overspent; NaN: no traffic)
    budget_covered_s: float  # how much of the SLO window the history holds
    burns: tuple[WindowBurn, ...]

    @property
    def fast_burn(self) -> WindowBurn | None:
        return self.burns[0] if self.burns else None

    @property
    def firing(self) -> list[WindowBurn]:
        return [b for b in self.burns if b.firing]

    @property
    def sort_key(self) -> float:
        """Budget remaining, lowest first; no data last."""
        return math.inf if math.isnan(self.budget_remaining) else self.budget_remaining


def _grouped(series: dict[SeriesKey, Samples], label: str) -> dict[str, list[Samples]]:
    out: dict[str, list[Samples]] = {}
    for key, samples in series.items():
        out.setdefault(dict(key.labels).get(label, ""), []).append(samples)
    return out


def ratio(source: SampleSource | PrometheusSource, slo: SLO, at: float,
          window_s: float) -> float:
    """The SLO's error ratio over ``[at - window_s, at]`` from ``source``."""
    if isinstance(source, PrometheusSource):
        return source.error_ratio(slo, at, window_s)
    start = at - window_s
    end_ms, range_ms = round(at * 1000), round(window_s * 1000)
    if slo.kind == "latency":
        raw = _grouped(source.series(HIST_BUCKET, slo, start, at), "le")
        buckets = {float(le): s for le, s in raw.items() if _is_bound(le)}
        return error_ratio(slo, end_ms, range_ms, buckets=buckets)
    requests = _grouped(source.series(REQUESTS, slo, start, at), "status")
    return error_ratio(slo, end_ms, range_ms, requests=requests)


def reading(source: SampleSource | PrometheusSource, slo: SLO, at: float,
            window_s: float) -> SLIReading:
    """The SLI over the window, with the bucket bounds it rests on (latency) or exact."""
    if isinstance(source, PrometheusSource):
        good = 1.0 - source.error_ratio(slo, at, window_s)
        exact = slo.kind == "availability" or any(
            abs(b - (slo.threshold_s or 0.0)) <= 1e-9 * b for b in rules.agent_bounds())
        return SLIReading(good, good, good, exact, (math.nan, math.nan))
    start = at - window_s
    end_ms, range_ms = round(at * 1000), round(window_s * 1000)
    from .burn import summed_rate

    if slo.kind == "latency":
        assert slo.threshold_s is not None
        raw = _grouped(source.series(HIST_BUCKET, slo, start, at), "le")
        pairs = []
        for le, series in raw.items():
            if _is_bound(le):
                value = summed_rate(series, end_ms, range_ms)
                if value is not None:
                    pairs.append((float(le), value))
        return latency_sli(pairs, slo.threshold_s)
    groups = _grouped(source.series(REQUESTS, slo, start, at), "status")
    total = summed_rate([s for ss in groups.values() for s in ss], end_ms, range_ms)
    bad = summed_rate([s for st, ss in groups.items() if slo.is_bad_status(st) for s in ss],
                      end_ms, range_ms)
    return availability_sli(bad or 0.0, total if total is not None else math.nan)


def _is_bound(le: str) -> bool:
    try:
        float(le)
    except ValueError:
        return False
    return True


def evaluate(slos: Iterable[SLO], source: SampleSource | PrometheusSource, at: float,
             sli_window_s: float = 300.0,
             alerts: Sequence[BurnAlert] = WORKBOOK_ALERTS) -> list[SloStatus]:
    """Every SLO at ``at``, sorted by budget remaining (the most spent first)."""
    oldest = source.oldest()
    history = max(0.0, at - oldest) if oldest is not None else 0.0
    out = []
    for slo in slos:
        burns = []
        for alert in alerts:
            long_w = min(alert.long_s, max(history, alert.short_s))
            burns.append(WindowBurn(
                alert, burn_rate(ratio(source, slo, at, long_w), slo),
                burn_rate(ratio(source, slo, at, alert.short_s), slo), min(history, alert.long_s)))
        budget_w = min(slo.window_s, max(history, 60.0))
        err = ratio(source, slo, at, budget_w)
        out.append(SloStatus(
            slo, at, reading(source, slo, at, sli_window_s), sli_window_s, err,
            (1.0 - err / slo.budget) if math.isfinite(err) else math.nan,
            min(history, slo.window_s), tuple(burns)))
    return sorted(out, key=lambda s: (s.sort_key, s.slo.name))

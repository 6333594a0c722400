"""The Overview's headline in words: the slowest route, the backend that stands out, errors.

Qt-free: :func:`headline` reads a :class:`~trimtab.app.model.fleet.FleetModel` and
returns facts a test can check and a sentence an operator can read without a chart.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

from trimtab.collectors.promql import Quantile

from . import format as fmt
from .fleet import FleetModel, RouteStats

# A route must carry this share of the fleet's requests to be named the slowest: a health
# check called once a minute that takes 2 s is not where an operator should look first.
MIN_TRAFFIC_SHARE = 0.01
# A backend stands out when its p95 is this many times its peers' (median of the others).
STANDS_OUT = 1.25
# At most this many routes (by time spent) are compared per instance: enough to see a slow
# backend, few enough that 250 routes × 50 instances are not copied four times a second.
ROUTES_COMPARED = 10


@dataclass(frozen=True)
class RouteFact:
    """The slowest route: its p95 and its share of the time the fleet spends in handlers."""

    route: str
    p95: Quantile
    rate: float  # requests per second
    time_share: float  # 0..1: rate × mean latency of this route / Σ over routes


@dataclass(frozen=True)
class BackendFact:
    """The instance whose p95 is furthest above its peers' on the routes it serves."""

    name: str
    factor: float  # its p95 / its peers' median p95: geometric mean over routes weighted by
    # their time spent (p95 × rate)
    route: str  # the route that pushes its factor up the most (the example in the text)
    p95: float  # its p95 on ``route`` (seconds)
    peers_p95: float  # the median p95 of the other instances on ``route`` (seconds)


@dataclass(frozen=True)
class Headline:
    """What the Overview says in words; NaN / None = nothing to say yet."""

    route: RouteFact | None
    backend: BackendFact | None
    backends: int  # instances compared (fewer than two: nothing can stand out)
    request_rate: float  # requests per second, all routes
    error_ratio: float  # 5xx / all requests, 0..1 (NaN when idle)
    limited_ratio: float = math.nan  # 429 / all requests, 0..1 (NaN: not measured)

    @property
    def stands_out(self) -> bool:
        return self.backend is not None and self.backend.factor >= STANDS_OUT

    def sentences(self) -> list[str]:
        """The headline as sentences, most important first."""
        return [self._route_sentence(), self._backend_sentence(), self._traffic_sentence()]

    def text(self) -> str:
        return "\n".join(self.sentences())

    def _route_sentence(self) -> str:
        r = self.route
        if r is None:
            return "Slowest route: no latency data yet (waiting for the first two scrapes)."
        return (f"Slowest route: {r.route} — p95 {fmt.duration(r.p95.value)}, "
                f"{fmt.rate(r.rate)}, {fmt.percent(r.time_share)} of the time spent in handlers.")

    def _backend_sentence(self) -> str:
        b = self.backend
        if b is None or self.backends < 2:
            return (f"Backends: {self.backends} instance reporting latency, nothing to compare."
                    if self.backends == 1 else "Backends: no per-instance latency yet.")
        example = (f"on {b.route}: {fmt.duration(b.p95)} vs {fmt.duration(b.peers_p95)}")
        if self.stands_out:
            return f"Backend {b.name} stands out: p95 {b.factor:.1f}× its peers' ({example})."
        return (f"No backend stands out: the highest, {b.name}, is {b.factor:.2f}× its peers' "
                f"p95 ({example}).")

    def _traffic_sentence(self) -> str:
        limited = ("429s: not reported by these targets" if math.isnan(self.limited_ratio)
                   else f"429s: {fmt.percent(self.limited_ratio)} of requests")
        return (f"Errors: {fmt.percent(self.error_ratio)} of {fmt.rate(self.request_rate)} "
                f"answered 5xx · {limited}.")


def headline(model: FleetModel, since: float | None = None) -> Headline:
    """The headline of ``model``'s last tick (GUI thread); ``since`` bounds what is copied."""
    routes, buckets = model.read(lambda m: (dict(m.routes), dict(m._route_buckets)))
    total_rate = sum(s.rate for s in routes.values())
    errors = sum(s.rate * s.error_ratio for s in routes.values() if not math.isnan(s.error_ratio))
    ranked = sorted(routes.values(), key=lambda s: (-s.time_spent, s.route))[:ROUTES_COMPARED]
    backend, compared = _standout(model, ranked, since)
    # 429s are counted where targets label requests by status (RouteStats.status_rates)
    measured = any(s.status_rates for s in routes.values())
    limited = sum(s.status_rates.get("429", 0.0) for s in routes.values())
    return Headline(route=_slowest(routes, buckets, total_rate), backend=backend,
                    backends=compared, request_rate=total_rate,
                    error_ratio=errors / total_rate if total_rate else math.nan,
                    limited_ratio=limited / total_rate if measured and total_rate else math.nan)


def _slowest(routes: dict[str, RouteStats], buckets: dict[str, list[tuple[float, float]]],
             total_rate: float) -> RouteFact | None:
    """The busy-enough route with the highest p95, with its share of the time spent."""
    busy = [s for s in routes.values() if 0.95 in s.quantiles
            and (not total_rate or s.rate >= MIN_TRAFFIC_SHARE * total_rate)]
    if not busy:
        return None
    worst = max(busy, key=lambda s: (s.quantiles[0.95].value, s.route))
    spent = {route: mean_latency(b) * routes[route].rate
             for route, b in buckets.items() if route in routes}
    total = sum(v for v in spent.values() if not math.isnan(v))
    share = spent.get(worst.route, math.nan) / total if total else math.nan
    return RouteFact(worst.route, worst.quantiles[0.95], worst.rate, share)


def mean_latency(buckets: list[tuple[float, float]]) -> float:
    """Mean latency (seconds) estimated from ``sum by (le)`` bucket rates (cumulative).

    Each bucket's requests count at its middle (the first bucket's from 0), the +Inf
    bucket's at its lower bound, so the estimate is a floor when requests overflow.
    NaN when there were no requests.
    """
    total, weighted, lower, below = 0.0, 0.0, 0.0, 0.0
    for le, cumulative in sorted(buckets):
        count = cumulative - below
        if count > 0:
            weighted += count * (lower if math.isinf(le) else (lower + le) / 2.0)
            total += count
        lower, below = (lower if math.isinf(le) else le), max(below, cumulative)
    return weighted / total if total else math.nan


def _standout(model: FleetModel, ranked: list[RouteStats], since: float | None
              ) -> tuple[BackendFact | None, int]:
    """The instance furthest above its peers, and how many instances were compared.

    Per route, each fresh instance's p95 (its last sample, when taken at the route's
    latest tick) over the median of the others'; per instance, the geometric mean of
    those ratios weighted by the route's time spent, so a backend slow where the fleet
    spends its time counts more than one slow on a rare or cheap route.
    """
    logs: dict[str, list[tuple[float, float]]] = {}  # instance → (weight, log ratio)
    examples: dict[str, tuple[float, str, float, float]] = {}  # instance → example
    seen: set[str] = set()
    per_route = model.instance_latest([s.route for s in ranked], since)
    no_example = (-math.inf, "", 0.0, 0.0)
    for stats in ranked:
        latest = per_route.get(stats.route, {})
        seen.update(latest)
        if len(latest) < 2:
            continue
        # weighted by the route's time spent: a backend slow where the fleet's time goes
        # matters most, and a fast cached route's noisy p95 (a few ms either way on a
        # loaded host) cannot outvote it
        weight = stats.time_spent  # a property worked out on each read: once per route
        others_median = _medians_without_each(list(latest.values()))
        for (name, p95), peers in zip(latest.items(), others_median):
            if p95 <= 0 or peers <= 0:
                continue
            log_ratio = math.log(p95 / peers)
            logs.setdefault(name, []).append((weight, log_ratio))
            # the example named is the route that pushes its factor up the most
            pull = weight * log_ratio
            if pull > examples.get(name, no_example)[0]:
                examples[name] = (pull, stats.route, p95, peers)
    factors = {}
    for name, pairs in logs.items():
        weights = sum(w for w, _ in pairs)
        if weights > 0:
            factors[name] = math.exp(sum(w * x for w, x in pairs) / weights)
    if not factors:
        return None, len(seen)
    name = max(factors, key=lambda n: (factors[n], n))
    _, route, p95, peers = examples[name]
    return BackendFact(name, factors[name], route, p95, peers), len(seen)


def _medians_without_each(values: list[float]) -> list[float]:
    """For each value, ``statistics.median`` of all the others (the same float, but for the
    sign of a zero median, which the caller's ``<= 0`` test does not see): from one
    sorted copy, not a sort of the other n - 1 per value (200 instances × 10 routes was
    most of a 200-target Overview refresh). Values are finite (``instance_latest``'s)."""
    ordered = sorted(values)
    m = len(ordered) - 1  # how many others each one has
    half = m // 2

    def others(at: int, j: int) -> float:  # the j-th of the others, ``at`` left out
        return ordered[j if j < at else j + 1]

    out = []
    for v in values:
        at = bisect_left(ordered, v)  # any copy of v: leaving out either leaves the same values
        if m % 2 == 1:
            out.append(others(at, half))
        else:
            out.append((others(at, half - 1) + others(at, half)) / 2)
    return out



"""The PromQL each page's charts and table cells equal, for "Copy as PromQL" (issue 16.1).

Every expression comes from :meth:`FleetModel.promql` for the exact series shown (its
metric, route or backend, instance, and the range ``[W]`` of the newest tick), asked
when the operator copies or hovers, never cached. Where a page shows a number of a
series the model keeps in parts (one cache result, one instance of a limit) the
model's expression is narrowed by one more label matcher; combined numbers (a status
class's share, time spent) are the model's expressions divided or multiplied.
Numbers that are no PromQL (a single trace's duration) answer :class:`NoPromql`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from trimtab.collectors.canonical import (
    CACHE,
    LB_EXPECTED,
    LB_IN_FLIGHT,
    LB_UP,
    LB_WEIGHT,
    RATELIMIT,
)
from trimtab.widgets.promql_menu import Answer, CellPromql, CurvePromql, NoPromql

from ...model.expiry import INSTANCE_SEP
from ...model.fleet import CLASS_SERIES, FleetModel, limit_key
from ...slo.definition import SLO, SLOError
from ...slo.rules import error_ratio_expr

PERCENT_LEAD = "A ratio from 0 to 1; the chart shows it × 100 as percent."
SHORT_BURN_S = 300.0  # the SLO page's short burn window (5 min)
LONG_BURN_S = 3600.0  # and its long one (1 h)


def series(model: FleetModel, metric: str, key: str | None = None) -> Answer:
    """The expression of one series of the model (``key`` None: every route or server)."""
    try:
        return model.promql(metric, key)
    except ValueError as exc:
        return NoPromql(str(exc))


def quote(value: str) -> str:
    """A PromQL double-quoted string (as the model writes its matchers)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def gauge(name: str, label: str, value: str | None) -> str:
    """A gauge's selector, narrowed to one ``label`` value unless ``value`` is None."""
    return name if value is None else f"{name}{{{label}={quote(value)}}}"


def narrowed(expr: str, metric: str, label: str, value: str) -> str:
    """``expr`` with ``label="value"`` added to every selector of ``metric`` in it.

    E.g. the model's cache expression (by route and result) narrowed to the hits. A
    name that only contains ``metric`` (``sum``, ``m_total``) is left alone.
    """
    matcher = f"{label}={quote(value)}"
    # whole names only: "m" is neither in "sum" nor in "m_total"
    pattern = re.compile(r"(?<![A-Za-z0-9_:])" + re.escape(metric) + r"(?![A-Za-z0-9_:])(\{)?")

    def add(match: re.Match[str]) -> str:
        return f"{metric}{{{matcher}," if match.group(1) else f"{metric}{{{matcher}}}"

    return pattern.sub(add, expr)


def combined(left: Answer, op: str, right: Answer) -> Answer:
    """``(left) op (right)``: both sides are ``by (route)``, so they match one to one."""
    for side in (left, right):
        if not isinstance(side, str):
            return side
    return f"({left}) {op} ({right})"


def chart(model: FleetModel, pick: Callable[[str], tuple[str, str | None] | None]
          ) -> CurvePromql:
    """A chart's curves: ``pick(legend name)`` gives the (metric, key) of its series, or
    None for a curve the model does not derive."""
    def promql(name: str) -> Answer:
        found = pick(name)
        return series(model, *found) if found is not None else None

    return promql


def by_route(model: FleetModel, metric: str) -> CurvePromql:
    """Curves named by their route (or server): ``metric`` of that key."""
    return chart(model, lambda key: (metric, key))


# --- the Routes page ------------------------------------------------------------------------

def route_cell(model: FleetModel, classes: tuple[str, ...]) -> CellPromql:
    """The slow-routes table: a row is a route key, a column one of route_headers()."""
    def promql(route: str | None, header: str) -> Answer:
        if header.endswith(" (bucket)"):
            return series(model, header[: -len(" (bucket)")], route)
        if header == "req/s":
            return series(model, "rate", route)
        if header == "5xx":  # 5xx / all: the model's error ratio, the very number
            return series(model, "error_ratio", route)
        if header in classes:
            return combined(series(model, CLASS_SERIES[header], route), "/",
                            series(model, "rate", route))
        if header == "size (mean)":
            return series(model, "size_mean", route)
        if header.startswith("time spent"):
            return combined(series(model, "p95", route), "*", series(model, "rate", route))
        return None

    return promql


def selected_route_charts(model: FleetModel, selected: Callable[[], str | None]
                          ) -> dict[str, CurvePromql]:
    """The Routes page's charts of the selected route, by chart name."""
    def on(metric_of: Callable[[str], str | None]) -> CurvePromql:
        def pick(name: str) -> tuple[str, str | None] | None:
            route, metric = selected(), metric_of(name)
            return (metric, route) if route is not None and metric is not None else None
        return chart(model, pick)

    def instance(name: str) -> tuple[str, str | None] | None:
        route = selected()
        return ("p95_instance", f"{route}{INSTANCE_SEP}{name}") if route is not None else None

    return {
        "percentiles": on(lambda level: level),
        "errors": on(lambda _name: "error_ratio"),
        "statuses": on(lambda cls: "rate" if cls == "all" else CLASS_SERIES.get(cls)),
        "sizes": on(lambda _name: "size_mean"),
        "instances": chart(model, instance),
    }


# --- the Cache page ---------------------------------------------------------------------------

CACHE_RESULTS = {"hits/s": "hit", "misses/s": "miss", "bypasses/s": "bypass"}


def cache_cell(model: FleetModel) -> CellPromql:
    """The cache table: hit ratio, and the lookups of one result per second."""
    def promql(route: str | None, header: str) -> Answer:
        if header == "hit ratio":
            return series(model, "hit_ratio", route)
        result = CACHE_RESULTS.get(header)
        if result is None:
            return None
        whole = series(model, "cache", route)
        return narrowed(whole, CACHE, "result", result) if isinstance(whole, str) else whole

    return promql


# --- the Balancer page ------------------------------------------------------------------------

BALANCER_GAUGES = {"weight": LB_WEIGHT, "health": LB_UP, "in flight": LB_IN_FLIGHT,
                   "expected": LB_EXPECTED}
EXPECTED_LEAD = ("expected: the balancer's own gauge; from a balancer without it (HAProxy) "
                 "trimtab divides the weight by Σ weights of the servers up and ready. "
                 "observed: a share from 0 to 1, shown × 100 as percent.")


def balancer_cell(model: FleetModel) -> CellPromql:
    """The balancer table: a row is a server."""
    def promql(server: str | None, header: str) -> Answer:
        if header in BALANCER_GAUGES:
            return gauge(BALANCER_GAUGES[header], "server", server)
        return {"observed": lambda: series(model, "share", server),
                "p95": lambda: series(model, "lb_p95", server),
                "errors/s": lambda: series(model, "lb_error_rate", server),
                }.get(header, lambda: None)()

    return promql


def share_bar(model: FleetModel) -> Callable[[str, str], Answer]:
    """A share bar: the expected share gauge or the observed share of one server."""
    def promql(server: str, kind: str) -> Answer:
        if kind == "expected":
            return gauge(LB_EXPECTED, "server", server)
        return series(model, "share", server)

    return promql


# --- the Limits page --------------------------------------------------------------------------

LIMIT_COLUMNS = {"allowed/s": "limit_allowed", "limited/s": "limit_limited",
                 "would-be-limited/s": "limit_shadow"}


def limit_cell(model: FleetModel, split_row: Callable[[str], tuple[str, str, str]]
               ) -> CellPromql:
    """The limits table: ``split_row`` gives (instance, limit, route) of a row key; a cell is
    the fleet's series of that route and limit narrowed to the row's instance."""
    def promql(row: str | None, header: str) -> Answer:
        metric = LIMIT_COLUMNS.get(header)
        if metric is None:
            return None
        if row is None:
            return series(model, metric)
        instance, name, route = split_row(row)
        whole = series(model, metric, limit_key(route, name))
        return narrowed(whole, RATELIMIT, "instance", instance) if isinstance(whole, str) \
            else whole

    return promql


def limit_curves(model: FleetModel, curves: Callable[[], dict[str, tuple[str, str]]]
                 ) -> CurvePromql:
    """The limits chart: ``curves()`` maps each legend name to its (metric, limit key)."""
    return chart(model, lambda name: curves().get(name))


# --- the SLO page ----------------------------------------------------------------------------

def slo_burn(slo: SLO, window_s: float) -> Answer:
    """The SLO's burn rate over ``window_s``: its error ratio ÷ its budget (1 − objective)."""
    try:
        return f"({error_ratio_expr(slo, window_s)}) / {slo.budget!r}"
    except SLOError as exc:
        return NoPromql(str(exc))


def slo_cell(find: Callable[[str], SLO | None]) -> CellPromql:
    """The SLO table: a row is an SLO's name; one expression per SLO, none per column."""
    def promql(name: str | None, header: str) -> Answer:
        slo = find(name) if name is not None else None
        if slo is None:
            return None
        try:
            if header.startswith("SLI now"):
                return f"1 - ({error_ratio_expr(slo, SHORT_BURN_S)})"
            if header == "budget left":
                return f"1 - ({error_ratio_expr(slo, slo.window_s)}) / {slo.budget!r}"
        except SLOError as exc:
            return NoPromql(str(exc))
        if header.startswith("fast burn"):
            long, short = slo_burn(slo, LONG_BURN_S), slo_burn(slo, SHORT_BURN_S)
            if not isinstance(long, str) or not isinstance(short, str):
                return long if not isinstance(long, str) else short
            return f"# 1 h\n{long}\n# 5 min\n{short}"
        return None

    return promql


TRACE_DURATION = NoPromql("one request's own duration, from its trace; a metric holds only "
                          "its histogram bucket (the Slow routes page's percentiles)")


def trace_cell(_row: str | None, header: str) -> Answer:
    """The traces table: single requests, not metrics; the duration says so."""
    return TRACE_DURATION if header == "duration" else None

"""Prometheus recording and alerting rules for each SLO, so the promise is kept (and paged
on) while the cockpit is closed.

Per SLO and per window the workbook's alerts need, one recording rule
``trimtab_slo:error_ratio:rate<window>`` with labels ``slo``, ``route`` and ``kind``;
one alerting rule per workbook row that fires when both of its windows burn faster
than the factor. The expressions are the ones :func:`.burn.error_ratio` evaluates:
``1 - clamp_max(good / total, 1)`` for latency (interpolated between the bucket bounds
around the threshold when it is not a bound itself, the same linear rule), and
``bad / total`` for availability. ``promtool check rules`` accepts the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import yaml
from trimtab.collectors.canonical import HIST_BUCKET, REQUESTS

from .burn import WORKBOOK_ALERTS, BurnAlert
from .definition import SLO, SLOError, format_duration
from .openslo import _quote, le_label, route_matcher

RECORD = "trimtab_slo:error_ratio:rate{window}"


def _bucket_rate(slo: SLO, le: float, window: str) -> str:
    return (f"sum(rate({HIST_BUCKET}{{{route_matcher(slo)},le={_quote(le_label(le))}}}"
            f"[{window}]))")


def error_ratio_expr(slo: SLO, window_s: float, bounds: Sequence[float] | None = None) -> str:
    """The PromQL of the SLO's error ratio over ``window_s``.

    ``bounds`` are the histogram's finite bucket bounds (the agent's by default): a
    latency threshold that is not one of them is interpolated between the two around it.
    A threshold beyond the largest bound cannot be expressed and raises SLOError.
    """
    window = format_duration(window_s)
    if slo.kind == "availability":
        route = route_matcher(slo)
        bad = (f"sum(rate({REQUESTS}{{{route},status=~{_quote(slo.status_regex())}}}"
               f"[{window}]))")
        total = f"sum(rate({REQUESTS}{{{route}}}[{window}]))"
        # No bad series at all is 0 errors, not "no value".
        return f"(({bad}) or ({total} * 0)) / {total}"
    assert slo.threshold_s is not None
    threshold = slo.threshold_s
    total = _bucket_rate(slo, math.inf, window)
    finite = sorted(b for b in (bounds if bounds is not None else _agent_bounds())
                    if math.isfinite(b))
    exact = [b for b in finite if abs(b - threshold) <= 1e-9 * max(b, threshold)]
    if exact or not finite:
        bound = exact[0] if exact else threshold
        return f"1 - clamp_max({_bucket_rate(slo, bound, window)} / {total}, 1)"
    above = [b for b in finite if b > threshold]
    if not above:
        raise SLOError(f"{slo.name}: threshold {threshold:g} s is beyond the largest bucket "
                       f"({finite[-1]:g} s); Prometheus cannot compute this SLI")
    upper = above[0]
    below = [b for b in finite if b < threshold]
    lower = below[-1] if below else 0.0
    fraction = (threshold - lower) / (upper - lower)
    high = f"clamp_max({_bucket_rate(slo, upper, window)} / {total}, 1)"
    if below:
        low = f"clamp_max({_bucket_rate(slo, lower, window)} / {total}, 1)"
    else:
        low = f"({total} * 0)"  # the first bucket starts at 0 requests, as histogram_quantile has it
    return f"1 - ({low} + ({high} - {low}) * {fraction!r})"


def agent_bounds() -> tuple[float, ...]:
    """The trimtab agent's latency bucket bounds (seconds)."""
    return _agent_bounds()


def _agent_bounds() -> tuple[float, ...]:
    from trimtab.agent.buckets import LATENCY_BUCKETS

    return tuple(LATENCY_BUCKETS)


def _labels(slo: SLO) -> dict[str, str]:
    return {"slo": slo.name, "route": slo.route, "kind": slo.kind}


def rule_groups(slos: Iterable[SLO], alerts: Sequence[BurnAlert] = WORKBOOK_ALERTS,
                bounds: Sequence[float] | None = None) -> dict:
    """The rules file as a dict: one group per SLO (recordings first, then alerts)."""
    groups = []
    windows = sorted({w for a in alerts for w in (a.long_s, a.short_s)})
    for slo in slos:
        rules: list[dict] = []
        for w in windows:
            rules.append({"record": RECORD.format(window=format_duration(w)),
                          "expr": error_ratio_expr(slo, w, bounds), "labels": _labels(slo)})
        for alert in alerts:
            long_name = RECORD.format(window=format_duration(alert.long_s))
            short_name = RECORD.format(window=format_duration(alert.short_s))
            limit = f"({alert.factor!r} * {slo.budget!r})"
            selector = f'{{slo={_quote(slo.name)}}}'
            rules.append({
                "alert": "TrimtabSLOBurn",
                "expr": (f"{long_name}{selector} > {limit}\n"
                         f"and\n{short_name}{selector} > {limit}"),
                "labels": {**_labels(slo), "severity": alert.severity,
                           "long_window": format_duration(alert.long_s),
                           "short_window": format_duration(alert.short_s)},
                "annotations": {
                    "summary": f"{slo.name}: error budget burning over "
                               f"{alert.factor:g}× ({slo.summary()})",
                    "description": (f"Both the {format_duration(alert.long_s)} and the "
                                    f"{format_duration(alert.short_s)} error ratio exceed "
                                    f"{alert.factor:g} × the budget of "
                                    f"{slo.budget * 100:.10g} %."),
                },
            })
        groups.append({"name": f"trimtab-slo-{slo.name}", "rules": rules})
    return {"groups": groups}


def dumps(slos: Iterable[SLO], alerts: Sequence[BurnAlert] = WORKBOOK_ALERTS,
          bounds: Sequence[float] | None = None) -> str:
    """The rules file as YAML text, ready for ``rule_files:``."""
    header = ("# Prometheus rules for trimtab SLOs (multi-window, multi-burn-rate alerts).\n"
              "# Check with: promtool check rules <this file>\n")
    return header + yaml.safe_dump(rule_groups(slos, alerts, bounds), sort_keys=False,
                                   allow_unicode=True, width=1000)

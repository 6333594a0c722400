"""The exported SLO rules, evaluated by a real Prometheus scraping the demo, give the cockpit's
error ratios and burn rates at the same instants (≤ 1e-9 relative).

A real ``prometheus`` (apt) scrapes the real demo fleet every second and loads the rules
trimtab exports (windows shortened to 10 s / 30 s so a test can fill them). The samples
it stored are read back raw and given to :func:`trimtab.app.slo.burn.error_ratio`; at
each instant Prometheus evaluates the recorded expressions at ``time=T``. What is compared
is the cockpit's SLO arithmetic (range selection, extrapolation, the bucket interpolation
of a threshold between bounds, the bad-status regex) against Prometheus's own.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from trimtab.app.slo.burn import BurnAlert, burn_rate, error_ratio
from trimtab.app.slo.definition import SLO
from trimtab.app.slo.rules import dumps, error_ratio_expr
from trimtab.app.slo.track import PrometheusSource, evaluate
from trimtab.demo.fleet import DemoFleet

from tests.collectors.prometheus.prom_server import running_prometheus
from tests.support import poll

SLOS = [
    SLO("search-between", "/search", "latency", 0.99, threshold_s=0.1),  # interpolated
    SLO("search-bound", "/search", "latency", 0.95, threshold_s=0.0555112),  # a bucket bound
    SLO("orders-ok", "/orders", "availability", 0.999),
    SLO("all-routes", "/*", "latency", 0.9, threshold_s=0.05),  # a pattern over every route
]
ALERTS = (BurnAlert(30.0, 10.0, 14.4, "page"),)
TOLERANCE = 1e-9


def _query(client: httpx.Client, expr: str, t_ms: int) -> dict:
    response = client.get("/api/v1/query", params={"query": expr, "time": f"{t_ms / 1000:.3f}"})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]


def _series(client: httpx.Client, selector: str, by: str, end_ms: int) -> dict[str, list]:
    """``by`` label value → raw (ms, value) sample lists of every series the selector picks."""
    data = _query(client, f"{selector}[120s]", end_ms)
    out: dict[str, list] = defaultdict(list)
    for series in data["result"]:
        key = series["metric"][by]
        out[key].append([(round(float(t) * 1000), float(v)) for t, v in series["values"]])
    return out


def _cockpit(client: httpx.Client, slo: SLO, t_ms: int, range_ms: int) -> float:
    route = f'route=~"{slo.route_regex()}"' if "*" in slo.route else f'route="{slo.route}"'
    if slo.kind == "latency":
        raw = _series(client, f"trimtab_http_request_duration_seconds_bucket{{{route}}}",
                      "le", t_ms)
        buckets = {float(le): series for le, series in raw.items()}
        return error_ratio(slo, t_ms, range_ms, buckets=buckets)
    raw = _series(client, f"trimtab_http_requests_total{{{route}}}", "status", t_ms)
    return error_ratio(slo, t_ms, range_ms, requests=raw)


@pytest.mark.slow
def test_exported_rules_give_the_cockpits_burn_rates(tmp_path: Path) -> None:
    fleet = DemoFleet(rps=100.0, log_dir=str(tmp_path))
    rules = tmp_path / "slo-rules.yml"
    rules.write_text(dumps(SLOS, ALERTS))
    try:
        fleet.start()
        with running_prometheus(tmp_path, {"demo": [t.url for t in fleet.targets]},
                                rule_files=[rules]) as prom, \
                httpx.Client(base_url=prom, timeout=30.0) as client:
            def recorded() -> bool:  # every SLO has a 30 s ratio with traffic behind it
                data = _query(client, "count(trimtab_slo:error_ratio:rate30s)",
                              round(time.time() * 1000))
                return bool(data["result"]) and float(data["result"][0]["value"][1]) == len(SLOS)
            assert poll(recorded, bool, 120.0, interval=2.0), "rules never recorded"
            time.sleep(35)  # a full 30 s window of samples behind the instants
            end_ms = round(time.time() * 1000) - 2000
            worst, compared, burns = (0.0, ""), 0, []
            for t_ms in [end_ms - 1300 * k for k in range(8)]:
                for slo in SLOS:
                    for window in (10.0, 30.0):
                        expr = error_ratio_expr(slo, window)
                        result = _query(client, expr, t_ms)["result"]
                        theirs = float(result[0]["value"][1]) if result else math.nan
                        mine = _cockpit(client, slo, t_ms, round(window * 1000))
                        where = f"{slo.name} [{window:g}s] at {t_ms}: {mine!r} vs {theirs!r}"
                        assert math.isnan(theirs) == math.isnan(mine), where
                        if math.isnan(theirs):
                            continue
                        diff = abs(mine - theirs) / abs(theirs) if theirs else abs(mine)
                        compared += 1
                        burns.append(burn_rate(mine, slo))
                        worst = max(worst, (diff, where))
            # The cockpit's long-window source asks the same server the same expressions.
            source = PrometheusSource(prom)
            for slo in SLOS:
                direct = _query(client, error_ratio_expr(slo, 30.0), end_ms)["result"]
                assert source.error_ratio(slo, end_ms / 1000, 30.0) == float(
                    direct[0]["value"][1])
            statuses = evaluate(SLOS, source, end_ms / 1000, sli_window_s=30.0,
                                alerts=ALERTS)
            assert {s.slo.name for s in statuses} == {s.name for s in SLOS}
            assert all(s.budget_covered_s == s.slo.window_s for s in statuses)
    finally:
        fleet.stop()
    print(f"largest relative difference of SLO error ratios, trimtab vs Prometheus rules: "
          f"{worst[0]:.3e} ({worst[1]}) over {compared} values; burn rates "
          f"{min(burns):.3g}–{max(burns):.3g}")
    assert compared >= len(SLOS) * 2 * 8 - 4  # an idle instant may give no value
    assert any(b > 0 for b in burns)  # the comparison is not of zeros only
    assert worst[0] <= TOLERANCE, worst

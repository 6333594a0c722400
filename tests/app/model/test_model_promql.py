"""FleetModel.promql: the expression each series equals, and the window semantics it names.

That the numbers equal those expressions in a real Prometheus is
tests/app/model/test_prometheus_equality.py; here: the text, bad input, the widened
range, and the first-sample rule that made trimtab count a first 502 Prometheus did not.
"""

from __future__ import annotations

import math

import pytest
from trimtab.app.model.expiry import INSTANCE_SEP
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
BUCKET = "trimtab_http_request_duration_seconds_bucket"


def requests(ok: int, bad: int | None = None) -> str:
    """Request counters of route /r (a 502 series when ``bad`` is given), and its histogram."""
    total = ok + (bad or 0)
    lines = [f'{BUCKET}{{route="/r",method="GET",le="0.1"}} {total}',
             f'{BUCKET}{{route="/r",method="GET",le="+Inf"}} {total}',
             "# TYPE trimtab_http_requests_total counter",
             f'trimtab_http_requests_total{{route="/r",method="GET",status="200"}} {ok}']
    if bad is not None:
        lines.append(f'trimtab_http_requests_total{{route="/r",method="GET",status="502"}} {bad}')
    return "\n".join(lines) + "\n"


def test_expressions_name_the_canonical_metrics_and_the_window() -> None:
    model = FleetModel()
    assert model.promql("p95", "/x") == (
        f'histogram_quantile(0.95, sum by (le, route) (rate({BUCKET}{{route="/x"}}[10s])))')
    assert model.promql("p99") == (
        f"histogram_quantile(0.99, sum by (le, route) (rate({BUCKET}[10s])))")
    assert model.promql("p99.9", "/x").startswith("histogram_quantile(0.999, ")
    assert model.promql("rate", "/x") == (
        'sum by (route) (rate(trimtab_http_requests_total{route="/x"}[10s]))')
    assert model.promql("error_ratio", "/x") == (
        'sum by (route) (rate(trimtab_http_requests_total{route="/x",status=~"5.*"}[10s])'
        ' or rate(trimtab_http_requests_total{route="/x"}[10s]) * 0)'
        ' / sum by (route) (rate(trimtab_http_requests_total{route="/x"}[10s]))')
    assert model.promql("hit_ratio", "/x") == (
        'sum by (route) (rate(trimtab_cache_requests_total{route="/x",result="hit"}[10s])'
        ' or rate(trimtab_cache_requests_total{route="/x",result=~"hit|miss"}[10s]) * 0)'
        ' / sum by (route) (rate(trimtab_cache_requests_total{route="/x",result=~"hit|miss"}'
        '[10s]))')
    assert model.promql("p95_instance", f"/x{INSTANCE_SEP}api-1") == (
        f'histogram_quantile(0.95, sum by (le, route, instance) '
        f'(rate({BUCKET}{{route="/x",instance="api-1"}}[10s])))')
    assert model.promql("share", "a") == (
        'sum by (server) (rate(trimtab_balancer_requests_total{server="a"}[10s]))'
        " / scalar(sum(rate(trimtab_balancer_requests_total[10s])))")
    assert FleetModel(rate_window=2.5).promql("rate").endswith("[2500ms]))")


def test_label_values_are_quoted_as_promql_strings() -> None:
    expr = FleetModel().promql("rate", 'a"b\\c\nd')
    assert '{route="a\\"b\\\\c\\nd"}' in expr


@pytest.mark.parametrize("metric", ["", "latency", "p0", "p100", "pxx", "share_of"])
def test_unknown_series_is_refused(metric: str) -> None:
    with pytest.raises(ValueError, match="no PromQL"):
        FleetModel().promql(metric)


def test_a_slow_target_widens_the_range_and_the_expression_says_so() -> None:
    model = FleetModel()
    for i, t in enumerate((100.0, 115.0, 130.0)):
        model.ingest(ScrapeResult(API, t, True, 0.01, parse(requests(1500 * i)), ""))
    model.tick(131.0)
    assert model.window == 30.0
    assert model.promql("rate", "/r").endswith("[30s]))")
    # Over [101, 131]: 115 → 130 (+1500), extrapolated 14 s before and 1 s after: 100 /s.
    assert model.snapshot("rate")["/r"][1][-1] == pytest.approx(100.0)


def test_a_first_502_counts_only_from_its_second_sample_as_in_prometheus() -> None:
    """The issue's case: a 5xx series that first appears inside the range. Prometheus
    starts it at its first sample (no rate with one sample; never counted from zero)."""
    model = FleetModel(rate_window=4.0)
    for t in range(100, 105):
        model.ingest(ScrapeResult(API, float(t), True, 0.01, parse(requests(100 * (t - 100))), ""))
    model.ingest(ScrapeResult(API, 105.0, True, 0.01, parse(requests(500, bad=1)), ""))
    model.tick(105.0)
    assert model.snapshot("error_ratio")["/r"][1][-1] == 0.0  # one sample: no rate yet
    assert model.snapshot("rate")["/r"][1][-1] == pytest.approx(100.0)
    model.ingest(ScrapeResult(API, 106.0, True, 0.01, parse(requests(600, bad=3)), ""))
    model.tick(106.0)
    # The 502 series: 1 → 3 over [105, 106] in a 4 s range; its zero lies 0.5 s before
    # its first sample, so it is extrapolated that far: 2 · 1.5 / 1 / 4 = 0.75 /s.
    # The 200s: 200 → 600 over [102, 106] exactly: 100 /s.
    rate = model.snapshot("rate")["/r"][1][-1]
    assert rate == pytest.approx(100.75)
    assert model.snapshot("error_ratio")["/r"][1][-1] == pytest.approx(0.75 / 100.75)
    assert not math.isnan(rate)

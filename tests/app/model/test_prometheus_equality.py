"""The live model equals a real Prometheus: same samples in, same numbers out (to 1e-9).

A real ``prometheus`` (apt, 2.42) scrapes the real demo fleet (three instances, the built-in
balancer, the traffic generator) every second. Then the samples Prometheus stored are
read back raw (a range-vector query returns each sample with its millisecond timestamp)
and fed to a FleetModel scrape by scrape, each target's samples of one timestamp as one
scrape. At a dozen instants ``T`` the model ticks at ``T`` and Prometheus evaluates, at
``time=T``, the very expression ``FleetModel.promql`` says each series equals: request
rate, error ratio, cache hit ratio, p50/p95/p99 per route, and each server's share.
Scrape timing is thereby taken out; what is compared is the range selection
(``[T-W, T]``), extrapolation, resets, per-series rate before ``sum``, the ratios and
``histogram_quantile``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import Exposition, Sample
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget
from trimtab.demo.fleet import DemoFleet

from tests.collectors.prometheus.prom_server import running_prometheus
from tests.support import poll

NAMES = ("trimtab_http_request_duration_seconds_bucket", "trimtab_http_requests_total",
         "trimtab_cache_requests_total", "trimtab_balancer_requests_total",
         "trimtab_balancer_errors_total", "process_start_time_seconds")
METRICS = ("rate", "error_ratio", "hit_ratio", "p50", "p95", "p99", "share")
TOLERANCE = 1e-9


def _query(client: httpx.Client, expr: str, t_ms: int) -> dict:
    response = client.get("/api/v1/query", params={"query": expr, "time": f"{t_ms / 1000:.3f}"})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]


def _stored_scrapes(client: httpx.Client, end_ms: int) -> list[ScrapeResult]:
    """Every sample Prometheus holds of the last 90 s, as one scrape per target and time."""
    selector = "{__name__=~\"" + "|".join(NAMES) + "\"}[90s]"
    data = _query(client, selector, end_ms)
    assert data["resultType"] == "matrix"
    scrapes: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for series in data["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        target = labels["instance"]
        key = tuple(sorted(labels.items()))
        for ts, value in series["values"]:
            scrapes[(target, round(float(ts) * 1000))].append(Sample(name, key, float(value)))
    return [ScrapeResult(ScrapeTarget(target, f"prometheus:{target}"), t_ms / 1000, True, 0.0,
                         Exposition(samples=samples))
            for (target, t_ms), samples in sorted(scrapes.items(), key=lambda kv: kv[0][1])]


def _prom_values(client: httpx.Client, expr: str, t_ms: int, by: str) -> dict[str, float]:
    data = _query(client, expr, t_ms)
    return {item["metric"].get(by, ""): float(item["value"][1]) for item in data["result"]}


def _wait_for_history(client: httpx.Client, seconds: float, timeout: float = 120.0) -> None:
    """Until Prometheus holds ``seconds`` of samples with some 5xx and some cache hits."""
    def enough() -> bool:
        now_ms = round(time.time() * 1000)
        span = _prom_values(client, "max(timestamp(trimtab_http_requests_total)) - "
                            "min(min_over_time(timestamp(trimtab_http_requests_total)[5m:1s]))",
                            now_ms, "")
        errors = _prom_values(client, 'sum(trimtab_http_requests_total{status=~"5.*"})', now_ms, "")
        hits = _prom_values(client, 'sum(trimtab_cache_requests_total{result="hit"})', now_ms, "")
        return span.get("", 0) >= seconds and errors.get("", 0) > 0 and hits.get("", 0) > 0

    if poll(enough, bool, timeout, interval=2.0):
        return
    pytest.fail(f"Prometheus did not gather {seconds} s of demo traffic in {timeout} s")


@pytest.mark.slow
def test_model_equals_prometheus_at_the_same_instants(tmp_path: Path) -> None:
    fleet = DemoFleet(rps=100.0, log_dir=str(tmp_path))
    try:
        fleet.start()
        with running_prometheus(tmp_path, {"demo": [t.url for t in fleet.targets]}) as prom, \
                httpx.Client(base_url=prom, timeout=30.0) as client:
            _wait_for_history(client, 45.0)
            end_ms = round(time.time() * 1000) - 2000  # every scrape up to here is stored
            scrapes = _stored_scrapes(client, end_ms)
            worst, compared = _compare(client, scrapes, end_ms)
    finally:
        fleet.stop()
    print(f"largest relative difference trimtab vs Prometheus: {worst[0]:.3e} "
          f"({worst[1]}), over {compared} values")
    assert compared > 100
    assert worst[0] <= TOLERANCE, worst


def _instants(scrapes: list[ScrapeResult], end_ms: int) -> list[int]:
    """A dozen evaluation times in the last 30 s, some on a sample's own millisecond."""
    one = sorted(round(r.timestamp * 1000) for r in scrapes
                 if r.target.name == scrapes[-1].target.name)
    chosen = {end_ms - 1700 * k for k in range(12)}
    chosen.add(one[-3])  # T exactly on a sample: the range's right end is included
    chosen.add(one[-25] + 10_000)  # T - 10 s exactly on a sample: so is the left end (2.x)
    chosen.add(one[-20] + 10_000)
    return sorted(chosen)


def _compare(client: httpx.Client, scrapes: list[ScrapeResult],
             end_ms: int) -> tuple[tuple[float, str], int]:
    model = FleetModel(rate_window=10.0)
    fed, worst, compared = 0, (0.0, ""), 0
    for t_ms in _instants(scrapes, end_ms):
        while fed < len(scrapes) and round(scrapes[fed].timestamp * 1000) <= t_ms:
            model.ingest(scrapes[fed])
            fed += 1
        model.tick(t_ms / 1000)
        assert model.window == 10.0
        for metric in METRICS:
            by = "server" if metric == "share" else "route"
            expr = model.promql(metric)
            prom = _prom_values(client, expr, t_ms, by)
            mine = {key: float(v[-1]) for key, (t, v) in model.snapshot(metric).items()
                    if len(t) and t[-1] == t_ms / 1000}
            assert prom, (metric, expr, t_ms)
            for key in set(prom) | set(mine):
                p, m = prom.get(key, math.nan), mine.get(key, math.nan)
                where = f"{metric} {key} at {t_ms}: trimtab {m!r} Prometheus {p!r} ({expr})"
                if math.isnan(p) and math.isnan(m):
                    continue
                assert not (math.isnan(p) or math.isnan(m)), where
                diff = abs(m - p) / abs(p) if p else abs(m)
                compared += 1
                if diff > worst[0]:
                    worst = (diff, where)
    return worst, compared

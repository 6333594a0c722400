"""Rate limit decisions in the model: per route and limit, allowed / limited / shadow_limited
rates from a real agent's /metrics (in-process ASGI), their PromQL, and the 429s beside them."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.app.model.fleet import LIMIT_SERIES, FleetModel, limit_key, split_limit_key
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
API2 = ScrapeTarget("api-2", "http://127.0.0.1:2/metrics")
W = {"authorization": "Bearer secret"}
# One enforced per-key limit and one shadow limit on every route; tiny rates, so within a
# batch sent at once almost every request past the burst is (or would be) refused.
LIMITS = {"per-key": {"route": "/search", "key": "header:x-api-key", "rate": 0.5, "burst": 2,
                      "mode": "enforce"},
          "all": {"route": "*", "key": "global", "rate": 0.5, "burst": 3, "mode": "shadow"}}
KEYS = ("k1", "k2", "greedy", "greedy", "greedy", "greedy")


def _app() -> TrimtabMiddleware:
    async def search(request: Request) -> Response:
        return Response(b"ok")

    async def other(request: Request) -> Response:
        return Response(b"ok")

    app = Starlette(routes=[Route("/search", search), Route("/other", other)])
    return TrimtabMiddleware(app, instance="api-1", tokens="a:write:secret", state_dir=None)


def agent_scrapes() -> list[str]:
    """/metrics before and after one batch (two batches before the first: every series
    exists in both scrapes and Prometheus' extrapolation is never cut at zero)."""
    app = _app()

    async def main() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            etag = (await c.get("/_trimtab/config", headers=W)).headers["etag"]
            r = await c.patch("/_trimtab/config", headers={**W, "if-match": etag},
                              json={"limits": LIMITS, "reason": "test"})
            assert r.status_code == 200, r.text

            async def batch() -> None:
                for key in KEYS * 3:
                    await c.get("/search", headers={"x-api-key": key})
                    await c.get("/other")

            await batch()
            await batch()
            before = (await c.get("/metrics")).text
            await batch()
            return [before, (await c.get("/metrics")).text]

    return asyncio.run(main())


@pytest.fixture(scope="module")
def scrapes() -> list[str]:
    return agent_scrapes()


@pytest.fixture(scope="module")
def model(scrapes: list[str]) -> FleetModel:
    model = FleetModel(rate_window=10.0)
    before, after = scrapes
    for target in (API, API2):  # two instances with the same counts: the series sum them
        model.ingest(ScrapeResult(target, 100.0, True, 0.01, parse(before), ""))
        model.ingest(ScrapeResult(target, 105.0, True, 0.01, parse(after), ""))
    model.tick(105.0)
    return model


def _last(model: FleetModel, metric: str, key: str) -> float:
    series = model.snapshot(metric, keys=[key]).get(key)
    assert series is not None, (metric, key, sorted(model.series))
    return float(series[1][-1])


def _counter(text: str, route: str, limit: str, result: str) -> float:
    return sum(s.value for s in parse(text).samples
               if s.name == "trimtab_ratelimit_requests_total"
               and dict(s.labels) == {"route": route, "limit": limit, "result": result})


def test_each_decision_is_a_rate_per_route_and_limit(model: FleetModel, scrapes: list[str]) -> None:
    """Per limit, allowed + limited + shadow_limited is every request of the route (each
    limit decides each request); the enforced limit's refusals are the route's 429s."""
    for route, limit in (("/search", "per-key"), ("/search", "all"), ("/other", "all")):
        key = limit_key(route, limit)
        assert split_limit_key(key) == (route, limit)
        rates = {m: _last(model, m, key) for m in LIMIT_SERIES.values()}
        assert sum(rates.values()) == pytest.approx(_last(model, "rate", route), rel=1e-9)
        for result, metric in LIMIT_SERIES.items():
            before, after = (_counter(t, route, limit, result) for t in scrapes)
            # rate() over [10s] at 105 from samples at 100 and 105 (no zero cut): the
            # increase extrapolated to the range start, 2.5 s before the first sample at most.
            assert rates[metric] >= 0.0
            if after == before:
                assert rates[metric] == 0.0
            else:
                assert rates[metric] > 0.0
    search = limit_key("/search", "per-key")
    assert _last(model, "limit_limited", search) > 0.0  # the greedy key was refused
    assert _last(model, "limit_shadow", search) == 0.0  # an enforced limit never "would"
    assert _last(model, "limit_limited", search) == pytest.approx(
        _last(model, "rate_429", "/search"), rel=1e-9)
    shadow = limit_key("/other", "all")
    assert _last(model, "limit_shadow", shadow) > 0.0
    assert _last(model, "limit_limited", shadow) == 0.0  # shadow refuses nobody
    assert ("rate_429", "/other") not in model.series


def test_rows_per_instance_sum_to_the_fleet_series(model: FleetModel) -> None:
    rows = [r for r in model.limits if (r.route, r.limit) == ("/search", "per-key")]
    assert sorted(r.target for r in rows) == ["api-1", "api-2"]
    key = limit_key("/search", "per-key")
    assert sum(r.limited for r in rows) == pytest.approx(_last(model, "limit_limited", key))
    assert sum(r.allowed for r in rows) == pytest.approx(_last(model, "limit_allowed", key))
    assert rows[0].limited == pytest.approx(rows[1].limited)


def test_a_limit_no_instance_reports_is_a_gap_not_a_zero(scrapes: list[str]) -> None:
    model = FleetModel(rate_window=10.0)
    before, after = scrapes
    model.ingest(ScrapeResult(API, 100.0, True, 0.01, parse(before), ""))
    model.ingest(ScrapeResult(API, 105.0, True, 0.01, parse(after), ""))
    model.tick(105.0)
    model.ingest(ScrapeResult(API, 106.0, False, 0.01, None, "refused"))
    model.tick(120.0)  # api-1 is stale by now
    assert math.isnan(_last(model, "limit_limited", limit_key("/search", "per-key")))
    assert model.limits == []


def test_promql_of_the_limit_series() -> None:
    model = FleetModel()
    sel = 'trimtab_ratelimit_requests_total{route="/search",limit="per-key"'
    zero = f" or sum by (route, limit) (rate({sel}}}[10s])) * 0"
    assert model.promql("limit_limited", limit_key("/search", "per-key")) == (
        f'sum by (route, limit) (rate({sel},result="limited"}}[10s])){zero}')
    assert model.promql("limit_shadow", limit_key("/search", "per-key")) == (
        f'sum by (route, limit) (rate({sel},result="shadow_limited"}}[10s])){zero}')
    assert model.promql("limit_allowed") == (
        'sum by (route, limit) (rate(trimtab_ratelimit_requests_total{result="allowed"}[10s]))'
        " or sum by (route, limit) (rate(trimtab_ratelimit_requests_total[10s])) * 0")

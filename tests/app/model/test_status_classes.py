"""Status classes (2xx/3xx/4xx/429/5xx) and response size per route, from real agent scrapes.

A real Starlette app behind the real trimtab middleware serves requests of known
status and body size; its /metrics text, taken before and after, is what the model
ingests (as the scrape engine would hand it over), at chosen scrape times.
"""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.app.model.extract import status_class
from trimtab.app.model.fleet import STATUS_CLASSES, FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
ITEM = b"item-0123456789\n"  # 16 bytes


def _app() -> TrimtabMiddleware:
    async def search(request: Request) -> Response:
        return Response(ITEM * int(request.query_params.get("limit", "1")))

    async def mixed(request: Request) -> Response:
        status = int(request.query_params["s"])
        if status == 302:
            return RedirectResponse("/search", status_code=302)
        return Response(b"x", status_code=status)

    app = Starlette(routes=[Route("/search", search), Route("/mixed", mixed)])
    return TrimtabMiddleware(app, instance="api-1", tokens="a:write:secret", state_dir=None)


MIX = {200: 6, 302: 1, 404: 3, 429: 2, 500: 4}  # requests per status between two scrapes
LIMITS = (1, 10, 100)  # /search pages: 16, 160 and 1600 bytes


def agent_scrapes() -> list[str]:
    """/metrics before and after the measured requests (every series exists in both)."""
    app = _app()

    async def main() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            async def batch() -> None:
                for status, n in MIX.items():
                    for _ in range(n):
                        await c.get(f"/mixed?s={status}")
                for limit in LIMITS:
                    await c.get(f"/search?limit={limit}")

            # Twice before the first scrape: every series exists in both scrapes, and starts
            # high enough that Prometheus' extrapolation is not cut at zero for any of them
            # (it would be for a series at 1 growing by 6), so the ratios come out exact.
            await batch()
            await batch()
            before = (await c.get("/metrics")).text
            await batch()
            return [before, (await c.get("/metrics")).text]

    return asyncio.run(main())


@pytest.fixture(scope="module")
def model() -> FleetModel:
    model = FleetModel(rate_window=10.0)
    before, after = agent_scrapes()
    model.ingest(ScrapeResult(API, 100.0, True, 0.01, parse(before), ""))
    model.ingest(ScrapeResult(API, 105.0, True, 0.01, parse(after), ""))
    model.tick(105.0)
    return model


def _last(model: FleetModel, metric: str, route: str) -> float:
    series = model.snapshot(metric, keys=[route]).get(route)
    assert series is not None, (metric, route)
    return float(series[1][-1])


def test_status_classes_split_the_route_rate(model: FleetModel) -> None:
    rate = _last(model, "rate", "/mixed")
    total = sum(MIX.values())
    expected = {"2xx": 6, "3xx": 1, "4xx": 3, "429": 2, "5xx": 4}  # 429 apart from 4xx
    for cls, n in expected.items():
        assert _last(model, f"rate_{cls}", "/mixed") == pytest.approx(rate * n / total, rel=1e-12)
    assert sum(_last(model, f"rate_{c}", "/mixed") for c in expected) == pytest.approx(rate)
    stats = model.routes["/mixed"]
    assert stats.status_rates.keys() == expected.keys()
    assert stats.status_rates["429"] == pytest.approx(rate * 2 / total, rel=1e-12)
    assert stats.error_ratio == pytest.approx(4 / total, rel=1e-12)
    # A class the route never answered has no series (no ring spent on it).
    assert ("rate_2xx", "/search") in model.series
    assert ("rate_5xx", "/search") not in model.series


def test_mean_response_size_per_route(model: FleetModel) -> None:
    mean = _last(model, "size_mean", "/search")
    assert mean == pytest.approx(16 * sum(LIMITS) / len(LIMITS), rel=1e-12)
    assert model.routes["/search"].size_mean == pytest.approx(mean)
    assert _last(model, "size_mean", "/mixed") == pytest.approx(
        # 1-byte bodies, the redirect's empty body
        (MIX[200] + MIX[404] + MIX[429] + MIX[500]) / sum(MIX.values()), rel=1e-12)


def test_routes_without_size_histogram_read_nan() -> None:
    def text(n: int) -> str:
        return (f'trimtab_http_request_duration_seconds_bucket{{route="/r",le="0.1"}} {n}\n'
                f'trimtab_http_request_duration_seconds_bucket{{route="/r",le="+Inf"}} {n}\n'
                f'trimtab_http_requests_total{{route="/r",status="2xx"}} {n}\n')

    model = FleetModel()
    for t, n in ((100.0, 0), (101.0, 10)):
        model.ingest(ScrapeResult(API, t, True, 0.01, parse(text(n)), ""))
    model.tick(101.0)
    assert math.isnan(model.routes["/r"].size_mean)
    assert model.routes["/r"].status_rates == {"2xx": pytest.approx(_last(model, "rate", "/r"))}


@pytest.mark.parametrize(("status", "cls"), [
    ("200", "2xx"), ("2xx", "2xx"), ("301", "3xx"), ("404", "4xx"), ("499", "4xx"),
    ("4xx", "4xx"), ("429", "429"), ("500", "5xx"), ("5xx", "5xx"), ("101", "other"),
    ("", "other"), ("abc", "other")])
def test_status_class_of_a_label(status: str, cls: str) -> None:
    assert status_class(status) == cls
    assert cls in STATUS_CLASSES


def test_promql_of_the_new_series() -> None:
    model = FleetModel()
    r = 'trimtab_http_requests_total{route="/x"'
    zero = f' or sum by (route) (rate({r}}}[10s])) * 0'
    assert model.promql("rate_2xx", "/x") == (
        f'sum by (route) (rate({r},status=~"2.*"}}[10s])){zero}')
    assert model.promql("rate_4xx", "/x") == (
        f'sum by (route) (rate({r},status=~"4.*",status!="429"}}[10s])){zero}')
    assert model.promql("rate_429", "/x") == (
        f'sum by (route) (rate({r},status="429"}}[10s])){zero}')
    assert model.promql("rate_other") == (
        'sum by (route) (rate(trimtab_http_requests_total{status!~"[2-5].*"}[10s]))'
        ' or sum by (route) (rate(trimtab_http_requests_total[10s])) * 0')
    assert model.promql("size_mean", "/x") == (
        'sum by (route) (rate(trimtab_http_response_size_bytes_sum{route="/x"}[10s]))'
        ' / sum by (route) (rate(trimtab_http_response_size_bytes_count{route="/x"}[10s]))')
    with pytest.raises(ValueError, match="no PromQL"):
        model.promql("rate_6xx")

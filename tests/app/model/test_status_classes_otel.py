"""OpenTelemetry without ``http.route`` (issue 21.4), on real apps under real uvicorn.

Plain ``OpenTelemetryMiddleware`` with the stable HTTP conventions exports no route:
every path lands in the one route ``?`` (the Routes page says so on that row). The fix
the README gives for Starlette/FastAPI, the framework instrumentation, names the routes.
Scraped twice with traffic between, normalised by the built-in tables, fed to the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.mappings import builtin_tables, normalise
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

from tests.support import uvicorn_server

MODULE = "tests.app.model.test_status_classes_otel"


def _starlette(instrument: str) -> Any:
    """Built in the uvicorn child only: the exporter registers with prometheus_client's
    global registry, which must not happen inside the test process."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import make_asgi_app
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from tests.collectors.apps.common import ROUTES

    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    metrics = make_asgi_app()
    if instrument == "framework":
        app = Starlette(routes=[*ROUTES, Mount("/metrics", metrics)])
        StarletteInstrumentor.instrument_app(app, meter_provider=provider)
        return app
    inner = Starlette(routes=list(ROUTES))
    plain = OpenTelemetryMiddleware(inner, meter_provider=provider)

    async def app(scope: Any, receive: Any, send: Any) -> None:  # /metrics beside the app
        target = metrics if scope.get("path", "").startswith("/metrics") else plain
        await target(scope, receive, send)

    return app


def plain_app() -> Any:
    """``uvicorn --factory``: plain OpenTelemetryMiddleware around a Starlette app."""
    return _starlette("plain")


def framework_app() -> Any:
    """``uvicorn --factory``: StarletteInstrumentor (what FastAPIInstrumentor also does)."""
    return _starlette("framework")


def _model(base: str) -> FleetModel:
    model = FleetModel(rate_window=10.0)
    target = ScrapeTarget("otel", f"{base}/metrics/")
    tables = builtin_tables()
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for t in (100.0, 105.0):
            for uid in range(5):
                assert client.get(f"/users/{uid}").status_code == 200
            assert client.get("/fail").status_code == 503
            reply = client.get("/metrics/")
            expo = normalise(parse(reply.text, reply.headers.get("content-type")), tables)
            model.ingest(ScrapeResult(target, t, True, 0.01, expo, ""))
    model.tick(105.0)
    return model


@pytest.mark.parametrize("factory", ["plain_app", "framework_app"])
def test_otel_route_label_present_only_with_the_framework_instrumentation(
        factory: str, tmp_path: Path) -> None:
    env = {**os.environ, "OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    with uvicorn_server(f"{MODULE}:{factory}", tmp_path / "uvicorn.log", ready="/metrics/",
                        factory=True, env=env) as base:
        model = _model(base)
    routes = model.routes
    if factory == "plain_app":
        assert set(routes) == {"?"}  # /users/{uid} and /fail folded together
        assert routes["?"].status_rates.keys() == {"2xx", "5xx"}
        assert routes["?"].error_ratio == pytest.approx(1 / 6, rel=1e-9)
    else:
        assert set(routes) == {"/users/{uid}", "/fail", "/metrics"}  # the scrapes too, by name
        assert routes["/fail"].status_rates.keys() == {"5xx"}

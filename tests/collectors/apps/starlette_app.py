"""Starlette + starlette_exporter's PrometheusMiddleware (paths grouped by route)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route
from starlette_exporter import PrometheusMiddleware, handle_metrics

from tests.collectors.apps.common import ROUTES

app = Starlette(routes=[*ROUTES, Route("/metrics", handle_metrics)])
app.add_middleware(PrometheusMiddleware, app_name="demo", group_paths=True)

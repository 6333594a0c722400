"""Starlette + OpenTelemetry SDK, Starlette instrumentation and the Prometheus exporter.

``OTEL_SEMCONV_STABILITY_OPT_IN=http`` selects the stable HTTP conventions (seconds);
unset, the instrumentation reports the older ``http.server.duration`` in milliseconds.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.starlette import StarletteInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.collectors.apps.common import ROUTES

provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
app = Starlette(routes=[*ROUTES, Mount("/metrics", make_asgi_app())])
StarletteInstrumentor.instrument_app(app, meter_provider=provider)

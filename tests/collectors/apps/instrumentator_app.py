"""FastAPI + prometheus-fastapi-instrumentator (default metrics, status grouped as 2xx)."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from tests.collectors.apps.common import ROUTES

app = FastAPI(routes=list(ROUTES))
Instrumentator().instrument(app).expose(app)

"""The apps the WSGI tests instrument: a Flask app and a Starlette app with the same routes.

Same routes, same answers, so that one scripted traffic gives both agents the same label
values — what differs between their /metrics can then only be the agent's doing.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, jsonify
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route
from trimtab.agent.traces import span

ITEMS_FLASK, ITEMS_ASGI = "/items/<int:id>", "/items/{id}"
PUBLIC = {"Cache-Control": "public, max-age=60"}


def flask_app() -> Flask:
    """Items (cacheable, with a child span), a cookie-setting route, orders, a failing route."""
    app = Flask("trimtab_wsgi_test")

    @app.get("/items/<int:id>")
    def item(id: int) -> Response:  # noqa: A002 - the rule names it
        with span("db.query", table="items"):
            body = jsonify({"id": id})
        body.headers.update(PUBLIC)
        return body

    @app.get("/session")
    def session() -> Response:
        body = jsonify({"ok": True})
        body.set_cookie("sid", "abc")
        return body

    @app.post("/orders")
    def orders() -> tuple[Response, int]:
        return jsonify({"order": 1}), 201

    @app.get("/boom")
    def boom() -> Response:
        raise RuntimeError("handler failed")

    @app.get("/stream")
    def stream() -> Response:
        return Response((b"x" * 1000 for _ in range(50)), mimetype="text/plain")

    return app


def starlette_app() -> Starlette:
    """The same routes for the ASGI agent."""

    async def item(request: Request) -> StarletteResponse:
        return StarletteResponse(json.dumps({"id": int(request.path_params["id"])}),
                                 media_type="application/json", headers=PUBLIC)

    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"order": 1}, status_code=201)

    async def boom(request: Request) -> Any:
        raise RuntimeError("handler failed")

    return Starlette(routes=[Route("/items/{id:int}", item, methods=["GET"]),
                             Route("/orders", orders, methods=["POST"]),
                             Route("/boom", boom, methods=["GET"])])

"""Control endpoints beyond config/journal: traces, cache what-if, cache invalidation.

- ``GET /_trimtab/traces?since=<cursor>&min_ms=&route=&limit=`` (read) →
  ``{"traces": [...], "next": cursor, "dropped": n, "worker": pid}`` (see
  :mod:`.traces`). Traces stay in the worker that served the request: under
  ``uvicorn --workers N`` a cursor is only meaningful for the same ``worker``.
- ``GET /_trimtab/cache/whatif?route=<route>[&ttls=5,30,300]`` (read) →
  predicted hit ratio per candidate TTL plus ``current_ttl`` (see :mod:`.whatif`);
  404 for a route without traffic.
- ``POST /_trimtab/cache/invalidate`` (write), body ``{"route": r}`` or
  ``{"prefix": p}`` plus optional ``"reason"`` → ``{"dropped": n, "journal_id": id}``;
  journaled as accepted or refused. 503 when the store could not be reached.
"""

from __future__ import annotations

import os
from typing import Any

from .auth import READ, WRITE
from .cache import route_prefix
from .control import ApiError, ControlAPI, Reply, Request
from .journal import ACCEPTED, REFUSED
from .params import BadNumber, parse_finite, parse_uint
from .response_cache import ResponseCache
from .trace_intake import add_intake_endpoints
from .traces import Tracer
from .whatif import WhatIf


def add_extra_endpoints(api: ControlAPI, tracer: Tracer, whatif: WhatIf,
                        cache: ResponseCache) -> None:
    """Register the traces, what-if and invalidate endpoints on ``api``."""
    extras = _Extras(api, tracer, whatif, cache)
    api.add("GET", "traces", READ, extras.traces)
    api.add("GET", "cache", READ, _sub({"whatif": extras.whatif_endpoint}))
    api.add("POST", "cache", WRITE, _sub({"invalidate": extras.invalidate}))
    add_intake_endpoints(api, tracer)  # POST v1/traces (OTLP), api/v2/spans (Zipkin)


class _Extras:
    def __init__(self, api: ControlAPI, tracer: Tracer, whatif: WhatIf,
                 cache: ResponseCache) -> None:
        self.api, self.tracer, self.whatif, self.cache = api, tracer, whatif, cache

    async def traces(self, req: Request) -> Reply:
        since = _number(req.query, "since", 0.0, integer=True)
        min_ms = _number(req.query, "min_ms", 0.0)
        limit = int(_number(req.query, "limit", 100.0, integer=True))
        if not 1 <= limit <= 1000:
            raise ApiError(400, "bad_parameter", "limit must be between 1 and 1000")
        answer = self.tracer.query(int(since), min_ms, req.query.get("route"), limit)
        answer["worker"] = os.getpid()  # cursors are per worker process
        return Reply(200, answer)

    async def whatif_endpoint(self, req: Request) -> Reply:
        route = req.query.get("route")
        if not route:
            raise ApiError(400, "bad_parameter", "route is required", routes=self.whatif.routes())
        ttls = None
        if req.query.get("ttls"):
            raw = req.query["ttls"].split(",")
            try:
                ttls = [parse_finite(t, "ttls") for t in raw[:51]]
            except BadNumber:
                raise ApiError(400, "bad_parameter", "ttls must be comma-separated numbers") \
                    from None
            if len(raw) > 50 or not all(0 <= t <= 86400 for t in ttls):
                raise ApiError(400, "bad_parameter", "ttls: at most 50 numbers in 0..86400")
        answer = self.whatif.predict(route, ttls)
        if answer is None:
            raise ApiError(404, "unknown_route", f"no traffic seen for route {route!r}",
                           routes=self.whatif.routes())
        answer["current_ttl"] = self.api.config.settings().ttls.get(route, 0.0)
        return Reply(200, answer)

    async def invalidate(self, req: Request) -> Reply:
        api, body = self.api, None
        try:
            body = await req.json()
            route, prefix = _invalidate_target(body, api.config.known_routes)
            dropped = await self.cache.invalidate(route=route, prefix=prefix)
            if dropped < 0:
                raise ApiError(503, "store_unavailable", "cache store unreachable; nothing dropped")
            # Other workers' in-memory stores replay it (no-op without a shared state dir).
            api.config.record_purge(route_prefix(route) if route is not None else str(prefix))
        except ApiError as err:
            api.journal.record(who=req.who.name, target=api.config.instance,
                               what="cache.invalidate", old=None, new=body,
                               reason=_reason(body), result=REFUSED, detail=err.message)
            raise
        entry = api.journal.record(who=req.who.name, target=api.config.instance,
                                   what="cache.invalidate", old=None,
                                   new={"route": route} if route else {"prefix": prefix},
                                   reason=_reason(body), result=ACCEPTED,
                                   detail=f"dropped {dropped}")
        return Reply(200, {"dropped": dropped, "journal_id": entry.id})


def _sub(handlers: dict[str, Any]) -> Any:
    """Dispatch ``/_trimtab/cache/<name>`` to ``handlers[name]``."""

    async def dispatch(req: Request) -> Reply:
        name = req.scope["path"].split("/", 3)[-1]
        handler = handlers.get(name)
        if handler is None:
            raise ApiError(404, "not_found", f"no endpoint {req.scope['path']}")
        return await handler(req)  # type: ignore[no-any-return]

    return dispatch


def _invalidate_target(body: Any, known: tuple[str, ...]) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "body must be a JSON object")
    extra = set(body) - {"route", "prefix", "reason"}
    if extra:
        raise ApiError(422, "invalid_request", f"unknown field {min(extra)!r}",
                       errors=[{"field": f, "message": "unknown field"} for f in sorted(extra)])
    route, prefix = body.get("route"), body.get("prefix")
    if (route is None) == (prefix is None):
        raise ApiError(422, "invalid_request", "give exactly one of route or prefix")
    if route is not None and route not in known:
        raise ApiError(422, "invalid_request", f"route: unknown route {route!r}",
                       errors=[{"field": "route", "message": "unknown route"}])
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ApiError(422, "invalid_request", "prefix: must be a non-empty string",
                       errors=[{"field": "prefix", "message": "must be a non-empty string"}])
    return route, prefix


def _reason(body: Any) -> str:
    return str(body.get("reason", "")) if isinstance(body, dict) else ""


def _number(query: dict[str, str], name: str, default: float, integer: bool = False) -> float:
    """A non-negative query parameter: ASCII digits (bounded) or a finite decimal; else 400."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse_uint(raw, name) if integer else parse_finite(raw, name)
    except BadNumber as err:
        raise ApiError(400, "bad_parameter", str(err)) from None
    if value < 0:
        raise ApiError(400, "bad_parameter", f"{name} must be a non-negative number")
    return float(value)

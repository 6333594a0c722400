"""One control API over both balancer back-ends (built-in proxy, HAProxy adapter).

Served under ``/_trimtab/balancer``:

- ``GET  /_trimtab/balancer[?window=S]`` (read): servers with weight, state,
  health, expected share (w / Σw over servers up and ready) and observed share
  over the last S seconds; ``ETag`` = hash of every server's weight and state.
- ``PATCH /_trimtab/balancer`` (write, ``If-Match`` required):
  ``{"servers": {"s1": {"weight": 3, "state": "drain"}}, "reason": "...", "force": false}``.
  Validated whole, applied all-or-nothing (rolled back if the back-end refuses
  an item midway), one journal entry per item, accepted or refused.
- ``GET  /_trimtab/balancer/journal?since=&limit=`` (read) → ``{"entries", "next"}``.
- ``POST /_trimtab/balancer/revert/{id}`` (write; body ``{"reason", "force"}`` or
  ``?force=1``): the entry's old value as a new change; 404 unknown id, 409 when
  the field changed since that entry.
- ``GET/PATCH /_trimtab/balancer/limits``: rate limits, when the back-end has
  them (:mod:`.limits`); their entries revert through the same ``revert/{id}``.
- ``GET <metrics_path>`` (the HAProxy agent: ``/metrics``; no token, as an instance's
  ``/metrics``): the limits' decisions as ``trimtab_ratelimit_requests_total{route,
  limit,result}``, read from the back-end at each scrape (HAProxy: its counts table),
  so the cockpit charts them like an instance's; 503 (504 on a timeout) with the reason
  when the back-end does not answer (the scrape fails visibly, no stale or made-up zero).

Errors: ``{"error": code, "message", "status", "field"}`` (+ ``errors`` on 422),
the shape of the agent's own control API. The token is checked before the path:
an anonymous caller gets 401 for any path, so it learns none of them. Every
refused write by an authenticated caller is journaled (a revert of an unknown id too).

Guard rails: a change that sets every weight to zero, or leaves no server ready
and up with weight > 0, is refused (409) unless ``force`` is true *and* a reason
is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ..auth import READ, WRITE, AuthError, Principal, TokenAuth
from ..control import parse_json
from ..journal import ACCEPTED, REFUSED, Journal
from ..params import BadNumber, is_uint, parse_finite, parse_uint, shown
from ..ratelimit import RateLimitCollector, RateLimitMetrics
from .policies import (
    FIELDS,
    Backend,
    BackendError,
    InvalidInput,
    Item,
    ServerStatus,
    ShareWindow,
    apply_items,
    check_state,
    check_weight,
    desired_from_journal,
    etag,
    expected_share,
    guard_rail,
    split_what,
)

if TYPE_CHECKING:
    from .limits import LimitsApi

__all__ = ["PREFIX", "Backend", "BackendError", "ControlApp", "desired_from_journal",
           "error_body"]

_log = logging.getLogger(__name__)
PREFIX = "/_trimtab/balancer"
MAX_BODY = 64 * 1024
ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               409: "conflict", 412: "stale_version", 413: "too_large", 422: "invalid",
               428: "if_match_required", 503: "backend_unavailable", 504: "backend_timeout"}
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HTTPError(Exception):
    """An API refusal: status and a JSON body naming the field."""

    def __init__(self, status: int, field: str, message: str,
                 errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
        self.errors = errors


def error_body(status: int, field: str, message: str,
               errors: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The agent control API's error shape: code, message, status; 422 lists the fields."""
    body: dict[str, Any] = {"error": ERROR_CODES.get(status, "error"), "message": message,
                            "status": status, "field": field}
    if status == 422:
        body["errors"] = [{"field": f, "message": m} for f, m in errors or [(field, message)]]
    return body


class ControlApp:
    """ASGI handler for ``/_trimtab/balancer...`` over one :class:`Backend`."""

    def __init__(self, backend: Backend, auth: TokenAuth, journal: Journal,
                 window: float = 30.0, interval: float = 1.0,
                 limits: LimitsApi | None = None, metrics_path: str | None = None) -> None:
        self.backend, self.auth, self.journal = backend, auth, journal
        self.limits = limits  # rate limits under PREFIX/limits (see .limits), if any
        self.metrics_path = metrics_path  # the limits' counters, open like /metrics
        self.window, self.interval = window, interval
        self.shares = ShareWindow()
        self._lock = asyncio.Lock()  # one change at a time: If-Match check and apply are atomic
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin sampling picks and reconciling (HAProxy reloads) every ``interval``."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the background loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except BackendError as err:
                # Unreachable back-end: GET/PATCH report it; keep trying.
                _log.debug("balancer tick: %s", err)
            except Exception:  # noqa: BLE001 - a dead loop would silently stop reload repair
                _log.exception("balancer control loop failed; retrying")
            await asyncio.sleep(self.interval)

    async def _metrics(self, send: Send, accept: str, head: bool = False) -> None:
        """The limits' decision counters, text or OpenMetrics by ``accept`` (see the module doc)."""
        decisions = RateLimitMetrics()
        try:
            if self.limits is not None:
                decisions.decisions.update(await self.limits.backend.counts())
        except BackendError as err:
            data, status = f"limits' counts unavailable: {err}\n".encode(), err.status
            if status < 500:
                status = 503
            content_type = b"text/plain; charset=utf-8"
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(RateLimitCollector(decisions))
            encoder, kind = choose_encoder(accept)
            data, status, content_type = encoder(registry), 200, kind.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": b"" if head else data})

    async def _lifespan(self, receive: Any, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def tick(self) -> None:
        """One sample of pick counters plus one reconcile pass (journaled)."""
        async with self._lock:
            for event in await self.backend.reconcile():
                self.journal.record(target=self.backend.target, **event)
            if self.limits is not None:
                for event in await self.limits.backend.reconcile():
                    self.journal.record(target=self.limits.backend.target, **event)
            servers = await self.backend.servers()
        self.shares.add({s.name: s.picks for s in servers})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":  # served on its own (the HAProxy agent)
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path == self.metrics_path and method in ("GET", "HEAD"):
            accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
            await self._metrics(send, accept, head=method == "HEAD")
            return
        if path.startswith(PREFIX + "/revert/"):
            path = PREFIX + "/revert"  # the id is read from scope["path"] by the handler
        routes = {(PREFIX, "GET"): (READ, self._get), (PREFIX, "PATCH"): (WRITE, self._patch),
                  (PREFIX + "/journal", "GET"): (READ, self._journal),
                  (PREFIX + "/revert", "POST"): (WRITE, self._revert)}
        if self.limits is not None:
            routes[(PREFIX + "/limits", "GET")] = (READ, self._limits_get)
            routes[(PREFIX + "/limits", "PATCH")] = (WRITE, self._limits_patch)
        try:
            # Authenticate before routing: without a token, not even which paths exist leaks.
            who = self.auth.authenticate(scope["headers"], need=READ)
        except AuthError as err:
            await err.send(send)
            return
        if (path, method) not in routes:
            status = 405 if any(p == path for p, _ in routes) else 404
            await _json(send, status,
                        error_body(status, "path", f"{method} {shown(scope['path'], 200)}"))
            return
        need, handler = routes[(path, method)]
        try:
            if not who.can(need):
                # Authenticated but read-only: a write attempt, journaled like the agent's.
                self.journal.record(who=who.name, target=self.backend.target, what="request",
                                    old=None, new=f"{method} {scope['path']}", reason="",
                                    result=REFUSED, detail="insufficient_scope: read token")
                raise AuthError(403, "insufficient_scope",
                                f"token {who.name!r} has scope 'read'; this needs '{need}'")
        except AuthError as err:
            await err.send(send)
            return
        try:
            status, body, headers = await handler(scope, receive, who)
        except HTTPError as err:
            status, headers = err.status, []
            body = error_body(err.status, err.field, err.message, err.errors)
        except BackendError as err:
            status, body, headers = err.status, error_body(err.status, "backend", str(err)), []
        await _json(send, status, body, headers)

    async def document(self, window: float | None = None) -> tuple[dict[str, Any], str]:
        """The GET body and its ETag."""
        servers = await self.backend.servers()
        self.shares.add({s.name: s.picks for s in servers})
        win = self.window if window is None else window
        observed, expected = self.shares.observed(win), expected_share(servers)
        rows = [{**asdict(s), "expected_share": expected[s.name],
                 "observed_share": observed.get(s.name)} for s in servers]
        tag = etag(servers, self.backend.policy)
        return {"version": tag, "target": self.backend.target, "policy": self.backend.policy,
                "window_seconds": win, "servers": rows, **self.backend.extra()}, tag

    async def _get(self, scope: dict[str, Any], receive: Any, who: Principal) -> _Reply:
        window = _query_window(scope)
        doc, tag = await self.document(window)
        doc = {**doc, "who": who.name, "scopes": sorted(who.scopes)}  # see the agent's health
        return 200, doc, [(b"etag", tag.encode())]

    async def _limits_get(self, scope: dict[str, Any], receive: Any, who: Principal) -> _Reply:
        assert self.limits is not None  # routed only when set
        return await self.limits.get(self, scope, receive, who)

    async def _limits_patch(self, scope: dict[str, Any], receive: Any,
                            who: Principal) -> _Reply:
        assert self.limits is not None  # routed only when set
        return await self.limits.patch(self, scope, receive, who)

    async def _journal(self, scope: dict[str, Any], receive: Any, who: Principal) -> _Reply:
        """``?since=<id>&limit=<n>`` → this balancer's entries and the ``next`` cursor."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            since = parse_uint(query.get("since", ["0"])[0], "since")
            limit = parse_uint(query.get("limit", ["1000"])[0], "limit")
        except BadNumber as err:
            raise HTTPError(400, err.name, str(err)) from None
        if not 1 <= limit <= 10000:
            raise HTTPError(400, "limit", "must be between 1 and 10000")
        mine = [e for e in self.journal.list(since_id=since) if e.target == self.backend.target]
        page = mine[:limit]
        return 200, {"entries": [e.to_dict() for e in page],
                     "next": page[-1].id if page else since}, []

    async def _patch(self, scope: dict[str, Any], receive: Any, who: Principal) -> _Reply:
        body = await self._body(receive, who)
        reason, force = self._reason_force(body, who)
        async with self._lock:
            servers = await self._servers_or_journal(who, body.get("servers"), reason)
            self._check_version(scope, servers, who, reason)
            items = self._parse_items(body.get("servers"), servers, who, reason)
            return await self._change(items, servers, who, reason, force, reverts=None)

    async def _servers_or_journal(self, who: Principal, new: Any,
                                  reason: str) -> list[ServerStatus]:
        """Live servers; a back-end that cannot even be read is a journaled refusal."""
        try:
            return await self.backend.servers()
        except BackendError as err:
            self.journal.record(who=who.name, target=self.backend.target, what="servers",
                                old=None, new=new, reason=reason, result=REFUSED,
                                detail=f"nothing applied: back-end unreachable: {err}")
            raise

    async def _revert(self, scope: dict[str, Any], receive: Any, who: Principal) -> _Reply:
        """``POST .../revert/{id}`` body ``{"reason", "force"}``: the entry's old value, anew.

        409 when the field changed since that entry (unless forced with a reason).
        """
        body = await self._body(receive, who, optional=True)
        if parse_qs(scope.get("query_string", b"").decode()).get("force") == ["1"]:
            body.setdefault("force", True)
        reason, force = self._reason_force(body, who)
        raw_id = scope["path"].rstrip("/").rpartition("/")[2]
        entry = self.journal.get(int(raw_id)) if is_uint(raw_id) else None
        if entry is None or entry.target != self.backend.target:
            self._refuse(who, "revert", None, shown(raw_id), reason, 404, "id",
                         f"no change {shown(raw_id)} of this balancer in the journal")
        if self.limits is not None and entry.what.startswith("limits.") and \
                entry.result == ACCEPTED:
            return await self.limits.revert(self, entry, who, reason, force)
        parsed = split_what(entry.what)
        if parsed is None or entry.result != ACCEPTED:
            self._refuse(who, "revert", None, entry.id, reason, 422, "id",
                         f"entry {entry.id} is not an accepted server or limit change")
        server, field = parsed
        async with self._lock:
            servers = await self._servers_or_journal(who, {server: {field: entry.old}}, reason)
            current = next((getattr(s, field) for s in servers if s.name == server), None)
            if current != entry.new and not force:
                self._refuse(who, f"servers.{server}.{field}", current, entry.old, reason, 409,
                             f"servers.{server}.{field}",
                             f"changed since entry {entry.id} ({entry.new!r} -> {current!r}); "
                             "send force with a reason")
            items = self._parse_items({server: {field: entry.old}}, servers, who, reason)
            return await self._change(items, servers, who, reason, force, reverts=entry.id)

    async def _change(self, items: list[Item], servers: list[ServerStatus], who: Principal,
                      reason: str, force: bool, reverts: int | None) -> _Reply:
        after = apply_items(servers, items)
        danger = guard_rail(servers, after)
        if danger and not force:
            self._refuse_items(items, who, reason, danger + "; send force with a reason", reverts)
            raise HTTPError(409, "servers", danger + "; send \"force\": true with a reason")
        done: list[Item] = []
        try:
            for item in items:
                if item.old != item.new:
                    await self.backend.apply(item.server, item.field, item.new)
                done.append(item)
        except BackendError as err:
            await self._roll_back(done)
            self._refuse_items(items, who, reason, f"nothing applied: {err}", reverts)
            raise
        entries = [self.journal.record(who=who.name, target=self.backend.target,
                                       what=f"servers.{i.server}.{i.field}", old=i.old, new=i.new,
                                       reason=reason, result=ACCEPTED, reverts=reverts,
                                       detail="forced past guard rail" if danger else "")
                   for i in items if i.old != i.new]  # the journal holds changes, not no-ops
        unchanged = [{"server": i.server, "field": i.field, "value": i.new}
                     for i in items if i.old == i.new]
        doc, tag = await self.document()
        return 200, {**doc, "applied": [e.to_dict() for e in entries], "unchanged": unchanged}, \
            [(b"etag", tag.encode())]

    async def _roll_back(self, done: list[Item]) -> None:
        for item in reversed(done):
            # Best effort: the back-end just failed, it may fail again; the journal says so.
            with contextlib.suppress(BackendError):
                await self.backend.apply(item.server, item.field, item.old)

    async def _body(self, receive: Any, who: Principal, optional: bool = False) -> dict[str, Any]:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if len(raw) > MAX_BODY:
                self._refuse(who, "request", None, None, "", 413, "body",
                             f"larger than {MAX_BODY} bytes")
            if not message.get("more_body"):
                break
        if optional and not raw.strip():
            return {}
        try:
            body = parse_json(raw or b"null")  # strict: NaN is no weight, deep nesting is 400
        except ValueError as err:
            self._refuse(who, "request", None, None, "", 400, "body",
                         f"must be a JSON object ({err})")
        if not isinstance(body, dict):
            self._refuse(who, "request", None, None, "", 400, "body", "must be a JSON object")
        return body

    def _reason_force(self, body: dict[str, Any], who: Principal) -> tuple[str, bool]:
        reason, force = body.get("reason", ""), body.get("force", False)
        if not isinstance(reason, str) or len(reason) > 500:
            self._refuse(who, "request", None, None, "", 422, "reason",
                         "must be a string of at most 500 characters")
        if not isinstance(force, bool):
            self._refuse(who, "request", None, None, reason, 422, "force", "must be true or false")
        if force and not reason.strip():
            self._refuse(who, "request", None, None, reason, 422, "reason",
                         "force needs a reason")
        return reason, force

    def _check_version(self, scope: dict[str, Any], servers: list[ServerStatus],
                       who: Principal, reason: str) -> None:
        match = dict(scope["headers"]).get(b"if-match", b"").decode("latin-1").strip()
        current = etag(servers, self.backend.policy)
        if not match:
            self._refuse(who, "request", None, None, reason, 428, "If-Match",
                         f"required; current version is {current}")
        if match != current and match != "*":
            self._refuse(who, "request", match, current, reason, 412, "If-Match",
                         f"stale version {match}; current is {current}")

    def _parse_items(self, spec: Any, servers: list[ServerStatus], who: Principal,
                     reason: str) -> list[Item]:
        if not isinstance(spec, dict) or not spec:
            self._refuse(who, "servers", None, spec, reason, 422, "servers",
                         "must be a non-empty object {name: {weight?, state?}}")
        by_name = {s.name: s for s in servers}
        items = []
        for name, change in spec.items():
            path = f"servers.{name}"
            if name not in by_name:
                self._refuse(who, path, None, change, reason, 422, path, "unknown server")
            if not isinstance(change, dict) or not change or set(change) - set(FIELDS):
                self._refuse(who, path, None, change, reason, 422, path,
                             "must be an object with only 'weight' and/or 'state'")
            for field, value in change.items():
                old = getattr(by_name[name], field)
                try:
                    new = check_weight(value) if field == "weight" else check_state(value)
                except InvalidInput as err:
                    self._refuse(who, f"{path}.{field}", old, value, reason, 422,
                                 f"{path}.{field}", str(err))
                items.append(Item(name, field, old, new))
        return items

    def _refuse(self, who: Principal, what: str, old: Any, new: Any, reason: str,
                status: int, field: str, message: str) -> NoReturn:
        """Journal a refused change, then raise the HTTP error for it."""
        self.journal.record(who=who.name, target=self.backend.target, what=what,
                            old=old, new=new, reason=reason,
                            result=REFUSED, detail=f"{field}: {message}")
        raise HTTPError(status, field, message)

    def _refuse_items(self, items: list[Item], who: Principal, reason: str, detail: str,
                      reverts: int | None) -> None:
        for i in items:
            self.journal.record(who=who.name, target=self.backend.target,
                                what=f"servers.{i.server}.{i.field}", old=i.old, new=i.new,
                                reason=reason, result=REFUSED, detail=detail, reverts=reverts)


_Reply = tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]


def _query_window(scope: dict[str, Any]) -> float | None:
    raw = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("window")
    if not raw:
        return None
    try:
        window = parse_finite(raw[0], "window")
    except BadNumber:
        window = -1.0
    if not 1.0 <= window <= 3600.0:
        raise HTTPError(422, "window", "must be a number of seconds between 1 and 3600")
    return window


async def _json(send: Send, status: int, body: Any,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})

"""The control API under ``/_trimtab/``: config, journal, revert, health (+ plug-in endpoints).

Every endpoint needs a bearer token (:mod:`.auth`); reads need ``read``, changes
``write``. Errors are JSON ``{"error": code, "message": ..., "status": ...}``
(plus ``errors: [{field, message}]`` on 422). Every write attempt by an
authenticated caller is journaled, accepted or refused; unauthenticated ones
(401) are not, so an anonymous client cannot fill the disk — they are counted.

- ``GET /_trimtab/health`` → instance, pid, config version, journal mode.
- ``GET /_trimtab/config`` → document + ``ETag`` (304 on a matching ``If-None-Match``).
- ``PATCH /_trimtab/config`` with ``If-Match`` (428 missing, 412 stale), body a
  patch (see :mod:`.config`); 400 malformed JSON, 413 body over ``max_body``,
  422 invalid (field named). 200 → ``{"config", "changed", "journal_id"}``.
- ``GET /_trimtab/journal?since=<id>&limit=<n>`` → ``{"entries": [...], "next": id}``.
- ``POST /_trimtab/revert/{id}`` (optional body ``{"reason": str}``, ``?force=1``):
  applies the entry's ``old`` values as a new journaled change; 409 when those
  fields changed since (unless forced), 404 unknown id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .auth import READ, WRITE, AuthError, Principal, TokenAuth
from .config import ConfigStore, PatchInvalid, StaleVersion
from .journal import ACCEPTED, REFUSED, Journal
from .params import MAX_DIGITS, BadNumber, is_uint, parse_uint, shown

PREFIX = "/_trimtab/"
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ApiError(Exception):
    """An HTTP error with a JSON body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@dataclass
class Request:
    """What a handler sees: the scope, the authenticated caller and parsed query."""

    scope: MutableMapping[str, Any]
    receive: Receive
    who: Principal
    query: dict[str, str]
    headers: dict[bytes, bytes]
    max_body: int

    async def body(self) -> bytes:
        """The request body; :class:`ApiError` 413 beyond ``max_body`` (checked before reading)."""
        declared = self.headers.get(b"content-length", b"0")
        if not declared.isdigit():  # bytes.isdigit() is ASCII-only, unlike str.isdigit()
            raise ApiError(400, "bad_content_length", "Content-Length must be a number")
        # Length first: int() of a 5000-digit header would itself raise (int_max_str_digits).
        if len(declared) > MAX_DIGITS or int(declared) > self.max_body:
            raise ApiError(413, "body_too_large", f"body over {self.max_body} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "disconnected", "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, "body_too_large", f"body over {self.max_body} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def json(self, default: Any = None) -> Any:
        """The body parsed as strict JSON (no NaN/Infinity); 400 when malformed."""
        raw = await self.body()
        if not raw.strip() and default is not None:
            return default
        try:
            return parse_json(raw)
        except ValueError as exc:
            raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON (no NaN/Infinity); every refusal is a ``ValueError``.

    That includes nesting too deep for the parser (``'[' * 100000``), which
    ``json.loads`` reports as ``RecursionError``, and ints over 4300 digits.
    """
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class Reply:
    """A handler's answer."""

    status: int
    body: Any
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Reply]]


class ControlAPI:
    """An ASGI handler for paths under ``/_trimtab/``; other modules may :meth:`add` endpoints."""

    def __init__(self, config: ConfigStore, journal: Journal, auth: TokenAuth,
                 max_body: int = 64 * 1024) -> None:
        self.config, self.journal, self.auth, self.max_body = config, journal, auth, max_body
        self.unauthenticated = 0
        self.health_extra: Callable[[], dict[str, Any]] | None = None
        self._routes: dict[tuple[str, str], tuple[str, Handler]] = {}
        self.add("GET", "health", READ, self._health)
        self.add("GET", "config", READ, self._get_config)
        self.add("PATCH", "config", WRITE, self._patch_config)
        self.add("GET", "journal", READ, self._journal)
        self.add("POST", "revert", WRITE, self._revert)

    def add(self, method: str, name: str, need: str, handler: Handler) -> None:
        """Serve ``method /_trimtab/<name>[/<arg>]`` with ``handler`` for scope ``need``."""
        self._routes[(method, name)] = (need, handler)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or ())
        name = scope["path"][len(PREFIX):].split("/", 1)[0]
        method = scope["method"]
        try:
            # Authenticate first: without a token, not even which endpoints exist leaks.
            who = self.auth.authenticate(headers, need=READ)
            entry = self._routes.get((method, name))
            if entry is None:
                allowed = sorted(m for m, n in self._routes if n == name)
                if not allowed:
                    raise ApiError(404, "not_found", f"no endpoint {scope['path']}")
                raise ApiError(405, "method_not_allowed", f"use {', '.join(allowed)}",
                               allow=allowed)
            need = entry[0]
            if need == WRITE and not who.can(WRITE):
                self._journal_refusal(who, f"{method} {scope['path']}", None, "",
                                      f"token {who.name!r} has scope 'read'")
                raise AuthError(403, "insufficient_scope",
                                f"token {who.name!r} has scope 'read'; this needs 'write'")
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            reply = await entry[1](Request(scope, receive, who, query, headers, self.max_body))
        except AuthError as err:
            self.unauthenticated += err.status == 401
            await err.send(send)
            return
        except ApiError as err:
            body = {"error": err.code, "message": err.message, "status": err.status, **err.extra}
            allow = err.extra.get("allow")
            extra = [(b"allow", ", ".join(allow).encode())] if allow else []
            reply = Reply(err.status, body, extra)
        await _send_json(send, reply)

    def _journal_refusal(self, who: Principal, what: str, new: Any, reason: str,
                         detail: str) -> None:
        self.journal.record(who=who.name, target=self.config.instance, what=what, old=None,
                            new=new, reason=reason, result=REFUSED, detail=detail)

    async def _health(self, req: Request) -> Reply:
        settings = self.config.settings()
        return Reply(200, {"status": "ok", "instance": self.config.instance, "pid": os.getpid(),
                           "config_version": settings.version,
                           "config_shared": self.config.path is not None,
                           "journal": "file" if self.journal.path else "memory",
                           # who is asking and what they may do: the cockpit greys out
                           # controls for a read-only token without a refused write
                           "who": req.who.name, "scopes": sorted(req.who.scopes),
                           **(self.health_extra() if self.health_extra else {})})

    async def _get_config(self, req: Request) -> Reply:
        doc, etag = self.config.document()
        if req.headers.get(b"if-none-match", b"").decode("latin-1").strip() == etag:
            return Reply(304, None, [(b"etag", etag.encode())])
        return Reply(200, doc, [(b"etag", etag.encode())])

    async def _patch_config(self, req: Request) -> Reply:
        if_match = req.headers.get(b"if-match")
        patch: Any = None
        try:
            if if_match is None:
                raise ApiError(428, "if_match_required",
                               "PATCH needs If-Match: <ETag from GET /_trimtab/config>")
            patch = await req.json()
            return self._apply(req.who, patch, if_match.decode("latin-1"))
        except ApiError as err:
            reason = patch.get("reason", "") if isinstance(patch, dict) else ""
            shown = patch if err.status != 413 else None
            self._journal_refusal(req.who, "config", shown, str(reason), err.message)
            raise

    def _apply(self, who: Principal, patch: Any, if_match: str | None,
               reverts: int | None = None) -> Reply:
        reason = patch.get("reason", "") if isinstance(patch, dict) else ""
        try:
            old, new, doc, etag = self.config.apply(patch, if_match)
        except StaleVersion as err:
            raise ApiError(412, "stale_version", str(err), etag=err.current) from None
        except PatchInvalid as err:
            errors = [{"field": e.field, "message": e.message} for e in err.errors]
            raise ApiError(422, "invalid_config", str(err), errors=errors) from None
        journal_id = None
        if new:
            journal_id = self.journal.record(who=who.name, target=self.config.instance,
                                             what="config", old=old, new=new,
                                             reason=str(reason), result=ACCEPTED,
                                             reverts=reverts).id
        return Reply(200, {"config": doc, "changed": new, "journal_id": journal_id},
                     [(b"etag", etag.encode())])

    async def _journal(self, req: Request) -> Reply:
        since = _int_param(req.query, "since", None)
        limit = min(_int_param(req.query, "limit", 500) or 500, 5000)
        entries = self.journal.list(since_id=since, limit=limit)
        nxt = entries[-1].id if entries else (since or 0)
        return Reply(200, {"entries": [e.to_dict() for e in entries], "next": nxt})

    async def _revert(self, req: Request) -> Reply:
        raw = req.scope["path"][len(PREFIX) + len("revert/"):]
        try:
            body = await req.json(default={})
            if not is_uint(raw):
                raise ApiError(404, "not_found", f"journal id must be a number, got {shown(raw)}")
            entry = self.journal.get(int(raw))
            if entry is None:
                raise ApiError(404, "not_found", f"no journal entry {raw}")
            if entry.result != ACCEPTED or entry.what != "config" or \
                    entry.target != self.config.instance:
                raise ApiError(409, "not_revertible",
                               f"entry {entry.id} is not an accepted config change here")
            if req.query.get("force") not in ("1", "true") and \
                    self.config.values_at(entry.new) != entry.new:
                raise ApiError(409, "conflict", f"fields of entry {entry.id} changed since; "
                               "revert with ?force=1 to overwrite")
            reason = body.get("reason", f"revert #{entry.id}") if isinstance(body, dict) else ""
            return self._apply(req.who, {**entry.old, "reason": reason}, None, reverts=entry.id)
        except ApiError as err:
            self._journal_refusal(req.who, f"revert {shown(raw)}", None, "", err.message)
            raise


def _int_param(query: dict[str, str], name: str, default: int | None) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return parse_uint(value, name)
    except BadNumber as err:
        raise ApiError(400, "bad_parameter", str(err)) from None


async def _send_json(send: Send, reply: Reply) -> None:
    body = b"" if reply.body is None else json.dumps(reply.body).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
               (b"x-trimtab-api", b"1"),
               (b"content-length", str(len(body)).encode()), *reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

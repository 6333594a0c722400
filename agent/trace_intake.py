"""Traces in from any language: OTLP/HTTP (JSON or protobuf) and Zipkin v2 JSON.

Endpoints (registered by :func:`add_intake_endpoints`; token with scope ``write``,
since a caller adds data the cockpit shows — a ``read`` token gets 403)::

    POST /_trimtab/v1/traces        Content-Type application/json | application/x-protobuf
        -> 200, {"partialSuccess": {}} (JSON) or an empty body (protobuf)
    POST /_trimtab/api/v2/spans     Content-Type application/json, a Zipkin v2 array
        -> 202, empty body

Both accept ``Content-Encoding: gzip``/``deflate``. Answers carry
``x-trimtab-spans`` (spans accepted), ``x-trimtab-traces`` (trace records
stored now) and ``x-trimtab-held`` (spans waiting for their root). Errors: 400
malformed (the reason names the field, e.g. ``resourceSpans[0].scopeSpans[0].spans[2].traceId``),
413 body over 4 MiB (compressed or not), 415 other content types or encodings.
A batch is taken whole or not at all.

Mapping into :class:`.traces.Tracer` records (same views as the agent's own
traces): a SERVER span or a span without parent becomes a trace record — route
from ``http.route`` (else the span name), method from ``http.request.method`` /
``http.method``, status from ``http.response.status_code`` / ``http.status_code``
(else 500 for an error status, else 0), instance = ``service.name``, cache
``n/a``, source ``otlp``/``zipkin``. Other spans become children of the record
their parent chain leads to. SDKs export a child before its parent ends, so a
span whose parent has not arrived is held (up to ``hold`` seconds, at most
``max_held`` spans) until its root comes; after that it is stored as a record
of its own. Held spans live in the worker process that received them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .auth import WRITE
from .control import ApiError, ControlAPI, Reply, Request, parse_json
from .otlp_proto import decode_export_request
from .params import is_uint
from .traces import MAX_CHILDREN, Tracer

MAX_BODY = 4 * 1024 * 1024
# Integers per OTLP/JSON; the protobuf-JSON enum names are seen from some exporters too.
OTLP_SERVER, OTLP_ERROR = (2, "SPAN_KIND_SERVER"), (2, "STATUS_CODE_ERROR")
ZIPKIN_SERVER = "SERVER"
_HEX = frozenset("0123456789abcdef")


class Malformed(ValueError):
    """A payload that cannot be ingested; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class IngestSpan:
    """One received span, normalised from either format."""

    trace_id: str            # 32 lowercase hex digits
    span_id: str             # 16 lowercase hex digits
    parent_id: str | None
    name: str
    server: bool             # kind SERVER: always a trace record of its own
    start: float             # unix seconds
    duration_ms: float
    tags: dict[str, str]
    service: str
    error: bool
    source: str              # "otlp" or "zipkin"


# ---- OTLP/JSON (and protobuf, decoded into the same shape) -------------------------------

def _otlp_id(raw: Any, nbytes: int, where: str) -> str:
    """Hex (the OTLP/JSON rule) or base64 (some exporters); all-zero ids are invalid."""
    if not isinstance(raw, str):
        raise Malformed(f"{where}: missing or not a string")
    text = raw.lower()
    if len(text) == 2 * nbytes and set(text) <= _HEX:
        value = text
    else:
        try:
            value = base64.b64decode(raw, validate=True).hex()
        except (binascii.Error, ValueError):
            value = ""
        if len(value) != 2 * nbytes:
            raise Malformed(f"{where}: must be {2 * nbytes} hex digits or base64 of "
                            f"{nbytes} bytes, got {raw[:48]!r}")
    if set(value) == {"0"}:
        raise Malformed(f"{where}: all-zero id is invalid")
    return value


def _nanos(raw: Any, where: str) -> int:
    # fixed64 in the proto: beyond 2**64 it is no timestamp, and dividing a 400-digit
    # int by 1e9 would raise OverflowError instead of naming the field.
    if isinstance(raw, str) and is_uint(raw, max_digits=20):
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 2**64:
        return raw
    raise Malformed(f"{where}: missing or not an integer in 0..2**64-1")


def _attr_value(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    for key in ("stringValue", "intValue", "doubleValue"):
        if key in value and not isinstance(value[key], dict | list):
            return str(value[key])
    if "boolValue" in value:
        return "true" if value["boolValue"] else "false"
    return None  # arrays, maps, bytes: not shown as tags


def _otlp_attrs(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise Malformed(f"{where}: must be a list")
    out = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise Malformed(f"{where}[{i}]: must be an object with a string key")
        value = _attr_value(item.get("value"))
        if value is not None:
            out[item["key"]] = value
    return out


def _list(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise Malformed(f"{where}.{key}: must be a list")
    return value


def parse_otlp(doc: Any) -> list[IngestSpan]:
    """Spans of an OTLP ``ExportTraceServiceRequest`` in its JSON shape; :class:`Malformed` if bad."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        raise Malformed("body must be an object with a resourceSpans list")
    out = []
    for i, rs in enumerate(doc["resourceSpans"]):
        where = f"resourceSpans[{i}]"
        if not isinstance(rs, dict):
            raise Malformed(f"{where}: must be an object")
        resource = rs.get("resource") or {}
        if not isinstance(resource, dict):
            raise Malformed(f"{where}.resource: must be an object")
        service = _otlp_attrs(resource.get("attributes"), f"{where}.resource.attributes") \
            .get("service.name", "unknown_service")
        for j, ss in enumerate(_list(rs, "scopeSpans", where)):
            if not isinstance(ss, dict):
                raise Malformed(f"{where}.scopeSpans[{j}]: must be an object")
            for k, span in enumerate(_list(ss, "spans", f"{where}.scopeSpans[{j}]")):
                out.append(_otlp_span(span, service, f"{where}.scopeSpans[{j}].spans[{k}]"))
    return out


def _otlp_span(span: Any, service: str, where: str) -> IngestSpan:
    if not isinstance(span, dict):
        raise Malformed(f"{where}: must be an object")
    parent = span.get("parentSpanId") or None
    start = _nanos(span.get("startTimeUnixNano"), f"{where}.startTimeUnixNano")
    end = _nanos(span.get("endTimeUnixNano"), f"{where}.endTimeUnixNano")
    if end < start:
        raise Malformed(f"{where}: endTimeUnixNano is before startTimeUnixNano")
    kind, status = span.get("kind", 0), span.get("status") or {}
    if not isinstance(kind, int | str) or not isinstance(status, dict):
        raise Malformed(f"{where}: kind must be an integer and status an object")
    name = span.get("name", "")
    return IngestSpan(
        _otlp_id(span.get("traceId"), 16, f"{where}.traceId"),
        _otlp_id(span.get("spanId"), 8, f"{where}.spanId"),
        _otlp_id(parent, 8, f"{where}.parentSpanId") if parent else None,
        name if isinstance(name, str) else str(name), kind in OTLP_SERVER, start / 1e9,
        (end - start) / 1e6, _otlp_attrs(span.get("attributes"), f"{where}.attributes"),
        service, status.get("code") in OTLP_ERROR, "otlp")


# ---- Zipkin v2 JSON -------------------------------------------------------------------------

def _zipkin_id(raw: Any, lengths: tuple[int, ...], where: str) -> str:
    if not isinstance(raw, str) or len(raw) not in lengths or not set(raw.lower()) <= _HEX:
        raise Malformed(f"{where}: must be {' or '.join(map(str, lengths))} hex digits, "
                        f"got {str(raw)[:48]!r}" if raw is not None else f"{where}: missing")
    if set(raw) == {"0"}:
        raise Malformed(f"{where}: all-zero id is invalid")
    return raw.lower().rjust(32 if 32 in lengths else 16, "0")  # 64-bit trace ids widen


def _micros(raw: Any, where: str, required: bool) -> int:
    if raw is None and not required:
        return 0
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 2**63:
        return raw
    raise Malformed(f"{where}: missing or not an integer in 0..2**63-1 (microseconds)")


def parse_zipkin(doc: Any) -> list[IngestSpan]:
    """Spans of a Zipkin v2 JSON array; :class:`Malformed` names the first bad field."""
    if not isinstance(doc, list):
        raise Malformed("body must be a JSON array of Zipkin v2 spans")
    out = []
    for i, span in enumerate(doc):
        where = f"[{i}]"
        if not isinstance(span, dict):
            raise Malformed(f"{where}: must be an object")
        tags, endpoint = span.get("tags") or {}, span.get("localEndpoint") or {}
        if not isinstance(tags, dict) or not all(
                isinstance(v, str | int | float | bool) for v in tags.values()):
            raise Malformed(f"{where}.tags: must be an object of strings")
        if not isinstance(endpoint, dict):
            raise Malformed(f"{where}.localEndpoint: must be an object")
        parent, name = span.get("parentId"), span.get("name", "")
        str_tags = {str(k): str(v) for k, v in tags.items()}
        out.append(IngestSpan(
            _zipkin_id(span.get("traceId"), (16, 32), f"{where}.traceId"),
            _zipkin_id(span.get("id"), (16,), f"{where}.id"),
            _zipkin_id(parent, (16,), f"{where}.parentId") if parent else None,
            name if isinstance(name, str) else str(name), span.get("kind") == ZIPKIN_SERVER,
            _micros(span.get("timestamp"), f"{where}.timestamp", True) / 1e6,
            _micros(span.get("duration"), f"{where}.duration", False) / 1e3, str_tags,
            str(endpoint.get("serviceName") or "unknown_service"), "error" in str_tags,
            "zipkin"))
    return out


# ---- Joining spans into trace records ------------------------------------------------------

def _status(span: IngestSpan) -> int:
    for key in ("http.response.status_code", "http.status_code"):
        raw = span.tags.get(key, "")
        if is_uint(raw, max_digits=3) and 100 <= int(raw) <= 599:
            return int(raw)
    return 500 if span.error else 0


def _record(root: IngestSpan, children: list[IngestSpan]) -> tuple[Any, ...]:
    """The tuple :meth:`.Tracer.ingest` stores (the agent's layout + instance, name, source)."""
    kids = sorted(children, key=lambda s: s.start)[:MAX_CHILDREN]
    tags = root.tags
    return (root.trace_id, root.span_id, root.parent_id, tags.get("http.route") or root.name,
            tags.get("http.request.method") or tags.get("http.method") or "", _status(root),
            "n/a", root.start, root.duration_ms,
            tuple((k.span_id, k.name, k.start, k.duration_ms, tuple(k.tags.items()))
                  for k in kids),
            root.service, root.name, root.source)


Key = tuple[str, str]  # (trace id, span id)


def _resolve(pool: dict[Key, IngestSpan], expired: Callable[[Key], bool]) -> dict[Key, Key | None]:
    """Each span's record key (itself for a record), or None while its root is missing."""
    roots: dict[Key, Key | None] = {}
    for key in pool:
        path: list[Key] = []
        cur, root = key, None
        while True:
            if cur in roots:
                root = roots[cur]
                break
            if cur in path:
                raise Malformed(f"parent cycle through span {cur[1]} of trace {cur[0]}")
            path.append(cur)
            span = pool[cur]
            if span.server or span.parent_id is None:
                root = cur
                break
            parent = (span.trace_id, span.parent_id)
            if parent not in pool:
                # The top of an orphan chain becomes a record once it has waited long enough.
                root = cur if expired(cur) else None
                break
            cur = parent
        for step in path:
            roots[step] = root
    return roots


class TraceIntake:
    """Joins received spans into trace records and stores them in a :class:`.Tracer`."""

    def __init__(self, tracer: Tracer, hold: float = 10.0, max_held: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tracer, self.hold, self.max_held, self.clock = tracer, hold, max_held, clock
        self.evicted = 0  # held spans dropped because more than max_held were waiting
        self._held: dict[Key, tuple[IngestSpan, float]] = {}  # arrival order
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """Spans waiting for their root."""
        return len(self._held)

    def add(self, spans: list[IngestSpan]) -> int:
        """Store the records these spans complete; returns how many. All or nothing.

        :class:`Malformed` for a span id given twice in the batch or a parent cycle.
        """
        now = self.clock()
        pool = {key: span for key, (span, _) in self._held.items()}
        arrival = {key: at for key, (_, at) in self._held.items()}
        seen: set[Key] = set()
        for span in spans:
            key = (span.trace_id, span.span_id)
            if key in seen:
                raise Malformed(f"span {span.span_id} of trace {span.trace_id} appears twice")
            seen.add(key)
            pool[key], arrival[key] = span, now
        roots = _resolve(pool, lambda k: arrival[k] + self.hold <= now)
        children: dict[Key, list[IngestSpan]] = {}
        for key, root in roots.items():
            if root is not None and root != key:
                children.setdefault(root, []).append(pool[key])
        records = sorted((_record(pool[k], children.get(k, [])) for k, r in roots.items()
                          if r == k), key=lambda rec: rec[7])
        held = {k: (pool[k], arrival[k]) for k, r in roots.items() if r is None}
        while len(held) > self.max_held:
            del held[next(iter(held))]
            self.evicted += 1
        self.tracer.ingest(records)
        self._held = held
        self._schedule(now)
        return len(records)

    def _schedule(self, now: float) -> None:
        """Store expired orphans even when no further batch arrives (needs a running loop)."""
        if not self._held or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the server: the next add() expires them
        oldest = next(iter(self._held.values()))[1]
        self._timer = loop.call_later(max(0.05, oldest + self.hold - now + 0.01), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.add([])

    async def otlp(self, req: Request) -> Reply:
        """``POST /_trimtab/v1/traces``: an OTLP export request, JSON or protobuf."""
        _only(req, "/_trimtab/v1/traces")
        ctype = _content_type(req, ("application/json", "application/x-protobuf"))
        body = await _body(req)
        try:
            doc = decode_export_request(body) if ctype.endswith("protobuf") else _json(body)
            spans = parse_otlp(doc)
            stored = self.add(spans)
        except ValueError as exc:
            raise ApiError(400, "malformed_payload", str(exc)) from None
        payload: dict[str, Any] | None = {"partialSuccess": {}} if ctype == "application/json" else None
        return Reply(200, payload, self._counts(len(spans), stored))

    async def zipkin(self, req: Request) -> Reply:
        """``POST /_trimtab/api/v2/spans``: a Zipkin v2 JSON array."""
        _only(req, "/_trimtab/api/v2/spans")
        _content_type(req, ("application/json",))
        body = await _body(req)
        try:
            spans = parse_zipkin(_json(body))
            stored = self.add(spans)
        except ValueError as exc:
            raise ApiError(400, "malformed_payload", str(exc)) from None
        return Reply(202, None, self._counts(len(spans), stored))

    def _counts(self, spans: int, stored: int) -> list[tuple[bytes, bytes]]:
        return [(b"x-trimtab-spans", str(spans).encode()),
                (b"x-trimtab-traces", str(stored).encode()),
                (b"x-trimtab-held", str(self.held).encode())]


def _only(req: Request, path: str) -> None:
    if req.scope["path"].rstrip("/") != path:
        raise ApiError(404, "not_found", f"no endpoint {req.scope['path']}")


def _content_type(req: Request, allowed: tuple[str, ...]) -> str:
    raw = req.headers.get(b"content-type", b"").decode("latin-1")
    ctype = raw.split(";", 1)[0].strip().lower()
    if ctype not in allowed:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {raw or '(none)'!r}: use {' or '.join(allowed)}")
    return ctype


async def _body(req: Request) -> bytes:
    """The body, decompressed, at most :data:`MAX_BODY` bytes either way (413 beyond)."""
    encoding = req.headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise ApiError(415, "unsupported_encoding",
                       f"Content-Encoding {encoding!r}: use gzip, deflate or none")
    raw = await dataclasses.replace(req, max_body=MAX_BODY).body()
    if encoding == "identity":
        return raw
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        out = inflater.decompress(raw, MAX_BODY + 1)
    except zlib.error as exc:
        raise ApiError(400, "malformed_payload", f"{encoding} body does not decompress: {exc}") \
            from None
    if len(out) > MAX_BODY or inflater.unconsumed_tail:
        raise ApiError(413, "body_too_large", f"decompressed body over {MAX_BODY} bytes")
    if not inflater.eof:
        raise ApiError(400, "malformed_payload", f"{encoding} body is truncated")
    return out


def _json(body: bytes) -> Any:
    try:
        return parse_json(body)
    except ValueError as exc:
        raise Malformed(f"body is not valid JSON: {exc}") from None


def add_intake_endpoints(api: ControlAPI, tracer: Tracer) -> TraceIntake:
    """Register the OTLP and Zipkin endpoints on ``api`` (scope ``write``)."""
    intake = TraceIntake(tracer)
    api.add("POST", "v1", WRITE, intake.otlp)
    api.add("POST", "api", WRITE, intake.zipkin)
    return intake

"""Trace intake: the real OpenTelemetry SDK and OTLP/HTTP exporter, OTLP JSON and Zipkin
payloads sent to a real agent process; malformed payloads refused whole; held spans."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from trimtab.agent.otlp_proto import decode_export_request
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.agent.trace_intake import MAX_BODY, TraceIntake, parse_otlp, parse_zipkin
from trimtab.agent.traces import Tracer
from trimtab.demo.fleet import spawn_demo

WRITE = {"authorization": "Bearer W-secret"}
READ = {"authorization": "Bearer R-secret"}
JSON = {"content-type": "application/json"}
T1 = "5b8efff798038103d269b633813fc60c"
ROOT, CHILD, OTHER = "eee19b7ec3c1b174", "eee19b7ec3c1b173", "0102030405060708"
NOW_NS = 1_750_000_000_000_000_000


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = str(tmp_path_factory.mktemp("intake") / "agent.log")
    proc = spawn_demo(["instance", "--name", "api-1", "--port", str(port)], log,
                 env={"TRIMTAB_TOKENS": "op:write:W-secret,ro:read:R-secret"})
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all([proc])
    with open(log) as fh:  # bad payloads are answered, never crash a handler
        assert "Traceback" not in fh.read()


def traces(base: str, trace_id: str | None = None, since: int = 0) -> tuple[list[Any], int]:
    r = httpx.get(f"{base}/_trimtab/traces", headers=READ, params={"since": since,
                                                                   "limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    return [t for t in body["traces"] if trace_id in (None, t["trace_id"])], int(body["next"])


def wait_traces(base: str, trace_id: str, count: int) -> list[Any]:
    """Poll until ``count`` records of ``trace_id`` are stored (the exporter is synchronous,
    so this normally returns at once)."""
    deadline = time.monotonic() + 20.0
    while True:
        found, _ = traces(base, trace_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def otel(base: str, processor: type, **exporter_args: Any) -> tuple[TracerProvider, Any]:
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter: SpanExporter = OTLPSpanExporter(endpoint=f"{base}/_trimtab/v1/traces",
                                              timeout=10, **exporter_args)
    provider.add_span_processor(processor(exporter))
    return provider, provider.get_tracer("trimtab-test")


def test_sdk_protobuf_exporter_server_span_with_child(agent: str) -> None:
    # SimpleSpanProcessor exports the child first, alone: it waits for its root.
    provider, tracer = otel(agent, SimpleSpanProcessor, headers=WRITE)
    try:
        with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes={
                "http.route": "/orders/{id}", "http.request.method": "GET",
                "http.response.status_code": 200}) as server, \
                tracer.start_as_current_span("db.select", attributes={"db.system": "pg"}):
            time.sleep(0.01)
        assert provider.force_flush()
    finally:
        provider.shutdown()
    trace_id = format(server.get_span_context().trace_id, "032x")
    [record] = wait_traces(agent, trace_id, 1)
    assert (record["route"], record["method"], record["status"], record["instance"],
            record["name"], record["source"], record["cache"]) == (
        "/orders/{id}", "GET", 200, "checkout", "GET /orders/{id}", "otlp", "n/a")
    assert record["span_id"] == format(server.get_span_context().span_id, "016x")
    assert record["parent_id"] is None
    [child] = record["children"]
    assert child["name"] == "db.select" and child["tags"]["db.system"] == "pg"
    assert 10.0 <= child["duration_ms"] <= record["duration_ms"]
    assert record["start"] <= child["start"] and abs(record["start"] - time.time()) < 600


def test_sdk_batch_gzip_error_span_is_500(agent: str) -> None:
    provider, tracer = otel(agent, BatchSpanProcessor, headers=WRITE,
                            compression=Compression.Gzip)
    try:
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER,
                                          attributes={"http.route": "/pay"}) as server:
            with tracer.start_as_current_span("charge"), \
                    tracer.start_as_current_span("card.api", kind=SpanKind.CLIENT):
                pass
            server.set_status(Status(StatusCode.ERROR, "card declined"))
        assert provider.force_flush()
    finally:
        provider.shutdown()
    [record] = wait_traces(agent, format(server.get_span_context().trace_id, "032x"), 1)
    assert (record["route"], record["status"]) == ("/pay", 500)
    assert sorted(c["name"] for c in record["children"]) == ["card.api", "charge"]


def test_sdk_read_only_or_missing_token_is_refused(agent: str) -> None:
    _, before = traces(agent)
    for headers in (READ, {}):
        provider, tracer = otel(agent, SimpleSpanProcessor, headers=headers)
        try:
            with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER):
                pass
        finally:
            provider.shutdown()
    assert traces(agent, since=before)[0] == []
    for path in ("/_trimtab/v1/traces", "/_trimtab/api/v2/spans"):
        assert httpx.post(agent + path, headers={**READ, **JSON}, content=b"[]")\
            .status_code == 403
        assert httpx.post(agent + path, headers=JSON, content=b"[]").status_code == 401


def otlp_doc(spans: list[dict[str, Any]], service: str = "billing") -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": spans}]}]}


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def test_otlp_json_hex_and_base64_ids_string_times(agent: str) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    spans = [
        {"traceId": b64(trace_id), "spanId": b64(ROOT), "name": "GET /users/{id}", "kind": 2,
         "startTimeUnixNano": str(NOW_NS), "endTimeUnixNano": str(NOW_NS + 250_000_000),
         "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}},
                        {"key": "http.status_code", "value": {"intValue": "404"}}]},
        {"traceId": trace_id, "spanId": CHILD, "parentSpanId": ROOT, "name": "cache.get",
         "kind": 1, "startTimeUnixNano": NOW_NS + 1_000_000,
         "endTimeUnixNano": NOW_NS + 3_500_000, "status": {"code": 2},
         "attributes": [{"key": "hit", "value": {"boolValue": False}}]},
        # A second SERVER span in the same trace (another service) is a record of its own.
        {"traceId": trace_id, "spanId": OTHER, "parentSpanId": CHILD, "name": "internal",
         "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": NOW_NS + 2_000_000,
         "endTimeUnixNano": NOW_NS + 3_000_000, "status": {"code": "STATUS_CODE_ERROR"}}]
    r = httpx.post(f"{agent}/_trimtab/v1/traces", headers={**WRITE, **JSON},
                   content=json.dumps(otlp_doc(spans)))
    assert r.status_code == 200, r.text
    assert r.json() == {"partialSuccess": {}} and r.headers["x-trimtab-traces"] == "2"
    first, second = sorted(wait_traces(agent, trace_id, 2), key=lambda t: t["start"])
    assert (first["span_id"], first["route"], first["method"], first["status"],
            first["instance"], first["start"], first["duration_ms"]) == (
        ROOT, "GET /users/{id}", "GET", 404, "billing", NOW_NS / 1e9, 250.0)
    assert first["children"] == [{"span_id": CHILD, "name": "cache.get",
                                  "start": (NOW_NS + 1_000_000) / 1e9, "duration_ms": 2.5,
                                  "tags": {"hit": "false"}}]
    assert (second["span_id"], second["parent_id"], second["status"]) == (OTHER, CHILD, 500)


def test_zipkin_v2_json(agent: str) -> None:
    spans = [
        {"traceId": "463ac35c9f6413ad", "id": ROOT, "name": "get /items", "kind": "SERVER",
         "timestamp": NOW_NS // 1000, "duration": 120_000,
         "localEndpoint": {"serviceName": "catalog"},
         "tags": {"http.route": "/items", "http.method": "GET", "http.status_code": "503"}},
        {"traceId": "463ac35c9f6413ad", "id": CHILD, "parentId": ROOT, "name": "select",
         "kind": "CLIENT", "timestamp": NOW_NS // 1000 + 500, "duration": 80_000,
         "localEndpoint": {"serviceName": "catalog"}, "tags": {"sql.rows": "3"}}]
    r = httpx.post(f"{agent}/_trimtab/api/v2/spans", headers={**WRITE, **JSON},
                   content=json.dumps(spans))
    assert r.status_code == 202 and r.headers["x-trimtab-spans"] == "2"
    [record] = wait_traces(agent, "0000000000000000463ac35c9f6413ad", 1)
    assert (record["route"], record["method"], record["status"], record["instance"],
            record["source"], record["duration_ms"]) == (
        "/items", "GET", 503, "catalog", "zipkin", 120.0)
    assert [(c["name"], c["duration_ms"], c["tags"]) for c in record["children"]] == [
        ("select", 80.0, {"sql.rows": "3"})]


def _span(trace_id: str = T1, span_id: str = ROOT, **extra: Any) -> dict[str, Any]:
    return {"traceId": trace_id, "spanId": span_id, "name": "s", "kind": 2,
            "startTimeUnixNano": NOW_NS, "endTimeUnixNano": NOW_NS + 1000, **extra}


def _zip(**extra: Any) -> dict[str, Any]:
    return {"traceId": T1, "id": ROOT, "name": "s", "timestamp": 1, "duration": 1, **extra}


def _drop(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


OTLP, ZIPKIN = "/_trimtab/v1/traces", "/_trimtab/api/v2/spans"
ORPHAN = _span(span_id=CHILD, parentSpanId="1111111111111111", kind=1)
MALFORMED = [
    (OTLP, JSON, b"{not json", 400, "body is not valid JSON"),
    (OTLP, JSON, b"[]", 400, "resourceSpans list"),
    (OTLP, JSON, otlp_doc([ORPHAN, _drop(_span(), "traceId")]), 400,
     "resourceSpans[0].scopeSpans[0].spans[1].traceId: missing"),
    (OTLP, JSON, otlp_doc([ORPHAN, _span(span_id="abc")]), 400, "spans[1].spanId: must be 16"),
    (OTLP, JSON, otlp_doc([ORPHAN, _span(trace_id="0" * 32)]), 400, "all-zero"),
    (OTLP, JSON, otlp_doc([ORPHAN, _span(endTimeUnixNano=5)]), 400, "before start"),
    (OTLP, JSON, otlp_doc([ORPHAN, _span(startTimeUnixNano="soon")]), 400,
     "spans[1].startTimeUnixNano"),
    (OTLP, JSON, otlp_doc([ORPHAN, _span(), _span()]), 400, "appears twice"),
    (OTLP, JSON, otlp_doc([ORPHAN, _span(span_id=OTHER, parentSpanId=ROOT, kind=1),
                           _span(span_id=ROOT, parentSpanId=OTHER, kind=1)]), 400, "cycle"),
    (OTLP, {"content-type": "text/plain"}, b"{}", 415, "application/x-protobuf"),
    (OTLP, {}, b"{}", 415, "(none)"),
    (OTLP, {"content-type": "application/x-protobuf"}, b"\x0a\xff\xff\x03", 400, "resourceSpans"),
    (OTLP, {**JSON, "content-encoding": "br"}, b"{}", 415, "Content-Encoding"),
    (OTLP, {**JSON, "content-encoding": "gzip"}, b"not gzip", 400, "decompress"),
    (OTLP, JSON, b" " * (MAX_BODY + 1), 413, "body over"),
    (OTLP, {**JSON, "content-encoding": "gzip"}, gzip.compress(b" " * (MAX_BODY + 1)), 413,
     "decompressed body over"),
    (ZIPKIN, JSON, {"spans": []}, 400, "JSON array"),
    (ZIPKIN, JSON, [_drop(_zip(), "id")], 400, "[0].id: missing"),
    (ZIPKIN, JSON, [_zip(id=CHILD, parentId="1111111111111111"), _zip(traceId="xyz")], 400,
     "[1].traceId: must be 16 or 32 hex digits"),
    (ZIPKIN, JSON, [_drop(_zip(), "timestamp")], 400, "[0].timestamp"),
    (ZIPKIN, JSON, [_zip(tags={"a": {"b": 1}})], 400, "[0].tags"),
    (ZIPKIN, {"content-type": "application/x-protobuf"}, b"", 415, "application/json"),
]


@pytest.mark.parametrize(("path", "headers", "body", "status", "reason"), MALFORMED,
                         ids=[f"{i}-{m[4][:24]}" for i, m in enumerate(MALFORMED)])
def test_malformed_payload_refused_and_nothing_ingested(
        agent: str, path: str, headers: dict[str, str], body: Any, status: int,
        reason: str) -> None:
    _, before = traces(agent)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(agent + path, headers={**WRITE, **headers}, content=content)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and reason in r.json()["message"], r.json()
    assert traces(agent, since=before)[0] == []
    # The valid orphan in a refused batch was not held either: its parent arrives alone.
    parent = _span(trace_id=T1, span_id="1111111111111111")
    ok = httpx.post(agent + OTLP, headers={**WRITE, **JSON},
                    content=json.dumps(otlp_doc([parent])))
    assert ok.status_code == 200, ok.text
    [record] = traces(agent, T1, since=before)[0]
    assert record["children"] == []


def test_protobuf_decoder_skips_fields_it_does_not_use() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc"
    span = rs.scope_spans.add().spans.add(
        trace_id=bytes.fromhex(T1), span_id=bytes.fromhex(ROOT), name="GET /a", kind=2,
        start_time_unix_nano=NOW_NS, end_time_unix_nano=NOW_NS + 5, flags=0x301,
        trace_state="k=v")
    span.events.add(name="exception", time_unix_nano=NOW_NS)
    span.links.add(trace_id=bytes(16), span_id=bytes(8))
    span.attributes.add(key="neg").value.int_value = -7
    span.attributes.add(key="ratio").value.double_value = 0.5
    span.attributes.add(key="list").value.array_value.values.add(string_value="x")
    span.status.code = 2
    doc = decode_export_request(req.SerializeToString())
    [parsed] = parse_otlp(doc)
    assert (parsed.trace_id, parsed.span_id, parsed.parent_id, parsed.service, parsed.server,
            parsed.error, parsed.tags) == (T1, ROOT, None, "svc", True, True,
                                           {"neg": "-7", "ratio": "0.5"})
    with pytest.raises(ValueError, match="runs past the end"):
        decode_export_request(req.SerializeToString()[:-3])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _zspan(span_id: str, parent: str | None, kind: str | None = None) -> dict[str, Any]:
    return {"traceId": T1, "id": span_id, "parentId": parent, "name": f"n{span_id[-1]}",
            "kind": kind, "timestamp": 1_000_000, "duration": 10}


def test_held_orphans_become_records_after_hold() -> None:
    tracer, clock = Tracer("own"), FakeClock()
    intake = TraceIntake(tracer, hold=5.0, clock=clock)
    # Grandchild, then child (whose parent never comes): held, not stored.
    assert intake.add(parse_zipkin([_zspan("000000000000000c", "000000000000000b")])) == 0
    clock.now += 3.0
    assert intake.add(parse_zipkin([_zspan("000000000000000b", "000000000000000a")])) == 0
    assert intake.held == 2 and tracer.query()["traces"] == []
    clock.now += 2.5  # the grandchild expired, but the top of its chain has not
    assert intake.add([]) == 0
    clock.now += 3.0
    assert intake.add([]) == 1 and intake.held == 0
    [record] = tracer.query()["traces"]
    assert record["span_id"] == "000000000000000b" and record["parent_id"] == "000000000000000a"
    assert [c["span_id"] for c in record["children"]] == ["000000000000000c"]


def test_held_spans_are_bounded() -> None:
    intake = TraceIntake(Tracer("own"), max_held=2, clock=FakeClock())
    intake.add(parse_zipkin([_zspan(f"00000000000000a{i}", "1111111111111111")
                             for i in range(5)]))
    assert (intake.held, intake.evicted) == (2, 3)


def test_expiry_timer_stores_orphans_without_another_batch() -> None:
    tracer = Tracer("own")

    async def main() -> list[Any]:
        intake = TraceIntake(tracer, hold=0.2)
        intake.add(parse_zipkin([_zspan("000000000000000c", "000000000000000b")]))
        deadline = time.monotonic() + 10.0
        while not tracer.query()["traces"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return tracer.query()["traces"]

    [record] = asyncio.run(main())
    assert record["span_id"] == "000000000000000c" and record["source"] == "zipkin"


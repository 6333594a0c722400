"""A small protobuf decoder for OTLP trace export requests (``application/x-protobuf``).

API::

    doc = decode_export_request(body)   # bytes -> dict shaped like OTLP/JSON
    # {"resourceSpans": [{"resource": {"attributes": [...]},
    #                     "scopeSpans": [{"spans": [{"traceId": hex, "spanId": hex, ...}]}]}]}

Why by hand: the agent runs beside every API instance, and ``opentelemetry-proto``
pulls in the protobuf runtime (a C extension, several MB) for the dozen fields
the trace views use. Only those fields are read; every other field is skipped by
its wire type, so newer OTLP versions still decode. Ids come out as lowercase hex
and times as integers, so :mod:`.trace_intake` maps both encodings with one path.

Raises :class:`ValueError` naming the message and field that is malformed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
Field = tuple[int, int, Any]  # (number, wire type, int value or bytes)


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError(f"{where}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError(f"{where}: varint longer than 10 bytes")


def _fields(buf: bytes, where: str) -> Iterator[Field]:
    """Yield the fields of one message; length-delimited values as bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if number == 0:
            raise ValueError(f"{where}: field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, where)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if pos + size > end:
                raise ValueError(f"{where}: truncated fixed-width field {number}")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == _LEN:
            size, pos = _varint(buf, pos, where)
            if pos + size > end:
                raise ValueError(f"{where}: field {number} runs past the end of the message")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"{where}: unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _want(wire: int, expected: int, where: str) -> None:
    if wire != expected:
        raise ValueError(f"{where}: wrong wire type {wire}, expected {expected}")


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8") from None


def _any_value(buf: bytes, where: str) -> dict[str, Any]:
    """AnyValue: scalars only; arrays, maps and bytes are skipped (tags are strings)."""
    for number, wire, value in _fields(buf, where):
        if number == 1 and wire == _LEN:
            return {"stringValue": _text(value, where)}
        if number == 2 and wire == _VARINT:
            return {"boolValue": bool(value)}
        if number == 3 and wire == _VARINT:
            # int64 is two's complement in a 64-bit varint.
            return {"intValue": value - (1 << 64) if value >= 1 << 63 else value}
        if number == 4 and wire == _I64:
            return {"doubleValue": struct.unpack("<d", value)[0]}
    return {}


def _attributes(raw: list[bytes], where: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(raw):
        key, val = "", {}
        for number, wire, value in _fields(item, f"{where}[{i}]"):
            if number == 1:
                _want(wire, _LEN, f"{where}[{i}].key")
                key = _text(value, f"{where}[{i}].key")
            elif number == 2:
                _want(wire, _LEN, f"{where}[{i}].value")
                val = _any_value(value, f"{where}[{i}].value")
        out.append({"key": key, "value": val})
    return out


def _span(buf: bytes, where: str) -> dict[str, Any]:
    span: dict[str, Any] = {}
    attrs: list[bytes] = []
    ids = {1: "traceId", 2: "spanId", 4: "parentSpanId"}
    for number, wire, value in _fields(buf, where):
        if number in ids:
            _want(wire, _LEN, f"{where}.{ids[number]}")
            span[ids[number]] = value.hex()
        elif number == 5:
            _want(wire, _LEN, f"{where}.name")
            span["name"] = _text(value, f"{where}.name")
        elif number == 6:
            _want(wire, _VARINT, f"{where}.kind")
            span["kind"] = value
        elif number in (7, 8):
            name = "startTimeUnixNano" if number == 7 else "endTimeUnixNano"
            _want(wire, _I64, f"{where}.{name}")
            span[name] = struct.unpack("<Q", value)[0]
        elif number == 9:
            _want(wire, _LEN, f"{where}.attributes")
            attrs.append(value)
        elif number == 15:
            _want(wire, _LEN, f"{where}.status")
            code = 0
            for n, w, v in _fields(value, f"{where}.status"):
                if n == 3 and w == _VARINT:
                    code = v
            span["status"] = {"code": code}
    span["attributes"] = _attributes(attrs, f"{where}.attributes")
    return span


def _repeated(buf: bytes, number: int, where: str) -> list[bytes]:
    out = []
    for n, wire, value in _fields(buf, where):
        if n == number:
            _want(wire, _LEN, where)
            out.append(value)
    return out


def decode_export_request(body: bytes) -> dict[str, Any]:
    """Decode an ``ExportTraceServiceRequest`` into the OTLP/JSON shape (ids as hex)."""
    resource_spans = []
    for i, rs in enumerate(_repeated(body, 1, "resourceSpans")):
        where = f"resourceSpans[{i}]"
        resource: dict[str, Any] = {"attributes": []}
        scopes: list[dict[str, Any]] = []
        for number, wire, value in _fields(rs, where):
            if number == 1:
                _want(wire, _LEN, f"{where}.resource")
                resource["attributes"] = _attributes(
                    _repeated(value, 1, f"{where}.resource"), f"{where}.resource.attributes")
            elif number == 2:
                _want(wire, _LEN, f"{where}.scopeSpans")
                w = f"{where}.scopeSpans[{len(scopes)}]"
                spans = [_span(s, f"{w}.spans[{k}]")
                         for k, s in enumerate(_repeated(value, 2, w))]
                scopes.append({"spans": spans})
        resource_spans.append({"resource": resource, "scopeSpans": scopes})
    return {"resourceSpans": resource_spans}

"""Response size over a real uvicorn: the histogram's sum equals the body bytes the client
received on the wire (compressed, streamed, HEAD with none), request by request."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import uvicorn_server

NAME = "trimtab_http_response_size_bytes"


def _sizes(text: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(route, method) -> (sum, count) of the size histogram."""
    out: dict[tuple[str, str], list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != NAME:
            continue
        for s in family.samples:
            key = (s.labels["route"], s.labels["method"])
            if s.name == f"{NAME}_sum":
                out.setdefault(key, [0.0, 0.0])[0] = s.value
            elif s.name == f"{NAME}_count":
                out.setdefault(key, [0.0, 0.0])[1] = s.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def test_sum_equals_the_bytes_received(tmp_path: Path) -> None:
    wire: dict[tuple[str, str], list[int]] = {}
    with uvicorn_server("tests.agent.test_response_size:uvicorn_factory",
                        tmp_path / "uvicorn.log", factory=True) as base, \
            httpx.Client(base_url=base, timeout=10.0) as client:
        calls = [("GET", "/text", "gzip"), ("GET", "/text", "identity"),
                 ("GET", "/stream", "identity"), ("GET", "/stream", "gzip"),
                 ("HEAD", "/items?limit=50", "identity"), ("GET", "/items?limit=50", "identity"),
                 ("GET", "/empty", "identity")]
        for method, path, encoding in calls:
            with client.stream(method, path, headers={"accept-encoding": encoding}) as r:
                received = sum(len(chunk) for chunk in r.iter_raw())  # before any decoding
                assert r.status_code in (200, 204)
            route = path.split("?")[0]
            wire.setdefault((route, method), []).append(received)
        sizes = _sizes(client.get("/metrics").text)
    assert sum(wire[("/text", "GET")]) < 50_000 + 1000  # one of the two was compressed
    assert wire[("/items", "HEAD")] == [0]
    for key, got in wire.items():
        assert sizes[key] == (sum(got), len(got)), key

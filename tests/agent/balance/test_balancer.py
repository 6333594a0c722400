"""The built-in balancer as a real uvicorn process in front of real uvicorn backends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.demo.fleet import spawn_demo

from tests.agent.balance.test_haproxy import backends, send  # noqa: F401 - module-scoped fixture
from tests.support import wait_for

TOKENS = "admin:write:w-secret-1,viewer:read:r-secret-1"
WRITE = {"authorization": "Bearer w-secret-1"}
READ = {"authorization": "Bearer r-secret-1"}
Starter = Callable[..., str]


@pytest.fixture
def start_balancer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Starter]:
    """Starts ``balancer.main`` in uvicorn subprocesses; all stopped at teardown."""
    monkeypatch.setenv("TRIMTAB_TOKENS", TOKENS)
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = free_port()
        code = "import sys; from trimtab.agent.balance.proxy import main; main(sys.argv[1:])"
        proc = subprocess.Popen([sys.executable, "-c", code, "--port", str(port), *args],
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_trimtab/metrics", proc)
        return url

    try:
        yield start
    finally:
        stop_all(procs)


def control(url: str, changes: dict[str, Any], **extra: Any) -> httpx.Response:
    """PATCH the balancer with the current version."""
    tag = httpx.get(f"{url}/_trimtab/balancer", headers=READ).headers["etag"]
    return httpx.patch(f"{url}/_trimtab/balancer", headers={**WRITE, "if-match": tag},
                       json={"servers": changes, "reason": "test", **extra})


def metric(url: str, name: str, **labels: str) -> float:
    """One sample from the balancer's exposition, found by name and labels (order-free)."""
    text = httpx.get(f"{url}/_trimtab/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise LookupError(f"{name}{labels} not exported")


def test_three_to_one_split_and_per_server_metrics(
        start_balancer: Starter, backends: dict[str, str]) -> None:  # noqa: F811
    url = start_balancer(*(f"{k}={v}" for k, v in backends.items()))
    assert control(url, {"s1": {"weight": 3}}).status_code == 200
    counts = send(url, 2000)
    assert sum(counts.values()) == 2000
    assert 0.70 <= counts["s1"] / 2000 <= 0.80, counts
    # The metric names the cockpit reads, scraped without a token.
    assert metric(url, "trimtab_balancer_expected_share", server="s1") == 0.75
    assert metric(url, "trimtab_balancer_server_weight", server="s1") == 3
    assert metric(url, "trimtab_balancer_requests_total", server="s1") == counts["s1"]
    assert metric(url, "trimtab_balancer_in_flight", server="s2") == 0
    assert metric(url, "trimtab_balancer_errors_total", server="s2") == 0
    assert metric(url, "trimtab_balancer_upstream_request_duration_seconds_count",
                  server="s2", method="GET") == counts["s2"]
    doc = httpx.get(f"{url}/_trimtab/balancer", headers=READ).json()
    share = {s["name"]: (s["expected_share"], s["observed_share"]) for s in doc["servers"]}
    assert share["s1"][0] == 0.75 and 0.70 <= share["s1"][1] <= 0.80


def test_drain_stops_new_traffic_and_ready_brings_it_back(
        start_balancer: Starter, backends: dict[str, str]) -> None:  # noqa: F811
    url = start_balancer(*(f"{k}={v}" for k, v in backends.items()))
    assert control(url, {"s2": {"state": "drain"}}).status_code == 200
    assert send(url, 100) == {"s1": 100}
    assert control(url, {"s2": {"state": "ready"}}).status_code == 200
    assert send(url, 100) == {"s1": 50, "s2": 50}
    assert control(url, {"s1": {"state": "maint"}}).status_code == 200
    assert send(url, 20) == {"s2": 20}


def test_health_checks_take_a_dead_server_out_and_back(
        start_balancer: Starter, backends: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    extra = [spawn_demo(["instance", "--name", "s3", "--port", str(port), "--slowness", "0"])]
    try:
        s3 = f"http://127.0.0.1:{port}"
        wait_http(f"{s3}/metrics", extra[0])
        url = start_balancer("--health-path", "/metrics", "--health-interval", "0.2",
                             f"s1={backends['s1']}", f"s3={s3}")
        stop_all(extra)
        wait_for(lambda: up(url)["s3"] is False)
        assert send(url, 40) == {"s1": 40}
        assert metric(url, "trimtab_balancer_server_up", server="s3") == 0
        extra.append(spawn_demo(["instance", "--name", "s3", "--port", str(port), "--slowness", "0"]))
        wait_for(lambda: up(url)["s3"] is True)
        assert send(url, 40) == {"s1": 20, "s3": 20}
    finally:
        stop_all(extra)


def test_dead_upstream_without_checks_counts_errors(
        start_balancer: Starter, backends: dict[str, str]) -> None:  # noqa: F811
    url = start_balancer(f"s1={backends['s1']}", f"dead=http://127.0.0.1:{free_port()}")
    statuses = [httpx.get(f"{url}/search?q=x").status_code for _ in range(10)]
    assert sorted(statuses) == [200] * 5 + [502] * 5
    assert metric(url, "trimtab_balancer_errors_total", server="dead") == 5
    huge = httpx.post(f"{url}/orders", content=b"x" * (17 * 1024 * 1024))
    assert huge.status_code == 413


def test_iphash_keeps_one_client_on_one_server(
        start_balancer: Starter, backends: dict[str, str]) -> None:  # noqa: F811
    url = start_balancer("--policy", "iphash", *(f"{k}={v}" for k, v in backends.items()))
    counts = send(url, 60)
    assert len(counts) == 1 and sum(counts.values()) == 60
    assert httpx.get(f"{url}/_trimtab/balancer", headers=READ).json()["policy"] == "iphash"


def test_traceparent_is_propagated_with_one_span_per_request(start_balancer: Starter) -> None:
    seen: list[str] = []
    with echo_server(seen) as upstream:
        url = start_balancer(f"echo={upstream}")
        incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        assert httpx.get(f"{url}/x/42", headers={"traceparent": incoming}).status_code == 200
        assert httpx.get(f"{url}/y", headers={"traceparent": "garbage"}).status_code == 200
    version, trace_id, span_id, flags = seen[0].split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert span_id != "00f067aa0ba902b7"
    fresh = seen[1].split("-")
    assert len(fresh[1]) == 32 and fresh[1] != trace_id  # a malformed header starts a new trace
    assert httpx.get(f"{url}/_trimtab/traces").status_code == 401
    assert httpx.get(f"{url}/_trimtab/traces?limit=0", headers=READ).status_code == 400
    traces = httpx.get(f"{url}/_trimtab/traces", headers=READ).json()["traces"]
    assert [(t["trace_id"], t["span_id"], t["parent_id"], t["route"]) for t in traces] == [
        (trace_id, span_id, "00f067aa0ba902b7", "/x/{id}"), (fresh[1], fresh[2], None, "/y")]
    assert traces[0]["instance"] == "balancer" and traces[0]["status"] == 200
    assert traces[0]["children"][0]["tags"]["server"] == "echo"


def test_reserved_prefix_is_never_proxied_to_a_backend(start_balancer: Starter) -> None:
    """A back-end's control API (config, journal, health) must not be reachable via the balancer."""
    seen: list[str] = []
    with echo_server(seen) as upstream:
        url = start_balancer(f"echo={upstream}")
        for path in ("/_trimtab/config", "/_trimtab/journal", "/_trimtab/health",
                     '/_trimtab/x"y'):
            reply = httpx.get(f"{url}{path}", headers=WRITE)
            assert reply.status_code == 404, path
            assert "not a balancer endpoint" in reply.json()["message"]
        assert seen == []  # nothing reached the back-end
        assert httpx.get(f"{url}/plain").status_code == 200 and len(seen) == 1


class echo_server:
    """A raw asyncio HTTP/1.1 server in a thread that records each request's traceparent."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("traceparent:"):
                    self.seen.append(line.split(":", 1)[1].strip())
            body = json.dumps({"instance": "echo"}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    def __enter__(self) -> str:
        self.thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(5)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def up(url: str) -> dict[str, bool]:
    doc = httpx.get(f"{url}/_trimtab/balancer", headers=READ).json()
    return {s["name"]: s["up"] for s in doc["servers"]}

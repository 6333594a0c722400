"""A Prometheus source that answers 404 is retried with backoff, not every interval (issue 20.12).

A real HTTP server answers 404 to everything and notes when each poll arrives. Waits can
only grow under load, so the test asserts lower bounds on the gaps: 1, 1, 2, 4 intervals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from trimtab.collectors.prometheus.source import PromCollector, PromSource
from trimtab.collectors.scrape import ScrapeResult

from tests.support import wait_for


class _NotFound(BaseHTTPRequestHandler):
    arrivals: list[float] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/api/v1/targets"):
            type(self).arrivals.append(time.monotonic())
        body = b"<html><body>404 page not found</body></html>"
        self.send_response(404)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_found() -> Iterator[tuple[str, list[float]]]:
    handler = type("Handler", (_NotFound,), {"arrivals": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.arrivals
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_404_prometheus_is_polled_with_growing_gaps(not_found: tuple[str, list[float]]) -> None:
    url, arrivals = not_found
    interval = 0.1
    rows: list[ScrapeResult] = []
    collector = PromCollector(PromSource(url, name="prom", interval=interval, timeout=2.0),
                              rows.append).start()
    try:
        wait_for(lambda: len(arrivals) >= 5, timeout=60, what="five polls")
    finally:
        collector.stop()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # failures 1, 2, 3, 4 → waits of 1, 2, 4, 8 intervals (limits.backoff_delay)
    assert gaps[1] >= 1.8 * interval and gaps[2] >= 3.6 * interval, gaps
    assert gaps[3] >= 7.2 * interval, gaps
    down = [r for r in rows if r.target.name == "prom"]
    assert down and not any(r.up for r in down)
    assert all("HTTP 404" in r.error and "<html>" not in r.error for r in down), down[-1].error
    # the row says when the next try is (the Fleet page shows "retrying in N s")
    assert down[-1].next_attempt > down[-1].timestamp

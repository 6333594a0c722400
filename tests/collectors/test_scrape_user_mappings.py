"""User mapping tables reach targets the engine scrapes directly (not only Prometheus sources)."""

from __future__ import annotations

import http.server
import threading
import time
import tomllib
from collections.abc import Iterator

import pytest
from trimtab.collectors.mappings import builtin_tables, load_tables, merge
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget

EXPOSITION = b"""# TYPE shop_hits_total counter
shop_hits_total{path="/cart",verb="GET",code="200"} 7
"""

USER_TABLE = """
[[mapping]]
source = "shop"
detect = ["shop_hits_total"]

[[mapping.metric]]
from = "shop_hits_total"
to = "trimtab_http_requests_total"
labels = { route = "{path}", method = "{verb}", status = "{code}" }
"""


@pytest.fixture
def shop_url() -> Iterator[str]:
    """A real HTTP server on a loopback port serving a home-grown instrumentation."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(EXPOSITION)))
            self.end_headers()
            self.wfile.write(EXPOSITION)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def _first_ok(url: str, mappings: object) -> ScrapeResult:
    results: list[ScrapeResult] = []
    engine = ScrapeEngine([ScrapeTarget("shop", url)], results.append,
                          mappings=mappings).start()
    try:
        deadline = time.monotonic() + 20
        while not any(r.up for r in results) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.stop()
    ok = [r for r in results if r.up]
    assert ok, [r.error for r in results]
    return ok[0]


def test_builtin_tables_leave_a_home_grown_name_alone(shop_url: str) -> None:
    result = _first_ok(shop_url, None)
    assert result.exposition is not None
    assert {s.name for s in result.exposition.samples} == {"shop_hits_total"}


def test_a_user_table_maps_it_to_trimtab_names(shop_url: str) -> None:
    tables = merge(builtin_tables(), load_tables(tomllib.loads(USER_TABLE), "mappings.toml"))
    result = _first_ok(shop_url, tables)
    assert result.exposition is not None
    mapped = [s for s in result.exposition.samples if s.name == "trimtab_http_requests_total"]
    assert [(dict(s.labels), s.value) for s in mapped] == [
        ({"route": "/cart", "method": "GET", "status": "200"}, 7.0)]

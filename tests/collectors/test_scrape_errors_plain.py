"""A failed scrape reads as one line of plain words (issue 20 item 12), on real sockets.

A dead port says "connection refused" (httpx says "All connection attempts failed"), a
web page says which HTTP status it gave and that it is no /metrics endpoint instead of
dumping its HTML, an unknown host says "DNS failure", a plain-HTTP port spoken to in TLS
says "TLS error".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from trimtab.agent.procs import free_port
from trimtab.collectors.errors import plain_error
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget

PAGE = b"<!DOCTYPE html>\n<html><head><title>Not here</title></head>\n<body><h1>404</h1>" \
       + b"<p>" + b"lorem ipsum " * 200 + b"</p></body></html>\n"


class _HtmlHandler(BaseHTTPRequestHandler):
    """/missing: an HTML 404 page; /page: an HTML 200 page; /json404: a JSON 404."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, kind, body = {
            "/page": (200, "text/html; charset=utf-8", PAGE),
            "/json404": (404, "application/json", b'{"detail": "Not Found"}'),
        }.get(self.path, (404, "text/html; charset=utf-8", PAGE))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _scrape(url: str, timeout: float = 4.0) -> ScrapeResult:
    async def run() -> ScrapeResult:
        engine = ScrapeEngine([], lambda _r: None)
        async with httpx.AsyncClient() as client:
            return await engine.scrape_once(client, ScrapeTarget("t", url, timeout=timeout,
                                                                 interval=timeout + 1))
    return asyncio.run(run())


def test_dead_port_reads_connection_refused() -> None:
    result = _scrape(f"http://127.0.0.1:{free_port()}/metrics")
    assert not result.up
    assert result.error == "connection refused"


def test_html_404_is_one_line_naming_the_status_and_the_page_type(html_server: str) -> None:
    result = _scrape(f"{html_server}/missing")
    assert result.error == ("HTTP 404 Not Found — not a Prometheus /metrics endpoint "
                            "(got text/html)")


def test_html_200_page_is_not_parsed_as_metrics(html_server: str) -> None:
    result = _scrape(f"{html_server}/page")
    assert not result.up
    assert result.error == "HTTP 200 OK — not a Prometheus /metrics endpoint (got text/html)"


def test_non_html_404_names_the_status(html_server: str) -> None:
    result = _scrape(f"{html_server}/json404")
    assert result.error == "HTTP 404 Not Found"


def test_unknown_host_reads_dns_failure() -> None:
    result = _scrape("http://no-such-host.invalid/metrics")
    assert result.error == "DNS failure: no-such-host.invalid"


def test_tls_to_a_plain_http_port_reads_tls_error(html_server: str) -> None:
    result = _scrape(html_server.replace("http://", "https://") + "/metrics")
    assert result.error.startswith("TLS error"), result.error
    assert "\n" not in result.error


def test_plain_error_of_a_timeout_and_of_something_else() -> None:
    assert plain_error(httpx.ReadTimeout("The read operation timed out")) == "timed out"
    assert plain_error(ValueError("bad\nthing")) == "bad thing"


def test_trace_and_config_polls_of_a_dead_agent_read_connection_refused() -> None:
    """The agent's /_trimtab/ polls (traces, config) use the same plain words."""
    import threading as th

    from tests.support import wait_for

    errors: dict[str, str] = {}
    lock = th.Lock()

    def note(kind: str) -> object:
        def record(_name: str, _items: object, error: str) -> None:
            with lock:
                errors.setdefault(kind, error)
        return record

    target = ScrapeTarget("dead", f"http://127.0.0.1:{free_port()}/metrics", token="t")
    engine = ScrapeEngine([target], lambda _r: None, on_traces=note("traces"),
                          on_config=note("config"), traces_interval=0.1).start()
    try:
        wait_for(lambda: len(errors) == 2, timeout=30, what="both polls to fail")
    finally:
        engine.stop()
    assert errors == {"traces": "connection refused", "config": "connection refused"}

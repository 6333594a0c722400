"""The scrape hot path's own HTTP/1.1 GET (collectors.http1) against real sockets.

Each test serves scripted answers from an asyncio server on a loopback port chosen at run
time: the body framings servers use (Content-Length, chunked with extensions and trailers,
HTTP/1.0 closed at the end), kept-alive reuse and a server that closes an idle connection,
and the bad answers first: cut bodies, bad chunk sizes, a non-HTTP reply, oversized headers
and bodies, HTML error pages, a dead port.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

import httpx
import pytest
from trimtab.collectors import http1
from trimtab.collectors.errors import plain_error
from trimtab.collectors.limits import LimitExceeded
from trimtab.collectors.scrape import HEADERS

BODY = b"# TYPE up gauge\nup 1\n"
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Answers each request with the next of ``answers`` (an answer returns False to close)."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                self.requests.append(head)
                if not await self.answers.pop(0)(reader, writer):
                    return
                await writer.drain()
        finally:
            writer.close()

    def request(self, path: str = "/metrics") -> http1.Request:
        return http1.Request(f"http://127.0.0.1:{self.port}{path}", HEADERS)


def raw(data: bytes, keep: bool = True) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        return keep
    return answer


def sized(body: bytes = BODY, extra: str = "") -> Answer:
    return raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
               + extra.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def get(server: Server, scraper: http1.Http1Scraper | None = None, limit: int = 1 << 20,
              path: str = "/metrics") -> tuple[bytes, str]:
    scraper = scraper or http1.Http1Scraper()
    return await asyncio.wait_for(scraper.get("t", server.request(path), limit,
                                              "body_size_limit"), 5)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


@pytest.mark.parametrize(("answer", "error"), [
    (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nup 1\n", keep=False),
     "closed the connection 95 bytes before the end"),
    (raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nup 1\n", keep=False),
     "incomplete chunked read"),
    (raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nup 1\n\r\n0\r\n\r\n"),
     "bad chunk size"),
    (raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nup 1\nXX0\r\n\r\n"),
     "does not end with CRLF"),
    (raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), "not an HTTP/1.x answer"),
    (raw(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"), "bad Content-Length"),
    (raw(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"), "malformed header line"),
    (raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", keep=False),
     "larger than 64 KiB"),
    (raw(b"HTTP/1.1 200 OK\r\nContent-Le", keep=False), "mid-headers"),
])
def test_a_bad_or_cut_answer_is_a_clear_protocol_error(answer: Answer, error: str) -> None:
    async def test() -> None:
        async with Server([answer]) as server:
            with pytest.raises(httpx.RemoteProtocolError, match=error):
                await get(server)
    run(test)


def test_an_error_page_a_404_and_a_dead_port_read_as_the_engine_reports_them() -> None:
    async def test() -> None:
        page = b"<html>oops</html>"
        async with Server([raw(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(page) + page),
                           raw(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")]
                          ) as server:
            with pytest.raises(ValueError, match="^HTTP 404 Not Found — not a Prometheus"):
                await get(server)
            with pytest.raises(ValueError, match="^HTTP 503 Service Unavailable$"):
                await get(server)
            port = server.port
        with pytest.raises(httpx.ConnectError) as refused:
            await get(_dead(port))
        assert plain_error(refused.value) == "connection refused"
    run(test)


def _dead(port: int) -> Server:
    server = Server([])
    server.port = port  # closed by the block above: nothing listens there now
    return server


def test_bodies_over_the_limit_are_refused_by_length_and_while_chunks_arrive() -> None:
    async def test() -> None:
        big = b"x" * 5000
        chunked = b"".join(b"%x\r\n" % 1000 + big[:1000] + b"\r\n" for _ in range(5))
        async with Server([sized(big),
                           raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + chunked + b"0\r\n\r\n")]) as server:
            with pytest.raises(LimitExceeded, match="body_size_limit exceeded: 5,000 bytes"):
                await get(server, limit=4096)
            with pytest.raises(LimitExceeded, match="body_size_limit exceeded"):
                await get(server, limit=4096)
    run(test)


def test_each_framing_gives_the_same_body_and_gzip_is_left_to_read_body() -> None:
    async def test() -> None:
        chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\n4;name=value\r\n# TY\r\n" + b"%x\r\n" % (len(BODY) - 4) + BODY[4:]
                   + b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
        packed = gzip.compress(BODY)
        async with Server([sized(), raw(chunked), sized(packed, "Content-Encoding: gzip\r\n"),
                           raw(b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 200 OK\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY),
                           raw(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY,
                               keep=False)]) as server:
            scraper = http1.Http1Scraper()
            assert await get(server, scraper) == (BODY, "text/plain; version=0.0.4")
            assert await get(server, scraper) == (BODY, "text/plain")
            assert await get(server, scraper) == (BODY, "text/plain; version=0.0.4")
            assert await get(server, scraper) == (BODY, "text/plain")  # none sent: the default
            assert await get(server, scraper) == (BODY, "text/plain")  # HTTP/1.0, ends at close
            assert server.connections == 1  # kept alive through all of them
            first = server.requests[0].decode()
            assert first.startswith("GET /metrics HTTP/1.1\r\n")
            assert f"Host: 127.0.0.1:{server.port}\r\n" in first
            assert "accept-encoding: gzip" in first and "application/openmetrics-text" in first
            assert "user-agent: trimtab\r\n" in first
    run(test)


def test_a_connection_the_server_closed_while_idle_is_replaced_once() -> None:
    async def test() -> None:
        async with Server([sized(extra="Connection: keep-alive\r\n"), raw(b"", keep=False),
                           sized()]) as server:
            scraper = http1.Http1Scraper()
            await get(server, scraper)
            # The server reads the next request and closes without a byte (an idle timeout
            # racing the request): the scrape goes out again on a new connection.
            assert await get(server, scraper) == (BODY, "text/plain; version=0.0.4")
            assert server.connections == 2
    run(test)


def test_connection_close_and_a_failed_scrape_leave_no_connection_behind() -> None:
    async def test() -> None:
        async with Server([sized(extra="Connection: close\r\n"), sized(),
                           raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nup", keep=True),
                           sized()]) as server:
            scraper = http1.Http1Scraper()
            await get(server, scraper)
            await get(server, scraper)
            assert server.connections == 2  # "Connection: close" was honoured
            with pytest.raises(TimeoutError):  # a body that never ends: the caller's timeout
                await asyncio.wait_for(scraper.get("t", server.request(), 1 << 20, "limit"), 0.3)
            assert await get(server, scraper) == (BODY, "text/plain; version=0.0.4")
            assert server.connections == 3  # the half-read one was closed, not reused
            scraper.close_all()
    run(test)


@pytest.mark.parametrize(("url", "env", "plain"), [
    ("http://127.0.0.1:9100/metrics", {}, True),
    ("https://127.0.0.1:9100/metrics", {}, False),
    ("http://user:secret@127.0.0.1:9100/metrics", {}, False),
    ("http://api.internal:9100/metrics", {"HTTP_PROXY": "http://proxy:3128"}, False),
    ("http://api.internal:9100/metrics", {"HTTP_PROXY": "http://proxy:3128",
                                          "NO_PROXY": "api.internal"}, True),
])
def test_only_plain_http_without_credentials_or_a_proxy_takes_this_path(
        url: str, env: dict[str, str], plain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert http1.plain_http(url) is plain


def test_the_request_names_an_ipv6_host_and_keeps_the_query() -> None:
    request = http1.Request("http://[::1]:9100/metrics?name[]=up&x=%20", {"accept": "text/plain"})
    assert (request.host, request.port) == ("::1", 9100)
    assert request.raw == (b"GET /metrics?name[]=up&x=%20 HTTP/1.1\r\nHost: [::1]:9100\r\n"
                           b"accept: text/plain\r\n\r\n")

"""The sidecar's upstream client (agent/upstream.py) against real sockets speaking raw bytes:
framing, keep-alive reuse, the stale-connection retry, interim answers and bad answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from trimtab.agent.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (Content-Length or chunked), as the server saw them."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    body = b""
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return head, body


async def _serve(handler: Handler, test: Callable[[UpstreamPool], Awaitable[None]],
                 **pool_args: float) -> list[bytes]:
    """Run ``test`` against a pool whose upstream is a raw server running ``handler`` per
    connection; returns the request heads the server read (in order)."""
    seen: list[bytes] = []
    count = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        try:
            await handler(reader, writer, count)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def recording(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head, body = await _read_request(reader)
        seen.append(head + body)
        return head, body

    global _recorded_read  # noqa: PLW0603 - handlers below read requests through it
    _recorded_read = recording
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool("http", "127.0.0.1", port, **pool_args)
    try:
        await asyncio.wait_for(test(pool), 20)
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
    return seen


_recorded_read: Callable[[asyncio.StreamReader], Awaitable[tuple[bytes, bytes]]]


async def _get(pool: UpstreamPool, path: bytes = b"/", method: str = "GET",
               body: list[bytes] | None = None,
               headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    async def chunks():
        for c in body or ():
            yield c
    response = await pool.request(method, path, headers or [(b"host", b"svc")],
                                  chunks() if body is not None else None)
    try:
        data = b"".join([c async for c in response.body()])
    finally:
        response.aclose()
    return response.status, data


def _run(handler: Handler, test: Callable[[UpstreamPool], Awaitable[None]],
         **pool_args: float) -> list[bytes]:
    return asyncio.run(_serve(handler, test, **pool_args))


async def _answer_forever(reader, writer, _n, answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"):
    while True:
        await _recorded_read(reader)
        writer.write(answer)
        await writer.drain()


def test_sequential_requests_reuse_one_connection() -> None:
    async def test(pool: UpstreamPool) -> None:
        for _ in range(3):
            assert await _get(pool) == (200, b"ok")
        assert pool.opened == 1
    heads = _run(_answer_forever, test)
    assert len(heads) == 3 and all(h.startswith(b"GET / HTTP/1.1\r\nhost: svc\r\n") for h in heads)


def test_a_chunked_answer_is_decoded_and_trailers_dropped() -> None:
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")

    async def handler(reader, writer, n):
        await _answer_forever(reader, writer, n, answer)

    async def test(pool: UpstreamPool) -> None:
        assert await _get(pool) == (200, b"hello world")
        assert await _get(pool) == (200, b"hello world")
        assert pool.opened == 1  # read to its end: kept
    _run(handler, test)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\n\r\nto the close",  # no length: the body runs to the close
    b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nto the close",  # 1.0: never kept
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\nto the close",
])
def test_answers_that_end_the_connection_are_read_whole_and_not_reused(answer: bytes) -> None:
    async def handler(reader, writer, _n):
        await _recorded_read(reader)
        writer.write(answer)
        await writer.drain()

    async def test(pool: UpstreamPool) -> None:
        assert await _get(pool) == (200, b"to the close")
        assert await _get(pool) == (200, b"to the close")
        assert pool.opened == 2
    _run(handler, test)


@pytest.mark.parametrize(("method", "answer"), [
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n"),
])
def test_answers_without_a_body_read_none_and_keep_the_connection(method: str,
                                                                   answer: bytes) -> None:
    async def handler(reader, writer, n):
        await _answer_forever(reader, writer, n, answer)

    async def test(pool: UpstreamPool) -> None:
        status, body = await _get(pool, method=method)
        assert body == b"" and status in (200, 204, 304)
        await _get(pool, method=method)
        assert pool.opened == 1
    _run(handler, test)


def test_interim_answers_are_skipped() -> None:
    answer = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
              b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")

    async def handler(reader, writer, n):
        await _answer_forever(reader, writer, n, answer)

    async def test(pool: UpstreamPool) -> None:
        assert await _get(pool, method="POST", body=[b"x"],
                          headers=[(b"host", b"svc"), (b"content-length", b"1")]) == (201, b"done")
    _run(handler, test)


def test_a_body_of_unknown_length_goes_chunked_and_a_known_one_as_is() -> None:
    async def test(pool: UpstreamPool) -> None:
        await _get(pool, method="POST", body=[b"abc", b"", b"defg"])
        await _get(pool, method="PUT", body=[b"12", b"345"],
                   headers=[(b"host", b"svc"), (b"content-length", b"5")])
    heads = _run(_answer_forever, test)
    assert b"transfer-encoding: chunked" in heads[0] and heads[0].endswith(b"abcdefg")
    assert b"transfer-encoding" not in heads[1] and heads[1].endswith(b"12345")


def test_a_connection_the_server_dropped_is_retried_once_for_a_request_without_body() -> None:
    async def handler(reader, writer, n):
        await _recorded_read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if n == 1:
            await _recorded_read(reader)  # the idle timeout's race: read, then close unanswered
            return
        await _answer_forever(reader, writer, n)

    async def test(pool: UpstreamPool) -> None:
        assert await _get(pool) == (200, b"ok")
        assert await _get(pool) == (200, b"ok")  # sent again on a new connection
        assert pool.opened == 2
    _run(handler, test)


def test_a_dropped_connection_with_a_body_sent_is_a_502_not_a_resend() -> None:
    async def handler(reader, writer, n):
        await _recorded_read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await _recorded_read(reader)  # the POST arrives; the server closes unanswered

    async def test(pool: UpstreamPool) -> None:
        await _get(pool)
        with pytest.raises(UpstreamError):
            await _get(pool, method="POST", body=[b"pay once"],
                       headers=[(b"host", b"svc"), (b"content-length", b"8")])
        assert pool.opened == 1  # never sent twice
    heads = _run(handler, test)
    assert sum(h.startswith(b"POST") for h in heads) == 1


@pytest.mark.parametrize(("answer", "says"), [
    (b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "two different"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "over 65536 bytes"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "switched protocols"),
    (b"", "closed without one"),
])
def test_a_bad_answer_is_an_error_naming_it_and_frees_its_slot(answer: bytes,
                                                                 says: str) -> None:
    async def handler(reader, writer, _n):
        await _recorded_read(reader)
        writer.write(answer)
        await writer.drain()

    async def test(pool: UpstreamPool) -> None:
        for _ in range(3):  # more than max_connections: a failed request gives its slot back
            with pytest.raises(UpstreamError, match=says):
                await _get(pool)
    _run(handler, test, max_connections=2)


def test_a_silent_upstream_times_out_and_a_dead_port_is_unreachable() -> None:
    async def handler(reader, writer, _n):
        await _recorded_read(reader)
        await asyncio.sleep(5)

    async def test(pool: UpstreamPool) -> None:
        with pytest.raises(UpstreamTimeout, match="did not answer in time"):
            await _get(pool)
    _run(handler, test, timeout=0.3)

    from trimtab.agent.procs import free_port

    async def dead() -> None:
        pool = UpstreamPool("http", "127.0.0.1", free_port())
        with pytest.raises(UpstreamError, match="unreachable: ConnectionRefusedError"):
            await _get(pool)
    asyncio.run(dead())


def test_a_body_cut_short_raises_and_the_connection_is_not_reused() -> None:
    async def handler(reader, writer, _n):
        await _recorded_read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async def test(pool: UpstreamPool) -> None:
        response = await pool.request("GET", b"/", [(b"host", b"svc")], None)
        got = b""
        with pytest.raises(UpstreamError, match="mid-body"):
            async for chunk in response.body():
                got += chunk
        response.aclose()
        assert got == b"only ten b" and not pool._idle
    _run(handler, test)


def test_no_host_header_gets_the_upstreams() -> None:
    async def test(pool: UpstreamPool) -> None:
        await _get(pool, headers=[(b"accept", b"*/*")])
    heads = _run(_answer_forever, test)
    assert b"\r\nhost: 127.0.0.1:" in heads[0]

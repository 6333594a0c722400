"""The balancer's upstream keep-alive pool against scripted raw HTTP/1.1 servers (real sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from trimtab.agent.balance.pool import UpstreamError, UpstreamPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[bytes], list[int]]:
    """A server on a free loopback port; records request heads and connection count."""
    heads: list[bytes] = []
    conns: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            await handler(reader, writer, heads)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", heads, conns


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     heads: list[bytes]) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n")[0]) \
            if b"content-length" in head.lower() else 0
        body = await reader.readexactly(length)
        payload = b"" if head.startswith(b"HEAD ") else b"ok" + body  # HEAD: headers only
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(body) + 2).encode()
                     + b"\r\nx-a: 1\r\nx-a: 2\r\n\r\n" + payload)
        await writer.drain()


def test_keep_alive_reuses_one_connection_and_passes_bodies_and_repeated_headers() -> None:
    async def go() -> None:
        server, url, heads, conns = await serve(keep_alive)
        pool = UpstreamPool()
        for i in range(5):
            resp = await pool.request(url, "POST", f"/p?i={i}", [(b"x-b", b"v")], b"data")
            assert (resp.status, resp.body) == (200, b"okdata")
            assert [v for k, v in resp.headers if k == b"x-a"] == [b"1", b"2"]
        assert len(conns) == 1 and heads[4].startswith(b"POST /p?i=4 HTTP/1.1\r\nhost: 127.0.0.1")
        await pool.aclose()
        server.close()

    asyncio.run(go())


def test_head_keeps_the_upstream_content_length() -> None:
    async def go() -> None:
        server, url, heads, _ = await serve(keep_alive)
        pool = UpstreamPool()
        resp = await pool.request(url, "HEAD", "/", [], b"")
        assert resp.body == b"" and (b"content-length", b"2") in resp.headers
        get = await pool.request(url, "GET", "/", [], b"")
        assert get.body == b"ok" and all(k != b"content-length" for k, _ in get.headers)
        await pool.aclose()
        server.close()

    asyncio.run(go())


def test_chunked_and_close_delimited_bodies() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      heads: list[bytes]) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: t\r\n\r\n")
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
        await writer.drain()

    async def go() -> None:
        server, url, _, conns = await serve(chunked)
        pool = UpstreamPool()
        first = await pool.request(url, "GET", "/", [], b"")
        assert (first.status, first.body, first.headers) == (201, b"abcde", [])
        second = await pool.request(url, "GET", "/", [], b"")
        assert second.body == b"until close" and len(conns) == 1
        await pool.aclose()
        server.close()

    asyncio.run(go())


def test_stale_idle_connection_is_retried_for_get_but_not_for_post() -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             heads: list[bytes]) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
        await writer.drain()
        # Keep-alive advertised, but the next request on this connection is dropped
        # unanswered: the upstream closed an idle connection as we reused it.
        heads.append(await reader.readuntil(b"\r\n\r\n"))

    async def go() -> None:
        server, url, heads, conns = await serve(one_then_close)
        pool = UpstreamPool()
        assert (await pool.request(url, "GET", "/", [], b"")).body == b"hi"
        assert (await pool.request(url, "GET", "/", [], b"")).body == b"hi"  # retried
        assert (len(conns), len(heads)) == (2, 3)
        with pytest.raises(UpstreamError, match="reused connection"):
            await pool.request(url, "POST", "/", [], b"x")  # not idempotent: no retry
        assert len(conns) == 2
        await pool.aclose()
        server.close()

    asyncio.run(go())


def test_silent_upstream_times_out_and_garbage_is_an_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     heads: list[bytes]) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      heads: list[bytes]) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def go() -> None:
        server, url, _, _ = await serve(silent)
        with pytest.raises(UpstreamError, match="no answer"):
            await UpstreamPool(timeout=0.2).request(url, "GET", "/", [], b"")
        server.close()
        server, url, _, _ = await serve(garbage)
        with pytest.raises(UpstreamError, match="HTTP/1.x"):
            await UpstreamPool().request(url, "GET", "/", [], b"")
        server.close()

    asyncio.run(go())

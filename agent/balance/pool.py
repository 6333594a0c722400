"""The built-in balancer's upstream side: a small HTTP/1.1 keep-alive connection pool.

Why not httpx: on the proxy's hot path its per-request CPU cost and pool
bookkeeping capped the balancer at a few hundred requests/s with p99 in the
hundreds of ms on 2 cores (benchmarks/balancer_throughput.py). This client does
only what a reverse proxy needs: one request per connection at a time,
``Content-Length`` or chunked bodies, idle connections reused per origin.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
MAX_HEAD = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or answered with something that is not HTTP/1.x."""


@dataclass
class UpstreamResponse:
    """Status, raw header pairs (hop-by-hop ones removed) and the whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False

    def close(self) -> None:
        self.writer.close()


class UpstreamPool:
    """Keep-alive connections per origin (scheme, host, port)."""

    def __init__(self, timeout: float = 10.0, max_idle: int = 100) -> None:
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, str, int], deque[_Conn]] = {}

    async def request(self, base_url: str, method: str, target: str,
                      headers: list[tuple[bytes, bytes]], body: bytes) -> UpstreamResponse:
        """Send one request; retried once on a fresh connection when a reused idle one
        turns out closed before any answer (only for idempotent methods)."""
        parts = urlsplit(base_url)
        origin = (parts.scheme, parts.hostname or "127.0.0.1",
                  parts.port or (443 if parts.scheme == "https" else 80))
        head = _request_head(method, target, parts.netloc, headers, body)
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._acquire(origin)
                try:
                    return await self._exchange(origin, conn, head, body, method)
                except _StaleConnection:
                    if method not in IDEMPOTENT:
                        raise UpstreamError("upstream closed a reused connection") from None
                    conn = await self._open(origin)
                    return await self._exchange(origin, conn, head, body, method)
        except TimeoutError as exc:
            raise UpstreamError(f"no answer within {self.timeout:g} s") from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, _StaleConnection) as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc

    async def _acquire(self, origin: tuple[str, str, int]) -> _Conn:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                conn.reused = True
                return conn
            conn.close()
        return await self._open(origin)

    async def _open(self, origin: tuple[str, str, int]) -> _Conn:
        scheme, host, port = origin
        context = ssl.create_default_context() if scheme == "https" else None
        reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                       limit=MAX_HEAD)
        return _Conn(reader, writer)

    async def _exchange(self, origin: tuple[str, str, int], conn: _Conn, head: bytes,
                        body: bytes, method: str) -> UpstreamResponse:
        try:
            conn.writer.write(head + body)
            await conn.writer.drain()
            status, headers, keep = await _read_head(conn, method)
            data = await _read_body(conn.reader, status, headers, method)
        except BaseException:
            conn.close()
            raise
        if keep and not conn.reader.at_eof():
            idle = self._idle.setdefault(origin, deque())
            if len(idle) < self.max_idle:
                conn.reused = False
                idle.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        drop = {b"connection", b"keep-alive", b"transfer-encoding"}
        if data or not (method == "HEAD" or status in (204, 304)):
            drop.add(b"content-length")  # the proxy sets it from the body it sends
        return UpstreamResponse(status, [(k, v) for k, v in headers if k.lower() not in drop],
                                data)

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


class _StaleConnection(Exception):
    """A reused connection was closed by the upstream before it sent anything."""


def _request_head(method: str, target: str, host: str, headers: list[tuple[bytes, bytes]],
                  body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"host: " + host.encode()]
    lines += [k + b": " + v for k, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read_head(conn: _Conn, method: str) -> tuple[int, list[tuple[bytes, bytes]], bool]:
    while True:
        try:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if conn.reused and not exc.partial:
                raise _StaleConnection() from exc
            raise
        status_line, *lines = raw[:-4].split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {status_line[:60]!r}")
        status = int(rest[:3])
        if 100 <= status < 200 and status != 101:
            continue  # interim answer (100 Continue): the real one follows
        headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(b":") for ln in lines)]
        tokens = b",".join(v.lower() for k, v in headers if k.lower() == b"connection")
        keep = version == b"HTTP/1.1" and b"close" not in tokens
        return status, headers, keep


async def _read_body(reader: asyncio.StreamReader, status: int,
                     headers: list[tuple[bytes, bytes]], method: str) -> bytes:
    if method == "HEAD" or status in (204, 304):
        return b""
    fields = {k.lower(): v for k, v in headers}
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return await _read_chunked(reader)
    if b"content-length" in fields:
        return await reader.readexactly(int(fields[b"content-length"]))
    return await reader.read()  # delimited by close; the connection is not reused


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers: dropped
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)

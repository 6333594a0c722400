"""The sidecar's HTTP/1.1 client to its one upstream: keep-alive connections, streamed bodies.

Why not httpx: the sidecar talks to exactly one origin, request after request, and
httpcore's pool walks every connection it holds on each request and on each response
(and polls each idle socket's readability): with 16 concurrent clients that
bookkeeping took ~45 % of the sidecar's CPU, and the sidecar served 1 % of what HAProxy
serves in front of the same upstream (``benchmarks/sidecar.py``). Here an idle
connection is a list entry: taken and given back in O(1).

What it does, after RFC 9112:

- requests: the head and the first body chunk go out in one write (TCP_NODELAY is set
  too); a body the client sent with ``Content-Length`` goes as is, one it sent chunked
  (the length unknown) is re-chunked; ``Host`` is the client's, or the upstream's when
  the client sent none;
- responses: interim 1xx heads (``100 Continue``, ``103 Early Hints``) are skipped;
  the body is framed by ``Transfer-Encoding: chunked`` (decoded: the ASGI server
  frames it again), else ``Content-Length``, else the connection's close; none for
  HEAD, 204 and 304. A head over :data:`MAX_HEAD` bytes, a malformed status line or
  header, or two different Content-Lengths are :class:`UpstreamError` (a 502);
- reuse: a connection goes back to the pool only after its response was read to the
  end and neither side said ``Connection: close``; an idle one is dropped after
  ``keepalive_expiry`` seconds (below Node's 5 s default ``keepAliveTimeout``) or
  when its peer closed it meanwhile. A request without a body that finds a reused
  connection closed before a single byte of answer is sent once more on a new one
  (the race every keep-alive client has with a server's idle timeout);
- timeouts: ``connect_timeout`` to connect, ``timeout`` for each read of the answer
  (its head, then each body chunk) — a stream that keeps sending never times out.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]

MAX_HEAD = 64 * 1024  # bytes of a response's status line and headers
READ_SIZE = 64 * 1024  # bytes per body chunk handed on
NO_BODY_STATUS = frozenset({204, 304})


class UpstreamError(Exception):
    """The upstream could not be reached or answered something that is not HTTP/1.x."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect or answer within its timeout."""


class _Stale(Exception):
    """A reused connection was found closed before any byte of the answer."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0
    reused: bool = False

    def usable(self, now: float, expiry: float) -> bool:
        return (now - self.idle_since < expiry and not self.reader.at_eof()
                and not self.writer.is_closing() and not self.reader._buffer)  # noqa: SLF001 - stray bytes: not ours

    def close(self) -> None:
        self.writer.close()


@dataclass
class UpstreamResponse:
    """A response head; :meth:`body` streams the body, :meth:`aclose` ends the exchange."""

    status: int
    headers: Headers
    _pool: UpstreamPool
    _conn: _Connection | None
    _framing: str  # "none" | "length" | "chunked" | "close"
    _length: int = 0
    _keep: bool = True
    _done: bool = field(default=False)

    @property
    def length(self) -> int | None:
        """The body's length when the answer says it (0 when it has none), else None."""
        return self._length if self._framing in ("length", "none") else None

    async def body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed)."""
        conn = self._conn
        if conn is None or self._framing == "none":
            self._done = True
            return
        timeout, reader = self._pool.timeout, conn.reader
        if self._framing == "length":
            left = self._length
            while left:
                async with asyncio.timeout(timeout):
                    chunk = await reader.read(min(left, READ_SIZE))
                if not chunk:
                    raise UpstreamError("the upstream closed the connection mid-body")
                left -= len(chunk)
                if not left:
                    self._done = True  # before the last yield: a caller may stop there
                yield chunk
        elif self._framing == "chunked":
            while True:
                async with asyncio.timeout(timeout):
                    line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise UpstreamError(f"bad chunk size line {line[:40]!r}") from None
                if size < 0:
                    raise UpstreamError(f"bad chunk size line {line[:40]!r}")
                if size == 0:
                    while True:  # trailers, dropped (hop-by-hop for a proxy that re-frames)
                        async with asyncio.timeout(timeout):
                            if await reader.readuntil(b"\r\n") == b"\r\n":
                                break
                    break
                while size:
                    async with asyncio.timeout(timeout):
                        chunk = await reader.read(min(size, READ_SIZE))
                    if not chunk:
                        raise UpstreamError("the upstream closed the connection mid-chunk")
                    size -= len(chunk)
                    yield chunk
                async with asyncio.timeout(timeout):
                    if await reader.readexactly(2) != b"\r\n":
                        raise UpstreamError("a chunk was not followed by CRLF")
        else:  # "close": the body runs to the connection's end
            self._keep = False
            while True:
                async with asyncio.timeout(timeout):
                    chunk = await reader.read(READ_SIZE)
                if not chunk:
                    break
                yield chunk
        self._done = True

    def aclose(self) -> None:
        """Give the connection back (body read to the end, keep-alive) or close it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._release(conn, self._done and self._keep)


class UpstreamPool:
    """Keep-alive connections to one ``scheme://host:port``; see the module docstring."""

    def __init__(self, scheme: str, host: str, port: int, timeout: float = 30.0,
                 connect_timeout: float = 5.0, max_connections: int = 256,
                 keepalive_expiry: float = 4.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.connect_timeout, self.keepalive_expiry = connect_timeout, keepalive_expiry
        self._ssl = ssl.create_default_context() if scheme == "https" else None
        default = 443 if scheme == "https" else 80
        self._host_header = (host if port == default else f"{host}:{port}").encode("idna")
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.opened = 0  # connections made so far (tests check the reuse with it)

    async def request(self, method: str, target: bytes, headers: Headers,
                      body: AsyncIterator[bytes] | None) -> UpstreamResponse:
        """Send one request and read its response head. The caller streams
        :meth:`UpstreamResponse.body` and always calls :meth:`UpstreamResponse.aclose`."""
        await self._slots.acquire()
        try:
            head, body_mode = self._head(method, target, headers, body is not None)
            conn = self._take()
            try:
                return await self._exchange(conn, method, head, body, body_mode)
            except _Stale:
                if body is not None:
                    raise UpstreamError("unreachable: it closed a kept-alive connection "
                                        "while the request was sent") from None
                return await self._exchange(None, method, head, None, body_mode)
        except BaseException:
            self._slots.release()
            raise

    def _head(self, method: str, target: bytes, headers: Headers,
              has_body: bool) -> tuple[bytes, str]:
        lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        has_host = has_length = False
        for name, value in headers:
            lower = name.lower()
            has_host = has_host or lower == b"host"
            has_length = has_length or lower == b"content-length"
            lines += [name, b": ", value, b"\r\n"]
        if not has_host:
            lines += [b"host: ", self._host_header, b"\r\n"]
        mode = "none"
        if has_body:
            mode = "length" if has_length else "chunked"
            if mode == "chunked":
                lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), mode

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be timed out
            if conn.usable(now, self.keepalive_expiry):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl, limit=MAX_HEAD,
                    server_hostname=self.host if self._ssl else None)
        except TimeoutError:
            raise UpstreamTimeout("did not accept the connection in time") from None
        except OSError as exc:
            raise UpstreamError(f"unreachable: {type(exc).__name__}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection | None, method: str, head: bytes,
                        body: AsyncIterator[bytes] | None, mode: str) -> UpstreamResponse:
        conn = conn or await self._connect()
        try:
            await self._send(conn, head, body, mode)
            status, headers, http10 = await self._read_head(conn)
            framing, length, keep = _framing(method, status, headers, http10)
        except BaseException:
            conn.close()
            raise
        return UpstreamResponse(status, headers, self, conn, framing, length, keep)

    async def _send(self, conn: _Connection, head: bytes, body: AsyncIterator[bytes] | None,
                    mode: str) -> None:
        writer = conn.writer
        try:
            if body is None:
                writer.write(head)
            else:
                first = True
                async for chunk in body:
                    if not chunk:
                        continue  # in chunked framing an empty chunk would end the body
                    data = (b"%x\r\n%b\r\n" % (len(chunk), chunk)) if mode == "chunked" else chunk
                    writer.write(head + data if first else data)
                    first = False
                    await writer.drain()
                end = b"0\r\n\r\n" if mode == "chunked" else b""
                writer.write(head + end if first else end)
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            if conn.reused and body is None:
                raise _Stale() from None
            raise UpstreamError(f"unreachable: {type(exc).__name__}") from None

    async def _read_head(self, conn: _Connection) -> tuple[int, Headers, bool]:
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
            except TimeoutError:
                raise UpstreamTimeout("did not answer in time") from None
            except asyncio.IncompleteReadError as exc:
                if conn.reused and not exc.partial:
                    raise _Stale() from None
                raise UpstreamError("bad answer: the connection closed without one") from None
            except (asyncio.LimitOverrunError, ValueError):
                raise UpstreamError(f"bad answer: a head over {MAX_HEAD} bytes") from None
            except (ConnectionError, OSError) as exc:
                if conn.reused:
                    raise _Stale() from None
                raise UpstreamError(f"unreachable: {type(exc).__name__}") from None
            conn.reused = False  # an answer began: never resent from here on
            status, headers, http10 = _parse_head(raw)
            if status == 101:
                raise UpstreamError("bad answer: it switched protocols (upgrades are not "
                                    "proxied)")
            if status >= 200:
                return status, headers, http10
            # 100 Continue, 103 Early Hints: interim, the final answer follows

    def _release(self, conn: _Connection, keep: bool) -> None:
        self._slots.release()
        if keep and not conn.writer.is_closing():
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _parse_head(raw: bytes) -> tuple[int, Headers, bool]:
    """Status, headers and whether the answer is HTTP/1.0, of a head ending in CRLFCRLF."""
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit()
            or not 100 <= int(code) <= 599 or rest[3:4] not in (b"", b" ")):
        raise UpstreamError(f"bad answer: not an HTTP/1.x status line {lines[0][:60]!r}")
    headers: Headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise UpstreamError(f"bad answer: malformed header line {line[:60]!r}")
        headers.append((name, value.strip()))
    return int(code), headers, version == b"HTTP/1.0"


def _framing(method: str, status: int, headers: Headers,
             http10: bool = False) -> tuple[str, int, bool]:
    """(framing, content length, keep-alive) of a final response, RFC 9112 §6.3.

    An HTTP/1.0 answer's connection is never kept (its keep-alive is opt-in and rare)."""
    keep, chunked, lengths = not http10, False, set()
    for name, value in headers:
        lower = name.lower()
        if lower == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            keep = keep and b"close" not in tokens
        elif lower == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            if not chunked:
                keep = False  # a coding we do not frame: the body runs to the close
        elif lower == b"content-length":
            lengths.add(value)
    if method == "HEAD" or status in NO_BODY_STATUS:
        return "none", 0, keep
    if chunked:
        return "chunked", 0, keep
    if any(k.lower() == b"transfer-encoding" for k, _ in headers):
        return "close", 0, False
    if lengths:
        if len(lengths) > 1:
            raise UpstreamError("bad answer: two different Content-Lengths")
        (length,) = lengths
        if not length.isdigit():
            raise UpstreamError(f"bad answer: Content-Length {length[:20]!r}")
        return ("length", int(length), keep) if int(length) else ("none", 0, keep)
    return "close", 0, False

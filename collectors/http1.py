"""A plain HTTP/1.1 GET for the scrape hot path: one kept-alive connection per target.

httpx (with httpcore, h11 and anyio under it) spends about a millisecond of CPU on each
request of a 240 KB exposition, most of it in layers a scrape does not use: at 200 targets
scraped every second that was a fifth of the collector's core, more than the parse. A
scrape is always the same request on the same connection, one at a time per target, so
this module writes the request bytes prepared once and reads the answer with asyncio's
stream reader directly (0.2-0.3 ms a scrape; ``benchmarks/fanout.py`` measures the whole).

Only ``http://`` URLs without credentials and without an environment proxy come here
(:func:`plain_http`); everything else (TLS, proxies, the agent API) stays with httpx. What
an answer may be: a ``Content-Length`` body, a chunked one (extensions and trailers
skipped), or one delimited by the server closing (HTTP/1.0). Failures raise what the scrape
engine already reports: ``httpx.ConnectError`` with the cause chained (so
``plain_error`` says *connection refused*, *DNS failure: host*),
``httpx.RemoteProtocolError`` for a malformed or cut answer, ``ValueError`` for a
non-200 status or a web page (:func:`refuse_non_metrics`), ``LimitExceeded`` for a body
over the limit.
A connection is kept only after a whole answer was read from it; an idle one the server
closed meanwhile is replaced once, transparently, as httpx's pool does.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import AsyncIterator, Mapping

import httpx

from .errors import refuse_non_metrics
from .limits import read_body

HEAD_LIMIT = 64 * 1024  # bytes of status line and headers (httpx/h11: 64 KiB too)
CHUNK = 256 * 1024  # most bytes asked of the reader at once
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


def plain_http(url: str) -> bool:
    """Whether ``url`` can take this module's path: ``http://``, no user info, and no proxy
    from the environment for its host (httpx, which trusts the environment, would use one)."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or parsed.userinfo:
        return False
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass_environment(parsed.host, proxies))


class Request:
    """One target's GET, prepared once: where to connect and the bytes to send."""

    __slots__ = ("host", "port", "raw", "url")

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        parsed = httpx.URL(url)
        self.url = url
        self.host = parsed.host
        self.port = parsed.port or 80
        authority = f"[{self.host}]" if ":" in self.host else self.host
        if parsed.port is not None:
            authority += f":{parsed.port}"
        lines = [f"GET {parsed.raw_path.decode('ascii')} HTTP/1.1", f"Host: {authority}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self.raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Http1Scraper:
    """Kept-alive connections by key (one per target; a target's scrapes never overlap)."""

    def __init__(self) -> None:
        self._idle: dict[object, Connection] = {}

    async def get(self, key: object, request: Request, limit: int, limit_name: str
                  ) -> tuple[bytes, str]:
        """The body (still encoded as sent: gzip is undone by ``read_body``) and content
        type of a 200 answer to ``request``."""
        conn = self._idle.pop(key, None)  # taken: a failed or cancelled read leaves none behind
        reused = conn is not None
        if conn is None:
            conn = await _connect(request)
        try:
            try:
                status, headers = await _exchange(conn, request)
            except (httpx.RemoteProtocolError, ConnectionError) as exc:
                if not (reused and _nothing_read(exc)):
                    raise
                conn[1].close()  # the server closed it while idle: once more on a new one
                conn = await _connect(request)
                status, headers = await _exchange(conn, request)
            kind = headers.get("content-type", "")
            refuse_non_metrics(status, kind)
            body, keep = await _body(conn[0], headers, limit, limit_name)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self._idle[key] = conn
        else:
            conn[1].close()
        return body, kind or "text/plain"

    def close(self, key: object) -> None:
        """Close the connection kept for ``key`` (its target was removed)."""
        conn = self._idle.pop(key, None)
        if conn is not None:
            conn[1].close()

    def close_all(self) -> None:
        for key in list(self._idle):
            self.close(key)


class _EmptyAnswer(httpx.RemoteProtocolError):
    """The connection closed before a byte of the answer came."""


def _nothing_read(exc: BaseException) -> bool:
    return isinstance(exc, (_EmptyAnswer, ConnectionResetError, BrokenPipeError))


async def _connect(request: Request) -> Connection:
    try:
        return await asyncio.open_connection(request.host, request.port, limit=HEAD_LIMIT)
    except OSError as exc:  # as httpx raises it, so plain_error names the cause and host
        raise httpx.ConnectError(str(exc) or type(exc).__name__,
                                 request=httpx.Request("GET", request.url)) from exc


async def _exchange(conn: Connection, request: Request) -> tuple[int, dict[str, str]]:
    """Send the request, read the status line and headers (skipping 1xx answers)."""
    reader, writer = conn
    writer.write(request.raw)
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _EmptyAnswer("the server closed the connection without answering") from None
            raise httpx.RemoteProtocolError("the server closed the connection mid-headers") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError(
                f"response headers larger than {HEAD_LIMIT // 1024} KiB") from None
        status, headers = _parse_head(head)
        if not 100 <= status < 200:
            return status, headers


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
            len(parts[1]) == 3 and parts[1].isdigit()):
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {"": parts[0]}  # the version, read by _body
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int,
                limit_name: str) -> tuple[bytes, bool]:
    """The body, and whether the connection can carry the next request."""
    keep = headers[""] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    encoding = headers.get("content-encoding", "")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await read_body(_chunked(reader), encoding, None, limit, limit_name), keep
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise httpx.RemoteProtocolError(f"bad Content-Length: {length[:40]!r}")
        return await read_body(_sized(reader, int(length)), encoding, length, limit,
                               limit_name), keep
    return await read_body(_until_closed(reader), encoding, None, limit, limit_name), False


async def _sized(reader: asyncio.StreamReader, size: int) -> AsyncIterator[bytes]:
    while size > 0:
        data = await reader.read(min(size, CHUNK))
        if not data:
            raise httpx.RemoteProtocolError(f"the server closed the connection {size:,} bytes "
                                            f"before the end of the body")
        size -= len(data)
        yield data


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            field = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(field):  # int(x, 16) would take "0x1f", "-1" and "1_0"
                raise httpx.RemoteProtocolError(f"bad chunk size: {field[:20]!r}")
            size = int(field, 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields: nothing a scrape uses
                return
            while size > 0:
                data = await reader.readexactly(min(size, CHUNK))
                size -= len(data)
                yield data
            if await reader.readexactly(2) != b"\r\n":
                raise httpx.RemoteProtocolError("a chunk does not end with CRLF")
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError(
            "the server closed the connection mid-body (incomplete chunked read)") from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("a chunk size line longer than 64 KiB") from None


async def _until_closed(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(CHUNK):
        yield data

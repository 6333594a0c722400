"""A minimal asyncio Redis client (RESP2) for the rate limiter's per-request call.

redis-py's asyncio client spends about 70-90 µs of CPU per call in its connection pool,
command packing and reply parsing layers: on every request of a limited route that is
more than the whole decision should cost. This client does only what
:class:`~.ratelimit_store.RedisBackend` sends (EVALSHA, falling back to EVAL on
``NOSCRIPT``; AUTH and SELECT when connecting):

- One persistent connection per client (the backend keeps one client per event loop),
  TCP or a Unix socket, from ``redis://[[user]:password@]host[:port][/db]`` (``?db=``
  and ``?password=`` also read) or ``unix:///path?db=N&password=...``. ``rediss://``
  (TLS) is not handled here (:func:`parse_url` refuses it).
- Auto-pipelining: a command is written the moment it is called, whoever else is
  waiting; Redis answers one connection's commands in order, so replies are matched
  first-in first-out to the waiting futures.
- Bounded: when the oldest unanswered command is older than ``timeout``, the connection
  is dropped and every waiting call fails with :class:`RespTimeout` (they all queue
  behind it). One watchdog timer per connection, re-armed only while commands wait, so
  a call costs no timer of its own. Opening a connection (with AUTH/SELECT) is bounded
  by ``timeout`` as well.
- A dropped connection, also in the middle of a reply, fails every waiting call with
  :class:`RespConnectionError`; the next call connects afresh. A reply error
  (``-ERR ...``) fails only its own call (:class:`RespReplyError`); an error inside an
  array reply is returned as a :class:`RespReplyError` element.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class RespError(Exception):
    """Anything that went wrong talking to Redis."""


class RespReplyError(RespError):
    """Redis answered with an error reply (``-ERR ...``, ``-NOSCRIPT ...``)."""


class RespConnectionError(RespError, ConnectionError):
    """The connection failed, was dropped, or Redis broke the protocol."""


class RespTimeout(RespError, TimeoutError):
    """Redis did not answer within the timeout (the connection was dropped)."""


Address = tuple[str | None, int | None, str | None, str | None, str | None, int]


def parse_url(url: str) -> Address:
    """``(host, port, unix path, username, password, db)`` of a ``redis://`` or ``unix://`` URL."""
    parts = urlsplit(url)
    # Messages name the part at fault, never the URL: it may carry a password.
    if parts.scheme not in ("redis", "unix"):
        raise ValueError(f"only redis:// and unix:// URLs, got a {parts.scheme or 'schemeless'}"
                         " URL")
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    password = password or (query["password"][0] if "password" in query else None)
    if parts.scheme == "unix":
        host, port, path, db_text = None, None, parts.path, "0"
        if not path:
            raise ValueError("no socket path in the unix:// URL")
    else:
        host, port, path = parts.hostname or "127.0.0.1", parts.port or 6379, None
        db_text = parts.path.lstrip("/") or "0"
    db_text = query["db"][0] if "db" in query else db_text
    if not db_text.isdigit():
        raise ValueError(f"the database in the {parts.scheme}:// URL is not a number")
    return host, port, path, username, password, int(db_text)


def pack(args: tuple[bytes | str | int | float, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = (arg if isinstance(arg, str) else repr(arg)).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


_INCOMPLETE: Any = object()
_READ_SIZE = 65536


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One reply starting at ``pos`` and the position after it; ``_INCOMPLETE`` when cut short.

    Raises :class:`RespConnectionError` on a byte stream that is not RESP2.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    try:
        if kind == 36:  # $ bulk string
            size = int(buf[pos + 1:end])
            if size < 0:
                return None, end + 2
            stop = end + 2 + size
            if len(buf) < stop + 2:
                return _INCOMPLETE, pos
            return buf[end + 2:stop], stop + 2
        if kind == 42:  # * array
            count = int(buf[pos + 1:end])
            if count < 0:
                return None, end + 2
            items = []
            at = end + 2
            for _ in range(count):
                item, at = _parse(buf, at)
                if item is _INCOMPLETE:
                    return _INCOMPLETE, pos
                items.append(item)
            return items, at
        if kind == 58:  # : integer
            return int(buf[pos + 1:end]), end + 2
        if kind == 43:  # + simple string
            return buf[pos + 1:end], end + 2
        if kind == 45:  # - error
            return RespReplyError(buf[pos + 1:end].decode("utf-8", "replace")), end + 2
    except ValueError as err:
        raise RespConnectionError(f"bad RESP reply: {buf[pos:end + 2]!r}") from err
    raise RespConnectionError(f"bad RESP reply type {bytes([kind])!r}")


class RespConnection(asyncio.BufferedProtocol):
    """One connection: commands written as they come, replies matched in order.

    A buffered protocol: the loop reads into one buffer of ours, where a plain protocol
    gets a fresh ``recv(262144)`` result per read (that allocation alone cost ~12 µs).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._buf = b""
        self._read = bytearray(_READ_SIZE)
        self._view = memoryview(self._read)
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """Write one packed command; the future gets its reply."""
        if self.closed or self._transport is None:
            raise RespConnectionError("connection closed")
        loop = self._loop
        future = loop.create_future()
        deadline = loop.time() + self._timeout
        self._waiters.append((future, deadline))
        self._transport.write(payload)
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._check)
        return future

    def _check(self) -> None:
        self._watchdog = None
        if self.closed or not self._waiters:
            return
        deadline = self._waiters[0][1]
        if deadline <= self._loop.time():
            self._fail(RespTimeout(f"Redis did not answer within {self._timeout:g} s"))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._view[:nbytes])
        buf = self._buf + data if self._buf else data
        pos, size, waiters = 0, len(buf), self._waiters
        try:
            while pos < size:
                reply, after = _parse(buf, pos)
                if reply is _INCOMPLETE:
                    break
                pos = after
                if not waiters:
                    raise RespConnectionError("a reply nobody asked for")
                future = waiters.popleft()[0]
                if not future.done():  # a caller that gave up (cancelled) leaves its slot
                    if type(reply) is RespReplyError:
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except RespConnectionError as err:
            self._fail(err)
            return
        self._buf = buf[pos:] if pos < size else b""

    def connection_lost(self, exc: Exception | None) -> None:
        error = RespConnectionError("connection to Redis lost")
        error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        """Close, failing every waiting call with ``error``."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiters, self._waiters = self._waiters, deque()
        for future, _ in waiters:
            if not future.done():
                future.set_exception(error)
        self._buf = b""
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Drop the connection (waiting calls fail)."""
        if not self.closed:
            self._fail(RespConnectionError("connection closed"))


class RespClient:
    """A Redis client for one event loop: one auto-pipelined connection, reopened on need."""

    def __init__(self, url: str, timeout: float) -> None:
        self.address = parse_url(url)
        self.timeout = timeout
        self._conn: RespConnection | None = None
        self._opening: asyncio.Future[RespConnection] | None = None

    @property
    def connected(self) -> bool:
        """True when calls go straight to an open connection."""
        return self._conn is not None and not self._conn.closed

    async def call(self, *args: bytes | str | int | float) -> Any:
        """Send one command and return its reply (raises a :class:`RespError`)."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connect()
        return await conn.send(pack(args))

    def send(self, payload: bytes) -> asyncio.Future[Any] | None:
        """The future of a packed command on the open connection; None when not connected."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return conn.send(payload)

    async def _connect(self) -> RespConnection:
        # Concurrent callers share one attempt: with Redis down, they fail together
        # after one timeout instead of each trying in turn.
        opening = self._opening
        if opening is None or opening.done():
            opening = self._opening = asyncio.ensure_future(self._open())
            opening.add_done_callback(_retrieve)
        conn = await asyncio.shield(opening)
        self._conn = conn
        return conn

    async def _open(self) -> RespConnection:
        loop = asyncio.get_running_loop()
        host, port, path, username, password, db = self.address
        conn: RespConnection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if path is not None:
                    _, conn = await loop.create_unix_connection(
                        lambda: RespConnection(loop, self.timeout), path)
                else:
                    _, conn = await loop.create_connection(
                        lambda: RespConnection(loop, self.timeout), host, port)
                hello = []
                if password is not None:
                    auth = (b"AUTH", username, password) if username else (b"AUTH", password)
                    hello.append(conn.send(pack(auth)))  # type: ignore[arg-type]
                if db:
                    hello.append(conn.send(pack((b"SELECT", db))))
                for reply in await asyncio.gather(*hello, return_exceptions=True):
                    if isinstance(reply, BaseException):
                        raise reply
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        # Adopted here, not only by a waiting caller: every caller may have given up (its
        # own bound ends first) while this attempt still succeeded, and a connection owned
        # by nobody stayed open beside the next one.
        self._conn = conn
        return conn

    async def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared attempt's exception as seen even when every caller gave up on it."""
    if not future.cancelled():
        future.exception()

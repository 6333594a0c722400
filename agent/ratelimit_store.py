"""Where rate limit state lives: process memory, the shared state dir, or Redis.

Every store keeps one number per key, the GCRA theoretical arrival time (see
:func:`.ratelimit.gcra`), and makes each decision atomically:

- :class:`MemoryBackend`: one process (a dict under a lock), at most
  ``max_keys`` keys (default 100,000, about 15 MB). A key whose time has passed
  is the same as an absent one, so those go first when the table is full; if
  every key is still draining, the oldest is dropped (that client starts with a
  full bucket again: bounded memory wins over exactness under a key flood).
- :class:`FileBackend`: every worker of one instance (``uvicorn --workers N``)
  through ``<state dir>/ratelimit-<instance>.bin``, a fixed table of ``slots``
  16-byte slots (default 65,536: 1 MiB), read and written under an exclusive
  ``flock`` per decision. A key probes 8 slots; when all hold other live keys,
  the one closest to full is replaced (same trade as above).
- :class:`RedisBackend`: every instance of a fleet, one Lua script per decision
  (read, decide and write inside Redis, so two instances never race on a key),
  with Redis's own clock so instances with skewed clocks agree. Keys expire by
  themselves when their bucket is full again. **Redis down or slow fails open**:
  each call is bounded by ``timeout`` (default 250 ms, an agent's default too: see
  :mod:`.ratelimit_control`), a failure lets the request through and is counted
  (``trimtab_ratelimit_store_errors_total``), and for ``cooldown`` seconds
  (default 1 s) Redis is not asked at all, so an outage adds no latency.
  **Leases** (:class:`Leases`; ``lease`` seconds, default 0.05, 0 turns them off): a key
  that keeps spending its lease before it runs out asks Redis for several tokens at once
  (doubling, up to ``rate * lease`` and half the burst per ask; requests arriving while
  one is asked for ask for one each) and spends them here without a round trip; a
  refusal is remembered until its ``Retry-After`` has passed (nobody can make a token
  appear sooner: the same limit's refusals need no round trip either). A leased token
  is taken from the shared bucket when Redis grants it, so the fleet never admits more
  than the limit over the long run; it is spent within ``lease`` seconds of the ask or
  dropped, so in any window an instance admits early only what the lease before granted
  it (about one batch), and a key that goes quiet wastes what is left of its lease. With
  ``rate * lease < 2`` (under 40/s at 50 ms) or a burst under 4, every request asks
  Redis, exactly as with leases off. The ASGI
  side (:meth:`RedisBackend.decide`) talks to ``redis://`` and ``unix://`` URLs
  through :mod:`.resp`, one auto-pipelined connection per event loop (redis-py's
  asyncio client cost 70-90 µs of CPU per decision); the blocking WSGI side
  (:meth:`RedisBackend.decide_sync`) and ``rediss://`` (TLS) use redis-py, with
  ``timeout`` as the socket timeout (and an overall bound for the latter).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import struct
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .ratelimit import Decision, gcra
from .resp import RespClient, RespError, RespReplyError, parse_url

_SLOT = struct.Struct("<Qd")  # key hash, theoretical arrival time (unix seconds)
_PROBES = 8


class MemoryBackend:
    """Per-process GCRA state, bounded to ``max_keys``."""

    name = "memory"

    def __init__(self, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tat)

    def decide_sync(self, key: str, rate: float, burst: int) -> Decision:
        """Decide and record one request for ``key``."""
        with self._lock:
            now = self._clock()
            decision, new = gcra(self._tat.get(key), now, rate, burst)
            if new is not None:
                if key not in self._tat and len(self._tat) >= self.max_keys:
                    self._make_room(now)
                self._tat[key] = new
            return decision

    async def decide(self, key: str, rate: float, burst: int) -> Decision | None:
        """:meth:`decide_sync` (never fails)."""
        return self.decide_sync(key, rate, burst)

    def _make_room(self, now: float) -> None:
        expired = [k for k, tat in self._tat.items() if tat <= now]
        for k in expired:  # a passed time is a full bucket: forgetting it changes nothing
            del self._tat[k]
        if len(self._tat) >= self.max_keys:
            self._tat.popitem(last=False)


class FileBackend:
    """GCRA state shared by the workers of one instance through a fixed-size file."""

    name = "file"

    def __init__(self, path: str | os.PathLike[str], slots: int = 65536,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.slots = slots
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size != slots * _SLOT.size:  # new, or sized for other slots
                os.ftruncate(fd, 0)
                os.ftruncate(fd, slots * _SLOT.size)
        finally:
            os.close(fd)
        self._fd = -1
        self._pid = -1
        self._lock = threading.Lock()

    def decide_sync(self, key: str, rate: float, burst: int) -> Decision | None:
        """Decide and record one request for ``key`` under the file lock (None: I/O failed)."""
        try:
            return self._decide(key, rate, burst)
        except OSError:
            return None

    def _decide(self, key: str, rate: float, burst: int) -> Decision:
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        digest = digest or 1  # 0 marks an empty slot
        with self._lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                index, tat = self._find(fd, digest, now)
                decision, new = gcra(tat, now, rate, burst)
                if new is not None:
                    os.pwrite(fd, _SLOT.pack(digest, new), index * _SLOT.size)
                return decision
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    async def decide(self, key: str, rate: float, burst: int) -> Decision | None:
        """:meth:`decide_sync` (a flock held for microseconds: no need to leave the loop)."""
        return self.decide_sync(key, rate, burst)

    def close(self) -> None:
        """Close the file (reopened on the next decision)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _file(self) -> int:
        # A forked worker must not share the parent's descriptor: flock locks are per open
        # file description, so a shared one would let both hold "exclusive" at once.
        if self._fd < 0 or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR)
            self._pid = os.getpid()
        return self._fd

    def _find(self, fd: int, digest: int, now: float) -> tuple[int, float | None]:
        start = digest % self.slots
        raw = os.pread(fd, _SLOT.size * _PROBES, start * _SLOT.size)
        victim, victim_tat = start, float("inf")
        for i in range(min(_PROBES, len(raw) // _SLOT.size)):
            slot_hash, tat = _SLOT.unpack_from(raw, i * _SLOT.size)
            if slot_hash == digest:
                return start + i, tat
            if slot_hash == 0 or tat <= now:
                return start + i, None  # empty, or a full bucket nobody needs to remember
            if tat < victim_tat:
                victim, victim_tat = start + i, tat
        return victim, None


class _Lease:
    """What one instance holds for one key: leased tokens, or a refusal until a time."""

    __slots__ = ("limit", "left", "until", "size", "remaining", "full_at", "refused_until",
                 "asking_until")

    def __init__(self, limit: tuple[float, int]) -> None:
        self.limit = limit  # (rate, burst): a changed limit finds no lease of its own
        self.left = 0  # tokens granted and not spent yet
        self.until = 0.0  # when unspent tokens are dropped (monotonic)
        self.size = 1  # tokens the last grant held
        self.remaining = 0  # Redis's remaining after that grant
        self.full_at = 0.0  # when the bucket is full again, as Redis saw it (monotonic)
        self.refused_until = 0.0  # refused: no token for anyone before then (monotonic)
        self.asking_until = 0.0  # a batch is being asked for (until its answer or timeout)


class Leases:
    """Tokens a :class:`RedisBackend` took for hot keys, and the refusals it remembers.

    ``seconds`` is how long a leased token may wait to be spent (0: no leases, every
    decision asks Redis). A key that spends its lease before it expires asks for twice
    as many next time; one that leaves tokens asks for what it spent; a refused key
    starts again at one. While a batch is being asked for, requests of the same key that
    arrive meanwhile ask for one token each (so concurrent requests do not each take a
    batch and drain the bucket between them). At most ``max_keys`` keys are held (expired
    ones are dropped first, then all: a dropped lease wastes its tokens, never grants extra).

    Times are the moments the asks were *sent* (``sent`` of :meth:`record`): Redis decided
    after that, so a lease expires at most ``seconds`` after its grant and a refusal is
    never remembered past Redis's own ``Retry-After``.
    """

    def __init__(self, seconds: float = 0.05, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, ask_timeout: float = 1.0) -> None:
        self.seconds, self.max_keys, self.clock = seconds, max_keys, clock
        self.ask_timeout = ask_timeout  # a batch ask that never answered stops counting then
        self._held: dict[str, _Lease] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def take(self, key: str, rate: float, burst: int) -> tuple[Decision | None, int]:
        """A decision made from what is held (else None) and the tokens to ask Redis for."""
        if not self.seconds:
            return None, 1
        now = self.clock()
        with self._lock:
            lease = self._held.get(key)
            if lease is None or lease.limit != (rate, burst):
                return None, 1
            if lease.left and now < lease.until:
                lease.left -= 1
                return Decision(True, 0.0, max(0.0, lease.full_at - now),
                                lease.remaining + lease.left), 0
            if now < lease.refused_until:
                return Decision(False, lease.refused_until - now,
                                max(0.0, lease.full_at - now), 0), 0
            if now < lease.asking_until or lease.refused_until:
                return None, 1
            if now < lease.until:  # spent before it expired: the key wants more
                size = lease.size * 2
            else:
                size = max(1, lease.size - lease.left)
            size = max(1, min(size, burst // 2, int(rate * self.seconds)))
            if size > 1:
                lease.asking_until = now + self.ask_timeout
        return None, size

    def record(self, key: str, rate: float, burst: int, granted: int, decision: Decision,
               sent: float, want: int = 1) -> Decision:
        """Keep what Redis granted beyond this request (or its refusal); this request's decision.

        ``decision`` is Redis's answer for all ``granted`` tokens (its remaining counts
        them all spent); ``sent`` is when the ask of ``want`` tokens was sent (this
        object's clock). Only the answer to a batch ends the batch's asking window, and a
        single token never shrinks the next batch.
        """
        if not self.seconds:
            return decision
        now = self.clock()
        with self._lock:
            if len(self._held) >= self.max_keys:
                self._prune(now)
            lease = self._held.get(key)
            if lease is None or lease.limit != (rate, burst):
                lease = self._held[key] = _Lease((rate, burst))
            if want > 1:
                lease.asking_until = 0.0
            lease.full_at = sent + decision.reset
            if not granted:
                if lease.left and now < lease.until:
                    # Refused because this instance's own concurrent asks took the tokens:
                    # they are here, so spend one rather than refuse and waste them.
                    lease.left -= 1
                    return Decision(True, 0.0, decision.reset, lease.remaining + lease.left)
                lease.left, lease.size = 0, 1
                lease.refused_until = sent + decision.retry_after
                return decision
            if lease.left and now < lease.until:  # grants met: the earlier expiry
                lease.left += granted - 1
            else:
                lease.left, lease.until = granted - 1, sent + self.seconds
            lease.size = granted if want > 1 else max(lease.size, granted)
            lease.remaining, lease.refused_until = decision.remaining, 0.0
            return Decision(True, 0.0, decision.reset, decision.remaining + lease.left)

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._held.items()
                    if now >= v.until and now >= v.refused_until]:
            del self._held[key]
        if len(self._held) >= self.max_keys:
            self._held.clear()


# KEYS[1]: the key; ARGV: interval (1/rate), tolerance ((burst-1)*interval), burst, and how
# many tokens are wanted (a lease: see :class:`Leases`); at most as many as fit are granted.
# The reply's first element is the number granted (0: refused, nothing consumed).
# A stored time beyond this limit's empty bucket (left by a stricter limit) is capped, as
# in :func:`.ratelimit.gcra`, so a raised limit judges a drained client at once.
# Floats leave Lua as strings: a Lua number in a reply is truncated to an integer.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local full = now + burst * interval
local capped = tat > full
if capped then tat = full end
if tat - now > tolerance then
  if capped then
    redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX',
               math.ceil((tat - now) * 1000) + 1)
  end
  return {0, tostring(tat - now - tolerance), tostring(tat - now), 0}
end
local granted = math.floor((tolerance - (tat - now)) / interval + 1e-9) + 1
if granted > want then granted = want end
if granted < 1 then granted = 1 end
local new = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.6f', new), 'PX',
           math.ceil((new - now) * 1000) + 1)
local remaining = math.floor((burst * interval - (new - now)) / interval + 1e-9)
if remaining < 0 then remaining = 0 end
return {granted, '0', tostring(new - now), remaining}
"""


class RedisBackend:
    """GCRA state in Redis, shared by every instance; fails open, bounded in time."""

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", namespace: str = "trimtab:rl:",
                 timeout: float = 0.25, cooldown: float = 1.0, lease: float = 0.05) -> None:
        self.url, self.namespace, self.timeout, self.cooldown = url, namespace, timeout, cooldown
        self.leases = Leases(lease, ask_timeout=timeout)
        self.sha = hashlib.sha1(_GCRA_LUA.encode()).hexdigest()
        # EVALSHA <sha> 1: the head of every decision's command (see resp.pack).
        self._head = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$1\r\n1\r\n" % self.sha.encode()
        self._tails: dict[tuple[float, int, int], bytes] = {}
        self._own_client = url.startswith(("redis://", "unix://"))
        if self._own_client:
            parse_url(url)  # a bad URL fails here, not on every request
        # A connection belongs to the loop that opened it: one client per event loop, kept
        # while the loop lives. ``_current`` is the last used (loop, client), read as one
        # tuple so that a thread running another loop can never hand this one its client.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RespClient] = \
            weakref.WeakKeyDictionary()
        self._current: tuple[asyncio.AbstractEventLoop | None, RespClient | None] = (None, None)
        # rediss:// (TLS): redis-py's client and the script registered on it, per loop too.
        self._py_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aioredis.Redis, Any]] = weakref.WeakKeyDictionary()
        self._sync_client: redis.Redis | None = None
        self._sync_script: object = None
        self._down_until = 0.0

    async def decide(self, key: str, rate: float, burst: int) -> Decision | None:
        """The decision from a lease or Redis, or None (fail open) on error, timeout or cool-down."""
        started = time.monotonic()  # also when the ask is sent (the leases' clock)
        held, want = self.leases.take(key, rate, burst)
        if held is not None:
            return held
        if started < self._down_until:
            return None
        try:
            reply = await (self._ask(key, rate, burst, want, started) if self._own_client
                           else self._decide_redis_py(key, rate, burst, want))
            return self.leases.record(key, rate, burst, *_decision(reply), started, want)
        except (RespError, RedisError, OSError, TimeoutError, ValueError, TypeError):
            self._down_until = time.monotonic() + self.cooldown
            return None

    async def _ask(self, key: str, rate: float, burst: int, want: int, started: float) -> Any:
        """The script's reply for ``want`` tokens of ``key`` through this loop's own client."""
        loop = asyncio.get_running_loop()
        current = self._current
        client = current[1] if current[0] is loop else self._client_for(loop)
        tail = self._tails.get((rate, burst, want)) or self._tail(rate, burst, want)
        name = (self.namespace + key).encode()
        future = client.send(b"%b$%d\r\n%b\r\n%b" % (self._head, len(name), name, tail))
        if future is None:  # not connected: connect and decide, bounded as a whole
            async with asyncio.timeout(self.timeout):
                return await self._evalsha(client, name, rate, burst, want)
        try:
            return await future  # bounded by the connection's watchdog
        except RespReplyError as err:
            if not str(err).startswith("NOSCRIPT"):
                raise
        # Within what is left of this decision's bound: the watchdog would give the
        # fallback a window of its own, and the decision could wait twice the timeout.
        async with asyncio.timeout(max(0.0, self.timeout - (time.monotonic() - started))):
            return await client.call(b"EVAL", _GCRA_LUA, 1, name, *_args(1.0 / rate, burst, want))

    def decide_sync(self, key: str, rate: float, burst: int) -> Decision | None:
        """:meth:`decide` with a blocking client (WSGI workers), bounded by the socket timeout."""
        started = time.monotonic()
        held, want = self.leases.take(key, rate, burst)
        if held is not None:
            return held
        if started < self._down_until:
            return None
        interval = 1.0 / rate
        try:
            if self._sync_script is None:
                self._sync_client = redis.Redis.from_url(
                    self.url, socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout, retry_on_timeout=False)
                self._sync_script = self._sync_client.register_script(_GCRA_LUA)
            reply = self._sync_script(  # type: ignore[operator]
                keys=[self.namespace + key], args=_args(interval, burst, want))
            return self.leases.record(key, rate, burst, *_decision(reply), started, want)
        except (RedisError, OSError, TimeoutError, ValueError, TypeError):
            self._down_until = time.monotonic() + self.cooldown
            return None

    def _client_for(self, loop: asyncio.AbstractEventLoop) -> RespClient:
        """This loop's client (made on its first decision): loops taking turns keep theirs."""
        client = self._clients.get(loop)
        if client is None:
            # A client's connection refers to its loop, so an entry never leaves the weak
            # dict by itself: drop those of closed loops (their sockets close when collected).
            _forget_closed(self._clients)
            client = self._clients[loop] = RespClient(self.url, self.timeout)
        self._current = (loop, client)
        return client

    def _tail(self, rate: float, burst: int, want: int) -> bytes:
        """The packed ARGV of a limit and lease size (a handful: cached, bounded all the same)."""
        if len(self._tails) > 1024:
            self._tails.clear()
        tail = b"".join(b"$%d\r\n%b\r\n" % (len(a), a.encode())
                        for a in _args(1.0 / rate, burst, want))
        self._tails[(rate, burst, want)] = tail
        return tail

    async def _evalsha(self, client: RespClient, name: bytes, rate: float, burst: int,
                       want: int) -> Any:
        args = _args(1.0 / rate, burst, want)
        try:
            return await client.call(b"EVALSHA", self.sha, 1, name, *args)
        except RespReplyError as err:
            if not str(err).startswith("NOSCRIPT"):
                raise
        return await client.call(b"EVAL", _GCRA_LUA, 1, name, *args)

    async def _decide_redis_py(self, key: str, rate: float, burst: int, want: int) -> Any:
        # rediss:// (TLS) only: redis.asyncio connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        made = self._py_clients.get(loop)
        if made is None:
            _forget_closed(self._py_clients)
            client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry_on_timeout=False)
            made = self._py_clients[loop] = (client, client.register_script(_GCRA_LUA))
        async with asyncio.timeout(self.timeout):  # not wait_for: it can drop a cancel (3.11)
            return await made[1](keys=[self.namespace + key], args=_args(1.0 / rate, burst, want))

    async def close(self) -> None:
        """Close this loop's connections and the blocking client (a closed loop's client is
        dropped when another loop first decides)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.close()
        if self._current[0] is loop:
            self._current = (None, None)
        made = self._py_clients.pop(loop, None)
        if made is not None:
            await made[0].aclose()
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client, self._sync_script = None, None


def _forget_closed(clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]) -> None:
    for loop in [loop for loop in list(clients) if loop.is_closed()]:
        clients.pop(loop, None)


def _args(interval: float, burst: int, want: int) -> list[str]:
    return [repr(interval), repr((burst - 1) * interval), str(burst), str(want)]


def _decision(reply: list[bytes | int]) -> tuple[int, Decision]:
    """Tokens granted and Redis's decision (its remaining counts them all spent)."""
    granted, wait, reset, remaining = reply
    count = int(granted)
    return count, Decision(count > 0, float(wait), float(reset), int(remaining))

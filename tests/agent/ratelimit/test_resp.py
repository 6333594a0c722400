"""The limiter's own asyncio Redis client (agent/resp.py): bad input first, then sharing.

Raw asyncio servers on a loopback port stand in for a Redis that misbehaves (silent,
dropping the connection mid-reply, answering byte by byte); a real ``redis-server`` (the
fixture of tests/agent/test_redis_store.py) for reply errors, NOSCRIPT after SCRIPT FLUSH,
AUTH/SELECT and many concurrent decisions on one connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
from trimtab.agent.ratelimit import ENFORCE, Limit, Limiter
from trimtab.agent.ratelimit_store import RedisBackend
from trimtab.agent.resp import (
    RespClient,
    RespConnectionError,
    RespReplyError,
    RespTimeout,
    parse_url,
)

from tests.agent.test_redis_store import redis_url  # noqa: F401  (the redis-server fixture)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def raw_server(handler: Handler) -> tuple[asyncio.Server, str]:
    """A loopback TCP server on a port the OS picks; its redis:// URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"redis://127.0.0.1:{port}/0"


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One RESP command (an array of bulk strings) as the client sends it."""
    head = await reader.readline()
    assert head.startswith(b"*"), head
    parts = []
    for _ in range(int(head[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


# --- bad input --------------------------------------------------------------------------

def test_a_reply_error_fails_only_its_own_call(redis_url: str) -> None:  # noqa: F811
    async def run() -> list[object]:
        client = RespClient(redis_url, timeout=2.0)
        try:
            # Pipelined on one connection: the error in the middle keeps replies in step.
            return await asyncio.gather(client.call(b"SET", b"a", b"1"),
                                        client.call(b"NOSUCHCOMMAND", b"x"),
                                        client.call(b"INCR", b"a"),
                                        client.call(b"GET", b"missing"),
                                        return_exceptions=True)
        finally:
            await client.close()

    ok, error, counted, missing = asyncio.run(run())
    assert ok == b"OK"
    assert isinstance(error, RespReplyError) and str(error).startswith("ERR"), error
    assert counted == 2 and missing is None


def test_a_connection_closed_mid_pipeline_fails_every_waiting_call() -> None:
    async def run() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for _ in range(3):
                await read_command(reader)
            # The first reply whole, then half of the second, then the connection drops.
            writer.write(b"+PONG\r\n*4\r\n:1\r\n$1\r\n0")
            await writer.drain()
            writer.close()

        server, url = await raw_server(handler)
        client = RespClient(url, timeout=2.0)
        try:
            first, second, third = await asyncio.gather(
                client.call(b"PING"), client.call(b"EVALSHA", b"x", b"0"),
                client.call(b"PING"), return_exceptions=True)
            assert first == b"PONG"
            assert isinstance(second, RespConnectionError), second
            assert isinstance(third, RespConnectionError), third
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_a_silent_redis_fails_every_waiting_call_within_the_timeout() -> None:
    async def run() -> None:
        connections: list[int] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            while await reader.read(4096):  # accepts, reads, never answers
                pass
            writer.close()

        server, url = await raw_server(handler)
        client = RespClient(url, timeout=0.1)
        try:
            start = time.monotonic()
            results = await asyncio.gather(*(client.call(b"PING") for _ in range(20)),
                                           return_exceptions=True)
            took = time.monotonic() - start
            assert all(isinstance(r, RespTimeout) for r in results), results
            assert 0.09 <= took < 5.0, took  # bounded by the timeout, not hung (loaded CI)
            # The stuck connection was dropped: the next call opens a new one.
            with pytest.raises(RespTimeout):
                await client.call(b"PING")
            assert len(connections) == 2
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_a_silent_redis_fails_open_then_is_left_alone_for_the_cooldown() -> None:
    async def run() -> None:
        commands: list[list[bytes]] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    commands.append(await read_command(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, url = await raw_server(handler)
        backend = RedisBackend(url, timeout=0.1, cooldown=30.0)
        limiter = Limiter(backend)
        lim = Limit("g", "*", "global", 1.0, 1, ENFORCE)
        scope = {"type": "http", "client": ("1.2.3.4", 1), "headers": []}
        try:
            start = time.monotonic()
            verdicts = await asyncio.gather(*(limiter.check([lim], "/x", scope)
                                              for _ in range(5)))
            assert time.monotonic() - start < 5.0  # bounded, not hung (loaded CI hosts)
            assert [v is not None and v.refuse for v in verdicts] == [False] * 5
            sent = len(commands)
            assert sent == 5 and commands[0][0] == b"EVALSHA", commands
            later = await limiter.check([lim], "/x", scope)  # cool-down: Redis not asked
            assert later is not None and not later.refuse
            await asyncio.sleep(0.05)
            assert len(commands) == sent
        finally:
            await backend.close()
            server.close()
            await server.wait_closed()
        _, errors = limiter.metrics.snapshot()
        assert errors == {"redis": 6}

    asyncio.run(run())


def test_a_dropped_connection_fails_open_and_the_next_call_reconnects() -> None:
    async def run() -> None:
        connections: list[int] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            command = await read_command(reader)
            if len(connections) == 1:
                writer.write(b"*4\r\n:1\r\n")  # half a decision, then gone
            else:
                assert command[0] == b"EVALSHA"
                writer.write(b"*4\r\n:1\r\n$1\r\n0\r\n$4\r\n0.01\r\n:9\r\n")
            await writer.drain()
            writer.close()

        server, url = await raw_server(handler)
        backend = RedisBackend(url, timeout=1.0, cooldown=0.0)
        try:
            assert await backend.decide("k", 100.0, 10) is None
            again = await backend.decide("k", 100.0, 10)
            assert again is not None and again.allowed and again.remaining == 9
            assert len(connections) == 2
        finally:
            await backend.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_replies_split_anywhere_are_read_whole() -> None:
    reply = (b"*6\r\n:1\r\n$-1\r\n*2\r\n+OK\r\n$3\r\na\r\n\r\n*-1\r\n-ERR inner\r\n"
             b"$0\r\n\r\n")

    async def run() -> tuple[object, object]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_command(reader)
            await read_command(reader)
            for i in range(len(reply)):  # one byte per write: every split point
                writer.write(reply[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)
            writer.write(b":42\r\n")
            await writer.drain()
            writer.close()

        server, url = await raw_server(handler)
        client = RespClient(url, timeout=5.0)
        try:
            return await asyncio.gather(client.call(b"X"), client.call(b"Y"))
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    nested, number = asyncio.run(run())
    assert number == 42
    assert isinstance(nested, list) and nested[:3] == [1, None, [b"OK", b"a\r\n"]]
    assert nested[3] is None and isinstance(nested[4], RespReplyError) and nested[5] == b""


def test_a_protocol_violation_drops_the_connection() -> None:
    async def run() -> object:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_command(reader)
            writer.write(b"?what\r\n")
            await writer.drain()
            writer.close()

        server, url = await raw_server(handler)
        client = RespClient(url, timeout=2.0)
        try:
            return (await asyncio.gather(client.call(b"PING"), return_exceptions=True))[0]
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    assert isinstance(asyncio.run(run()), RespConnectionError)


def test_an_unreachable_redis_fails_within_the_timeout() -> None:
    async def run() -> None:
        server, url = await raw_server(lambda r, w: asyncio.sleep(0))
        server.close()
        await server.wait_closed()  # the port is closed now: connection refused
        client = RespClient(url, timeout=0.2)
        with pytest.raises(OSError):
            await client.call(b"PING")
        backend = RedisBackend(url, timeout=0.2, cooldown=0.0)
        assert await backend.decide("k", 1.0, 1) is None

    asyncio.run(run())


def test_a_bad_url_never_echoes_its_password() -> None:
    for bad in ("redis://:hunter2-secret@redis.example/abc",
                "redis://user:hunter2-secret@h:1/0?db=x",
                "redis://h/0?password=hunter2-secret&db=x",
                "unix://:hunter2-secret@?db=1",
                "http://:hunter2-secret@h/0"):
        with pytest.raises(ValueError) as err:
            parse_url(bad)
        assert "hunter2" not in str(err.value), err.value
    from trimtab.agent.ratelimit_control import make_backend
    with pytest.raises(ValueError) as err:
        make_backend("mongodb://admin:hunter2-secret@db", None, "api-1")
    assert "hunter2" not in str(err.value) and "mongodb" in str(err.value)


def test_a_connection_that_opens_after_its_caller_gave_up_is_kept_not_leaked() -> None:
    # The caller's own bound ends first; the shared attempt still finishes (AUTH answered
    # late). It used to be owned by nobody: the next call opened a second connection and
    # the first stayed open.
    async def run() -> None:
        connections: list[asyncio.StreamWriter] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            try:
                while True:
                    command = await read_command(reader)
                    if command[0] == b"AUTH":
                        await asyncio.sleep(0.15)
                    writer.write(b"+PONG\r\n" if command[0] == b"PING" else b"+OK\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, url = await raw_server(handler)
        client = RespClient(url.replace("redis://", "redis://:pw@"), timeout=2.0)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await client.call(b"PING")
            await asyncio.sleep(0.4)  # the attempt finishes meanwhile
            assert await client.call(b"PING") == b"PONG"
            assert len(connections) == 1
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_the_noscript_fallback_stays_inside_the_decisions_bound() -> None:
    # EVALSHA answered NOSCRIPT after 0.2 s, then EVAL after another 0.2 s: with a 0.25 s
    # bound the decision must fail open, not come back 0.4 s later with a verdict (the
    # fallback once got a fresh watchdog window of its own).
    async def run() -> None:
        seen: list[bytes] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    command = await read_command(reader)
                    seen.append(command[0])
                    if len(seen) > 2:  # the warm-up's EVALSHA and EVAL are answered at once
                        await asyncio.sleep(0.2)
                    writer.write(b"-NOSCRIPT No matching script.\r\n"
                                 if command[0] == b"EVALSHA" else b"*4\r\n:1\r\n$1\r\n0"
                                 b"\r\n$3\r\n1.0\r\n:0\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, url = await raw_server(handler)
        backend = RedisBackend(url, timeout=0.25, cooldown=0.0)
        try:
            assert await backend.decide("warm", 1.0, 1) is not None  # connected, answered
            assert await backend.decide("k", 1.0, 1) is None
            assert seen == [b"EVALSHA", b"EVAL", b"EVALSHA", b"EVAL"]
        finally:
            await backend.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_urls() -> None:
    assert parse_url("redis://127.0.0.1:7000/3") == ("127.0.0.1", 7000, None, None, None, 3)
    assert parse_url("redis://localhost") == ("localhost", 6379, None, None, None, 0)
    assert parse_url("redis://:s%40cret@h:1/0") == ("h", 1, None, None, "s@cret", 0)
    assert parse_url("redis://u:p@h:1?db=2") == ("h", 1, None, "u", "p", 2)
    assert parse_url("unix:///run/redis.sock?db=4&password=x") == \
        (None, None, "/run/redis.sock", None, "x", 4)
    for bad in ("http://h", "redis://h/x", "rediss://h"):
        with pytest.raises(ValueError):
            parse_url(bad)


# --- a real redis-server ------------------------------------------------------------------

def test_noscript_after_script_flush_loads_the_script_again(redis_url: str) -> None:  # noqa: F811
    admin = redis.Redis.from_url(redis_url)

    async def run() -> None:
        backend = RedisBackend(redis_url, timeout=2.0, cooldown=30.0)
        try:
            first = await backend.decide("flushed", 0.001, 30)
            assert first is not None and first.remaining == 29
            admin.script_flush()
            # Concurrent decisions all meet NOSCRIPT, and all are still decided.
            after = await asyncio.gather(*(backend.decide("flushed", 0.001, 30)
                                           for _ in range(10)))
            assert all(d is not None and d.allowed for d in after), after
            assert sorted(d.remaining for d in after if d) == list(range(19, 29))
            assert admin.script_exists(backend.sha) == [True]
        finally:
            await backend.close()

    asyncio.run(run())
    admin.close()


def test_password_and_db_from_the_url(redis_url: str) -> None:  # noqa: F811
    admin = redis.Redis.from_url(redis_url)
    port = admin.connection_pool.connection_kwargs["port"]
    admin.acl_setuser("limiter", enabled=True, passwords=["+pw2"], categories=["+@all"],
                      keys=["*"])
    admin.config_set("requirepass", "pw1")
    admin = redis.Redis.from_url(redis_url, password="pw1")
    try:
        async def run() -> None:
            for url, db in ((f"redis://:pw1@127.0.0.1:{port}/3", 3),
                            (f"redis://limiter:pw2@127.0.0.1:{port}?db=5", 5)):
                backend = RedisBackend(url, timeout=2.0, cooldown=0.0)
                decision = await backend.decide("authed", 1.0, 5)
                assert decision is not None and decision.remaining == 4, url
                await backend.close()
                assert redis.Redis(port=port, password="pw1", db=db).exists(
                    "trimtab:rl:authed") == 1
            for url in (f"redis://:wrong@127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/0"):
                backend = RedisBackend(url, timeout=2.0, cooldown=0.0)
                assert await backend.decide("refused", 1.0, 5) is None, url
                await backend.close()

        asyncio.run(run())
    finally:
        admin.config_set("requirepass", "")
        admin.close()


def test_concurrent_decisions_on_one_connection_match_the_sequential_path(
        redis_url: str) -> None:  # noqa: F811
    admin = redis.Redis.from_url(redis_url)

    async def run() -> None:
        backend = RedisBackend(redis_url, timeout=5.0, cooldown=30.0)
        try:
            await backend.decide("warm", 1.0, 1)
            before = admin.info("stats")["total_connections_received"]
            sequential = [await backend.decide("seq", 0.001, 120) for _ in range(300)]
            concurrent = await asyncio.gather(*(backend.decide("par", 0.001, 120)
                                                for _ in range(300)))
            # Several keys interleaved on the connection, each in its own order.
            mixed = await asyncio.gather(*(backend.decide(f"mix{i % 3}", 0.001, 40)
                                           for i in range(300)))
            assert admin.info("stats")["total_connections_received"] == before  # one connection
        finally:
            await backend.close()
        seq = [(d.allowed, d.remaining) for d in sequential if d]
        par = [(d.allowed, d.remaining) for d in concurrent if d]
        assert len(seq) == len(par) == 300 and par == seq
        assert sum(a for a, _ in seq) == 120
        for k in range(3):
            mine = [(d.allowed, d.remaining) for d in mixed[k::3] if d]
            assert mine == [(True, 39 - j) for j in range(40)] + [(False, 0)] * 60

    asyncio.run(run())
    admin.close()


def test_a_connection_killed_between_calls_is_replaced(redis_url: str) -> None:  # noqa: F811
    admin = redis.Redis.from_url(redis_url)

    async def run() -> None:
        backend = RedisBackend(redis_url, timeout=2.0, cooldown=30.0)
        try:
            assert await backend.decide("k", 1.0, 5) is not None
            assert admin.client_kill_filter(_type="normal") >= 1
            await asyncio.sleep(0.1)  # the loop sees the connection close
            again = await backend.decide("k", 1.0, 5)
            assert again is not None, "a closed idle connection must not cost a decision"
        finally:
            await backend.close()

    asyncio.run(run())
    admin.close()


def test_each_event_loop_gets_its_own_connection(redis_url: str) -> None:  # noqa: F811
    backend = RedisBackend(redis_url, timeout=2.0, cooldown=30.0)

    async def one() -> bool:
        decision = await backend.decide("loops", 1000.0, 1000)
        return decision is not None

    assert asyncio.run(one()) and asyncio.run(one()) and asyncio.run(one())
    asyncio.run(backend.close())

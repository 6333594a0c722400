"""Scrape limits, body cut-offs, timeouts, backoff and no-overlap against real loopback servers.

Servers are hand-written asyncio HTTP/1.1 servers on 127.0.0.1 (port chosen by the OS)
running in their own thread, so each test controls the bytes on the wire exactly:
endless chunked bodies, gzip bombs, one byte per 50 ms, sockets that never answer.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.targets import file as target_file
from trimtab.collectors.exposition import parse
from trimtab.collectors.limits import (
    BodyReader,
    LimitExceeded,
    Limits,
    SeriesChecker,
    backoff_delay,
    next_due,
)
from trimtab.collectors.scrape import HEADERS, ScrapeEngine, ScrapeResult, ScrapeTarget

from tests.support import wait_for

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MIB = 1024 * 1024


@dataclass
class Wire:
    """What a server saw: request headers, arrival times, bytes written, disconnects."""

    requests: list[dict[str, str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    sent: int = 0
    closed: int = 0  # handlers that ended because the client went away


class Servers:
    """An asyncio loop in a thread hosting any number of raw HTTP servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def serve(self, handler: Handler) -> str:
        """Start a server running ``handler`` per connection; return its /metrics URL."""
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the client hung up (a timeout or a cut-off): expected here
            finally:
                self._tasks.discard(task)
                writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(tracked, "127.0.0.1", 0)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self._servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics"

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):  # hung handlers wait forever: cancel them
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        s.close()


async def read_request(reader: asyncio.StreamReader, wire: Wire) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[1:]
    wire.requests.append({k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head) if k})
    wire.arrivals.append(time.time())


def response_head(status: int = 200, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "content-type: text/plain; version=0.0.4", "connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def static(wire: Wire, body: bytes | Callable[[], bytes], status: Callable[[], int] = lambda: 200,
           **headers: str) -> Handler:
    """Answer every request with ``body`` (a callable is called per request)."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, wire)
        data = body() if callable(body) else body
        writer.write(response_head(status(), content_length=str(len(data)), **headers) + data)
        await writer.drain()
    return handler


def chunked(wire: Wire, chunk: bytes, pause: float) -> Handler:
    """Headers, then ``chunk`` as an HTTP chunk every ``pause`` seconds, forever."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, wire)
        writer.write(response_head(transfer_encoding="chunked"))
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while True:
                writer.write(frame)
                await writer.drain()
                wire.sent += len(chunk)
                await asyncio.sleep(pause)
        except ConnectionError:
            wire.closed += 1
    return handler


def exposition(n_samples: int = 3, labels: str = 'route="/a"') -> bytes:
    lines = ["# TYPE demo_total counter"]
    lines += [f'demo_total{{{labels},i="{i}"}} {i}' for i in range(n_samples)]
    return ("\n".join(lines) + "\n").encode()


def scrape(target: ScrapeTarget, engine: ScrapeEngine | None = None) -> ScrapeResult:
    """One real scrape of ``target`` through the engine's code path and headers."""
    engine = engine or ScrapeEngine([target], lambda r: None)

    async def once() -> ScrapeResult:
        async with httpx.AsyncClient(headers=HEADERS) as client:
            return await engine.scrape_once(client, target)
    return asyncio.run(once())


def test_sample_limit_fails_whole_scrape_and_model_sees_down(servers: Servers) -> None:
    url = servers.serve(static(Wire(), exposition(12_345)))
    over = scrape(ScrapeTarget("api", url, sample_limit=10_000))
    assert (over.up, over.exposition) == (False, None)
    assert over.error == "sample_limit exceeded: 12,345 samples > 10,000"
    model = FleetModel()
    model.ingest(over)
    assert (model.health["api"].up, model.health["api"].samples) == (False, 0)
    assert model.health["api"].error == over.error
    exact = scrape(ScrapeTarget("api", url, sample_limit=12_345))
    assert exact.up and exact.exposition is not None and len(exact.exposition.samples) == 12_345


@pytest.mark.parametrize(("labels", "limit", "message"), [
    ('a="1",b="2"', {"label_limit": 2}, "label_limit exceeded: 3 labels > 2 on demo_total"),
    ('a_long_label_name="1"', {"label_name_length_limit": 10},
     "label_name_length_limit exceeded: a label name of 17 characters > 10 on demo_total"),
    (f'route="/{"x" * 5000}"', {"label_value_length_limit": 4096},
     "label_value_length_limit exceeded: 5,001 characters > 4,096 in label 'route' of demo_total"),
])
def test_label_limits_fail_whole_scrape(servers: Servers, labels: str, limit: dict[str, int],
                                        message: str) -> None:
    url = servers.serve(static(Wire(), exposition(5, labels)))
    result = scrape(ScrapeTarget("api", url, **limit))
    assert (result.up, result.exposition, result.error) == (False, None, message)
    unlimited = scrape(ScrapeTarget("api", url, **{k: 0 for k in limit}))
    assert unlimited.up and len(unlimited.exposition.samples) == 5


def test_label_checks_are_not_hidden_by_the_cache(servers: Servers) -> None:
    """The checker remembers label sets that passed: a new long value, or a stricter
    limit on the same target, must still be refused."""
    bodies = iter([exposition(3), exposition(3, f'route="{"y" * 300}"'), exposition(3), exposition(3)])
    url = servers.serve(static(Wire(), lambda: next(bodies)))
    target = ScrapeTarget("api", url, label_value_length_limit=200)
    engine = ScrapeEngine([target], lambda r: None)
    assert scrape(target, engine).up
    assert scrape(target, engine).error.startswith(  # same limits, one new long value
        "label_value_length_limit exceeded: 300 characters > 200")
    assert scrape(target, engine).up  # the layout cached before the refusal is fine again
    assert not scrape(replace(target, label_limit=1), engine).up  # same labels, stricter limit


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_body_size_limit_counts_decoded_bytes(servers: Servers, encoding: str) -> None:
    body = exposition(2000)
    data = gzip.compress(body) if encoding == "gzip" else body
    wire = Wire()
    url = servers.serve(static(wire, data, content_encoding=encoding))
    assert scrape(ScrapeTarget("api", url, body_size_limit=len(body))).up
    over = scrape(ScrapeTarget("api", url, body_size_limit=len(body) - 1))
    assert not over.up and over.error.startswith("body_size_limit exceeded:")
    assert f"{len(body) - 1:,}" in over.error
    assert "gzip" in wire.requests[0]["accept-encoding"]


def gzip_bomb(gib: int = 1) -> bytes:
    """A valid single-stream gzip of ``gib`` GiB of zeros (~1 MB per GiB), built in well
    under a second: with a full flush the compressor's output for each 16 MiB block of
    zeros is the same bytes, so one block is compressed and repeated."""
    block = bytes(16 * MIB)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    n = gib * 64
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + deflated * n + b"\x03\x00" + struct.pack("<II", crc, (n * 16 * MIB) & 0xFFFFFFFF)


def test_gzip_bomb_is_stopped_during_decompression(servers: Servers) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 2 * MIB
    url = servers.serve(static(Wire(), bomb, content_encoding="gzip"))
    tracemalloc.start()
    try:
        result = scrape(ScrapeTarget("api", url, body_size_limit=4 * MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not result.up
    assert result.error == ("body_size_limit exceeded: more than 4,194,304 bytes after decoding; "
                            "the read was stopped")
    assert peak < 32 * MIB, f"peak {peak / MIB:.0f} MiB while refusing a 1 GiB bomb"


def test_endless_chunked_body_is_cut_and_connection_closed(servers: Servers) -> None:
    wire = Wire()
    url = servers.serve(chunked(wire, b"#" * 65536, pause=0.0))
    result = scrape(ScrapeTarget("api", url, body_size_limit=1 * MIB))
    assert not result.up and result.error.startswith("body_size_limit exceeded: more than 1,048,576")
    wait_for(lambda: wire.closed == 1)  # the server's writes fail: the client hung up
    assert wire.sent < 64 * MIB  # bounded by the limit plus socket buffers, not endless


def test_slow_drip_body_is_cut_at_the_timeout(servers: Servers) -> None:
    wire = Wire()
    url = servers.serve(chunked(wire, b"#", pause=0.05))
    result = scrape(ScrapeTarget("api", url, interval=1.0, timeout=0.3))
    assert (result.up, result.error) == (False, "timed out after 0.3 s")
    assert result.duration >= 0.3
    wait_for(lambda: wire.closed == 1)
    assert wire.sent >= 2  # headers and body bytes did arrive: the timeout covers the body


def test_body_reader_edge_cases() -> None:
    body = exposition(50)
    two_members = gzip.compress(body[:100]) + gzip.compress(body[100:])
    reader = BodyReader("gzip", 10 * MIB)
    for i in range(0, len(two_members), 7):  # byte-odd pieces, as a network delivers them
        reader.feed(two_members[i:i + 7])
    assert reader.finish() == body
    truncated = BodyReader("gzip", 10 * MIB)
    truncated.feed(gzip.compress(body)[:-12])
    with pytest.raises(ValueError, match="ends early"):
        truncated.finish()
    with pytest.raises(ValueError, match="not valid gzip"):
        BodyReader("gzip", 10 * MIB).feed(b"plain text, not gzip")
    with pytest.raises(ValueError, match="unsupported Content-Encoding 'br'"):
        BodyReader("br", 10 * MIB)
    with pytest.raises(LimitExceeded) as info:
        BodyReader("", 5).feed(b"123456")
    assert info.value.limit == "body_size_limit"


def test_backoff_schedule() -> None:
    assert [backoff_delay(1.0, f) for f in range(9)] == [1, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(5.0, 10) == 60.0  # 60 s cap: 12 intervals
    assert backoff_delay(120.0, 10) == 120.0  # never below one interval
    assert backoff_delay(1.0, 10_000) == 30.0  # no overflow
    assert next_due(10.0, 10.5, 1.0, 4.0) == 14.0
    assert next_due(10.0, 15.5, 1.0, 4.0) == 16.0  # missed ticks skipped, the grid kept


def run_engine(targets: list[ScrapeTarget], done: Callable[[list[ScrapeResult]], bool]) -> list[ScrapeResult]:
    results: list[ScrapeResult] = []
    engine = ScrapeEngine(targets, results.append).start()
    try:
        wait_for(lambda: done(list(results)))
    finally:
        engine.stop()
    return list(results)


def test_backoff_doubles_then_recovery_resets_it(servers: Servers) -> None:
    wire, healthy = Wire(), threading.Event()
    url = servers.serve(static(wire, exposition(), status=lambda: 200 if healthy.is_set() else 500))
    # 80 ms to answer on loopback: at 40 ms a cold connection to the test server missed the
    # timeout on every attempt after recovery on this 2-core machine (seen: 4 runs in 6).
    interval = 0.1
    results: list[ScrapeResult] = []

    def failing_then_ok(rs: list[ScrapeResult]) -> bool:
        results[:] = rs
        if len(rs) >= 6:
            healthy.set()
        return sum(r.up for r in rs) >= 3

    run_engine([ScrapeTarget("api", url, interval=interval, timeout=0.08)], failing_then_ok)
    fails = [r for r in results if not r.up][:6]
    # Every failure counts toward the backoff; on a loaded machine a loopback answer can
    # also miss the 80 ms timeout, which is a failure of the same standing.
    assert {r.error for r in fails} <= {"HTTP 500 Internal Server Error", "timed out after 0.08 s"}, fails
    for k, (a, b) in enumerate(itertools.pairwise(fails), start=2):
        gap, expected = b.next_attempt - a.next_attempt, backoff_delay(interval, k)
        skipped = round((gap - expected) / interval)  # a stalled loop may skip whole ticks
        assert skipped >= 0 and abs(gap - expected - skipped * interval) < 0.005, (k, gap)
        assert b.timestamp >= a.next_attempt - 0.02  # never attempted before its time
    assert fails[-1].next_attempt - fails[-2].next_attempt >= 30 * interval - 0.005  # the cap
    ok = [r for r in results if r.up]
    assert ok[0].next_attempt - ok[0].timestamp < 15 * interval  # reset: next tick, not the cap
    gap = ok[1].next_attempt - ok[0].next_attempt
    assert abs(gap / interval - round(gap / interval)) < 0.1 and gap < 15 * interval


def test_hung_target_does_not_delay_a_good_one(servers: Servers) -> None:
    hung_wire = Wire()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, hung_wire)
        await asyncio.Event().wait()

    hung = ScrapeTarget("hung", servers.serve(never_answer), interval=2.0, timeout=1.5)
    good = ScrapeTarget("good", servers.serve(static(Wire(), exposition())), interval=0.1, timeout=0.09)
    results = run_engine([hung, good], lambda rs: any(r.target.name == "hung" for r in rs))
    stuck = next(r for r in results if r.target.name == "hung")
    assert (stuck.up, stuck.error) == (False, "timed out after 1.5 s")
    goods = [r for r in results if r.target.name == "good"]
    during = [r for r in goods if stuck.timestamp < r.timestamp < stuck.timestamp + stuck.duration]
    # A serial engine would have scraped "good" 0 times meanwhile; ~15 are due. On a loaded
    # machine a loopback answer may miss its 90 ms timeout, so not every one needs to be up.
    assert len(during) >= 3 and any(r.up for r in during)
    assert {r.error for r in goods if not r.up} <= {"timed out after 0.09 s"}


def test_never_two_scrapes_of_one_target_at_once(servers: Servers) -> None:
    """Responses alternate fast / slower than the timeout; the server counts requests that
    are in flight together (a timed-out one ends when the client closes its connection)."""
    wire, state = Wire(), {"in_flight": 0, "max": 0, "n": 0}
    delays = [0.01, 0.3, 0.03, 0.05, 0.3, 0.0]

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, wire)
        delay = delays[state["n"] % len(delays)]
        state["n"] += 1
        state["in_flight"] += 1
        try:
            # A client's close may be noticed just after its next request arrives on a new
            # connection: allow 50 ms before calling it an overlap (a real one lasts 300 ms).
            for _ in range(10):
                if state["in_flight"] == 1:
                    break
                await asyncio.sleep(0.005)
            state["max"] = max(state["max"], state["in_flight"])
            try:  # wait for the delay, or until the client hangs up
                await asyncio.wait_for(reader.read(1), delay)
                return
            except TimeoutError:
                pass
            body = exposition()
            writer.write(response_head(content_length=str(len(body))) + body)
            await writer.drain()
        finally:
            state["in_flight"] -= 1

    target = ScrapeTarget("api", servers.serve(counting), interval=0.1, timeout=0.09)
    results = run_engine([target], lambda rs: len(rs) >= 20)
    assert state["max"] == 1
    # Both paths ran: answered scrapes, and scrapes abandoned at the timeout.
    assert {r.error for r in results if not r.up} == {"timed out after 0.09 s"}
    assert any(r.up for r in results)


@pytest.mark.parametrize(("field_name", "value"), [
    ("sample_limit", -1), ("label_limit", 1.5), ("body_size_limit", True), ("label_value_length_limit", "4k"),
])
def test_invalid_limits_are_refused_naming_the_field(tmp_path: Path, field_name: str, value: object) -> None:
    bad = replace(ScrapeTarget("api", "http://127.0.0.1:9/metrics"), **{field_name: value})
    with pytest.raises(ValueError, match=field_name):
        ScrapeEngine([bad], lambda r: None).start()
    with pytest.raises(target_file.TargetsError, match=field_name):
        target_file.validate(bad)
    path = tmp_path / "targets.toml"
    target_file.add(path, ScrapeTarget("ok", "http://127.0.0.1:9/metrics", sample_limit=500))
    before = path.read_bytes()
    with pytest.raises(target_file.TargetsError, match=field_name):
        target_file.add(path, bad)
    assert path.read_bytes() == before
    toml_value = {True: "true", "4k": '"4k"'}.get(value, str(value))
    path.write_text(before.decode() + f'\n[[target]]\nname = "x"\nurl = "http://h:1/m"\n'
                                      f"{field_name} = {toml_value}\n")
    with pytest.raises(target_file.TargetsError, match=field_name):
        target_file.load(path)


def test_limits_round_trip_through_the_targets_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    target = ScrapeTarget("api", "http://127.0.0.1:9/metrics", body_size_limit=0, sample_limit=7,
                          label_limit=3, label_name_length_limit=20, label_value_length_limit=99)
    target_file.add(path, target)
    assert target_file.load(path) == [target]
    path.write_text('[[target]]\nname = "old"\nurl = "http://127.0.0.1:9/metrics"\n')
    assert target_file.load(path)[0].limits == ScrapeTarget("d", "http://h/m").limits  # defaults


def test_a_failing_sink_does_not_stop_scraping(servers: Servers) -> None:
    seen: list[ScrapeResult] = []

    def sink(result: ScrapeResult) -> None:
        seen.append(result)
        if len(seen) == 1:
            raise RuntimeError("bug in the consumer")

    url = servers.serve(static(Wire(), exposition()))
    engine = ScrapeEngine([ScrapeTarget("api", url, interval=0.05, timeout=0.04)], sink).start()
    try:
        wait_for(lambda: len(seen) >= 3)
    finally:
        engine.stop()


@pytest.mark.parametrize(("field", "at_limit", "over"), [
    ("label_limit", 'a="1",b="2"', 'a="1",b="2",c="3"'),
    ("label_name_length_limit", 'ab="1"', 'abc="1"'),
    ("label_value_length_limit", 'a="12"', 'a="123"'),
])
def test_each_label_limit_holds_to_the_character_and_0_is_no_limit(
        field: str, at_limit: str, over: str) -> None:
    """The first scrape's label sets are judged together (C-level passes), then one by one
    only when that says one may be over: the limit itself passes, one more is refused, a
    long value does not count against the name limit nor a long name against the value's."""
    limits = Limits(**{"label_limit": 0, "label_name_length_limit": 0,
                       "label_value_length_limit": 0, field: 2})
    body = "".join(f'm_{i}{{x="1"}} 1\n' for i in range(300))  # many fine label sets too
    SeriesChecker().check(parse(body + f"demo_total{{{at_limit}}} 1\n"), limits)
    with pytest.raises(LimitExceeded, match=f"^{field} exceeded") as refused:
        SeriesChecker().check(parse(body + f"demo_total{{{over}}} 1\n"), limits)
    assert "demo_total" in str(refused.value)
    SeriesChecker().check(parse(body + f"demo_total{{{over}}} 1\n"), Limits(0, 0, 0, 0, 0))
    other = {"label_name_length_limit": 'a="' + "v" * 50 + '"',
             "label_value_length_limit": "a" * 50 + '="1"', "label_limit": 'a="1"'}[field]
    SeriesChecker().check(parse(body + f"demo_total{{{other}}} 1\n"), limits)

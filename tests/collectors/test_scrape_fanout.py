"""Many targets on one shared client: each keeps its one connection from scrape to scrape.

httpx's pool keeps 20 idle connections by default and scans all of its connections on every
request; above 20 targets the engine reconnected every scrape (a TCP connect, a close, and
pool bookkeeping growing with the number of targets: the fan-out wall of issue 16.4).
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import httpcore
import pytest
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget

from tests.collectors.test_scrape_limits import Handler, Servers, Wire, exposition, read_request
from tests.support import wait_for

N_TARGETS = 30  # above httpx's default of 20 kept-alive connections


@dataclass
class Connections:
    """How many connections a server accepted."""

    accepted: int = 0
    closed: int = 0  # by the client


def keep_alive(conns: Connections, body: bytes) -> Handler:
    """Answer request after request on one connection, as a real exporter does."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.accepted += 1
        wire = Wire()
        while not reader.at_eof():
            try:
                await read_request(reader, wire)
            except asyncio.IncompleteReadError:
                conns.closed += 1  # the client closed the connection
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n"
                         b"content-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    return handler


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        s.close()


def test_each_target_keeps_its_connection_across_scrapes(servers: Servers) -> None:
    conns = [Connections() for _ in range(N_TARGETS)]
    urls = [servers.serve(keep_alive(c, exposition(20))) for c in conns]
    targets = [ScrapeTarget(f"t{i}", url, interval=0.5, timeout=0.45) for i, url in enumerate(urls)]
    results: dict[str, list[ScrapeResult]] = {t.name: [] for t in targets}
    engine = ScrapeEngine(targets, lambda r: results[r.target.name].append(r)).start()
    try:
        wait_for(lambda: all(sum(r.up for r in rs) >= 4 for rs in results.values()), timeout=60,
                 what="four good scrapes of every target")
    finally:
        engine.stop()
    for target, c in zip(targets, conns):
        scrapes = results[target.name]
        failed = sum(not r.up for r in scrapes)  # a timed-out scrape closes its connection
        assert c.accepted <= 1 + failed, (target.name, c.accepted, len(scrapes), failed)


def _pool_work_per_scrape(servers: Servers, n: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """Connection state checks (``is_idle``, httpcore's pool bookkeeping) per scrape with ``n``
    targets kept alive; counted, not timed, so load on the machine cannot move it much."""
    checks = 0
    original = httpcore.AsyncHTTPConnection.is_idle

    def counted(self: httpcore.AsyncHTTPConnection) -> bool:
        nonlocal checks
        checks += 1
        return original(self)

    urls = [servers.serve(keep_alive(Connections(), exposition(5))) for _ in range(n)]
    targets = [ScrapeTarget(f"t{i}", url, interval=0.5, timeout=0.45) for i, url in enumerate(urls)]
    results: dict[str, list[ScrapeResult]] = {t.name: [] for t in targets}
    engine = ScrapeEngine(targets, lambda r: results[r.target.name].append(r)).start()
    try:
        wait_for(lambda: all(len(rs) >= 2 for rs in results.values()), timeout=60,
                 what="every connection open and idle")
        with monkeypatch.context() as patch:
            patch.setattr(httpcore.AsyncHTTPConnection, "is_idle", counted)
            before = sum(map(len, results.values()))
            wait_for(lambda: all(len(rs) >= 5 for rs in results.values()), timeout=60,
                     what="three more scrapes of every target")
            scrapes = sum(map(len, results.values())) - before
    finally:
        engine.stop()
    return checks / scrapes


def test_pool_work_per_scrape_does_not_grow_with_the_number_of_targets(
        servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    few = _pool_work_per_scrape(servers, 8, monkeypatch)
    many = _pool_work_per_scrape(servers, 48, monkeypatch)
    # One shared pool scans every connection for each idle one on each request: per scrape
    # that grows with the square of the targets (36x from 8 to 48). Flat means per origin.
    assert many <= 2 * few + 10, (few, many)


def test_removing_a_target_closes_its_idle_connection(servers: Servers) -> None:
    kept, removed = Connections(), Connections()
    targets = [ScrapeTarget(name, servers.serve(keep_alive(c, exposition(3))), interval=0.5, timeout=0.45)
               for name, c in (("kept", kept), ("removed", removed))]
    results: dict[str, list[ScrapeResult]] = {t.name: [] for t in targets}
    engine = ScrapeEngine(targets, lambda r: results[r.target.name].append(r)).start()
    try:
        wait_for(lambda: all(len(rs) >= 2 for rs in results.values()), timeout=30, what="scrapes")
        engine.remove_target("removed")
        # Its origin's pool would otherwise hold the idle socket until the engine stops.
        wait_for(lambda: removed.closed == 1, timeout=30, what="the removed target's connection closed")
        after = len(results["kept"])
        wait_for(lambda: len(results["kept"]) >= after + 2, timeout=30, what="the kept target scraped on")
        assert (kept.accepted, kept.closed, removed.accepted) == (1, 0, 1)  # before stop closes all
    finally:
        engine.stop()
    assert all(r.up for r in results["kept"])


# Run in a child process: an audit hook cannot be removed once added.
_WATCH_IMPORTS = """
import json, sys, threading, time
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

recording, seen, counts = threading.Event(), set(), {}
def hook(event, args):
    if event == "import" and recording.is_set() and threading.current_thread().name == "trimtab-scrape":
        seen.add(args[0])
sys.addaudithook(hook)

def until(ok):
    deadline = time.monotonic() + 60
    while not ok():
        assert time.monotonic() < deadline, counts
        time.sleep(0.02)

targets = [ScrapeTarget(f"t{i}", url, interval=0.3, timeout=0.25) for i, url in enumerate(sys.argv[1:])]
engine = ScrapeEngine(targets, lambda r: counts.__setitem__(r.target.name, counts.get(r.target.name, 0) + 1))
engine.start()
try:
    until(lambda: len(counts) == len(targets) and min(counts.values()) >= 2)
    recording.set()
    base = dict(counts)
    until(lambda: all(counts[name] >= n + 3 for name, n in base.items()))
    recording.clear()
finally:
    engine.stop()
print(json.dumps(sorted(seen)))
"""


def test_steady_scrapes_look_for_no_module(servers: Servers) -> None:
    """A scrape imports nothing once the engine runs: a module that is not installed is looked
    for on disk at every attempt (httpcore tried ``import sniffio`` for each lock it set up,
    a search of every sys.path entry, several times per scrape)."""
    urls = [servers.serve(keep_alive(Connections(), exposition(5))) for _ in range(3)]
    out = subprocess.run([sys.executable, "-c", _WATCH_IMPORTS, *urls], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_a_target_waiting_for_its_next_scrape_holds_nothing_of_its_last(servers: Servers) -> None:
    """What the sink was handed is the sink's: the engine keeps no reference to it while
    the target sleeps, so a scrape's values die with the consumer's last use. Held, 200
    targets' last scrapes (a list of 2,000 values each) were young objects that every
    collection on the cockpit's GUI thread walked (issue 16)."""
    url = servers.serve(keep_alive(Connections(), exposition(20)))
    seen: list[weakref.ref] = []
    engine = ScrapeEngine([ScrapeTarget("slow", url, interval=2.0, timeout=1.0)],
                          lambda r: seen.append(weakref.ref(r.exposition))).start()
    try:
        wait_for(lambda: bool(seen), timeout=30, what="the first scrape")
        time.sleep(0.2)  # the target is asleep until its next scrape, 2 s away
        gc.collect()
        assert seen[0]() is None, gc.get_referrers(seen[0]())
    finally:
        engine.stop()

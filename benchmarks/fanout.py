"""Scrape fan-out: N loopback targets x S samples at a 1 s interval.

Two figures, in one run:

- CPU-seconds per million samples of trimtab's collector (``ScrapeEngine`` with
  its per-target ``TargetParser``, feeding ``FleetModel.ingest`` per scrape and
  ``FleetModel.tick`` per cycle, as the cockpit wires them), against a minimal
  scraper with an httpx loop (one thread, one asyncio loop, one shared
  ``AsyncClient``, streamed bodies, same offsets and interval) that parses with
  prometheus_client's ``text_string_to_metric_families``. Both scrape the same
  kind of targets; the peer does less (no model). trimtab's engine reads plain
  ``http://`` targets with its own GET (``collectors/http1.py``: ~1 ms less CPU a
  scrape than httpx), a small part of the peer's figure, which its parser makes.
- the largest N one core sustains at S = 2,000: every target scraped every
  interval (no gap over 1.5 intervals, no failed scrape) and the collector
  thread below one core.
- scaling: trimtab's CPU-seconds per million samples at 10 and at 200 targets, and
  their ratio (the goal: flat within 20 %). A scrape that failed (timed out on a
  machine too busy to give the thread its turn) delivers no samples but cost CPU, so
  the line also gives the failed scrapes of both runs: with failures the ratio
  overstates the growth.

CPU is the collector thread's own clock (``pthread_getcpuclockid``). The targets
are served by a separate process (one asyncio process, one port per target, as
tests/app/ui/metrics_farm.py does, but keep-alive and with precomputed bodies
rotated per scrape so serving stays cheap); its CPU is not counted, only printed
to show it was not the bottleneck. The payload is histogram-heavy, rendered by
prometheus_client's ``generate_latest`` (default buckets, ``_created`` series): 60
successive scrapes per target whose counters only grow, as a real program's do, so the
ring's wrap is a counter reset once a minute per target (a real fleet restarts far less
often; with 6 bodies every range held a reset and the model never took its steady path).

Run: ``.venv/bin/python benchmarks/fanout.py`` (about 2 minutes) or ``--quick``.
``--in-process N ...`` measures the same per-scrape work without the network (each target's
``TargetParser``, the engine's limit check and name mapping, ``FleetModel.ingest`` and one
``tick`` per cycle, on the farm's bodies) for each N: CPU per million samples that no other
program's load can turn into timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Self

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.app.cli.runtime import settle_gc
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import TargetParser
from trimtab.collectors.limits import SeriesChecker
from trimtab.collectors.scrape import (
    ACCEPT,
    ScrapeEngine,
    ScrapeResult,
    ScrapeTarget,
    scrape_offset,
)
from trimtab.collectors.scrape_process import COLLECTORS, ScrapeProcess

SAMPLES = 2000
BODIES = 60  # successive scrapes per target, rotated: values grow, the wrap is a counter reset
INTERVAL, TIMEOUT = 1.0, 0.8
METHODS, STATUSES = ("GET", "POST"), ("200", "500")
PER_COMBO = 20  # 15 default buckets + _count + _sum + _created, counter _total + _created


# --- the targets' process -------------------------------------------------------------------

def build_bodies(samples: int, seed: int = 7) -> list[bytes]:
    """Successive HTTP responses of one target with about ``samples`` samples, values moving."""
    rng = random.Random(seed)
    registry = CollectorRegistry()
    labels = ["route", "method", "status"]
    latency = Histogram("trimtab_http_request_duration_seconds", "Latency", labels,
                        registry=registry)
    requests = Counter("trimtab_http_requests", "Requests", labels, registry=registry)
    routes = max(1, round(samples / PER_COMBO / (len(METHODS) * len(STATUSES))))
    combos = [(f"/api/v1/resource_{i}/{{id}}", m, s)
              for i in range(routes) for m in METHODS for s in STATUSES]
    out = []
    for _ in range(BODIES):
        for _ in range(2000):
            combo = rng.choice(combos)
            latency.labels(*combo).observe(rng.lognormvariate(-3.0, 1.2))
            requests.labels(*combo).inc()
        body = generate_latest(registry)
        out.append(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return out


async def serve(n: int, samples: int) -> None:
    """Serve ``n`` targets on loopback ports (printed as one line) until killed."""
    responses = build_bodies(samples)
    servers, ports = [], []
    for i in range(n):
        turn = iter(range(i, 10**12))  # each target starts at a different body

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         turn: object = turn) -> None:
            try:
                while await reader.readline():  # keep-alive: one request after another
                    while await reader.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    writer.write(responses[next(turn) % BODIES])  # type: ignore[call-overload]
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    print(" ".join(map(str, ports)), flush=True)
    await asyncio.Event().wait()


class Farm:
    """The target-serving subprocess; always terminated (then killed) on exit."""

    def __init__(self, n: int, samples: int) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(n), str(samples)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip():
            self.close()
            raise RuntimeError("the target farm did not start")
        self.urls = [f"http://127.0.0.1:{p}/metrics" for p in line.split()]

    def cpu(self) -> float:
        """The farm's CPU-seconds so far."""
        return process_cpu(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- measuring a collector ------------------------------------------------------------------

@dataclass
class Tally:
    """What a collector's sink saw: per target, (start time, samples or None when it failed)."""

    since: float = math.inf  # only scrapes started from here on count
    scrapes: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)

    def record(self, target: str, started: float, samples: int | None) -> None:
        if started >= self.since:
            self.scrapes.setdefault(target, []).append((started, samples))

    def window(self, names: Sequence[str], until: float) -> tuple[int, int, int]:
        """(samples, failed scrapes, targets with a gap over 1.5 intervals) in [since, until)."""
        samples = failed = missed = 0
        for name in names:
            kept = [(t, n) for t, n in list(self.scrapes.get(name, [])) if t < until]
            samples += sum(n for _, n in kept if n is not None)
            failed += sum(n is None for _, n in kept)
            times = [self.since, *(t for t, _ in kept), until]
            missed += any(b - a > 1.5 * INTERVAL for a, b in pairwise(times))
        return samples, failed, missed


@dataclass
class Trial:
    """One measured run of a collector over N targets."""

    who: str
    n: int
    seconds: float
    cpu: float  # collector thread CPU-seconds
    samples: int
    failed: int
    missed: int
    farm_cpu: float

    @property
    def per_million(self) -> float:
        return self.cpu / self.samples * 1e6 if self.samples else math.inf

    @property
    def load(self) -> float:
        return self.cpu / self.seconds

    @property
    def sustained(self) -> bool:
        return self.samples > 0 and not self.failed and not self.missed and self.load < 1.0

    def line(self) -> str:
        return (f"{self.who:>17} N={self.n:<4} {self.samples / self.seconds:>9,.0f} samples/s  "
                f"{self.per_million:6.2f} CPU-s/M  collector {self.load:4.2f} core  "
                f"farm {self.farm_cpu / self.seconds:4.2f} core  failed {self.failed}  "
                f"missed {self.missed}/{self.n}")


def thread_cpu(thread: threading.Thread) -> float:
    """CPU-seconds used so far by ``thread`` alone."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def process_cpu(pid: int) -> float:
    """CPU-seconds used so far by process ``pid`` (utime + stime from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(who: str, farm: Farm, tally: Tally, cpu: Callable[[], float],
            warm: float, seconds: float) -> Trial:
    """Let the collector settle for ``warm`` s, then count ``seconds`` of its work
    (``cpu()``: the collector's CPU-seconds so far)."""
    time.sleep(warm)  # first scrapes (cold parses) and the targets' offsets pass
    tally.since = time.time()
    cpu0, farm0 = cpu(), farm.cpu()
    time.sleep(seconds)
    cpu1, farm1, until = cpu(), farm.cpu(), time.time()
    samples, failed, missed = tally.window([f"t{i}" for i in range(len(farm.urls))], until)
    return Trial(who, len(farm.urls), until - tally.since, cpu1 - cpu0, samples, failed, missed,
                 farm1 - farm0)


COLLECTOR = ["process"]  # --collector: where trimtab's scraping runs


def run_trimtab(farm: Farm, warm: float, seconds: float) -> Trial:
    """trimtab's collector as the cockpit wires it: engine → FleetModel.ingest / tick.

    With ``--collector process`` (the cockpit's default) the CPU is the scrape process's and
    the cockpit thread's that feeds the model, together: "one core" holds for their sum."""
    model, tally = FleetModel(), Tally()

    def sink(result: ScrapeResult) -> None:
        expo = result.exposition
        tally.record(result.target.name, result.timestamp,
                     len(expo.samples) if result.up and expo is not None else None)
        model.ingest(result)

    targets = [ScrapeTarget(f"t{i}", url, interval=INTERVAL, timeout=TIMEOUT)
               for i, url in enumerate(farm.urls)]
    settle_gc()
    kind = COLLECTOR[0]
    engine = COLLECTORS[kind](targets, sink, on_cycle=model.tick, cycle_interval=INTERVAL).start()
    try:
        thread = engine._thread  # the collector thread (in process mode: the one feeding the model)
        assert thread is not None
        pid = engine.pid if isinstance(engine, ScrapeProcess) else None

        def cpu() -> float:
            assert thread is not None
            return thread_cpu(thread) + (process_cpu(pid) if pid is not None else 0.0)

        return measure(f"trimtab ({kind})", farm, tally, cpu, warm, seconds)
    finally:
        engine.stop()


# --- the peer: the same loop, prometheus_client's parser ----------------------------------

class PeerScraper:
    """A minimal scraper: one thread, one asyncio loop, one shared httpx.AsyncClient."""

    def __init__(self, urls: Sequence[str], sink: Callable[[str, float, int | None], None]) -> None:
        self.targets = [ScrapeTarget(f"t{i}", url, interval=INTERVAL, timeout=TIMEOUT)
                        for i, url in enumerate(urls)]
        self.sink = sink
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),),
                                       name="peer-scrape", daemon=True)

    def start(self) -> PeerScraper:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.stop_event is not None:  # created by run() as the thread started
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)
        self.loop.close()

    async def run(self) -> None:
        self.stop_event = asyncio.Event()
        limits = httpx.Limits(max_connections=max(64, len(self.targets) * 2))
        async with httpx.AsyncClient(limits=limits, headers={"accept": ACCEPT}) as client:
            tasks = [asyncio.create_task(self.target_loop(client, t)) for t in self.targets]
            await self.stop_event.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def target_loop(self, client: httpx.AsyncClient, target: ScrapeTarget) -> None:
        """Same schedule as ScrapeEngine: stable offset, fixed ticks, missed ticks skipped."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(scrape_offset(target))
        next_at = loop.time()
        while True:
            started = time.time()
            try:
                body = await asyncio.wait_for(self.fetch(client, target.url), target.timeout)
                families = list(text_string_to_metric_families(body))
                self.sink(target.name, started, sum(len(f.samples) for f in families))
            except (TimeoutError, httpx.HTTPError, OSError, ValueError):
                self.sink(target.name, started, None)
            next_at += target.interval
            now = loop.time()
            if next_at < now:
                next_at = now + target.interval
            await asyncio.sleep(next_at - now)

    @staticmethod
    async def fetch(client: httpx.AsyncClient, url: str) -> str:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            chunks = [chunk async for chunk in response.aiter_bytes()]
        return b"".join(chunks).decode("utf-8")


def run_peer(farm: Farm, warm: float, seconds: float) -> Trial:
    """The peer scraper over the farm's targets, measured like trimtab's collector."""
    tally = Tally()
    settle_gc()
    peer = PeerScraper(farm.urls, tally.record).start()
    try:
        return measure("prometheus_client", farm, tally, lambda: thread_cpu(peer.thread), warm, seconds)
    finally:
        peer.stop()


# --- without the network ----------------------------------------------------------------------

def in_process(n: int, cycles: int = 12, warm: int = 3) -> float:
    """CPU-seconds per million samples of the engine's per-scrape work and the model's tick
    for ``n`` targets, ``warm`` cycles untimed (first scrapes are cold parses); prints a line."""
    bodies = [raw.split(b"\r\n\r\n", 1)[1].decode() for raw in build_bodies(SAMPLES)]
    targets = [ScrapeTarget(f"t{i}", f"http://127.0.0.1:9/t{i}", interval=INTERVAL, timeout=TIMEOUT)
               for i in range(n)]
    engine = ScrapeEngine(targets, lambda result: None)
    parsers, checkers = [TargetParser() for _ in targets], [SeriesChecker() for _ in targets]
    model, start, samples, cpu0 = FleetModel(), time.time() - cycles - warm, 0, 0.0
    settle_gc()
    for cycle in range(warm + cycles):
        if cycle == warm:
            samples, cpu0 = 0, time.process_time()
        now = start + cycle
        for i, target in enumerate(targets):
            expo = parsers[i].parse(bodies[(i + cycle) % BODIES], "text/plain; version=0.0.4")
            checkers[i].check(expo, target.limits)
            expo = engine._normalise(target.name, expo)
            samples += len(expo.columns()[0])
            model.ingest(ScrapeResult(target, now + i / n, True, 0.01, expo))
        model.tick(now + INTERVAL * 0.999)
    per_million = (time.process_time() - cpu0) / samples * 1e6
    print(f"in-process N={n:<4} {per_million:6.2f} CPU-s per M samples", flush=True)
    return per_million


# --- the run --------------------------------------------------------------------------------

def trial(run: Callable[[Farm, float, float], Trial], n: int, warm: float, seconds: float) -> Trial:
    """One collector over a fresh farm of ``n`` targets; prints its line."""
    with Farm(n, SAMPLES) as farm:
        result = run(farm, warm, seconds)
    print(result.line(), flush=True)
    return result


def largest_sustained(first: Trial, warm: float, seconds: float,
                      probes: int) -> tuple[int, float]:
    """(largest N sustained, smallest N that was not), by bisection from a guess.

    The guess (N at 0.9 core from ``first``'s load) is optimistic: scrapes queue
    behind parses in the one loop, and time out, before the thread reaches a core.
    """
    lo, hi = (first.n if first.sustained else 0), math.inf
    n = max(lo + 1, int(0.9 * first.n / max(first.load, 1e-6)))
    for _ in range(probes):
        if trial(run_trimtab, n, warm, seconds).sustained:
            lo = n
        else:
            hi = n
        n = int(n * 1.25) + 1 if math.isinf(hi) else (lo + int(hi)) // 2
        if not lo < n < hi:
            break
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description="Scrape fan-out: trimtab vs prometheus_client")
    ap.add_argument("--quick", action="store_true", help="shorter windows, fewer probes")
    ap.add_argument("--serve", nargs=2, type=int, metavar=("N", "S"), help=argparse.SUPPRESS)
    ap.add_argument("--in-process", nargs="+", type=int, metavar="N",
                    help="only the per-scrape work without the network, for each N")
    ap.add_argument("--collector", choices=("process", "thread"), default="process",
                    help="trimtab scrapes in a process of its own (the default, as the cockpit) "
                         "or in a thread")
    args = ap.parse_args()
    COLLECTOR[0] = args.collector
    if args.serve:
        asyncio.run(serve(*args.serve))
        return
    if args.in_process:
        figures = [in_process(n) for n in args.in_process]
        print(f"in-process: {figures[-1] / figures[0]:.2f}x the CPU per sample at N={args.in_process[-1]} "
              f"as at N={args.in_process[0]}")
        return
    warm, seconds, probes = (2.5, 4.0, 2) if args.quick else (3.0, 10.0, 5)
    peer_n = 4  # prometheus_client parses ~40k samples/s here: 4 x 2,000 per second is ~0.3 core
    print(f"~{SAMPLES} samples per target, {INTERVAL:.0f} s interval, {seconds:.0f} s windows")
    peer = trial(run_peer, peer_n, warm, seconds)
    ours = trial(run_trimtab, peer_n, warm, seconds)
    # 200 first scrapes are 200 cold parses: let them pass before the window opens.
    small, large = trial(run_trimtab, 10, warm, seconds), trial(run_trimtab, 200, warm + 10, seconds)
    probe = trial(run_trimtab, 40, warm, seconds)
    best, failed_at = largest_sustained(probe, warm, seconds, probes)
    print(f"largest sustained N={best}" + (f"; N={failed_at:.0f} was not" if failed_at < math.inf
                                            else "; no failing N found within the probes"))
    print(f"scaling: {small.per_million:.2f} CPU-s per M samples at N=10, {large.per_million:.2f} at N=200 "
          f"({large.per_million / small.per_million:.2f}x; failed scrapes {small.failed} and {large.failed})")
    print(f"fanout: trimtab {ours.per_million:.2f} CPU-s per M samples vs prometheus_client "
          f"{peer.per_million:.1f} ({peer.per_million / ours.per_million:.1f}x); "
          f"one core sustains N={best} targets x {SAMPLES} samples")


if __name__ == "__main__":
    main()

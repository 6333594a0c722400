"""Store contention benchmark: write_cycle latency while another thread runs big queries.

A store of TARGETS targets × 480 series (per target: 30 routes × 12 histogram
buckets, their _sum and _count, 60 gauges) holds CYCLES one-second cycles,
folded into chunks of 240. A reader thread then queries, in a loop, every
bucket series of every target over the whole history at full resolution (what
a long History replay or a snapshot export asks for), while the main thread
writes WRITES more cycles, one every INTERVAL seconds as the collector would,
timing each ``write_cycle``. The reader pauses GAP seconds between queries (a
replay does some work between its queries too); without it the old locking
starves the writer for many queries in a row and the run takes many minutes.
One untimed cycle is written first: the first write after opening resolves
every series anew in both modes.

Even with reads off the lock the writer still shares the GIL with the decoding
thread (as it would with any busy Python thread), which is what remains of its
tail latency in the concurrent run.

Peer: the same run on an identical copy of the store, with each query wrapped
in ``with store._lock:`` — the old behaviour, where a query held the write
lock for its whole read.

Run: .venv/bin/python benchmarks/store_contention.py [--targets 8] [--cycles 2400]
     [--writes 100] [--interval 0.05] [--gap 0.02]
The last line is the figure.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from trimtab.app.store.store import Labels, Store

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
           "10.0", "+Inf")
NAME = "http_request_duration_seconds"
T0 = 1_700_000_000.0


def make_series(targets: int) -> list[tuple[str, str, Labels]]:
    """480 series per target: 30 routes × (12 buckets + sum + count) and 60 gauges."""
    out: list[tuple[str, str, Labels]] = []
    for k in range(targets):
        target = f"api-{k}"
        for route in range(30):
            base = (("method", "GET"), ("route", f"/r{route}"))
            out += [(target, f"{NAME}_bucket", base + (("le", le),)) for le in BUCKETS]
            out += [(target, f"{NAME}_sum", base), (target, f"{NAME}_count", base)]
        out += [(target, "process_gauge", (("slot", str(s)),)) for s in range(60)]
    return out


class Cycles:
    """Cycle ``i``'s rows: cumulative counters and random gauges, deterministic."""

    def __init__(self, series: list[tuple[str, str, Labels]]) -> None:
        self.series = series
        self.rng = np.random.default_rng(7)
        self.totals = np.zeros(len(series))

    def rows(self) -> list[tuple[str, str, Labels, float]]:
        self.totals += self.rng.poisson(2.0, len(self.series))
        return [(t, n, labels, v) for (t, n, labels), v in zip(self.series,
                                                               self.totals.tolist())]


def build(path: Path, series: list[tuple[str, str, Labels]], cycles: int) -> Cycles:
    """Write ``cycles`` cycles; return the generator to go on from."""
    gen = Cycles(series)
    with Store(path) as store:
        for i in range(cycles):
            store.write_cycle(T0 + i, gen.rows())
    return gen


def run(path: Path, gen: Cycles, first: int, args: argparse.Namespace,
        locked: bool) -> tuple[np.ndarray, list[float]]:
    """Write latencies (s) while a thread queries; and the durations of those queries."""
    stop = threading.Event()
    query_s: list[float] = []
    with Store(path) as store:
        store.write_cycle(T0 + first, gen.rows())  # warm-up, untimed

        def reader() -> None:
            while not stop.is_set():
                began = time.perf_counter()
                with store._lock if locked else nullcontext():  # the old locking, for the peer
                    store.query(f"{NAME}_bucket", start=T0, end=T0 + 10**7, max_points=2**62)
                query_s.append(time.perf_counter() - began)
                stop.wait(args.gap)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        while not query_s:  # start writing once the reader is in its stride
            time.sleep(0.01)
        latencies = []
        for i in range(first + 1, first + 1 + args.writes):
            rows = gen.rows()
            began = time.perf_counter()
            store.write_cycle(T0 + i, rows)
            latencies.append(time.perf_counter() - began)
            time.sleep(args.interval)
        stop.set()
        thread.join()
    return np.array(latencies), query_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=2400)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--gap", type=float, default=0.02)
    args = parser.parse_args()
    series = make_series(args.targets)
    with tempfile.TemporaryDirectory(prefix="trimtab-contention-") as tmp:
        base = Path(tmp) / "base.db"
        began = time.perf_counter()
        gen = build(base, series, args.cycles)
        print(f"store: {len(series)} series x {args.cycles} cycles, "
              f"{base.stat().st_size / 1e6:.1f} MB, built in {time.perf_counter() - began:.1f} s")
        p99 = {}
        for locked in (False, True):
            path = Path(tmp) / f"{'locked' if locked else 'concurrent'}.db"
            shutil.copyfile(base, path)
            state = gen.rng.bit_generator.state, gen.totals.copy()
            lat, queries = run(path, gen, args.cycles, args, locked)
            gen.rng.bit_generator.state, gen.totals = state  # the peer writes the same rows
            ms = lat * 1e3
            p99[locked] = float(np.percentile(ms, 99))
            label = "locked reads (old)" if locked else "concurrent reads"
            print(f"{label:>19}: write_cycle p50 {np.percentile(ms, 50):7.2f} ms  "
                  f"p99 {p99[locked]:7.2f} ms  max {ms.max():7.2f} ms   "
                  f"({len(queries)} queries, median {np.median(queries):.2f} s each)")
    print(f"write p99 ratio (locked reads / concurrent reads): {p99[True] / p99[False]:.1f}x")


if __name__ == "__main__":
    main()

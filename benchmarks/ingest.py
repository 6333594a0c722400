"""Ingest benchmark: trimtab Store.write_cycle vs sqlite-utils insert_all into a plain table.

Both get the same rows: SERIES series (histograms of 12 buckets + _sum + _count
per route, plus float gauges) over CYCLES scrape cycles one second apart with
scheduling jitter. Both commit one transaction per cycle, in WAL mode with
synchronous=NORMAL. The peer's records (dicts with an integer series id, as
insert_all wants) are built before its clock starts; the store's time
includes resolving (target, name, labels) to series ids.

Bytes per sample = file size / samples, measured after the WAL is
checkpointed into the main file and after VACUUM (both printed), for both.
The last line is the figure.

Run: .venv/bin/python benchmarks/ingest.py [--series 2000] [--cycles 600]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlite_utils
from trimtab.app.store.store import Labels, Store

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
           "10.0", "+Inf")


def make_series(n: int) -> list[tuple[str, str, Labels, str]]:
    """(target, name, labels, kind) for ``n`` series, histogram-heavy like a real API."""
    out: list[tuple[str, str, Labels, str]] = []
    route = 0
    while len(out) < n - n // 50:
        target = f"api-{route % 4}"
        base = (("method", "GET"), ("route", f"/r{route}/{{id}}"), ("status", "200"))
        for le in BUCKETS:
            out.append((target, "http_request_duration_seconds_bucket", base + (("le", le),), "b"))
        out.append((target, "http_request_duration_seconds_sum", base, "s"))
        out.append((target, "http_request_duration_seconds_count", base, "c"))
        route += 1
    while len(out) < n:
        out.append((f"api-{len(out) % 4}", "process_resident_memory_bytes",
                    (("slot", str(len(out))),), "g"))
    return out[:n]


def make_values(series: list[tuple[str, str, Labels, str]], cycles: int) -> np.ndarray:
    """cycles × series values: cumulative integer bucket counts, float sums, float gauges."""
    rng = np.random.default_rng(7)
    n = len(series)
    values = np.empty((cycles, n))
    incs = np.cumsum(rng.poisson(2.0, (cycles, n)), axis=0).astype(np.float64)
    for j, (_, _, _, kind) in enumerate(series):
        if kind in "bc":
            values[:, j] = incs[:, j]
        elif kind == "s":
            values[:, j] = np.cumsum(rng.gamma(2.0, 0.05, cycles))
        else:
            values[:, j] = 2e8 + np.cumsum(rng.normal(0, 1e5, cycles)).round()
            values[::7, j] += rng.random(len(values[::7, j]))  # some fractional readings
    return values


def file_sizes(path: Path) -> tuple[int, int]:
    """(size after WAL checkpoint, size after VACUUM) of a closed database."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpointed = path.stat().st_size
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return checkpointed, path.stat().st_size


def run_store(path: Path, series: list, values: np.ndarray, times: np.ndarray) -> float:
    """Seconds to write every cycle through Store.write_cycle."""
    keys = [(target, name, labels) for target, name, labels, _ in series]
    store = Store(path)
    began = time.perf_counter()
    for i, t in enumerate(times.tolist()):
        row_values = values[i].tolist()
        store.write_cycle(t, [(a, b, c, v) for (a, b, c), v in zip(keys, row_values)])
    store.close()  # folds the cycles still in the head: part of the cost
    return time.perf_counter() - began


def run_peer(path: Path, values: np.ndarray, times: np.ndarray) -> float:
    """Seconds to write every cycle with insert_all into (series_id, t, v)."""
    db = sqlite_utils.Database(path)
    db.enable_wal()
    db.conn.execute("PRAGMA synchronous=NORMAL")
    table = db["samples"]
    table.create({"series_id": int, "t": float, "v": float})
    cycles = [[{"series_id": j, "t": t, "v": v} for j, v in enumerate(values[i].tolist())]
              for i, t in enumerate(times.tolist())]
    began = time.perf_counter()
    for records in cycles:
        with db.conn:
            table.insert_all(records)
    elapsed = time.perf_counter() - began
    db.conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=600)
    args = parser.parse_args()
    series = make_series(args.series)
    values = make_values(series, args.cycles)
    rng = np.random.default_rng(3)
    times = 1.7e9 + np.arange(args.cycles) + rng.uniform(0, 0.005, args.cycles)
    samples = values.size
    with tempfile.TemporaryDirectory() as tmp:
        ours, peer = Path(tmp, "store.db"), Path(tmp, "peer.db")
        t_ours = run_store(ours, series, values, times)
        t_peer = run_peer(peer, values, times)
        (ours_ck, ours_vac), (peer_ck, peer_vac) = file_sizes(ours), file_sizes(peer)
    print(f"rows: {args.series} series x {args.cycles} cycles = {samples:,} samples, "
          f"one transaction per cycle for both (cpus: {os.cpu_count()})")
    print(f"Store.write_cycle   : {samples / t_ours:12,.0f} samples/s  "
          f"{ours_ck / samples:6.2f} B/sample checkpointed, {ours_vac / samples:6.2f} after VACUUM")
    print(f"sqlite-utils insert : {samples / t_peer:12,.0f} samples/s  "
          f"{peer_ck / samples:6.2f} B/sample checkpointed, {peer_vac / samples:6.2f} after VACUUM")
    print(f"ingest ratio: {t_peer / t_ours:.1f}x rate, {ours_vac / samples:.1f} bytes/sample "
          f"(peer {peer_vac / samples:.1f}; after VACUUM)")


if __name__ == "__main__":
    main()

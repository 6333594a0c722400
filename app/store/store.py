"""Store: scrape history in SQLite (sqlite-utils), one transaction per scrape cycle.

Layout (schema in ``store_schema``): each :meth:`Store.write_cycle` appends one
``head`` row holding the whole cycle as two packed arrays, so a cycle costs one
INSERT however many samples it has. Every ``chunk_cycles`` cycles the head is
folded, inside that cycle's transaction, into a raw ``block`` (the cycles'
timestamps, stored once) and one compressed ``chunk`` per series. Everything a
committed call wrote is on disk when it returns; a crash loses at most the
call in progress (WAL + synchronous=NORMAL survives SIGKILL).

:meth:`Store.maintain` does one bounded step of maintenance: it rolls raw data up
into 60 s and 600 s steps, drops what is past retention or over the history cap,
and gives free pages back; :meth:`Store.query` serves at most ``max_points``
per series from the coarsest tier fine enough for the request.

Thread safety: any thread may call any method. Writes (``write_cycle``, the one
commit of each ``maintain`` step, ``close``) run one at a time under one lock.
Reads hold that lock only for an instant: :meth:`Store.query` takes the
in-memory head and series map (both replaced, never changed in place) and pins
a WAL snapshot on a read-only connection of its own (one per reading thread,
pooled), then reads and decodes without the lock, so a long replay query does
not hold up the collector's per-cycle write. The snapshot and the head copy are
taken together, so a fold or retention commit during the read can neither drop
nor repeat a point. :meth:`Store.maintain` reads on a second connection
without the lock. :meth:`Store.close` stops reads in flight (they raise
``ValueError("store is closed")`` or finish) and waits for them.
"""

from __future__ import annotations

import json
import math
import numbers
import sqlite3
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Self, TypeVar

import numpy as np
from trimtab.collectors.exposition import Labels

from .codec import encode_raw_chunk, encode_times
from .read import BlockTimes, HeadEntry, Lease, Reader, ReadPool, flatten, runs
from .rollup import Retention, RetentionReport, Step, next_step, query_series
from .schema import StoreError, connect, transaction

Row = tuple[str, str, Labels, float]  # (target, name, labels, value)
T = TypeVar("T")

__all__ = ["Footprint", "Labels", "Retention", "RetentionReport", "Row", "SeriesKey", "Step",
           "Store", "StoreError"]

# A piece of raw data is complete (can be rolled up) once the clock is this far past it and
# no cycle is waiting in the head: cycles are stamped when scraped and written at once.
LATE_S = 60.0


def _is_finite(x: object) -> bool:
    """A real number (numpy scalars too, bools not) that is neither NaN nor infinite."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


class SeriesKey(NamedTuple):
    """Identity of a stored series; ``labels`` sorted by name."""

    target: str
    name: str
    labels: Labels


class Footprint(NamedTuple):
    """The store's size on disk: the database file, its WAL, and the bytes of pages in use
    (the file minus free pages, plus the WAL: what the history cap is compared with)."""

    file: int
    wal: int
    used: int


class Store:
    """A trimtab history database at ``path`` (created if missing).

    ``chunk_cycles`` is how many cycles are folded into one compressed chunk;
    ``retention`` says how long each tier is kept (see :class:`Retention`).
    Raises :class:`StoreError` (a ``ValueError``) if the file is corrupt or not
    a trimtab store.
    """

    def __init__(self, path: str | Path, *, chunk_cycles: int = 240,
                 retention: Retention | None = None) -> None:
        if not isinstance(chunk_cycles, int) or not 2 <= chunk_cycles <= 100_000:
            raise ValueError(f"chunk_cycles must be an int in 2..100000, got {chunk_cycles!r}")
        if str(path) in ("", ":memory:"):
            raise ValueError(f"a store needs a file, got {str(path)!r}: readers open it again "
                             "by its path")
        # Absolute: the readers open the file again later, maybe after a chdir.
        self.path = Path(path).absolute()
        self.chunk_cycles = chunk_cycles
        self.retention = retention or Retention()
        self._lock = threading.RLock()
        self._bg_lock = threading.Lock()  # one maintenance step at a time
        self._bg: tuple[sqlite3.Connection, Reader] | None = None
        self._db = connect(self.path)
        self._conn = self._db.conn
        self._times = BlockTimes()  # decoded block times, shared by every reader
        self._pool = ReadPool(self.path, self._times)
        # Test seam: called in the reading thread once its snapshot is pinned and
        # the lock released, so tests can write, fold or close in mid-read.
        self._read_hook: Callable[[], object] | None = None
        self._footprint: Footprint | None = None  # as last measured by a maintenance step
        self._ids: dict[tuple[str, str, Labels], int] = {}
        self._keys: dict[int, SeriesKey] = {}
        self._canon: dict[tuple[str, str, str], int] = {}
        try:
            self._load()
        except Exception as exc:
            self._conn.close()
            raise StoreError(f"{self.path}: unreadable store: {exc}") from exc

    def _load(self) -> None:
        for sid, target, name, labels in self._conn.execute(
                "SELECT id, target, name, labels FROM series"):
            key = SeriesKey(target, name, tuple(sorted(json.loads(labels).items())))
            self._keys[sid] = key
            self._canon[(target, name, labels)] = sid
        self._head = []
        for cycle, t, ids, vals in self._conn.execute(
                "SELECT cycle, t, ids, vals FROM head ORDER BY cycle"):
            same = ids is None and self._head  # NULL ids: the previous row's series
            series = self._head[-1].ids if same else np.frombuffer(ids, "<i8").astype(np.int64)
            self._head.append(HeadEntry(cycle, t, series,
                                        np.frombuffer(vals, "<f8").astype(np.float64)))
        self._next_sid = max(self._keys, default=0) + 1
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        self._last_cycle = int(meta.get("last_cycle", 0))
        self._last_t = float(meta["last_t"]) if "last_t" in meta else -math.inf
        if self._head:
            self._last_cycle, self._last_t = self._head[-1].cycle, self._head[-1].t

    # --- writing -------------------------------------------------------------------

    def write_cycle(self, t: float, rows: Iterable[Row]) -> int:
        """Write one scrape cycle in one transaction; return its cycle id once committed.

        ``rows`` are ``(target, name, labels, value)``; ``labels`` a tuple of
        ``(name, value)`` string pairs in any order. NaN and ±Inf values are kept.
        ``t`` (unix seconds) must be finite and later than the previous cycle's.
        Bad input raises ``ValueError`` and writes nothing.
        """
        if not _is_finite(t):
            raise ValueError(f"cycle time must be a finite number, got {t!r}")
        t = float(t)
        with self._lock:
            self._check_open()
            if t <= self._last_t:
                raise ValueError(f"cycle time {t} is not after the previous cycle ({self._last_t})")
            ids, vals, new = self._resolve(rows)
            prev = self._head[-1].ids if self._head else None
            same = prev is not None and np.array_equal(prev, ids)
            entry = HeadEntry(self._last_cycle + 1, t, prev if same else ids, vals)
            fold = len(self._head) + 1 >= self.chunk_cycles
            with self._db_errors(), transaction(self._conn):
                if new:
                    self._conn.executemany(
                        "INSERT INTO series (id, target, name, labels) VALUES (?, ?, ?, ?)",
                        [(sid, k.target, k.name, canon) for sid, k, canon in new])
                if fold:  # straight into chunks: no head row to write and delete
                    self._fold([*self._head, entry])
                else:  # usually the same series as last cycle: store the ids once
                    self._conn.execute("INSERT INTO head VALUES (?, ?, ?, ?)", (
                        entry.cycle, t, None if same else ids.astype("<i8").tobytes(),
                        vals.astype("<f8").tobytes()))
            self._commit_memory(entry, new, fold)
            return entry.cycle

    def _commit_memory(self, entry: HeadEntry, new: list[tuple[int, SeriesKey, str]],
                       folded: bool) -> None:
        """Mirror a committed cycle in memory (only after COMMIT, so a failure leaves none)."""
        self._next_sid += len(new)
        if new:  # a new dict: readers iterate the one they took without the lock
            self._keys = {**self._keys, **{sid: key for sid, key, _ in new}}
        for sid, key, canon in new:
            self._canon[(key.target, key.name, canon)] = sid
        self._head = [] if folded else [*self._head, entry]
        self._last_cycle, self._last_t = entry.cycle, entry.t

    def _resolve(self, rows: Iterable[Row]) -> tuple[np.ndarray, np.ndarray,
                                                     list[tuple[int, SeriesKey, str]]]:
        """Series ids (sorted) and values of ``rows``; new series are returned, not stored."""
        sids: list[int] = []
        vals: list[float] = []
        new: dict[tuple[str, str, str], tuple[int, SeriesKey, str]] = {}
        get = self._ids.get
        row: object = None
        try:
            for row in rows:
                target, name, labels, value = row
                sid = get((target, name, labels))
                if sid is None:
                    sid = self._series_id(target, name, labels, new)
                sids.append(sid)
                vals.append(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad row {row!r}: {exc}") from exc
        try:
            values = np.array(vals) if vals else np.empty(0)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sample values must be floats: {exc}") from exc
        if values.dtype.kind not in "fiu" or values.ndim != 1:
            bad = next((v for v in vals if isinstance(v, bool)
                        or not isinstance(v, (int, float))), values.dtype)
            raise ValueError(f"sample values must be floats, got {bad!r}")
        ids = np.array(sids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids, values = ids[order], values[order].astype(np.float64)
        if len(ids) > 1 and bool((ids[1:] == ids[:-1]).any()):
            dup = self._keys.get(int(ids[1:][ids[1:] == ids[:-1]][0]))
            raise ValueError(f"a series appears twice in one cycle: {dup or 'new series'}")
        return ids, values, list(new.values())

    def _series_id(self, target: str, name: str, labels: Labels,
                   new: dict[tuple[str, str, str], tuple[int, SeriesKey, str]]) -> int:
        """Validate an unseen (target, name, labels) and find or allocate its id."""
        if not isinstance(target, str) or not isinstance(name, str) or not name:
            raise ValueError("target and name must be strings, name non-empty")
        if not isinstance(labels, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p)
                for p in labels):
            raise ValueError("labels must be a tuple of (str, str) pairs")
        mapping = dict(labels)
        if len(mapping) != len(labels):
            raise ValueError("duplicate label name")
        canon = json.dumps(mapping, sort_keys=True, separators=(",", ":"))
        sid = self._canon.get((target, name, canon))
        if sid is None:
            if (target, name, canon) not in new:
                next_id = self._next_sid + len(new)
                new[(target, name, canon)] = (
                    next_id, SeriesKey(target, name, tuple(sorted(mapping.items()))), canon)
            return new[(target, name, canon)][0]
        self._ids[(target, name, labels)] = sid
        return sid

    def _fold(self, entries: list[HeadEntry]) -> None:
        """Turn head cycles into one raw block + one chunk per series (caller's transaction)."""
        times = np.array([e.t for e in entries])
        cur = self._conn.execute(
            "INSERT INTO blocks (tier, t0, t1, n, times) VALUES (0, ?, ?, ?, ?)",
            (float(times[0]), float(times[-1]), len(entries), encode_times(times)))
        block_id = cur.lastrowid
        ids, pos, vals = flatten(entries)
        self._conn.executemany(
            "INSERT INTO chunks (series_id, block_id, blob) VALUES (?, ?, ?)",
            ((int(ids[s]), block_id, encode_raw_chunk(pos[s:e], vals[s:e], len(entries)))
             for s, e in runs(ids)))
        self._conn.execute("DELETE FROM head WHERE cycle <= ?", (entries[-1].cycle,))
        self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("last_cycle", str(entries[-1].cycle)), ("last_t", repr(entries[-1].t))])

    # --- reading -------------------------------------------------------------------

    def query(self, name: str, matchers: dict[str, str] | None = None, *, start: float,
              end: float, max_points: int, target: str | None = None,
              agg: str = "last") -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]:
        """Samples of metric ``name`` with ``start <= t <= end``, ≤ ``max_points`` per series.

        ``matchers`` are label equalities; ``target`` restricts to one target.
        When a series has more points than ``max_points`` the range is cut into
        ``max_points`` equal steps and each step gives one point at the time of
        its newest sample; its value by ``agg``: ``"last"`` (the newest value:
        use it for counters and histogram buckets, rates stay exact between the
        returned points), ``"min"``, ``"max"`` or ``"mean"`` (gauges; NaN
        samples ignored). The source tier is the coarsest whose resolution
        (raw, 60 s, 600 s) fits the step, falling back to finer or coarser tiers
        where it has no data. Series without points in range are left out.
        """
        if matchers is not None and not (isinstance(matchers, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in matchers.items())):
            raise ValueError(f"matchers must be a dict of str to str, got {matchers!r}")
        with self._snapshot() as (lease, head, keys):
            wanted = {sid: key for sid, key in keys.items() if key.name == name
                      and (target is None or key.target == target)
                      and (not matchers or matchers.items() <= dict(key.labels).items())}
            found = query_series(lease.reader, lease.conn, head, list(wanted),
                                 start, end, max_points, agg)
            return {wanted[sid]: pair for sid, pair in found.items()}

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[Lease, list[HeadEntry], dict[int, SeriesKey]]]:
        """A read lease whose DB snapshot matches the head and series map it comes with.

        Only taking them holds the lock; the caller reads without it.
        """
        with self._lock:
            self._check_open()
            with self._db_errors():
                lease = self._pool.begin()
            head, keys = self._head, self._keys  # replaced on change, never mutated
        ok = False
        try:
            if self._read_hook is not None:
                self._read_hook()
            with self._db_errors():
                yield lease, head, keys
            ok = True
        except StoreError:
            if self._pool.closed:  # close() interrupted this read
                raise ValueError("store is closed") from None
            raise
        finally:
            self._pool.end(lease, reuse=ok)  # a failed read's connection is not trusted

    def series(self, name_prefix: str = "", target: str | None = None) -> list[SeriesKey]:
        """Every stored series whose name starts with ``name_prefix``, sorted."""
        return sorted(k for k in self._catalog() if k.name.startswith(name_prefix)
                      and (target is None or k.target == target))

    def targets(self) -> list[str]:
        """Every target that has a stored series, sorted."""
        return sorted({k.target for k in self._catalog()})

    def _catalog(self) -> Iterable[SeriesKey]:
        """The series keys as of now; the caller sorts them without the lock."""
        with self._lock:
            self._check_open()
            return self._keys.values()

    def last_cycle(self) -> tuple[int, float] | None:
        """(id, time) of the newest committed cycle, or None for an empty store."""
        with self._lock:
            return None if self._last_cycle == 0 else (self._last_cycle, self._last_t)

    def first_time(self) -> float | None:
        """Unix time of the oldest data held in any tier, or None for an empty store.

        How far back a window can look (an SLO's 28 days over a week-old store say so).
        """
        with self._snapshot() as (lease, head, _keys):
            row = lease.conn.execute("SELECT MIN(t0) FROM blocks").fetchone()
        times = [float(row[0])] if row is not None and row[0] is not None else []
        if head:
            times.append(min(entry.t for entry in head))
        return min(times) if times else None

    # --- maintenance ---------------------------------------------------------------

    def apply_retention(self, now: float) -> RetentionReport:
        """Run :meth:`maintain` steps until there is nothing left to do; report them all.

        For tests and tools: the cockpit runs steps from a ``store_keeper.HistoryKeeper``.
        """
        report = RetentionReport()
        while (step := self.maintain(now)).kind != "idle":
            report.add(step)
        return report

    def maintain(self, now: float) -> Step:
        """Do one bounded step of maintenance at time ``now`` and say what it was.

        Steps roll folded raw data into 60 s / 600 s steps (one piece a step),
        delete data past retention or over the cap (at most ``STEP_ROWS`` chunk
        rows a step) and give free pages back (see ``store_rollup.next_step``);
        ``kind == "idle"`` when nothing is left. Call it from any thread but the
        GUI's: the slow part reads through its own connection without the
        store's lock, and each step commits once, so ``write_cycle`` waits at
        most for one short step. Data is deleted only once the next tier holds it
        (except when over the cap with nothing else left).
        """
        if not _is_finite(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        with self._bg_lock:
            self._check_open()
            if self._bg is None:
                conn = sqlite3.connect(str(self.path), isolation_level=None,
                                       check_same_thread=False)
                self._bg = (conn, Reader(conn, self._times))
            with self._lock:  # rollups read folded blocks only: stop before the head
                complete = self._head[0].t if self._head else max(self._last_t, now - LATE_S)
            conn, reader = self._bg
            with self._db_errors():
                step = next_step(conn, reader, self._write, now=float(now), complete=complete,
                                 retention=self.retention, used=lambda: self._measure(conn).used)
                if step.kind != "roll":  # the size changed, or it has not been measured
                    self._measure(conn)
            self._times.forget(step.gone)
            return step

    def _measure(self, conn: sqlite3.Connection) -> Footprint:
        """Measure (and remember) the footprint, reading page counts through ``conn``."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        sizes = []
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:  # no WAL right after a TRUNCATE checkpoint
                sizes.append(0)
        self._footprint = Footprint(sizes[0], sizes[1], (pages - free) * page_size + sizes[1])
        return self._footprint

    def footprint(self) -> Footprint | None:
        """The size as of the last maintenance step (no I/O: the GUI may call it); None
        before the first step."""
        return self._footprint

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction under the lock; return its result."""
        with self._lock:
            self._check_open()
            with transaction(self._conn):
                return fn(self._conn)

    def close(self) -> None:
        """Fold pending cycles into chunks, checkpoint the WAL and close. Safe to call twice.

        Reads in flight in other threads are interrupted or finish first: close
        waits for them (never call it from inside a read).
        """
        with self._bg_lock, self._lock:
            if self._conn is None:
                return
            self._pool.close()  # no new read can start: that needs the lock
            if self._bg is not None:
                self._bg[0].close()
                self._bg = None
            try:
                with self._db_errors():
                    if self._head:  # the head takes 16 bytes/sample; chunks a fraction of it
                        with transaction(self._conn):
                            self._fold(self._head)
                        self._head = []
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    @contextmanager
    def _db_errors(self) -> Iterator[None]:
        """A corrupt page found late (or a full disk) surfaces as StoreError naming the file."""
        try:
            yield
        except (sqlite3.DatabaseError, zlib.error, struct.error) as exc:  # the last two: bad blob
            raise StoreError(f"{self.path}: {exc}") from exc

    def _check_open(self) -> None:
        if self._conn is None:
            raise ValueError("store is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Reading the store: the in-memory head mirror, per-series point streams per tier, and
the pool of read-only connections that lets reads run beside the writer."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .codec import Points, decode, decode_raw_chunk

_SQL_BATCH = 500  # series ids per IN (...) list, well under SQLite's variable limit


@dataclass(frozen=True)
class HeadEntry:
    """One committed, not yet folded cycle (mirrors a ``head`` row)."""

    cycle: int
    t: float
    ids: np.ndarray  # int64, ascending
    vals: np.ndarray  # float64, same order


def flatten(entries: Sequence[HeadEntry]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples of ``entries`` as (series id, cycle position, value), sorted by id then time."""
    if not entries:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    ids = np.concatenate([e.ids for e in entries])
    pos = np.repeat(np.arange(len(entries)), [len(e.ids) for e in entries])
    vals = np.concatenate([e.vals for e in entries])
    order = np.lexsort((pos, ids))
    return ids[order], pos[order], vals[order]


def runs(sorted_ids: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of equal ids."""
    if len(sorted_ids) == 0:
        return
    cuts = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1
    yield from zip(np.concatenate(([0], cuts)).tolist(),
                   np.concatenate((cuts, [len(sorted_ids)])).tolist())


def head_points(head: Sequence[HeadEntry], sids: set[int] | None, lo: float,
                hi: float) -> dict[int, Points]:
    """Per series, the head samples with ``lo <= t < hi``."""
    entries = [e for e in head if lo <= e.t < hi]
    times = np.array([e.t for e in entries])
    ids, pos, vals = flatten(entries)
    out: dict[int, Points] = {}
    for start, end in runs(ids):
        sid = int(ids[start])
        if sids is None or sid in sids:
            out[sid] = Points.from_raw(times[pos[start:end]], vals[start:end])
    return out


class BlockTimes:
    """Decoded ``times`` of raw blocks, shared by every reader of one store.

    An entry is used only while the block's stored blob is byte-equal to the one it
    was decoded from: block ids are rowids, so once the newest blocks are deleted
    an id can come back for another block, and readers on different snapshots may
    see either. Comparing the blob (fetched anyway) costs far less than decoding.
    """

    LIMIT = 4096  # bound memory; entries are cheap to decode again

    def __init__(self) -> None:
        self._cache: dict[int, tuple[bytes, np.ndarray]] = {}  # single dict ops: thread-safe

    def get(self, block_id: int, blob: bytes) -> np.ndarray:
        """The decoded times of ``blob``, stored as block ``block_id``."""
        hit = self._cache.get(block_id)
        if hit is not None and hit[0] == blob:
            return hit[1]
        if len(self._cache) > self.LIMIT:
            self._cache.clear()
        times = decode(blob)
        self._cache[block_id] = (bytes(blob), times)
        return times

    def forget(self, block_ids: Iterable[int]) -> None:
        """Drop deleted blocks (memory only: a stale entry would never match)."""
        for block_id in block_ids:
            self._cache.pop(block_id, None)


class Reader:
    """Streams each series' points of one tier through ``conn``."""

    def __init__(self, conn: sqlite3.Connection, times: BlockTimes | None = None) -> None:
        self._conn = conn
        self._times = times if times is not None else BlockTimes()

    def forget(self, block_ids: Iterable[int]) -> None:
        """Drop cached times of deleted blocks."""
        self._times.forget(block_ids)

    def iter_points(self, tier: int, head: Sequence[HeadEntry], sids: Sequence[int] | None,
                    lo: float, hi: float) -> Iterator[tuple[int, Points]]:
        """(series id, points with ``lo <= t < hi``) for every series that has any."""
        times = self._block_times(lo, hi) if tier == 0 else {}
        wanted = None if sids is None else set(sids)
        pending = head_points(head, wanted, lo, hi) if tier == 0 else {}
        for sid, rows in itertools.groupby(self._chunk_rows(tier, sids, lo, hi),
                                           key=lambda r: r[0]):
            if tier == 0:
                pairs = [decode_raw_chunk(blob, times[block]) for _, block, blob in rows]
                t, v = (np.concatenate(col) for col in zip(*pairs))
                i, j = np.searchsorted(t, (lo, hi))  # clip first: fewer derived arrays
                parts = [Points.from_raw(t[i:j], v[i:j])]
            else:
                parts = [Points.decode(blob) for _, _, blob in rows]
            if sid in pending:
                parts.append(pending.pop(sid))
            points = Points.concat(parts).clip(lo, hi) if len(parts) > 1 else parts[0].clip(lo, hi)
            if len(points):
                yield sid, points
        yield from sorted(pending.items())

    def _block_times(self, lo: float, hi: float) -> dict[int, np.ndarray]:
        return {block_id: self._times.get(block_id, blob) for block_id, blob in self._conn.execute(
            "SELECT id, times FROM blocks WHERE tier = 0 AND t1 >= ? AND t0 < ?", (lo, hi))}

    def _chunk_rows(self, tier: int, sids: Sequence[int] | None, lo: float,
                    hi: float) -> Iterator[tuple[int, int, bytes]]:
        sql = ("SELECT c.series_id, c.block_id, c.blob FROM chunks c JOIN blocks b "
               "ON b.id = c.block_id WHERE b.tier = ? AND b.t1 >= ? AND b.t0 < ?")
        # fetchall: no statement stays active while the caller decodes, so an exception
        # there cannot leave the read transaction pinned after ROLLBACK (see ReadPool.end).
        if sids is None:
            yield from self._conn.execute(sql + " ORDER BY c.series_id, c.block_id",
                                          (tier, lo, hi)).fetchall()
            return
        ordered = sorted(sids)
        for i in range(0, len(ordered), _SQL_BATCH):
            batch = ordered[i:i + _SQL_BATCH]
            marks = ",".join("?" * len(batch))
            yield from self._conn.execute(
                f"{sql} AND c.series_id IN ({marks}) ORDER BY c.series_id, c.block_id",
                (tier, lo, hi, *batch)).fetchall()


@dataclass(eq=False)
class Lease:
    """One read connection checked out by one thread, inside a read transaction."""

    conn: sqlite3.Connection
    reader: Reader


class ReadPool:
    """Read-only connections to one store file, one per concurrently reading thread.

    :meth:`begin` hands a thread a connection in a read transaction whose WAL
    snapshot is already taken: the caller holds the store's lock then, so the
    snapshot matches the in-memory head it copies under that lock, and the slow
    reading after it needs no lock. A sqlite3 connection must never be used by
    two threads at once; a lease is used only by the thread that took it.
    """

    KEEP = 4  # idle connections kept for reuse

    def __init__(self, path: Path, times: BlockTimes) -> None:
        # Read-only by URI: a file deleted meanwhile is an error, not a new empty store.
        self._uri = f"file:{quote(str(path.absolute()))}?mode=ro"
        self._times = times
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[Lease] = []
        self._busy: set[Lease] = set()
        self.closed = False

    def begin(self) -> Lease:
        """A lease with its snapshot pinned (call under the store's lock)."""
        with self._cond:
            if self.closed:
                raise ValueError("store is closed")
            lease = self._idle.pop() if self._idle else None
            if lease is None:
                lease = self._open()
            self._busy.add(lease)
        try:
            lease.conn.execute("BEGIN")
            # A deferred BEGIN takes its snapshot at the first read: take it now.
            lease.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except BaseException:
            self.end(lease)
            raise
        return lease

    def _open(self) -> Lease:
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only = ON")  # a bug in a read can never write
        except BaseException:
            conn.close()
            raise
        return Lease(conn, Reader(conn, self._times))

    def end(self, lease: Lease, reuse: bool = True) -> None:
        """Close the read transaction and give the connection back (or close it)."""
        keep = reuse
        try:
            if lease.conn.in_transaction:
                lease.conn.execute("ROLLBACK")  # read-only: nothing to commit
        except sqlite3.Error:
            keep = False  # in an unknown state: not worth reusing
        with self._cond:
            self._busy.discard(lease)
            keep = keep and not self.closed and len(self._idle) < self.KEEP
            if keep:
                self._idle.append(lease)
            self._cond.notify_all()
        if not keep:
            lease.conn.close()  # only this thread uses it now

    def close(self) -> None:
        """Stop reads in flight (their next SQLite step fails), wait for them, close all."""
        with self._cond:
            self.closed = True
            for lease in self._busy:
                lease.conn.interrupt()  # made for use from another thread
            while self._busy:
                self._cond.wait()
            idle, self._idle = self._idle, []
        for lease in idle:
            lease.conn.close()

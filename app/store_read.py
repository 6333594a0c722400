"""Reading the store: the in-memory head mirror and per-series point streams per tier."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .store_codec import Points, decode, decode_raw_chunk

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


class Reader:
    """Streams each series' points of one tier; caches decoded raw block times."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._times: dict[int, np.ndarray] = {}

    def forget(self, block_ids: Iterable[int]) -> None:
        """Drop cached times of deleted blocks."""
        for block_id in block_ids:
            self._times.pop(block_id, None)

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
        if len(self._times) > 4096:
            self._times.clear()  # bound memory; entries are cheap to decode again
        out = {}
        for block_id, blob in self._conn.execute(
                "SELECT id, times FROM blocks WHERE tier = 0 AND t1 >= ? AND t0 < ?", (lo, hi)):
            if block_id not in self._times:
                self._times[block_id] = decode(blob)
            out[block_id] = self._times[block_id]
        return out

    def _chunk_rows(self, tier: int, sids: Sequence[int] | None, lo: float,
                    hi: float) -> Iterator[tuple[int, int, bytes]]:
        sql = ("SELECT c.series_id, c.block_id, c.blob FROM chunks c JOIN blocks b "
               "ON b.id = c.block_id WHERE b.tier = ? AND b.t1 >= ? AND b.t0 < ?")
        if sids is None:
            yield from self._conn.execute(sql + " ORDER BY c.series_id, c.block_id",
                                          (tier, lo, hi))
            return
        ordered = sorted(sids)
        for i in range(0, len(ordered), _SQL_BATCH):
            batch = ordered[i:i + _SQL_BATCH]
            marks = ",".join("?" * len(batch))
            yield from self._conn.execute(
                f"{sql} AND c.series_id IN ({marks}) ORDER BY c.series_id, c.block_id",
                (tier, lo, hi, *batch))

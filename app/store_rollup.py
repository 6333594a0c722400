"""Tier choice for queries, rollups raw → 60 s → 600 s, and retention.

A rollup point summarises one step of one series (see ``store_codec.Points``):
time and value of the newest raw sample in the step, plus min, max, sum and
count. Keeping the *newest cumulative value* of counters and histogram buckets
keeps histograms mergeable: a rate or ``histogram_quantile`` between two
rollup points equals the one computed from the raw samples at those same two
instants. Limitation: a counter reset inside a step hides the increase before
the reset within that step (as it would between two raw scrapes that far apart).
"""

from __future__ import annotations

import math
import numbers
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .store_codec import Points
from .store_read import HeadEntry, Reader

STEPS = (0.0, 60.0, 600.0)  # resolution per tier; tier 0 is raw
PIECES = (0.0, 3600.0, 86400.0)  # a rollup block spans one piece: 60 / 144 steps per chunk
AGGS = ("last", "min", "max", "mean")
_SQL_BATCH = 500


@dataclass(frozen=True)
class Retention:
    """Seconds each tier is kept: raw, 60 s steps, 600 s steps.

    Data leaves a tier only after it has been rolled into the next one, so a
    raw retention shorter than an hour still loses nothing.
    """

    raw: float = 6 * 3600.0
    minute: float = 7 * 86400.0
    ten_minute: float = 90 * 86400.0

    def __post_init__(self) -> None:
        for name in ("raw", "minute", "ten_minute"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"retention {name} must be a positive number, got {value!r}")

    def keep(self, tier: int) -> float:
        """Retention in seconds of ``tier``."""
        return (self.raw, self.minute, self.ten_minute)[tier]


@dataclass
class RetentionReport:
    """What :func:`roll_and_expire` did: rollup blocks written and blocks deleted, per tier."""

    rolled: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0})
    deleted: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})


def watermark(conn: sqlite3.Connection, tier: int) -> float | None:
    """Rollup tier ``tier`` holds every complete step before this time."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"watermark_{tier}",)).fetchone()
    return None if row is None else float(row[0])


def _set_watermark(conn: sqlite3.Connection, tier: int, value: float) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"watermark_{tier}", repr(value)))


def _first_time(conn: sqlite3.Connection, head: Sequence[HeadEntry], tier: int,
                after: float) -> float | None:
    """Earliest time ≥ ``after`` the tier may have data for (a lower bound)."""
    row = conn.execute("SELECT MIN(t0) FROM blocks WHERE tier = ? AND t1 >= ?",
                       (tier, after)).fetchone()
    found = [max(row[0], after)] if row[0] is not None else []
    if tier == 0:
        found += [e.t for e in head if e.t >= after][:1]
    return min(found, default=None)


def _coverage(conn: sqlite3.Connection, head: Sequence[HeadEntry],
              tier: int) -> tuple[float, float] | None:
    lo = _first_time(conn, head, tier, -math.inf)
    hi = math.inf if tier == 0 else watermark(conn, tier)
    return None if lo is None or hi is None or lo >= hi else (lo, hi)


def plan(conn: sqlite3.Connection, head: Sequence[HeadEntry], lo: float, hi: float,
         preferred: int) -> list[tuple[int, float, float]]:
    """Split ``[lo, hi)`` into (tier, lo, hi) pieces: each time from the first tier
    that covers it in the order preferred, finer ones, coarser ones."""
    order = [preferred, *range(preferred - 1, -1, -1), *range(preferred + 1, 3)]
    remaining, out = [(lo, hi)], []
    for tier in order:
        cover = _coverage(conn, head, tier)
        if cover is None:
            continue
        left = []
        for a, b in remaining:
            x, y = max(a, cover[0]), min(b, cover[1])
            if x >= y:
                left.append((a, b))
                continue
            out.append((tier, x, y))
            left += [piece for piece in ((a, x), (y, b)) if piece[0] < piece[1]]
        remaining = left
    return sorted(out, key=lambda piece: piece[1])


def query_series(reader: Reader, conn: sqlite3.Connection, head: Sequence[HeadEntry],
                 sids: list[int], start: float, end: float, max_points: int,
                 agg: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Points per series for ``Store.query`` (validated here)."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if isinstance(max_points, bool) or not isinstance(max_points, numbers.Integral) \
            or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")
    if not sids:
        return {}
    step = (end - start) / max_points
    preferred = 2 if step >= STEPS[2] else 1 if step >= STEPS[1] else 0
    parts: dict[int, list[Points]] = {}
    for tier, lo, hi in plan(conn, head, float(start), math.nextafter(end, math.inf), preferred):
        for sid, points in reader.iter_points(tier, head, sids, lo, hi):
            parts.setdefault(sid, []).append(points)
    out = {}
    for sid, pieces in parts.items():
        points = Points.concat(pieces)
        if len(points) <= max_points:
            out[sid] = (points.t, points.select(agg))
            continue
        bucket = np.clip(np.floor((points.t - start) / step), 0, max_points - 1).astype(np.int64)
        if agg == "last":
            out[sid] = points.newest_per_bucket(bucket)
        else:
            points = points.aggregate(bucket)
            out[sid] = (points.t, points.select(agg))
    return out


Write = Callable[[Callable[[sqlite3.Connection], None]], None]


def roll_and_expire(conn: sqlite3.Connection, reader: Reader, write: Write, now: float,
                    retention: Retention) -> tuple[RetentionReport, list[int]]:
    """Write every complete rollup piece not yet written, then delete expired blocks.

    ``conn``/``reader`` are a separate read connection: the slow part (decoding
    and re-encoding an hour of every series) runs without the store's lock.
    Rollups read folded blocks only, never the head. ``write(fn)`` runs
    ``fn(main_connection)`` in one transaction under the lock. Returns the
    report and the ids of the deleted blocks.
    """
    report = RetentionReport()
    for tier in (1, 2):
        report.rolled[tier] = _roll_tier(conn, reader, write, tier)
    doomed: dict[int, list[int]] = {}
    for tier in (0, 1, 2):
        cutoff = now - retention.keep(tier)
        if tier < 2:  # never drop what the next tier does not hold yet
            cutoff = min(cutoff, watermark(conn, tier + 1) or -math.inf)
        doomed[tier] = [r[0] for r in conn.execute(
            "SELECT id FROM blocks WHERE tier = ? AND t1 < ?", (tier, cutoff))]
        report.deleted[tier] = len(doomed[tier])
    gone = [i for ids in doomed.values() for i in ids]
    if gone:
        write(lambda main: _delete_blocks(main, gone))
    reader.forget(gone)
    return report, gone


def _delete_blocks(conn: sqlite3.Connection, ids: list[int]) -> None:
    for i in range(0, len(ids), _SQL_BATCH):
        batch = ids[i:i + _SQL_BATCH]
        marks = ",".join("?" * len(batch))
        conn.execute(f"DELETE FROM chunks WHERE block_id IN ({marks})", batch)
        conn.execute(f"DELETE FROM blocks WHERE id IN ({marks})", batch)


def _roll_tier(conn: sqlite3.Connection, reader: Reader, write: Write, tier: int) -> int:
    """Roll complete pieces of tier ``tier - 1`` into ``tier``; return blocks written."""
    piece = PIECES[tier]
    # Cycle times only increase, so every step before the newest folded cycle is complete.
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_t'").fetchone()
    complete = (float(row[0]) if row else None) if tier == 1 else watermark(conn, 1)
    if complete is None:
        return 0
    limit = math.floor(complete / piece) * piece
    stored = mark = watermark(conn, tier)
    if mark is None:
        first = _first_time(conn, (), tier - 1, -math.inf)
        if first is None:
            return 0
        mark = math.floor(first / piece) * piece
    written = 0
    while mark + piece <= limit:
        nxt = _first_time(conn, (), tier - 1, mark)
        if nxt is None or nxt >= limit:
            mark = limit  # nothing left to roll before the limit
            break
        mark = max(mark, math.floor(nxt / piece) * piece)
        if mark + piece > limit:
            break
        written += _roll_piece(reader, write, tier, mark, mark + piece)
        mark += piece
    if mark != stored:
        write(lambda main: _set_watermark(main, tier, mark))
    return written


def _roll_piece(reader: Reader, write: Write, tier: int, lo: float, hi: float) -> int:
    """One rollup block for ``[lo, hi)`` plus its watermark, in one transaction."""
    step = STEPS[tier]
    chunks = [(sid, points.aggregate(np.floor(points.t / step).astype(np.int64)).encode())
              for sid, points in reader.iter_points(tier - 1, (), None, lo, hi)]

    def commit(main: sqlite3.Connection) -> None:
        if chunks:
            block_id = main.execute(
                "INSERT INTO blocks (tier, t0, t1, n, times) VALUES (?, ?, ?, ?, NULL)",
                (tier, lo, hi, round((hi - lo) / step))).lastrowid
            main.executemany("INSERT INTO chunks (series_id, block_id, blob) VALUES (?, ?, ?)",
                             [(sid, block_id, blob) for sid, blob in chunks])
        _set_watermark(main, tier, hi)

    write(commit)
    return 1 if chunks else 0

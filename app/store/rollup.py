"""Tier choice for queries, rollups raw → 60 s → 600 s, retention and the history cap.

Maintenance runs as bounded steps (:func:`next_step`), each one short transaction.

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
from typing import Any

import numpy as np

from .codec import Points
from .read import HeadEntry, Reader

STEPS = (0.0, 60.0, 600.0)  # resolution per tier; tier 0 is raw
PIECES = (0.0, 3600.0, 86400.0)  # a rollup block spans one piece: 60 / 144 steps per chunk
AGGS = ("last", "min", "max", "mean")
# Most chunk rows one maintenance step deletes, in one transaction under the store's lock:
# a few milliseconds, about what one fold of a cycle's head writes.
STEP_ROWS = 2000
VACUUM_PAGES = 256  # free pages one step returns to the file system (1 MB of 4 kB pages)
_VICTIMS = 64  # blocks one step looks at for deleting


@dataclass(frozen=True)
class Retention:
    """Seconds each tier is kept (raw, 60 s steps, 600 s steps), and the history's cap.

    Data leaves a tier only after it has been rolled into the next one, so a
    raw retention shorter than an hour still loses nothing. ``cap``: bytes the
    store may take on disk (pages in use plus the WAL); None = no cap.
    """

    raw: float = 6 * 3600.0
    minute: float = 7 * 86400.0
    ten_minute: float = 90 * 86400.0
    cap: int | None = None

    def __post_init__(self) -> None:
        for name in ("raw", "minute", "ten_minute"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"retention {name} must be a positive number, got {value!r}")
        cap = self.cap
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
            raise ValueError(f"history cap must be a positive number of bytes, got {cap!r}")

    def keep(self, tier: int) -> float:
        """Retention in seconds of ``tier``."""
        return (self.raw, self.minute, self.ten_minute)[tier]


@dataclass
class RetentionReport:
    """What maintenance did until idle: rollup blocks written and blocks deleted, per tier."""

    rolled: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0})
    deleted: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})
    steps: int = 0

    def add(self, step: Step) -> None:
        """Count one step."""
        self.steps += 1
        if step.kind == "roll":
            self.rolled[step.tier] += step.blocks
        elif step.kind in ("expire", "cap"):
            self.deleted[step.tier] += step.blocks


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


Write = Callable[[Callable[[sqlite3.Connection], Any]], Any]


@dataclass(frozen=True)
class Step:
    """One bounded maintenance step (see :func:`next_step`).

    ``kind`` is ``"roll"`` (one rollup piece of ``tier`` written, or its watermark moved
    over a gap), ``"expire"`` (rows of ``tier`` past retention deleted), ``"cap"`` (rows
    deleted because the history was over its cap), ``"vacuum"`` (free pages given back to
    the file system) or ``"idle"`` (nothing to do). ``rows`` counts chunk rows written or
    deleted in the step's one transaction, ``blocks`` the blocks written or deleted,
    ``gone`` the ids of deleted blocks.
    """

    kind: str
    tier: int = 0
    blocks: int = 0
    rows: int = 0
    gone: tuple[int, ...] = ()


IDLE = Step("idle")


def next_step(conn: sqlite3.Connection, reader: Reader, write: Write, *, now: float,
              complete: float, retention: Retention, used: Callable[[], int]) -> Step:
    """Do the first pending piece of maintenance, bounded, and say what it was.

    In order: roll one piece of raw data into 60 s steps, or of 60 s steps into
    600 s steps; delete up to :data:`STEP_ROWS` chunk rows past retention; when
    ``used()`` bytes exceed ``retention.cap``, delete up to :data:`STEP_ROWS` rows
    by the cap's order (:func:`_cap_victims`); give up to :data:`VACUUM_PAGES` free
    pages back to the file system. ``conn``/``reader`` are a separate read
    connection: the slow part of a rollup (decoding an hour of every series) runs
    there, without the store's lock. ``write(fn)`` runs ``fn(main_connection)`` in
    one transaction under the lock: each step makes exactly one such call, so a
    write cycle waits at most for one step's commit. ``complete``: every cycle
    before it is folded into raw blocks and no later cycle can come before it.
    """
    for tier in (1, 2):
        limit = complete if tier == 1 else watermark(conn, 1)
        step = _roll_step(conn, reader, write, tier, limit)
        if step is not None:
            return step
    for tier in (0, 1, 2):
        cutoff = now - retention.keep(tier)
        if tier < 2:  # never drop what the next tier does not hold yet
            cutoff = min(cutoff, watermark(conn, tier + 1) or -math.inf)
        victims = [r[0] for r in conn.execute(
            "SELECT id FROM blocks WHERE tier = ? AND t1 < ? ORDER BY t1 LIMIT ?",
            (tier, cutoff, _VICTIMS))]
        if victims:
            return _delete_step(write, "expire", tier, victims)
    if retention.cap is not None and used() > retention.cap:
        found = _cap_victims(conn)
        if found is not None:
            return _delete_step(write, "cap", *found)
    return _vacuum_step(conn, write)


def _roll_step(conn: sqlite3.Connection, reader: Reader, write: Write, tier: int,
               complete: float | None) -> Step | None:
    """Roll the oldest complete piece of tier ``tier - 1`` not yet in ``tier``; None if none."""
    if complete is None:
        return None
    piece = PIECES[tier]
    limit = math.floor(complete / piece) * piece
    stored = mark = watermark(conn, tier)
    if mark is None:
        first = _first_time(conn, (), tier - 1, -math.inf)
        if first is None:
            return None
        mark = math.floor(first / piece) * piece
    if mark + piece <= limit:
        nxt = _first_time(conn, (), tier - 1, mark)
        if nxt is None or nxt >= limit:
            mark = limit  # nothing left to roll before the limit
        else:
            mark = max(mark, math.floor(nxt / piece) * piece)
            if mark + piece <= limit:
                return _roll_piece(reader, write, tier, mark, mark + piece)
    if mark == stored or (stored is not None and mark < stored):
        return None
    write(lambda main: _set_watermark(main, tier, mark))
    return Step("roll", tier)


def _roll_piece(reader: Reader, write: Write, tier: int, lo: float, hi: float) -> Step:
    """One rollup block for ``[lo, hi)`` plus its watermark, in one transaction."""
    step = STEPS[tier]
    rolled = [(sid, points.aggregate(np.floor(points.t / step).astype(np.int64)))
              for sid, points in reader.iter_points(tier - 1, (), None, lo, hi)]
    chunks = list(zip([sid for sid, _ in rolled], Points.encode_many([p for _, p in rolled])))

    def commit(main: sqlite3.Connection) -> None:
        if chunks:
            block_id = main.execute(
                "INSERT INTO blocks (tier, t0, t1, n, times) VALUES (?, ?, ?, ?, NULL)",
                (tier, lo, hi, round((hi - lo) / step))).lastrowid
            main.executemany("INSERT INTO chunks (series_id, block_id, blob) VALUES (?, ?, ?)",
                             [(sid, block_id, blob) for sid, blob in chunks])
        _set_watermark(main, tier, hi)

    write(commit)
    return Step("roll", tier, 1 if chunks else 0, len(chunks))


def _cap_victims(conn: sqlite3.Connection) -> tuple[int, list[int]] | None:
    """(tier, oldest block ids) to delete next when the history is over its cap.

    Oldest first, coarsest last: first the oldest *redundant* blocks, raw or 60 s
    blocks whose time the next tier already holds (dropping them loses resolution,
    not history, and the finer tiers are most of the bytes), so the newest data keeps
    its finest detail, as retention does; then the oldest 600 s blocks (the oldest
    history); only when nothing else is left the newest, not yet rolled-up data.
    """
    redundant = []
    for tier in (0, 1):
        mark = watermark(conn, tier + 1)
        if mark is not None:
            oldest = conn.execute("SELECT MIN(t1) FROM blocks WHERE tier = ? AND t1 < ?",
                                  (tier, mark)).fetchone()[0]
            if oldest is not None:
                redundant.append((oldest, tier, mark))
    if redundant:
        _, tier, mark = min(redundant)
        return tier, [r[0] for r in conn.execute(
            "SELECT id FROM blocks WHERE tier = ? AND t1 < ? ORDER BY t1 LIMIT ?",
            (tier, mark, _VICTIMS))]
    for tier in (2, 1, 0):
        victims = [r[0] for r in conn.execute(
            "SELECT id FROM blocks WHERE tier = ? ORDER BY t1 LIMIT ?", (tier, _VICTIMS))]
        if victims:
            return tier, victims
    return None


def _delete_step(write: Write, kind: str, tier: int, victims: list[int]) -> Step:
    """Delete up to STEP_ROWS chunk rows of ``victims`` (oldest block first) and every
    victim block left without chunks, in one transaction."""
    marks = ",".join("?" * len(victims))

    def commit(main: sqlite3.Connection) -> tuple[int, list[int]]:
        rows = main.execute(
            f"DELETE FROM chunks WHERE id IN (SELECT c.id FROM chunks c JOIN blocks b "
            f"ON b.id = c.block_id WHERE c.block_id IN ({marks}) ORDER BY b.t1, b.id LIMIT ?)",
            (*victims, STEP_ROWS)).rowcount
        empty = [r[0] for r in main.execute(
            f"SELECT id FROM blocks WHERE id IN ({marks}) AND NOT EXISTS "
            f"(SELECT 1 FROM chunks WHERE block_id = blocks.id)", victims)]
        if empty:
            main.execute(f"DELETE FROM blocks WHERE id IN ({','.join('?' * len(empty))})",
                         empty)
        return rows, empty

    rows, gone = write(commit)
    return Step(kind, tier, len(gone), rows, tuple(gone))


def _vacuum_step(conn: sqlite3.Connection, write: Write) -> Step:
    """Give free pages back to the file system, when the store was created able to."""
    mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if mode != 2 or free < VACUUM_PAGES:  # 2 = incremental; fewer: SQLite reuses them soon
        return IDLE
    pages = min(free, VACUUM_PAGES)

    def commit(main: sqlite3.Connection) -> None:
        # One page per statement: Python's sqlite3 steps a statement without result columns
        # only once, and incremental_vacuum(N) frees one page per step.
        for _ in range(pages):
            main.execute("PRAGMA incremental_vacuum(1)")

    write(commit)
    return Step("vacuum", rows=pages)

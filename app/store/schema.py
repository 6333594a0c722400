"""The store's SQLite schema, and opening a file as a trimtab store.

New stores are created with ``auto_vacuum = INCREMENTAL``, so maintenance can give
the pages of deleted data back to the file system a bounded step at a time (older
stores reuse them instead).

Tables (all readable with sqlite-utils or Datasette; blobs are described in
``store_codec``):

- ``meta(key, value)``: ``schema_version``, ``last_cycle``/``last_t`` as of the
  last fold, and ``watermark_1``/``watermark_2``: rollup tier *k* holds every
  complete step before its watermark.
- ``series(id, target, name, labels)``: one row per series; ``labels`` is a
  JSON object with sorted keys.
- ``head(cycle, t, ids, vals)``: one row per scrape cycle not yet folded into
  chunks; ``ids`` is int64 series ids ascending (NULL: the same ids as the
  previous head row), ``vals`` the float64 values in the same order (raw
  little-endian bytes).
- ``blocks(id, tier, t0, t1, n, times)``: tier 0 = raw, a fold of ``n`` cycles
  whose timestamps are the ``times`` column (shared by all its chunks), ``t0``/
  ``t1`` its first and last; tier 1/2 = 60 s / 600 s rollups over ``[t0, t1)``.
- ``chunks(id, series_id, block_id, blob)``: one series' data in one block.
  A rowid table on purpose: a WITHOUT ROWID row spills blobs over ~1 kB into
  overflow pages that waste most of a page each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, target TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL,
    UNIQUE (target, name, labels));
CREATE TABLE IF NOT EXISTS head (
    cycle INTEGER PRIMARY KEY, t REAL NOT NULL, ids BLOB, vals BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, tier INTEGER NOT NULL, t0 REAL NOT NULL, t1 REAL NOT NULL,
    n INTEGER NOT NULL, times BLOB);
CREATE INDEX IF NOT EXISTS blocks_tier_t1 ON blocks (tier, t1);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, block_id INTEGER NOT NULL,
    blob BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_series_block ON chunks (series_id, block_id);
CREATE INDEX IF NOT EXISTS chunks_block ON chunks (block_id);
"""

TABLES = {"meta", "series", "head", "blocks", "chunks"}


class StoreError(ValueError):
    """The file is not a usable trimtab store (corrupt, foreign, a newer schema), or
    SQLite failed underneath (disk full, I/O error); the message names the file."""


def connect(path: Path) -> sqlite_utils.Database:
    """Open or create ``path`` as a store: WAL, synchronous=NORMAL, schema checked.

    Raises :class:`StoreError` for a corrupt file, a SQLite file of some other
    application, or a schema version this code does not know.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db = sqlite_utils.Database(conn)
        tables = set(db.table_names())
        if tables and not TABLES <= tables:
            raise StoreError(f"{path}: not a trimtab store (tables: {sorted(tables)})")
        if not tables:  # only possible before the first table: lets retention shrink the file
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.enable_wal()
        conn.execute("PRAGMA synchronous=NORMAL")
        # Readers overlap the writer, so a checkpoint often cannot restart the WAL; once
        # one does, the file shrinks back to this instead of keeping its peak size.
        conn.execute("PRAGMA journal_size_limit = 67108864")
        if not tables:
            _create(db)
        _check_version(db, path)
        return db
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: corrupt or not a SQLite database: {exc}") from exc
    except BaseException:
        conn.close()
        raise


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create(db: sqlite_utils.Database) -> None:
    with transaction(db.conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.conn.execute(statement)
        db["meta"].insert_all(
            [{"key": "schema_version", "value": str(SCHEMA_VERSION)}], replace=True)


def _check_version(db: sqlite_utils.Database, path: Path) -> None:
    row = db.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != str(SCHEMA_VERSION):
        found = None if row is None else row[0]
        raise StoreError(f"{path}: schema_version {found!r}, this trimtab reads {SCHEMA_VERSION}")

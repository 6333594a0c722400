"""The ``.trimtab`` snapshot file: schema versions, validation on open, in-memory migration.

The layout is documented in ``docs/snapshot-schema.md``. Plain tables and
columns only (no blobs), so sqlite-utils or Datasette read it without trimtab.
Version 1 is kept readable: :func:`open_checked` lays TEMP views over a
version 1 file so it reads as version 2, without writing to the file.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path
from urllib.parse import quote

FORMAT = "trimtab-snapshot"
SUFFIX = ".trimtab"  # the one file suffix of a snapshot (open dialogs, drops)
FILE_FILTER = f"trimtab snapshot (*{SUFFIX});;All files (*)"
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series (id INTEGER PRIMARY KEY, target TEXT NOT NULL, name TEXT NOT NULL,
    labels_json TEXT NOT NULL);
CREATE INDEX series_name ON series (name);
CREATE TABLE samples (series_id INTEGER NOT NULL REFERENCES series (id), t REAL NOT NULL,
    v REAL, PRIMARY KEY (series_id, t)) WITHOUT ROWID;
CREATE TABLE rollups (series_id INTEGER NOT NULL REFERENCES series (id),
    step REAL NOT NULL, t REAL NOT NULL, last REAL, min REAL, max REAL, sum REAL,
    count INTEGER NOT NULL, PRIMARY KEY (series_id, step, t)) WITHOUT ROWID;
CREATE TABLE targets (name TEXT PRIMARY KEY, url TEXT NOT NULL, kind TEXT NOT NULL,
    interval REAL, timeout REAL, service TEXT NOT NULL DEFAULT '');
CREATE TABLE health (target TEXT PRIMARY KEY, up INTEGER, last_scrape REAL, duration REAL,
    error TEXT, samples INTEGER, ok_scrapes INTEGER, failed_scrapes INTEGER, gone REAL);
CREATE TABLE traces (id INTEGER PRIMARY KEY, trace_id TEXT, span_id TEXT, parent_id TEXT,
    name TEXT, route TEXT, method TEXT, status INTEGER, instance TEXT, cache TEXT,
    start REAL, duration_ms REAL, extra_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX traces_start ON traces (start);
CREATE TABLE spans (id INTEGER PRIMARY KEY, trace_row INTEGER NOT NULL REFERENCES traces (id),
    span_id TEXT, name TEXT, start REAL, duration_ms REAL, tags_json TEXT NOT NULL);
CREATE TABLE journal (id INTEGER PRIMARY KEY, source TEXT NOT NULL, source_kind TEXT NOT NULL,
    source_url TEXT NOT NULL, entry_id INTEGER NOT NULL, time REAL NOT NULL, who TEXT,
    target TEXT, what TEXT, old_json TEXT, new_json TEXT, reason TEXT, result TEXT,
    detail TEXT, reverts INTEGER);
CREATE TABLE annotations (id INTEGER PRIMARY KEY, time REAL NOT NULL, text TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'note', target TEXT);
CREATE TABLE limits (agent TEXT NOT NULL, name TEXT NOT NULL, route TEXT, key TEXT,
    rate REAL, burst INTEGER, mode TEXT, PRIMARY KEY (agent, name));
CREATE TABLE balancer_limits (balancer TEXT NOT NULL, name TEXT NOT NULL, route TEXT,
    key TEXT, rate REAL, burst INTEGER, mode TEXT, PRIMARY KEY (balancer, name));
"""
# Tables added within version 2 (no version bump: a reader that does not know one ignores
# it); a file written before one has none of it, and reads as holding nothing there.
OPTIONAL = {"limits", "balancer_limits"}

# Version 1 (the previous release) differs: samples' value column is ``value``;
# no rollups, health or annotations tables (health was ``up``/``error`` columns of
# targets); journal had no ``source_url``/``reverts``; traces had no ``extra_json``.
V1_MIGRATION = """
CREATE TEMP VIEW samples AS SELECT series_id, t, value AS v FROM main.samples;
CREATE TEMP TABLE rollups (series_id INTEGER, step REAL, t REAL, last REAL, min REAL,
    max REAL, sum REAL, count INTEGER);
CREATE TEMP VIEW health AS SELECT name AS target, up, NULL AS last_scrape, NULL AS duration,
    error, NULL AS samples, NULL AS ok_scrapes, NULL AS failed_scrapes FROM main.targets;
CREATE TEMP VIEW targets AS SELECT name, url, kind, interval, timeout, '' AS service
    FROM main.targets;
CREATE TEMP VIEW journal AS SELECT id, source, source_kind, '' AS source_url, entry_id, time,
    who, target, what, old_json, new_json, reason, result, detail, NULL AS reverts
    FROM main.journal;
CREATE TEMP VIEW traces AS SELECT id, trace_id, span_id, parent_id, name, route, method,
    status, instance, cache, start, duration_ms, '{}' AS extra_json FROM main.traces;
CREATE TEMP TABLE annotations (id INTEGER PRIMARY KEY, time REAL, text TEXT, kind TEXT,
    target TEXT);
"""

REQUIRED = {1: {"meta", "series", "samples", "targets", "traces", "spans", "journal"},
            2: {"meta", "series", "samples", "rollups", "targets", "health", "traces",
                "spans", "journal", "annotations"}}
_MAGIC = b"SQLite format 3\x00"


class SnapshotError(ValueError):
    """A file that cannot be opened as a snapshot; the message says why and what to do."""


def check_header(path: Path) -> None:
    """Reject a non-SQLite or truncated file from its 100-byte header and its size.

    SQLite itself would only notice a missing tail when a query reaches it.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    if not header.startswith(_MAGIC):
        raise SnapshotError(f"{path}: not a trimtab snapshot (not an SQLite file at all); "
                            "choose the .trimtab file written by 'trimtab snapshot export'")
    if len(header) < 100:
        raise SnapshotError(f"{path}: truncated snapshot ({size} bytes, header incomplete); "
                            "copy the file again from its source")
    page_size, = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    pages, = struct.unpack(">I", header[28:32])
    if page_size < 512 or size % page_size or (pages and size < pages * page_size):
        raise SnapshotError(
            f"{path}: truncated snapshot ({size} bytes, the header announces "
            f"{pages} pages of {page_size} bytes); copy the file again from its source")


def open_checked(path: Path) -> tuple[sqlite3.Connection, int]:
    """Open ``path`` read-only as a snapshot; return the connection and the file's version.

    Opened ``immutable``: nobody writes a snapshot, and a plain ``mode=ro`` open of a
    file someone switched to WAL mode creates ``-wal`` and ``-shm`` beside it (or fails
    in a read-only folder); an immutable open takes no lock and creates nothing, so an
    incident file is never written to. Raises :class:`SnapshotError` for a truncated,
    corrupt, foreign or newer file, one with values of the wrong type, or one whose
    ``-wal`` holds changes (an immutable reader would not see them).
    """
    check_header(path)
    _check_wal(path)
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: cannot open: {exc}") from exc
    try:
        version = _validate(conn, path)
        if version == 1:
            conn.executescript(V1_MIGRATION)  # TEMP objects only: the file is untouched
        _check_types(conn, path)
        return conn, version
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SnapshotError(f"{path}: corrupt snapshot ({exc}); "
                            "copy the file again or ask for a new export") from exc
    except BaseException:
        conn.close()
        raise


def _validate(conn: sqlite3.Connection, path: Path) -> int:
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise SnapshotError(f"{path}: corrupt snapshot ({'; '.join(problems)}); "
                            "copy the file again or ask for a new export")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
    if meta.get("format") != FORMAT:
        hint = (" (it looks like a trimtab history store: export a window from it with "
                "'trimtab snapshot export')" if {"head", "blocks", "chunks"} <= tables else "")
        raise SnapshotError(f"{path}: an SQLite database but not a trimtab snapshot{hint}; "
                            f"tables: {sorted(tables)}")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise SnapshotError(f"{path}: snapshot without a valid schema_version "
                            f"({meta.get('schema_version')!r})") from None
    if version > SCHEMA_VERSION:
        raise SnapshotError(f"{path}: written by a newer trimtab (snapshot schema {version}, "
                            f"this trimtab reads up to {SCHEMA_VERSION}); upgrade trimtab "
                            "to open it")
    if version not in REQUIRED:
        raise SnapshotError(f"{path}: unknown snapshot schema version {version}")
    missing = REQUIRED[version] - tables
    if missing:
        raise SnapshotError(f"{path}: incomplete snapshot, tables missing: {sorted(missing)}; "
                            "ask for a new export")
    return version


# Numeric columns and the types SQLite may hold in them; anything else (text, a blob)
# would fail deep inside a chart or a report. Checked once, on open: one pass, as the
# integrity check already reads every page.
NUMERIC = {
    "samples": {"t": ("real", "integer"), "v": ("real", "integer", "null")},
    "rollups": {c: ("real", "integer", "null") for c in ("step", "t", "last", "min", "max",
                                                         "sum", "count")},
    "journal": {"time": ("real", "integer"), "entry_id": ("integer",)},
    "traces": {"start": ("real", "integer", "null"), "duration_ms": ("real", "integer", "null")},
    "spans": {"start": ("real", "integer", "null"), "duration_ms": ("real", "integer", "null")},
    "annotations": {"time": ("real", "integer")},
    "targets": {"interval": ("real", "integer", "null"), "timeout": ("real", "integer", "null")},
    "limits": {"rate": ("real", "integer", "null"), "burst": ("integer", "null")},
    "balancer_limits": {"rate": ("real", "integer", "null"), "burst": ("integer", "null")},
}


def _check_wal(path: Path) -> None:
    """Refuse a file whose ``-wal`` holds changes: an immutable reader would not see them.

    Checked before opening: reading through another program's ``-wal`` would write
    to its ``-shm``. A snapshot is never in that state unless something is editing it;
    a cockpit's history store in use always is.
    """
    if _wal_size(path):
        raise SnapshotError(
            f"{path}: not a trimtab snapshot to open as it is: {path.name}-wal beside it "
            "holds changes another program is writing (a trimtab history store in use? "
            "export a window from it with 'trimtab snapshot export'); close that program "
            "or copy the file again")


def _wal_size(path: Path) -> int:
    try:
        return path.with_name(path.name + "-wal").stat().st_size
    except FileNotFoundError:
        return 0


def _check_types(conn: sqlite3.Connection, path: Path) -> None:
    """The first column holding a value of the wrong type names the table, column and type."""
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, columns in NUMERIC.items():
        if table in OPTIONAL and table not in present:
            continue
        for column, allowed in columns.items():
            marks = ", ".join("?" * len(allowed))
            found = conn.execute(f"SELECT typeof({column}), quote({column}) FROM {table} "
                                 f"WHERE typeof({column}) NOT IN ({marks}) LIMIT 1",
                                 allowed).fetchone()
            if found is not None:
                raise SnapshotError(f"{path}: corrupt snapshot: {table}.{column} holds "
                                    f"{found[0]} ({found[1][:40]}) where a number belongs; "
                                    "ask for a new export")

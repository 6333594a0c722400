"""Reading a ``.trimtab`` snapshot, read-only, with the Store's query interface."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..control.types import Agent, JournalRow
from ..store.codec import Points
from ..store.rollup import AGGS
from ..store.store import SeriesKey
from .schema import SnapshotError, open_checked

__all__ = ["Snapshot", "SnapshotError", "TargetInfo", "open_snapshot"]


@dataclass(frozen=True)
class TargetInfo:
    """A target as exported (no token) with its health at export time."""

    name: str
    url: str
    kind: str
    interval: float | None
    timeout: float | None
    health: dict[str, Any]
    service: str = ""  # "" = the unnamed service (and every target of an older snapshot)


def open_snapshot(path: str | Path) -> Snapshot:
    """Open a snapshot read-only; :class:`SnapshotError` (a ``ValueError``) says why not."""
    return Snapshot(path)


class Snapshot:
    """A snapshot file opened read-only and immutable (``file:…?mode=ro&immutable=1``): nothing
    is ever written to it or beside it (no ``-wal``, ``-shm`` or lock), see ``open_checked``.

    ``series``/``query``/``targets`` mirror :class:`~trimtab.app.store.store.Store`, so
    views built on a store run on a snapshot too. A file of the previous
    schema version is read through TEMP views (see ``snapshot_schema``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SnapshotError(f"{self.path}: no such snapshot file")
        self._conn, self.file_version = open_checked(self.path)
        self._lock = threading.Lock()
        try:
            self.meta: dict[str, str] = dict(self._conn.execute("SELECT key, value FROM meta"))
            self._keys: dict[int, SeriesKey] = {}
            for sid, target, name, labels in self._conn.execute(
                    "SELECT id, target, name, labels_json FROM series"):
                self._keys[sid] = SeriesKey(target, name, tuple(sorted(json.loads(labels).items())))
            self._steps = [r[0] for r in self._conn.execute(
                "SELECT DISTINCT step FROM rollups ORDER BY step")]
            # (start, end) of the exported window, unix seconds; checked here, once.
            self.window: tuple[float, float] = _window(self.meta, self.path)
        except SnapshotError:
            self._conn.close()
            raise
        except (sqlite3.DatabaseError, ValueError, TypeError, AttributeError) as exc:
            self._conn.close()
            raise SnapshotError(f"{self.path}: corrupt snapshot ({exc}); "
                                "ask for a new export") from exc

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Damaged content met while reading ``what`` is a SnapshotError naming the file.

        The lock is held: reads never overlap, and ``close`` waits for them. A closed
        snapshot stays a ``ProgrammingError`` (a caller's mistake, not a bad file).
        """
        with self._lock:
            try:
                yield
            except sqlite3.ProgrammingError:
                raise
            except (sqlite3.DatabaseError, ValueError, TypeError, KeyError,
                    AttributeError) as exc:
                raise SnapshotError(f"{self.path}: corrupt snapshot: its {what} cannot be "
                                    f"read ({type(exc).__name__}: {exc}); ask for a new "
                                    "export") from exc

    def omitted(self) -> list[dict[str, str]]:
        """What the export could not include and why: ``what`` (journal, traces,
        targets), ``source``, ``why``; empty when complete (or written before this key)."""
        try:
            items = json.loads(self.meta.get("omitted") or "[]")
        except ValueError:
            items = None
        if not isinstance(items, list):  # damaged: say so rather than claim completeness
            return [{"what": "everything", "source": "this file",
                     "why": "meta.omitted is damaged; the export may be incomplete"}]
        return [{k: str(i.get(k, "")) for k in ("what", "source", "why")}
                for i in items if isinstance(i, dict)]

    def slos(self) -> list[dict[str, Any]]:
        """The SLOs in force at export with what the window did to each (``name``,
        ``summary``, ``error_ratio``, ``burn``, ``budget_consumed``; None = no traffic);
        empty for a file without SLOs or written before them, or when damaged."""
        try:
            items = json.loads(self.meta.get("slos") or "[]")
        except ValueError:
            return []
        if not isinstance(items, list):
            return []
        out = []
        for item in items:
            if not isinstance(item, dict):
                continue
            row: dict[str, Any] = {k: str(item.get(k, "")) for k in ("name", "summary")}
            for k in ("error_ratio", "burn", "budget_consumed"):
                v = item.get(k)
                row[k] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) \
                    else None
            out.append(row)
        return out

    def limits(self) -> list[dict[str, Any]]:
        """The rate limits each instance had at the window's end: ``agent``, ``name``,
        ``route``, ``key`` (what tells clients apart: ``ip``, ``header:x-api-key``…),
        ``rate``, ``burst``, ``mode``; empty for a file written before limits were kept."""
        return self._limit_rows("limits", "agent")

    def limits_by_agent(self) -> dict[str, dict[str, dict[str, Any]]]:
        """:meth:`limits` as agent → limit name → settings, the shape of the ``limits``
        section of each agent's config document (settings that are NULL left out)."""
        return _by_owner(self.limits(), "agent")

    def balancer_limits(self) -> list[dict[str, Any]]:
        """Each balancer's own rate limits at the window's end (``GET
        /_trimtab/balancer/limits``): ``balancer``, ``name``, ``route``, ``key``, ``rate``,
        ``burst``, ``mode``; empty for a file written before they were kept. Damage (a
        name that is not text, a column missing) is a :class:`SnapshotError`."""
        return self._limit_rows("balancer_limits", "balancer")

    def balancer_limits_by_name(self) -> dict[str, dict[str, dict[str, Any]]]:
        """:meth:`balancer_limits` as balancer → limit name → settings, the shape of
        ``FleetModel.balancer_limits`` (settings that are NULL left out)."""
        return _by_owner(self.balancer_limits(), "balancer")

    def _limit_rows(self, table: str, owner: str) -> list[dict[str, Any]]:
        """The rows of an optional limits table (none when the file predates it)."""
        with self._reading(table.replace("_", " ")):
            tables = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if table not in tables:
                return []
            cur = self._conn.execute(f"SELECT {owner}, name, route, key, rate, burst, mode "
                                     f"FROM {table} ORDER BY {owner}, name")
            cols = [c[0] for c in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            for row in rows:  # numbers were checked on open (schema.NUMERIC); text here
                for col in (owner, "name", "route", "key", "mode"):
                    value = row[col]
                    if not isinstance(value, str) and (value is not None or col in
                                                       (owner, "name")):
                        raise ValueError(f"{table}.{col} holds {_sql_type(value)} "
                                         f"({value!r:.40}) where text belongs")
            return rows

    @property
    def slos_openslo(self) -> str:
        """The SLO definitions as exported (OpenSLO YAML), for a colleague to import."""
        return self.meta.get("slos_openslo", "")

    @property
    def notes(self) -> str:
        """The operator's notes (redacted at export)."""
        return self.meta.get("notes", "")

    def series(self, name_prefix: str = "", target: str | None = None) -> list[SeriesKey]:
        """Every series whose name starts with ``name_prefix``, sorted (as ``Store.series``)."""
        return sorted(k for k in self._keys.values() if k.name.startswith(name_prefix)
                      and (target is None or k.target == target))

    def targets(self) -> list[str]:
        """Every target that has a series, sorted (as ``Store.targets``)."""
        return sorted({k.target for k in self._keys.values()})

    def query(self, name: str, matchers: dict[str, str] | None = None, *, start: float,
              end: float, max_points: int, target: str | None = None,
              agg: str = "last") -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]:
        """Samples of ``name`` with ``start <= t <= end``, as ``Store.query`` returns them.

        Above ``max_points`` per series the range is cut into equal steps, one
        point per step (time of its newest sample, value by ``agg``), computed
        from the raw samples, or from a rollup table when its step fits.
        """
        _check_query(matchers, start, end, max_points, agg)
        wanted = [(sid, key) for sid, key in self._keys.items() if key.name == name
                  and (target is None or key.target == target)
                  and (not matchers or matchers.items() <= dict(key.labels).items())]
        step = (end - start) / max_points
        rollup = max((s for s in self._steps if s <= step), default=None)
        out = {}
        with self._reading(f"samples of {name}"):
            for sid, key in wanted:
                points = self._points(sid, rollup, float(start), float(end))
                if len(points):
                    out[key] = _downsample(points, start, step, max_points, agg)
        return out

    def _points(self, sid: int, rollup: float | None, start: float, end: float) -> Points:
        if rollup is None:
            rows = self._conn.execute("SELECT t, v FROM samples WHERE series_id = ? AND t >= ? "
                                      "AND t <= ? ORDER BY t", (sid, start, end)).fetchall()
            arr = np.array(rows, dtype=np.float64).reshape(-1, 2)  # NULL → NaN
            return Points.from_raw(arr[:, 0].copy(), arr[:, 1].copy())
        rows = self._conn.execute(
            "SELECT t, last, min, max, sum, count FROM rollups WHERE series_id = ? AND step = ? "
            "AND t >= ? AND t <= ? ORDER BY t", (sid, rollup, start, end)).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
        return Points(*(arr[:, i].copy() for i in range(6)))

    def traces(self) -> list[dict[str, Any]]:
        """Traces oldest first, in the agent's dict shape (``children`` with ``tags``)."""
        with self._reading("traces"):
            cur = self._conn.execute(
                "SELECT id, trace_id, span_id, parent_id, name, route, method, status, instance, "
                "cache, start, duration_ms, extra_json FROM traces ORDER BY start, id")
            cols = [c[0] for c in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            spans: dict[int, list[dict[str, Any]]] = {}
            for trace_row, span_id, name, start, duration, tags in self._conn.execute(
                    "SELECT trace_row, span_id, name, start, duration_ms, tags_json FROM spans "
                    "ORDER BY id"):
                spans.setdefault(trace_row, []).append(
                    {"span_id": span_id, "name": name, "start": start, "duration_ms": duration,
                     "tags": _object(tags)})
            out = []
            for row in rows:
                extra = _object(row.pop("extra_json") or "{}")
                children = spans.get(row.pop("id"), [])
                out.append({**extra, **row, "children": children})
        return out

    def journal(self) -> list[JournalRow]:
        """Journal entries oldest first, as the control client returns them."""
        with self._reading("journal"):
            rows = self._conn.execute(
                "SELECT source, source_url, source_kind, entry_id, time, who, target, what, "
                "old_json, new_json, reason, result, detail, reverts FROM journal "
                "ORDER BY time, source, entry_id").fetchall()
            return [JournalRow(Agent(r[0], r[1], r[2]), r[3], r[4], r[5] or "", r[6] or "",
                               r[7] or "", json.loads(r[8] or "null"),
                               json.loads(r[9] or "null"), r[10] or "", r[11] or "",
                               r[12] or "", r[13]) for r in rows]

    def annotations(self) -> list[dict[str, Any]]:
        """Annotations oldest first: ``time``, ``text``, ``kind``, ``target``."""
        with self._reading("annotations"):
            cur = self._conn.execute("SELECT time, text, kind, target FROM annotations "
                                     "ORDER BY time, id")
            return [dict(zip(("time", "text", "kind", "target"), r, strict=True))
                    for r in cur.fetchall()]

    def target_info(self) -> list[TargetInfo]:
        """Exported targets (url, kind, interval; never a token) with their health."""
        with self._reading("targets"):
            hcur = self._conn.execute("SELECT * FROM health")
            cols = [c[0] for c in hcur.description]
            health = {r[0]: dict(zip(cols[1:], r[1:], strict=True)) for r in hcur.fetchall()}
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(targets)")}
            # A snapshot written before services has no such column: every target is "".
            service = "service" if "service" in columns else "''"
            rows = self._conn.execute(
                f"SELECT name, url, kind, interval, timeout, {service} FROM targets "
                "ORDER BY name").fetchall()
        return [TargetInfo(name, url, kind, interval, timeout, health.get(name, {}),
                           str(svc or ""))
                for name, url, kind, interval, timeout, svc in rows]

    def close(self) -> None:
        """Close the file. Safe to call twice, and from another thread than a reader's.

        Under the read lock: closing the SQLite connection while another thread is inside
        a query on it crashed the process (a replay or compare thread outliving its window).
        A query after close raises ``sqlite3.ProgrammingError`` instead.
        """
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _window(meta: dict[str, str], path: Path) -> tuple[float, float]:
    """The exported window from ``meta``: two finite unix times, end after start."""
    times = []
    for key in ("window_start", "window_end"):
        try:
            value = float(meta[key])
        except KeyError:
            raise SnapshotError(f"{path}: corrupt snapshot: meta.{key} is missing; "
                                "ask for a new export") from None
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise SnapshotError(f"{path}: corrupt snapshot: meta.{key} is {meta[key]!r}, "
                                "not a unix time; ask for a new export")
        times.append(value)
    if times[1] <= times[0]:
        raise SnapshotError(f"{path}: corrupt snapshot: the window ends ({times[1]!r}) "
                            f"before it starts ({times[0]!r}); ask for a new export")
    return times[0], times[1]


def _by_owner(rows: list[dict[str, Any]], owner: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Limit rows as owner → limit name → settings (NULL settings left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        fields = {k: row[k] for k in ("route", "key", "rate", "burst", "mode")
                  if row[k] is not None}
        out.setdefault(row[owner], {})[row["name"]] = fields
    return out


def _sql_type(value: Any) -> str:
    """SQLite's name for the type of a value read back (as ``typeof`` says it)."""
    return {int: "integer", float: "real", bytes: "blob", type(None): "null"}.get(
        type(value), type(value).__name__)


def _object(text: str) -> dict[str, Any]:
    """A JSON object column (tags, extra fields); anything else is damage."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text[:40]!r}")
    return value


def _check_query(matchers: Any, start: float, end: float, max_points: int, agg: str) -> None:
    if matchers is not None and not (isinstance(matchers, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in matchers.items())):
        raise ValueError(f"matchers must be a dict of str to str, got {matchers!r}")
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")


def _downsample(points: Points, start: float, step: float, max_points: int,
                agg: str) -> tuple[np.ndarray, np.ndarray]:
    """The same bucketing as the store's query (``store_rollup.query_series``)."""
    if len(points) <= max_points:
        return points.t, points.select(agg)
    bucket = np.clip(np.floor((points.t - start) / step), 0, max_points - 1).astype(np.int64)
    if agg == "last":
        return points.newest_per_bucket(bucket)
    agged = points.aggregate(bucket)
    return agged.t, agged.select(agg)

"""Incident snapshots: one redacted ``.trimtab`` SQLite file with a window of everything.

:func:`export_snapshot` writes the raw samples of a window from a
:class:`~trimtab.app.store.store.Store` (plus rollups when the window is long),
traces, the change journal, annotations, targets, their health and notes into
one plain SQLite file (layout: ``docs/snapshot-schema.md``). Everything is
redacted in memory (``redact``) before the first byte is written; the file is
built under a temporary name in the destination folder, VACUUMed (no free
pages holding old content) and renamed into place only when complete.

:func:`open_snapshot` (``snapshot_open``) reads one back, read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from ..control.types import LIMITS_PREFIX
from ..slo import openslo
from ..slo.burn import burn_rate
from ..slo.definition import SLO
from ..slo.track import StoreSource, ratio
from ..store.codec import Points
from ..store.store import Store
from .limits import balancer_limits_at, limits_at, limits_of
from .open import Snapshot, open_snapshot
from .redact import RedactionRules, Redactor
from .schema import FORMAT, SCHEMA, SCHEMA_VERSION, SnapshotError

__all__ = ["ROLLUP_STEPS", "RedactionRules", "Snapshot", "SnapshotError", "SnapshotInfo",
           "export_snapshot", "open_snapshot"]

Progress = Callable[[int, int], None]
# (step seconds, minimum window length for it): a long window also gets coarse steps,
# so a reader without trimtab can chart it without scanning every raw sample.
ROLLUP_STEPS = ((60.0, 3600.0), (600.0, 86400.0))
_TRACE_FIELDS = ("trace_id", "span_id", "parent_id", "name", "route", "method", "status",
                 "instance", "cache", "start", "duration_ms")


@dataclass(frozen=True)
class SnapshotInfo:
    """What :func:`export_snapshot` wrote."""

    path: Path
    start: float
    end: float
    series: int
    samples: int
    traces: int
    journal: int
    bytes: int
    schema_version: int = SCHEMA_VERSION


def app_version() -> str:
    """The installed trimtab version ("unknown" when running from a bare checkout)."""
    try:
        return metadata.version("trimtab")
    except metadata.PackageNotFoundError:
        return "unknown"


def _slo_row(red: Redactor, store: Store, slo: SLO, start: float, end: float) -> dict[str, Any]:
    """What the window did to one SLO: its error ratio and burn over the window, and the share
    of the SLO window's error budget the window consumed (burn × window ÷ SLO window)."""
    error_ratio = ratio(StoreSource(store), slo, end, end - start)
    burn = burn_rate(error_ratio, slo)
    consumed = burn * (end - start) / slo.window_s if math.isfinite(burn) else math.nan
    return {"name": slo.name, "summary": red.text(slo.summary()),
            "error_ratio": _finite_or_none(error_ratio), "burn": _finite_or_none(burn),
            "budget_consumed": _finite_or_none(consumed)}


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def export_snapshot(store: Store, out_path: str | Path, start: float, end: float, *,
                    traces: Iterable[Mapping[str, Any]] = (), journal: Iterable[Any] = (),
                    targets: Iterable[Any] = (), health: Mapping[str, Any] | None = None,
                    notes: str = "", annotations: Iterable[Any] = (),
                    redaction: RedactionRules | None = None,
                    progress: Progress | None = None,
                    omitted: Iterable[Any] = (), slos: Iterable[SLO] = (),
                    configs: Mapping[str, Mapping[str, Any]] | None = None,
                    balancer_limits: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None
                    ) -> SnapshotInfo:
    """Write the window ``[start, end]`` (unix s) of ``store`` and the rest to ``out_path``.

    ``traces`` are trace dicts (``Tracer._as_dict`` shape), ``journal`` are
    ``JournalRow``s (or dicts with the same fields), ``targets`` are
    ``ScrapeTarget``s (their tokens are never written, and are scrubbed
    wherever else they appear), ``health`` maps target name to ``TargetHealth``
    (or a dict), ``annotations`` are dicts with ``time``/``text`` (optional
    ``kind``, ``target``) or ``(time, text)`` pairs. Only traces, journal
    entries and annotations inside the window are kept. ``progress(done,
    total)`` is called as series names are exported. ``omitted`` says what the
    caller could not include and why (``Omission``s or dicts with ``what``,
    ``source``, ``why``): kept, redacted, as ``meta.omitted`` so a reader can
    say so. ``slos``: the objectives in force, written as OpenSLO (``meta.slos_openslo``)
    with what the window did to each (``meta.slos``: error ratio, burn rate and the
    share of the SLO window's budget the window consumed). ``configs``: each instance
    agent's config document as read now (target name → document); the rate limits in
    it, as they were at the window's end (changes in ``journal`` after it undone), go to
    the ``limits`` table, redacted (a limit's key spec stays, see ``Redactor.limit``).
    ``balancer_limits``: each balancer's own limits as read now (balancer target name →
    limit name → settings, as ``FleetModel.balancer_limits``), likewise worked back through
    its ``limits.<name>`` journal entries to the window's end, to ``balancer_limits``.
    An existing ``out_path`` is replaced only once the new file is complete.
    """
    start, end = _window(start, end)
    targets = list(targets)
    rules = (redaction or RedactionRules()).with_secrets(
        str(getattr(t, "token", "") or "") for t in targets)
    red = Redactor(rules)
    out = Path(out_path)
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: no such folder for the snapshot")
    if out.is_dir() or out.resolve() == Path(store.path).resolve():
        raise ValueError(f"{out}: choose a new file name (it is a folder or the history itself)")
    # Everything but the samples is small: redact it all before the file exists.
    journal = list(journal)
    tables = {
        "limits": _limit_rows(red, limits_at(limits_of(configs or {}), journal, end)),
        "balancer_limits": _limit_rows(red, balancer_limits_at(
            _settings_of(balancer_limits or {}), journal, end), owner="balancer"),
        "targets": [_target_row(red, t) for t in targets],
        "health": [_health_row(red, name, h) for name, h in (health or {}).items()],
        "annotations": [_annotation_row(red, a) for a in annotations],
        "journal": [_journal_row(red, j) for j in journal],
    }
    tables["annotations"] = [a for a in tables["annotations"] if start <= a["time"] <= end]
    tables["journal"] = [j for j in tables["journal"] if start <= j["time"] <= end]
    trace_rows = [_trace_rows(red, t) for t in traces if _in_window(t, start, end)]
    meta = {"format": FORMAT, "schema_version": str(SCHEMA_VERSION),
            "app_version": app_version(), "created_at": repr(time.time()),
            "window_start": repr(start), "window_end": repr(end), "notes": red.text(notes),
            "redaction": json.dumps(rules.describe()),
            "omitted": json.dumps([_omission_row(red, o) for o in omitted])}
    slos = list(slos)
    if slos:
        meta["slos_openslo"] = red.text(openslo.dumps(slos))
        meta["slos"] = json.dumps([_slo_row(red, store, s, start, end) for s in slos])
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        counts = _write(tmp, store, red, start, end, meta, tables, trace_rows, progress)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with contextlib.suppress(FileNotFoundError):
            tmp.with_name(tmp.name + "-journal").unlink()
    return SnapshotInfo(out, start, end, counts[0], counts[1], len(trace_rows),
                        len(tables["journal"]), out.stat().st_size)


def _window(start: float, end: float) -> tuple[float, float]:
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite unix time, got {value!r}")
    if end <= start:
        raise ValueError(f"the window is empty: end {end} is not after start {start}")
    return float(start), float(end)


def _write(tmp: Path, store: Store, red: Redactor, start: float, end: float,
           meta: dict[str, str], tables: dict[str, list[dict[str, Any]]],
           trace_rows: list[tuple[dict[str, Any], list[dict[str, Any]]]],
           progress: Progress | None) -> tuple[int, int]:
    """Build the whole file at ``tmp``; return (series, samples) written."""
    tmp.unlink(missing_ok=True)
    db = sqlite_utils.Database(tmp)
    try:
        conn = db.conn
        conn.executescript(SCHEMA)
        counts = _write_samples(conn, store, red, start, end, progress)
        for name, rows in tables.items():
            if rows:
                db.table(name).insert_all(rows)
        for trace, spans in trace_rows:
            trace_id = db.table("traces").insert(trace).last_pk
            if spans:
                db.table("spans").insert_all([{**s, "trace_row": trace_id} for s in spans])
        meta.update(series=str(counts[0]), samples=str(counts[1]))
        db.table("meta").insert_all([{"key": k, "value": v} for k, v in meta.items()])
        conn.commit()
        conn.execute("VACUUM")  # compact, and no free page keeps anything
        return counts
    finally:
        db.close()


def _write_samples(conn: Any, store: Store, red: Redactor, start: float, end: float,
                   progress: Progress | None) -> tuple[int, int]:
    names = sorted({key.name for key in store.series()})
    if progress is not None:
        progress(0, len(names))  # the total, before the first slow query
    long_steps = [step for step, min_len in ROLLUP_STEPS if end - start >= min_len]
    sid = samples = 0
    for done, name in enumerate(names, 1):
        found = store.query(name, start=start, end=end, max_points=2**62)
        for key, (t, v) in sorted(found.items()):
            sid += 1
            labels = dict(red.labels(key.labels))
            conn.execute("INSERT INTO series VALUES (?, ?, ?, ?)",
                         (sid, red.text(key.target), name,
                          json.dumps(labels, sort_keys=True, separators=(",", ":"))))
            # SQLite stores NaN as NULL; the reader turns NULL back into NaN.
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                             zip([sid] * len(t), t.tolist(),
                                 [None if math.isnan(x) else x for x in v.tolist()], strict=True))
            samples += len(t)
            for step in long_steps:
                _write_rollup(conn, sid, step, t, v)
        if progress is not None:
            progress(done, len(names))
    return sid, samples


def _write_rollup(conn: Any, sid: int, step: float, t: np.ndarray, v: np.ndarray) -> None:
    """One row per ``step`` seconds: newest value (exact for counters), min, max, sum, count."""
    p = Points.from_raw(t, v).aggregate(np.floor(t / step).astype(np.int64))
    conn.executemany("INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
        (sid, step, float(ti), _num(last), _num(mn), _num(mx), _num(sm), int(cnt))
        for ti, last, mn, mx, sm, cnt in zip(p.t, p.last, p.mn, p.mx, p.sm, p.cnt, strict=True)))


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise ValueError(f"expected a mapping or a dataclass, got {type(obj).__name__}")


def _target_row(red: Redactor, target: Any) -> dict[str, Any]:
    """A target without its token (the token never reaches the file)."""
    return {"name": red.text(str(target.name)), "url": red.url(str(target.url)),
            "kind": str(getattr(target, "kind", "instance")),
            "interval": getattr(target, "interval", None),
            "timeout": getattr(target, "timeout", None),
            # keys its routes (shop · /search) in the reopened snapshot as in the cockpit
            "service": str(getattr(target, "service", "") or "")}


def _health_row(red: Redactor, name: str, health: Any) -> dict[str, Any]:
    h = _as_dict(health)
    return {"target": red.text(str(name)), "up": int(bool(h.get("up"))),
            "last_scrape": h.get("last_scrape"), "duration": h.get("duration"),
            "error": red.text(str(h.get("error") or "")), "samples": h.get("samples"),
            "ok_scrapes": h.get("ok_scrapes"), "failed_scrapes": h.get("failed_scrapes"),
            # When discovery saw it leave (0.0: present): a gone target is not a down one.
            "gone": float(h.get("gone") or 0.0)}


def _settings_of(limits: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Owner → limit name → settings, whatever else a caller's mapping holds left out."""
    return {str(owner): {str(name): dict(fields) for name, fields in named.items()
                         if isinstance(fields, Mapping)}
            for owner, named in limits.items() if isinstance(named, Mapping)}


def _limit_rows(red: Redactor, limits: Mapping[str, Mapping[str, Mapping[str, Any]]],
                owner: str = "agent") -> list[dict[str, Any]]:
    """One row per agent (or balancer: ``owner``) and limit: its settings, redacted; a
    number that is not one is left out (NULL) rather than written as text a reader would
    trip on."""
    rows = []
    for agent, named in sorted(limits.items()):
        for name, fields in sorted(named.items()):
            f = red.limit(fields)
            rows.append({owner: red.text(agent), "name": red.text(name),
                         "route": _text_or_none(f.get("route")),
                         "key": _text_or_none(f.get("key")),
                         "rate": _number(f.get("rate"), float),
                         "burst": _number(f.get("burst"), int),
                         "mode": _text_or_none(f.get("mode"))})
    return rows


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any, kind: type) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return None
    return kind(value)


def _omission_row(red: Redactor, item: Any) -> dict[str, str]:
    o = item.as_dict() if hasattr(item, "as_dict") else _as_dict(item)
    return {k: red.text(str(o.get(k) or "")) for k in ("what", "source", "why")}


def _annotation_row(red: Redactor, item: Any) -> dict[str, Any]:
    if isinstance(item, Sequence) and not isinstance(item, (str, Mapping)) and len(item) == 2:
        item = {"time": item[0], "text": item[1]}
    a = _as_dict(item)
    target = a.get("target")
    return {"time": float(a["time"]), "text": red.text(str(a.get("text", ""))),
            "kind": str(a.get("kind") or "note"),
            "target": None if target is None else red.text(str(target))}


def _journal_row(red: Redactor, entry: Any) -> dict[str, Any]:
    e = _as_dict(entry)
    source = e.get("source")
    if isinstance(source, str) or source is None:
        src = {"name": source or "", "kind": str(e.get("source_kind") or ""),
               "url": str(e.get("source_url") or "")}
    else:
        src = {"name": source.name, "kind": source.kind, "url": source.base_url}
    return {"source": red.text(src["name"]), "source_kind": src["kind"],
            "source_url": red.url(src["url"]) if src["url"] else "",
            "entry_id": int(e.get("id", e.get("entry_id", 0))), "time": float(e["time"]),
            "who": red.text(str(e.get("who") or "")), "target": red.text(str(e.get("target") or "")),
            "what": red.text(str(e.get("what") or "")),
            "old_json": json.dumps(_redact_change(red, e, "old"), sort_keys=True),
            "new_json": json.dumps(_redact_change(red, e, "new"), sort_keys=True),
            "reason": red.text(str(e.get("reason") or "")), "result": str(e.get("result") or ""),
            "detail": red.text(str(e.get("detail") or "")), "reverts": e.get("reverts")}


def _redact_change(red: Redactor, entry: Mapping[str, Any], side: str) -> Any:
    """A journal entry's ``old`` or ``new``: a balancer's ``limits.<name>`` settings as a
    limit's (its key spec kept, as an instance's config keeps it), anything else as config."""
    value = entry.get(side)
    if str(entry.get("what") or "").startswith(LIMITS_PREFIX) and isinstance(value, Mapping):
        return red.limit(value)
    return red.config(value)


def _in_window(trace: Mapping[str, Any], start: float, end: float) -> bool:
    t = trace.get("start")
    return isinstance(t, (int, float)) and start <= t <= end


def _trace_rows(red: Redactor, trace: Mapping[str, Any]
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A trace row and its child span rows, every string and tag redacted."""
    row: dict[str, Any] = {}
    for name in _TRACE_FIELDS:
        value = trace.get(name)
        row[name] = red.text(value) if isinstance(value, str) else value
    extra = {k: v for k, v in trace.items() if k not in _TRACE_FIELDS and k != "children"}
    row["extra_json"] = json.dumps(red.value(extra), sort_keys=True, default=str)
    spans = [{"span_id": red.text(str(c.get("span_id", ""))), "name": red.text(str(c.get("name", ""))),
              "start": c.get("start"), "duration_ms": c.get("duration_ms"),
              "tags_json": json.dumps(red.value(dict(c.get("tags") or {})), sort_keys=True,
                                      default=str)}
             for c in trace.get("children") or ()]
    return row, spans

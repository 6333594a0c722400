"""``trimtab snapshot export`` and ``trimtab snapshot report`` (headless).

Wire with :func:`add_snapshot_commands` (sub-parsers of the main parser); each
sub-command sets ``args.func`` to :func:`cli_export` or :func:`cli_report`,
which return a process exit code and print progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from ..slo import file as slo_file
from ..slo.definition import SLO, SLOError
from ..slo.file import slo_path
from ..snapshot.agents import Omission, read_agents
from ..snapshot.export import export_snapshot
from ..snapshot.redact import RedactionRules
from ..snapshot.schema import SnapshotError
from ..store.store import Store
from ..targets import file as targets_file
from ..ui.pages.registry import KEYS as PAGES

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from ``now``, ``-15m`` (s/m/h/d before now), unix seconds or ISO 8601.

    An ISO time without an offset is local time. Raises ``ValueError`` naming the input.
    """
    now = time.time() if now is None else now
    value = text.strip()
    if value == "now":
        return now
    rel = _RELATIVE.match(value)
    if rel:
        return now - float(rel.group(1)) * _UNITS[rel.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
        raise ValueError(f"not a time: {text!r}")
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use now, -15m, unix seconds or "
                         "ISO 8601 like 2026-11-26T21:00:00Z)") from None


def add_snapshot_commands(subparsers: Any) -> None:
    """Add ``snapshot export`` and ``snapshot report`` to ``parser.add_subparsers()``."""
    snap = subparsers.add_parser("snapshot", help="export an incident window / report on one")
    sub = snap.add_subparsers(dest="snapshot_command", required=True)
    exp = sub.add_parser("export", help="write a window of history to one .trimtab file")
    exp.add_argument("--from", dest="start", required=True, metavar="TIME",
                     help="window start: --from=-15m (s/m/h/d ago), unix seconds or ISO 8601")
    exp.add_argument("--to", dest="end", default="now", metavar="TIME", help="window end")
    exp.add_argument("--out", required=True, metavar="FILE", help="the .trimtab file to write")
    exp.add_argument("--store", metavar="FILE", help="history database (default: the cockpit's)")
    exp.add_argument("--targets", metavar="FILE", help="targets TOML (default: the cockpit's)")
    exp.add_argument("--notes", default="", help="operator notes stored in the snapshot")
    exp.add_argument("--redact-param", action="append", default=[], metavar="NAME",
                     help="another query parameter whose value is removed (repeatable)")
    exp.add_argument("--redact-label", action="append", default=[], metavar="REGEX",
                     help="label names whose values are removed (repeatable)")
    exp.set_defaults(func=cli_export)
    rep = sub.add_parser("report", help="write a self-contained HTML report of a snapshot")
    rep.add_argument("snapshot", metavar="FILE", help="a .trimtab file")
    rep.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    rep.set_defaults(func=cli_report)
    charts = sub.add_parser("charts", help="export a snapshot's charts as PNG, SVG or CSV files")
    charts.add_argument("snapshot", metavar="FILE", help="a .trimtab file")
    charts.add_argument("--out", required=True, metavar="FILE.{png,svg,csv}",
                        help="file name stem and format; one file per chart is written")
    charts.add_argument("--page", choices=PAGES, help="only this page's charts (default: all)")
    charts.add_argument("--after", type=float, default=1.0, metavar="SECONDS",
                        help="seconds to wait after loading before exporting")
    charts.set_defaults(func=cli_charts)


def cli_charts(args: argparse.Namespace, out: TextIO = sys.stderr) -> int:
    """The snapshot's charts as files, headless: 0, or 2 (one line) on a bad file or path."""
    from .open import run_open

    opened = argparse.Namespace(snapshot=args.snapshot, compare=None, page=args.page,
                                theme=None, screenshot=None, after=args.after,
                                charts=args.out)
    return run_open(opened, out)


def cli_export(args: argparse.Namespace, out: TextIO = sys.stderr) -> int:
    """Export ``[--from, --to]`` of the history store to ``--out``; 0 on success, 2 on bad input.

    Like the cockpit's File → Export: the metrics from the store; the targets from
    the targets file; the journal, traces and rate limits from those targets' agents (read
    token in ``TRIMTAB_TOKEN``). What cannot be included is said on ``out``, one line
    each, and recorded in the snapshot (``meta.omitted``) for its readers.
    """
    try:
        start, end = parse_time(args.start), parse_time(args.end)
        store_path = Path(args.store or targets_file.default_path().parent / "history.sqlite")
        if not store_path.is_file():
            raise ValueError(f"{store_path}: no history database (give --store FILE)")
        targets, omitted = _targets(args.targets)
        slos = _slos(args.targets, out)
        rules = RedactionRules(query_params=RedactionRules().query_params
                               | frozenset(args.redact_param),
                               label_names=tuple(args.redact_label))
        records = read_agents(targets, os.environ.get("TRIMTAB_TOKEN", ""), start, end)
        omitted += records.omitted
        for item in omitted:  # the token is never in these: errors carry no headers
            print(f"trimtab: not included: {item}", file=out)
        with _store_copy(store_path) as store:
            info = export_snapshot(
                store, args.out, start, end, targets=targets, journal=records.journal,
                traces=records.traces, notes=args.notes, redaction=rules, omitted=omitted,
                slos=slos, configs=records.configs, balancer_limits=records.balancer_limits,
                progress=lambda done, total: print(f"\rexporting metrics {done}/{total}",
                                                   end="", file=out, flush=True))
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"\ntrimtab: {exc}", file=out)
        return 2
    print(f"\nwrote {info.path}: {info.series} series, {info.samples} samples, "
          f"{info.journal} journal entries, {info.traces} traces, {len(targets)} targets, "
          f"{info.bytes / 1e6:.1f} MB", file=out)
    if omitted:
        print(f"trimtab: the snapshot is INCOMPLETE: {len(omitted)} part(s) not included "
              "(listed above; its report and trimtab open say so too)", file=out)
    return 0


def cli_report(args: argparse.Namespace, out: TextIO = sys.stderr) -> int:
    """Write the HTML report of ``args.snapshot`` to ``args.out``; 0 on success, 2 on bad input."""
    from ..snapshot.report import write_report
    from ..ui.report_chart import png_chart  # Qt is imported only for a report's charts

    try:
        print(f"reading {args.snapshot}", file=out)
        path = write_report(args.snapshot, args.out, png_chart)
    except SnapshotError as exc:  # names the file and what is wrong with it
        print(f"trimtab: {exc}", file=out)
        return 2
    except OSError as exc:
        print(f"trimtab: cannot write the report: {exc}", file=out)
        return 2
    except (ValueError, TypeError, KeyError, sqlite3.Error) as exc:
        # Damage the snapshot checks did not foresee: still one line naming the file.
        print(f"trimtab: {args.snapshot}: cannot report on this snapshot "
              f"({type(exc).__name__}: {exc})", file=out)
        return 2
    print(f"wrote {path}", file=out)
    return 0


def _targets(path: str | None) -> tuple[list[Any], list[Omission]]:
    """Targets from the TOML file, with the token (scrubbed from the snapshot as a secret);
    no targets, and why, when the default file does not exist."""
    file = Path(path) if path else targets_file.default_path()
    if not file.is_file():
        if path:
            raise ValueError(f"{file}: no such targets file")
        why = (f"no targets file at {file} (give --targets FILE, the file the cockpit "
               "reads): no targets, so no journal or traces from agents either")
        return [], [Omission("targets", "all", why)]
    token = os.environ.get("TRIMTAB_TOKEN", "")
    return [dataclasses.replace(t, token=token) for t in targets_file.load(file)], []


def _slos(targets: str | None, out: TextIO) -> list[SLO]:
    """The cockpit's SLOs (``slos.yaml`` beside the targets file); a damaged file is said
    on ``out`` and the export goes on without them."""
    path = slo_path(Path(targets) if targets else targets_file.default_path())
    try:
        return slo_file.load(path)
    except SLOError as exc:
        print(f"trimtab: SLOs not included: {exc}", file=out)
        return []


@contextlib.contextmanager
def _store_copy(path: Path) -> Iterator[Store]:
    """A consistent private copy of the store (the cockpit may be writing to it).

    Opening the live file as a second ``Store`` would fold its unfolded cycles
    on close behind the running cockpit's back; SQLite's backup API reads a
    consistent state without writing to the source (see :func:`copy_history`).
    """
    with tempfile.TemporaryDirectory(prefix="trimtab-export-") as tmp:
        copy = Path(tmp) / "history.sqlite"
        copy_history(path, copy)
        store = Store(copy)
        try:
            yield store
        finally:
            store.close()


def copy_history(path: Path, copy: Path) -> None:
    """Copy the history store at ``path`` to ``copy`` without writing anything beside it.

    The store is in WAL mode. A running cockpit keeps its ``-wal`` (and ``-shm``)
    open from start to close, so with a ``-wal`` present a plain read-only open
    (``mode=ro``) joins it and sees its latest commit, creating nothing new.
    Without one no writer is active, but a ``mode=ro`` open would create
    ``-wal`` and ``-shm`` (and fail in a read-only folder): the file is then
    read ``immutable`` (no lock, nothing created). A cockpit starting in the
    middle of that read is caught afterwards (a ``-wal`` appeared, or the file's
    size or mtime changed) and the copy is made again through its WAL.
    """
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        before = _stat(path)
        _backup(path, copy, immutable=True)
        if not wal.exists() and _stat(path) == before:
            return
    _backup(path, copy, immutable=False)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _backup(path: Path, copy: Path, immutable: bool) -> None:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro{'&immutable=1' if immutable else ''}"
    copy.unlink(missing_ok=True)
    src = sqlite3.connect(uri, uri=True)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()

"""Evidence files are never touched, and a damaged one is a one-line error naming it.

``trimtab open`` and ``trimtab snapshot report`` run as a user runs them (the real
CLI in a subprocess); ``snapshot export`` reads a history store the same way. After
each, the file's bytes and mtime are unchanged and no ``-wal``/``-shm``/journal file
appeared beside it, also in a read-only folder and for a snapshot someone switched to
WAL mode (where a plain ``mode=ro`` open creates ``-wal`` and ``-shm``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from trimtab.app.snapshot.export import SnapshotError, export_snapshot, open_snapshot
from trimtab.app.store.store import Store

from tests.app.snapshot.test_snapshot import T0, fill

CLI = [sys.executable, "-m", "trimtab.app.cli.main"]
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180, env=ENV)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evidence")
    with Store(folder / "h.db", chunk_cycles=16) as store:
        fill(store, 60)
        return export_snapshot(store, folder / "good.trimtab", T0, T0 + 59).path


def _copy(src: Path, dst: Path, *sql: str) -> Path:
    dst.write_bytes(src.read_bytes())
    if sql:
        conn = sqlite3.connect(dst)
        for statement in sql:
            conn.execute(statement)
        conn.commit()
        conn.close()
    return dst


def _state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: (sha256, mtime in ns)."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


DAMAGED = {
    "text-values": ("UPDATE samples SET v = 'abc' WHERE t > 1700000030",
                    r"samples\.v.*text"),
    "text-times": ("UPDATE samples SET t = 'soon' WHERE t = 1700000050", r"samples\.t.*text"),
    "window-start": ("UPDATE meta SET value = 'x' WHERE key = 'window_start'",
                     r"window_start.*'x'"),
    "window-backwards": ("UPDATE meta SET value = '1600000000' WHERE key = 'window_end'",
                         r"window.*(end|before)"),
    "journal-json": ("INSERT INTO journal (source, source_kind, source_url, entry_id, time, "
                     "old_json, new_json) VALUES ('a', 'instance', '', 1, 1700000010, '{', "
                     "'null')", r"journal"),
    "journal-time": ("INSERT INTO journal (source, source_kind, source_url, entry_id, time) "
                     "VALUES ('a', 'instance', '', 1, 'noon')", r"journal\.time.*text"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_snapshot_is_one_line_naming_the_file(good: Path, tmp_path: Path,
                                                      case: str) -> None:
    sql, why = DAMAGED[case]
    bad = _copy(good, tmp_path / f"{case}.trimtab", sql)
    with pytest.raises(SnapshotError, match=why) as caught:
        with open_snapshot(bad) as snap:  # some damage shows only when that part is read
            snap.journal()
    assert str(bad) in str(caught.value)
    before = _state(tmp_path)
    report = _run("snapshot", "report", str(bad), "--out", str(tmp_path / "r.html"))
    opened = _run("open", str(bad), "--screenshot", str(tmp_path / "x.png"), "--after", "0")
    for proc in (report, opened):
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("trimtab: ")
                  and "opening" not in line and "reading" not in line]
        assert len(errors) == 1 and str(bad) in errors[0], proc.stderr
    assert _state(tmp_path) == before  # no report, no screenshot, nothing beside the file


@pytest.fixture
def read_only_folder(good: Path, tmp_path: Path) -> Iterator[Path]:
    """A folder holding a normal snapshot and one switched to WAL mode, made read-only."""
    folder = tmp_path / "evidence"
    folder.mkdir()
    _copy(good, folder / "plain.trimtab")
    wal = _copy(good, folder / "wal.trimtab")
    conn = sqlite3.connect(wal)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.close()
    assert sorted(os.listdir(folder)) == ["plain.trimtab", "wal.trimtab"]
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        for p in folder.iterdir():
            p.chmod(0o644)


def test_open_and_report_never_touch_the_file(read_only_folder: Path, tmp_path: Path) -> None:
    before = _state(read_only_folder)
    for name in ("plain.trimtab", "wal.trimtab"):
        path = read_only_folder / name
        with open_snapshot(path) as snap:
            assert snap.series() and snap.window == (T0, T0 + 59)
        report = _run("snapshot", "report", str(path), "--out", str(tmp_path / f"{name}.html"))
        assert report.returncode == 0, report.stderr
        shot = tmp_path / f"{name}.png"
        opened = _run("open", str(path), "--screenshot", str(shot), "--after", "0.2")
        assert opened.returncode == 0 and shot.is_file(), opened.stderr
        assert _state(read_only_folder) == before, name
    assert stat.S_IMODE(read_only_folder.stat().st_mode) == 0o555


def test_a_snapshot_with_pending_wal_changes_is_refused_not_misread(good: Path,
                                                                    tmp_path: Path) -> None:
    """Immutable reading ignores a -wal: one with content means someone else is writing."""
    path = _copy(good, tmp_path / "busy.trimtab")
    writer = sqlite3.connect(path)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE meta SET value = 'edited' WHERE key = 'notes'")
        writer.commit()
        before = _state(tmp_path)
        with pytest.raises(SnapshotError, match="busy.trimtab.*busy.trimtab-wal.*another program"):
            open_snapshot(path)
        assert _state(tmp_path) == before
    finally:
        writer.close()


def _history(folder: Path) -> Path:
    with Store(folder / "history.sqlite", chunk_cycles=16) as store:
        fill(store, 60)
    return folder / "history.sqlite"


def test_cli_export_never_touches_a_closed_history_store(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    history = _history(folder)
    (tmp_path / "none.toml").write_text("")  # a targets file without targets
    assert sorted(os.listdir(folder)) == ["history.sqlite"]
    history.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = _state(folder)
        out = tmp_path / "x.trimtab"
        proc = _run("snapshot", "export", f"--from={T0}", f"--to={T0 + 59}", "--out", str(out),
                    "--store", str(history), "--targets", str(tmp_path / "none.toml"))
        assert proc.returncode == 0, proc.stderr
        assert _state(folder) == before
    finally:
        folder.chmod(0o755)
        history.chmod(0o644)
    with open_snapshot(out) as snap:
        assert snap.meta["samples"] == str(60 * len(snap.series()))


def test_cli_export_beside_a_live_writer_sees_its_latest_cycle(tmp_path: Path) -> None:
    """A cockpit writing the store (its WAL not checkpointed): the export reads through it."""
    history = _history(tmp_path)
    (tmp_path / "none.toml").write_text("")
    with Store(history, chunk_cycles=1000) as live:
        live.write_cycle(T0 + 60, [("api-1", "late_metric", (), 42.0)])
        assert (tmp_path / "history.sqlite-wal").stat().st_size > 0
        out = tmp_path / "x.trimtab"
        proc = _run("snapshot", "export", f"--from={T0}", f"--to={T0 + 61}", "--out", str(out),
                    "--store", str(history), "--targets", str(tmp_path / "none.toml"))
        assert proc.returncode == 0, proc.stderr
        live.write_cycle(T0 + 61, [("api-1", "late_metric", (), 43.0)])  # still writable
    with open_snapshot(out) as snap:
        (_, v), = snap.query("late_metric", start=T0, end=T0 + 61, max_points=10).values()
        assert list(v) == [42.0]

"""A snapshot opened in its own read-only window: run_open, drag and drop, scrubber, compare, errors.

The snapshot is exported from a store the real demo fleet filled (real
scrapes), with the model's traces and an accepted TTL change in its journal.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from trimtab.app.cli.main import start_collection
from trimtab.app.cli.open import add_open_parser, run_open
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model import format as fmt
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.compare import window_figures
from trimtab.app.snapshot.export import export_snapshot, open_snapshot
from trimtab.app.store.store import Store
from trimtab.app.ui.file_actions import install_file_actions
from trimtab.app.ui.replay.window import READ_ONLY, ReplayLauncher, SnapshotWindow
from trimtab.app.ui.window import MainWindow
from trimtab.demo.fleet import DemoFleet
from trimtab.widgets.compare_view import RangeDialog

NOTES = "Incident 42: /search slow on api-3"
CYCLES = 12
PNG = Path("/tmp/trimtab-snapshot-window.png")


@dataclass
class Files:
    snapshot: Path
    first_half: Path
    store: Store
    window: tuple[float, float]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    """A store filled by the demo fleet, the whole window exported, and its first half.

    Our own fleet, stopped once recorded: the windows then have the CPU to themselves.
    """
    folder = tmp_path_factory.mktemp("open")
    store = Store(folder / "history.sqlite", chunk_cycles=8)
    try:
        model = _record(folder, store)
        yield _export(folder, store, model)
    finally:
        store.close()


def _record(folder: Path, store: Store) -> FleetModel:
    model = FleetModel(store=store)
    fleet = DemoFleet(rps=100.0, log_dir=str(folder))
    try:
        fleet.start()
        _collect(fleet, model, store)
    finally:
        fleet.stop()
    return model


def _collect(fleet: DemoFleet, model: FleetModel, store: Store) -> None:
    engine = start_collection(fleet, model)
    try:
        deadline = time.monotonic() + 120.0
        while (store.last_cycle() or (0, 0.0))[0] < CYCLES:
            assert time.monotonic() < deadline, "the demo fleet was not scraped"
            threading.Event().wait(0.2)  # the engine scrapes on its own thread
    finally:
        engine.stop()


def _export(folder: Path, store: Store, model: FleetModel) -> Files:
    times = sorted(t for series in model.snapshot("p95").values() for t in series[0])
    start, end = times[0] - 2.0, times[-1]
    change = JournalRow(Agent("api-1", "http://127.0.0.1:1"), 7, start + (end - start) / 2,
                        "operator", "/products/{id}", "config",
                        {"routes": {"/products/{id}": {"ttl": 10}}},
                        {"routes": {"/products/{id}": {"ttl": 300}}}, "warm the cache", "accepted")
    export_snapshot(store, folder / "incident.trimtab", start, end, traces=list(model.traces),
                    journal=[change], notes=NOTES)
    export_snapshot(store, folder / "first-half.trimtab", start, start + (end - start) / 2)
    return Files(folder / "incident.trimtab", folder / "first-half.trimtab", store, (start, end))


@pytest.fixture
def launcher(qtbot) -> Iterator[ReplayLauncher]:
    launcher = ReplayLauncher(None)
    try:
        yield launcher
    finally:
        for window in list(launcher.windows):
            window.close()


def open_window(qtbot, launcher: ReplayLauncher, path: Path) -> SnapshotWindow:
    launcher.open_file(path)
    qtbot.waitUntil(lambda: bool(launcher.windows) or bool(launcher.last_error), timeout=60_000)
    assert not launcher.last_error, launcher.last_error
    return launcher.windows[-1]


def newest(window: SnapshotWindow) -> float:
    return max(float(t[-1]) for t, _ in window.model.snapshot("p95").values() if len(t))


def test_snapshot_window_is_read_only_with_journal_notes_and_pages(qtbot, files: Files,
                                                                    launcher: ReplayLauncher) -> None:
    window = open_window(qtbot, launcher, files.snapshot)
    assert "incident.trimtab" in window.windowTitle()
    assert "read-only snapshot" in window.windowTitle()
    for button in (window.cache.change_button, window.cache.invalidate_button,
                   window.balancer.change_button, window.journal.revert_button,
                   window.journal.revert_since_button, window.fleet.add_button,
                   window.fleet.remove_button):
        assert not button.isEnabled() and READ_ONLY in button.toolTip()
    assert NOTES in window.notes_label.text()
    assert window.journal.table.rowCount() == 1
    assert all(len(chart.markers) == 1 for chart in window.charts)
    assert newest(window) == pytest.approx(files.window[1])
    for index, page in enumerate(window.pages):
        window.tabs.setCurrentIndex(index)
        window.refresh()
    assert window.routes.table.rowCount() >= 3  # the demo's routes, from replayed buckets
    # No agent config in a snapshot: the TTL cell says so, not "no read token".
    assert set(window.cache.table.column_texts(1)) == {
        "not recorded (snapshots hold no agent configs)"}
    assert window.overview.latency.point_count() > 0
    assert window.overview.share_time.point_count() > 0
    window.tabs.setCurrentWidget(window.traces)
    window._force_refresh()
    assert window.traces.table.rowCount() > 0
    window.tabs.setCurrentWidget(window.overview)
    window._force_refresh()
    assert window.grab().save(str(PNG))


def test_scrubber_seek_moves_the_model_and_the_charts(qtbot, files: Files,
                                                      launcher: ReplayLauncher) -> None:
    window = open_window(qtbot, launcher, files.snapshot)
    start, end = files.window
    window.tabs.setCurrentWidget(window.overview)
    window.range_box.setCurrentIndex(0)  # last 5 min: the axis must follow the clock
    window.scrubber.slider.setValue(6)  # a drag to start + 6 s
    qtbot.waitUntil(lambda: window.scrubber.clock == start + 6, timeout=20_000)
    assert newest(window) <= start + 6
    qtbot.waitUntil(lambda: window.overview.latency.x_window()[1]  # the axis follows the clock
                    == pytest.approx(start + 6), timeout=5_000)
    window.scrubber.set_speed(60)
    window.scrubber.set_playing(True)  # plays at 60×: reaches the end within a few ticks
    qtbot.waitUntil(lambda: not window.scrubber.playing, timeout=30_000)
    assert window.scrubber.clock == end
    assert newest(window) == pytest.approx(end)


def test_drop_a_snapshot_on_the_live_window(qtbot, files: Files) -> None:
    live = MainWindow(FleetModel())
    qtbot.addWidget(live)
    install_file_actions(live)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(files.snapshot))])
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(QPoint(10, 10), actions, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    live.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(10, 10), actions, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    live.dropEvent(drop)
    try:
        qtbot.waitUntil(lambda: bool(live.launcher.windows), timeout=60_000)
        assert "incident.trimtab" in live.launcher.windows[0].windowTitle()
        other = QMimeData()
        other.setUrls([QUrl.fromLocalFile("/tmp/notes.txt")])
        ignored = QDragEnterEvent(QPoint(1, 1), actions, other, Qt.MouseButton.LeftButton,
                                  Qt.KeyboardModifier.NoModifier)
        ignored.ignore()
        live.dragEnterEvent(ignored)
        assert not ignored.isAccepted()
    finally:
        for window in list(live.launcher.windows):
            window.close()
        live.close()


def _bad_files(folder: Path, good: Path, store: Store) -> dict[str, Path]:
    data = good.read_bytes()
    truncated = folder / "truncated.trimtab"
    truncated.write_bytes(data[: len(data) // 3])
    corrupt = folder / "corrupt.trimtab"
    corrupt.write_bytes(data[:100] + b"\xff" * 4096 + data[4196:])
    future = folder / "future.trimtab"
    future.write_bytes(data)
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    return {"truncated": truncated, "corrupt": corrupt, "future": future,
            "not a snapshot": store.path, "missing": folder / "nothing.trimtab"}


def test_bad_files_are_a_message_not_a_crash(qtbot, files: Files, launcher: ReplayLauncher,
                                             tmp_path: Path) -> None:
    for name, path in _bad_files(tmp_path, files.snapshot, files.store).items():
        launcher.last_error = ""
        launcher.open_file(path)
        qtbot.waitUntil(lambda: bool(launcher.last_error), timeout=20_000)
        assert not launcher.windows, name
        assert launcher.error_box is not None and launcher.error_box.isVisible(), name
        assert str(path.name) in launcher.error_box.text() or "schema" in \
            launcher.error_box.text(), (name, launcher.error_box.text())
        assert "Traceback" not in launcher.error_box.text()
        launcher.error_box.close()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_open_parser(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(["open", *argv])


def test_run_open_in_process(qtbot, files: Files) -> None:
    seen: dict[str, object] = {}

    def look() -> None:
        windows = [w for w in QApplication.topLevelWidgets()
                   if isinstance(w, SnapshotWindow) and w.isVisible()]
        if not windows:
            QTimer.singleShot(50, look)
            return
        seen["title"] = windows[0].windowTitle()
        seen["routes"] = len(windows[0].model.routes)
        windows[0].close()  # the command returns when its last window closes

    QTimer.singleShot(50, look)
    out = io.StringIO()
    assert run_open(_args(str(files.snapshot)), out) == 0
    assert "incident.trimtab" in str(seen["title"]) and int(seen["routes"]) >= 3  # type: ignore[call-overload]
    bad = files.snapshot.with_name("run-open-garbage.trimtab")
    bad.write_bytes(b"not sqlite at all" * 100)
    out = io.StringIO()
    assert run_open(_args(str(bad)), out) == 2
    assert "trimtab: " in out.getvalue() and "Traceback" not in out.getvalue()


def test_compare_holds_both_windows(qtbot, files: Files, launcher: ReplayLauncher) -> None:
    window = open_window(qtbot, launcher, files.snapshot)
    job = window.compare_with(files.first_half)
    qtbot.waitUntil(lambda: job.view is not None or bool(job.error), timeout=60_000)
    assert job.view is not None, job.error
    with open_snapshot(files.snapshot) as a, open_snapshot(files.first_half) as b:
        want_a, want_b = window_figures(a, *a.window), window_figures(b, *b.window)
    table = job.view.table
    routes = table.column_texts(0)
    assert set(routes) == set(want_a.routes) | set(want_b.routes)
    for column, figures in ((3, want_a), (4, want_b)):  # p95 A, p95 B
        texts = dict(zip(routes, table.column_texts(column), strict=True))
        for route, fig in figures.routes.items():
            assert texts[route] == fmt.quantile(fig.quantiles.get(0.95))
    job.show_route(routes[0])
    assert len([k for k, (t, _) in job.view.overlay.data.items() if len(t)]) == 2
    job.view.grab().save(str(PNG.with_name("trimtab-compare.png")))
    job.view.close()
    start, end = files.window
    split = window.compare_at(start + (end - start) / 2)  # before / after, one source
    qtbot.waitUntil(lambda: split.view is not None or bool(split.error), timeout=60_000)
    assert split.result is not None and split.result.a.label == "before"
    assert split.result.a.end == split.result.b.start == start + (end - start) / 2
    assert split.view is not None and split.view.table.rowCount() >= 3
    split.view.close()


def test_history_of_the_live_store_opens_read_only(qtbot, files: Files) -> None:
    live = MainWindow(FleetModel(store=files.store))
    qtbot.addWidget(live)
    install_file_actions(live)
    try:
        assert live.history_action.isEnabled()
        dialog = RangeDialog(live)
        dialog.choice.setCurrentIndex(3)  # from … to …
        start, end = dialog.range()
        assert start < end and dialog.start.isEnabled()
        dialog.close()
        live.launcher.open_range(files.store, *files.window, [])
        qtbot.waitUntil(lambda: bool(live.launcher.windows) or bool(live.launcher.last_error),
                        timeout=60_000)
        history = live.launcher.windows[0]
        assert "history" in history.windowTitle() and "read-only" in history.windowTitle()
        assert newest(history) == pytest.approx(files.window[1])
        assert not history.history_action.isEnabled()  # a replay has no store of its own
    finally:
        for window in list(live.launcher.windows):
            window.close()
        live.close()
    assert files.store.last_cycle() is not None  # the live store stays open and usable


def test_run_open_screenshot_with_compare(qtbot, files: Files, tmp_path: Path) -> None:
    out = io.StringIO()
    shot = tmp_path / "open.png"
    args = _args(str(files.snapshot), "--compare", str(files.first_half), "--page", "routes",
                 "--screenshot", str(shot), "--after", "0.5")
    assert run_open(args, out) == 0, out.getvalue()
    assert shot.stat().st_size > 10_000 and "screenshot saved" in out.getvalue()
    assert "cannot compare" not in out.getvalue()
    # The caller's event loops still run afterwards: an exit() that reached no loop once made
    # every later wait return at once (a busy spin that starved the collector thread).
    start = time.monotonic()
    qtbot.wait(300)
    assert time.monotonic() - start >= 0.25

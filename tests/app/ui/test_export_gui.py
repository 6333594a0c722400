"""File → Export incident snapshot… on the real demo fleet: the window's history, traces
and notes land in a redacted .trimtab file that opens again; bad input writes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from trimtab.app.cli.main import start_collection
from trimtab.app.model.fleet import FleetModel
from trimtab.app.snapshot.export import open_snapshot
from trimtab.app.store.store import Store
from trimtab.app.ui.export import ExportJob, start_export
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.demo.fleet import DemoFleet
from trimtab.widgets.export_dialog import ExportDialog


@pytest.fixture(scope="module")
def stored(fleet: DemoFleet, tmp_path_factory) -> Iterator[FleetModel]:
    """A model writing every cycle to a real history database, as the cockpit's does."""
    store = Store(tmp_path_factory.mktemp("history") / "history.sqlite", chunk_cycles=4)
    model = FleetModel(store=store)
    engine = start_collection(fleet, model)
    try:
        yield model
    finally:
        engine.stop()
        store.close()


@pytest.fixture()
def window(qtbot, stored: FleetModel, fleet: DemoFleet) -> Iterator:
    from trimtab.app.ui.window import MainWindow

    win = MainWindow(stored)
    qtbot.addWidget(win)
    # As the cockpit gives it: a callable reading the current list (on the worker thread).
    win.export_targets = lambda: [ScrapeTarget(t.name, t.url, t.kind, token=t.token)
                                  for t in fleet.targets]
    win.show()
    try:
        yield win
    finally:
        win.close()


def finish(qtbot, job: ExportJob) -> ExportJob:
    qtbot.waitUntil(job.finished, timeout=60_000)
    return job


def test_a_bad_folder_is_a_clear_error_and_writes_nothing(qtbot, window, tmp_path: Path) -> None:
    bad = tmp_path / "no-such-folder" / "x.trimtab"
    job = finish(qtbot, start_export(window, time.time() - 60, time.time(), "", bad))
    assert "no such folder" in job.error and job.info is None
    assert not bad.parent.exists()
    assert job.error_box.isVisible()
    job.error_box.close()


def test_an_empty_range_is_refused(qtbot, window, tmp_path: Path) -> None:
    now = time.time()
    job = finish(qtbot, start_export(window, now, now - 10, "", tmp_path / "x.trimtab"))
    assert "empty" in job.error and not (tmp_path / "x.trimtab").exists()
    job.error_box.close()


def test_the_export_opens_again_with_history_traces_and_notes(qtbot, window, stored: FleetModel,
                                                             fleet: DemoFleet,
                                                             tmp_path: Path) -> None:
    qtbot.waitUntil(lambda: (stored.store.last_cycle() or (0, 0))[0] >= 8, timeout=30_000)
    qtbot.waitUntil(lambda: len(stored.traces) > 0, timeout=30_000)
    out = tmp_path / "incident.trimtab"
    job = finish(qtbot, start_export(window, time.time() - 600, time.time(),
                                     "checkout slow after the TTL change", out))
    assert job.error == "" and job.info is not None
    assert "Snapshot written" in window.statusBar().currentMessage()
    snap = open_snapshot(out)
    try:
        assert snap.notes == "checkout slow after the TTL change"
        assert len(snap.series("trimtab_http_requests_total")) > 0
        assert len(snap.traces()) > 0
        assert {t.name for t in snap.target_info()} == {t.name for t in fleet.targets}
    finally:
        snap.close()
    for target in fleet.targets:  # tokens never reach the file
        if target.token:
            assert target.token.encode() not in out.read_bytes()


def test_cancel_removes_the_partial_file(qtbot, window, stored: FleetModel, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.trimtab"
    job = ExportJob(window, time.time() - 600, time.time(), "", out)
    window.export_job = job
    job.cancel()  # before the first series: the export stops at its first progress call
    job.failed.connect(lambda text: setattr(job, "error", text))
    job.start()
    qtbot.waitUntil(lambda: bool(job.error), timeout=60_000)
    assert job.error.startswith("cancelled") and not out.exists()
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_dialog_refuses_a_reversed_range_and_a_missing_folder(qtbot, tmp_path: Path) -> None:
    dialog = ExportDialog(str(tmp_path / "x"))
    qtbot.addWidget(dialog)
    dialog.choice.setCurrentIndex(dialog.choice.count() - 1)  # from … to …
    dialog.start.setDateTime(dialog.end.dateTime().addSecs(60))
    dialog._check()
    assert "before" in dialog.error.text() and dialog.result() == 0
    dialog.choice.setCurrentIndex(0)
    dialog.path.setText(str(tmp_path / "missing" / "x"))
    dialog._check()
    assert "No such folder" in dialog.error.text()
    dialog.path.setText(str(tmp_path / "incident"))
    dialog._check()
    assert dialog.result() == 1 and dialog.file() == tmp_path / "incident.trimtab"


def test_the_menu_action_is_disabled_without_a_history_database(qtbot, fleet: DemoFleet) -> None:
    from trimtab.app.ui.window import MainWindow

    win = MainWindow(FleetModel())
    qtbot.addWidget(win)
    assert not win.export_snapshot_action.isEnabled()
    assert "no history database" in win.export_snapshot_action.toolTip()


def test_the_menu_action_runs_the_dialog(qtbot, window, tmp_path: Path) -> None:
    """Ctrl+Shift+S: the dialog appears; Cancel leaves everything as it was."""
    seen: list[bool] = []

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        seen.append(isinstance(dialog, ExportDialog))
        if dialog is not None:
            dialog.reject()

    QTimer.singleShot(300, answer)
    window.export_snapshot_action.trigger()
    assert seen == [True]
    assert getattr(window, "export_job", None) is None


def test_a_second_export_waits_for_the_first(qtbot, window, tmp_path: Path) -> None:
    from trimtab.app.ui.export import ask_export

    class Running:
        def finished(self) -> bool:
            return False

    window.export_job = Running()
    assert ask_export(window) is None  # no dialog: refused at once
    assert "still running" in window.statusBar().currentMessage()


def test_cancel_from_the_progress_dialog_says_so_in_the_status_bar(qtbot, window,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "x.trimtab"
    job = start_export(window, time.time() - 600, time.time(), "", out)
    job.cancel()
    finish(qtbot, job)
    # The worker checks at every series it exports; it has not reached the first yet.
    assert job.info is None and "cancelled" in window.statusBar().currentMessage()
    assert not hasattr(job, "error_box") and not out.exists()
    assert job.traces == [] and job.health == {}  # released once ended

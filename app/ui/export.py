"""File → Export incident snapshot… (Ctrl+Shift+S): a range of the cockpit's history,
with the traces, change journal, target health, rate limits and the operator's notes,
written as one redacted ``.trimtab`` file (``export_snapshot``) on a worker thread, with
progress.

The live store is read directly: its reads run beside the collector's writes
(``Store.query``), so exporting an hour of history never holds up scraping.
"""

from __future__ import annotations

import copy
import dataclasses
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox, QProgressDialog
from trimtab.widgets.export_dialog import ExportDialog

from ..snapshot.export import SnapshotInfo, export_snapshot


class Cancelled(Exception):
    """The operator pressed Cancel; the partial file is removed by export_snapshot."""


class ExportJob(QObject):
    """One export on its own thread; signals arrive on the GUI thread (queued).

    Everything it writes is copied from the model on the GUI thread first, so the
    worker never touches the window. Keep a reference until ``done`` (the window does):
    a QObject freed on the worker thread can deadlock with the GUI thread.
    """

    progressed = Signal(int, int)  # series names done, total
    done = Signal(object)  # SnapshotInfo
    failed = Signal(str)

    def __init__(self, window: Any, start: float, end: float, notes: str, path: Path) -> None:
        super().__init__()
        model = window.model
        self.store = model.store
        self.args = (path, start, end)
        self.notes = notes
        self.traces = model.read(lambda m: [dict(t) for t in m.traces])
        self.health = model.read(lambda m: {k: dataclasses.replace(h)
                                            for k, h in m.health.items()})
        self.journal = list(window.journal_rows.values())
        # The agents' config documents as last read: their rate limits go into the file.
        self.configs = model.read(lambda m: copy.deepcopy(m.configs))
        # Each balancer's own limits as last read (GET /_trimtab/balancer/limits).
        self.balancer_limits = model.read(lambda m: copy.deepcopy(m.balancer_limits))
        slo_page = getattr(window, "slo", None)  # the SLOs in force, with what the window did
        self.slos = list(slo_page.slos) if slo_page is not None else []
        # A list, or a callable giving the current one (it may read the targets file:
        # called on the worker thread).
        self.targets_source = getattr(window, "export_targets", [])
        self.info: SnapshotInfo | None = None
        self.error = ""
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trimtab-export", daemon=True)

    def start(self) -> ExportJob:
        self._thread.start()
        return self

    @Slot()
    def cancel(self) -> None:
        self._cancelled.set()

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def release(self) -> None:
        """Once it has ended (GUI thread): cut the signal connections and the copies.

        The lambdas connected in start_export hold the job and its progress dialog in a
        cycle Python's collector cannot see (PySide keeps connections in C++): without
        this, every export kept its traces and dialogs for the life of the window.
        """
        self._thread.join()  # its emit was the worker's last act: returns at once
        for signal in (self.progressed, self.done, self.failed):
            signal.disconnect()
        self.traces, self.journal, self.health, self.configs = [], [], {}, {}
        self.balancer_limits = {}

    def finished(self) -> bool:
        return self.info is not None or bool(self.error)

    def _run(self) -> None:
        path, start, end = self.args
        source = self.targets_source
        try:
            targets = list(source() if callable(source) else source)
            info = export_snapshot(self.store, path, start, end, traces=self.traces,
                                   journal=self.journal, targets=targets, slos=self.slos,
                                   configs=self.configs,
                                   balancer_limits=self.balancer_limits,
                                   health=self.health, notes=self.notes,
                                   progress=self._progress)
        except Cancelled:
            self.failed.emit("cancelled: nothing was written")
        except (ValueError, OSError, sqlite3.Error) as exc:  # StoreError is a ValueError
            self.failed.emit(str(exc))
        else:
            self.done.emit(info)

    def _progress(self, done: int, total: int) -> None:
        if self._cancelled.is_set():
            raise Cancelled
        self.progressed.emit(done, total)


def add_export_action(window: Any) -> QAction:
    """File → Export incident snapshot…, enabled when the window has a history database."""
    action = QAction("Export incident snapshot…", window)
    action.setShortcut(QKeySequence("Ctrl+Shift+S"))
    action.setEnabled(window.model.store is not None)
    action.setToolTip("Write a range of history, traces, changes and notes to one redacted "
                      ".trimtab file a colleague opens in trimtab" if action.isEnabled()
                      else "Disabled: this window keeps no history database")
    action.triggered.connect(lambda: ask_export(window))
    menu = window.file_menu
    first = menu.actions()[0] if menu.actions() else None
    menu.insertAction(first, action)
    return action


def ask_export(window: Any) -> ExportJob | None:
    """Ask for range, notes and file, then export; None when the operator cancels."""
    running = getattr(window, "export_job", None)
    if running is not None and not running.finished():
        # Two at once could share a file name (and its temporary file).
        window.statusBar().showMessage("An export is still running; wait for it to finish.",
                                       10_000)
        return None
    stamp = time.strftime("%Y%m%d-%H%M")
    dialog = ExportDialog(str(Path.cwd() / f"incident-{stamp}.trimtab"), window)
    if not dialog.exec():
        return None
    start, end = dialog.range()
    return start_export(window, start, end, dialog.notes.toPlainText(), dialog.file())


def start_export(window: Any, start: float, end: float, notes: str, path: Path) -> ExportJob:
    """Export ``[start, end]`` to ``path`` with a progress dialog; the outcome goes to the
    status bar (written) or a message box (failed). Returns the running job."""
    job = ExportJob(window, start, end, notes, path)
    progress = QProgressDialog("Exporting the incident snapshot…", "Cancel", 0, 0, window)
    progress.setWindowTitle("Export incident snapshot")
    progress.setWindowModality(Qt.WindowModality.WindowModal)
    progress.setMinimumDuration(400)  # a short export finishes before it shows
    progress.canceled.connect(job.cancel)
    job.progressed.connect(lambda done, total: None if job.cancelled() else (
        progress.setMaximum(total), progress.setValue(done)))  # none after Cancel
    job.done.connect(lambda info: _written(window, job, progress, info))
    job.failed.connect(lambda text: _failed(window, job, progress, text))
    window.export_job = job  # freed on the GUI thread, never by the worker
    return job.start()


def _written(window: Any, job: ExportJob, progress: QProgressDialog, info: SnapshotInfo) -> None:
    job.release()
    progress.reset()
    progress.deleteLater()
    job.info = info
    window.statusBar().showMessage(
        f"Snapshot written: {info.path} — {info.series} series, {info.samples:,} samples, "
        f"{info.traces} traces, {info.journal} changes, {info.bytes / 1e6:.1f} MB "
        "(open it with trimtab open FILE)", 30_000)


def _failed(window: Any, job: ExportJob, progress: QProgressDialog, text: str) -> None:
    job.release()
    progress.reset()
    progress.deleteLater()
    job.error = text
    if job.cancelled():  # the operator's own choice: no warning box
        window.statusBar().showMessage(f"Snapshot export {text}.", 10_000)
        return
    box = QMessageBox(QMessageBox.Icon.Warning, "trimtab: snapshot not written",
                      f"The snapshot was not written: {text}", QMessageBox.StandardButton.Ok,
                      window)
    box.open()  # not exec(): the cockpit keeps running
    job.error_box = box  # type: ignore[attr-defined]

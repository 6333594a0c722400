"""Read-only replay windows: a snapshot file, or a range of the live store, replayed into a model.

Everything slow (opening the file, replaying cycles, seeking, comparing) runs
on a worker thread; results come back to the GUI thread as queued signals.
"""

from __future__ import annotations

import html
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.compare_view import CompareView
from trimtab.widgets.scrubber import ReplayScrubber, clock_text

from .compare import COMPARE_HEADERS, Comparison, compare_cells, compare_sources
from .replay import ReplaySession, snapshot_session, store_session
from .snapshot_open import open_snapshot
from .window import MainWindow

READ_ONLY = "read-only snapshot: changes go to live agents, never into a recording"
SUFFIX = ".trimtab"


class Cancelled(Exception):
    """The user cancelled a load."""


class ReplayWorker(QObject):
    """Owns one session on its own thread: loads it, then serves seeks (newest request wins)."""

    progress = Signal(int)  # percent
    ready = Signal(object)  # ReplaySession
    failed = Signal(str)  # empty when cancelled
    moved = Signal(float)  # the replay clock after a seek

    def __init__(self, opener: Callable[[], ReplaySession]) -> None:
        super().__init__()
        self._opener = opener
        self._requests: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self.cancelled = False
        self.session: ReplaySession | None = None
        self._thread = threading.Thread(target=self._run, name="trimtab-replay", daemon=True)

    def start(self) -> ReplayWorker:
        self._thread.start()
        return self

    def seek(self, t: float) -> None:
        """Ask for the clock to move to ``t`` (any thread)."""
        self._requests.put(float(t))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current step, close the session's source, end the thread."""
        self.cancelled = True
        self._requests.put(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _progress(self, fraction: float) -> None:
        if self.cancelled:
            raise Cancelled
        self.progress.emit(int(fraction * 100))

    def _run(self) -> None:
        try:
            session = self._opener()
            session.replayer.seek(session.replayer.end, self._progress)
        except Cancelled:
            self.failed.emit("")
            return
        except (ValueError, OSError) as exc:  # SnapshotError, ReplayError and StoreError too
            self.failed.emit(str(exc))
            return
        self.session = session
        try:
            self.ready.emit(session)
            self.moved.emit(session.replayer.clock)
            self._serve(session)
        finally:
            session.close()

    def _serve(self, session: ReplaySession) -> None:
        while True:
            target = self._requests.get()
            while target is not None:  # only the newest request matters
                try:
                    newer = self._requests.get_nowait()
                except queue.Empty:
                    break
                target = newer
            if target is None:
                return
            try:
                self.moved.emit(session.replayer.seek(target))
            except (ValueError, OSError) as exc:
                self.failed.emit(f"replay stopped: {exc}")
                return


class ReplayLauncher(QObject):
    """Opens replay windows with a progress dialog; keeps them alive until they close.

    ``opened`` carries each new window; ``failed`` a message for the user
    (shown by :meth:`open` as a non-blocking message box over ``parent``).
    """

    opened = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None, quiet: bool = False) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.quiet = quiet  # no message boxes (the command line prints instead)
        self.windows: list[SnapshotWindow] = []
        self.loading: list[tuple[ReplayWorker, QProgressDialog]] = []
        self.last_error = ""
        self.error_box: QMessageBox | None = None

    def open_file(self, path: str | Path) -> ReplayWorker:
        return self.open(lambda: snapshot_session(path), f"Opening {Path(path).name}…")

    def open_range(self, store: Any, start: float, end: float,
                   journal: list[Any]) -> ReplayWorker:
        return self.open(lambda: store_session(store, start, end, journal),
                         "Replaying history…")

    def open(self, opener: Callable[[], ReplaySession], label: str) -> ReplayWorker:
        worker = ReplayWorker(opener)
        dialog = QProgressDialog(label, "Cancel", 0, 100, self.parent_widget)
        dialog.setWindowTitle("trimtab")
        dialog.setMinimumDuration(300)
        dialog.canceled.connect(lambda: setattr(worker, "cancelled", True))
        worker.progress.connect(dialog.setValue)
        job = (worker, dialog)
        worker.ready.connect(lambda session: self._ready(job, session))
        worker.failed.connect(lambda text: self._failed(job, text))
        self.loading.append(job)
        worker.start()
        return worker

    def _ready(self, job: tuple[ReplayWorker, QProgressDialog], session: ReplaySession) -> None:
        worker, _dialog = job
        self._done(job)
        window = SnapshotWindow(session, worker)
        window.closed.connect(lambda: self.windows.remove(window) if window in self.windows
                              else None)
        self.windows.append(window)
        window.show()
        self.opened.emit(window)

    def _failed(self, job: tuple[ReplayWorker, QProgressDialog], text: str) -> None:
        if job in self.loading:
            self._done(job)
            text = text or "cancelled"
        self.last_error = text
        if not self.quiet and text != "cancelled":
            self.error_box = QMessageBox(QMessageBox.Icon.Warning, "trimtab: cannot open",
                                         text, QMessageBox.StandardButton.Ok, self.parent_widget)
            self.error_box.open()  # not exec(): the other windows keep running
        self.failed.emit(text)

    def stop(self) -> None:
        """Cancel loads in progress (their threads end at the next cycle) and close the windows."""
        for worker, _ in list(self.loading):
            worker.stop(timeout=0.0)
        for window in list(self.windows):
            window.close()

    def _done(self, job: tuple[ReplayWorker, QProgressDialog]) -> None:
        self.loading.remove(job)
        job[1].reset()
        job[1].deleteLater()


class SnapshotWindow(MainWindow):
    """The cockpit's pages over a replayed model: read-only, with a scrubber and Compare…."""

    seek_requested = Signal(float)
    closed = Signal()

    def __init__(self, session: ReplaySession, worker: ReplayWorker) -> None:
        self.scrubber = ReplayScrubber()
        replayer = session.replayer
        self.scrubber.set_window(replayer.start, replayer.end)
        self.scrubber.set_clock(replayer.clock)
        super().__init__(replayer.model)
        self.session, self.worker = session, worker
        self.clock = lambda: self.scrubber.clock
        self.setWindowTitle(f"trimtab — {session.title}")
        self._build_replay_bar(session)
        self.scrubber.seek_requested.connect(self.seek_requested)
        self.seek_requested.connect(worker.seek)
        worker.moved.connect(self.scrubber.set_clock)
        worker.moved.connect(self._moved)
        self._read_only()
        self.journal.show_rows(session.journal)
        self.show_changes(session.journal)
        length = replayer.end - replayer.start
        span = f"{length:.0f} s" if length < 120 else f"{length / 60:.0f} min"
        self.range_box.addItem(f"whole window ({span})", length)
        self.range_box.setCurrentIndex(self.range_box.count() - 1)
        self.range_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.routes.table.row_selected.connect(self._force_refresh)  # its own refresh: wall clock
        compare = QAction("Compare with another snapshot…", self)
        compare.setToolTip("Per-route figures of this window against another snapshot's")
        compare.triggered.connect(self.ask_compare)
        split = QAction("Compare before / after the replay clock", self)
        split.setToolTip("Scrub to a change marker, then compare the window's two halves")
        split.triggered.connect(lambda: self.compare_at(self.scrubber.clock))
        self.file_menu.insertActions(self.file_menu.actions()[0], [compare, split])
        self.compare_action, self.split_action = compare, split
        QShortcut(QKeySequence("K"), self, self.scrubber.toggle)
        self._force_refresh()

    def _build_replay_bar(self, session: ReplaySession) -> None:
        bar = QToolBar("Replay")
        bar.setObjectName("replay-toolbar")
        bar.addWidget(self.scrubber)
        self.addToolBar(Qt.ToolBarArea.BottomToolBarArea, bar)
        notes = session.notes.strip() or "no notes"
        self.notes_label = QLabel(f"<b>Notes:</b> {html.escape(notes)}")
        self.notes_label.setToolTip(session.notes or "The snapshot was exported without notes.")
        self.notes_label.setWordWrap(True)
        self.notes_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        container = QWidget()
        layout = QVBoxLayout(container)
        layout.setContentsMargins(6, 4, 6, 0)
        layout.addWidget(self.notes_label)
        layout.addWidget(self.tabs, 1)  # the tabs move under the notes
        self.setCentralWidget(container)

    def _read_only(self) -> None:
        """Every change control off, with the reason in its tooltip."""
        self.set_write_access(False, READ_ONLY)
        self.journal.set_write_access(False, READ_ONLY)
        for button in (self.fleet.add_button, self.fleet.remove_button):
            button.setEnabled(False)
            button.setToolTip(f"Disabled: {READ_ONLY}")
        self.fleet.config_label.setText("Targets as recorded (read-only).")
        self.journal.hint.setText("No changes were recorded in this window.")

    def _live_end(self, now: float) -> float:
        """The replay clock itself: the axes end where the replay is (no live stepping)."""
        return now

    @Slot(float)
    def _moved(self, clock: float) -> None:
        if not self.paused:
            self._follow_live()
        self._force_refresh()

    def _refresh_status(self) -> None:
        if not hasattr(self, "session"):  # MainWindow's constructor refreshes once
            return
        replayer = self.session.replayer
        text = (f"{READ_ONLY} · replay clock {clock_text(self.scrubber.clock)} · window "
                f"{clock_text(replayer.start)} – {clock_text(replayer.end)}")
        if self.paused:
            text += " · charts held (Space to follow the replay clock)"
        self.status.setText(text)

    @Slot()
    def ask_compare(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Compare with", os.getcwd(),
                                              "trimtab snapshot (*.trimtab);;All files (*)")
        if path:
            self.compare_with(path)

    def compare_at(self, t: float) -> CompareJob:
        """Compare ``[start, t]`` (A, before) with ``[t, end]`` (B, after) of this window."""
        replayer = self.session.replayer
        source, start, end = replayer.source, replayer.start, replayer.end

        def compute(progress: Callable[[float], None]) -> Comparison:
            return compare_sources(source, (start, t), source, (t, end), ("before", "after"),
                                   progress)

        self.compare_job = CompareJob(self, compute, "Comparing before / after…")
        return self.compare_job

    def compare_with(self, path: str | Path) -> CompareJob:
        """Compare this window (A) with snapshot ``path`` (B) off the GUI thread, then show it."""
        replayer = self.session.replayer
        window_a = (replayer.start, replayer.end)
        name_a = self.session.title.split(" — ")[0]

        def compute(progress: Callable[[float], None]) -> Comparison:
            with open_snapshot(path) as other:
                return compare_sources(replayer.source, window_a, other, other.window,
                                       (name_a, Path(path).name), progress)

        self.compare_job = CompareJob(self, compute, f"Comparing with {Path(path).name}…")
        return self.compare_job

    def closeEvent(self, event: Any) -> None:
        self.scrubber.set_playing(False)
        self.worker.stop()
        self.launcher.stop()
        # Not MainWindow.closeEvent: a replay window must not become the cockpit's remembered
        # layout, and it has no journal poll or control pool to stop.
        QMainWindow.closeEvent(self, event)
        self.closed.emit()


class CompareJob(QObject):
    """Computes a :class:`Comparison` on a worker thread, then shows it in a CompareView."""

    done = Signal(object)
    failed = Signal(str)
    progressed = Signal(int)

    def __init__(self, parent: QWidget, compute: Callable[[Callable[[float], None]], Comparison],
                 label: str) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.result: Comparison | None = None
        self.view: CompareView | None = None
        self.error = ""
        self.progress = QProgressDialog(label, "", 0, 100, parent)
        self.progress.setCancelButton(None)
        self.progress.setMinimumDuration(300)
        self.progressed.connect(self.progress.setValue)
        self.done.connect(self._show)
        self.failed.connect(self._fail)
        threading.Thread(target=self._run, args=(compute,), name="trimtab-compare",
                         daemon=True).start()

    def _run(self, compute: Callable[[Callable[[float], None]], Comparison]) -> None:
        try:
            result = compute(lambda f: self.progressed.emit(int(f * 100)))
        except (ValueError, OSError) as exc:
            self.failed.emit(str(exc))
            return
        self.done.emit(result)

    @Slot(object)
    def _show(self, result: Comparison) -> None:
        self.progress.reset()
        self.result = result
        title = (f"A: {result.a.label} ({clock_text(result.a.start)} – {clock_text(result.a.end)})"
                 f"   vs   B: {result.b.label} ({clock_text(result.b.start)} – "
                 f"{clock_text(result.b.end)})")
        self.view = CompareView(title, COMPARE_HEADERS, self.parent_widget)
        self.view.route_selected.connect(self.show_route)
        self.view.set_rows([(r.route, compare_cells(r)) for r in result.rows],
                           highlight={r.route for r in result.rows if r.ratio("p95") > 1.2})
        self.view.show()

    @Slot(str)
    def show_route(self, route: str) -> None:
        """Overlay the route's p95 of both windows, B shifted onto A's time axis."""
        if self.result is None or self.view is None:
            return
        a, b = self.result.a, self.result.b
        series = {}
        for name, overlay in ((f"A {a.label}", self.result.overlay_a),
                              (f"B {b.label}", self.result.overlay_b)):
            if route in overlay:
                t, v = overlay[route]
                series[name] = (t + a.start, v)
        length = max(a.end - a.start, b.end - b.start)
        self.view.set_overlay(f"p95 of {route}: B aligned on A's start", series,
                              a.start, a.start + length)

    @Slot(str)
    def _fail(self, text: str) -> None:
        self.progress.reset()
        self.error = text
        box = QMessageBox(QMessageBox.Icon.Warning, "trimtab: cannot compare", text,
                          QMessageBox.StandardButton.Ok, self.parent_widget)
        box.open()
        self.error_box = box

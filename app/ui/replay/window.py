"""Read-only replay windows: a snapshot file, or a range of the live store, replayed into a model.

Everything slow (opening the file, replaying cycles, seeking, comparing) runs
on a worker thread (:mod:`.snapshot_worker`, :mod:`.snapshot_compare`);
results come back to the GUI thread as queued signals.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.scrubber import ReplayScrubber, clock_text

from ...model.fleet import QUANTILES
from ...replay.change_markers import marker_key, markers
from ...replay.model import level_name, parse_levels
from ...replay.session import ReplaySession, snapshot_session, store_session
from ..window import MainWindow
from .compare import CompareActions, CompareJob
from .pages import ReplayFleetPage, ReplayRoutesPage
from .worker import Cancelled, ReplayWorker

__all__ = ["READ_ONLY", "Cancelled", "CompareJob", "ReplayLauncher", "ReplayWorker",
           "SnapshotWindow"]

READ_ONLY = "read-only snapshot: changes go to live agents, never into a recording"


class ReplayLauncher(QObject):
    """Opens replay windows with a progress dialog; keeps them alive until they close.

    ``opened`` carries each new window; ``failed`` a message for the user
    (shown by :meth:`open` as a non-blocking message box over ``parent``).
    """

    opened = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None, quiet: bool = False,
                 on_window: Callable[[SnapshotWindow], object] | None = None) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.quiet = quiet  # no message boxes (the command line prints instead)
        self.on_window = on_window  # dresses each new window (ui.file_actions: Open…, drops)
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

    def open_prometheus(self, source: Any, start: float, end: float, points: int,
                        journal: list[Any]) -> ReplayWorker:
        """Replay ``[start, end]`` of a Prometheus source, ``points`` per series (chart width)."""
        from ...replay.prom_history import prom_session

        return self.open(lambda: prom_session(source, start, end, points, journal),
                         f"Asking Prometheus {getattr(source, 'name', '')}…")

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
        if self.on_window is not None:
            self.on_window(window)
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
            shown = breakable(text)
            self.error_box = QMessageBox(QMessageBox.Icon.Warning, "trimtab: cannot open",
                                         shown, QMessageBox.StandardButton.Ok, self.parent_widget)
            if shown != text:  # the exact text (a long path) to copy, without break marks
                self.error_box.setDetailedText(text)
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


class SnapshotWindow(CompareActions, MainWindow):
    """The cockpit's pages over a replayed model: read-only, with a scrubber and Compare…."""

    routes_page = ReplayRoutesPage
    fleet_page = ReplayFleetPage
    routes: ReplayRoutesPage
    fleet: ReplayFleetPage
    seek_requested = Signal(float)
    closed = Signal()

    def __init__(self, session: ReplaySession, worker: ReplayWorker) -> None:
        self.scrubber = ReplayScrubber()
        replayer = session.replayer
        self.scrubber.set_window(replayer.start, replayer.end)
        self.scrubber.set_clock(replayer.clock)
        self.note_rows = {f"note#{i}": a for i, a in enumerate(session.annotations)}
        super().__init__(replayer.model)
        self.session, self.worker = session, worker
        self.clock = lambda: self.scrubber.clock
        self.fleet.clock = self.clock
        self.cache.ttl_unknown = "not recorded (snapshots hold no agent configs)"
        self.routes.since = lambda: self.clock() - self.live_window
        self.setWindowTitle(f"trimtab — {session.title}")
        self._build_replay_bar(session)
        self.scrubber.seek_requested.connect(self.seek_requested)
        self.seek_requested.connect(worker.seek)
        worker.moved.connect(self.scrubber.set_clock)
        worker.moved.connect(self._moved)
        worker.levels_changed.connect(self._levels_changed)
        self._read_only()
        self.journal.show_rows(session.journal)
        self.show_changes(session.journal)
        length = replayer.end - replayer.start
        span = f"{length:.0f} s" if length < 120 else f"{length / 60:.0f} min"
        self.range_box.addItem(f"whole window ({span})", length)
        self.range_box.setCurrentIndex(self.range_box.count() - 1)
        self.range_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._add_compare_actions()
        QShortcut(QKeySequence("K"), self, self.scrubber.toggle)
        self._force_refresh()

    def _add_compare_actions(self) -> None:
        entries = (("Compare with another snapshot…",
                    "Per-route figures of this window against another snapshot's",
                    self.ask_compare),
                   ("Compare two ranges…", "Pick two from/to ranges of this recording",
                    self.ask_ranges),
                   ("Compare before / after the replay clock",
                    "Scrub to a change marker, then compare the window's two halves",
                    lambda: self.compare_at(self.scrubber.clock)))
        actions = []
        for text, tip, slot in entries:
            action = QAction(text, self)
            action.setToolTip(tip)
            action.triggered.connect(slot)
            actions.append(action)
        self.file_menu.insertActions(self.file_menu.actions()[0], actions)
        self.compare_action, self.ranges_action, self.split_action = actions

    def _build_replay_bar(self, session: ReplaySession) -> None:
        bar = QToolBar("Replay")
        bar.setObjectName("replay-toolbar")
        bar.addWidget(self.scrubber)
        self.levels_edit = QLineEdit(", ".join(level_name(q) for q in QUANTILES))
        self.levels_edit.setToolTip("Percentiles of the Slow routes page, recomputed from the "
                                    "recorded buckets (e.g. p50, p90, p99.9); Enter applies")
        self.levels_edit.setMaximumWidth(220)
        self.levels_edit.returnPressed.connect(self._ask_levels)
        bar.addWidget(QLabel(" Percentiles: "))
        bar.addWidget(self.levels_edit)
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

    @Slot()
    def _ask_levels(self) -> None:
        self.set_levels_text(self.levels_edit.text())

    def set_levels_text(self, text: str) -> bool:
        """Ask the replay for the percentiles in ``text``; a bad entry is shown, nothing changes."""
        try:
            levels = parse_levels(text)
        except ValueError as exc:
            self.levels_edit.setStyleSheet("border: 1px solid #d9534f")
            self.statusBar().showMessage(f"Percentiles not changed: {exc}", 10_000)
            return False
        self.levels_edit.setStyleSheet("")
        self.statusBar().showMessage("Recomputing percentiles from the recorded buckets…", 5_000)
        self.worker.set_levels(levels)
        return True

    @Slot(object)
    def _levels_changed(self, levels: tuple[float, ...]) -> None:
        self.routes.set_levels(levels)
        names = ", ".join(level_name(q) for q in levels)
        self.levels_edit.setText(names)
        self.statusBar().showMessage(f"Percentiles recomputed from the recorded buckets: {names}",
                                     10_000)
        self._force_refresh()

    @Slot(list)
    def show_changes(self, rows: list) -> None:
        """Changes and the recording's annotations, each a marker on every chart."""
        self.journal_rows = {marker_key(r): r for r in rows}
        marks = markers(rows) + [(key, float(a["time"]), f"note: {a['text']}")
                                 for key, a in self.note_rows.items()]
        for chart in self.charts:
            chart.set_markers(marks)

    @Slot(str)
    def show_change_card(self, key: str) -> None:
        """A change's card (with "compare before / after this change"); a note's text."""
        note = self.note_rows.get(key)
        if note is not None:
            self.statusBar().showMessage(f"Note at {clock_text(float(note['time']))}: "
                                         f"{note['text']}", 15_000)
            return
        super().show_change_card(key)
        row = self.journal_rows.get(key)
        if row is not None:
            self.change_card.add_action("Compare before / after this change",
                                        lambda: self.compare_change(row))

    def _read_only(self) -> None:
        """Every change control off, with the reason in its tooltip."""
        self.set_write_access(False, READ_ONLY)
        self.journal.set_write_access(False, READ_ONLY)
        for button in (self.fleet.add_button, self.fleet.remove_button):
            button.setEnabled(False)
            button.setToolTip(f"Disabled: {READ_ONLY}")
        self.fleet.config_label.setText("Targets as recorded (read-only); health at the "
                                        "replay clock.")
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

    def closeEvent(self, event: Any) -> None:
        self.scrubber.set_playing(False)
        # A replay in progress stops at its next step (the worker closes the source itself):
        # never hold the GUI thread for a whole window's replay.
        self.worker.stop(timeout=1.0)
        if self.launcher is not None:
            self.launcher.stop()
        # Not MainWindow.closeEvent: a replay window must not become the cockpit's remembered
        # layout, and it has no journal poll or control pool to stop.
        QMainWindow.closeEvent(self, event)
        self.closed.emit()


LONG_WORD = 60  # characters; a longer unbroken word (a deep path) would widen a message box


def breakable(text: str) -> str:
    """``text`` with a zero-width space after each ``/`` of its long words, so that a
    message box wraps a 400-character path instead of growing 800 px wide."""
    return " ".join(word.replace("/", "/\u200b") if len(word) > LONG_WORD else word
                    for word in text.split(" "))


"""Comparisons in a replay window: two ranges, before/after a change or the clock, another file.

Each comparison runs on a worker thread (:class:`CompareJob`) and shows a
:class:`~trimtab.widgets.compare_view.CompareView`. :class:`CompareActions` is
mixed into the replay window; it reads ``self.session`` (a ReplaySession).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget
from trimtab.widgets.compare_view import CompareView, TwoRangesDialog
from trimtab.widgets.scrubber import clock_text

from ...replay.change_markers import CARD_SETTLE, marker_key
from ...replay.compare import (
    COMPARE_HEADERS,
    Comparison,
    change_windows,
    compare_cells,
    compare_sources,
)
from ...replay.session import ReplaySession
from ...snapshot.open import open_snapshot
from ...snapshot.schema import FILE_FILTER


class CompareActions:
    """Compare… entries of a replay window (a mixin: the window provides ``session``)."""

    session: ReplaySession
    compare_job: CompareJob
    ranges_dialog: TwoRangesDialog

    def _as_widget(self) -> QWidget:
        assert isinstance(self, QWidget)
        return self

    @Slot()
    def ask_compare(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._as_widget(), "Compare with", os.getcwd(),
                                              FILE_FILTER)
        if path:
            self.compare_with(path)

    @Slot()
    def ask_ranges(self) -> TwoRangesDialog:
        """The two-ranges picker (non-blocking); Open compares them."""
        replayer = self.session.replayer
        dialog = self.ranges_dialog = TwoRangesDialog(replayer.start, replayer.end,
                                                      self._as_widget())
        dialog.accepted.connect(lambda: self.compare_ranges(*dialog.ranges()))
        dialog.open()
        return dialog

    def compare_ranges(self, a: tuple[float, float], b: tuple[float, float],
                       labels: tuple[str, str] = ("A", "B")) -> CompareJob:
        """Compare two ranges of this window's source (ValueError shown if a range is bad)."""
        source = self.session.replayer.source

        def compute(progress: Callable[[float], None]) -> Comparison:
            return compare_sources(source, a, source, b, labels, progress)

        self.compare_job = CompareJob(self._as_widget(), compute, "Comparing two ranges…")
        return self.compare_job

    def compare_at(self, t: float) -> CompareJob:
        """Compare ``[start, t]`` (A, before) with ``[t, end]`` (B, after) of this window."""
        replayer = self.session.replayer
        return self.compare_ranges((replayer.start, t), (t, replayer.end), ("before", "after"))

    def compare_change(self, row: Any) -> CompareJob:
        """Before vs after the change of journal ``row``: same length each side, the first
        seconds after it left out (as its before/after card)."""
        replayer = self.session.replayer

        def compute(progress: Callable[[float], None]) -> Comparison:
            before, after = change_windows(row.time, replayer.start, replayer.end, CARD_SETTLE)
            return compare_sources(replayer.source, before, replayer.source, after,
                                   (f"before {marker_key(row)}", f"after {marker_key(row)}"),
                                   progress)

        self.compare_job = CompareJob(self._as_widget(), compute,
                                      f"Comparing before / after {marker_key(row)}…")
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

        self.compare_job = CompareJob(self._as_widget(), compute,
                                      f"Comparing with {Path(path).name}…")
        return self.compare_job


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
        except sqlite3.ProgrammingError as exc:  # its window closed the file meanwhile
            self.failed.emit(f"compare stopped: {exc}")
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

"""File → Open snapshot… (Ctrl+O), File → History… (Ctrl+H) and dropped ``.trimtab`` files:
the ways from a window into read-only replay windows.

Installed on a window by whoever builds it (the command line for the cockpit, a launcher for
each replay window it opens), so that :mod:`.window` knows nothing of replay windows and
:mod:`.replay.window` (whose windows are main windows) imports it without a cycle.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QWidget
from trimtab.widgets.compare_view import RangeDialog

from ..snapshot.schema import FILE_FILTER
from .replay.window import ReplayLauncher

if TYPE_CHECKING:
    from .window import MainWindow


def install_file_actions(window: MainWindow) -> ReplayLauncher:
    """Give ``window`` Open…, History… and drops, with a launcher of its own; return it.

    The replay windows the launcher opens get the same (a replay window opens others).
    """
    launcher = ReplayLauncher(window, on_window=install_file_actions)
    window.launcher = launcher
    window.open_paths = lambda paths: [launcher.open_file(path) for path in paths]
    add_file_actions(window, launcher)
    return launcher


def add_file_actions(window: MainWindow, launcher: ReplayLauncher) -> None:
    """File → Open… (Ctrl+O) and, with a store, History… (Ctrl+H), at the top of the File menu."""
    menu = window.file_menu
    first = menu.actions()[0] if menu.actions() else None
    open_action = QAction("Open snapshot…", window)
    open_action.setShortcut(QKeySequence("Ctrl+O"))
    open_action.setToolTip("Open a .trimtab snapshot read-only (or drop one on the window)")
    open_action.triggered.connect(lambda: ask_open(window, launcher))
    history = QAction("History…", window)
    history.setShortcut(QKeySequence("Ctrl+H"))
    history.setEnabled(bool(history_sources(window)))
    history.setToolTip("Replay a range of the history database or of a Prometheus source"
                       if history.isEnabled()
                       else "Disabled: this cockpit keeps no history database")
    history.triggered.connect(lambda: ask_history(window, launcher))
    menu.insertActions(first, [open_action, history])  # type: ignore[arg-type]
    window.open_action, window.history_action = open_action, history


def ask_open(parent: QWidget, launcher: ReplayLauncher) -> None:
    """Ask for a snapshot file and open it."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open snapshot", os.getcwd(), FILE_FILTER)
    if path:
        launcher.open_file(path)


def history_sources(window: MainWindow) -> dict[str, Any]:
    """What History… can read: the history database, then each Prometheus source by name."""
    out: dict[str, Any] = {}
    if window.model.store is not None:
        out["history database"] = window.model.store
    manager = getattr(window.fleet, "manager", None)
    for name, collector in sorted(getattr(manager, "collectors", {}).items()):
        out[f"Prometheus {name}"] = collector.source
    return out


def ask_history(window: MainWindow, launcher: ReplayLauncher) -> None:
    """Ask for a range of one history source and replay it."""
    sources = history_sources(window)
    if not sources:
        return
    dialog = RangeDialog(window, list(sources))
    if dialog.exec():
        start, end = dialog.range()
        source = sources[dialog.sources.currentText()]
        journal = list(window.journal_rows.values())
        if source is window.model.store:
            launcher.open_range(source, start, end, journal)
        else:  # one point per pixel column of the charts
            width = max(chart.width() for chart in window.charts)
            launcher.open_prometheus(source, start, end, width, journal)

"""Ways into a read-only replay window: ``trimtab open FILE [--compare FILE]``, File → Open…
(Ctrl+O), File → History… (Ctrl+H) and dropping a ``.trimtab`` file on a window."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from PySide6.QtCore import QEventLoop, QMimeData
    from PySide6.QtWidgets import QWidget

    from .snapshot_window import ReplayLauncher, SnapshotWindow
    from .window import MainWindow

SUFFIX = ".trimtab"
PAGES = ("overview", "routes", "cache", "balancer", "traces", "journal", "fleet")


def add_open_parser(subparsers: Any) -> None:
    """Add ``open`` to ``parser.add_subparsers()``."""
    parser = subparsers.add_parser("open", help="open a .trimtab snapshot read-only "
                                   "(every page, replay scrubber, compare)")
    parser.add_argument("snapshot", metavar="FILE", help="a .trimtab snapshot")
    parser.add_argument("--compare", metavar="FILE", help="another snapshot to compare it with")
    parser.add_argument("--page", choices=PAGES, help="page to open on")
    parser.add_argument("--theme", choices=("dark", "light"), help="chart theme")
    parser.add_argument("--screenshot", metavar="PATH",
                        help="save a PNG of the window once loaded and exit")
    parser.add_argument("--after", type=float, default=1.0, metavar="SECONDS",
                        help="with --screenshot: seconds to wait after loading")
    parser.set_defaults(func=run_open)


def run_open(args: argparse.Namespace, out: TextIO = sys.stderr) -> int:
    """Open ``args.snapshot`` in its own window and run Qt's loop until it closes.

    0 when the window was shown and closed; 2 (and one line on ``out``) when the
    file cannot be opened: missing, truncated, corrupt, a future schema, not a snapshot.
    """
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from .gui_gc import GuiThreadCollector
    from .snapshot_window import ReplayLauncher

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # A loop of our own, not app.exec(): QApplication.exit() reaching no running loop
    # (a window closing after we returned) made the caller's next event loops return at
    # once, i.e. busy-spin holding the GIL. Exiting this loop affects nothing else.
    loop = QEventLoop()
    launcher = ReplayLauncher(None, quiet=True)
    result = {"code": 0}

    def failed(text: str) -> None:
        if args.snapshot not in text:  # every message names the file it is about
            text = f"{args.snapshot}: {text}"
        print(f"trimtab: {text}", file=out, flush=True)
        if not launcher.windows:  # nothing open: the command failed
            result["code"] = 2
            loop.exit(2)

    launcher.failed.connect(failed)
    launcher.opened.connect(lambda window: _opened(window, launcher, args, out, loop))
    previous = signal.signal(signal.SIGINT, lambda *_: QTimer.singleShot(0, app.quit))
    wake = QTimer()  # lets Python run its signal handler while Qt's loop is in C++
    wake.timeout.connect(lambda: None)
    wake.start(200)
    print(f"trimtab: opening {args.snapshot} ...", file=out, flush=True)
    # The replay and compare threads must never free a closed window's Qt objects (gui_gc.py).
    collector = GuiThreadCollector().start()
    try:
        launcher.open_file(args.snapshot)
        code = int(loop.exec())
    finally:
        wake.stop()
        signal.signal(signal.SIGINT, previous)
        for window in list(launcher.windows):
            window.close()
        collector.stop()  # automatic collection as it was (run_open may run inside a cockpit)
    return result["code"] or code


def _opened(window: SnapshotWindow, launcher: ReplayLauncher, args: argparse.Namespace,
            out: TextIO, loop: QEventLoop) -> None:
    from PySide6.QtCore import QTimer

    window.closed.connect(lambda: None if launcher.windows else loop.exit(0))
    if args.page:
        window.tabs.setCurrentIndex(PAGES.index(args.page))
    if args.theme:
        window.theme_action.setChecked(args.theme == "light")
    if args.compare:
        job = window.compare_with(args.compare)
        job.failed.connect(lambda text: print(f"trimtab: cannot compare: {text}", file=out))
    print(f"trimtab: {window.windowTitle()}", file=out, flush=True)
    _say_omitted(window, out)
    if args.screenshot:
        window.resize(1400, 860)
        QTimer.singleShot(int(args.after * 1000), lambda: _save_and_quit(window, args, out, loop))


def _say_omitted(window: SnapshotWindow, out: TextIO) -> None:
    """What the export could not include, on ``out`` and where the journal would be."""
    omitted = getattr(window.session.source, "omitted", list)()
    for item in omitted:
        print(f"trimtab: not in this snapshot: {item['what']} of {item['source']}: "
              f"{item['why']}", file=out, flush=True)
    journal = [o for o in omitted if o["what"] in ("journal", "targets", "everything")]
    if journal and not window.session.journal:
        window.journal.hint.setText(
            "The change journal was not included in this snapshot, so changes are unknown: "
            + "; ".join(f"{o['source']}: {o['why']}" for o in journal))


def _save_and_quit(window: SnapshotWindow, args: argparse.Namespace, out: TextIO,
                   loop: QEventLoop) -> None:
    window._force_refresh()
    ok = window.grab().save(args.screenshot)
    view = getattr(getattr(window, "compare_job", None), "view", None)
    if ok and view is not None:  # the compare dialog beside it
        stem, dot, ext = args.screenshot.rpartition(".")
        view.grab().save(f"{stem}-compare.{ext}" if dot else f"{args.screenshot}-compare")
    print(f"trimtab: screenshot {'saved to' if ok else 'FAILED for'} {args.screenshot}",
          file=out, flush=True)
    loop.exit(0 if ok else 1)


def snapshot_paths(mime: QMimeData) -> list[str]:
    """Local ``.trimtab`` files among dropped URLs."""
    return [url.toLocalFile() for url in mime.urls()
            if url.isLocalFile() and url.toLocalFile().lower().endswith(SUFFIX)]


def add_file_actions(window: MainWindow, launcher: ReplayLauncher) -> None:
    """File → Open… (Ctrl+O) and, with a store, History… (Ctrl+H), at the top of the File menu."""
    from PySide6.QtGui import QAction, QKeySequence

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
    from PySide6.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(parent, "Open snapshot", os.getcwd(),
                                          "trimtab snapshot (*.trimtab);;All files (*)")
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
    from trimtab.widgets.compare_view import RangeDialog

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

"""``trimtab open FILE [--compare FILE]``: a snapshot in a read-only replay window.

The other ways into a replay window (File → Open…, History…, drops) are
:mod:`trimtab.app.ui.file_actions`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ..ui.pages.registry import KEYS as PAGES
from ..ui.pages.registry import index as page_index

if TYPE_CHECKING:
    from PySide6.QtCore import QEventLoop

    from ..ui.replay.window import ReplayLauncher, SnapshotWindow


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
    if args.screenshot or getattr(args, "charts", None):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from ..ui.file_actions import install_file_actions
    from ..ui.gc import GuiThreadCollector
    from ..ui.replay.window import ReplayLauncher

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # A loop of our own, not app.exec(): QApplication.exit() reaching no running loop
    # (a window closing after we returned) made the caller's next event loops return at
    # once, i.e. busy-spin holding the GIL. Exiting this loop affects nothing else.
    loop = QEventLoop()
    launcher = ReplayLauncher(None, quiet=True, on_window=install_file_actions)
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

    from ..ui.window import save_and_quit

    window.closed.connect(lambda: None if launcher.windows else loop.exit(0))
    if args.page:
        window.tabs.setCurrentIndex(page_index(args.page))
    if args.theme:
        window.theme_action.setChecked(args.theme == "light")
    if args.compare:
        job = window.compare_with(args.compare)
        job.failed.connect(lambda text: print(f"trimtab: cannot compare: {text}", file=out))
    print(f"trimtab: {window.windowTitle()}", file=out, flush=True)
    _say_omitted(window, out)
    if args.screenshot:
        window.resize(1400, 860)
        QTimer.singleShot(int(args.after * 1000),
                          lambda: save_and_quit(window, args.screenshot, loop.exit, out))
    elif getattr(args, "charts", None):
        window.resize(1400, 860)
        QTimer.singleShot(int(args.after * 1000),
                          lambda: export_charts_and_quit(window, args.charts, args.page,
                                                         loop.exit, out))


def export_charts_and_quit(window: SnapshotWindow, path: str, page: str | None,
                           quit: Any, out: TextIO) -> None:
    """Export the charts of ``page`` (or of every page with charts) as ``path``'s format,
    one file each (``STEM-<page>-<n>-<title>.EXT``), print each, then ``quit`` (0, or 2
    on a bad path)."""
    stem, dot, ext = path.rpartition(".")
    keys = [page] if page else list(PAGES)
    written: list[str] = []
    try:
        if not dot or ext.lower() not in ("png", "svg", "csv"):
            raise ValueError(f"{path}: give the file a .png, .svg or .csv suffix")
        for key in keys:
            window.tabs.setCurrentIndex(page_index(key))
            window._force_refresh()
            if getattr(window.tabs.currentWidget(), "charts", None):
                written += window.export_page(f"{stem}-{key}.{ext}")
    except (OSError, ValueError) as exc:
        print(f"trimtab: charts not exported: {exc}", file=out, flush=True)
        quit(2)
        return
    for name in written:
        print(f"trimtab: chart written to {name}", file=out, flush=True)
    quit(0 if written else 2)


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

"""``trimtab`` command line: ``trimtab demo [--screenshot PATH --after SECONDS]``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile

from trimtab.agent.fleet import DemoFleet
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from .model import FleetModel

PAGES = ("overview", "routes", "cache", "balancer", "fleet")


def start_collection(fleet: DemoFleet, model: FleetModel) -> ScrapeEngine:
    """Scrape every fleet target each second into ``model``."""
    targets = [ScrapeTarget(t.name, t.url, t.kind) for t in fleet.targets]
    return ScrapeEngine(targets, model.ingest, on_cycle=model.tick).start()


def run_demo(args: argparse.Namespace) -> int:
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # Until Qt's loop runs, Ctrl-C / SIGTERM interrupt start-up (KeyboardInterrupt → cleanup).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    log_dir = tempfile.mkdtemp(prefix="trimtab-demo-")
    print(f"trimtab: starting the demo fleet (logs in {log_dir}) ...", flush=True)
    fleet = DemoFleet(rps=args.rps, log_dir=log_dir)
    engine: ScrapeEngine | None = None
    try:
        fleet.start()
        model = FleetModel()
        engine = start_collection(fleet, model)
        window = MainWindow(model)
        if args.page:
            window.tabs.setCurrentIndex(PAGES.index(args.page))
        if args.screenshot:
            window.resize(1400, 860)  # a stable size for README shots, whatever was remembered
        if args.theme:
            window.theme_action.setChecked(args.theme == "light")
        window.show()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: app.quit())
        print(f"trimtab: balancer at {fleet.balancer_url}; "
              + ", ".join(f"{t.name} {t.url}" for t in fleet.targets), flush=True)
        print("trimtab: cockpit open; close the window or press Ctrl-C to stop.", flush=True)
        wake = QTimer()  # lets Python run its signal handlers while Qt's loop is in C++
        wake.timeout.connect(lambda: None)
        wake.start(200)
        if args.screenshot:
            QTimer.singleShot(int(args.after * 1000), lambda: _save_and_quit(window, args.screenshot))
        return int(app.exec())
    finally:
        if engine is not None:
            engine.stop()
        fleet.stop()


def _save_and_quit(window: object, path: str) -> None:
    from PySide6.QtWidgets import QApplication

    window.refresh()  # type: ignore[attr-defined]
    ok = window.grab().save(path)  # type: ignore[attr-defined]
    print(f"trimtab: screenshot {'saved to' if ok else 'FAILED for'} {path}", flush=True)
    QApplication.instance().exit(0 if ok else 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trimtab", description="A cockpit for HTTP API fleets.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="start a demo fleet and open the cockpit on it")
    demo.add_argument("--rps", type=float, default=100.0, help="demo traffic, requests/s")
    demo.add_argument("--screenshot", metavar="PATH", help="save a PNG of the window and exit")
    demo.add_argument("--after", type=float, default=20.0, metavar="SECONDS",
                      help="with --screenshot: seconds to wait before the shot")
    demo.add_argument("--page", choices=PAGES, help="page to open on (default: the last one used)")
    demo.add_argument("--theme", choices=("dark", "light"), help="chart theme")
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C before the window opened; children are already stopped
        print("trimtab: interrupted, demo stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

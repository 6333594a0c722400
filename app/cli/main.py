"""``trimtab`` command line.

- ``trimtab [cockpit] [--targets FILE] [--prometheus URL]``: the cockpit on the targets in a
  TOML file (and every target of a Prometheus server);
- ``trimtab demo [--screenshot PATH --after SECONDS]``: a demo fleet and the cockpit on it.

Both keep their history within ``--retention-raw/-1m/-10m`` and ``--history-cap``
(defaults from ``settings.toml`` beside the targets file, see ``settings``).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trimtab.agent.procs import stop_all
from trimtab.collectors.exposition import native
from trimtab.collectors.mappings import MappingTable
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.collectors.scrape_process import ScrapeProcess, Scraper, collector_class
from trimtab.demo.fleet import DemoFleet

from ..model.fleet import FleetModel
from ..store import settings as history_settings
from ..targets import file as targets_file
from ..ui.pages.registry import KEYS as PAGES
from ..ui.pages.registry import index as page_index
from .runtime import settle_runtime

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

    from ..store.keeper import HistoryKeeper
    from ..store.store import Store
    from ..targets.manager import TargetManager
    from ..ui.seams import ExportTargets
    from ..ui.tuning import Tuning
    from ..ui.window import MainWindow


def start_collection(fleet: DemoFleet, model: FleetModel) -> Scraper:
    """Scrape every fleet target each second into ``model``."""
    targets = [ScrapeTarget(t.name, t.url, t.kind, token=t.token) for t in fleet.targets]
    return start_scraper(targets, model)


def start_scraper(targets: list[ScrapeTarget], model: FleetModel,
                  mappings: list[MappingTable] | None = None) -> Scraper:
    """Scrape ``targets`` into ``model`` where ``TRIMTAB_COLLECTOR`` says (checked earlier by
    :func:`collector_problem`): in a process of its own by default, so parsing never holds
    the GUI thread's GIL."""
    kind = collector_class(os.environ)
    callbacks: dict[str, Any] = {
        "on_cycle": model.tick, "on_traces": model.ingest_traces,
        "on_config": model.ingest_config, "on_balancer_limits": model.ingest_balancer_limits}
    if kind is ScrapeProcess:  # the status bar says why no scrape arrives while it restarts
        callbacks["on_status"] = model.collector_status
    return kind(targets, model.ingest, mappings=mappings, **callbacks).start()


def collector_problem() -> str | None:
    """Why ``TRIMTAB_COLLECTOR`` cannot be used (None: it can)."""
    try:
        collector_class(os.environ)
    except ValueError as exc:
        return str(exc)
    return None


def native_note() -> str | None:
    """What to tell the operator when the parser's C helpers were not built (None: they were).
    Nothing breaks without it, but a fleet costs more CPU to scrape, so it is said, not hidden."""
    if native.ENABLED:
        return None
    return ("note: the parser's C helpers are not built (no C compiler or Python headers when "
            "trimtab was installed); scrapes are parsed in Python, several times slower. "
            "Install gcc and python3-dev, then install trimtab again (./run.sh demo does both).")


def _qt_app(args: argparse.Namespace) -> QCoreApplication:
    if getattr(args, "screenshot", None):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from ..ui.gc import GuiThreadCollector

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # Before the scrape thread starts: its garbage collections freed a closed window's Qt
    # objects and deadlocked with the GUI thread (gui_gc.py); only the GUI thread collects.
    GuiThreadCollector(app).start()  # the application (its parent) keeps it
    # Until Qt's loop runs, Ctrl-C / SIGTERM interrupt start-up (KeyboardInterrupt → cleanup).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return app


def _run_window(app: QCoreApplication, args: argparse.Namespace,
                make_window: Callable[[], MainWindow],
                banner: str) -> int:
    """Show the window, wire Ctrl-C and the screenshot option, run Qt's loop."""
    from PySide6.QtCore import QTimer

    from ..ui.file_actions import install_file_actions
    from ..ui.window import save_and_quit

    window = make_window()
    install_file_actions(window)
    if args.page:
        window.tabs.setCurrentIndex(page_index(args.page))
    if args.screenshot:
        window.resize(1400, 860)  # a stable size for README shots, whatever was remembered
    if args.theme:
        window.theme_action.setChecked(args.theme == "light")
    window.show()
    settle_runtime()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Queued, not app.quit() directly: a signal that lands before exec() starts would
        # otherwise be dropped (quit() outside a running loop does nothing) and hang.
        signal.signal(sig, lambda *_: QTimer.singleShot(0, app.quit))
    print(banner, flush=True)
    print("trimtab: cockpit open; close the window or press Ctrl-C to stop.", flush=True)
    wake = QTimer()  # lets Python run its signal handlers while Qt's loop is in C++
    wake.timeout.connect(lambda: None)
    wake.start(200)
    if args.screenshot:
        QTimer.singleShot(int(args.after * 1000),
                          lambda: save_and_quit(window, args.screenshot, app.exit))
    code = int(app.exec())
    window.close()  # stops the journal poll and the control pool (Ctrl-C skips closeEvent)
    return code


def run_demo(args: argparse.Namespace) -> int:
    from ..ui.demo_info import show_demo_info
    from ..ui.window import MainWindow

    try:
        settings = _history_settings(args, targets_file.default_path())
    except history_settings.SettingsError as exc:
        print(f"trimtab: {exc}", file=sys.stderr)
        return 2
    problem = collector_problem()
    if problem is not None:
        print(f"trimtab: {problem}", file=sys.stderr)
        return 2
    if (note := native_note()) is not None:
        print(f"trimtab: {note}", file=sys.stderr)
    app = _qt_app(args)
    fleet = DemoFleet(rps=args.rps)  # its temporary directory goes with fleet.stop()
    log_dir = fleet.workdir
    print(f"trimtab: starting the demo fleet (logs in {log_dir}, removed on exit) ...",
          flush=True)
    engine: Scraper | None = None
    model: FleetModel | None = None
    keeper: HistoryKeeper | None = None
    try:
        fleet.start()
        store = _open_store(args.store or os.path.join(log_dir, "history.sqlite"), settings)
        model = FleetModel(store=store)
        keeper = _keep(store)
        engine = scraping = start_collection(fleet, model)
        banner = "\n".join([f"trimtab: balancer at {fleet.balancer_url}; "
                            + ", ".join(f"{t.name} {t.url}" for t in fleet.targets),
                            *fleet.token_lines()])

        def window() -> MainWindow:
            made = _exporting(MainWindow(model, tuning=make_tuning(fleet.write_token,
                                                                   fleet.targets)),
                              scraping.targets)
            show_demo_info(made, fleet.write_token, fleet.curl_example())
            return made

        return _run_window(app, args, window, banner)
    finally:
        if engine is not None:
            engine.stop()
        if keeper is not None:
            keeper.stop()
        if model is not None and model.store is not None:
            model.store.close()
        fleet.stop()


def run_cockpit(args: argparse.Namespace) -> int:
    from ..targets.manager import TargetManager
    from ..ui.window import MainWindow

    try:
        path, targets, proms, tables = _cockpit_config(args)
        discovery = targets_file.load_discovery(path)
        settings = _history_settings(args, path)
    except (targets_file.TargetsError, history_settings.SettingsError) as exc:
        return config_error(str(exc))
    problem = collector_problem()
    if problem is not None:
        return config_error(problem)
    if (note := native_note()) is not None:
        print(f"trimtab: {note}", file=sys.stderr)
    first_run = not path.exists() and not proms  # nothing to watch yet: greet, don't sit empty
    token = os.environ.get("TRIMTAB_TOKEN", "")  # read traces/configs, and change things if write
    targets = [dataclasses.replace(t, token=token) for t in targets]
    store_path = args.store or str(targets_file.default_path().parent / "history.sqlite")
    try:
        store = _open_store(store_path, settings)
    except ValueError as exc:
        print(f"trimtab: {exc}", file=sys.stderr)
        return 2
    app = _qt_app(args)
    model = FleetModel(store=store)
    keeper = _keep(store)
    # The engine ticks the model once a second even without targets; Prometheus sources only feed it.
    engine = start_scraper(targets, model, tables)
    manager = TargetManager(path, engine, model, token, tables=tables,
                            names={t.name for t in targets})
    demos: list[subprocess.Popen[bytes]] = []  # demo fleets started from the greeting

    def make_window() -> MainWindow:
        tuning = make_tuning(token, targets + manager.discovered()) if token else None
        if tuning is not None and manager.discovery is not None:
            manager.discovery.on_change = lambda: follow_instances(tuning, targets, manager)
            follow_instances(tuning, targets, manager)  # what was found before the hook
        window = _exporting(MainWindow(model, targets=manager, tuning=tuning),
                            lambda: _current_targets(path, token, targets) + manager.discovered())
        if first_run:
            window.fleet.greet_first_run(lambda: demos.append(_start_demo()))
            window.tabs.setCurrentIndex(page_index("fleet"))
        return window

    try:
        for prom, saved in proms:
            manager.start_prometheus(prom, saved)
        if discovery:
            manager.discover(discovery)
        banner = f"trimtab: {len(targets)} target(s) from {path}" + "".join(
            f"; Prometheus {p.name} at {p.url}" for p, _ in proms) + "".join(
            f"; discovery {c.source.name}" for c in discovery)
        if first_run:
            banner += " (no targets file yet: the Fleet page offers Add target… and the demo)"
        return _run_window(app, args, make_window, banner)
    finally:
        stop_all(demos)
        manager.close()
        engine.stop()
        keeper.stop()
        store.close()


def config_error(message: str) -> int:
    """A configuration error stops the start: on stderr, and in a window when one can be
    seen (a cockpit started from a desktop launcher has no terminal); exit status 2."""
    print(f"trimtab: {message}", file=sys.stderr)
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform not in ("offscreen", "minimal") and (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        from PySide6.QtWidgets import QApplication

        from ..ui.pages.fleet import config_error_box

        app = QApplication.instance() or QApplication(sys.argv[:1])
        config_error_box(message).exec()
        del app
    return 2


def _start_demo() -> subprocess.Popen[bytes]:
    """``trimtab demo`` in a process of its own (the greeting's *Start the demo*)."""
    return subprocess.Popen([sys.executable, "-m", "trimtab.app.cli.main", "demo"])


def _cockpit_config(args: argparse.Namespace) -> tuple[
        Path, list[ScrapeTarget], list[tuple[ScrapeTarget, bool]], list[MappingTable]]:
    """Targets file, its scraped targets, Prometheus sources (saved or from ``--prometheus``)
    and the mapping tables (``mappings.toml`` beside the file); TargetsError names a bad one."""
    path = Path(args.targets) if args.targets else targets_file.default_path()
    targets = targets_file.load(path)
    mappings = targets_file.mappings_path(path)
    tables = targets_file.load_mappings(mappings)
    if mappings.exists():
        print(f"trimtab: mapping tables from {mappings}", flush=True)
    proms = [(t, True) for t in targets if t.kind == targets_file.PROMETHEUS]
    if args.prometheus:
        taken = {t.name for t in targets}
        name = next(n for n in ("prometheus", *(f"prometheus-{i}" for i in range(2, 99)))
                    if n not in taken)
        proms.append((targets_file.validate(
            ScrapeTarget(name, args.prometheus, targets_file.PROMETHEUS,
                         token_env=getattr(args, "prometheus_token_env", None) or "")), False))
    elif getattr(args, "prometheus_token_env", None):
        raise targets_file.TargetsError("--prometheus-token-env needs --prometheus URL")
    for prom, _ in proms:  # an unset token variable: a clear error before any window
        targets_file.auth_headers(prom)
    scraped = [t for t in targets if t.kind != targets_file.PROMETHEUS]
    return path, scraped, proms, tables


def _exporting(window: MainWindow, targets: ExportTargets) -> MainWindow:
    """The window, told its scrape targets: a snapshot lists them and redacts their tokens."""
    window.export_targets = targets
    return window


def _current_targets(path: Path, token: str, started: list[ScrapeTarget]) -> list[ScrapeTarget]:
    """The targets file as it is now (Fleet → Add/Remove edit it), with the token; the
    start-up list when the file cannot be read."""
    try:
        return [dataclasses.replace(t, token=token) for t in targets_file.load(path)]
    except (targets_file.TargetsError, OSError):
        return started


def follow_instances(tuning: Tuning, static: list[ScrapeTarget], manager: TargetManager) -> None:
    """Point ``tuning``'s changes at the file's instances and those discovery finds now
    (any thread: the list is replaced whole, never edited in place)."""
    from ..control.types import Agent

    found = [*static, *manager.discovered()]
    tuning.instances = [Agent.from_target(t) for t in found if t.kind == "instance"]


def make_tuning(token: str, targets: list[Any]) -> Tuning:
    """The control side for these targets (instances and the first balancer)."""
    from ..control.types import Agent
    from ..ui.tuning import Tuning

    agents = [Agent.from_target(t) for t in targets]
    instances = [a for a in agents if a.kind == "instance"]
    balancer = next((a for a in agents if a.kind == "balancer"), None)
    return Tuning(token, instances, balancer)


def _history_settings(args: argparse.Namespace, targets_path: Path) -> history_settings.Settings:
    """Retention and cap: ``settings.toml`` beside the targets file, flags on top."""
    path = history_settings.settings_path(targets_path)
    return history_settings.resolve(path, {s.key: getattr(args, _dest(s.flag), None)
                                           for s in history_settings.SETTINGS})


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _open_store(path: str, settings: history_settings.Settings) -> Store:
    """The history database; a corrupt or foreign file is a clear error (StoreError)."""
    from ..store.store import Store

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(f"trimtab: history in {path}; keeps {settings.describe()}", flush=True)
    return Store(path, retention=settings.retention())


def _keep(store: Store) -> HistoryKeeper:
    """Start the thread that keeps ``store`` within its retention and cap."""
    from ..store.keeper import HistoryKeeper

    return HistoryKeeper(store).start()


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--screenshot", metavar="PATH", help="save a PNG of the window and exit")
    parser.add_argument("--after", type=float, default=20.0, metavar="SECONDS",
                        help="with --screenshot: seconds to wait before the shot")
    parser.add_argument("--page", choices=PAGES, help="page to open on (default: the last one used)")
    parser.add_argument("--theme", choices=("dark", "light"), help="chart theme")
    parser.add_argument("--store", metavar="FILE", help="history database (SQLite)")
    for setting in history_settings.SETTINGS:  # defaults: settings.toml, then the declared ones
        parser.add_argument(setting.flag, metavar="SIZE" if setting.key == "cap" else "TIME",
                            help=f"{setting.help} (default "
                                 f"{setting.show(setting.default)}, or settings.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trimtab", description="A cockpit for HTTP API fleets.")
    sub = parser.add_subparsers(dest="cmd")
    cockpit = sub.add_parser("cockpit", help="open the cockpit on your targets (the default)")
    cockpit.add_argument("--targets", metavar="FILE",
                         help=f"targets TOML file (default: {targets_file.default_path()})")
    cockpit.add_argument("--prometheus", metavar="URL",
                         help="also read every target of this Prometheus server "
                              "(base URL, like http://127.0.0.1:9090)")
    cockpit.add_argument("--prometheus-token-env", metavar="VAR",
                         help="with --prometheus: the environment variable holding a bearer "
                              "token for it (behind an authenticating proxy)")
    _window_options(cockpit)
    cockpit.set_defaults(func=run_cockpit)
    demo = sub.add_parser("demo", help="start a demo fleet and open the cockpit on it")
    demo.add_argument("--rps", type=float, default=100.0, help="demo traffic, requests/s")
    _window_options(demo)
    demo.set_defaults(func=run_demo)
    from .snapshot import add_snapshot_commands

    add_snapshot_commands(sub)
    from .open import add_open_parser

    add_open_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: where is it stuck?
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:  # `trimtab agent balance|haproxy|instance|loadgen ...`
        if argv[1:2] in (["instance"], ["loadgen"]):  # the demo fleet's processes
            from trimtab.demo.__main__ import main as process_main
        else:
            from trimtab.agent.__main__ import main as process_main

        process_main(argv[1:])
        return 0
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "cockpit")
    args = build_parser().parse_args(argv)
    if args.cmd is None:
        args = build_parser().parse_args(["cockpit", *argv])
    try:
        code = int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C before the window opened; children are already stopped
        print("trimtab: interrupted, stopped.", file=sys.stderr)
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The main window: tabs of pages over one FleetModel. GUI thread only, no I/O here."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

from PySide6.QtCore import QMimeData, QSettings, QTimer, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSystemTrayIcon,
    QTabWidget,
    QToolBar,
)
from trimtab.collectors.errors import one_line
from trimtab.widgets.card import ChangeCard
from trimtab.widgets.palette import Palette
from trimtab.widgets.theme import THEMES
from trimtab.widgets.timeseries import TimeSeriesView

from ..control.actions import limit_routes
from ..control.types import JournalRow
from ..model import format as fmt
from ..model.before_after import Comparison, bounding_changes, change_scope, compare_all
from ..model.fleet import FleetModel
from ..model.limit_share import refused_share
from ..replay.change_markers import CARD_SETTLE, CARD_WINDOW, card, marker_key, markers
from ..slo.burn import FAST, burn_rate
from ..slo.file import slo_path
from ..slo.track import StoreSource, ratio
from ..snapshot.schema import SUFFIX
from ..targets.manager import TargetManager
from .pages.balancer import BalancerPage
from .pages.cache import CachePage
from .pages.fleet import FleetPage, gone_markers
from .pages.journal import JournalPage
from .pages.limits import LimitsPage
from .pages.overview import OverviewPage
from .pages.registry import PAGES
from .pages.routes import RoutesPage
from .pages.slo import SloPage
from .pages.traces import TracesPage
from .seams import ExportTargets, Launcher, OpenPaths, RunningJob
from .tuning import JOURNAL_POLL_MS, Tuning

LIVE_WINDOWS = (("last 5 min", 300), ("last 15 min", 900), ("last 60 min", 3600))
LIVE_STEP = 10.0  # seconds: the live time axis moves in steps of this much
FLEET_REFRESH_S = 1.0  # the Fleet page repaints at most this often on health-only changes


class MainWindow(QMainWindow):
    """Polls ``model.version`` a few times a second and refreshes the visible page when it moved."""

    routes_page = RoutesPage  # a replay window swaps in pages that read its replay clock
    fleet_page = FleetPage

    def __init__(self, model: FleetModel, refresh_hz: float = 4.0,
                 targets: TargetManager | None = None, tuning: Tuning | None = None) -> None:
        super().__init__()
        self.model = model
        self.clock: Callable[[], float] = time.time  # a replay window reads its replay clock
        self.setWindowTitle("trimtab — fleet cockpit")
        self.resize(1400, 860)
        self.overview = OverviewPage(model)
        self.routes = self.routes_page(model)
        self.cache = CachePage(model)
        self.balancer = BalancerPage(model)
        self.traces = TracesPage(model)
        self.journal = JournalPage(tuning)
        self.fleet = self.fleet_page(model, targets)
        # SLOs live beside the targets file; a window without one (the demo) keeps them in memory.
        self.slo = SloPage(model, slo_path(targets.path) if targets is not None else None,
                           prometheus=lambda: prometheus_sources(targets))
        self.slo.fast_burn.connect(self.notify_fast_burn)
        self.limits = LimitsPage(model)
        self.pages = [getattr(self, page.key) for page in PAGES]
        self.tabs = QTabWidget()
        for page, spec in zip(self.pages, PAGES):
            self.tabs.addTab(page, spec.title)
        self.routes.traces_requested.connect(self.show_traces)
        self.routes.traces_window_requested.connect(self.show_trace_window)
        self.charts = [chart for page in self.pages for chart in page.charts]
        self.palette = Palette()  # one colour per route or backend, on every chart
        for chart in self.charts:
            if isinstance(chart, TimeSeriesView):  # a heatmap has no per-entity colours
                chart.set_palette(self.palette)
        self.overview.share_bars.set_palette(self.palette)
        for chart in self.charts:  # zoom and pan stay in step on every chart
            chart.user_ranged.connect(self._user_zoomed)
            chart.marker_clicked.connect(self.show_change_card)
        self.tuning = tuning
        self.journal_rows: dict[str, JournalRow] = {}
        self._change_marks: list[tuple[str, float, str]] = []  # journal markers shown
        self._departures_seen = 0  # model.departures already marked on the charts
        if tuning is not None:
            self._wire_tuning(tuning)
        self.tabs.currentChanged.connect(self._force_refresh)
        self.setCentralWidget(self.tabs)
        self._build_toolbar()
        self.status = QLabel("No targets yet: add one on the Fleet page (Ctrl+7, Add target…) "
                             "or start the demo (trimtab demo).")
        self.statusBar().addWidget(self.status, 1)
        self.paused = False
        self._tray: QSystemTrayIcon | None = None  # made on the first fast-burn notification
        self._seen_version = -1
        self._seen_health = -1
        self._fleet_at = 0.0  # monotonic time of the Fleet page's last refresh
        self._shown_end = 0.0
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(int(1000 / refresh_hz))
        for index in range(self.tabs.count()):
            QShortcut(QKeySequence(f"Ctrl+{index + 1}"), self,
                      activated=lambda i=index: self.tabs.setCurrentIndex(i))
        self._restore_layout()
        # File → Open snapshot… and History…, the launcher of the replay windows they open and
        # where dropped .trimtab files go: set by ui.file_actions.install_file_actions (the
        # window itself knows no replay window). None until then; drops are refused.
        self.launcher: Launcher | None = None
        self.open_paths: OpenPaths | None = None
        self.open_action: QAction | None = None
        self.history_action: QAction | None = None
        self.setAcceptDrops(True)
        from .export import add_export_action

        # The scrape targets, for an export's target list and its redaction of their tokens.
        # Set by whoever builds the window (cli.main); nobody sets it on a replay window.
        self.export_targets: ExportTargets = []
        # The export running now (ui.export keeps it here until it ends).
        self.export_job: RunningJob | None = None
        self.export_snapshot_action = add_export_action(self)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.open_paths is not None and snapshot_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = snapshot_paths(event.mimeData())
        if self.open_paths is not None and paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    def _build_toolbar(self) -> None:
        bar = QToolBar("View")
        bar.setObjectName("view-toolbar")
        self.range_box = QComboBox()
        for label, seconds in LIVE_WINDOWS:
            self.range_box.addItem(label, seconds)
        self.range_box.setCurrentIndex(0)
        self.range_box.setToolTip("Live window shown on every chart")
        self.range_box.currentIndexChanged.connect(self._force_refresh)
        bar.addWidget(QLabel(" Range: "))
        bar.addWidget(self.range_box)
        self.pause_action = QAction("Pause", self, checkable=True)
        self.pause_action.setShortcut(QKeySequence("Space"))
        self.pause_action.setToolTip("Freeze the charts; collection goes on (Space)")
        self.pause_action.toggled.connect(self.set_paused)
        bar.addAction(self.pause_action)
        self.theme_action = QAction("Light theme", self, checkable=True)
        self.theme_action.setShortcut(QKeySequence("Ctrl+T"))
        self.theme_action.setToolTip("Switch between dark and light charts (Ctrl+T)")
        self.theme_action.toggled.connect(lambda light: self.set_theme("light" if light else "dark"))
        bar.addAction(self.theme_action)
        self.addToolBar(bar)
        menu = self.file_menu = self.menuBar().addMenu("&File")
        export = QAction("Export charts of this page…", self)
        export.setShortcut(QKeySequence("Ctrl+E"))
        export.triggered.connect(self._ask_export)
        menu.addAction(export)
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)
        menu.addAction(quit_action)

    @Slot()
    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export charts", "trimtab-chart.png",
                                              "PNG image (*.png);;SVG drawing (*.svg);;CSV data (*.csv)")
        if not path:
            return
        try:
            written = self.export_page(path)
        except (OSError, ValueError) as exc:
            QMessageBox.warning(self, "Export charts", f"Could not export: {exc}")
            return
        self.statusBar().showMessage(f"Exported {len(written)} chart(s): {', '.join(written)}", 10_000)

    def export_page(self, path: str) -> list[str]:
        """Export every chart of the visible page as ``<stem>-<n>-<title>.<ext>``."""
        stem, dot, ext = path.rpartition(".")
        if not dot:
            raise ValueError("give the file a .png, .svg or .csv suffix")
        written = []
        for n, chart in enumerate(self.tabs.currentWidget().charts, 1):  # type: ignore[attr-defined]
            slug = re.sub(r"[^a-z0-9]+", "-", chart.plot.plotItem.titleLabel.text.lower()).strip("-")
            target = f"{stem}-{n}-{slug[:40]}.{ext}"
            chart.export(target)
            written.append(target)
        return written

    def canary_numbers(self, route: str, instance: str) -> tuple[float, float]:
        """The canary's latest p95 (ms) for ``route`` and its own error ratio there (the
        route's fleet-wide ratio would let the healthy instances dilute a failing canary).

        NaN when the canary served none of the route lately: its last p95 older than three
        rate windows, no requests in the last one. A crashed or ejected canary then passes
        no gate (``Rollout.observe`` does not count NaN) instead of reading 0 % errors with
        the p95 it had before it stopped.
        """
        t, v = self.model.instance_series(route).get(instance, ((), ()))
        fresh = len(t) > 0 and t[-1] >= self.clock() - 3.0 * self.model.rate_window
        p95 = v[-1] * 1000.0 if fresh else math.nan
        return p95, self.model.instance_error_ratio(route, instance)

    def canary_judged(self, route: str, instance: str, change_time: float
                      ) -> dict[str, Comparison]:
        """The judge's verdicts on the canary since ``change_time`` (the card's judge): its
        own p95 of ``route`` and the route's error ratio, bounded by the previous change."""
        since = change_time - CARD_WINDOW - 5.0
        series = {f"{route} error_ratio": s
                  for s in self.model.snapshot("error_ratio", since, [route]).values()}
        own = self.model.instance_series(route, since).get(instance)
        if own is not None:
            series[f"{route} p95"] = own
        scope = {f"route:{route}"}
        previous, _ = bounding_changes(change_time, scope, [
            (r.time, change_scope(c.path for c in r.changes))
            for r in self.journal_rows.values() if r.result == "accepted"])
        return compare_all(series, change_time, window=CARD_WINDOW, settle=CARD_SETTLE,
                           now=self.clock(), previous_change=previous)

    def canary_burn(self, route: str, instance: str) -> float | None:
        """The canary's own burn rate over 5 min, the highest of the SLOs on ``route``;
        None when no SLO covers the route or there is no history store (runner thread)."""
        store = self.model.store
        slos = [s for s in self.slo.slos if s.matches(route)]
        if store is None or not slos:
            return None
        source = StoreSource(store, targets=[instance])
        at = self.clock()
        burns = [burn_rate(ratio(source, s, at, FAST.short_s), s) for s in slos]
        finite = [b for b in burns if not math.isnan(b)]
        return max(finite) if finite else math.nan

    def _wire_tuning(self, tuning: Tuning) -> None:
        tuning.numbers = self.canary_numbers
        tuning.judged = self.canary_judged
        tuning.burn = self.canary_burn
        tuning.refused = lambda route, limit, instance: refused_share(  # a limit's 429 gate
            self.model.limits, route, limit, instance)
        self.cache.ttl_requested.connect(lambda route: tuning.change_ttl(self, route))
        self.cache.invalidate_requested.connect(lambda route: tuning.invalidate(self, route))
        self.balancer.weights_requested.connect(lambda: tuning.change_weights(self))
        self.limits.change_requested.connect(lambda name: tuning.change_limit(self, name))
        self.limits.enforce_requested.connect(
            lambda name: tuning.change_limit(self, name, mode="enforce"))
        self.limits.remove_requested.connect(lambda name: tuning.remove_limit(self, name))
        self.limits.balancer_change_requested.connect(
            lambda balancer, name: tuning.change_balancer_limit(self, balancer, name))
        self.limits.balancer_enforce_requested.connect(
            lambda balancer, name: tuning.change_balancer_limit(self, balancer, name,
                                                                mode="enforce"))
        self.limits.balancer_remove_requested.connect(
            lambda balancer, name: tuning.remove_balancer_limit(self, balancer, name))
        self.limits.top_keys_source = tuning.top_keys
        tuning.access_changed.connect(self.set_write_access)
        tuning.access_changed.connect(self.journal.set_write_access)
        tuning.journal_changed.connect(self.show_changes)
        tuning.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self._journal_timer = QTimer(self)
        self._journal_timer.timeout.connect(tuning.refresh_journal)
        self._journal_timer.start(JOURNAL_POLL_MS)
        self.set_write_access(False, tuning.write_reason)
        tuning.start()

    @Slot(bool, str)
    def set_write_access(self, can_write: bool, reason: str) -> None:
        """Change controls are enabled only for a token with write scope; else say why."""
        self.cache.set_write_access(can_write, reason)  # its buttons also need a selection
        self.limits.set_write_access(can_write, reason)
        button = self.balancer.change_button
        button.setEnabled(can_write)
        button.setToolTip("" if can_write else f"Disabled: {reason}")

    @Slot(str, str)
    def notify_fast_burn(self, name: str, message: str) -> None:
        """A fast burn: a desktop notification where the desktop has a tray, and the status bar."""
        self.statusBar().showMessage(f"⚠ {message}", 60_000)
        if QSystemTrayIcon.isSystemTrayAvailable():
            if self._tray is None:
                self._tray = QSystemTrayIcon(self.windowIcon(), self)
                self._tray.show()
            self._tray.showMessage(f"SLO {name}: fast burn", message,
                                   QSystemTrayIcon.MessageIcon.Warning, 30_000)

    @Slot(list)
    def show_changes(self, rows: list) -> None:
        """Every accepted change is a marker on every chart."""
        self.journal_rows = {marker_key(r): r for r in rows}
        routes = limit_routes(self.model.read(lambda m: m.limit_configs()))  # a limit's route
        self._change_marks = markers(rows, routes)
        self._show_markers()

    def _show_markers(self) -> None:
        """Changes and departures (targets discovery dropped) on every chart."""
        departures = self.model.read(lambda m: list(m.departures))
        self._departures_seen = len(departures)
        marks = self._change_marks + gone_markers(departures)
        for chart in self.charts:
            chart.set_markers(marks)

    @Slot(str)
    def show_change_card(self, key: str) -> None:
        """The before/after card of the change behind a clicked marker."""
        row = self.journal_rows.get(key)
        if row is None:
            return
        content = card(self.model, row, now=self.clock(), journal=self.journal_rows.values(),
                       slos=self.slo.slos)
        self.change_card = ChangeCard(content.title, content.subtitle, content.rows, self,
                                      content.charts)
        self.change_card_key = key
        self.change_card_version = self.model.version
        self.change_card.show()

    def refresh_change_card(self) -> None:
        """The open card again with the data that arrived since (it updates live)."""
        shown = getattr(self, "change_card", None)
        row = self.journal_rows.get(getattr(self, "change_card_key", ""))
        if shown is None or row is None or not shown.isVisible():
            return
        if self.model.version == self.change_card_version:
            return
        self.change_card_version = self.model.version
        content = card(self.model, row, now=self.clock(), journal=self.journal_rows.values(),
                       slos=self.slo.slos)
        shown.set_content(content.subtitle, content.rows, content.charts)

    @Slot(str, float)
    def show_traces(self, route: str, min_ms: float) -> None:
        """Jump to example traces of ``route`` at least ``min_ms`` slow."""
        self.traces.filter_to(route, min_ms)
        self.tabs.setCurrentWidget(self.traces)

    @Slot(str, float, float, float, float)
    def show_trace_window(self, route: str, min_ms: float, max_ms: float, t0: float,
                          t1: float) -> None:
        """Jump from a heatmap cell or a chart point to the traces behind it (exemplars first)."""
        self.traces.filter_to(route, min_ms, max_ms, (t0, t1))
        self.tabs.setCurrentWidget(self.traces)

    @Slot(str)
    def set_theme(self, name: str) -> None:
        """Re-theme every chart; remembered with the window layout."""
        theme = THEMES[name]
        self.theme = name
        for view in [*self.charts, self.overview.share_bars, self.balancer.bars,
                     self.traces.waterfall]:
            view.apply_theme(theme)

    @Slot(float, float)
    def _user_zoomed(self, start: float, end: float) -> None:
        """A zoom or pan by hand moves every chart's time axis and stops live following
        until Space (the pause toggle) resumes it."""
        self.set_x_window(start, end)
        if not self.paused:
            self.paused = True
            self.pause_action.setChecked(True)
            self._refresh_status()

    def set_x_window(self, start: float, end: float) -> None:
        """The same time range on every chart (pyqtgraph's setXLink aligns by pixels, which
        goes wrong between charts of different widths)."""
        for chart in self.charts:
            chart.set_x_window(start, end)

    @property
    def live_window(self) -> float:
        return float(self.range_box.currentData())

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        """Freeze the charts (data keeps being collected) or resume them."""
        self.paused = paused
        if self.pause_action.isChecked() != paused:
            self.pause_action.setChecked(paused)
        if not paused:  # back to live: the time axes follow the live window again
            self._follow_live()
        self._force_refresh()

    @Slot()
    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    @Slot()
    def _force_refresh(self, *_: object) -> None:
        self._seen_version = -1
        self._seen_health = -1
        self.refresh()
        if not self.paused:
            self._follow_live()  # every chart, so a page shown next is already in place

    @Slot()
    def refresh(self) -> None:
        """Copy what changed out of the model and hand it to the visible page only.

        Charts move once per scrape cycle (``model.version``); per-scrape health
        changes (``model.health_version``) only touch the status bar and the Fleet page.
        """
        data_moved = self.model.version != self._seen_version
        health_moved = self.model.health_version != self._seen_health
        if not data_moved and not health_moved:
            return
        self._seen_version, self._seen_health = self.model.version, self.model.health_version
        self._refresh_status()
        if len(self.model.departures) != self._departures_seen:  # a target left: mark it
            self._show_markers()
        if data_moved:
            self.refresh_change_card()  # an open card follows the data, paused or not
        page = self.tabs.currentWidget()
        if self.paused or not (data_moved or page is self.fleet):
            return
        if page is self.fleet:
            # Health moves with every scrape (50 targets: ~50 times a second); a table of
            # targets read by a person needs no more than one repaint a second.
            if not data_moved and time.monotonic() - self._fleet_at < FLEET_REFRESH_S:
                self._seen_health = -1  # look again at the next timer tick
                return
            self._fleet_at = time.monotonic()
        now = self.clock()
        page.refresh(now - self.live_window)  # type: ignore[attr-defined]
        end = self._live_end(now)
        if end != self._shown_end:  # the axes only move (and repaint their text) in steps
            self._shown_end = end
            for chart in page.charts:  # type: ignore[attr-defined]
                chart.set_x_window(self._live_start(end), end)

    def _live_end(self, now: float) -> float:
        """The live window's right edge, a little ahead of now and moved in LIVE_STEP steps.

        Moving the time axis every second made pyqtgraph re-lay out every axis on
        every refresh (most of a page's paint time); now the curves grow towards
        the edge and the axes jump every few seconds.
        """
        return math.ceil(now / LIVE_STEP) * LIVE_STEP

    def _live_start(self, end: float) -> float:
        """The live window's left edge: ``live_window`` before ``end``, or the first data
        (in LIVE_STEP steps) while there is less history than that, so a fresh cockpit's
        charts are not 90 % empty."""
        first = self.model.oldest_point()
        start = end - self.live_window
        if math.isnan(first):
            return start
        return max(start, min(math.floor(first / LIVE_STEP) * LIVE_STEP, end - LIVE_STEP))

    def _follow_live(self) -> None:
        end = self._shown_end = self._live_end(self.clock())
        self.set_x_window(self._live_start(end), end)

    def _refresh_status(self) -> None:
        everyone = self.model.read(lambda m: list(m.health.values()))
        # Targets discovery dropped are gone, not down: out of the count, named apart.
        health = [h for h in everyone if not h.gone]
        if not everyone:
            return
        up = sum(1 for h in health if h.up)
        last = max(h.last_scrape for h in everyone)
        down = [f"{h.name}: {one_line(h.error)}" for h in health if not h.up]
        text = f"{up}/{len(health)} targets up · last scrape {fmt.ago(time.time() - last)}"
        if len(health) < len(everyone):
            text += f" · {len(everyone) - len(health)} gone"
        if down:
            text += " · down: " + "; ".join(down)
        if self.model.store_error:
            text += " · " + self.model.store_error
        if self.model.collector_error:
            text += " · " + self.model.collector_error
        if self.paused:
            text += " · PAUSED (Space to resume)"
        self.status.setText(text)

    def _restore_layout(self) -> None:
        settings = QSettings("trimtab", "trimtab")
        geometry = settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.tabs.setCurrentIndex(int(settings.value("window/tab", 0)))
        theme = str(settings.value("window/theme", "dark"))
        self.theme_action.setChecked(theme == "light")
        self.set_theme(theme if theme in THEMES else "dark")

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.launcher is not None:
            self.launcher.stop()  # replay windows opened from here close with it
        if self.tuning is not None:
            self._journal_timer.stop()
            self.tuning.close()
        settings = QSettings("trimtab", "trimtab")
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/tab", self.tabs.currentIndex())
        settings.setValue("window/theme", self.theme)
        super().closeEvent(event)


def snapshot_paths(mime: QMimeData) -> list[str]:
    """Local snapshot files (:data:`~trimtab.app.snapshot.schema.SUFFIX`) among dropped URLs."""
    return [url.toLocalFile() for url in mime.urls()
            if url.isLocalFile() and url.toLocalFile().lower().endswith(SUFFIX)]


def prometheus_sources(targets: TargetManager | None) -> list[tuple[str, str, dict[str, str]]]:
    """(name, url, auth headers) of every Prometheus source the cockpit reads."""
    if targets is None:
        return []
    return [(name, c.source.url, dict(c.source.headers))
            for name, c in sorted(targets.collectors.items())]


def save_and_quit(window: MainWindow, path: str, quit: Callable[[int], object],
                  out: TextIO = sys.stdout) -> None:
    """Repaint ``window``, save it as a PNG at ``path`` (and an open compare view beside it, as
    ``STEM-compare.EXT``), print one line on ``out``, then ``quit(0)``, or ``quit(1)`` on failure.
    """
    window._force_refresh()
    ok = window.grab().save(path)
    view = getattr(getattr(window, "compare_job", None), "view", None)
    if ok and view is not None:  # the compare dialog beside a replay window
        stem, dot, ext = path.rpartition(".")
        view.grab().save(f"{stem}-compare.{ext}" if dot else f"{path}-compare")
    print(f"trimtab: screenshot {'saved to' if ok else 'FAILED for'} {path}", file=out, flush=True)
    quit(0 if ok else 1)

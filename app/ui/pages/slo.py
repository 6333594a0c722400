"""The SLOs page: every objective sorted by budget left, its burn rate over time with the
changes marked, and the promise in words. GUI thread; the arithmetic runs on a worker.

Evaluation (:func:`trimtab.app.slo.track.evaluate`) reads the history store, which takes
a moment for a 28-day budget, so it runs on one background thread every
:data:`EVERY_S` seconds; the page shows the last finished result and never waits.
A fast burn (the workbook's first row firing) emits :attr:`SloPage.fast_burn` once per
episode; the window turns it into a desktop notification.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from trimtab.collectors.prometheus.api import PromAPIError
from trimtab.widgets.slo_dialog import SloDialog
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel
from ...slo import file as slo_file
from ...slo import rules
from ...slo.definition import SLO, SLOError, format_duration
from ...slo.live import burn_deriver
from ...slo.track import PrometheusSource, SloStatus, StoreSource, evaluate
from ...store.settings import human_duration
from . import promql

EVERY_S = 5.0
HISTORY_POINTS = 2000  # burn-rate points kept per SLO for the chart
HEADERS = ("SLO", "promise", "SLI now (5 min)", "fast burn (1 h / 5 min)", "budget left",
           "history", "alerts")
TOOLTIPS = {
    "SLI now (5 min)": "Share of good requests over the last 5 minutes; between two bucket "
                       "bounds it is interpolated and the range it can carry is shown.",
    "fast burn (1 h / 5 min)": "Error ratio ÷ budget over 1 h and 5 min; 14.4 on both pages "
                               "(2 % of a 30-day budget in one hour). Right-click an SLO's "
                               "cell: Copy as PromQL.",
    "budget left": "Share of the error budget not yet spent over the SLO window "
                   "(negative: overspent). Right-click an SLO's cell: Copy as PromQL.",
    "history": "How much of the SLO window the cockpit's history holds.",
    "alerts": "Workbook rows firing now: both their long and short windows burn too fast.",
}


def _burn(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3g}×"


class SloPage(QWidget):
    """Objectives, their budgets and burn rates; add, remove, import and export them."""

    fast_burn = Signal(str, str)  # SLO name, message

    def __init__(self, model: FleetModel, path: Path | None,
                 prometheus: Callable[[], list[tuple[str, str, dict[str, str]]]] | None = None
                 ) -> None:
        super().__init__()
        self.model = model
        self.path = path
        # (name, url, headers) of the Prometheus sources the cockpit reads: a budget over
        # 28 days can be asked of one instead of the cockpit's own history.
        self.prometheus = prometheus or (lambda: [])
        self.slos: list[SLO] = []
        self.load_error = ""
        if path is not None:
            try:
                self.slos = slo_file.load(path)
            except SLOError as exc:
                self.load_error = str(exc)
        self.statuses: list[SloStatus] = []
        # The live model derives each SLO's burn over its rate window every tick (the
        # before/after card judges it); the list read is always this page's current one.
        model.derivers.append(burn_deriver(lambda: self.slos))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slo")
        self._future: Future[list[SloStatus]] | None = None
        self._started = 0.0
        self._burning: set[str] = set()
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._since: float | None = None
        self.table = SortableTable(HEADERS, tooltips=TOOLTIPS)
        self.table.sortItems(4, Qt.SortOrder.AscendingOrder)
        self.burn_chart = TimeSeriesView(
            "Burn rate per SLO (5-minute window; 1 = exactly on budget)", "burn rate", "×",
            "No SLO yet, or no traffic on its route: add one above.")
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.source = QComboBox()
        self.source.setToolTip("Where burn rates and budgets come from: the cockpit's history "
                               "(raw for hours, rollups for days), or a Prometheus source "
                               "that holds the whole SLO window")
        self.source.addItem("budget from: the cockpit's history", None)
        self.source.currentIndexChanged.connect(self._source_changed)
        self.add_button = QPushButton("Add SLO…")
        self.add_button.clicked.connect(self.ask_add)
        self.edit_button = QPushButton("Edit the selected SLO…")
        self.edit_button.clicked.connect(self.ask_edit)
        self.remove_button = QPushButton("Remove the selected SLO")
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button = QPushButton("Import OpenSLO…")
        self.import_button.clicked.connect(self.ask_import)
        self.export_button = QPushButton("Export OpenSLO + Prometheus rules…")
        self.export_button.clicked.connect(self.ask_export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.hint, 1)
        buttons.addWidget(self.source)
        for button in (self.import_button, self.export_button, self.edit_button,
                       self.remove_button, self.add_button):
            buttons.addWidget(button)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.burn_chart)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(split, 1)
        self.charts = [self.burn_chart]
        self.table.set_promql(promql.slo_cell(self._find))
        self.burn_chart.set_promql(
            lambda name: (promql.slo_burn(slo, promql.SHORT_BURN_S)
                          if (slo := self._find(name)) is not None else None),
            "Burn rate = error ratio over 5 min ÷ (1 − objective); trimtab evaluates it on its "
            "own history, or on the Prometheus source chosen.")
        self._show_hint()

    def _find(self, name: str) -> SLO | None:
        """The SLO named ``name``, or None."""
        return next((s for s in self.slos if s.name == name), None)

    # --- evaluation ------------------------------------------------------------

    def refresh(self, since: float) -> None:
        self._since = since
        self.collect()
        now = time.time()
        if self._future is None and self.slos and now - self._started >= EVERY_S:
            self.start_evaluation(now)
        self._show()

    def start_evaluation(self, at: float) -> None:
        """Evaluate every SLO at ``at`` on the worker (no-op without a source)."""
        self._offer_sources()
        chosen = self.source.currentData()
        store = self.model.store
        if not self.slos or (chosen is None and store is None):
            return
        self._started = at
        if chosen is not None:
            _name, url, headers = chosen
            source: StoreSource | PrometheusSource = PrometheusSource(url, headers)
        else:
            assert store is not None
            services = self.model.read(lambda m: dict(m.services))  # an SLO's service
            source = StoreSource(store, services=services)
        self._future = self._pool.submit(evaluate, list(self.slos), source, at)

    def _offer_sources(self) -> None:
        """Keep the chooser's Prometheus entries in step with the cockpit's sources."""
        offered = [self.source.itemData(i) for i in range(1, self.source.count())]
        current = self.prometheus()
        if offered == current:
            return
        chosen = self.source.currentData()
        self.source.blockSignals(True)
        while self.source.count() > 1:
            self.source.removeItem(1)
        for entry in current:
            self.source.addItem(f"budget from: Prometheus {entry[0]}", entry)
        self.source.setCurrentIndex(max(0, self.source.findData(chosen)) if chosen else 0)
        self.source.blockSignals(False)

    def _source_changed(self, _index: int) -> None:
        self.statuses, self._history = [], {}
        self._started = 0.0  # evaluate from the new source at the next refresh
        self._show()

    def collect(self) -> bool:
        """Take a finished evaluation, if any; True when one was taken."""
        future = self._future
        if future is None or not future.done():
            return False
        self._future = None
        try:
            statuses = future.result()
        except (ValueError, OSError, PromAPIError) as exc:  # a closed store, a down server
            self.load_error = f"SLOs not evaluated: {exc}"
            return True
        names = {s.name for s in self.slos}
        self.statuses = [s for s in statuses if s.slo.name in names]
        for status in self.statuses:
            short = status.burns[0].short_burn if status.burns else math.nan
            self._history.setdefault(status.slo.name, deque(maxlen=HISTORY_POINTS)).append(
                (status.at, short))
            firing = bool(status.burns) and status.burns[0].firing
            if firing and status.slo.name not in self._burning:
                burn = status.burns[0]
                self.fast_burn.emit(status.slo.name, (
                    f"SLO {status.slo.name} burning its error budget {_burn(burn.long_burn)} "
                    f"over 1 h and {_burn(burn.short_burn)} over 5 min "
                    f"(page above {burn.alert.factor:g}×): {status.slo.summary()}"))
            if firing:
                self._burning.add(status.slo.name)
            else:
                self._burning.discard(status.slo.name)
        return True

    def _show(self) -> None:
        rows = []
        alerting = set()
        for status in self.statuses:
            slo, sli = status.slo, status.sli
            fast = status.burns[0] if status.burns else None
            firing = ", ".join(f"{format_duration(b.alert.long_s)}/"
                               f"{format_duration(b.alert.short_s)} > {b.alert.factor:g}×"
                               for b in status.firing)
            if firing:
                alerting.add(slo.name)
            sli_text = sli.describe() + (f" ⚠ {sli.warning}" if sli.warning else "")
            covered = status.budget_covered_s
            history = (f"{human_duration(covered)} of {human_duration(slo.window_s)}"
                       if covered < slo.window_s else f"all {human_duration(slo.window_s)}")
            rows.append((slo.name, [
                (slo.name, slo.name), (slo.summary(), slo.summary()),
                (sli_text, -1.0 if math.isnan(sli.good) else sli.good),
                ("—" if fast is None else f"{_burn(fast.long_burn)} / {_burn(fast.short_burn)}",
                 -1.0 if fast is None or math.isnan(fast.long_burn) else fast.long_burn),
                (fmt.percent(status.budget_remaining) if not math.isnan(status.budget_remaining)
                 else "no traffic", status.sort_key),
                (history, covered), (firing or "none", firing)]))
        self.table.set_rows(rows, highlight=alerting)
        self._show_hint()
        if self._since is not None:
            series = {name: (np.array([t for t, _ in pts]), np.array([v for _, v in pts]))
                      for name, pts in self._history.items() if name in
                      {s.name for s in self.slos}}
            self.burn_chart.set_series(series, keep_gone=False)

    def _show_hint(self) -> None:
        if self.load_error:
            text = f"⚠ {self.load_error}"
        elif not self.slos:
            text = ("No SLO yet. An SLO is a promise, e.g. 99 % of /search within 300 ms "
                    "over 28 days: Add SLO… and its burn rate and budget appear here.")
        elif self.model.store is None:
            text = "SLOs are evaluated from the history store, and this window has none."
        elif not self.statuses:
            text = "Evaluating…"
        else:
            text = f"{len(self.slos)} SLO(s)"
        if self.path is None:
            text += " · not saved: no targets file (Export OpenSLO… to keep them)"
        else:
            text += f" · {self.path}"
        self.hint.setText(text)

    # --- editing -----------------------------------------------------------------

    def check(self, fields: dict[str, Any], replacing: str | None = None) -> str | None:
        """What is wrong with a definition (shown in the dialog), or None; ``replacing``:
        the name of the SLO being edited (its own name is not taken)."""
        try:
            slo = SLO(**fields)
        except (SLOError, TypeError) as exc:
            return str(exc)
        if any(s.name == slo.name and s.name != replacing for s in self.slos):
            return f"An SLO named {slo.name!r} exists already."
        if slo.kind == "latency":
            try:
                rules.error_ratio_expr(slo, 300)
            except SLOError as exc:
                return str(exc)
        return None

    def ask_add(self) -> None:
        routes = sorted(self.model.read(lambda m: list(m.routes)))
        dialog = SloDialog(routes, self.check, self)
        if dialog.exec() and (fields := dialog.fields()) is not None:
            self.add(SLO(**fields))

    def ask_edit(self) -> None:
        """Edit the selected SLO in the same dialog; Save replaces it in place."""
        name = self.table.selected_key()
        old = next((s for s in self.slos if s.name == name), None)
        if old is None:
            return
        routes = sorted(self.model.read(lambda m: list(m.routes)))
        dialog = SloDialog(routes, lambda f: self.check(f, replacing=old.name), self)
        dialog.prefill(dataclasses.asdict(old))
        if dialog.exec() and (fields := dialog.fields()) is not None:
            self.replace(old.name, SLO(**{**fields, "service": old.service,
                                          "description": old.description}))

    def replace(self, name: str, slo: SLO) -> None:
        """Put ``slo`` where the SLO ``name`` was, and save; its burn history starts again."""
        self._history.pop(name, None)
        self._save([slo if s.name == name else s for s in self.slos])

    def add(self, slo: SLO) -> None:
        """Add one SLO and save the file; an SLOError changes nothing."""
        self._save([*self.slos, slo])

    def remove_selected(self) -> None:
        name = self.table.selected_key()
        if name is None:
            return
        answer = QMessageBox.question(self, "Remove SLO", f"Remove the SLO {name!r}? "
                                      "Its definition leaves the SLO file.")
        if answer == QMessageBox.StandardButton.Yes:
            self._save([s for s in self.slos if s.name != name])

    def _save(self, slos: list[SLO]) -> None:
        if self.path is not None:
            slo_file.save(self.path, slos)
        self.slos = slos
        self.load_error = ""
        self._started = 0.0  # evaluate at the next refresh
        self.statuses = [s for s in self.statuses if s.slo in slos]
        self._show()

    def ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import OpenSLO", "", "OpenSLO (*.yaml *.yml)")
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Add every SLO of an OpenSLO file (all or none); a problem is shown, nothing changes."""
        try:
            new = slo_file.load(path)
            taken = {s.name for s in self.slos}
            clash = [s.name for s in new if s.name in taken]
            if clash:
                raise SLOError(f"{path}: SLO names already in use: {', '.join(clash)}")
            self._save([*self.slos, *new])
        except SLOError as exc:
            QMessageBox.warning(self, "Import OpenSLO", str(exc))

    def ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export SLOs", "slos.yaml",
                                              "OpenSLO (*.yaml)")
        if path:
            self.export_files(Path(path))

    def export_files(self, path: Path) -> tuple[Path, Path]:
        """Write the OpenSLO file at ``path`` and the Prometheus rules beside it."""
        rules_path = path.with_name(path.stem + "-rules.yml")
        slo_file.save(path, self.slos)
        rules_path.write_text(rules.dumps(self.slos))
        return path, rules_path

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)

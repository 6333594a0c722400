"""The Fleet page: every scrape target, its health, and Add/Remove target. GUI thread."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.table import SortableTable
from trimtab.widgets.target_dialog import TargetDialog
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel, TargetHealth
from ...store.settings import describe_retention, human_size
from ...store.store import Store
from ...targets.file import KINDS, TargetsError
from ...targets.manager import TargetManager

FLEET_HEADERS = ("target", "kind", "state", "last scrape", "scrape duration", "samples",
                 "failed scrapes", "error")


class FleetPage(QWidget):
    """Targets with up/down, last scrape, scrape duration and the error text; add / remove."""

    def __init__(self, model: FleetModel, manager: TargetManager | None = None) -> None:
        super().__init__()
        self.model = model
        self.manager = manager
        self.clock: Callable[[], float] = time.time  # "now" for "last scrape … ago"
        self.table = SortableTable(FLEET_HEADERS)
        self.hint = QLabel("No targets yet: add one (Add target…) or start the demo (trimtab demo).")
        self.add_button = QPushButton("Add target…")
        self.remove_button = QPushButton("Remove selected")
        self.add_button.clicked.connect(self.ask_add)
        self.remove_button.clicked.connect(self.remove_selected)
        where = (f"Targets file: {manager.path}" if manager is not None
                 else "Demo fleet: targets come from the demo and are not saved.")
        self.config_label = QLabel(where)
        self.config_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # The store's size and the retention in force (hidden without a store).
        self.history_label = QLabel(history_text(model.store) if model.store else "")
        self.history_label.setVisible(model.store is not None)
        for button in (self.add_button, self.remove_button):
            button.setEnabled(manager is not None)
            if manager is None:
                button.setToolTip("The demo's targets are fixed; run `trimtab` to manage targets.")
        row = QHBoxLayout()
        row.addWidget(self.config_label, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.history_label)
        layout.addWidget(self.hint)
        layout.addWidget(self.table, 1)
        self.charts: list[TimeSeriesView] = []

    @Slot()
    def ask_add(self) -> None:
        """Ask for a target until it is valid or the user cancels."""
        assert self.manager is not None
        dialog = TargetDialog(KINDS, self)
        while dialog.exec():
            name, url, kind, interval = dialog.values()
            try:
                self.manager.add(name, url, kind, interval, token_env=dialog.token_variable())
                return
            except TargetsError as exc:
                dialog.show_error(str(exc))

    @Slot()
    def remove_selected(self) -> None:
        name = self.table.selected_key()
        if self.manager is None or name is None:
            return
        try:
            self.manager.remove(name)
        except TargetsError as exc:
            QMessageBox.warning(self, "Remove target", str(exc))

    def refresh(self, since: float) -> None:
        now = self.clock()
        health = self.model.read(lambda m: list(m.health.values()))
        rows, down = [], set()
        for h in health:
            if not h.up:
                down.add(h.name)
            rows.append((h.name, fleet_cells(h, now)))
        self.table.set_rows(rows, highlight=down)
        self.hint.setVisible(not rows)
        if self.model.store is not None:
            self.history_label.setText(history_text(self.model.store))


def history_text(store: Store) -> str:
    """The Fleet page's history line: size on disk as last measured (no I/O), retention."""
    size = store.footprint()
    where = ("size not measured yet" if size is None else
             f"{human_size(size.file + size.wal)} on disk (file + WAL)")
    return f"History: {where} · keeps {describe_retention(store.retention)}"


def fleet_cells(h: TargetHealth, now: float) -> list[tuple[str, float | str]]:
    """One Fleet row at ``now``; a target never scraped says so, not "56 years ago"."""
    if h.last_scrape > 0:
        ago: tuple[str, float | str] = (fmt.ago(now - h.last_scrape), now - h.last_scrape)
    else:
        ago = ("never", math.inf)
    return [(h.name, h.name), (h.kind, h.kind), ("up" if h.up else "DOWN", int(h.up)), ago,
            (fmt.duration(h.duration), h.duration), (str(h.samples), h.samples),
            (f"{h.failed_scrapes} of {h.ok_scrapes + h.failed_scrapes}", h.failed_scrapes),
            (_error_text(h, now), h.error or "")]


def _error_text(h: TargetHealth, now: float) -> str:
    """The scrape error, plus when a backed-off target is tried next (a dead target is
    retried at 1, 2, 4 … intervals, so "DOWN" alone would look like it is being hammered)."""
    wait = h.next_attempt - now
    if h.up or not h.error or wait < 1.5:
        return h.error or ""
    return f"{h.error} · retrying in {wait:.0f} s"

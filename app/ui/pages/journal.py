"""The journal page: every change from every agent, merged; revert one, or all since a time."""

from __future__ import annotations

import time

from PySide6.QtCore import QDateTime, Qt, Slot
from PySide6.QtWidgets import (
    QDateTimeEdit,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from trimtab.widgets.table import SortableTable
from trimtab.widgets.timeseries import TimeSeriesView

from ...control import client as ctl
from ..tuning import Tuning

JOURNAL_HEADERS = ("time", "who", "where", "what", "old → new", "reason", "result")


def change_text(row: ctl.JournalRow) -> str:
    return "; ".join(f"{c.path}: {c.old} → {c.new}" for c in row.changes) or "–"


def row_key(row: ctl.JournalRow) -> str:
    return f"{row.source.name}#{row.id}"


class JournalPage(QWidget):
    """Read from the agents every few seconds by :class:`Tuning` (off the GUI thread)."""

    def __init__(self, tuning: Tuning | None) -> None:
        super().__init__()
        self.tuning = tuning
        self.table = SortableTable(JOURNAL_HEADERS)
        self.table.sortItems(0, Qt.SortOrder.DescendingOrder)
        self.revert_button = QPushButton("Revert selected change")
        self.since = QDateTimeEdit(QDateTime.currentDateTime().addSecs(-900))
        self.since.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
        self.revert_since_button = QPushButton("Revert everything since")
        self.revert_button.clicked.connect(self.revert_selected)
        self.revert_since_button.clicked.connect(self.revert_since)
        self.hint = QLabel("No changes yet. Change a TTL on the Cache page or weights on the "
                           "Balancer page; every change, accepted or refused, is listed here."
                           if tuning else "No control token: start the demo, or set "
                           "TRIMTAB_TOKEN to a token of your agents to see and make changes.")
        self.hint.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.revert_button)
        bar.addStretch(1)
        bar.addWidget(self.since)
        bar.addWidget(self.revert_since_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        self.charts: list[TimeSeriesView] = []
        self.rows: dict[str, ctl.JournalRow] = {}
        self.set_write_access(bool(tuning and tuning.can_write is not False),
                              tuning.write_reason if tuning else "no control token")
        if tuning is not None:
            tuning.journal_changed.connect(self.show_rows)

    @Slot(bool, str)
    def set_write_access(self, can_write: bool, reason: str) -> None:
        for button in (self.revert_button, self.revert_since_button):
            button.setEnabled(can_write)
            button.setToolTip("" if can_write else f"Disabled: {reason}")

    @Slot(list)
    def show_rows(self, rows: list[ctl.JournalRow]) -> None:
        self.rows = {row_key(r): r for r in rows}
        self.table.set_rows([(row_key(r), [
            (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time)), r.time),
            (r.who, r.who), (f"{r.source.name} {r.target}", r.source.name), (r.what, r.what),
            (change_text(r), change_text(r)), (r.reason or "", r.reason or ""),
            (r.result + (f": {r.detail}" if r.detail else ""), r.result)]) for r in rows],
            highlight={row_key(r) for r in rows if r.result != "accepted"})
        self.hint.setVisible(not rows)

    def refresh(self, since: float) -> None:
        """Journals are polled by Tuning on their own timer; nothing to pull here."""

    @Slot()
    def revert_selected(self) -> None:
        row = self.rows.get(self.table.selected_key() or "")
        if row is None or self.tuning is None:
            return
        if not row.revertible:
            QMessageBox.information(self, "Revert", "Only accepted config or server changes can "
                                    "be reverted (a revert is a new change).")
            return
        if QMessageBox.question(self, "Revert", f"Revert {row.source.name} #{row.id}: "
                                f"{change_text(row)}?") == QMessageBox.StandardButton.Yes:
            self.tuning.revert(self, row)

    @Slot()
    def revert_since(self) -> None:
        if self.tuning is None:
            return
        since = self.since.dateTime().toSecsSinceEpoch()
        if QMessageBox.question(self, "Revert everything since",
                                f"Revert every accepted change since {self.since.text()}, "
                                "newest first?") == QMessageBox.StandardButton.Yes:
            self.tuning.revert_since(self, float(since))

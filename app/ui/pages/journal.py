"""The journal page: every change from every agent, merged; revert one, or all since a time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
from trimtab.widgets.table import SortableTable, natural_key
from trimtab.widgets.timeseries import TimeSeriesView

from ...control import client as ctl
from ...control.actions import limit_field, limit_texts
from ..tuning import Tuning

JOURNAL_HEADERS = ("time", "who", "where", "what", "old → new", "reason", "result")
JOURNAL_TIPS = {
    "time": "When the change was made (local time)",
    "who": "The token's name that made the change",
    "where": "The instances or balancer it was made on, with each one's journal number (#)",
    "what": "The kind of change: config (TTLs…), a server's weight or state, an invalidation",
    "old → new": "Each field before and after the change",
    "reason": "Why, as given with the change",
    "result": "accepted or refused (and why); whether it was undone, or undoes another",
}
GROUP_SECONDS = 5.0  # the same change on several targets lands within this many seconds


def _value(path: str, value: Any) -> str:
    """A field's value as an operator reads it: TTLs in seconds, weights as numbers."""
    if value is None:
        return "unset"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:g} s" if path.endswith(".ttl") else f"{value:g}"


def _subject(path: str) -> str:
    """``routes./a.b.ttl`` → ``TTL of /a.b``; ``servers.api-3.weight`` → ``api-3 weight``.

    Route names may hold dots, so the known prefixes and suffixes are cut, not split.
    """
    if path.startswith("routes.") and path.endswith(".ttl"):
        return f"TTL of {path[len('routes.'):-len('.ttl')]}"
    if path.startswith("servers.") and "." in path[len("servers."):]:
        server, field = path[len("servers."):].rsplit(".", 1)
        return f"{server} {field}"
    return path


def what_text(row: ctl.JournalRow) -> str:
    """The kind of change: ``config``, ``server weight`` (the server is in old → new)."""
    if row.what.startswith("servers.") and "." in row.what[len("servers."):]:
        return f"server {row.what.rsplit('.', 1)[1]}"
    return row.what


def change_text(row: ctl.JournalRow) -> str:
    """Each field: ``TTL of /search: 0 s → 5 s``; ``api-3 weight: 1 → 0``; a rate limit as a
    marker says it: ``Limit per-key: shadow → enforce``."""
    others = [c for c in row.changes if limit_field(c.path) is None]
    return "; ".join([f"{_subject(c.path)}: {_value(c.path, c.old)} → {_value(c.path, c.new)}"
                      for c in others] + limit_texts(row.changes)) or "–"


def row_key(row: ctl.JournalRow) -> str:
    return f"{row.source.name}#{row.id}"


@dataclass
class ChangeGroup:
    """One change as the operator made it: the same fields, reason and result on one or
    more targets within :data:`GROUP_SECONDS` (a fleet-wide TTL change is one group)."""

    rows: list[ctl.JournalRow]

    @property
    def first(self) -> ctl.JournalRow:
        return self.rows[0]

    @property
    def key(self) -> str:
        return row_key(self.first)

    def names(self) -> str:
        return ", ".join(r.source.name for r in self.rows)

    def where(self) -> str:
        """``balancer #1``; ``api-1, api-2, api-3 #4`` when the numbers agree, else each."""
        row = self.first
        if len(self.rows) == 1:
            target = "" if row.target in ("", row.source.name) else f" ({row.target})"
            return f"{row.source.name}{target} #{row.id}"
        ids = {r.id for r in self.rows}
        if len(ids) == 1:
            return f"{self.names()} #{row.id}"
        return ", ".join(f"{r.source.name} #{r.id}" for r in self.rows)

    def numbers(self) -> str:
        """``#1`` for one target (or equal numbers), else ``api-1 #3, api-2 #4``."""
        ids = {r.id for r in self.rows}
        if len(ids) == 1:
            return f"#{self.first.id}"
        return ", ".join(f"{r.source.name} #{r.id}" for r in self.rows)


def _signature(row: ctl.JournalRow) -> tuple[Any, ...]:
    return (row.who, row.what, row.reason, row.result, row.detail, row.reverts is None,
            tuple((c.path, repr(c.old), repr(c.new)) for c in row.changes))


def group_rows(rows: Sequence[ctl.JournalRow]) -> list[ChangeGroup]:
    """Entries of one change made on several targets, as one group each (oldest first).

    Agents journal a fleet-wide change once each; the operator made it once. Entries
    group when they say the same (who, fields, old → new, reason, result), come from
    different targets and lie within :data:`GROUP_SECONDS` of the group's first.
    """
    groups: list[ChangeGroup] = []
    open_: dict[tuple[Any, ...], ChangeGroup] = {}
    for row in sorted(rows, key=lambda r: (r.time, natural_key(r.source.name), r.id)):
        sig = _signature(row)
        group = open_.get(sig)
        if (group is None or row.time - group.first.time > GROUP_SECONDS
                or any(r.source == row.source for r in group.rows)):
            group = open_[sig] = ChangeGroup([row])
            groups.append(group)
        else:
            group.rows.append(row)
    for group in groups:
        group.rows.sort(key=lambda r: natural_key(r.source.name))
    return groups


def undone_by(rows: Sequence[ctl.JournalRow]) -> dict[tuple[str, int], ctl.JournalRow]:
    """(source, id) of each change → the accepted entry that reverted it."""
    return {(r.source.name, r.reverts): r for r in rows
            if r.reverts is not None and r.result == "accepted"}


def result_text(group: ChangeGroup, undone: dict[tuple[str, int], ctl.JournalRow]) -> str:
    """``accepted``, with ``· undone by #2`` / ``· undoes #1`` linking a change and its revert."""
    row = group.first
    text = row.result + (f": {row.detail}" if row.detail else "")
    reverts = [undone[(r.source.name, r.id)] for r in group.rows
               if (r.source.name, r.id) in undone]
    if reverts:
        text += f" · undone by {ChangeGroup(reverts).numbers()}"
    if row.reverts is not None:
        ids = {r.reverts for r in group.rows}
        text += (f" · undoes #{row.reverts}" if len(ids) == 1 else " · undoes " + ", ".join(
            f"{r.source.name} #{r.reverts}" for r in group.rows))
    return text


def revert_prompt(group: ChangeGroup) -> str:
    """What undoing does, in words: ``Undo change #1 on balancer: set api-3 weight back
    from 0 to 1?`` (never the change itself again)."""
    row = group.first
    others = [c for c in row.changes if limit_field(c.path) is None]
    undo_limits = limit_texts(ctl.FieldChange(c.path, c.new, c.old) for c in row.changes)
    back = "; ".join([f"set {'the ' if c.path.startswith('routes.') else ''}{_subject(c.path)} "
                      f"back from {_value(c.path, c.new)} to {_value(c.path, c.old)}"
                      for c in others] + undo_limits) or f"undo {row.what}"
    if len(group.rows) == 1:
        return f"Undo change #{row.id} on {row.source.name}: {back}?"
    return f"Undo this change on {group.names()}: {back}?"


class JournalPage(QWidget):
    """Read from the agents every few seconds by :class:`Tuning` (off the GUI thread)."""

    def __init__(self, tuning: Tuning | None) -> None:
        super().__init__()
        self.tuning = tuning
        self.table = SortableTable(JOURNAL_HEADERS, tooltips=JOURNAL_TIPS)
        self.table.sortItems(0, Qt.SortOrder.DescendingOrder)
        self.revert_button = QPushButton("Revert selected change")
        self.since = QDateTimeEdit(QDateTime.currentDateTime().addSecs(-900))
        self.since.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
        self.revert_since_button = QPushButton("Revert everything since")
        self.revert_button.clicked.connect(self.revert_selected)
        self.can_write, self._write_reason = False, "no control token"
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
        self.groups: dict[str, ChangeGroup] = {}
        self.undone: dict[tuple[str, int], ctl.JournalRow] = {}
        self.table.selectionModel().selectionChanged.connect(self._update_revert_button)
        self.set_write_access(bool(tuning and tuning.can_write is not False),
                              tuning.write_reason if tuning else "no control token")
        if tuning is not None:
            tuning.journal_changed.connect(self.show_rows)

    @Slot(bool, str)
    def set_write_access(self, can_write: bool, reason: str) -> None:
        self.can_write, self._write_reason = can_write, reason
        self.revert_since_button.setEnabled(can_write)
        self.revert_since_button.setToolTip("" if can_write else f"Disabled: {reason}")
        self._update_revert_button()

    @Slot()
    def _update_revert_button(self, *_: object) -> None:
        """Enabled with write access, unless the selected change cannot be undone: then
        disabled with the reason (an HAProxy re-apply, a refusal, an invalidation)."""
        group = self.selected_group()
        why = "" if group is None else group.first.not_revertible
        self.revert_button.setEnabled(self.can_write and not why)
        self.revert_button.setToolTip(f"Disabled: {self._write_reason}" if not self.can_write
                                      else f"Disabled: this change cannot be undone: {why}"
                                      if why else "")

    @Slot(list)
    def show_rows(self, rows: list[ctl.JournalRow]) -> None:
        """One table row per change as made (grouped over its targets), reverts linked."""
        groups = group_rows(rows)
        self.groups = {g.key: g for g in groups}
        self.undone = undone_by(rows)
        table = []
        for g in groups:
            r, changed, result = g.first, change_text(g.first), result_text(g, self.undone)
            where = g.where()
            table.append((g.key, [
                (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time)), r.time),
                (r.who, r.who), (where, natural_key(where)), (what_text(r), what_text(r)),
                (changed, changed), (r.reason or "", r.reason or ""), (result, result)]))
        self.table.set_rows(table, highlight={g.key for g in groups
                                              if g.first.result != "accepted"})
        self.hint.setVisible(not rows)
        self._update_revert_button()

    def keys_in_order(self) -> list[str]:
        """The groups' keys in the table's current (sorted) order."""
        return self.table.keys()

    def selected_group(self) -> ChangeGroup | None:
        """The change whose row is selected, with every target it was made on."""
        return self.groups.get(self.table.selected_key() or "")

    def refresh(self, since: float) -> None:
        """Journals are polled by Tuning on their own timer; nothing to pull here."""

    @Slot()
    def revert_selected(self) -> None:
        """Undo the selected change on every target it was made on, after a question."""
        group = self.selected_group()
        if group is None or self.tuning is None:
            return
        if not group.first.revertible:
            QMessageBox.information(self, "Undo", "This change cannot be undone: "
                                    f"{group.first.not_revertible}.")
            return
        undone = [self.undone[(r.source.name, r.id)] for r in group.rows
                  if (r.source.name, r.id) in self.undone]
        if undone:
            QMessageBox.information(self, "Undo", f"This change was already undone by "
                                    f"{ChangeGroup(undone).numbers()}.")
            return
        if QMessageBox.question(self, "Undo", revert_prompt(group)) == \
                QMessageBox.StandardButton.Yes:
            self.tuning.revert_many(self, group.rows)

    @Slot()
    def revert_since(self) -> None:
        if self.tuning is None:
            return
        since = self.since.dateTime().toSecsSinceEpoch()
        if QMessageBox.question(self, "Revert everything since",
                                f"Revert every accepted change since {self.since.text()}, "
                                "newest first?" + self._skipped_since(float(since))
                                ) == QMessageBox.StandardButton.Yes:
            self.tuning.revert_since(self, float(since))

    def _skipped_since(self, since: float) -> str:
        """The shown changes since ``since`` that will be skipped, and why (or "")."""
        skipped = [g for g in self.groups.values() if g.first.time >= since
                   and g.first.result == "accepted" and g.first.setting_change
                   and not g.first.revertible]
        if not skipped:
            return ""
        return (f"\n\n{len(skipped)} of them cannot be undone and will be skipped:\n" +
                "\n".join(f"• {g.where()}: {g.first.not_revertible}"
                           for g in sorted(skipped, key=lambda g: -g.first.time)))

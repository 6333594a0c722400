"""The range rows shared by the history and export dialogs: "last N" or from … to …."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import QComboBox, QDateTimeEdit


class RangeFields:
    """Mixed into a dialog: ``choice`` (a "last N" entry, or 0 = from … to …), ``start``
    and ``end`` (local time, enabled only for from … to …) and :meth:`range`."""

    choice: QComboBox
    start: QDateTimeEdit
    end: QDateTimeEdit

    def _build_range(self, ranges: Sequence[tuple[str, int]], back_s: int) -> None:
        """The three widgets; from … to … starts at the last ``back_s`` seconds."""
        self.choice = QComboBox()
        for label, seconds in ranges:
            self.choice.addItem(label, seconds)
        now = QDateTime.currentDateTime()
        self.start = QDateTimeEdit(now.addSecs(-back_s))
        self.end = QDateTimeEdit(now)
        for edit in (self.start, self.end):
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setCalendarPopup(True)
        self.choice.currentIndexChanged.connect(self._sync)
        self._sync()

    def range(self, now: float | None = None) -> tuple[float, float]:
        """(start, end) in unix seconds."""
        seconds = int(self.choice.currentData())
        if seconds:
            end = time.time() if now is None else now
            return end - seconds, end
        return (float(self.start.dateTime().toSecsSinceEpoch()),
                float(self.end.dateTime().toSecsSinceEpoch()))

    def _range_problem(self) -> str:
        """Why the range cannot be used ("" when it can)."""
        start, end = self.range()
        return "“From” must be before “To”." if start >= end else ""

    def _sync(self, *_: object) -> None:
        custom = not self.choice.currentData()
        self.start.setEnabled(custom)
        self.end.setEnabled(custom)

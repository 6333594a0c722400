"""The before/after card of one change: figures over matched windows, and a verdict each."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .table import SortableTable

CARD_HEADERS = ("metric", "before", "after", "change", "normal before", "verdict")


class ChangeCard(QDialog):
    """Rows are (metric, before, after, change, normal range, verdict) texts."""

    def __init__(self, title: str, subtitle: str, rows: Sequence[tuple[str, ...]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(900, 360)
        self.table = SortableTable(CARD_HEADERS)
        self.table.set_rows([(r[0], [(text, text) for text in r]) for r in rows])
        label = QLabel(subtitle)
        label.setWordWrap(True)
        buttons = self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)

    def add_action(self, text: str, slot: Callable[[], object]) -> QPushButton:
        """A button beside Close (e.g. "Compare before / after this change")."""
        button = self.buttons.addButton(text, QDialogButtonBox.ButtonRole.ActionRole)
        button.clicked.connect(lambda: slot())
        return button

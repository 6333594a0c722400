"""A dialog asking for a new scrape target; the caller validates and may show an error."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)


class TargetDialog(QDialog):
    """Name, URL, kind and interval of a target. ``values()`` returns them as typed."""

    def __init__(self, kinds: tuple[str, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a scrape target")
        self.name = QLineEdit()
        self.name.setPlaceholderText("api-1")
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://127.0.0.1:8000/metrics")
        self.kind = QComboBox()
        self.kind.addItems(list(kinds))
        self.interval = QDoubleSpinBox()
        self.interval.setRange(0.2, 3600.0)
        self.interval.setValue(1.0)
        self.interval.setSuffix(" s")
        self.error = QLabel("")
        self.error.setStyleSheet("color: #D55E00")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Metrics URL", self.url)
        form.addRow("Kind", self.kind)
        form.addRow("Scrape interval", self.interval)
        form.addRow(self.error)
        form.addRow(buttons)

    def values(self) -> tuple[str, str, str, float]:
        return (self.name.text().strip(), self.url.text().strip(), self.kind.currentText(),
                self.interval.value())

    def show_error(self, message: str) -> None:
        self.error.setText(message)

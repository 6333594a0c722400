"""The dialog asking what to put in an incident snapshot: a range, notes and a file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

from .dialog_fit import FittedDialog
from .range_fields import RangeFields

SUFFIX = ".trimtab"
INCIDENT_RANGES = (("last 15 min", 900), ("last 30 min", 1800), ("last 1 h", 3600),
                   ("last 6 h", 6 * 3600), ("from … to …", 0))


class ExportDialog(RangeFields, FittedDialog):
    """Range (last 15 min … 6 h, or from … to …), notes for the colleague, and the file.

    Export is refused with a message while the range is empty or reversed, the file
    has no name or its folder does not exist; ``.trimtab`` is added when missing.
    """

    def __init__(self, default_path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export incident snapshot")
        self._build_range(INCIDENT_RANGES, 900)
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("What happened, what you changed, what to look at "
                                      "(secrets are redacted, but keep them out)")
        self.notes.setFixedHeight(90)
        self.path = QLineEdit(default_path)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(browse)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d9534f")
        self.error.setWordWrap(True)  # it may name a long folder
        self.buttons = buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                                  | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        body = QWidget()
        form = QFormLayout(body)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Range:", self.choice)
        form.addRow("From:", self.start)
        form.addRow("To:", self.end)
        form.addRow("Notes:", self.notes)
        form.addRow("File:", where)
        self.install(body, self.error, buttons)

    def file(self) -> Path:
        """The chosen file, with ``.trimtab`` added when it has another ending."""
        text = self.path.text().strip()
        return Path(text if text.endswith(SUFFIX) else text + SUFFIX).expanduser()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export incident snapshot", self.path.text(),
                                              f"trimtab snapshot (*{SUFFIX})")
        if path:
            self.path.setText(path)

    def _check(self) -> None:
        problem = self._range_problem()
        if problem:
            self.error.setText(problem)
        elif not self.path.text().strip():
            self.error.setText("Choose a file to write.")
        elif not self.file().parent.is_dir():
            self.error.setText(f"No such folder: {self.file().parent}")
        else:
            self.accept()

"""The *Add SLO…* dialog: a route, a kind, an objective and a window; Add stays disabled
while the definition is not a valid promise, and the reason is shown in red beside it.

What a valid definition is belongs to the caller (``check`` returns the problem or None),
so this widget knows no SLO rules, only fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

KIND_LABELS = {"latency": "Latency: share of requests at or under a threshold",
               "availability": "Availability: share of requests without a bad status"}


class SloDialog(QDialog):
    """Fields as typed (never clamped); :meth:`fields` returns them parsed, or None."""

    def __init__(self, routes: Sequence[str], check: Callable[[dict[str, Any]], str | None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add SLO")
        self._check = check
        self.route = QComboBox()
        self.route.setEditable(True)
        self.route.addItems(list(routes))
        self.kind = QComboBox()
        for key, label in KIND_LABELS.items():
            self.kind.addItem(label, key)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. search-latency (lowercase, digits, -)")
        self.objective = QLineEdit("99")
        self.threshold = QLineEdit("300")
        self.statuses = QLineEdit("5xx")
        self.window = QLineEdit("28")
        form = QFormLayout()
        form.addRow("Route (or pattern with *)", self.route)
        form.addRow("Kind", self.kind)
        form.addRow("Name", self.name)
        form.addRow("Objective (%)", self.objective)
        self.threshold_label = QLabel("Threshold (ms)")
        form.addRow(self.threshold_label, self.threshold)
        self.statuses_label = QLabel("Bad statuses (e.g. 5xx, 429)")
        form.addRow(self.statuses_label, self.statuses)
        form.addRow("Window (days)", self.window)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #B00020;")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = self.buttons.addButton("Add", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        for field in (self.name, self.objective, self.threshold, self.statuses, self.window):
            field.textChanged.connect(self._update)
        self.route.currentTextChanged.connect(self._update)
        self.kind.currentIndexChanged.connect(self._update)
        self._update()

    def prefill(self, fields: dict[str, Any]) -> None:
        """Show an existing definition (seconds and shares, as :meth:`fields` returns them)."""
        self.setWindowTitle("Edit SLO")
        self.add_button.setText("Save")
        self.route.setCurrentText(fields["route"])
        self.kind.setCurrentIndex(max(0, self.kind.findData(fields["kind"])))
        self.name.setText(fields["name"])
        self.objective.setText(f"{fields['objective'] * 100:.10g}")
        self.window.setText(f"{fields['window_s'] / 86400:.10g}")
        if fields.get("threshold_s") is not None:
            self.threshold.setText(f"{fields['threshold_s'] * 1000:.10g}")
        self.statuses.setText(", ".join(fields.get("bad_statuses") or ("5xx",)))
        self._update()

    def fields(self) -> dict[str, Any] | None:
        """The definition's fields (seconds and shares), or None while one does not parse."""
        try:
            objective = float(self.objective.text()) / 100.0
            window = float(self.window.text()) * 86400.0
            threshold = (float(self.threshold.text()) / 1000.0
                         if self.kind.currentData() == "latency" else None)
        except ValueError:
            return None
        route = self.route.currentText().strip()
        name = self.name.text().strip() or _suggest_name(route, self.kind.currentData())
        return {"name": name, "route": route, "kind": self.kind.currentData(),
                "objective": objective, "window_s": window, "threshold_s": threshold,
                "bad_statuses": tuple(s.strip() for s in self.statuses.text().split(",")
                                      if s.strip())}

    def problem(self) -> str | None:
        fields = self.fields()
        if fields is None:
            return "Objective, threshold and window must be numbers."
        return self._check(fields)

    def _update(self, *_: object) -> None:
        latency = self.kind.currentData() == "latency"
        for widget in (self.threshold, self.threshold_label):
            widget.setVisible(latency)
        for widget in (self.statuses, self.statuses_label):
            widget.setVisible(not latency)
        problem = self.problem()
        self.error.setText(problem or "")
        self.add_button.setEnabled(problem is None)

    def accept(self) -> None:
        if self.problem() is None:  # Enter while invalid does nothing
            super().accept()


def _suggest_name(route: str, kind: str) -> str:
    """``/items/{id}`` + latency → ``items-id-latency`` (a valid RFC 1123 name)."""
    stem = "".join(c if c.isalnum() else "-" for c in route.lower()).strip("-")
    while "--" in stem:
        stem = stem.replace("--", "-")
    return f"{stem or 'all'}-{kind}"[:63].strip("-")

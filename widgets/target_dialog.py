"""A dialog asking for a new scrape target; the caller validates and may show an error.

The interval is judged as typed (never clamped into another interval): while it is
invalid the error sits next to it, OK is disabled and Enter does nothing.

For the kind ``prometheus`` the URL is a Prometheus server's base URL (its targets are
read through it), so the URL row's label and placeholder follow the chosen kind.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from .dialog_fit import FittedDialog
from .number_field import NumberField

URL_HINTS = {  # kind → (row label, placeholder); other kinds: a metrics endpoint
    "prometheus": ("Prometheus URL", "http://127.0.0.1:9090"),
    "balancer": ("Metrics URL", "http://127.0.0.1:9000/_trimtab/metrics"),
}
METRICS_HINT = ("Metrics URL", "http://127.0.0.1:8000/metrics")


class TargetDialog(FittedDialog):
    """Name, URL, kind, service and interval of a target. ``values()`` returns them as typed."""

    def __init__(self, kinds: tuple[str, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a scrape target")
        self.setMinimumWidth(440)  # URLs must fit
        self.name = QLineEdit()
        self.name.setPlaceholderText("api-1")
        self.url = QLineEdit()
        self.url_label = QLabel()
        self.kind = QComboBox()
        self.kind.addItems(list(kinds))
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.token_env = QLineEdit()
        self.token_env.setPlaceholderText("optional: PROM_TOKEN")
        self.token_env.setToolTip("The environment variable holding a bearer token for a "
                                  "Prometheus behind an authenticating proxy (the token "
                                  "itself is never saved)")
        self.service_name = QLineEdit()
        self.service_name.setPlaceholderText("optional: shop")
        self.service_name.setToolTip("The service this target is an instance of: its routes "
                                     "read \"shop · /route\", apart from other services' routes "
                                     "of the same name. Empty: the one unnamed service.")
        self.interval = NumberField(0.2, 3600.0, unit="s")
        self.interval.setValue(1.0)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #D55E00")
        self.error.setWordWrap(True)
        self.buttons = buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                                  | QDialogButtonBox.StandardButton.Cancel)
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        # OK is the one default button: a focused Cancel never takes Enter, and a disabled
        # OK makes Enter do nothing.
        self.ok.setDefault(True)
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setAutoDefault(False)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.interval.changed.connect(self._interval_changed)
        body = QWidget()
        self.form = form = QFormLayout(body)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Name", self.name)
        form.addRow(self.url_label, self.url)
        form.addRow("Kind", self.kind)
        form.addRow("Service", self.service_name)
        form.addRow("Token variable", self.token_env)
        form.addRow("Scrape interval", self.interval)
        self.install(body, self.error, buttons)
        self._kind_changed(self.kind.currentText())

    @Slot(str)
    def _kind_changed(self, kind: str) -> None:
        label, placeholder = URL_HINTS.get(kind, METRICS_HINT)
        self.url_label.setText(label)
        self.url.setPlaceholderText(placeholder)
        self.form.setRowVisible(self.token_env, kind == "prometheus")  # only it takes one
        # A Prometheus source names each series' service itself (its job label).
        self.form.setRowVisible(self.service_name, kind != "prometheus")

    @Slot()
    def _interval_changed(self) -> None:
        self.ok.setEnabled(self.interval.problem() is None)

    def accept(self) -> None:
        """Close with OK only while the interval is valid (the caller judges the rest)."""
        if self.interval.problem() is None:
            super().accept()

    def values(self) -> tuple[str, str, str, float]:
        """Name, URL, kind and interval (seconds) as entered."""
        interval = self.interval.value()
        # NaN only before a valid interval was typed (an accepted dialog always has one);
        # the targets file's validation refuses it, naming the interval.
        return (self.name.text().strip(), self.url.text().strip(), self.kind.currentText(),
                math.nan if interval is None else float(interval))

    def token_variable(self) -> str:
        """For a Prometheus source: the environment variable holding its token ("" = none)."""
        return self.token_env.text().strip() if self.kind.currentText() == "prometheus" else ""

    def service(self) -> str:
        """The service typed ("" = the unnamed one); the targets file validates it."""
        return self.service_name.text().strip() if self.kind.currentText() != "prometheus" else ""

    def show_error(self, message: str) -> None:
        """Show why the last values were refused (the dialog stays open)."""
        self.error.setText(message)

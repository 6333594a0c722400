"""Dialogs that ask what to change; they show previews and summaries the caller computes.

Thin: no network, no model. The caller fills in previews (``set_preview``) and
reads the choice (``choice()``) after ``exec()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

STATES = ("ready", "drain", "maint")


class TtlDialog(QDialog):
    """New TTL for one route on all instances, one canary, or a chosen set."""

    def __init__(self, route: str, current: Mapping[str, float], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Change the cache TTL of {route}")
        self.route, self.current = route, dict(current)
        first = next(iter(current.values()), 0.0)
        self.ttl = QDoubleSpinBox()
        self.ttl.setRange(0, 86400)
        self.ttl.setDecimals(1)
        self.ttl.setSuffix(" s")
        self.ttl.setValue(first)
        self.ttl.setToolTip("0 turns caching off for this route")
        self.scope_all = QRadioButton("all instances")
        self.scope_canary = QRadioButton("one instance (canary):")
        self.scope_some = QRadioButton("chosen instances:")
        group = QButtonGroup(self)
        for button in (self.scope_all, self.scope_canary, self.scope_some):
            group.addButton(button)
        self.scope_all.setChecked(True)
        self.canary = QComboBox()
        self.canary.addItems(sorted(current))
        self.checks = {name: QCheckBox(name) for name in sorted(current)}
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (recorded in the journal)")
        self.staged = QCheckBox("staged: the canary first, watched against gates, then the rest")
        self.watch = QSpinBox()
        self.watch.setRange(5, 3600)
        self.watch.setValue(300)
        self.watch.setSuffix(" s")
        self.p95_max = QSpinBox()
        self.p95_max.setRange(0, 600_000)
        self.p95_max.setValue(500)
        self.p95_max.setSuffix(" ms")
        self.p95_max.setSpecialValueText("no p95 gate")
        self.err_max = QDoubleSpinBox()
        self.err_max.setRange(0, 100)
        self.err_max.setValue(1.0)
        self.err_max.setSuffix(" %")
        self.err_max.setSpecialValueText("no error gate")
        self.preview = QLabel("Predicted hit ratio: asking the agents…")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        boxes = QWidget()
        row = QGridLayout(boxes)
        for i, check in enumerate(self.checks.values()):
            row.addWidget(check, 0, i)
        form = QFormLayout()
        form.addRow("New TTL", self.ttl)
        form.addRow(self.scope_all)
        form.addRow(self.scope_canary, self.canary)
        form.addRow(self.scope_some, boxes)
        form.addRow("Reason", self.reason)
        form.addRow(self.staged)
        form.addRow("Watch the canary for", self.watch)
        form.addRow("Revert if its p95 exceeds", self.p95_max)
        form.addRow("… or its error rate exceeds", self.err_max)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Apply")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.preview)
        layout.addWidget(QLabel("<b>This changes:</b>"))
        layout.addWidget(self.summary)
        layout.addWidget(QLabel("Entries already cached keep their old expiry; new ones use the "
                                "new TTL."))
        layout.addWidget(buttons)
        for signal in (self.ttl.valueChanged, self.canary.currentIndexChanged, self.staged.toggled,
                       *(c.toggled for c in self.checks.values()), group.buttonToggled):
            signal.connect(self._update_summary)
        self._whatif: dict[float, float] = {}
        self._update_summary()

    def staged_choice(self) -> tuple[str, float, float | None, float | None] | None:
        """(canary, watch seconds, p95 gate ms, error-rate gate 0..1) when staged, else None."""
        if not self.staged.isChecked():
            return None
        return (self.canary.currentText(), float(self.watch.value()),
                float(self.p95_max.value()) or None, self.err_max.value() / 100.0 or None)

    def targets(self) -> list[str]:
        if self.scope_all.isChecked() or self.staged.isChecked():
            return sorted(self.current)
        if self.scope_canary.isChecked():
            return [self.canary.currentText()]
        return [name for name, check in self.checks.items() if check.isChecked()]

    def choice(self) -> tuple[list[str], float, str]:
        """(instances, new TTL in seconds, reason)."""
        return self.targets(), self.ttl.value(), self.reason.text().strip()

    def set_whatif(self, hit_ratio: Mapping[float, float], current_ttl: float, requests: int) -> None:
        """The agent's predicted hit ratio per candidate TTL (from its sample of real traffic)."""
        self._whatif = dict(hit_ratio)
        self._whatif_note = f" (simulated on {requests} recent requests; now {current_ttl:g} s)"
        self._update_summary()

    def set_preview_error(self, message: str) -> None:
        self.preview.setText(f"No hit-ratio preview: {message}")

    def _update_summary(self, *_: object) -> None:
        ttl = self.ttl.value()
        lines = [f"{name}: {self.current[name]:g} s → {ttl:g} s" for name in self.targets()]
        text = f"TTL of {self.route}: " + ("; ".join(lines) or "no instance chosen")
        if self.staged.isChecked():
            text += (f" — first {self.canary.currentText()} only, the rest after the watch if "
                     "the gates hold; reverted automatically if one fails")
        self.summary.setText(text)
        if self._whatif:
            nearest = min(self._whatif, key=lambda k: abs(k - ttl))
            table = ", ".join(f"{k:g} s → {v * 100:.0f} %" for k, v in sorted(self._whatif.items()))
            self.preview.setText(f"Predicted hit ratio at {nearest:g} s: "
                                 f"{self._whatif[nearest] * 100:.0f} %{self._whatif_note}\n{table}")


class WeightsDialog(QDialog):
    """Weights (slider + spin box) and states per server, with the expected share previewed."""

    def __init__(self, servers: Sequence[tuple[str, int, str]],
                 preview: Callable[[dict[str, int], dict[str, str]], dict[str, float]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Change balancer weights and states")
        self._preview, self.original = preview, {n: (w, s) for n, w, s in servers}
        self.spins: dict[str, QSpinBox] = {}
        self.states: dict[str, QComboBox] = {}
        self.shares: dict[str, QLabel] = {}
        grid = QGridLayout()
        for col, title in enumerate(("server", "weight", "", "state", "expected share")):
            grid.addWidget(QLabel(f"<b>{title}</b>"), 0, col)
        for row, (name, weight, state) in enumerate(servers, 1):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, 256)
            spin = QSpinBox()
            spin.setRange(0, 256)
            slider.valueChanged.connect(spin.setValue)
            spin.valueChanged.connect(slider.setValue)
            spin.setValue(weight)
            combo = QComboBox()
            combo.addItems(STATES)
            combo.setCurrentText(state if state in STATES else "ready")
            share = QLabel("")
            self.spins[name], self.states[name], self.shares[name] = spin, combo, share
            spin.valueChanged.connect(self._update)
            combo.currentIndexChanged.connect(self._update)
            for col, widget in enumerate((QLabel(name), slider, spin, combo, share)):
                grid.addWidget(widget, row, col)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (recorded in the journal)")
        self.force = QCheckBox("force past the guard rails (needs a reason)")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Apply")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        form = QFormLayout()
        form.addRow("Reason", self.reason)
        form.addRow(self.force)
        layout.addLayout(form)
        layout.addWidget(QLabel("<b>This changes:</b>"))
        layout.addWidget(self.summary)
        layout.addWidget(buttons)
        self._update()

    def choice(self) -> tuple[dict[str, int], dict[str, str], str, bool]:
        """Only what differs from the current values: (weights, states, reason, force)."""
        weights = {n: s.value() for n, s in self.spins.items() if s.value() != self.original[n][0]}
        states = {n: c.currentText() for n, c in self.states.items()
                  if c.currentText() != self.original[n][1]}
        return weights, states, self.reason.text().strip(), self.force.isChecked()

    def _update(self, *_: object) -> None:
        weights = {n: s.value() for n, s in self.spins.items()}
        states = {n: c.currentText() for n, c in self.states.items()}
        for name, share in self._preview(weights, states).items():
            self.shares[name].setText(f"{share * 100:.1f} %")
        changed_w, changed_s, _, _ = self.choice()
        parts = [f"{n} weight {self.original[n][0]} → {w}" for n, w in changed_w.items()]
        parts += [f"{n} state {self.original[n][1]} → {s}" for n, s in changed_s.items()]
        self.summary.setText("; ".join(parts) or "nothing yet")

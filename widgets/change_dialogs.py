"""Dialogs that ask what to change; they show previews and summaries the caller computes.

Thin: no network, no model. The caller fills in previews (``set_preview``) and
reads the choice (``choice()``) after ``exec()``.

Every number is a :class:`NumberField`: judged exactly as typed, never clamped into a
different change. While a field is invalid, or a change that needs a reason has none,
Apply is disabled with the reason shown, Enter does nothing and ``choice()`` is None.
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
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from .dialog_fit import FittedDialog
from .number_field import ERROR_STYLE, NumberField

STATES = ("ready", "drain", "maint")
DRAINING = ("drain", "maint")  # states that take a server out of rotation
# The agent's bounds (trimtab.agent.config.MAX_TTL, trimtab.agent.balance.policies.MAX_WEIGHT),
# repeated because widgets never import the agent; a test holds them equal.
MAX_TTL = 86400.0
MAX_WEIGHT = 256
CHECKS_PER_ROW = 4  # instance check boxes per row: twelve instances must not widen the dialog


def _apply_buttons(dialog: QDialog) -> tuple[QDialogButtonBox, QPushButton]:
    """Apply / Cancel where Enter means Apply (and only when Apply is enabled).

    Cancel is no auto-default button: focused, it would become the default and Enter
    would close the dialog; Apply is the explicit default, so a disabled Apply makes
    Enter do nothing.
    """
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
    apply = buttons.button(QDialogButtonBox.StandardButton.Ok)
    apply.setText("Apply")
    apply.setDefault(True)
    buttons.button(QDialogButtonBox.StandardButton.Cancel).setAutoDefault(False)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons, apply


def _blocked_label() -> QLabel:
    label = QLabel("")
    label.setStyleSheet(ERROR_STYLE)
    label.setWordWrap(True)
    return label


class TtlDialog(FittedDialog):
    """New TTL for one route on all instances, one canary, or a chosen set."""

    def __init__(self, route: str, current: Mapping[str, float], parent: QWidget | None = None,
                 max_ttl: float = MAX_TTL) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Change the cache TTL of {route}")
        self.route, self.current = route, dict(current)
        first = next(iter(current.values()), 0.0)
        self.ttl = NumberField(0, max_ttl, unit="s", hint="0 turns caching off for this route")
        self.ttl.setValue(first)
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
        self.watch = NumberField(5, 3600, unit="s")
        self.watch.setValue(300)
        self.p95_max = NumberField(0, 600_000, unit="ms", hint="0 = no p95 gate")
        self.p95_max.setValue(500)
        self.err_max = NumberField(0, 100, unit="%", hint="0 = no error-rate gate")
        self.err_max.setValue(1.0)
        self.preview = QLabel("Predicted hit ratio: asking the agents…")
        self.preview.setWordWrap(True)  # the agent's grid is one long line
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.blocked = _blocked_label()
        boxes = QWidget()
        row = QGridLayout(boxes)
        for i, check in enumerate(self.checks.values()):
            row.addWidget(check, i // CHECKS_PER_ROW, i % CHECKS_PER_ROW)
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
        self.buttons, self.apply = _apply_buttons(self)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.preview)
        layout.addWidget(QLabel("<b>This changes:</b>"))
        layout.addWidget(self.summary)
        note = QLabel("Entries already cached keep their old expiry; new ones use the "
                      "new TTL. 0 s turns caching off; a gate at 0 is no gate.")
        note.setWordWrap(True)
        layout.addWidget(note)
        layout.addStretch(1)
        self.install(body, self.blocked, self.buttons)
        for signal in (self.ttl.changed, self.watch.changed, self.p95_max.changed,
                       self.err_max.changed, self.reason.textChanged,
                       self.canary.currentIndexChanged, self.staged.toggled,
                       *(c.toggled for c in self.checks.values()), group.buttonToggled):
            signal.connect(self._update_summary)
        self._whatif: dict[float, float] = {}
        self._update_summary()

    def staged_choice(self) -> tuple[str, float, float | None, float | None] | None:
        """(canary, watch seconds, p95 gate ms, error-rate gate 0..1) when staged and valid,
        else None."""
        if not self.staged.isChecked() or self.problem() is not None:
            return None
        watch, p95, err = self.watch.value(), self.p95_max.value(), self.err_max.value()
        assert watch is not None and p95 is not None and err is not None  # problem() said so
        return (self.canary.currentText(), float(watch), float(p95) or None, err / 100.0 or None)

    def targets(self) -> list[str]:
        """The instances the change would touch."""
        if self.scope_all.isChecked() or self.staged.isChecked():
            return sorted(self.current)
        if self.scope_canary.isChecked():
            return [self.canary.currentText()]
        return [name for name, check in self.checks.items() if check.isChecked()]

    def problem(self) -> str | None:
        """Why Apply is not possible now (a field's error, a missing reason…), or None."""
        fields = [("New TTL", self.ttl)]
        if self.staged.isChecked():
            fields += [("Watch", self.watch), ("p95 gate", self.p95_max),
                       ("error-rate gate", self.err_max)]
        for label, field in fields:
            error = field.problem()
            if error is not None:
                return f"{label}: {error}"
        targets, ttl = self.targets(), self.ttl.value()
        if not targets:
            return "Choose at least one instance."
        if all(self.current[name] == ttl for name in targets):
            return f"Nothing changes: {', '.join(targets)} already use {ttl:g} s."
        if set(targets) == set(self.current) and not self.reason.text().strip():
            return "A change on every instance needs a reason (recorded in the journal)."
        return None

    def choice(self) -> tuple[list[str], float, str] | None:
        """(instances, new TTL in seconds, reason), or None while something is invalid."""
        ttl = self.ttl.value()
        if self.problem() is not None or ttl is None:
            return None
        return self.targets(), float(ttl), self.reason.text().strip()

    def accept(self) -> None:
        """Close with Apply only when the change is valid (Enter, a click or a caller)."""
        if self.problem() is None:
            super().accept()

    def set_whatif(self, hit_ratio: Mapping[float, float], current_ttl: float, requests: int) -> None:
        """The agent's predicted hit ratio per candidate TTL (from its sample of real traffic)."""
        self._whatif = dict(hit_ratio)
        self._whatif_note = f" (simulated on {requests} recent requests; now {current_ttl:g} s)"
        self._update_summary()

    def set_preview_error(self, message: str) -> None:
        """Say why there is no hit-ratio preview."""
        self.preview.setText(f"No hit-ratio preview: {message}")

    def _update_summary(self, *_: object) -> None:
        problem = self.problem()
        self.apply.setEnabled(problem is None)
        self.blocked.setText(problem or "")
        ttl = self.ttl.value()
        self._show_whatif(ttl)
        if ttl is None:  # never preview a value nobody typed
            self.summary.setText(f"TTL of {self.route}: nothing until the new TTL is valid")
            return
        lines = [f"{name}: {self.current[name]:g} s → {ttl:g} s" for name in self.targets()]
        text = f"TTL of {self.route}: " + ("; ".join(lines) or "no instance chosen")
        if self.staged.isChecked():
            text += (f" — first {self.canary.currentText()} only, the rest after the watch if "
                     "the gates hold; reverted automatically if one fails")
        self.summary.setText(text)

    def _show_whatif(self, ttl: float | None) -> None:
        if not self._whatif:
            return
        table = ", ".join(f"{k:g} s → {v * 100:.0f} %" for k, v in sorted(self._whatif.items()))
        if ttl is None:
            self.preview.setText(f"Predicted hit ratio{self._whatif_note}:\n{table}")
            return
        nearest = min(self._whatif, key=lambda k: abs(k - ttl))
        self.preview.setText(f"Predicted hit ratio at {nearest:g} s: "
                             f"{self._whatif[nearest] * 100:.0f} %{self._whatif_note}\n{table}")


class WeightsDialog(FittedDialog):
    """Weights (slider + typed field) and states per server, with the expected share previewed."""

    def __init__(self, servers: Sequence[tuple[str, int, str]],
                 preview: Callable[[dict[str, int], dict[str, str]], dict[str, float]],
                 parent: QWidget | None = None, max_weight: int = MAX_WEIGHT) -> None:
        super().__init__(parent)
        self.setWindowTitle("Change balancer weights and states")
        self._preview, self.original = preview, {n: (w, s) for n, w, s in servers}
        self.spins: dict[str, NumberField] = {}
        self.sliders: dict[str, QSlider] = {}
        self.states: dict[str, QComboBox] = {}
        self.shares: dict[str, QLabel] = {}
        grid = QGridLayout()
        for col, title in enumerate(("server", "weight", "", "state", "expected share")):
            grid.addWidget(QLabel(f"<b>{title}</b>"), 0, col)
        for index, (name, weight, state) in enumerate(servers):
            row = 1 + 2 * index  # the row below holds the weight's error, when there is one
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, max_weight)
            slider.setValue(weight)
            spin = NumberField(0, max_weight, integer=True, hint="0 drains the server",
                               inline_error=False)
            spin.setValue(weight)
            # The slider writes the field; the field moves the slider only when valid, so a
            # typed 9000 stays 9000 (an error), never the slider's 256.
            slider.valueChanged.connect(spin.setValue)
            spin.changed.connect(lambda s=spin, sl=slider: self._follow(s, sl))
            combo = QComboBox()
            combo.addItems(STATES)
            combo.setCurrentText(state if state in STATES else "ready")
            share = QLabel("")
            self.spins[name], self.sliders[name] = spin, slider
            self.states[name], self.shares[name] = combo, share
            spin.changed.connect(self._update)
            combo.currentIndexChanged.connect(self._update)
            grid.addWidget(QLabel(name), row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(spin, row, 2)
            grid.addWidget(combo, row, 3)
            grid.addWidget(share, row, 4)
            grid.addWidget(spin.error, row + 1, 1, 1, 4)
            spin.error.setHidden(not spin.error.text())
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (recorded in the journal)")
        self.reason.textChanged.connect(self._update)
        self.force = QCheckBox("force past the guard rails (needs a reason)")
        self.force.toggled.connect(self._update)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.blocked = _blocked_label()
        self.buttons, self.apply = _apply_buttons(self)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)
        form = QFormLayout()
        form.addRow("Reason", self.reason)
        form.addRow(self.force)
        layout.addLayout(form)
        layout.addWidget(QLabel("<b>This changes:</b>"))
        layout.addWidget(self.summary)
        layout.addStretch(1)
        self.install(body, self.blocked, self.buttons)
        self._update()

    @staticmethod
    def _follow(spin: NumberField, slider: QSlider) -> None:
        value = spin.value()
        if value is not None and value != slider.value():
            slider.blockSignals(True)  # no echo back into the field being typed in
            slider.setValue(int(value))
            slider.blockSignals(False)

    def _changes(self) -> tuple[dict[str, int], dict[str, str]] | None:
        """What differs from the current values, or None while a weight is invalid."""
        weights: dict[str, int] = {}
        for name, spin in self.spins.items():
            value = spin.value()
            if value is None:
                return None
            if int(value) != self.original[name][0]:
                weights[name] = int(value)
        states = {n: c.currentText() for n, c in self.states.items()
                  if c.currentText() != self.original[n][1]}
        return weights, states

    def problem(self) -> str | None:
        """Why Apply is not possible now (a weight's error, a missing reason…), or None."""
        for name, spin in self.spins.items():
            error = spin.problem()
            if error is not None:
                return f"{name} weight: {error}"
        changes = self._changes()
        assert changes is not None  # every weight is valid here
        weights, states = changes
        if not weights and not states:
            return "Nothing changes yet."
        if self.reason.text().strip():
            return None
        drained = sorted({n for n, w in weights.items() if w == 0}
                         | {n for n, s in states.items() if s in DRAINING})
        if drained:
            return f"Draining {', '.join(drained)} needs a reason (recorded in the journal)."
        if set(weights) | set(states) == set(self.spins):
            return "A change to every server needs a reason (recorded in the journal)."
        if self.force.isChecked():
            return "Forcing past the guard rails needs a reason (recorded in the journal)."
        return None

    def choice(self) -> tuple[dict[str, int], dict[str, str], str, bool] | None:
        """Only what differs from the current values: (weights, states, reason, force);
        None while something is invalid."""
        changes = self._changes()
        if changes is None or self.problem() is not None:
            return None
        return changes[0], changes[1], self.reason.text().strip(), self.force.isChecked()

    def accept(self) -> None:
        """Close with Apply only when the change is valid (Enter, a click or a caller)."""
        if self.problem() is None:
            super().accept()

    def _update(self, *_: object) -> None:
        problem = self.problem()
        self.apply.setEnabled(problem is None)
        self.blocked.setText(problem or "")
        changes = self._changes()
        if changes is None:  # never preview a weight nobody typed
            for share in self.shares.values():
                share.setText("—")
            self.summary.setText("nothing until every weight is valid")
            return
        weights = {n: self.original[n][0] for n in self.spins} | changes[0]
        states = {n: c.currentText() for n, c in self.states.items()}
        for name, share in self._preview(weights, states).items():
            self.shares[name].setText(f"{share * 100:.1f} %")
        parts = [f"{n} weight {self.original[n][0]} → {w}" for n, w in changes[0].items()]
        parts += [f"{n} state {self.original[n][1]} → {s}" for n, s in changes[1].items()]
        self.summary.setText("; ".join(parts) or "nothing yet")

"""The Change limit… dialog: rate, burst, key, mode and reason of one rate limit, with the
what-if preview the caller fills in. Thin: no network, no model.

Same rules as :mod:`.change_dialogs`: every number is judged exactly as typed (never
clamped), and while a field is invalid, or a change that needs a reason has none, Apply
is disabled with the reason shown, Enter does nothing and ``choice()`` is None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from .change_dialogs import _apply_buttons, _blocked_label
from .dialog_fit import FittedDialog
from .number_field import NumberField

# The agent's bounds (trimtab.agent.ratelimit_config.MAX_RATE / MAX_BURST), repeated because
# widgets never import the agent; a test holds them equal.
MAX_RATE = 1_000_000.0
MAX_BURST = 1_000_000
MODES = ("off", "shadow", "enforce")
ENFORCE = "enforce"
# The keys the agent accepts (its ratelimit_config): ip, global, header:<token>, jwt:<claim>.
_KEY = re.compile(r"ip|global|header:[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}|jwt:[A-Za-z0-9_.:-]{1,64}")
PREVIEW_DELAY_MS = 400  # typing pauses this long before a what-if is asked for
# A staged change's defaults: the canary is watched this long and reverted when more than
# this share of its requests on the route is refused with 429, or fails.
WATCH_S, MIN_WATCH_S, MAX_WATCH_S = 120.0, 5.0, 3600.0
REFUSED_GATE_PCT = 5.0
ERROR_GATE_PCT = 1.0


@dataclass(frozen=True)
class LimitSettings:
    """One instance's settings of the limit being changed."""

    route: str
    key: str
    rate: float
    burst: int
    mode: str


class RateField(NumberField):
    """Requests per second in (0, maximum]: zero is refused, naming the range."""

    def range_text(self) -> str:
        return f"a number above 0, up to {self.maximum:,.0f} {self.unit}".rstrip()

    def problem(self) -> str | None:
        problem = super().problem()
        if problem is None and float(self.edit.text().strip()) == 0:
            return f"{self.edit.text().strip()} is out of range: enter {self.range_text()}"
        return problem


class BurstField(NumberField):
    """A whole number of requests, its range written out (1 to 1,000,000, not 1e+06)."""

    def range_text(self) -> str:
        return f"a whole number from {self.minimum:,.0f} to {self.maximum:,.0f} {self.unit}".rstrip()


class LimitDialog(FittedDialog):
    """Change one limit on every instance that has it, or on one of them.

    ``current`` maps instance → its :class:`LimitSettings` (the fields start from the
    first); ``mode`` presets the mode (the page's *Shadow → enforce* button). When shown,
    and each time key, rate and burst are valid and settle, ``preview_wanted(key, rate,
    burst)`` asks the caller for a what-if, answered with :meth:`set_whatif` (stale answers
    ignored).
    """

    preview_wanted = Signal(str, float, int)

    def __init__(self, name: str, current: Mapping[str, LimitSettings],
                 parent: QWidget | None = None, mode: str | None = None,
                 max_rate: float = MAX_RATE, max_burst: int = MAX_BURST,
                 at_balancer: bool = False) -> None:
        """``at_balancer``: ``current`` holds one balancer's limit (no scope, no staged
        rollout: the balancer is one place)."""
        super().__init__(parent)
        if not current:
            raise ValueError("no instance has this limit")
        if at_balancer and len(current) != 1:
            raise ValueError("a balancer's limit is changed on that one balancer")
        self.name, self.current = name, dict(sorted(current.items()))
        self.at_balancer = at_balancer
        first = next(iter(self.current.values()))
        self.route = first.route
        self.setWindowTitle(f"Change the rate limit {name} on {self.route}" + (
            f" at the balancer {next(iter(self.current))}" if at_balancer else ""))
        self.rate = RateField(0, max_rate, unit="req/s", hint="requests per second per key")
        self.rate.setValue(first.rate)
        self.burst = BurstField(1, max_burst, integer=True, unit="requests",
                                 hint="requests let through at once")
        self.burst.setValue(first.burst)
        self.key = QLineEdit(first.key)
        self.key.setToolTip("ip, global, header:<name> (an API key) or jwt:<claim>")
        self.key_error = _blocked_label()
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.setCurrentText(mode if mode in MODES else first.mode)
        self.scope_all = QRadioButton(f"all {len(self.current)} instances with this limit")
        self.scope_one = QRadioButton("one instance:")
        group = QButtonGroup(self)
        group.addButton(self.scope_all)
        group.addButton(self.scope_one)
        self.scope_all.setChecked(True)
        self.instance = QComboBox()
        self.instance.addItems(list(self.current))
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (recorded in the journal)")
        self.staged = QCheckBox("staged: a canary first, watched against gates, then the rest")
        self.canary = QComboBox()
        self.canary.addItems(list(self.current))
        self.watch = NumberField(MIN_WATCH_S, MAX_WATCH_S, unit="s",
                                 hint="how long the canary alone has the change")
        self.watch.setValue(WATCH_S)
        self.refused_max = NumberField(0, 100, unit="%", hint="0 = no 429-share gate")
        self.refused_max.setValue(REFUSED_GATE_PCT)
        self.err_max = NumberField(0, 100, unit="%", hint="0 = no error-rate gate")
        self.err_max.setValue(ERROR_GATE_PCT)
        self.preview = QLabel("What-if: asking the agents…")
        self.preview.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.blocked = _blocked_label()
        # What the agent answered to the last Apply it refused (shown when the dialog is
        # opened again with the values as typed; cleared by any edit).
        self.refusal = _blocked_label()
        self.refusal.setWordWrap(True)
        self.refusal.hide()
        self._refused: dict[str, object] | None = None
        form = QFormLayout()
        if at_balancer:
            form.addRow("Balancer", QLabel(f"{next(iter(self.current))} — decided before a "
                                           "server is chosen; the instances are not changed"))
        form.addRow("Route", QLabel(self.route))
        form.addRow("Rate", self.rate)
        form.addRow("Burst", self.burst)
        form.addRow("Client key", self.key)
        form.addRow("", self.key_error)
        form.addRow("Mode", self.mode)
        form.addRow(self.scope_all)
        form.addRow(self.scope_one, self.instance)
        form.addRow("Reason", self.reason)
        form.addRow(self.staged)
        # The staged rows show only while staged (a short dialog otherwise), aligned with
        # the rows above.
        self._staged_rows = (self.canary, self.watch, self.refused_max, self.err_max)
        form.addRow("Canary (first alone)", self.canary)
        form.addRow("Watch the canary for", self.watch)
        form.addRow("Revert if its 429 share exceeds", self.refused_max)
        form.addRow("… or its error rate exceeds", self.err_max)
        self.form = form
        for widget in self._staged_rows:
            form.setRowVisible(widget, False)
        if at_balancer:  # one place: no instance to pick, no canary
            for widget in (self.scope_all, self.scope_one, self.staged):
                form.setRowVisible(widget, False)
        self.buttons, self.apply = _apply_buttons(self)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.refusal)
        layout.addWidget(self.preview)
        layout.addWidget(QLabel("<b>This changes:</b>"))
        layout.addWidget(self.summary)
        note = QLabel("shadow: counted as would-be-limited, nobody refused; enforce: refused "
                      "with 429 before the app runs; off: not decided (arrivals recorded)."
                      + ("" if at_balancer else " A gate at 0 is no gate."))
        note.setWordWrap(True)
        layout.addWidget(note)
        layout.addStretch(1)
        self.install(body, self.blocked, self.buttons)
        self._asked: tuple[str, float, int] | None = None  # the what-if asked for last
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self._ask_preview)
        for signal in (self.rate.changed, self.burst.changed, self.key.textChanged):
            signal.connect(self._timer.start)
        for signal in (self.rate.changed, self.burst.changed, self.key.textChanged,
                       self.mode.currentIndexChanged, self.reason.textChanged,
                       self.instance.currentIndexChanged, group.buttonToggled,
                       self.staged.toggled, self.canary.currentIndexChanged,
                       self.watch.changed, self.refused_max.changed, self.err_max.changed):
            signal.connect(self._update)
        self.staged.toggled.connect(self._staged_toggled)
        self._update()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._asked is None:  # the first what-if: shown, so the caller has connected
            QTimer.singleShot(0, self._ask_preview)

    # ------------------------------------------------------------------ what is chosen

    def targets(self) -> list[str]:
        """The instances the change would touch (staged: every one with the limit)."""
        if self.scope_all.isChecked() or self.staged.isChecked():
            return list(self.current)
        return [self.instance.currentText()]

    def _staged_toggled(self, staged: bool) -> None:
        """A staged change goes everywhere, the canary first: the one-instance scope is off."""
        for widget in self._staged_rows:
            self.form.setRowVisible(widget, staged)
        if staged:
            self.scope_all.setChecked(True)
        for widget in (self.scope_one, self.instance):
            widget.setEnabled(not staged)
            widget.setToolTip("a staged change reaches every instance, the canary first"
                              if staged else "")

    def staged_choice(self) -> tuple[str, float, float | None, float | None] | None:
        """(canary, watch seconds, error-rate gate 0..1, 429-share gate 0..1) when staged
        and valid, else None; a gate at 0 is None (no gate)."""
        if not self.staged.isChecked() or self.problem() is not None:
            return None
        watch, err, refused = self.watch.value(), self.err_max.value(), self.refused_max.value()
        assert watch is not None and err is not None and refused is not None  # problem() said so
        return (self.canary.currentText(), float(watch), err / 100.0 or None,
                refused / 100.0 or None)

    def key_problem(self) -> str | None:
        """Why the client key is not one the agent accepts, or None."""
        key = self.key.text().strip()
        if _KEY.fullmatch(key):
            return None
        return (f"“{key}” is not a client key: enter ip, global, header:<name> "
                "or jwt:<claim>")

    def fields(self) -> dict[str, object] | None:
        """The limit's new settings as the agent takes them, or None while one is invalid."""
        rate, burst = self.rate.value(), self.burst.value()
        if rate is None or burst is None or self.key_problem() is not None:
            return None
        return {"key": self.key.text().strip(), "rate": float(rate), "burst": int(burst),
                "mode": self.mode.currentText()}

    def problem(self) -> str | None:
        """Why Apply is not possible now (a field's error, a missing reason…), or None."""
        for label, field in (("Rate", self.rate), ("Burst", self.burst)):
            error = field.problem()
            if error is not None:
                return f"{label}: {error}"
        key_error = self.key_problem()
        if key_error is not None:
            return f"Client key: {key_error}"
        if self.staged.isChecked():
            for label, field in (("Watch", self.watch), ("429-share gate", self.refused_max),
                                 ("error-rate gate", self.err_max)):
                error = field.problem()
                if error is not None:
                    return f"{label}: {error}"
        fields = self.fields()
        assert fields is not None  # every field is valid here
        targets = self.targets()
        if all(self._same(self.current[t], fields) for t in targets):
            return "Nothing changes: the limit already has these settings there."
        if self.reason.text().strip():
            return None
        if fields["mode"] == ENFORCE and any(self.current[t].mode != ENFORCE for t in targets):
            return "Enforcing a limit refuses requests: it needs a reason (recorded in the journal)."
        if self.at_balancer:
            return "A change at the balancer needs a reason (recorded in the journal)."
        if len(targets) == len(self.current):
            return "A change on every instance needs a reason (recorded in the journal)."
        return None

    @staticmethod
    def _same(now: LimitSettings, fields: Mapping[str, object]) -> bool:
        return (now.key, now.rate, now.burst, now.mode) == (
            fields["key"], fields["rate"], fields["burst"], fields["mode"])

    def choice(self) -> tuple[list[str], dict[str, object], str] | None:
        """(instances, new settings, reason), or None while something is invalid."""
        fields = self.fields()
        if fields is None or self.problem() is not None:
            return None
        return self.targets(), fields, self.reason.text().strip()

    def accept(self) -> None:
        """Close with Apply only when the change is valid (Enter, a click or a caller)."""
        if self.problem() is None:
            super().accept()

    # ------------------------------------------------------------------ the preview

    def _ask_preview(self) -> None:
        fields = self.fields()
        if fields is None:
            self.preview.setText("What-if: nothing until key, rate and burst are valid.")
            return
        asked = (str(fields["key"]), float(fields["rate"]), int(fields["burst"]))  # type: ignore[arg-type]
        if asked != self._asked:
            self._asked = asked
            self.preview.setText("What-if: asking the agents…")
            self.preview_wanted.emit(*asked)

    def set_whatif(self, key: str, rate: float, burst: int, requests: int, limited: int,
                   clients: int, seconds: float) -> None:
        """What this key, rate and burst would have refused of the route's recent traffic
        (ignored when the fields have moved on since it was asked for)."""
        if (key, rate, burst) != self._asked:
            return
        span = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
        who = f"{clients:,} client" + ("" if clients == 1 else "s")
        self.preview.setText(
            f"What-if: with {rate:g} req/s and a burst of {burst:,} per {key}, this limit "
            f"would have refused {limited:,} of {requests:,} requests in the last {span}, "
            f"from {who}.")

    def set_preview_error(self, message: str) -> None:
        """Say why there is no what-if preview."""
        self.preview.setText(f"No what-if preview: {message}")

    def show_refusal(self, message: str) -> None:
        """The agent refused the values as typed (nothing changed): say its words, so they
        can be corrected; hidden again by the next edit."""
        self._refused = self.fields()
        self.refusal.setText(f"Refused, nothing changed: {message}")
        self.refusal.show()

    def _update(self, *_: object) -> None:
        if self._refused is not None and self.fields() != self._refused:
            self._refused = None
            self.refusal.hide()
        problem = self.problem()
        self.apply.setEnabled(problem is None)
        self.blocked.setText(problem or "")
        key_error = self.key_problem()
        self.key_error.setText(key_error or "")
        self.key_error.setHidden(key_error is None)
        fields = self.fields()
        if fields is None:  # never preview a value nobody typed
            self.summary.setText(f"{self.name}: nothing until every field is valid")
            return
        lines = []
        for target in self.targets():
            now = self.current[target]
            parts = [f"{label} {old} → {new}" for label, old, new in (
                ("rate", f"{now.rate:g}", f"{fields['rate']:g}"),
                ("burst", str(now.burst), str(fields["burst"])), ("key", now.key, fields["key"]),
                ("mode", now.mode, fields["mode"])) if old != new]
            lines.append(f"{target}: {', '.join(parts) or 'unchanged'}")
        text = f"{self.name} on {self.route}: " + "; ".join(lines)
        if self.staged.isChecked():
            text += (f" — first {self.canary.currentText()} only, the rest after the watch if "
                     "the gates hold; the canary reverted automatically if one fails")
            if fields["mode"] != ENFORCE:
                text += (f" (in {fields['mode']} mode nobody is refused: the 429-share gate "
                         "has nothing to watch)")
        self.summary.setText(text)

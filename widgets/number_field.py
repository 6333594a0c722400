"""A number field judged exactly as typed: never clamped, rounded or silently corrected.

A ``QSpinBox`` turns ``99999999`` into its maximum and ``-5`` into an intermediate
"-" while its ``value()`` keeps the old number, so what the dialog applied was not
what the operator typed. :class:`NumberField` keeps the text as typed, says next to
the field (in red) why it is not acceptable and which range is, and reports no value
until it is.
"""

from __future__ import annotations

import math
import re

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QWidget

ERROR_STYLE = "color: #d9534f"
ERROR_BORDER = "border: 1px solid #d9534f"
# Plain decimal notation only: "1e3", "1_000", "nan" or "inf" would parse with float()
# but are not what an operator means to type into a TTL or a weight.
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_INTEGER = re.compile(r"[+-]?\d+")


class NumberField(QWidget):
    """One number in ``minimum..maximum`` (inclusive), typed into a line edit.

    ``value()`` is the number typed, or None while the text is empty, unparsable or out
    of range; ``problem()`` then says why, naming the allowed range, and the same text is
    shown in red next to the field. ``changed`` fires on every edit.

    ``inline_error=False`` leaves ``error`` out of the field's own row, for the owner to
    place (a grid puts it on a row of its own, where a long message has room); it is
    hidden while there is no error.
    """

    changed = Signal()

    def __init__(self, minimum: float, maximum: float, *, integer: bool = False,
                 unit: str = "", hint: str = "", inline_error: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.minimum, self.maximum, self.integer, self.unit = minimum, maximum, integer, unit
        self.edit = QLineEdit()
        self.edit.setToolTip(f"{hint + '; ' if hint else ''}allowed: {self.range_text()}")
        self.edit.setMaximumWidth(110)
        self.unit_label = QLabel(unit)
        self.error = QLabel("")
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setWordWrap(True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        if unit:
            row.addWidget(self.unit_label)
        if inline_error:
            row.addWidget(self.error, 1)
        else:
            row.addStretch(1)
        self.edit.textChanged.connect(self._edited)

    def range_text(self) -> str:
        """The allowed range in words, e.g. ``0 to 86400 s``."""
        unit = f" {self.unit}" if self.unit else ""
        kind = "a whole number " if self.integer else ""
        return f"{kind}from {self.minimum:g} to {self.maximum:g}{unit}"

    def text(self) -> str:
        """The text exactly as typed."""
        return self.edit.text()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming, like QLineEdit's
        """Replace the text (as if typed)."""
        self.edit.setText(text)

    def setValue(self, value: float) -> None:  # noqa: N802 - Qt naming, like QSpinBox's
        """Show ``value`` (it is judged like typed text)."""
        # 15 significant digits: a stored 12345.678 shows as itself, not :g's 12345.7
        self.edit.setText(f"{int(value)}" if self.integer else f"{value:.15g}")

    def problem(self) -> str | None:
        """Why the text is not an acceptable number, naming the range; None when it is."""
        text = self.edit.text().strip()
        allowed = f"enter {self.range_text()}"
        if not text:
            return f"empty: {allowed}"
        pattern = _INTEGER if self.integer else _DECIMAL
        if not pattern.fullmatch(text):
            kind = "a whole number" if self.integer else "a number"
            return f"“{text}” is not {kind}: {allowed}"
        number = float(text)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            return f"{text} is out of range: {allowed}"
        return None

    def value(self) -> float | None:
        """The number typed (an int for an integer field), or None while it is not acceptable."""
        if self.problem() is not None:
            return None
        text = self.edit.text().strip()
        return int(text) if self.integer else float(text)

    def _edited(self, *_: object) -> None:
        problem = self.problem()
        self.error.setText(problem or "")
        if self.error.parentWidget() is not None:  # never show it as a window of its own
            self.error.setHidden(problem is None)
        self.edit.setStyleSheet(ERROR_BORDER if problem else "")
        self.changed.emit()

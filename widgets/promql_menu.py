"""“Copy as PromQL”: the expression a chart's curve or a table's cell equals, for the clipboard.

Widgets never know the model: a page hands each chart a function from a curve's legend
name to its expression (:data:`CurvePromql`) and each table a function from (row key,
column header) to the cell's (:data:`CellPromql`). The functions are called when the
menu, the tooltip or the shortcut needs the text, so the range ``[W]`` is always the one
the newest point used. A number with no PromQL equivalent answers :class:`NoPromql`
with the reason, which the tooltip and the menu say instead of an invented expression.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QMenu, QWidget

MENU_TEXT = "Copy as PromQL"
SHORTCUT = "Ctrl+Shift+C"
MENU_LABEL_CHARS = 48  # a curve's name in the menu is cut beyond this (the copy is whole)


@dataclass(frozen=True)
class NoPromql:
    """A shown number that no PromQL expression equals, and why."""

    reason: str


# An expression, a NoPromql, or None: not a number trimtab derives (no entry at all).
Answer = str | NoPromql | None
CurvePromql = Callable[[str], Answer]  # legend name → the curve's expression
CellPromql = Callable[[str | None, str], Answer]  # (row key, or None: the column), header


def copy_to_clipboard(text: str) -> None:
    """Put ``text`` on the system clipboard."""
    QGuiApplication.clipboard().setText(text)


def joined(answers: Sequence[tuple[str, Answer]]) -> str:
    """What "all curves" copies: per curve a ``# name`` comment line and its expression;
    a curve without one says why in its comment. One curve: just its expression."""
    shown = [(name, a) for name, a in answers if a is not None]
    if len(shown) == 1 and isinstance(shown[0][1], str):
        return shown[0][1]
    lines = []
    for name, answer in shown:
        one_line = name.replace("\n", " ")
        if isinstance(answer, NoPromql):
            lines.append(f"# {one_line}: no PromQL equivalent ({answer.reason})")
        else:
            lines += [f"# {one_line}", answer]
    return "\n".join(lines)


def tooltip_html(answers: Sequence[tuple[str, Answer]], lead: str = "") -> str:
    """A tooltip naming each expression (rich text: a route such as ``<other>`` stays visible,
    and a long expression wraps at its spaces)."""
    parts = [f"<p>{html.escape(lead)}</p>"] if lead else []
    shown = [(name, a) for name, a in answers if a is not None]
    for name, answer in shown:
        title = f"<b>{html.escape(name)}</b>: " if len(shown) > 1 or name else ""
        if isinstance(answer, NoPromql):
            parts.append(f"<p>{title}no PromQL equivalent: {html.escape(answer.reason)}</p>")
        else:
            parts.append(f"<p>{title}<tt>{html.escape(answer)}</tt></p>")
    if shown:
        parts.append(f"<p><i>Right-click: {MENU_TEXT} · {SHORTCUT}</i></p>")
    return "".join(parts)


def menu_label(name: str | None, answer: Answer, count: int) -> tuple[str, bool]:
    """(the menu item's text, whether it is enabled) for one curve (``name``) or for all
    ``count`` curves (``name`` None)."""
    if name is None:
        if count == 0:
            return f"{MENU_TEXT} (no curves yet)", False
        return (MENU_TEXT if count == 1 else f"{MENU_TEXT} (all {count} curves)"), True
    short = name if len(name) <= MENU_LABEL_CHARS else name[:MENU_LABEL_CHARS - 1] + "…"
    if isinstance(answer, NoPromql):
        return f"No PromQL for {short}: {answer.reason}", False
    if answer is None:
        return f"No PromQL for {short}", False
    return f"{MENU_TEXT}: {short}", True


def add_copy_shortcut(widget: QWidget, copy: Callable[[], object]) -> QShortcut:
    """Ctrl+Shift+C while ``widget`` or a child of it has the focus runs ``copy``."""
    shortcut = QShortcut(QKeySequence(SHORTCUT), widget)
    shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    shortcut.activated.connect(copy)
    return shortcut


# (menu text, enabled, text to copy) for a scene position; None: no entry in the menu.
MenuTarget = Callable[[QPointF], tuple[str, bool, str] | None]


class PromqlViewBox(pg.ViewBox):
    """A ViewBox whose right-click menu starts with "Copy as PromQL" for what lies under the
    cursor (the chart sets :attr:`promql_target`); pyqtgraph's own entries follow."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.promql_target: MenuTarget | None = None
        self.copy_action: QAction | None = None
        self._text = ""

    def getMenu(self, ev: object) -> QMenu | None:  # noqa: N802 - pyqtgraph's name
        menu = super().getMenu(ev)
        if menu is None or self.promql_target is None:
            return menu
        if self.copy_action is None:
            self.copy_action = QAction(MENU_TEXT, menu)
            self.copy_action.triggered.connect(lambda: copy_to_clipboard(self._text))
            first = menu.actions()[0] if menu.actions() else None
            menu.insertAction(first, self.copy_action)
            menu.insertSeparator(first)
        found = self.promql_target(ev.scenePos())  # type: ignore[attr-defined]
        self.copy_action.setVisible(found is not None)
        if found is not None:
            label, enabled, self._text = found
            self.copy_action.setText(label)
            self.copy_action.setEnabled(enabled)
        return menu

"""Change markers on a chart: one line per change, easy to click, labels that never overlap.

A marker is a dashed vertical line with a click area :data:`CLICK_PX` wide either side
(a 1 px line is hard to hit while a live axis slides under the pointer), a pointing-hand
cursor and a thicker line on hover. Its label is drawn level at the top of the plot,
right of the line (left of it near the right edge), in the first of :data:`LABEL_ROWS`
rows where it overlaps no other label; a label too long is elided, one with no room in
any row is hidden (its line's tooltip still reads in full). Clicking a label is clicking
its line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyqtgraph as pg
from pyqtgraph.GraphicsScene.mouseEvents import HoverEvent, MouseClickEvent
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsSimpleTextItem

COLOUR = "#CC79A7"
CLICK_PX = 10  # click area each side of a marker line, in pixels
LABEL_ROWS = 3  # rows of labels at the top of the plot
LABEL_MAX_PX = 320  # a longer label is elided ("…"); its tooltip has it whole
LABEL_GAP_PX = 6  # free space between two labels in a row, and between a label and its line
LABEL_TOP_PX = 2


@dataclass(frozen=True)
class Placed:
    """Where a label goes: its left edge (plot pixels) and its row (0 = top)."""

    left: float
    row: int


def place_labels(items: Sequence[tuple[str, float, float]], plot_width: float,
                 rows: int = LABEL_ROWS, gap: float = LABEL_GAP_PX) -> dict[str, Placed | None]:
    """Place labels ``(key, line x, width)`` (pixels) so that no two overlap.

    Left to right, each label goes right of its line, or left of it when it would run past
    the plot's right edge, in the first row where it keeps ``gap`` from every label there;
    None when no row has room. A label and the stretch to its own line count as taken, so
    no other line labelled in that row stands between a label and its line.
    """
    taken: list[list[tuple[float, float]]] = [[] for _ in range(rows)]
    out: dict[str, Placed | None] = {}
    for key, x, width in sorted(items, key=lambda item: item[1]):
        left = x + gap
        if left + width > plot_width and x - gap - width >= 0:
            left = x - gap - width
        a, b = min(left, x), max(left + width, x)
        out[key] = None
        for row, spans in enumerate(taken):
            if all(b + gap <= lo or a >= hi + gap for lo, hi in spans):
                spans.append((a, b))
                out[key] = Placed(left, row)
                break
    return out


class MarkerLine(pg.InfiniteLine):
    """One change's line: a wide click area, a hand cursor, highlighted on hover."""

    def __init__(self, key: str, t: float, markers: ChangeMarkers) -> None:
        super().__init__(pos=t, angle=90, movable=False,
                         pen=pg.mkPen(COLOUR, width=1, style=Qt.PenStyle.DashLine),
                         hoverPen=pg.mkPen(COLOUR, width=3))
        # pyqtgraph sizes an InfiniteLine's bounding rect, which is also its click area,
        # by its largest end marker; this line has none, so that size is its click margin.
        self._maxMarkerSize = CLICK_PX
        self.key = key
        self._markers = markers
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def hoverEvent(self, ev: HoverEvent) -> None:
        """Highlight while the pointer is over the click area (the base class only does so
        for movable lines)."""
        self._markers.highlight(self.key, not ev.isExit())

    def mouseClickEvent(self, ev: MouseClickEvent) -> None:
        self._markers.clicked(self.key, ev)


class MarkerLabel(QGraphicsRectItem):
    """A label on a veiled backdrop, in the ViewBox's own pixel coordinates."""

    def __init__(self, key: str, markers: ChangeMarkers) -> None:
        super().__init__()
        self.key = key
        self._markers = markers
        self.text = QGraphicsSimpleTextItem(self)
        self.text.setBrush(QBrush(QColor(COLOUR)))
        font = QFont(self.text.font())
        font.setPointSizeF(8.5)
        self.text.setFont(font)
        self.text.setPos(3, 1)
        self.setPen(QPen(Qt.PenStyle.NoPen))
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setZValue(20)  # above the curves and the legend
        self.full = ""

    def set_text(self, text: str) -> None:
        self.full = text
        shown = QFontMetricsF(self.text.font()).elidedText(
            text, Qt.TextElideMode.ElideRight, LABEL_MAX_PX - 6)
        self.text.setText(shown)
        r = self.text.boundingRect()
        self.setRect(QRectF(0, 0, r.width() + 6, r.height() + 2))
        self.setToolTip(f"{text} — click for before/after")

    def set_highlight(self, on: bool) -> None:
        """Outlined while the pointer is over it or its line."""
        self.setPen(pg.mkPen(COLOUR, width=1) if on else QPen(Qt.PenStyle.NoPen))

    def hoverEvent(self, ev: HoverEvent) -> None:
        self._markers.highlight(self.key, not ev.isExit())

    def mouseClickEvent(self, ev: MouseClickEvent) -> None:
        self._markers.clicked(self.key, ev)


class ChangeMarkers:
    """The change markers of one plot; ``on_click(key)`` for a left click on a line or label."""

    def __init__(self, plot: pg.PlotItem, on_click: Callable[[str], None]) -> None:
        self._plot = plot
        self._vb = plot.getViewBox()
        self._on_click = on_click
        self.lines: dict[str, MarkerLine] = {}
        self.labels: dict[str, MarkerLabel] = {}
        self._veil = QColor(0, 0, 0, 200)
        self._vb.sigRangeChanged.connect(self.layout)
        self._vb.sigResized.connect(self.layout)

    def set(self, markers: Sequence[tuple[str, float, str]]) -> None:
        """Show exactly ``markers`` (key, unix time, label); a key kept keeps its line."""
        wanted = {key for key, _, _ in markers}
        for key in set(self.lines) - wanted:
            self._plot.removeItem(self.lines.pop(key))
            label = self.labels.pop(key)
            label.setParentItem(None)
            if label.scene() is not None:
                label.scene().removeItem(label)
        for key, t, text in markers:
            line = self.lines.get(key)
            if line is None:
                line = self.lines[key] = MarkerLine(key, t, self)
                self._plot.addItem(line, ignoreBounds=True)
                label = self.labels[key] = MarkerLabel(key, self)
                label.setBrush(QBrush(self._veil))
                # a child of the ViewBox, not of its view: placed in pixels, clipped to the plot
                label.setParentItem(self._vb)
            line.setValue(t)
            line.setToolTip(f"{text} — click for before/after")
            if self.labels[key].full != text:
                self.labels[key].set_text(text)
        self.layout()

    def layout(self, *_: object) -> None:
        """Place the labels of the markers in view (after any zoom, pan, resize or change)."""
        width = self._vb.width()
        items = []
        for key, line in self.lines.items():
            x = self._vb.mapFromView(QPointF(line.value(), 0)).x()
            if 0 <= x <= width:
                items.append((key, x, self.labels[key].rect().width()))
            else:
                self.labels[key].setVisible(False)
        for key, placed in place_labels(items, width).items():
            label = self.labels[key]
            label.setVisible(placed is not None)
            if placed is not None:
                label.setPos(placed.left,
                             LABEL_TOP_PX + placed.row * (label.rect().height() + 1))

    def set_veil(self, colour: QColor) -> None:
        """The labels' backdrop (the theme's background, veiled)."""
        self._veil = QColor(colour)
        for label in self.labels.values():
            label.setBrush(QBrush(self._veil))

    def highlight(self, key: str, on: bool) -> None:
        line, label = self.lines.get(key), self.labels.get(key)
        if line is not None:
            line.setMouseHover(on)
        if label is not None:
            label.set_highlight(on)

    def clicked(self, key: str, ev: MouseClickEvent) -> None:
        # Accepting the click stops the scene offering it to the plot, so a marker click
        # opens its card and is never also a click on a point or a cell.
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._on_click(key)

    def label_rect(self, key: str) -> QRectF | None:
        """A shown label's rect in scene coordinates (None when hidden)."""
        label = self.labels.get(key)
        if label is None or not label.isVisible():
            return None
        return label.sceneBoundingRect()

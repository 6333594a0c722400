"""A trace waterfall: one horizontal bar per span, offset from the request's start."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from .palette import SPAN_COLOURS
from .theme import DARK, Theme

Span = tuple[str, float, float]  # (label, start offset ms, duration ms)


class WaterfallView(QWidget):
    """Spans as bars on a millisecond axis; the first span is the request itself."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setTitle("Trace waterfall")
        # Offsets come in ms: pyqtgraph's SI prefixing made a sub-millisecond trace's axis
        # read "mms" (milli-milliseconds). The unit stays ms, unprefixed.
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.setLabel("bottom", "time since the request started", units="ms")
        self.plot.showGrid(x=True, alpha=0.25)
        self.plot.invertY(True)
        self.plot.setMouseEnabled(y=False)
        self._bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.6, brushes=[])
        self.plot.addItem(self._bars)
        self._empty = QLabel("Select a trace to see where its time went.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self._empty)
        self.spans: list[Span] = []
        self.apply_theme(DARK)

    def set_spans(self, title: str, spans: list[Span]) -> None:
        self.spans = list(spans)
        ys = list(range(len(spans)))
        self._bars.setOpts(x0=[s[1] for s in spans], y=ys, width=[max(s[2], 0.01) for s in spans],
                           # greys (a span is no route or backend: no entity colour);
                           # the request itself darkest, its children alternating
                           brushes=[SPAN_COLOURS[0 if i == 0 else 1 + i % 2] for i in ys])
        self.plot.getAxis("left").setTicks([[(y, s[0]) for y, s in zip(ys, spans)]])
        self.plot.setTitle(title)
        if spans:
            end = max(s[1] + s[2] for s in spans)
            self.plot.setXRange(0, end * 1.05 or 1.0, padding=0)
            self.plot.setYRange(-0.6, len(spans) - 0.4, padding=0)
        self._empty.setVisible(not spans)

    def apply_theme(self, theme: Theme) -> None:
        self.plot.setBackground(theme.background)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setPen(theme.foreground)
            self.plot.getAxis(name).setTextPen(theme.foreground)

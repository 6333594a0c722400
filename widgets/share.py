"""Expected vs observed request share per backend, as grouped bars."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout, QWidget

from .palette import Palette
from .theme import DARK, Theme

EXPECTED_COLOUR = "#999999"
OBSERVED_COLOUR = "#D0D4DA"  # the legend's sample only: each bar takes its backend's colour


class ShareBarsView(QWidget):
    """Bars per server: a grey outline = expected (w / Σw), filled in the backend's own colour
    (the same as its line on every chart) = observed over the rate window."""

    def __init__(self, parent: QWidget | None = None, palette: Palette | None = None) -> None:
        super().__init__(parent)
        self.palette = palette if palette is not None else Palette()
        self.plot = pg.PlotWidget()
        self.plot.setTitle("Balancer: expected vs observed share")
        self.plot.setLabel("left", "share of requests", units="%")
        self.plot.setLabel("bottom", "backend server")
        self.plot.showGrid(y=True, alpha=0.25)
        cached = QGraphicsItem.CacheMode.DeviceCoordinateCache  # replaying ticks, grid, text is slow
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setCacheMode(cached)
            self.plot.getAxis(name).label.setCacheMode(cached)
        self.plot.getPlotItem().titleLabel.item.setCacheMode(cached)
        self.plot.setYRange(0, 100, padding=0.02)
        self.plot.setMouseEnabled(x=False, y=False)
        legend = self.plot.addLegend(offset=(-8, 8), labelTextSize="9pt")
        self._expected = pg.BarGraphItem(x=[], height=[], width=0.35, brush=None,
                                         pen=pg.mkPen(EXPECTED_COLOUR, width=2))
        self._observed = pg.BarGraphItem(x=[], height=[], width=0.35, brush=OBSERVED_COLOUR)
        self.plot.addItem(self._expected)
        self.plot.addItem(self._observed)
        legend.addItem(self._expected, "expected (w / Σw)")
        legend.addItem(self._observed, "observed (last 10 s)")
        for _, label in legend.items:
            label.item.setCacheMode(cached)
        self._empty = QLabel("No balancer data yet: start the demo or add a balancer target.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self._empty)
        self.rows: list[tuple[str, float, float]] = []
        self.apply_theme(DARK)

    def apply_theme(self, theme: Theme) -> None:
        self.plot.setBackground(theme.background)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setPen(theme.foreground)
            self.plot.getAxis(name).setTextPen(theme.foreground)
        self.plot.setTitle(self.plot.plotItem.titleLabel.text, color=theme.foreground)

    def set_palette(self, palette: Palette) -> None:
        """Take the window's palette: a backend's bar in the colour of its line elsewhere."""
        self.palette = palette
        self.set_rows(self.rows)

    def set_rows(self, rows: list[tuple[str, float, float]]) -> None:
        """``rows`` = (server, expected 0..1, observed 0..1)."""
        self.rows = list(rows)
        xs = list(range(len(rows)))
        pct = [(0.0 if math.isnan(e) else e * 100, 0.0 if math.isnan(o) else o * 100)
               for _, e, o in rows]
        self._expected.setOpts(x=[x - 0.19 for x in xs], height=[e for e, _ in pct])
        self._observed.setOpts(x=[x + 0.19 for x in xs], height=[o for _, o in pct],
                               brushes=[self.palette.colour(name) for name, _, _ in rows])
        self.plot.getAxis("bottom").setTicks([[(x, name) for x, (name, _, _) in zip(xs, rows)]])
        if rows:
            self.plot.setXRange(-0.6, len(rows) - 0.4, padding=0)
        self._empty.setVisible(not rows)

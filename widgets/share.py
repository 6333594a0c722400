"""Expected vs observed request share per backend, as grouped bars."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QGraphicsItem, QLabel, QToolTip, QVBoxLayout, QWidget

from .palette import Palette
from .promql_menu import (
    Answer,
    PromqlViewBox,
    add_copy_shortcut,
    copy_to_clipboard,
    joined,
    menu_label,
    tooltip_html,
)
from .theme import DARK, Theme

EXPECTED_COLOUR = "#999999"
OBSERVED_COLOUR = "#D0D4DA"  # the legend's sample only: each bar takes its backend's colour
BAR_WIDTH = 0.35
BAR_OFFSET = 0.19  # expected left of the server's tick, observed right of it
KINDS = ("expected", "observed")
# (server, "expected" or "observed") → the bar's PromQL
BarPromql = Callable[[str, str], Answer]


class ShareBarsView(QWidget):
    """Bars per server: a grey outline = expected (w / Σw), filled in the backend's own colour
    (the same as its line on every chart) = observed over the rate window."""

    def __init__(self, parent: QWidget | None = None, palette: Palette | None = None) -> None:
        super().__init__(parent)
        self.palette = palette if palette is not None else Palette()
        self._promql: BarPromql | None = None
        self._promql_lead = ""
        vb = PromqlViewBox()
        vb.promql_target = self._menu_target
        self.plot = pg.PlotWidget(viewBox=vb)
        self.plot.viewport().installEventFilter(self)  # a bar or the title: its PromQL on hover
        add_copy_shortcut(self, self.copy_promql)
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
        self._expected = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, brush=None,
                                         pen=pg.mkPen(EXPECTED_COLOUR, width=2))
        self._observed = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH,
                                         brush=OBSERVED_COLOUR)
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
        self._expected.setOpts(x=[x - BAR_OFFSET for x in xs], height=[e for e, _ in pct])
        self._observed.setOpts(x=[x + BAR_OFFSET for x in xs], height=[o for _, o in pct],
                               brushes=[self.palette.colour(name) for name, _, _ in rows])
        self.plot.getAxis("bottom").setTicks([[(x, name) for x, (name, _, _) in zip(xs, rows)]])
        if rows:
            self.plot.setXRange(-0.6, len(rows) - 0.4, padding=0)
        self._empty.setVisible(not rows)

    def set_promql(self, promql: BarPromql | None, lead: str = "") -> None:
        """What each bar equals: ``promql(server, "expected" | "observed")`` (asked when the
        menu, a tooltip or Ctrl+Shift+C needs it); ``lead`` heads the tooltip."""
        self._promql, self._promql_lead = promql, lead

    def bar_at(self, scene_pos: QPointF) -> tuple[str, str] | None:
        """(server, "expected" or "observed") of the bar column under a scene position."""
        vb = self.plot.getPlotItem().getViewBox()
        if not self.rows or not vb.sceneBoundingRect().contains(scene_pos):
            return None
        x = vb.mapSceneToView(scene_pos).x()
        i = round(x)
        if not 0 <= i < len(self.rows):
            return None
        for kind, centre in zip(KINDS, (i - BAR_OFFSET, i + BAR_OFFSET)):
            if abs(x - centre) <= BAR_WIDTH / 2:
                return self.rows[i][0], kind
        return None

    def _answers(self, bars: list[tuple[str, str]]) -> list[tuple[str, Answer]]:
        assert self._promql is not None
        return [(f"{server} {kind}", self._promql(server, kind)) for server, kind in bars]

    def promql_text(self, bar: tuple[str, str] | None = None) -> str:
        """One bar's expression, or (``bar`` None) every bar's, one per line under its name."""
        if self._promql is None:
            return ""
        bars = [bar] if bar is not None else [(s, k) for s, _, _ in self.rows for k in KINDS]
        return joined(self._answers(bars))

    def copy_promql(self, bar: tuple[str, str] | None = None) -> str:
        """Copy :meth:`promql_text` to the clipboard (Ctrl+Shift+C: every bar)."""
        text = self.promql_text(bar)
        if text:
            copy_to_clipboard(text)
        return text

    def _menu_target(self, scene_pos: QPointF) -> tuple[str, bool, str] | None:
        if self._promql is None:
            return None
        bar = self.bar_at(scene_pos)
        if bar is None:
            label, enabled = menu_label(None, None, 2 * len(self.rows))
            return label, enabled, self.promql_text()
        (name, answer), = self._answers([bar])
        label, enabled = menu_label(name, answer, 1)
        return label, enabled, self.promql_text(bar) if enabled else ""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        # the type first: every paint and mouse move of the plot passes here
        if (event.type() == QEvent.Type.ToolTip and watched is self.plot.viewport()
                and self._promql is not None):
            assert isinstance(event, QHelpEvent)
            pos = self.plot.mapToScene(event.pos())
            bar = self.bar_at(pos)
            title = self.plot.getPlotItem().titleLabel.sceneBoundingRect().contains(pos)
            bars = [bar] if bar is not None else (
                [(s, k) for s, _, _ in self.rows for k in KINDS] if title else [])
            if bars:
                QToolTip.showText(event.globalPos(),
                                  tooltip_html(self._answers(bars), self._promql_lead),
                                  self.plot.viewport())
                return True
        return super().eventFilter(watched, event)

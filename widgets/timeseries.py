"""A time-series chart: one curve per key, created once and updated with setData."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from .palette import colour


class TimeSeriesView(QWidget):
    """Titled plot with a time axis, a unit-labelled y axis, a legend and an empty-state hint."""

    def __init__(self, title: str, y_label: str, y_units: str, empty_hint: str,
                 y_range: tuple[float, float] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setTitle(title)
        self.plot.setLabel("left", y_label, units=y_units)
        self.plot.setLabel("bottom", "time (local)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.addLegend(offset=(8, 8), labelTextSize="9pt")
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")
        if y_range is not None:
            self.plot.setYRange(*y_range, padding=0.02)
            self.plot.getPlotItem().getViewBox().setLimits(yMin=y_range[0] - 0.05)
        self._empty = QLabel(empty_hint)
        self._empty.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self._empty)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.data: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def set_series(self, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Replace the drawn data; curves are created once per key, then only updated."""
        for key in sorted(series):
            t, v = series[key]
            curve = self.curves.get(key)
            if curve is None:
                pen = pg.mkPen(colour(len(self.curves)), width=1.5)
                curve = self.curves[key] = self.plot.plot(name=key, pen=pen, connect="finite")
            curve.setData(t, v, connect="finite")
        self.data = dict(series)
        has_points = any(np.isfinite(v).any() for _, v in series.values())
        self._empty.setVisible(not has_points)

    def set_x_window(self, start: float, end: float) -> None:
        """Show ``[start, end]`` (unix seconds) on the time axis; used for live windows."""
        self.plot.setXRange(start, end, padding=0.0)

    def point_count(self) -> int:
        """Finite points currently held (for tests and the status bar)."""
        return int(sum(np.isfinite(v).sum() for _, v in self.data.values()))
